"""Exceptions raised by momentssn."""

from __future__ import annotations


class UnstableNetworkError(RuntimeError):
    """The network has no stable fixed point for the given input.

    Raised when Newton finds no fixed point (the mean dynamics diverge) or when the
    linearization at the fixed point (the Jacobian ``J = T^-1 (-I + W Gamma)``) has
    an eigenvalue with real part ``>= 0``; the message says which.  ``max_real_eig``
    holds the largest real part at the last point examined (1/ms; when Newton failed
    it describes that iterate, not a fixed point), ``stimulus`` the index of the
    offending stimulus when known.
    """

    def __init__(self, message: str, *, max_real_eig: float = float("nan"), stimulus=None):
        super().__init__(message)
        self.max_real_eig = max_real_eig
        self.stimulus = stimulus


class SimulationDivergedError(UnstableNetworkError):
    """Every trial of a simulation diverged (|u| grew without bound or became NaN).

    ``stimulus`` is the index of the first stimulus whose trials all diverged and
    ``time_ms`` the simulated time (ms) at which the last of them did; a partial
    divergence is not an error (``SimulationResult`` reports the count).
    """

    def __init__(self, message: str, *, stimulus=None, time_ms: float = float("nan"),
                 max_real_eig: float = float("nan")):
        super().__init__(message, max_real_eig=max_real_eig, stimulus=stimulus)
        self.time_ms = time_ms


class MomentsDivergedError(UnstableNetworkError):
    """The closure's transient moments (``propagate_moments``) stopped being finite.

    ``stimulus`` is the index of the first stimulus whose mean or covariance became
    NaN/inf, ``time_ms`` the first saved time (ms) at which they were, and
    ``max_real_eig`` the largest real part of the eigenvalues of J at the last finite
    saved state (>= 0: the network is unstable there; < 0: the step was too large).
    """

    def __init__(self, message: str, *, stimulus=None, time_ms: float = float("nan"),
                 max_real_eig: float = float("nan")):
        super().__init__(message, max_real_eig=max_real_eig, stimulus=stimulus)
        self.time_ms = time_ms
