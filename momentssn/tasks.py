"""Training tasks: network inputs and the target moments a fit must reproduce.

A :class:`Task` holds, for S stimuli, the raw feedforward input h~ (S, N_net) of every
network cell (E cells first, then I cells) and the target mean (S, M) and covariance
(S, M, M) of the membrane potential of the M excitatory cells that have targets
(mV, mV^2), plus what produced them when known (images, GSM filters and prior).

Three sources:

* :func:`default_task` -- the embedded task in the style of Echeveste et al. (2020),
  generated in code from a Gaussian scale mixture (:mod:`momentssn.gsm.model`), targets
  exact to ~1e-14 (float64 quadrature);
* :func:`natural_image_task` -- natural image patches at several contrasts, targets from
  a (maximum-likelihood) GSM with learned filters (:mod:`momentssn.gsm`);
* :func:`load_task` -- a task ``.npz`` such as the published one
  (keys ``images, filters, prior_cov, inputs, target_mean, target_cov``); :meth:`Task.save`
  writes the same format.

:func:`get_task` maps a command-line spec ("default" or a path) to a task.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import zipfile
from typing import Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from .gsm.model import GSM
from .moments import Moments
from .datasets import BUILTIN_TASKS

__all__ = [
    "Task",
    "default_task",
    "natural_image_task",
    "NATURAL_CONTRASTS",
    "latents_rescaled",
    "latent_scale",
    "TARGET_VARIANCE",
    "load_task",
    "get_task",
    "gabor_filters",
    "ring_prior_cov",
    "orientation_bump",
    "PUBLISHED_CONTRASTS",
]

#: Contrasts z of the 5 published stimuli (x = z A y*).
PUBLISHED_CONTRASTS = (0.0, 0.125, 0.25, 0.5, 1.0)
#: h~ = A^T x * INPUT_SCALE (Echeveste et al. 2020).
INPUT_SCALE = 1.0 / 15.0
#: Constant added to the GSM posterior means to make the target means (mV).
BASELINE = 3.0

_ARRAYS = ("inputs", "target_mean", "target_cov", "contrasts", "images", "filters", "prior_cov")
_REQUIRED = ("inputs", "target_mean", "target_cov")
_GSM_KEYS = ("gsm_sigma_x", "gsm_alpha", "gsm_beta")


# --------------------------------------------------------------------------- the container


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """What a fit needs (immutable; arrays are read-only float64 numpy arrays).

    Attributes:
        inputs: (S, N_net) raw feedforward input h~ of every cell (E cells, then I cells).
        target_mean: (S, M) target mean membrane potential of the first M = n_exc E cells (mV).
        target_cov: (S, M, M) target covariance of those cells (mV^2), symmetric.
        contrasts: (S,) stimulus contrasts z (NaN where unknown).
        n_exc: number of E cells, which are the cells with targets (default M).
        name: a label.
        images: optional (S, P) stimuli x.
        filters: optional (P, M) GSM projective fields A.
        prior_cov: optional (M, M) GSM prior covariance C.
        gsm: optional :class:`~momentssn.gsm.model.GSM` that produced the targets.
    """

    inputs: np.ndarray
    target_mean: np.ndarray
    target_cov: np.ndarray
    contrasts: Optional[np.ndarray] = None
    n_exc: Optional[int] = None
    name: str = "task"
    images: Optional[np.ndarray] = None
    filters: Optional[np.ndarray] = None
    prior_cov: Optional[np.ndarray] = None
    gsm: Optional[GSM] = None

    def __post_init__(self):
        for key in _ARRAYS:
            val = getattr(self, key)
            if val is None:
                continue
            arr = np.array(val, dtype=np.float64)  # a private copy
            arr.setflags(write=False)
            object.__setattr__(self, key, arr)
        S = self.inputs.shape[0] if self.inputs.ndim >= 1 else 0
        if self.contrasts is None:
            c = np.array(PUBLISHED_CONTRASTS if S == len(PUBLISHED_CONTRASTS) else [np.nan] * S)
            c.setflags(write=False)
            object.__setattr__(self, "contrasts", c)
        if self.n_exc is None and self.target_mean.ndim == 2:
            object.__setattr__(self, "n_exc", int(self.target_mean.shape[1]))
        elif isinstance(self.n_exc, np.integer):
            object.__setattr__(self, "n_exc", int(self.n_exc))
        object.__setattr__(self, "name", str(self.name))
        _validate(self)

    def __repr__(self) -> str:
        extra = [k for k in ("images", "filters", "prior_cov", "gsm") if getattr(self, k) is not None]
        return (
            f"Task(name={self.name!r}, S={self.n_stimuli}, N_net={self.n_net}, M={self.n_targets}, "
            f"n_exc={self.n_exc}, contrasts={self.contrasts.tolist()}, with={extra})"
        )

    # ---- sizes
    @property
    def n_stimuli(self) -> int:
        """S."""
        return self.inputs.shape[0]

    @property
    def n_net(self) -> int:
        """N_net, the number of network cells receiving input."""
        return self.inputs.shape[1]

    @property
    def n_targets(self) -> int:
        """M, the number of cells with targets (the first M E cells)."""
        return self.target_mean.shape[1]

    @property
    def targets(self) -> Moments:
        """The targets as ``Moments(mean (S, M), cov (S, M, M))`` (JAX arrays, default dtype)."""
        return Moments(jnp.asarray(self.target_mean), jnp.asarray(self.target_cov))

    def replace(self, **changes) -> "Task":
        """A copy with some fields replaced (validated like the constructor)."""
        return dataclasses.replace(self, **changes)

    def save(self, path: Union[str, os.PathLike]) -> str:
        """Write the task as an ``.npz`` readable by :func:`load_task`; returns the path written.

        Keys: ``inputs, target_mean, target_cov, contrasts, n_exc, name`` and, when
        present, ``images, filters, prior_cov`` and ``gsm_sigma_x, gsm_alpha, gsm_beta``.
        numpy appends ``.npz`` to a path without that suffix.
        """
        out = {key: getattr(self, key) for key in _ARRAYS if getattr(self, key) is not None}
        out["n_exc"] = np.asarray(self.n_exc, dtype=np.int64)
        out["name"] = np.asarray(self.name)
        if self.gsm is not None:
            out["gsm_sigma_x"] = np.asarray(self.gsm.sigma_x, dtype=np.float64)
            out["gsm_alpha"] = np.asarray(self.gsm.alpha, dtype=np.float64)
            out["gsm_beta"] = np.asarray(self.gsm.beta, dtype=np.float64)
        path = os.fspath(path)
        np.savez(path, **out)
        return path if path.endswith(".npz") else path + ".npz"


def _validate(t: Task) -> None:
    def need(cond, msg):
        if not cond:
            raise ValueError(f"task {t.name!r}: {msg}")

    need(t.inputs.ndim == 2, f"inputs must be (S, N_net), got shape {t.inputs.shape}")
    S, N = t.inputs.shape
    need(S >= 1, "inputs must hold at least one stimulus")
    need(
        t.target_mean.ndim == 2 and t.target_mean.shape[0] == S,
        f"target_mean must be (S={S}, M), got shape {t.target_mean.shape}",
    )
    M = t.target_mean.shape[1]
    need(t.target_cov.shape == (S, M, M), f"target_cov must be ({S}, {M}, {M}), got shape {t.target_cov.shape}")
    need(t.contrasts.shape == (S,), f"contrasts must be ({S},), got shape {t.contrasts.shape}")
    need(isinstance(t.n_exc, (int, np.integer)), f"n_exc must be an int, got {t.n_exc!r}")
    need(M <= t.n_exc <= N, f"need M={M} <= n_exc <= N_net={N}, got n_exc={t.n_exc}")
    if t.images is not None:
        need(t.images.ndim == 2 and t.images.shape[0] == S, f"images must be (S={S}, P), got shape {t.images.shape}")
    if t.filters is not None:
        need(
            t.filters.ndim == 2 and t.filters.shape[1] == M,
            f"filters must be (P, M={M}), got shape {t.filters.shape}",
        )
        if t.images is not None:
            need(
                t.filters.shape[0] == t.images.shape[1],
                f"filters have P={t.filters.shape[0]} pixels but images have {t.images.shape[1]}",
            )
    if t.prior_cov is not None:
        need(t.prior_cov.shape == (M, M), f"prior_cov must be ({M}, {M}), got shape {t.prior_cov.shape}")
    for key in _ARRAYS:
        val = getattr(t, key)
        if val is not None and key != "contrasts":
            need(bool(np.all(np.isfinite(val))), f"{key} contains NaN or inf")
    asym = float(np.max(np.abs(t.target_cov - np.swapaxes(t.target_cov, -1, -2))))
    tol = 1e-8 * max(1.0, float(np.max(np.abs(t.target_cov))))
    need(asym <= tol, f"target_cov is not symmetric (max asymmetry {asym:.3g})")


# --------------------------------------------------------------------------- the default task


def gabor_filters(n_orient: int = 50, size: int = 16, sigma: float = 2.5, wavelength: float = 5.0) -> np.ndarray:
    """(size^2, n_orient) unit-norm even Gabor filters differing only in orientation.

    Filter j, orientation phi_j = pi j / n_orient, on pixel (row r, column c), both
    centred at (size - 1) / 2 (so x = c - 7.5, y = r - 7.5 for size 16)::

        g_j(x, y) = exp(-(x^2 + y^2) / (2 sigma^2)) cos(2 pi (x cos phi_j + y sin phi_j) / wavelength)

    normalised to unit Euclidean norm and flattened row-major (pixel index r * size + c).
    Defaults (sigma 2.5 px, wavelength 5 px) reproduce the published filters to ~1e-15.
    """
    c = 0.5 * (size - 1)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) - c
    phi = np.pi * np.arange(n_orient) / n_orient
    xr = xx[None] * np.cos(phi)[:, None, None] + yy[None] * np.sin(phi)[:, None, None]
    g = np.exp(-(xx**2 + yy**2) / (2.0 * sigma**2))[None] * np.cos(2.0 * np.pi * xr / wavelength)
    g = g.reshape(n_orient, -1)
    return (g / np.linalg.norm(g, axis=1, keepdims=True)).T


def ring_prior_cov(
    n: int = 50,
    var: float = 4.0,
    rho: float = float(np.exp(-1.0)),
    amp: float = 0.4,
    offset: float = 0.25,
    jitter: float = 0.01,
) -> np.ndarray:
    """(n, n) smooth ring-structured prior covariance C over orientation (period pi).

    With phi_i = pi i / n and the Poisson (wrapped-Cauchy) kernel on the orientation ring::

        P(d)   = (1 - rho^2) / (1 - 2 rho cos(2 d) + rho^2) = sum_f rho^|f| e^{2 i f d}
        K_ij   = jitter delta_ij + amp P(phi_i - phi_j) - offset
        C      = var K / K_00                                 (so C_ii = var = 4)

    Its eigenvectors are the Fourier modes of the ring; before the scaling
    (factor ~6.39) the eigenvalue of harmonic f is jitter + amp n rho^|f| (= 0.01 + 20 e^-|f|
    by default, aliasing ~e^-50 neglected), minus offset n = 12.5 for f = 0.  So C is
    positive definite (smallest eigenvalue ~0.064, largest ~48), correlations decay over
    ~20 deg and turn slightly negative (-0.1 of the variance) at 90 deg.  These numbers
    reproduce the published task's prior_cov to 2e-10 (a spectral construction of the
    authors' scripts: eigenvalues 20 e^-f, a 0.01 regulariser, a -0.25 offset, diagonal 4).
    """
    phi = np.pi * np.arange(n) / n
    d = phi[:, None] - phi[None, :]
    P = (1.0 - rho**2) / (1.0 - 2.0 * rho * np.cos(2.0 * d) + rho**2)
    K = jitter * np.eye(n) + amp * P - offset
    C = var * K / K[0, 0]
    return 0.5 * (C + C.T)


def orientation_bump(
    n: int = 50, amplitude: float = 6.0, width: float = 0.15 * np.pi, center: float = 0.5 * np.pi
) -> np.ndarray:
    """(n,) the latent pattern y*: a Gaussian bump over orientation phi_j = pi j / n.

        y*_j = amplitude exp(-d_j^2 / (2 width^2)),   d_j = phi_j - center wrapped to [-pi/2, pi/2)

    Defaults: peak 6 at 90 deg, width 27 deg (0.15 of the ring), as in the published images.
    """
    phi = np.pi * np.arange(n) / n
    dphi = np.mod(phi - center + 0.5 * np.pi, np.pi) - 0.5 * np.pi
    return amplitude * np.exp(-(dphi**2) / (2.0 * width**2))


def default_task() -> Task:
    """The embedded default task, in the style of Echeveste et al. (2020).

    * A: :func:`gabor_filters` -- 50 unit-norm Gabors on 16 x 16 images, orientations pi j / 50;
    * C: :func:`ring_prior_cov` -- the ring prior (diagonal 4, eigenvalues 0.064 .. 48);
    * GSM with sigma_x = 10 and z ~ Gamma(shape 2, scale 2), i.e. rate beta = 1/2;
    * 5 stimuli x = z A y* for z = 0, 0.125, 0.25, 0.5, 1, y* = :func:`orientation_bump`
      (peak 6, width 27 deg, centred at 90 deg); no pixel noise;
    * inputs h~ = A^T x / 15 for the 50 E cells, the same for the 50 I cells: (5, 100);
    * targets: the exact GSM posterior moments of y (quadrature error ~1e-14), the means
      shifted by a baseline of 3 mV.

    Images, filters, inputs and prior coincide with the published task (to 2e-10), so the
    inputs are the published ones (E-cell input peaks at 0, 0.65, 1.31, 2.62, 5.23).  The
    released targets differ (they are not exactly the GSM posterior; see the task's
    README): here the target means peak at 3.00, 3.71, 4.40, 5.33, 6.09 mV (released 3.25,
    3.78, 4.86, 6.40, 7.45) and the variances span 2.52, 2.39-2.41, 2.03-2.12, 1.32-1.73,
    0.84-1.63 mV^2 (released 4.41, 4.08-4.22, 2.89-3.77, 1.27-2.92, 0.59-1.97): the same
    trends (mean up, variance down with contrast) at somewhat smaller amplitudes.
    Deterministic (no randomness).  Computed once per process (cached); needs JAX float64
    for the stated accuracy (in float32 a warning is issued and the targets are good to
    ~1e-5 relative).
    """
    return _default_task(bool(jax.config.jax_enable_x64))


def gsm_task(gsm: GSM, images, contrasts, baseline: float, name: str) -> Task:
    """The task of a GSM: targets are its posterior moments for ``images`` (S, P), shifted
    by ``baseline`` mV; inputs h~ = A^T x INPUT_SCALE, the same to the M E and M I cells.

    contrasts: (S,) the contrast of each image (for figures and reports).
    """
    A = np.asarray(gsm.filters, dtype=np.float64)
    post = gsm.posterior_moments(images)
    h = images @ A * INPUT_SCALE
    return Task(
        inputs=np.concatenate([h, h], axis=1),
        target_mean=baseline + np.asarray(post.mean, dtype=np.float64),
        target_cov=np.asarray(post.cov, dtype=np.float64),
        contrasts=np.asarray(contrasts, dtype=np.float64),
        n_exc=A.shape[1],
        name=name,
        images=images,
        filters=A,
        prior_cov=np.asarray(gsm.prior_cov, dtype=np.float64),
        gsm=gsm,
    )


@functools.lru_cache(maxsize=2)
def _default_task(_x64: bool) -> Task:
    A = gabor_filters()
    C = ring_prior_cov()
    gsm = GSM(A, C, sigma_x=10.0, alpha=2.0, beta=0.5)
    z = np.asarray(PUBLISHED_CONTRASTS)
    images = z[:, None] * (A @ orientation_bump())[None, :]
    return gsm_task(gsm, images, z, BASELINE, "default")


# --------------------------------------------------------------------------- natural images

#: Default contrasts of the natural-image task (multiples of each normalized patch).
NATURAL_CONTRASTS = (0.0, 0.5, 1.0, 2.0, 4.0)


def natural_image_task(
    gsm: GSM, patches, contrasts=NATURAL_CONTRASTS, name: str = "natural", baseline: float = BASELINE
) -> Task:
    """A task for an SSN of N = 2M cells whose M E cells have the GSM's filters as receptive fields.

    Stimuli: every patch (n, P) at every contrast c (S = n len(contrasts), patch-major:
    stimulus i len(contrasts) + j is x = c_j patch_i).  As in :func:`default_task`:

        h~ = A^T x * INPUT_SCALE          for the M E cells, the same for the M I cells: (S, 2M)
        target mean = baseline + E[y | x],   target cov = Cov[y | x]     (GSM posterior, mV, mV^2)

    Use it with ``get_parameterization("general", m=M)`` (3 + 2 N^2 parameters).  Typically
    ``gsm`` is a maximum-likelihood fit (``momentssn.gsm.ml.fit_ml_gsm``) and ``patches``
    held-out natural patches (``momentssn.gsm.patches``).
    """
    X = np.atleast_2d(np.asarray(patches, dtype=np.float64))
    c = np.asarray(contrasts, dtype=np.float64).ravel()
    if X.ndim != 2 or X.shape[1] != gsm.n_pixels:
        raise ValueError(f"patches must be (n, P={gsm.n_pixels}), got shape {X.shape}")
    if c.size == 0 or not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError(f"contrasts must be finite and >= 0, got {c.tolist()}")
    images = (X[:, None, :] * c[None, :, None]).reshape(-1, X.shape[1])
    return gsm_task(gsm, images, np.tile(c, X.shape[0]), baseline, name)


#: Median target variance (mV^2) at contrast 0 after :func:`latents_rescaled` (the
#: published task's variances are 0.8-2.5 mV^2).
TARGET_VARIANCE = 2.0


def _zero_contrast(task: Task) -> np.ndarray:
    """(S,) bool: the stimuli at contrast 0 (none if the task has no contrasts)."""
    if task.contrasts is None:
        return np.zeros(task.n_stimuli, bool)
    return np.asarray(task.contrasts) == 0


def latent_scale(task: Task, variance: float = TARGET_VARIANCE) -> float:
    """The factor s of :func:`latents_rescaled`: s^2 times the median target variance of
    the zero-contrast stimuli (of all stimuli if none) is ``variance`` mV^2."""
    if not (math.isfinite(variance) and variance > 0):
        raise ValueError(f"variance must be a finite number > 0 (mV^2), got {variance!r}")
    var = np.diagonal(task.target_cov, axis1=1, axis2=2)
    zero = _zero_contrast(task)
    return math.sqrt(variance / float(np.median(var[zero] if np.any(zero) else var)))


def latents_rescaled(task: Task, variance: float = TARGET_VARIANCE) -> Task:
    """The task with the GSM latents y in units where the median target variance of the
    zero-contrast stimuli (of all stimuli if none) is ``variance`` mV^2.

    The GSM x = z A y + noise does not fix the unit of y (A y = (A / s)(s y)), so for one
    factor s > 0: target mean = baseline + s (mean - baseline), target cov = s^2 cov, prior
    cov s^2 C (baseline = the mean at contrast 0, 3 mV).  The raw inputs h~ are kept: the
    change of A to A / s scales them by 1 / s, which the learnable input map absorbs
    exactly (in_a [h~ / s + in_b]^p = in_a s^-p [h~ + s in_b]^p).  The GSM object is
    dropped (its C is in the old units).  Why: with M = 16 learned filters on 16 x 16
    patches, A^T A has condition number ~1e4, and the ML prior variances of y span 14 to
    2450 (posterior means to +-65 "mV"), far outside an SSN's range.
    """
    s = latent_scale(task, variance)
    zero = _zero_contrast(task)
    base = float(np.median(task.target_mean[zero])) if np.any(zero) else 0.0
    return task.replace(target_mean=base + s * (task.target_mean - base), target_cov=s**2 * task.target_cov,
                        prior_cov=None if task.prior_cov is None else s**2 * task.prior_cov, gsm=None,
                        name=f"{task.name} (y x {s:.3g})")


# --------------------------------------------------------------------------- files


def load_task(path: Union[str, os.PathLike]) -> Task:
    """Load a task ``.npz`` (the published format, or one written by :meth:`Task.save`).

    Required keys: ``inputs`` (S, N_net), ``target_mean`` (S, M), ``target_cov`` (S, M, M).
    Optional: ``images`` (S, P), ``filters`` (P, M), ``prior_cov`` (M, M), ``contrasts``
    (S,) (default 0, 0.125, 0.25, 0.5, 1 when S = 5, else NaN), ``n_exc`` (default M),
    ``name`` (default the file name) and ``gsm_sigma_x, gsm_alpha, gsm_beta`` (with
    filters and prior_cov they rebuild the :class:`~momentssn.gsm.model.GSM`).
    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the key for
    a missing key, a wrong shape or a file that is not an ``.npz``.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"task file not found: {path}")
    try:
        obj = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"{path} is corrupt or not a task file (.npz)") from err
    if not isinstance(obj, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds a single array, not a task .npz with named keys")
    try:
        with obj as f:
            data = {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is corrupt or not a task file (.npz)") from err
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ValueError(
            f"{path}: missing key(s) {', '.join(repr(k) for k in missing)}; a task .npz needs "
            f"{', '.join(_REQUIRED)} (optional: images, filters, prior_cov, contrasts, n_exc, name)"
        )
    kw = {k: data[k] for k in _ARRAYS if k in data}
    if "n_exc" in data:
        kw["n_exc"] = int(data["n_exc"])
    kw["name"] = str(data["name"]) if "name" in data else os.path.splitext(os.path.basename(path))[0]
    task = Task(**kw)
    if all(k in data for k in _GSM_KEYS) and task.filters is not None and task.prior_cov is not None:
        sx, a, b = (float(data[k]) for k in _GSM_KEYS)
        task = task.replace(gsm=GSM(task.filters, task.prior_cov, sigma_x=sx, alpha=a, beta=b))
    return task


def get_task(spec: Union[str, os.PathLike, Task]) -> Task:
    """``"default"`` -> :func:`default_task`; ``"echeveste2020"`` -> the published task
    (package data, ``momentssn.datasets``); a path -> :func:`load_task`; a Task is returned as is."""
    if isinstance(spec, Task):
        return spec
    if isinstance(spec, str) and spec == "default":
        return default_task()
    if isinstance(spec, str) and spec in BUILTIN_TASKS:
        task = load_task(BUILTIN_TASKS[spec]())
        return task.replace(name=spec)
    return load_task(spec)
