"""ms.load: every file momentssn writes loads back as a network (fit and growth
checkpoints are covered in tests/training/test_fit.py and tests/growth/test_grow.py)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import momentssn as ms
from momentssn._util import atomic_write_json
from momentssn.training import checkpoint


@pytest.fixture
def ring():
    param = ms.get_parameterization("ring", m=4)
    theta = jnp.asarray(param.default_theta()) + 0.01
    return param, theta


def _same(loaded, param, theta):
    assert loaded.param == param
    np.testing.assert_allclose(np.asarray(loaded.theta), np.asarray(theta), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(loaded.net.W), np.asarray(param.network(theta).W), rtol=1e-12)


def test_parameter_file_and_folder(ring, tmp_path):
    param, theta = ring
    param.save_json(theta, tmp_path / "params.json")
    _same(ms.load(tmp_path / "params.json"), *ring)
    _same(ms.load(tmp_path), *ring)  # a folder: params.json found in it


@pytest.mark.parametrize("key", ["network", "params"])
def test_result_file_with_an_embedded_parameter_document(ring, tmp_path, key):
    param, theta = ring
    atomic_write_json(tmp_path / "result.json", {"loss": 0.1, key: json.loads(param.to_json(theta))})
    loaded = ms.load(tmp_path / "result.json")
    assert loaded.kind == "parameters"
    _same(loaded, *ring)


def test_adam_checkpoint_needs_the_parameterization(ring, tmp_path):
    param, theta = ring
    vg = jax.jit(jax.value_and_grad(lambda th, key: (jnp.sum((th - theta) ** 2), ()), has_aux=True))
    ms.adam_train(vg, theta + 0.1, steps=2, checkpoint_dir=tmp_path, checkpoint_every=1)
    with pytest.raises(ValueError, match="param="):
        ms.load(tmp_path)
    loaded = ms.load(tmp_path, param=param)
    assert loaded.kind == "adam" and loaded.param == param and loaded.net.N == param.N


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing"):
        ms.load(tmp_path / "nothing.json")
    with pytest.raises(FileNotFoundError, match="holds none of"):
        ms.load(tmp_path)
    (tmp_path / "x.json").write_text('{"loss": 1}')
    with pytest.raises(ValueError, match="holds no network"):
        ms.load(tmp_path / "x.json")
    (tmp_path / "y.npz").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="checkpoint"):
        ms.load(tmp_path / "y.npz")
    checkpoint.save(tmp_path, "other", {"a": np.zeros(1)}, {})
    with pytest.raises(ValueError, match="unknown checkpoint kind"):
        ms.load(tmp_path / "checkpoint.npz")
