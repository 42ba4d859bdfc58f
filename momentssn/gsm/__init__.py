"""The Gaussian scale mixture (GSM) image model and what it is learned from.

Modules:
    model     -- ``GSM``: the generative model and its exact posterior moments (quadrature in z)
    patches   -- natural image patches: the embedded scikit-image photographs, CIFAR-10, folders
    filters   -- learned Gabor projective fields (least-squares reconstruction, FVU), PCA
    ml        -- maximum-likelihood fit of the GSM prior and noise with the filters fixed
"""
