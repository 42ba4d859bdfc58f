"""The ring SSNs: Baseline15, Ring and General (Echeveste et al. 2020).

All three live on the same ring of m E and m I cells (N = 2m, E cells first; cell i
of either population prefers the angle theta_i = 2 pi i / m) and share the input
map and constants of ``momentssn.params.base.Parameterization``:

=============  ==========================================================  ============
name           connectivity W / noise covariance Sigma_eta                 size (m=50)
=============  ==========================================================  ============
``Baseline15`` four von Mises kernels (amplitude, width), a 4-number noise  15
               model (E/I variances, spatial width, E-I correlation)
``Ring``       four symmetric circulant blocks of W (first half-rows),     211
               noise mixing matrix L of four symmetric circulant blocks,
               Sigma_eta = L L^T
``General``    full W (N^2 magnitudes, Dale signs), full mixing L (N^2)    20003
=============  ==========================================================  ============

The default initialization (``Baseline15.default_params``) is a stable network in
the operating range of the published Echeveste et al. (2020) task; ``Ring`` and
``General`` start from the very same network (same W and Sigma_eta), so a fit in the
richer parameterizations starts where the 15-parameter fit starts.  See
``Baseline15`` for the numbers and what they give on the published task.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from .._util import psd_sqrt
from .base import INPUT_FIELDS, DaleMixing, Field, Parameterization, register_parameterization

__all__ = [
    "Baseline15",
    "Ring",
    "General",
    "BASELINE15_DEFAULTS",
    "echeveste_start",
    "echeveste_theta",
    "von_mises_kernel",
    "symmetric_circulant",
    "circulant_half_row",
]


# --------------------------------------------------------------------------- default values

#: Default physical parameters of :class:`Baseline15` (the default initialization of every
#: parameterization).  Units: a_* mV/Hz (per presynaptic cell), d_* and ell_eta
#: dimensionless (kernel widths on the ring, exp((cos dtheta - 1) / d^2)), var_* mV^2,
#: rho dimensionless, in_a mV (per unit h~^in_p), in_b in units of h~, in_p dimensionless.
#: See the ``Baseline15`` docstring for what they give on the published task.
BASELINE15_DEFAULTS: Dict[str, float] = {
    "a_ee": 0.045,
    "d_ee": 0.5,
    "a_ei": 0.035,
    "d_ei": 0.6,
    "a_ie": 0.06,
    "d_ie": 0.6,
    "a_ii": 0.03,
    "d_ii": 0.6,
    "var_e": 3.0,
    "var_i": 1.5,
    "ell_eta": 0.6,
    "rho": 0.0,
    "in_a": 2.0,
    "in_b": 2.0,
    "in_p": 1.0,
}


def echeveste_start(h_raw) -> Dict[str, float]:
    """The start of the published fit: Baseline15 physical parameters (dict).

    The "sensible predetermined initial state vector" of Echeveste et al.'s (2020)
    optimizer: every block a_XY = 0.02 mV/Hz with width d_XY = 0.8; noise variances
    4 mV^2 (std 2 mV) for E and I with ell_eta = 0.8 and rho = 0.8; a linear input
    (in_a = 1 mV, in_p = 1) whose baseline in_b = 1.1 - min(h~, 0) keeps
    h~ + in_b >= 1.1 for every stimulus.  It is a weak, nearly linear network, not a
    solution: on the published task its stationary loss is 0.106.  ``momentssn
    fit-baseline`` starts here.

    Args:
        h_raw: (S, N) raw inputs h~ of the task (only their minimum is used).
    """
    low = min(0.0, float(np.min(np.asarray(h_raw))))
    blocks = {f"{x}_{yz}": v for yz in ("ee", "ei", "ie", "ii") for x, v in (("a", 0.02), ("d", 0.8))}
    return dict(blocks, var_e=4.0, var_i=4.0, ell_eta=0.8, rho=0.8, in_a=1.0, in_b=1.1 - low, in_p=1.0)


# --------------------------------------------------------------------------- ring kernels

def _ring_distance_index(m: int) -> np.ndarray:
    """(m, m) int array min(d, m - d) with d = (j - i) mod m: the ring distance in sites."""
    i = np.arange(m)
    d = (i[None, :] - i[:, None]) % m
    return np.minimum(d, m - d)


def von_mises_kernel(m: int, width) -> jax.Array:
    """K_ij = exp((cos(theta_i - theta_j) - 1) / width^2), theta_i = 2 pi i / m; (m, m).

    Computed from the ring distance min(d, m - d) so that K is exactly symmetric
    and circulant in floating point.  ``width`` (dimensionless, > 0) may be traced.
    """
    dist = _ring_distance_index(m)
    cos = jnp.asarray(np.cos(2.0 * np.pi * dist / m))
    return jnp.exp((cos - 1.0) / width**2)


def symmetric_circulant(half_row: jax.Array, m: int) -> jax.Array:
    """(m, m) symmetric circulant C_ij = c[min(d, m - d)], d = (j - i) mod m.

    half_row: (m // 2 + 1,) the first half-row c_0 .. c_{m//2} (the rest of row 0 is
    its mirror image).  Traceable in ``half_row``.
    """
    return half_row[_ring_distance_index(m)]


def circulant_half_row(block) -> np.ndarray:
    """Project a (m, m) matrix on symmetric circulant matrices; returns its half-row.

    c_k = mean over all (i, j) at ring distance k of block[i, j] (exact, up to rounding,
    for a matrix that is already symmetric circulant).  numpy, not traceable.
    """
    block = np.asarray(block, dtype=np.float64)
    m = block.shape[0]
    dist = _ring_distance_index(m)
    return np.array([block[dist == k].mean() for k in range(m // 2 + 1)])



def _noise_factor(noise_cov) -> np.ndarray:
    """L = Sigma_eta^(1/2), the symmetric PSD root (``momentssn._util.psd_sqrt``), as
    float64 numpy (computed in JAX's float precision: float64 in 64-bit mode, which
    fitting needs).  Being a function of Sigma_eta it keeps its symmetric circulant blocks."""
    C = jnp.asarray(np.asarray(noise_cov, np.float64), jnp.result_type(float))
    return np.asarray(psd_sqrt(C), np.float64)


# --------------------------------------------------------------------------- Baseline15


@register_parameterization
@dataclasses.dataclass(frozen=True)
class Baseline15(Parameterization):
    """The 15-parameter ring SSN of Echeveste et al. (2020).

    Connectivity (mV/Hz), W[i, j] from cell j to cell i, theta_i = 2 pi i / m:

        W_ij = s_j a_XY exp((cos(theta_i - theta_j) - 1) / d_XY^2),  s_j = +1 (E), -1 (I)

    for the blocks XY = EE (W[E, E]), EI (I -> E: W[E, I]), IE (E -> I: W[I, E]), II.
    Noise covariance (mV^2), K_ij = exp((cos(theta_i - theta_j) - 1) / ell_eta^2):

        Sigma_eta = [[var_e K, rho sqrt(var_e var_i) K], [rho sqrt(var_e var_i) K, var_i K]]
                    + noise_jitter I            (noise_jitter = 0.01 mV^2, fixed)

    Input: h = in_a [h~ + in_b]_+^in_p (mV).  Parameters, in theta order:
    ``a_ee d_ee a_ei d_ei a_ie d_ie a_ii d_ii var_e var_i ell_eta rho in_a in_b in_p``.

    Defaults (``BASELINE15_DEFAULTS``): a_ee = 0.045, d_ee = 0.5, a_ei = 0.035,
    a_ie = 0.06, a_ii = 0.03, the other widths 0.6; var_e = 3, var_i = 1.5 mV^2,
    ell_eta = 0.6, rho = 0; in_a = 2 mV, in_b = 2, in_p = 1.  Summed over the ring
    (sum_j K_ij = 10.35 for d = 0.5, 12.70 for d = 0.6 at m = 50) they make a
    2-population SSN with W_EE = 0.47, W_EI = -0.44, W_IE = 0.76, W_II = -0.38 mV/Hz
    (the regime of the Hennequin et al. 2018 network, scaled by ~0.4).  On the
    published task inputs (h = 2 (h~ + 2) in 4..14.5 mV) the network is stable for all
    5 stimuli (largest Re eig of J -0.041 .. -0.039 /ms), with E means 2.95 mV
    (contrast 0) up to 3.0..5.9 mV (contrast 1, off/on the stimulus orientation) and
    E stds 1.53 .. 1.40 mV: in the range of the targets (means 3.1..7.5 mV, stds
    0.8..2.1 mV) but not fitted to them.  The stationary loss (``momentssn.losses``,
    default weights) at these defaults on the published targets is 0.0505
    (per stimulus 0.094, 0.074, 0.031, 0.019, 0.034).
    """

    noise_jitter: float = 0.01

    kind: ClassVar[str] = "baseline15"

    @property
    def fields(self) -> Tuple[Field, ...]:
        pos = "positive"
        return (
            Field("a_ee", (), pos, "mV/Hz"),
            Field("d_ee", (), pos, ""),
            Field("a_ei", (), pos, "mV/Hz"),
            Field("d_ei", (), pos, ""),
            Field("a_ie", (), pos, "mV/Hz"),
            Field("d_ie", (), pos, ""),
            Field("a_ii", (), pos, "mV/Hz"),
            Field("d_ii", (), pos, ""),
            Field("var_e", (), pos, "mV^2"),
            Field("var_i", (), pos, "mV^2"),
            Field("ell_eta", (), pos, ""),
            Field("rho", (), "correlation", ""),
        ) + INPUT_FIELDS

    def default_params(self) -> Dict[str, float]:
        return dict(BASELINE15_DEFAULTS)

    def connectivity(self, params) -> jax.Array:
        """W = [[a_ee K(d_ee), -a_ei K(d_ei)], [a_ie K(d_ie), -a_ii K(d_ii)]] (N, N), mV/Hz."""
        m, p = self.m, params
        ker = lambda a, d: a * von_mises_kernel(m, d)  # noqa: E731
        top = jnp.concatenate([ker(p["a_ee"], p["d_ee"]), -ker(p["a_ei"], p["d_ei"])], axis=1)
        bot = jnp.concatenate([ker(p["a_ie"], p["d_ie"]), -ker(p["a_ii"], p["d_ii"])], axis=1)
        return jnp.concatenate([top, bot], axis=0)

    def noise_covariance(self, params) -> jax.Array:
        """Sigma_eta = [[ve, c], [c, vi]] (x) K(ell_eta) + jitter I, c = rho sqrt(ve vi); mV^2."""
        p = params
        K = von_mises_kernel(self.m, p["ell_eta"])
        c = p["rho"] * jnp.sqrt(p["var_e"] * p["var_i"])
        top = jnp.concatenate([p["var_e"] * K, c * K], axis=1)
        bot = jnp.concatenate([c * K, p["var_i"] * K], axis=1)
        return jnp.concatenate([top, bot], axis=0) + self.noise_jitter * jnp.eye(self.N)


def _baseline_for(param: Parameterization) -> Baseline15:
    consts = {f.name: getattr(param, f.name) for f in dataclasses.fields(Parameterization)}
    return Baseline15(**consts)


def _baseline_arrays(param: Parameterization, theta15):
    """(|W| (N, N), Sigma_eta (N, N), input params) of a Baseline15 theta, as numpy."""
    base = _baseline_for(param)
    p = {k: np.asarray(v) for k, v in base.from_theta(np.asarray(theta15, np.float64)).items()}
    W = np.asarray(base.connectivity({k: jnp.asarray(v) for k, v in p.items()}))
    S = np.asarray(base.noise_covariance({k: jnp.asarray(v) for k, v in p.items()}))
    inp = {f.name: float(p[f.name]) for f in INPUT_FIELDS}
    return np.abs(W), S, inp


def echeveste_theta(param: Parameterization, h_raw) -> jax.Array:
    """theta of ``echeveste_start(h_raw)`` in ``param``: the Baseline15 theta, or for
    Ring / General the theta of the same network."""
    theta15 = _baseline_for(param).to_theta(echeveste_start(h_raw))
    return theta15 if isinstance(param, Baseline15) else param.theta_from_baseline(theta15)


# --------------------------------------------------------------------------- Ring


class _FromBaseline:
    """Ring and General start where Baseline15 starts: their default is Baseline15's network."""

    def theta_from_baseline(self, theta15) -> jax.Array:
        """The theta of this parameterization for the network of a ``Baseline15`` theta."""
        return self.to_theta(self.params_from_arrays(*_baseline_arrays(self, theta15)))

    def default_params(self) -> Dict[str, object]:
        base = _baseline_for(self)
        return self.params_from_arrays(*_baseline_arrays(self, base.default_theta()))


