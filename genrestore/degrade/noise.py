"""Noise models (Gaussian, Poisson, Bernoulli dead pixels) and the surrogate-gradient clamp.

Noise is a separate step from the deterministic operator (DESIGN.md). Intensities are in
[0, 1]; noise levels are in the same units unless the name says otherwise (``_255``).
Per-image parameters broadcast as ``(N,)`` tensors.
"""

from __future__ import annotations

import math

import torch

from .. import _random
from .._checks import InputError, check_float_tensor, check_image, finite_number

Param = float | torch.Tensor


def _per_image(p: Param, x: torch.Tensor, name: str = "the parameter", low: float = 0.0, high: float = math.inf,
               low_open: bool = False) -> torch.Tensor:
    """A scalar or ``(N,)`` parameter as an ``(N, 1, 1, 1)`` tensor on ``x``'s device, checked to be
    finite and in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    t = torch.as_tensor(p, dtype=x.dtype, device=x.device).reshape(-1)
    if t.numel() not in (1, x.shape[0]):
        raise InputError(f"expected a scalar or {x.shape[0]} per-image values, got {t.numel()}")
    # checked where that needs no device sync: Python numbers and CPU tensors (the task surrogates
    # call this on every step of an inversion, with their own, valid, parameters)
    c = torch.as_tensor(p, dtype=torch.float64).reshape(-1) if not isinstance(p, torch.Tensor) else (
        p.reshape(-1) if p.device.type == "cpu" else None)
    bad = None if c is None else ~torch.isfinite(c) | (c <= low if low_open else c < low) | (c > high)
    if bad is not None and bool(bad.any()):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if math.isinf(high) else ']'}"
        got = ", ".join(f"{v:.4g}" for v in c.tolist()[:8]) + (", ..." if c.numel() > 8 else "")
        raise InputError(f"expected {name} as finite values in {interval}, got {got}")
    return t.view(-1, 1, 1, 1)


def gaussian_noise(x: torch.Tensor, sigma: Param, generator: _random.Generator = None,
                   gray: bool | torch.Tensor = False) -> torch.Tensor:
    """Add white Gaussian noise ``N(0, sigma^2)``, independently per channel or the same on all.

    Args:
        x: ``(N, C, H, W)`` images in [0, 1].
        sigma: standard deviation in [0, 1] intensity units; float or ``(N,)``.
        generator: see :mod:`genrestore._random`.
        gray: one noise field for all channels (per image when a ``(N,)`` bool tensor).

    Returns:
        ``x + noise``, not clamped.
    """
    check_image(x, channels=tuple(range(1, 65)), check_range=False)
    n, c, h, w = x.shape
    noise = _random.randn(generator, (n, c, h, w), x.device, x.dtype)
    g = torch.as_tensor(gray, device=x.device).reshape(-1, 1, 1, 1)
    noise = torch.where(g, noise[:, :1].expand_as(noise), noise)
    return x + _per_image(sigma, x, "sigma") * noise


def poisson_noise(x: torch.Tensor, photons: Param, generator: _random.Generator = None) -> torch.Tensor:
    """Shot noise: ``Poisson(photons * x) / photons``, independently per channel.

    Args:
        x: ``(N, C, H, W)`` images in [0, 1].
        photons: expected photon count at intensity 1 (``lambda``); float or ``(N,)``, > 0.

    Returns:
        Noisy images with mean ``x`` and variance ``x / photons``; not clamped, not differentiable.
    """
    check_image(x, channels=tuple(range(1, 65)))
    lam = _per_image(photons, x, "photons", low_open=True)
    return _random.poisson(lam * x, generator) / lam


def poisson_noise_scaled(x: torch.Tensor, scale: Param, generator: _random.Generator = None,
                         gray: bool | torch.Tensor = False, levels: float = 256.0) -> torch.Tensor:
    """Real-ESRGAN's Poisson noise: ``x + scale * (Poisson(levels * x) / levels - x)``.

    Real-ESRGAN takes ``levels`` as the next power of two above the number of distinct
    values in the image (256 for a typical 8-bit photo); we fix it at 256. With
    ``gray``, one noise field computed from the luma is added to every channel.
    """
    check_image(x, channels=tuple(range(1, 65)))
    scale = _per_image(scale, x, "scale")
    levels = finite_number(levels, "levels", 0, low_open=True)
    src = x
    g = torch.as_tensor(gray, device=x.device).reshape(-1, 1, 1, 1)
    if x.shape[1] == 3:
        luma = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True)
        src = torch.where(g, luma.expand_as(x), x)
    noise = _random.poisson(src * levels, generator) / levels - src
    # gray: one field (channel 0, drawn from the luma) on every channel; the draw keeps the
    # colour shape so the random stream does not depend on which images are gray
    noise = torch.where(g, noise[:, :1].expand_as(noise), noise)
    return x + scale * noise


def bernoulli_mask(shape: tuple[int, int, int, int], p: Param, generator: _random.Generator = None,
                   device=None) -> torch.Tensor:
    """``(N, 1, H, W)`` float mask: 0 (dead pixel) with probability ``p``, else 1; one per pixel for all channels."""
    n, _, h, w = shape
    u = _random.rand(generator, (n, 1, h, w), device)
    p = _per_image(p, u, "p (the probability of a dead pixel)", 0.0, 1.0)
    return (u >= p).to(u.dtype)


def dead_pixels(x: torch.Tensor, p: Param, generator: _random.Generator = None) -> torch.Tensor:
    """Bernoulli noise: each pixel, all channels together, is set to black with probability ``p``."""
    check_image(x, channels=tuple(range(1, 65)), check_range=False)
    return x * bernoulli_mask(tuple(x.shape), p, generator, x.device).to(x.dtype)


class _ClampSigmoidGrad(torch.autograd.Function):
    """Forward ``clamp(x, 0, 1)``; backward the derivative of ``sigmoid(k (x - 1/2))``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, k: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.k = k
        return x.clamp(0, 1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(ctx.k * (x - 0.5))
        return grad * ctx.k * s * (1 - s), None


def clamp_surrogate(x: torch.Tensor, k: float = 2.0) -> torch.Tensor:
    """Clamp to [0, 1] whose gradient is that of ``sigmoid(k (x - 0.5))`` (robust StyleGAN eq. 11, k = 2).

    The forward pass is exact; the gradient never vanishes, so inversion can pull saturated
    pixels back.

    Example:
        >>> x = torch.tensor([-1.0, 0.5, 2.0], requires_grad=True)
        >>> clamp_surrogate(x).sum().backward()
        >>> [round(g, 6) for g in x.grad.tolist()]  # 2 s (1 - s) at s = sigmoid(2 (x - 0.5))
        [0.090353, 0.5, 0.090353]
    """
    check_float_tensor(x)
    return _ClampSigmoidGrad.apply(x, k)
