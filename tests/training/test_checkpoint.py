"""The one on-disk checkpoint format: round trip, atomic writes, clear errors."""

import numpy as np
import pytest

from momentssn.training import checkpoint


def test_round_trip_keeps_arrays_exactly_and_strict_json_header(tmp_path):
    a = np.array([1.0, np.inf, np.nan, -0.0])
    checkpoint.save(tmp_path, "demo", {"a": a, "i": np.arange(3)}, {"step": 3, "loss": float("nan")})
    ck = checkpoint.load(tmp_path, "demo")
    np.testing.assert_array_equal(ck.arrays["a"], a)  # NaN == NaN position-wise here
    np.testing.assert_array_equal(ck.arrays["i"], np.arange(3))
    assert ck.meta["step"] == 3 and ck.meta["loss"] is None and ck.kind == "demo"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]  # no temporary left behind


def test_overwrite_is_atomic_and_a_failed_write_keeps_the_old_file(tmp_path):
    checkpoint.save(tmp_path, "demo", {"a": np.zeros(2)}, {"step": 1})

    class Boom:
        def __array__(self, *a, **k):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        checkpoint.save(tmp_path, "demo", {"a": Boom()}, {"step": 2})
    assert checkpoint.load(tmp_path, "demo").meta["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]


def test_errors_name_the_folder_and_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "none")):
        checkpoint.resume_from(tmp_path / "none", "demo", resume=True)
    assert checkpoint.resume_from(tmp_path / "none", "demo", resume=False) is None
    checkpoint.save(tmp_path, "demo", {}, {})
    with pytest.raises(ValueError, match="'demo' checkpoint, not a 'fit'"):
        checkpoint.load(tmp_path, "fit")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="corrupt"):
        checkpoint.read(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="reserved"):
        checkpoint.save(tmp_path, "demo", {"__meta__": np.zeros(1)}, {})
