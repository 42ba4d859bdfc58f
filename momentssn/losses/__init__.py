"""Losses: how far a network's moments are from the targets.

moment     eq. 7 of Echeveste et al. 2020 (``LossWeights``, ``loss_per_stimulus``,
           ``moment_loss``) and ``LossAux``, the record of every loss evaluation
gate       +inf and an exact zero gradient where the moments cannot be trusted
closure    losses of the Gaussian closure's moments (stationary, transient) and the
           forward-only score of a network (``network_closure_loss``)
simulated  the BPTT loss on simulated trials (``simulated_loss``) and the long-run
           score every trained network is judged by (``simulated_score``)
_args      argument checks shared with the training drivers
"""
