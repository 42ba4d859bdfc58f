"""One small run of the `gsm` experiment shared by tests/gsm (8 x 8 patches of the embedded
photographs, M = 4 learned Gabors, ML GSM, natural-image task): every test that needs a
learned filter bank or a fitted GSM reads it, so it is learned and compiled once."""

import pytest

from momentssn.experiments.natural_images import run_gsm
from momentssn.gsm.patches import default_patches
from momentssn.tasks import load_task

SIZE, M = 8, 4


@pytest.fixture(scope="session")
def gsm_run(tmp_path_factory):
    """(out folder, results dict, progress events, the patches, the task it wrote)."""
    out = tmp_path_factory.mktemp("gsm")
    events = []
    res = run_gsm(out, size=SIZE, n_filters=M, n_per_image=150, filter_iters=40, ml_iters=40, n_fit=300,
                  n_eval=200, contrasts=(0.0, 1.0, 2.0), progress=events.append)
    ps = default_patches(SIZE, n_per_image=150, seed=0)
    return out, res, events, ps, load_task(out / "task.npz")
