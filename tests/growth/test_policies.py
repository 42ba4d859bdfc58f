"""Split policies pick the documented cell."""

import jax.numpy as jnp
import numpy as np

import momentssn as ms
from momentssn.growth.policies import POLICIES, SplitContext
from momentssn.tasks import Task


def _ctx(population, candidates, net, moments, targets, new_target=None, e_parent=None, count=0, task=None):
    return SplitContext(population, tuple(candidates), net, moments, tuple(targets), new_target, e_parent,
                        count, np.random.default_rng(0), task)


def test_split_policies_pick_the_documented_cell(net6):
    task = Task(inputs=np.zeros((1, 6)), target_mean=np.array([[3.0, 9.0, 5.0]]),
                target_cov=np.eye(3)[None], n_exc=3)
    mom = ms.Moments(jnp.asarray([[3.0, 5.2, 7.0, 1.0, 1.0, 1.0]]), jnp.eye(6)[None])
    # E cells have targets (0, 1, 2) = means (3, 9, 5): cell 1 is furthest off (5.2 vs 9)
    ctx = _ctx("E", range(3), net6, mom, (0, 1, 2), new_target=2, task=task)
    assert POLICIES["largest_error"](ctx) == 1
    # the new target is 5 (dimension 2): cell 1 (mean 5.2) is the nearest
    assert POLICIES["nearest_target"](ctx) == 1
    assert POLICIES["round_robin"](ctx._replace(count=4)) == 1
    assert POLICIES["random"](ctx) in (0, 1, 2)
    # I splits copy the strongest inhibitor of the E cell split in this stage
    W = np.asarray(net6.W)
    ctx_i = _ctx("I", range(3, 6), net6, mom, (0, 1, 2), e_parent=2, task=task)
    assert POLICIES["largest_error"](ctx_i) == 3 + int(np.argmax(np.abs(W[2, 3:])))
    # without moments (unstable network) the error-based policies fall back to round robin
    assert POLICIES["nearest_target"](ctx._replace(moments=None, count=2)) == 2