@register_parameterization
@dataclasses.dataclass(frozen=True)
class Ring(_FromBaseline, Parameterization):
    """Rotation- and reflection-invariant SSN: every m x m block symmetric circulant.

    Each block is set by its first half-row c_0 .. c_{m//2} (h = m//2 + 1 numbers,
    26 for m = 50): block[i, j] = c[min(d, m - d)], d = (j - i) mod m.

        W = [[w_ee, -w_ei], [w_ie, -w_ii]]   (blocks of magnitudes >= 0, Dale signs)
        L = [[mix_ee, mix_ei], [mix_ie, mix_ii]]   (any sign),  Sigma_eta = L L^T

    so Sigma_eta is PSD by construction.  Parameters: ``w_ee w_ei w_ie w_ii`` (h,)
    mV/Hz (magnitudes, log-parameterized), ``mix_ee mix_ei mix_ie mix_ii`` (h,) mV
    (free), then ``in_a in_b in_p``; 8 h + 3 = 211 numbers for m = 50.

    Default: Baseline15's default network (``theta_from_baseline``): its kernels are
    symmetric circulant, so W is reproduced exactly, and L = Sigma_eta^(1/2) (the
    symmetric square root, whose blocks are symmetric circulant too).
    """

    kind: ClassVar[str] = "ring"

    @property
    def half(self) -> int:
        """Length of a half-row, m // 2 + 1."""
        return self.m // 2 + 1

    @property
    def fields(self) -> Tuple[Field, ...]:
        h = (self.half,)
        w = tuple(Field(f"w_{b}", h, "positive", "mV/Hz") for b in ("ee", "ei", "ie", "ii"))
        mix = tuple(Field(f"mix_{b}", h, "real", "mV") for b in ("ee", "ei", "ie", "ii"))
        return w + mix + INPUT_FIELDS

    def _blocks(self, p, prefix, signs):
        c = lambda b: symmetric_circulant(p[f"{prefix}_{b}"], self.m)  # noqa: E731
        se, si = signs
        top = jnp.concatenate([se * c("ee"), si * c("ei")], axis=1)
        bot = jnp.concatenate([se * c("ie"), si * c("ii")], axis=1)
        return jnp.concatenate([top, bot], axis=0)

    def connectivity(self, params) -> jax.Array:
        """W = [[C(w_ee), -C(w_ei)], [C(w_ie), -C(w_ii)]] (N, N), mV/Hz."""
        return self._blocks(params, "w", (1.0, -1.0))

    def mixing(self, params) -> jax.Array:
        """L = [[C(mix_ee), C(mix_ei)], [C(mix_ie), C(mix_ii)]] (N, N), mV."""
        return self._blocks(params, "mix", (1.0, 1.0))

    def noise_covariance(self, params) -> jax.Array:
        """Sigma_eta = L L^T (N, N), mV^2."""
        L = self.mixing(params)
        return L @ L.T

    def params_from_arrays(self, W_abs, noise_cov, input_params) -> Dict[str, object]:
        """Physical params from |W| and Sigma_eta, projected on symmetric circulant blocks.

        |W| entries are floored at 1e-300 (log map); L = Sigma_eta^(1/2).
        """
        m = self.m
        L = _noise_factor(noise_cov)
        W_abs = np.maximum(np.asarray(W_abs, np.float64), 1e-300)
        out = {}
        for name, (r, c) in zip(("ee", "ei", "ie", "ii"), ((0, 0), (0, 1), (1, 0), (1, 1))):
            blk = (slice(r * m, (r + 1) * m), slice(c * m, (c + 1) * m))
            out[f"w_{name}"] = circulant_half_row(W_abs[blk])
            out[f"mix_{name}"] = circulant_half_row(L[blk])
        out.update(input_params)
        return out


