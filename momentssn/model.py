"""The stochastic stabilized supralinear network (SSN).

Units: time in ms, membrane potential u in mV, rates r in Hz.

    tau_i du_i/dt = -u_i + h_i + sum_j W_ij r_j + eta_i          (W[i, j]: from j to i)
    r_j = k [u_j]_+^n
    tau_eta d eta = -eta dt + sqrt(2 tau_eta) L dB,   L L^T = Sigma_eta (= noise_cov)

``noise_cov`` is the *stationary* covariance of the Ornstein-Uhlenbeck input noise
and ``tau_noise`` its correlation time.  By convention excitatory cells come first:
neurons ``0 .. n_exc-1`` are E, the rest I (Dale's law: E columns of W >= 0, I
columns <= 0).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from ._util import is_concrete

__all__ = ["SSN", "rate", "check_finite"]


def rate(u, k, n):
    """Power-law transfer function r = k [u]_+^n (Hz), u in mV."""
    return k * jnp.maximum(u, 0.0) ** n


def check_finite(name: str, x) -> None:
    """Raise ``ValueError`` naming ``name`` if a concrete array holds NaN or inf."""
    if is_concrete(x) and not bool(np.all(np.isfinite(np.asarray(x)))):
        raise ValueError(f"{name} contains NaN or inf")


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, eq=False)
class SSN:
    """An immutable stochastic SSN (a JAX pytree).

    Args:
        W: (N, N) connectivity in mV/Hz, ``W[i, j]`` from neuron j to neuron i.
        tau: (N,) membrane time constants (ms), > 0.
        noise_cov: (N, N) stationary covariance of the input noise eta (mV^2),
            symmetric positive semi-definite.
        tau_noise: scalar correlation time of the input noise (ms), > 0.
        k: scalar gain of the power law (Hz / mV^n), > 0.  Default 0.3.
        n: scalar exponent of the power law, any real >= 1.  Default 2.
        n_exc: number of excitatory neurons (they come first); ``None`` if the
            network has no E/I split.  Static (not a pytree leaf).

    All leaves are converted to JAX arrays of JAX's default float dtype (float64
    only if the user enabled ``jax_enable_x64``).  Values are validated when they
    are concrete; inside ``jit``/``grad`` only shapes are checked.
    """

    W: jax.Array
    tau: jax.Array
    noise_cov: jax.Array
    tau_noise: jax.Array
    k: jax.Array = 0.3
    n: jax.Array = 2.0
    n_exc: Optional[int] = None

    def __post_init__(self):
        conv = {}
        for name in ("W", "tau", "noise_cov", "tau_noise", "k", "n"):
            val = getattr(self, name)
            if not hasattr(val, "dtype") or not jnp.issubdtype(val.dtype, jnp.floating):
                val = jnp.asarray(val, dtype=jnp.result_type(float))
            else:
                val = jnp.asarray(val)
            conv[name] = val
        for name, val in conv.items():
            object.__setattr__(self, name, val)
        _validate(self)

    # ---- pytree protocol: unflatten bypasses validation (leaves may be tracers,
    # batched or placeholder objects inside JAX transformations).
    def tree_flatten(self):
        return (self.W, self.tau, self.noise_cov, self.tau_noise, self.k, self.n), self.n_exc

    @classmethod
    def tree_unflatten(cls, n_exc, leaves):
        obj = object.__new__(cls)
        for name, val in zip(("W", "tau", "noise_cov", "tau_noise", "k", "n"), leaves):
            object.__setattr__(obj, name, val)
        object.__setattr__(obj, "n_exc", n_exc)
        return obj

    # ---- convenience
    @property
    def N(self) -> int:
        """Number of neurons."""
        return self.W.shape[-1]

    @property
    def n_inh(self) -> Optional[int]:
        return None if self.n_exc is None else self.N - self.n_exc

    @property
    def dtype(self):
        return self.W.dtype

    @property
    def is_exc(self) -> np.ndarray:
        """(N,) bool mask of excitatory neurons (all False if no E/I split)."""
        mask = np.zeros(self.N, dtype=bool)
        if self.n_exc is not None:
            mask[: self.n_exc] = True
        return mask

    def replace(self, **changes) -> "SSN":
        """A copy with some fields replaced (validated like the constructor)."""
        return dataclasses.replace(self, **changes)

    def astype(self, dtype) -> "SSN":
        """The same network with every leaf cast to ``dtype``."""
        return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), self)

    def dale_violation(self) -> float:
        """Largest violation of Dale's law (0 if respected): max of E-column
        negative parts and I-column positive parts of W."""
        if self.n_exc is None:
            raise ValueError("n_exc is None: this network has no E/I split")
        W = np.asarray(self.W)
        e = -np.minimum(W[:, : self.n_exc], 0.0)
        i = np.maximum(W[:, self.n_exc :], 0.0)
        return float(max(e.max(initial=0.0), i.max(initial=0.0)))

    def satisfies_dale(self, atol: float = 0.0) -> bool:
        """True if E columns of W are >= -atol and I columns <= atol."""
        return self.dale_violation() <= atol

    @classmethod
    def two_population(
        cls,
        W=((1.25, -0.65), (1.2, -0.5)),
        tau=(20.0, 10.0),
        noise_cov=((0.056, 0.0), (0.0, 0.012)),
        tau_noise=50.0,
        k=0.3,
        n=2.0,
    ) -> "SSN":
        """The 2-population (1 E, 1 I) network of Hennequin et al. (2018)."""
        return cls(np.asarray(W), np.asarray(tau), np.asarray(noise_cov), tau_noise, k, n, n_exc=1)


def _validate(net: SSN) -> None:
    W, tau, S, tn, k, n = net.W, net.tau, net.noise_cov, net.tau_noise, net.k, net.n
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"W must be a square (N, N) matrix, got shape {W.shape}")
    N = W.shape[0]
    if N < 1:
        raise ValueError("W must have at least one neuron")
    if tau.shape != (N,):
        raise ValueError(f"tau must have shape ({N},) to match W, got {tau.shape}")
    if S.shape != (N, N):
        raise ValueError(f"noise_cov must have shape ({N}, {N}) to match W, got {S.shape}")
    for name, val in (("tau_noise", tn), ("k", k), ("n", n)):
        if val.shape != ():
            raise ValueError(f"{name} must be a scalar, got shape {val.shape}")
    if net.n_exc is not None and not (0 <= int(net.n_exc) <= N):
        raise ValueError(f"n_exc must be between 0 and N={N}, got {net.n_exc}")
    for name in ("W", "tau", "noise_cov", "tau_noise", "k", "n"):
        check_finite(name, getattr(net, name))
    if is_concrete(tau) and np.any(np.asarray(tau) <= 0):
        raise ValueError(f"tau must be > 0 (ms), got min {float(np.min(np.asarray(tau)))}")
    if is_concrete(tn) and float(tn) <= 0:
        raise ValueError(f"tau_noise must be > 0 (ms), got {float(tn)}")
    if is_concrete(k) and float(k) <= 0:
        raise ValueError(f"k must be > 0, got {float(k)}")
    if is_concrete(n) and float(n) < 1:
        raise ValueError(f"n must be >= 1, got {float(n)}")
    if is_concrete(S):
        Sn = np.asarray(S, dtype=np.float64)
        scale = max(1.0, float(np.max(np.abs(Sn))))
        tol = 1e3 * np.finfo(np.asarray(S).dtype).eps * scale
        asym = float(np.max(np.abs(Sn - Sn.T)))
        if asym > tol:
            raise ValueError(f"noise_cov must be symmetric (max |S - S^T| = {asym:.3g})")
        lmin = float(np.linalg.eigvalsh(0.5 * (Sn + Sn.T)).min())
        if lmin < -tol * N:
            raise ValueError(
                f"noise_cov must be positive semi-definite (smallest eigenvalue {lmin:.3g})"
            )
