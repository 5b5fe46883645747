"""Blur kernels (Gaussian, generalized Gaussian, plateau, sinc) and blurring with them.

Kernels follow the conventions of Real-ESRGAN / BasicSR: a ``k x k`` grid centred on 0 (k
odd), covariance ``Sigma = R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T`` in pixels, and
every kernel normalized to sum to 1. Per-image parameters are ``(N,)`` tensors, so a batch
of different kernels is built in one call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .. import _random
from .._checks import InputError, check_image, whole_number

Param = float | torch.Tensor


def _as_batch(*params: Param) -> list[torch.Tensor]:
    ts = [torch.as_tensor(p, dtype=torch.float64).reshape(-1) for p in params]
    n = max(t.numel() for t in ts)
    return [t.expand(n) if t.numel() == 1 else t for t in ts]


def odd_side(v) -> int | None:
    """``v`` as an int when it is an odd positive whole number (a kernel side), else ``None``."""
    k = whole_number(v)
    return k if k is not None and k >= 1 and k % 2 else None


def _check_size(size: int) -> int:
    k = odd_side(size)
    if k is None:
        raise InputError(f"kernel size must be an odd positive int, got {size!r}")
    return k


def _mahalanobis(size: int, sigma_x: Param, sigma_y: Param | None, theta: Param) -> torch.Tensor:
    """``(N, k, k)`` squared Mahalanobis distance ``[x y] Sigma^-1 [x y]^T`` on the kernel grid."""
    size = _check_size(size)
    sx, sy, th = _as_batch(sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    if not (torch.isfinite(sx).all() and torch.isfinite(sy).all() and torch.isfinite(th).all()):
        raise InputError("blur sigmas and angle must be finite")
    if (sx <= 0).any() or (sy <= 0).any():
        raise InputError("blur sigmas must be positive")
    r = torch.arange(size, dtype=torch.float64) - size // 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    c, s = torch.cos(th)[:, None, None], torch.sin(th)[:, None, None]
    # rotate the grid into the kernel's principal axes: u along sigma_x, v along sigma_y
    u = c * xx + s * yy
    v = -s * xx + c * yy
    return (u / sx[:, None, None]) ** 2 + (v / sy[:, None, None]) ** 2


def _normalize(k: torch.Tensor) -> torch.Tensor:
    return (k / k.sum(dim=(-2, -1), keepdim=True)).float()


def gaussian_kernel(size: int, sigma_x: Param, sigma_y: Param | None = None, theta: Param = 0.0
                    ) -> torch.Tensor:
    """Isotropic (``sigma_y=None``) or anisotropic Gaussian kernel, ``exp(-q / 2)``.

    Args:
        size: odd side ``k`` in pixels.
        sigma_x: standard deviation along the first principal axis, px; float or ``(N,)``.
        sigma_y: along the second axis; ``None`` for isotropic.
        theta: rotation of the first axis from +x towards +y, radians.

    Returns:
        ``(N, k, k)`` float32 kernels that sum to 1.

    Example:
        >>> k = gaussian_kernel(5, 1.0)
        >>> tuple(k.shape), round(float(k.sum()), 6)
        ((1, 5, 5), 1.0)
    """
    return _normalize(torch.exp(-0.5 * _mahalanobis(size, sigma_x, sigma_y, theta)))


def generalized_gaussian_kernel(size: int, sigma_x: Param, sigma_y: Param | None = None,
                                theta: Param = 0.0, beta: Param = 1.0) -> torch.Tensor:
    """Generalized Gaussian ``exp(-q^beta / 2)`` (Real-ESRGAN eq. 2); ``beta=1`` is Gaussian.

    Returns:
        ``(N, k, k)`` float32 kernels that sum to 1.
    """
    (b,) = _as_batch(beta)
    q = _mahalanobis(size, sigma_x, sigma_y, theta)
    return _normalize(torch.exp(-0.5 * q.pow(b[:, None, None])))


def plateau_kernel(size: int, sigma_x: Param, sigma_y: Param | None = None, theta: Param = 0.0,
                   beta: Param = 1.0) -> torch.Tensor:
    """Plateau-shaped kernel ``1 / (1 + q^beta)`` (Real-ESRGAN eq. 3).

    Returns:
        ``(N, k, k)`` float32 kernels that sum to 1.
    """
    (b,) = _as_batch(beta)
    q = _mahalanobis(size, sigma_x, sigma_y, theta)
    return _normalize(1.0 / (1.0 + q.pow(b[:, None, None])))


def sinc_kernel(size: int, cutoff: Param) -> torch.Tensor:
    """2-D circular low-pass (sinc) kernel ``cutoff * J1(cutoff * r) / (2 pi r)`` (Real-ESRGAN eq. 4).

    Args:
        size: odd side ``k`` in pixels.
        cutoff: cutoff frequency ``omega_c`` in radians per pixel, in ``(0, pi]``; float or ``(N,)``.

    Returns:
        ``(N, k, k)`` float32 kernels that sum to 1.
    """
    size = _check_size(size)
    (wc,) = _as_batch(cutoff)
    if (wc <= 0).any() or (wc > math.pi + 1e-6).any():
        raise InputError("sinc cutoff must lie in (0, pi]")
    r1 = torch.arange(size, dtype=torch.float64) - size // 2
    yy, xx = torch.meshgrid(r1, r1, indexing="ij")
    r = torch.sqrt(xx ** 2 + yy ** 2)[None]
    wc = wc[:, None, None]
    safe_r = torch.where(r == 0, torch.ones_like(r), r)
    k = wc * torch.special.bessel_j1(wc * safe_r) / (2 * math.pi * safe_r)
    k = torch.where(r == 0, wc ** 2 / (4 * math.pi), k)  # limit of J1(a r) / r at r -> 0 is a / 2
    return _normalize(k)


def blur(x: torch.Tensor, kernel: torch.Tensor, border: str = "reflect") -> torch.Tensor:
    """Filter each image with its own kernel (``same`` size output, reflect border by default).

    This is correlation, as ``cv2.filter2D`` and BasicSR's ``filter2D`` compute it; it equals
    convolution for the point-symmetric kernels of this module.

    Args:
        x: ``(N, C, H, W)`` images.
        kernel: ``(k, k)``, ``(1, k, k)`` or ``(N, k, k)`` with k odd; applied to every channel.
        border: ``reflect`` (mirror without repeating the edge), ``replicate``, ``circular`` or
            ``constant`` (zeros). Reflect falls back to replicate on images narrower than the pad.

    Returns:
        ``(N, C, H, W)`` tensor, differentiable in both arguments.

    Raises:
        InputError: if ``x`` is not a float ``(N, C, H, W)`` tensor (C in 1..64), ``kernel`` is
            not a tensor of one of the shapes above with k odd, or ``border`` is unknown.

    Example:
        >>> x = torch.zeros(1, 1, 5, 5); x[0, 0, 2, 2] = 1  # an impulse
        >>> k = gaussian_kernel(3, 1.0)
        >>> bool(torch.allclose(blur(x, k)[0, 0, 1:4, 1:4], k[0]))  # its response is the kernel
        True
        >>> kernels = torch.cat([k, gaussian_kernel(3, 2.0)])  # one kernel per image
        >>> blur(torch.ones(2, 3, 8, 8), kernels).sub(1).abs().max().item() < 1e-6  # kernels sum to 1
        True
    """
    check_image(x, "image", channels=tuple(range(1, 65)), check_range=False)
    if not isinstance(kernel, torch.Tensor):
        raise InputError(f"expected the kernel as a torch tensor, got {type(kernel).__name__}")
    if kernel.ndim == 2:
        kernel = kernel[None]
    n, c, h, w = x.shape
    if (kernel.ndim != 3 or kernel.shape[0] not in (1, n) or kernel.shape[-1] != kernel.shape[-2]
            or kernel.shape[-1] % 2 == 0):
        raise InputError(f"expected (k, k), (1, k, k) or ({n}, k, k) kernels with k odd, got {tuple(kernel.shape)}")
    if n == 0:
        return x.clone()
    if border not in ("reflect", "replicate", "circular", "constant"):
        raise InputError(f"unknown border {border!r}; expected reflect, replicate, circular or constant")
    pad = kernel.shape[-1] // 2
    if border == "reflect" and (h <= pad or w <= pad):
        border = "replicate"  # reflect padding needs the image wider than the pad
    xp = F.pad(x, (pad, pad, pad, pad), mode=border)
    weight = kernel.to(x).expand(n, -1, -1).repeat_interleave(c, 0)[:, None]  # (N*C, 1, k, k)
    out = F.conv2d(xp.reshape(1, n * c, h + 2 * pad, w + 2 * pad), weight, groups=n * c)
    return out.view(n, c, h, w)


# Real-ESRGAN's kernel families and their sampling probabilities (Real-ESRGAN, options/*.yml).
KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")


def random_mixed_kernels(generator: _random.Generator, n: int, size: int,
                         types: Sequence[str] = KERNEL_TYPES,
                         probs: Sequence[float] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03),
                         sigma_range: tuple[float, float] = (0.2, 3.0),
                         beta_gaussian_range: tuple[float, float] = (0.5, 4.0),
                         beta_plateau_range: tuple[float, float] = (1.0, 2.0),
                         ) -> tuple[torch.Tensor, list[dict]]:
    """Sample ``n`` kernels of one size from a mixture of families, as Real-ESRGAN does.

    Generalized Gaussian betas are drawn half the time below 1 and half above, as BasicSR.

    Returns:
        ``(n, size, size)`` kernels and a list of per-kernel parameter dicts.
    """
    unknown = set(types) - set(KERNEL_TYPES)
    if unknown:
        raise InputError(f"unknown kernel types {sorted(unknown)}; expected some of {KERNEL_TYPES}")
    if len(probs) != len(types) or any(p < 0 for p in probs) or sum(probs) <= 0:
        raise InputError(f"expected one non-negative probability per kernel type ({len(types)} types), "
                         f"not all zero; got {list(probs)}")
    gens = _random.per_image(generator, n)
    kernels, params = [], []
    cum = torch.tensor(probs, dtype=torch.float64).cumsum(0)
    cum = cum / cum[-1]
    for g in gens:
        u = _random.rand(g, (1, 6), dtype=torch.float64)[0]
        kind = types[int(torch.searchsorted(cum, u[0:1], right=True).clamp(max=len(types) - 1))]
        sx = sigma_range[0] + (sigma_range[1] - sigma_range[0]) * float(u[1])
        iso = kind.endswith("iso") and not kind.endswith("aniso")
        sy = sx if iso else sigma_range[0] + (sigma_range[1] - sigma_range[0]) * float(u[2])
        theta = 0.0 if iso else (float(u[3]) * 2 - 1) * math.pi
        p = {"type": kind, "size": size, "sigma_x": sx, "sigma_y": sy, "theta": theta}
        if kind.startswith("generalized"):
            lo, hi = beta_gaussian_range
            beta = lo + (1 - lo) * float(u[5]) if float(u[4]) < 0.5 else 1 + (hi - 1) * float(u[5])
            k = generalized_gaussian_kernel(size, sx, sy, theta, beta)
            p["beta"] = beta
        elif kind.startswith("plateau"):
            lo, hi = beta_plateau_range
            beta = lo + (1 - lo) * float(u[5]) if float(u[4]) < 0.5 else 1 + (hi - 1) * float(u[5])
            k = plateau_kernel(size, sx, sy, theta, beta)
            p["beta"] = beta
        else:
            k = gaussian_kernel(size, sx, sy, theta)
        kernels.append(k[0])
        params.append(p)
    return torch.stack(kernels) if kernels else torch.empty(0, size, size), params


def pad_kernel(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad ``(N, k, k)`` kernels to ``(N, size, size)`` (both odd), keeping the centre."""
    p = (size - kernel.shape[-1]) // 2
    if p < 0:
        raise InputError(f"cannot pad a {kernel.shape[-1]} px kernel to {size} px")
    return torch.nn.functional.pad(kernel, (p, p, p, p))
