"""Test configuration: moment closure is tested in float64.

The library never enables 64-bit mode by itself; the tests do it here, explicitly,
as a user would (see momentssn/__init__.py).
"""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
# Work around an XLA CPU scheduler bug (jax 0.10): batched Newton solves at N ~ 100 can
# wedge the thread pool forever.  Set before jax initializes its backend (see README).
_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()

# The command line (called by some tests) turns on JAX's persistent compilation cache
# in the user's home unless this is set; the empty string keeps the tests hermetic.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", "")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
ECHEVESTE_TASK = SHARED / "echeveste2020" / "task.npz"


@pytest.fixture
def echeveste_task_path():
    """Path of the published 15-parameter task; skips when ../shared is absent."""
    if not ECHEVESTE_TASK.exists():
        pytest.skip(f"published task not found at {ECHEVESTE_TASK} (../shared/echeveste2020 is absent)")
    return ECHEVESTE_TASK
