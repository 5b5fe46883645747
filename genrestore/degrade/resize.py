"""Resizing with Pillow's filters, batched and differentiable in torch.

Pillow resamples separably: each output pixel ``i`` has centre ``c = (i + 0.5) * s`` in input
coordinates (``s = in / out``); when shrinking, the filter is stretched by ``s`` so it
antialiases. We build those weights once per (size, filter) as a dense ``(out, in)`` matrix
and apply them as two matrix products, so a batch of images on any device is resized in
one call. This is a linear operator, and :func:`resize_adjoint` is its exact transpose.

With ``antialias=False`` the filters are not stretched, which is what OpenCV's
``INTER_LINEAR``/``INTER_CUBIC`` and torch's ``interpolate`` do; that path calls
``torch.nn.functional.interpolate`` (OpenCV's half-pixel convention, bicubic a = -0.75).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from .._checks import InputError, check_image, whole_number
from .._tensor_cache import tensor_cache

Filter = Literal["nearest", "area", "bilinear", "bicubic", "lanczos"]
FILTERS: tuple[str, ...] = ("nearest", "area", "bilinear", "bicubic", "lanczos")


def _box(x: torch.Tensor) -> torch.Tensor:
    return ((x > -0.5) & (x <= 0.5)).to(x.dtype)


def _triangle(x: torch.Tensor) -> torch.Tensor:
    return (1 - x.abs()).clamp(min=0)


def _cubic(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:  # Keys cubic, Pillow uses a = -0.5
    x = x.abs()
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def _lanczos(x: torch.Tensor, a: int = 3) -> torch.Tensor:
    return torch.where(x.abs() < a, torch.sinc(x) * torch.sinc(x / a), torch.zeros_like(x))


# filter -> (function, support radius in input pixels at scale 1), as Pillow's Resample.c
_FILTERS = {"area": (_box, 0.5), "bilinear": (_triangle, 1.0), "bicubic": (_cubic, 2.0),
            "lanczos": (_lanczos, 3.0)}


@tensor_cache(maxsize=64)
def _weights(in_size: int, out_size: int, filter: str, antialias: bool) -> torch.Tensor:
    """``(out_size, in_size)`` float64 resampling matrix with Pillow's conventions."""
    scale = in_size / out_size
    if filter == "nearest":  # Pillow: source index floor((i + 0.5) * scale)
        src = ((torch.arange(out_size, dtype=torch.float64) + 0.5) * scale).floor().long().clamp(max=in_size - 1)
        return F.one_hot(src, in_size).to(torch.float64)
    fn, support = _FILTERS[filter]
    filterscale = max(scale, 1.0) if antialias else 1.0
    support = support * filterscale
    center = (torch.arange(out_size, dtype=torch.float64) + 0.5) * scale
    xmin = (center - support + 0.5).floor().clamp(min=0)  # Pillow truncates; centre >= 0 here
    xmax = (center + support + 0.5).floor().clamp(max=in_size)
    j = torch.arange(in_size, dtype=torch.float64)
    inside = (j[None] >= xmin[:, None]) & (j[None] < xmax[:, None])
    w = fn((j[None] - center[:, None] + 0.5) / filterscale) * inside
    total = w.sum(1, keepdim=True)
    return w / torch.where(total == 0, torch.ones_like(total), total)


def _check_size(x: torch.Tensor, size: tuple[int, int]) -> tuple[int, int]:
    check_image(x, "image", channels=tuple(range(1, 65)), check_range=False)
    hw = [whole_number(v) for v in size] if isinstance(size, (tuple, list)) and len(size) == 2 else [None]
    if None in hw:
        raise InputError(f"expected size as (height, width) in whole pixels, got {size!r}")
    h, w = hw
    if h < 1 or w < 1:
        raise InputError(f"resize target must be at least 1x1 px, got {w}x{h}")
    return h, w


