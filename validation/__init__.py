"""Cross-validation suites (closure vs simulation): a thin alias of ``validation.suites``.

The suite code lives in the installed package (``momentssn/validation.py``) so that the
``momentssn validate`` command works from any directory; this folder holds the
README and ``run.py``.  ``import validation`` from the repository root gives the same
``SUITES``, ``run_suite`` and ``run_all``.
"""

from validation.suites import SUITES, SuiteResult, run_all, run_suite  # noqa: F401

__all__ = ["SUITES", "SuiteResult", "run_suite", "run_all"]
