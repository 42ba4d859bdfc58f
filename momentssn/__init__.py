"""momentssn: stochastic stabilized supralinear networks, moments by closure and by simulation.

Numerics: moment closure and fitting are meant to run in float64.  JAX computes in
float32 unless you enable 64-bit mode yourself, before creating arrays::

    import jax
    jax.config.update("jax_enable_x64", True)

momentssn never flips this switch for you (the ``momentssn`` command line does, for
its own process).  Simulation runs in float32 by default in either mode.
"""

import tomllib as _tomllib
from importlib import metadata as _metadata
from pathlib import Path as _Path


def _version() -> str:
    """The installed distribution's version; in a source tree that was not installed,
    pyproject.toml's (``0+unknown`` if neither can be read)."""
    try:
        return _metadata.version("momentssn")
    except _metadata.PackageNotFoundError:
        pass
    try:
        with open(_Path(__file__).resolve().parents[1] / "pyproject.toml", "rb") as fh:
            return str(_tomllib.load(fh)["project"]["version"])
    except (OSError, KeyError, _tomllib.TOMLDecodeError):
        return "0+unknown"


__version__ = _version()

from .experiments.compare import TrainingRun, compare_methods, train_run
from .experiments.crosscheck import crosscheck
from .experiments.crosscheck_report import CrosscheckReport, TransientComparison
from .errors import MomentsDivergedError, SimulationDivergedError, UnstableNetworkError
from .gsm.model import GSM, ZPosterior
from .training.corrected import CorrectedFitResult, CorrectionRound, SimulationSettings, fit_corrected
from .training.fit import FitResult, fit
from .growth.grow import GrowthResult, GrowthStage, grow
from .growth.split import split_inputs, split_moments, split_neuron, split_noise_factor
from .growth.trainers import BPTTStage, ClosureStage, ClosureThenBPTT
from .losses.closure import ClosureScore, network_closure_loss, stationary_loss, transient_loss
from .losses.moment import LossAux, LossWeights, loss_per_stimulus, moment_loss
from .losses.simulated import SimulatedScore, simulated_loss, simulated_score
from .closure.lyapunov import solve_lyapunov
from .model import SSN, rate
from .moments import Moments, MomentTrajectory, correlation, symmetrize
from .closure.nonlinearity import rate_expectations, rectified_moment
from .training.lbfgs import JaxoptLBFGS, LBFGSResult, OptaxLBFGS, ScipyLBFGSB, minimize_lbfgs
from .params.base import get_parameterization, parameterization_from_json, register_parameterization
from .params.growing import Growing
from .params.init import PaperInit, paper_theta, stable_paper_theta
from .params.ring import Baseline15, General, Ring, echeveste_start, echeveste_theta
from .closure.transient import propagate_moments
from .simulation.integrators.etd2 import ExponentialTrapezoid
from .simulation.integrators.exp_ab2 import ExponentialAB2
from .simulation.integrators.exp_euler import ExponentialEuler
from .simulation.integrators.heun import Heun
from .simulation.simulate import SimulationResult, StepSizeWarning, simulate
from .simulation.step_error import StepError, step_error
from .closure.spectrum import SpectralPeak, lagged_covariance, peak_frequency, power_spectrum
from .closure.stationary import (
    SolveInfo,
    WarmStart,
    cross_covariance,
    noise_only_variance,
    stationary_moments,
    stationary_solve,
)
from .tasks import Task, default_task, get_task, latents_rescaled, load_task
from .training.adam import AdamSettings, TrainResult, adam_train, train_bptt, train_moments_adam
from .io import Loaded, load
from . import datasets

__all__ = [
    "__version__",
    "load",
    "Loaded",
    "datasets",
    "ClosureScore",
    "network_closure_loss",
    "JaxoptLBFGS",
    "OptaxLBFGS",
    "ScipyLBFGSB",
    "Heun",
    "ExponentialTrapezoid",
    "ExponentialAB2",
    "ExponentialEuler",
    "StepSizeWarning",
    "StepError",
    "step_error",
    "AdamSettings",
    "fit_corrected",
    "CorrectedFitResult",
    "CorrectionRound",
    "SimulationSettings",
    "SSN",
    "rate",
    "Moments",
    "MomentTrajectory",
    "correlation",
    "symmetrize",
    "UnstableNetworkError",
    "SimulationDivergedError",
    "MomentsDivergedError",
    "solve_lyapunov",
    "rate_expectations",
    "rectified_moment",
    "propagate_moments",
    "stationary_moments",
    "stationary_solve",
    "SolveInfo",
    "WarmStart",
    "cross_covariance",
    "noise_only_variance",
    "lagged_covariance",
    "power_spectrum",
    "peak_frequency",
    "SpectralPeak",
    "simulate",
    "SimulationResult",
    "GSM",
    "ZPosterior",
    "Task",
    "default_task",
    "latents_rescaled",
    "get_task",
    "load_task",
    "fit",
    "FitResult",
    "minimize_lbfgs",
    "LBFGSResult",
    "LossWeights",
    "LossAux",
    "loss_per_stimulus",
    "moment_loss",
    "stationary_loss",
    "transient_loss",
    "Baseline15",
    "Ring",
    "General",
    "paper_theta",
    "stable_paper_theta",
    "PaperInit",
    "BPTTStage",
    "ClosureStage",
    "ClosureThenBPTT",
    "get_parameterization",
    "parameterization_from_json",
    "register_parameterization",
    "echeveste_start",
    "echeveste_theta",
    "crosscheck",
    "CrosscheckReport",
    "TransientComparison",
    "TrainResult",
    "adam_train",
    "simulated_loss",
    "train_bptt",
    "train_moments_adam",
    "TrainingRun",
    "SimulatedScore",
    "train_run",
    "simulated_score",
    "compare_methods",
    "split_neuron",
    "split_inputs",
    "split_noise_factor",
    "split_moments",
    "Growing",
    "grow",
    "GrowthResult",
    "GrowthStage",
]
