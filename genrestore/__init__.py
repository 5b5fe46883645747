"""genrestore: image restoration with generative priors.

Images are ``float32`` tensors ``(N, C, H, W)``, RGB, in ``[0, 1]`` at every public boundary.
"""

__version__ = "0.1.0"
