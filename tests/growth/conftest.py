"""Shared fixtures of the growth tests: a 3 E + 3 I network (also the final size of
the growth runs, so compilations are shared) and a tiny 3-target task."""

import jax.numpy as jnp
import numpy as np
import pytest

from momentssn.networks import random_ei_network
from momentssn.tasks import Task

N0 = 6  # 3 E + 3 I: also the final size of the growth runs (shared compilations)


@pytest.fixture(scope="session")
def net6():
    return random_ei_network(N0, seed=2)


@pytest.fixture(scope="session")
def h6():
    return jnp.asarray(np.stack([np.linspace(2.0, 6.0, N0), np.linspace(6.0, 2.0, N0)]))


@pytest.fixture(scope="session")
def tiny_task():
    """3 targets, 2 stimuli, E and I cells get the same raw input (like the published task)."""
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.0, 1.5, size=(2, 3))
    A = rng.normal(size=(3, 3)) * 0.3
    cov = np.stack([1.5 * np.eye(3) + 0.2 * A @ A.T, 1.0 * np.eye(3) + 0.1 * A @ A.T])
    return Task(inputs=np.concatenate([raw, raw], axis=1), target_mean=3.0 + raw, target_cov=cov,
                n_exc=3, name="tiny")