def resize(x: torch.Tensor, size: tuple[int, int], filter: Filter = "bicubic",
           antialias: bool = True) -> torch.Tensor:
    """Resize ``(N, C, H, W)`` images to ``size = (h, w)``.

    Args:
        x: float images (any range: no clamping is done, cubic and Lanczos overshoot).
        size: output ``(height, width)`` in pixels.
        filter: ``nearest``, ``area`` (box), ``bilinear``, ``bicubic`` (Keys a = -0.5) or ``lanczos`` (a = 3).
        antialias: stretch the filter when shrinking, as Pillow does. ``False`` samples like
            OpenCV (bilinear, bicubic a = -0.75, nearest) and is not available for Lanczos.

    Returns:
        ``(N, C, h, w)`` tensor of ``x``'s dtype, differentiable.

    Example:
        >>> x = torch.rand(2, 3, 32, 48)
        >>> resize(x, (16, 24), "area").allclose(torch.nn.functional.avg_pool2d(x, 2), atol=1e-6)
        True
    """
    h, w = _check_size(x, size)
    if filter not in FILTERS:
        raise InputError(f"unknown resize filter {filter!r}; expected one of {', '.join(FILTERS)}")
    if not antialias:
        if filter == "lanczos":
            raise InputError("Lanczos resizing is only available with antialias=True")
        if filter == "area":
            return F.interpolate(x, size=(h, w), mode="area")
        mode = {"nearest": "nearest", "bilinear": "bilinear", "bicubic": "bicubic"}[filter]
        kw = {} if mode == "nearest" else {"align_corners": False}
        return F.interpolate(x, size=(h, w), mode=mode, **kw)
    wy = _weights(x.shape[-2], h, filter, True).to(device=x.device, dtype=x.dtype)
    wx = _weights(x.shape[-1], w, filter, True).to(device=x.device, dtype=x.dtype)
    return wy @ x @ wx.T


def resize_8bit(x: torch.Tensor, size: tuple[int, int], filter: Filter = "bicubic") -> torch.Tensor:
    """Resize as Pillow does on 8-bit images: horizontal pass, round and clip to 8 bits, vertical
    pass, round and clip (halves up, as Pillow). Pillow's coefficients are 22-bit fixed point, so a
    few pixels still differ by one level.

    Args:
        x: ``(N, C, H, W)`` images in [0, 1].
        size: output ``(height, width)``.
        filter: as :func:`resize`.

    Returns:
        ``(N, C, h, w)`` images on 8-bit levels (not differentiable in any useful way).
    """
    h, w = _check_size(x, size)
    # 8-bit levels of [0, 1]: values are clipped as Pillow's 8-bit images are (a filter's small overshoot
    # is fine), but 0..255 input would be clipped to white
    lo, hi = (float(v) for v in torch.aminmax(x.detach())) if x.numel() else (0.0, 1.0)
    if not (lo >= -0.5 and hi <= 1.5):  # also false for NaN
        raise InputError(f"expected an image in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    if filter not in FILTERS:
        raise InputError(f"unknown resize filter {filter!r}; expected one of {', '.join(FILTERS)}")
    q = lambda t: t.mul(255).add(0.5).floor().clamp(0, 255).div(255)  # noqa: E731  Pillow rounds halves up
    x = q(x)
    if w != x.shape[-1]:
        x = q(x @ _weights(x.shape[-1], w, filter, True).to(device=x.device, dtype=x.dtype).T)
    if h != x.shape[-2]:
        x = q(_weights(x.shape[-2], h, filter, True).to(device=x.device, dtype=x.dtype) @ x)
    return x


def resize_adjoint(y: torch.Tensor, in_size: tuple[int, int], filter: Filter = "bicubic") -> torch.Tensor:
    """The transpose of :func:`resize` (antialiased) from ``in_size`` to ``y``'s size.

    ``<resize(x), y> == <x, resize_adjoint(y)>`` to float precision.
    """
    h, w = _check_size(y, in_size)
    if filter not in FILTERS:
        raise InputError(f"unknown resize filter {filter!r}; expected one of {', '.join(FILTERS)}")
    wy = _weights(h, y.shape[-2], filter, True).to(device=y.device, dtype=y.dtype)
    wx = _weights(w, y.shape[-1], filter, True).to(device=y.device, dtype=y.dtype)
    return wy.T @ y @ wx

