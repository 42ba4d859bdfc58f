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


def _memory_mappings() -> int:
    """Memory mappings of this process (0 where /proc is absent)."""
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after a test module once this process holds more than
    30000 memory mappings.  Every live XLA CPU executable maps its JIT-compiled code; the
    whole suite in one process reached Linux's default limit of 65530 mappings
    (``vm.max_map_count``), and LLVM then aborted the next compilation ("LLVM compilation
    error: Cannot allocate memory").  Clearing after every module instead would recompile
    programs that later modules share."""
    yield
    if _memory_mappings() > 30000:
        jax.clear_caches()
