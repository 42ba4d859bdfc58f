"""Dynamics-neutral growth of an SSN (Soo & Lengyel, NeurIPS 2022).

Modules:
    split     the split algebra: split_neuron, split_inputs, split_noise_factor, split_moments
    policies  which cell to split next (SplitContext, NearestTarget, LargestError, ...)
    schedule  sizes and steps per stage (GrowthSchedule, growth_sizes, subtask)
    grow      the loop: train, split, train again (grow, GrowthResult, checkpoints)
"""
