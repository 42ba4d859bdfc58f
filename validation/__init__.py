"""Cross-validation suites of momentssn: named networks run through both routes
(Gaussian closure and stochastic simulation), tolerances and a report.

Modules: ``suites`` (``SUITES``, ``run_suite``, ``run_all``: what ``momentssn
validate`` runs), ``plans`` (networks, stimuli, settings, tolerances), ``checks``
(pass/fail statements), ``report`` (``SuiteResult`` and the files), ``run`` (a script
calling ``momentssn validate``).
"""
