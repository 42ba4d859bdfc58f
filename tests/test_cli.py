"""The command line: process setup, argument checks, errors, progress printing (its
verbs' results are tested with the modules they run)."""

import argparse
import io

import jax
import numpy as np
import pytest

from momentssn import cli
from momentssn.experiments.console import Printer
from momentssn.progress import Progress
from validation.suites import SUITES


@pytest.fixture
def restore_cache_dir():
    old = jax.config.jax_compilation_cache_dir
    yield
    jax.config.update("jax_compilation_cache_dir", old)


def test_compilation_cache_defaults_to_the_user_cache(monkeypatch, tmp_path, restore_cache_dir):
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cli._setup_jax()
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "momentssn" / "xla")
    assert jax.config.jax_enable_x64


def test_compilation_cache_follows_jax_variable(monkeypatch, tmp_path, restore_cache_dir):
    # JAX reads JAX_COMPILATION_CACHE_DIR at import; the command line must not override it
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    jax.config.update("jax_compilation_cache_dir", "")
    cli._setup_jax()
    assert jax.config.jax_compilation_cache_dir == ""


# --------------------------------------------------------------------------- arguments and errors
# Argument errors are refused by the parser: cli._setup_jax (the first step after
# parsing) is replaced by a function that fails the test, so none of these start JAX work.


@pytest.fixture
def no_jax_work(monkeypatch):
    def fail():
        raise AssertionError("an argument error must be refused before any JAX work")

    monkeypatch.setattr(cli, "_setup_jax", fail)


