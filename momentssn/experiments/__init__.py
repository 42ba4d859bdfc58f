"""Experiments: the only library code that prints or writes files (with ``momentssn.cli``).

Modules: ``crosscheck`` (closure vs simulation, values only), ``crosscheck_stats`` (error
measures, noise floors, z-scores), ``crosscheck_report`` (``CrosscheckReport``),
``compare`` (training methods side by side) and ``compare_report`` (its files),
``baseline`` (the fit-baseline run), ``report`` (a fit's figures and summaries),
``emergent`` (rates, variability, spectral peak across stimuli), ``natural_images``,
``plotting`` (figures), ``console`` (the progress printer), ``cli_args`` (the command
line's argument types).
"""
