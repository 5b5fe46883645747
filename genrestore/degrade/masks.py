"""Inpainting masks: random antialiased brush strokes (robust StyleGAN §5.1) and rectangles.

Masks are ``(N, 1, H, W)`` float tensors: 1 where the image is kept, 0 where it is missing,
fractional on antialiased edges.
"""

from __future__ import annotations

import torch

from .. import _random
from .._checks import InputError, finite_number, whole_number_at_least


def sample_stroke_endpoints(generator: _random.Generator, n: int, strokes: int) -> torch.Tensor:
    """``(n, strokes, 2, 2)`` stroke endpoints ``[..., point, (x, y)]`` in [0, 1] image units.

    Each coordinate lies in the outer thirds of the image: ``[0, 1/3]`` or ``[2/3, 1]``,
    each with probability 1/2.
    """
    n, strokes = whole_number_at_least(n, "n (images)", 0), whole_number_at_least(strokes, "strokes", 0)
    u = _random.rand(generator, (n, strokes, 2, 2, 2), dtype=torch.float64)
    return torch.where(u[..., 0] < 0.5, u[..., 1] / 3, 2 / 3 + u[..., 1] / 3)


def stroke_mask(size: tuple[int, int], endpoints: torch.Tensor, width_frac: float = 0.08,
                device=None) -> torch.Tensor:
    """Draw strokes as round-capped segments and return the keep-mask.

    Each stroke covers the points within ``r = width / 2`` of the segment between its endpoints
    (``width = width_frac * min(H, W)`` px). Edges are antialiased from the distance field:
    a pixel whose centre lies at distance ``d`` from the nearest stroke is covered by
    ``clamp(r + 1/2 - d, 0, 1)``, the exact area of a one-pixel box cut by a straight edge in
    the direction of the distance (``min(d + 1/2, r) - max(d - 1/2, -r)`` for strokes narrower
    than a pixel, which both edges can cut). Along any column crossing a straight stroke the coverage
    sums to the stroke's width.

    Args:
        size: ``(H, W)`` in pixels.
        endpoints: ``(N, S, 2, 2)`` from :func:`sample_stroke_endpoints`, in [0, 1] units.
        width_frac: brush width as a fraction of the image's shorter side.

    Returns:
        ``(N, 1, H, W)`` float32 mask, 1 = kept, 0 = missing.

    Example:
        >>> ends = torch.tensor([[[[0.0, 0.5], [1.0, 0.5]]]])   # one horizontal stroke
        >>> m = stroke_mask((20, 20), ends, width_frac=0.2)
        >>> m[0, 0, :, 10].tolist()[7:13]
        [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    """
    h, w = size
    if h < 1 or w < 1:
        raise InputError(f"mask size must be positive, got {w}x{h}")
    width_frac = finite_number(width_frac, "width_frac (a fraction of the shorter side)", 0)
    if not (isinstance(endpoints, torch.Tensor) and endpoints.ndim == 4 and endpoints.shape[2:] == (2, 2)):
        raise InputError(f"expected endpoints of shape (N, S, 2, 2), got "
                         f"{tuple(endpoints.shape) if isinstance(endpoints, torch.Tensor) else type(endpoints).__name__}")
    if not torch.isfinite(endpoints).all():
        raise InputError("stroke endpoints must be finite")
    n, s = endpoints.shape[:2]
    radius = 0.5 * width_frac * min(h, w)
    ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5).view(1, h, 1)
    xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5).view(1, 1, w)
    ends = endpoints.to(device=device, dtype=torch.float32) * torch.tensor([w, h], dtype=torch.float32, device=device)
    dist2 = torch.full((n, h, w), float("inf"), device=device)
    for k in range(s):  # a few strokes: one vectorized distance field each, keep the nearest
        a, ab = ends[:, k, 0], ends[:, k, 1] - ends[:, k, 0]  # (N, 2) in pixels
        ax, ay = a[:, 0].view(n, 1, 1), a[:, 1].view(n, 1, 1)
        bx, by = ab[:, 0].view(n, 1, 1), ab[:, 1].view(n, 1, 1)
        px, py = xs - ax, ys - ay
        t = ((px * bx + py * by) / (bx * bx + by * by).clamp(min=1e-12)).clamp(0, 1)
        torch.minimum(dist2, (px - t * bx) ** 2 + (py - t * by) ** 2, out=dist2)
    d = dist2.sqrt()
    if radius >= 0.5:
        coverage = (radius + 0.5 - d).clamp(0, 1)
    else:  # narrower than a pixel: the box [d - 1/2, d + 1/2] can be cut by both edges
        coverage = (torch.clamp(d + 0.5, max=radius) - torch.clamp(d - 0.5, min=-radius)).clamp(0, 1)
    return (1.0 - coverage)[:, None]


def random_stroke_mask(generator: _random.Generator, n: int, size: tuple[int, int], strokes: int,
                       width_frac: float = 0.08, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``strokes`` strokes per image and draw them; returns ``(mask, endpoints)``."""
    ends = sample_stroke_endpoints(generator, n, strokes)
    return stroke_mask(size, ends, width_frac, device=device), ends


def random_box_mask(generator: _random.Generator, n: int, size: tuple[int, int],
                    area_range: tuple[float, float] = (0.05, 0.25), device=None) -> torch.Tensor:
    """``(N, 1, H, W)`` keep-mask with one random axis-aligned hole per image.

    The hole's area is uniform in ``area_range`` (fractions of the image) and its aspect ratio
    log-uniform in [1/2, 2].
    """
    h, w = size
    if h < 1 or w < 1:
        raise InputError(f"mask size must be positive, got {w}x{h}")
    if not (len(area_range) == 2 and 0 <= area_range[0] <= area_range[1] <= 1):
        raise InputError(f"expected area_range as (low, high) fractions with 0 <= low <= high <= 1, got {area_range!r}")
    u = _random.rand(generator, (n, 4), dtype=torch.float64)
    area = area_range[0] + (area_range[1] - area_range[0]) * u[:, 0]
    aspect = torch.exp((u[:, 1] * 2 - 1) * torch.log(torch.tensor(2.0, dtype=torch.float64)))
    bh = (torch.sqrt(area * aspect) * h).clamp(1, h)
    bw = (torch.sqrt(area / aspect) * w).clamp(1, w)
    y0 = (u[:, 2] * (h - bh)).round()
    x0 = (u[:, 3] * (w - bw)).round()
    yy = torch.arange(h, dtype=torch.float64).view(1, h, 1)
    xx = torch.arange(w, dtype=torch.float64).view(1, 1, w)
    hole = ((yy >= y0.view(-1, 1, 1)) & (yy < (y0 + bh.round()).view(-1, 1, 1))
            & (xx >= x0.view(-1, 1, 1)) & (xx < (x0 + bw.round()).view(-1, 1, 1)))
    return (~hole)[:, None].float().to(device)