def _refused(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert 1 <= len(err.strip().splitlines()) <= 2 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("argv, expected", [
    (["fit-baseline", "--max-time", "-5"], "argument --max-time: must be > 0, got -5"),
    (["fit-baseline", "--max-time", "nan"], "argument --max-time: must be a finite number"),
    (["moments", "--n-inputs", "0"], "argument --n-inputs: must be an integer >= 1, got 0"),
    (["train", "--method", "bptt", "--steps", "0"], "argument --steps: must be an integer >= 1"),
    (["train", "--method", "bptt", "--seed", "-1"], "argument --seed: must be an integer >= 0"),
    (["compare", "--runs", "bptt:mlp"], "expected METHOD:NET"),
    (["compare", "--budget", "0"], "argument --budget: must be > 0"),
    (["compare", "--lbfgs-fraction", "1"], "argument --lbfgs-fraction: must be strictly between 0 and 1"),
    (["train", "--method", "hybrid", "--lbfgs-fraction", "0"], "argument --lbfgs-fraction: must be strictly between"),
    (["compare", "--runs", "corrected:mlp"], "expected METHOD:NET"),
    (["compare", "--snapshots", "-1"], "argument --snapshots: must be an integer >= 0"),
    (["validate", "--suite", "nope"], "invalid choice: 'nope'"),
])
def test_bad_values_are_refused_by_the_parser(argv, expected, tmp_path, capsys, no_jax_work):
    out = tmp_path / "out"
    err = _refused(argv + ["--out", str(out)], capsys)
    assert expected in err, err
    assert not out.exists()


def test_missing_and_corrupt_task_files_are_refused(tmp_path, capsys, no_jax_work):
    err = _refused(["fit-baseline", "--task", str(tmp_path / "missing.npz")], capsys)
    assert "no such task file" in err and "missing.npz" in err
    junk = tmp_path / "junk.npz"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    for argv in (["fit-baseline", "--task", str(junk)], ["validate", "--task", str(junk)]):
        err = _refused(argv, capsys)
        assert "corrupt or not a task file" in err and "pickle" not in err, err
    err = _refused(["validate", "--params", str(tmp_path / "nothere.json")], capsys)
    assert "no such file" in err


def test_a_task_without_its_keys_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    np.savez(bad, inputs=np.zeros((2, 4)))
    out = tmp_path / "out"
    assert cli.main(["fit-baseline", "--task", str(bad), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("momentssn fit-baseline: error: ") and "target_mean" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_resume_without_checkpoint_names_the_folder_and_leaves_nothing(tmp_path, capsys):
    task = tmp_path / "tiny.npz"
    np.savez(task, inputs=np.ones((2, 4)), target_mean=np.ones((2, 2)),
             target_cov=np.tile(np.eye(2), (2, 1, 1)), n_exc=2)
    out = tmp_path / "typo"
    argv = ["train", "--method", "moments-lbfgs", "--task", str(task), "--out", str(out), "--resume"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "no checkpoint in" in err and str(out) in err and "Traceback" not in err
    assert not out.exists()  # the folder this failed run created is gone
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        cli.main(argv + ["--debug"])  # --debug: the exception and its traceback


def test_validate_help_lists_the_suites(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["validate", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert all(name in text for name in SUITES) and "--task" in text


def test_every_option_has_help():
    parser = cli.build_parser()
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"moments", "validate", "fit-baseline", "train", "compare"} <= set(verbs)
    for name, sub in verbs.items():
        for action in sub._actions:
            assert action.help, (name, action.option_strings)


# --------------------------------------------------------------------------- progress printer


def test_printer_writes_whole_lines_off_a_terminal():
    buf = io.StringIO()
    p = Printer(buf, tty=False, every_s=1e9)
    for i in range(1, 11):
        p(Progress("simulate", i, 10, message=f"chunk {i}/10"))
    p(Progress("fit", 0, message="done"))
    lines = buf.getvalue().splitlines()
    assert "\r" not in buf.getvalue()
    assert lines == ["[simulate]  1/10  chunk 1/10", "[simulate]  10/10  chunk 10/10", "[fit]  done"]


def test_printer_rewrites_counters_on_a_terminal():
    buf = io.StringIO()
    p = Printer(buf, tty=True)
    for i in range(1, 4):
        p(Progress("bptt", i, 3, loss=0.5))
    p.say("finished")
    text = buf.getvalue()
    assert text.count("\r") == 3 and text.endswith("[bptt]  3/3  loss 0.5\nfinished\n")


def test_an_out_path_under_a_file_is_refused(tmp_path, capsys, no_jax_work):
    out = tmp_path / "taken"
    out.write_text("a file, not a folder")
    for target in (out, out / "sub"):
        err = _refused(["moments", "--out", str(target)], capsys)
        assert f"{out} is a file, not a folder" in err, err
    assert out.read_text() == "a file, not a folder"


def test_gsm_verb_refuses_bad_arguments_before_any_work(tmp_path, capsys, no_jax_work):
    assert "no such file or folder" in _refused(["gsm", "--images", str(tmp_path / "nope"), "--out",
                                                 str(tmp_path / "o")], capsys)
    _refused(["gsm", "--filters", "0", "--out", str(tmp_path / "o")], capsys)
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- --init and --stage-trainer


@pytest.fixture
def tiny_task(tmp_path):
    """A task for a General network of 2 E + 2 I cells (raw inputs (S, 4))."""
    path = tmp_path / "tiny.npz"
    np.savez(path, inputs=np.ones((2, 4)), target_mean=np.ones((2, 2)),
             target_cov=np.tile(np.eye(2), (2, 1, 1)), n_exc=2)
    return path


def test_init_and_stage_trainer_reach_train_run(tmp_path, tiny_task, monkeypatch):
    """train --init paper passes PaperInit with the task's raw inputs; --stage-trainer
    passes the named stage trainer to growth ('bptt': train_run's own growth, None)."""
    from momentssn.growth.trainers import STAGE_TRAINERS
    from momentssn.params.init import PaperInit

    seen = []

    class Stop(Exception):
        pass

    def fake_train_run(method, net, task, **kw):
        seen.append((method, net, kw))
        raise Stop

    monkeypatch.setattr(cli, "train_run", fake_train_run)
    base = ["train", "--task", str(tiny_task), "--out", str(tmp_path / "o"), "--debug"]
    with pytest.raises(Stop):
        cli.main(base + ["--method", "bptt", "--net", "general", "--init", "paper"])
    with pytest.raises(Stop):
        cli.main(base + ["--method", "growth", "--stage-trainer", "closure+bptt"])
    with pytest.raises(Stop):
        cli.main(base + ["--method", "growth"])
    (m0, n0, kw0), (m1, _, kw1), (_, _, kw2) = seen
    assert (m0, n0) == ("bptt", "general") and isinstance(kw0["init"], PaperInit)
    np.testing.assert_array_equal(kw0["init"].h_raw, np.ones((2, 4)))
    assert "init" not in kw1 and kw1["stage_train"] is STAGE_TRAINERS["closure+bptt"]
    assert kw2["stage_train"] is None and "init" not in kw2


def test_paper_init_of_a_structured_network_is_a_short_error(tmp_path, tiny_task, capsys, monkeypatch):
    monkeypatch.setattr(cli, "compare_methods", lambda *a, **k: pytest.fail("must fail before training"))
    out = tmp_path / "o"
    argv = ["compare", "--task", str(tiny_task), "--out", str(out), "--init", "paper",
            "--runs", "growth:general", "bptt:ring"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "--init paper" in err and "ring" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_paper_init_reaches_compare_runs(tmp_path, tiny_task, monkeypatch):
    from momentssn.params.init import PaperInit

    seen = {}

    def fake_compare(task, **kw):
        seen.update(kw)
        return {"winner": None, "reference": None, "rows": []}

    monkeypatch.setattr(cli, "compare_methods", fake_compare)
    argv = ["compare", "--task", str(tiny_task), "--out", str(tmp_path / "o"), "--init", "paper",
            "--stage-trainer", "closure", "--runs", "growth:general", "moments-lbfgs:general"]
    assert cli.main(argv) == 0
    opts = seen["run_options"]
    assert isinstance(opts["init"], PaperInit) and type(opts["stage_train"]).__name__ == "ClosureStage"
    assert opts["n_snapshots"] == 7
