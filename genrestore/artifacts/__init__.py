"""Synthesis of generative artifacts (DiffGAR §3): VQ token replacement, autoregressive (GPT)
resampling, DDIM-latent gaussian and scale/shift perturbations, and the identity pair."""

from .ddim import DDIM_PAPER, ddim_gaussian, ddim_scale_shift, identity_pair
from .vq import VQ_PAPER, ar_resample, replace_tokens, vq_replace
from .synth import KINDS, load_generators, synthesize  # noqa: E402  (synth imports the functions above)

__all__ = ["DDIM_PAPER", "KINDS", "VQ_PAPER", "ar_resample", "ddim_gaussian", "ddim_scale_shift", "identity_pair",
           "load_generators", "replace_tokens", "synthesize", "vq_replace"]
