"""The published task ships as package data and matches the released file."""

import numpy as np

from momentssn import datasets
from momentssn.tasks import load_task


def test_echeveste2020_ships_with_the_package():
    task = load_task(datasets.echeveste2020_path())
    assert task.inputs.shape == (5, 100)
    assert task.target_mean.shape == (5, 50)
    assert task.target_cov.shape == (5, 50, 50)
    np.testing.assert_allclose(task.target_cov, np.swapaxes(task.target_cov, 1, 2))


def test_echeveste2020_matches_the_released_task(echeveste_task_path):
    with np.load(datasets.echeveste2020_path()) as ours, np.load(echeveste_task_path) as released:
        assert sorted(ours.files) == sorted(released.files)
        for k in released.files:
            np.testing.assert_array_equal(ours[k], released[k], err_msg=k)


def test_get_task_by_name():
    import momentssn as ms

    task = ms.get_task("echeveste2020")
    assert task.name == "echeveste2020" and task.n_stimuli == 5
    np.testing.assert_array_equal(task.inputs, load_task(datasets.echeveste2020_path()).inputs)
