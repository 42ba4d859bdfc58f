"""Training: optimizers and the drivers that run them, restartable from disk.

lbfgs       L-BFGS behind one small interface; backends are objects (jaxopt, optax, scipy)
fit         L-BFGS fitting of the closure loss, with restarts, checkpoints and resume
adam        the Adam loop (``adam_train``, ``AdamSettings``) and its drivers
            ``train_bptt`` (simulated moments) and ``train_moments_adam`` (closure)
checkpoint  the one on-disk checkpoint format every driver uses (``kind`` names it)
"""