# --------------------------------------------------------------------------- General


@register_parameterization
@dataclasses.dataclass(frozen=True)
class General(_FromBaseline, DaleMixing, Parameterization):
    """Unstructured SSN: every weight and every noise-mixing entry free.

        W_ij = s_j w_abs_ij   (s_j = +1 for E, -1 for I: Dale's law; w_abs log-parameterized)
        Sigma_eta = L L^T     (L (N, N), any sign: PSD by construction)

    Parameters: ``w_abs`` (N, N) mV/Hz, ``mix`` (N, N) mV, ``in_a in_b in_p``;
    2 N^2 + 3 = 20003 numbers for m = 50.

    Default: Baseline15's default network (``theta_from_baseline``): w_abs = |W|
    (every entry > 0 for von Mises kernels), L = Sigma_eta^(1/2) (symmetric square root).
    """

    kind: ClassVar[str] = "general"

    @property
    def fields(self) -> Tuple[Field, ...]:
        N = self.N
        return (
            Field("w_abs", (N, N), "positive", "mV/Hz"),
            Field("mix", (N, N), "real", "mV"),
        ) + INPUT_FIELDS

    def params_from_arrays(self, W_abs, noise_cov, input_params) -> Dict[str, object]:
        """Physical params from |W| (floored at 1e-300) and Sigma_eta (L = Sigma_eta^(1/2))."""
        out = {
            "w_abs": np.maximum(np.asarray(W_abs, np.float64), 1e-300),
            "mix": _noise_factor(noise_cov),
        }
        out.update(input_params)
        return out
