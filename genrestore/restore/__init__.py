"""Restorers: robust StyleGAN inversion (``stylegan_inversion``)."""
