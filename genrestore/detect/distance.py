"""DeSRA's artifact indicator: the relative local-variance distance between GAN-SR and MSE-SR.

For each channel, the Gaussian-weighted local standard deviations ``s_x`` (GAN-SR) and ``s_y``
(MSE-SR) over an 11x11 window (sigma 1.5, the window SSIM uses) on 0..255 intensities give

    D = (2 s_x s_y + C) / (s_x^2 + s_y^2 + C),   C = (0.03 * 255)^2,            (DeSRA eq. 7)

averaged over channels. D is 1 where both images have the same local contrast and falls
towards 0 where the GAN invents (or removes) texture. The paper prints eq. 7 without the ``+ C``
in the numerator; the authors' released code (``scripts/distance.py``) has it, as SSIM's
contrast term does. Without it every flat region, where both deviations are ~0, would score
D = 0 and be flagged, so the code's form is the default and the printed form is
``numerator_constant=False``.

The Gaussian weighting is not in the paper's text either: eq. 3 defines ``sigma(i, j)`` as the plain
standard deviation ``sd(.)`` of the n x n (n = 11) patch around the pixel. The authors' code filters
with ``cv2.getGaussianKernel(11, 1.5)``, as SSIM (which eqs. 6-7 follow) does, so that is the
default; ``sigma=None`` gives eq. 3 as printed (every pixel of the window weighted alike, the
population standard deviation). The two differ markedly near edges: 5 px from a 0/1 step, the
uniform window's variance is 0.083, the Gaussian one's 0.001.

Local moments use 'reflect' (OpenCV's default ``BORDER_REFLECT_101``) padding so the map has
the input's size; the authors crop the 5-pixel border instead ('valid'), which equals our
map's interior exactly.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import InputError, check_image
from ..metrics.full_reference import _check_precision, _gaussian_window

C_DESRA = (0.03 * 255.0) ** 2


def _blur_opencv(maps: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """:func:`_blur` of CPU float64 maps by OpenCV's ``sepFilter2D`` per plane (the authors filter
    with OpenCV too), with its default border, reflect-101. torch has no fast float64 depthwise
    convolution: at 1024 px this is ~7x faster than ``conv2d`` and agrees with it to ~1e-15
    relative."""
    import cv2

    a = maps.detach().contiguous().numpy()
    out = np.empty_like(a)
    k = taps.numpy()
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            cv2.sepFilter2D(a[i, j], cv2.CV_64F, k, k, dst=out[i, j], borderType=cv2.BORDER_REFLECT_101)
    return torch.from_numpy(out)


def _blur(maps: torch.Tensor, window: int, sigma: float | None) -> torch.Tensor:
    """Depthwise separable Gaussian blur (``sigma=None``: the plain mean over the window) with
    reflect-101 padding; ``(N, K, H, W)`` in and out."""
    k = maps.shape[1]
    r = window // 2
    if sigma is None:  # DeSRA eq. 3 as printed: every pixel of the window alike
        g = torch.full((window,), 1.0 / window, device=maps.device, dtype=maps.dtype)
    else:
        g = _gaussian_window(window, sigma, maps.device, maps.dtype)  # the taps SSIM uses
    if maps.device.type == "cpu" and maps.dtype == torch.float64 and not (torch.is_grad_enabled() and maps.requires_grad):
        return _blur_opencv(maps, g)
    maps = F.pad(maps, (r, r, r, r), mode="reflect")
    if maps.device.type == "cpu" and maps.dtype == torch.float32:
        maps = maps.contiguous(memory_format=torch.channels_last)  # oneDNN's fast depthwise path
    maps = F.conv2d(maps, g.view(1, 1, 1, -1).expand(k, 1, 1, -1), groups=k)
    return F.conv2d(maps, g.view(1, 1, -1, 1).expand(k, 1, -1, 1), groups=k).contiguous()


def local_variance(x: torch.Tensor, window: int = 11, sigma: float | None = 1.5) -> torch.Tensor:
    """Gaussian-weighted local variance ``E[x^2] - E[x]^2`` per channel, same size as ``x``.

    Args:
        x: ``(N, C, H, W)`` float tensor, any range (the variance is in its units squared).
        window: odd window side in pixels (11 in DeSRA and SSIM).
        sigma: Gaussian sigma in pixels (1.5); ``None``: unweighted, the population variance of
            the ``window`` x ``window`` patch (DeSRA eq. 3 as printed).

    Returns:
        ``(N, C, H, W)`` non-negative variances (clamped at 0 against rounding).

    Example:
        >>> v = local_variance(torch.ones(1, 1, 16, 16))
        >>> float(v.abs().max()) < 1e-6
        True
    """
    if not (isinstance(x, torch.Tensor) and x.ndim == 4 and x.is_floating_point()):
        raise InputError(f"expected a float (N, C, H, W) tensor, got "
                         f"{(tuple(x.shape), x.dtype) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if not isinstance(window, int) or window % 2 != 1 or window < 3:
        raise InputError(f"window must be an odd size >= 3, got {window}")
    if sigma is not None and not sigma > 0:
        raise InputError(f"expected sigma > 0 (or None: a uniform window), got {sigma!r}")
    if min(x.shape[-2:]) <= window // 2:
        raise InputError(f"image of {x.shape[-1]}x{x.shape[-2]} px is too small for an {window}x{window} window")
    shift = x.mean(dim=(2, 3), keepdim=True)  # variances do not change; keeps float32 accurate
    xc = x - shift
    c = x.shape[1]
    f = _blur(torch.cat([xc, xc * xc], 1), window, sigma)
    return (f[:, c:] - f[:, :c] ** 2).clamp_min(0)


def variance_distance(gan_sr: torch.Tensor, mse_sr: torch.Tensor, window: int = 11, sigma: float | None = 1.5,
                      c: float = C_DESRA, numerator_constant: bool = True,
                      precision: Literal["float32", "float64"] = "float64") -> torch.Tensor:
    """DeSRA's indicator D (eq. 7) between a GAN-SR image and its MSE-SR reference.

    Args:
        gan_sr: ``(N, C, H, W)`` GAN-SR output in [0, 1] (``x`` in the paper).
        mse_sr: the MSE-SR output of the same LR images, same shape (``y``).
        window, sigma: the local window (11, 1.5); ``sigma=None``: unweighted, eq. 3 as printed (see
            the module docstring).
        c: stabilizing constant on 0..255 intensities, ``(0.03 * 255)^2``.
        numerator_constant: add ``c`` to the numerator too, as the authors' code does (see the
            module docstring); False gives eq. 7 as printed.
        precision: dtype of the moments. float64 (default) is ~1e-7 from an exact float64 reference
            after the cast to float32; float32 is ~3x faster on CPU but can be ~1e-3 off where one
            image is nearly flat (``sqrt(s_x^2 s_y^2)`` amplifies rounding in a tiny variance).

    Returns:
        ``(N, 1, H, W)`` D map in [0, 1], float32 (float64 for float64 inputs).

    Raises:
        InputError: for images that are not ``(N, C, H, W)`` in [0, 1] or differ in shape.

    Example:
        >>> x = torch.rand(2, 3, 32, 32)
        >>> d = variance_distance(x, x)
        >>> d.shape, bool((d - 1).abs().max() < 1e-5)
        (torch.Size([2, 1, 32, 32]), True)
    """
    check_image(gan_sr, "GAN-SR image")
    check_image(mse_sr, "MSE-SR image")
    if gan_sr.shape != mse_sr.shape:
        raise InputError(f"GAN-SR and MSE-SR images differ in shape: {tuple(gan_sr.shape)} vs {tuple(mse_sr.shape)}")
    dtype = _check_precision(precision)
    if not ((sigma is None or sigma > 0) and c > 0):  # also refuses NaN
        raise InputError(f"expected sigma > 0 (or None) and c > 0, got {sigma!r} and {c!r}")
    n, ch = gan_sr.shape[:2]
    both = torch.cat([gan_sr, mse_sr], 1).to(dtype) * 255.0
    var = local_variance(both, window, sigma)
    vx, vy = var[:, :ch], var[:, ch:]
    num = 2 * (vx * vy).sqrt() + (c if numerator_constant else 0.0)
    d = num / (vx + vy + c)
    out_dtype = torch.float64 if gan_sr.dtype == torch.float64 else torch.float32
    return d.mean(1, keepdim=True).to(out_dtype)
