"""The Parameterization interface: JSON round trips and checks, the input map."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from momentssn.params.base import parameterization_from_json, rectified_power
from momentssn.params.ring import BASELINE15_DEFAULTS, Baseline15

KINDS = ("baseline15", "ring", "general")


@pytest.mark.parametrize("kind", KINDS)
def test_json_round_trip(kind, params50, tmp_path):
    param = params50[kind]
    theta = param.random_theta(7, scale=0.3)
    text = param.to_json(theta)
    back = param.from_json(text)
    assert float(jnp.max(jnp.abs(back - theta))) < 1e-12
    doc = json.loads(text)
    assert doc["parameterization"] == kind and doc["constants"]["m"] == 50
    assert list(doc["params"]) == list(param.names)
    path = param.save_json(theta, tmp_path / f"{kind}.json")
    assert float(jnp.max(jnp.abs(param.load_json(path) - theta))) < 1e-12
    p2, th2 = parameterization_from_json(text)
    assert p2 == param and float(jnp.max(jnp.abs(th2 - theta))) < 1e-12
    # a bare {name: value} dict is accepted too
    bare = json.dumps(doc["params"])
    assert float(jnp.max(jnp.abs(param.from_json(bare) - theta))) < 1e-12


def test_json_readable_and_checked(params50):
    base = params50["baseline15"]
    doc = json.loads(base.to_json(base.default_theta()))
    for name, value in BASELINE15_DEFAULTS.items():
        assert doc["params"][name] == pytest.approx(value, rel=1e-14, abs=1e-15)
    with pytest.raises(ValueError, match="ring"):
        params50["ring"].from_json(json.dumps(doc))
    with pytest.raises(ValueError, match="constants"):
        Baseline15(m=50, tau_noise=50.0).from_json(json.dumps(doc))
    bad = dict(doc["params"], rho=1.5)
    with pytest.raises(ValueError, match="rho"):
        base.to_theta(bad)
    with pytest.raises(ValueError, match="d_ee"):
        base.to_theta(dict(doc["params"], d_ee=-0.1))
    missing = {k: v for k, v in doc["params"].items() if k != "in_p"}
    with pytest.raises(ValueError, match="in_p"):
        base.to_theta(missing)



def test_inputs_and_safe_power():
    base = Baseline15(m=4)
    p = dict(BASELINE15_DEFAULTS, in_a=1.5, in_b=-0.5, in_p=1.7)
    theta = base.to_theta(p)
    h_raw = jnp.asarray(np.linspace(-1.0, 2.0, 8))
    h = base.inputs(theta, h_raw)
    x = np.maximum(np.asarray(h_raw) - 0.5, 0.0)
    np.testing.assert_allclose(h, 1.5 * x**1.7, rtol=1e-13)
    g = jax.grad(lambda t: jnp.sum(base.inputs(t, h_raw)))(theta)
    assert np.all(np.isfinite(g))
    gx = jax.grad(lambda x: jnp.sum(rectified_power(x, 0.5)))(jnp.array([-1.0, 0.0, 4.0]))
    np.testing.assert_allclose(gx, [0.0, 0.0, 0.25])
    gp = jax.grad(lambda p: jnp.sum(rectified_power(jnp.array([-1.0, 0.0, 2.0]), p)))(1.3)
    assert np.isfinite(gp) and gp == pytest.approx(2.0**1.3 * np.log(2.0))

