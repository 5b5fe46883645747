"""Synthesis of generative artifacts (DiffGAR §3): DDIM-latent perturbations so far."""

from .ddim import DDIM_PAPER, ddim_gaussian, ddim_scale_shift, identity_pair

__all__ = ["DDIM_PAPER", "ddim_gaussian", "ddim_scale_shift", "identity_pair"]
