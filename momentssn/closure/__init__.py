"""The Gaussian moment closure of the stochastic SSN (Hennequin & Lengyel 2016).

Modules:
    equations     the closure's equations (expectations, J, the augmented system)
    nonlinearity  Gaussian expectations of the rectified power law
    lyapunov      a differentiable continuous Lyapunov solver
    newton        a generic damped chord-Newton loop (knows no SSN)
    stationary    stationary moments: the reduced root problem, its sensitivity K,
                  the implicit VJP and the public solvers
    transient     moment propagation in time (RK4)
    spectrum      lagged covariances, power spectra, spectral peaks
    arguments     argument checks shared by the public functions
"""
