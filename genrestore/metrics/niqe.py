"""NIQE, the Natural Image Quality Evaluator (Mittal, Soundararajan & Bovik 2013), vectorized in torch.

Steps (as the reference MATLAB code and BasicSR's port compute them):

1. the image becomes luma on 0..255 (BT.601 studio range, rounded to integers), cropped to
   whole 96x96 blocks;
2. at two scales (full, then halved with antialiased bicubic), MSCN coefficients
   ``(I - mu) / (sigma + 1)`` with a 7x7 Gaussian window (sigma 7/6, replicated borders);
3. per block, 18 features: an asymmetric generalized Gaussian (AGGD) fit of the MSCN
   coefficients (shape, mean scale) and of their products with the 4 neighbours (right,
   down, and both diagonals; shape, mean, left and right scales), i.e. 36 per block;
4. the quality is ``sqrt((mu_p - mu_d)^T ((S_p + S_d) / 2)^+ (mu_p - mu_d))`` between the
   multivariate Gaussian of the pristine model ``(mu_p, S_p)`` and that of the image's blocks.
   Lower is better.

The pristine model is fitted by :func:`fit_pristine` (``genrestore train niqe``) from sharp
blocks of pristine photos (blocks whose mean local deviation is more than 0.75 of the image's
sharpest, as the original). genrestore ships ``niqe-pristine-photos``, fitted on the
project's training photos; the standard MATLAB parameters load from their ``.npz``
(``mu_pris_param``, ``cov_pris_param``, as BasicSR distributes them) with ``pristine=PATH``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import InputError, check_image, error_summary
from .._tensor_cache import tensor_cache
from ..degrade.resize import resize
from .full_reference import rgb_to_y

BLOCK = 96
FLAT = 1e-8  # grey levels (0..255): |img - local mean| below this is rounding noise of a flat area
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


@tensor_cache(maxsize=4)
def _window_1d(device: torch.device) -> torch.Tensor:
    """The 7-tap Gaussian (sigma 7/6) whose outer product is MATLAB's ``fspecial('gaussian', 7, 7/6)``."""
    r = torch.arange(7, dtype=torch.float64) - 3
    g = torch.exp(-(r ** 2) / (2 * (7 / 6) ** 2))
    return (g / g.sum()).to(device)


def _smooth(t: torch.Tensor) -> torch.Tensor:
    """Separable 7x7 Gaussian of ``(N, 1, H, W)`` with replicated borders."""
    g = _window_1d(t.device)
    t = F.pad(t, (3, 3, 3, 3), mode="replicate")
    return F.conv2d(F.conv2d(t, g.view(1, 1, 1, 7)), g.view(1, 1, 7, 1))


def mscn(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean-subtracted contrast-normalized coefficients of ``(N, 1, H, W)`` float64 images on 0..255.

    Where the image is flat, ``img - mu`` is rounding noise (about 1e-13, of either sign, at both
    scales): differences under ``FLAT`` grey levels are set to 0, so that a flat block's
    coefficients are all 0 and it has no AGGD fit (NaN features, left out as the reference
    leaves them out), and a partly flat block's fit counts only its textured pixels' signs.

    Returns:
        ``(mscn, sigma)``, both ``(N, 1, H, W)``.
    """
    mu = _smooth(img)
    sigma = (_smooth(img * img) - mu * mu).abs().sqrt()
    diff = img - mu
    return torch.where(diff.abs() < FLAT, 0.0, diff) / (sigma + 1), sigma


@lru_cache(maxsize=2)
def _gamma_table(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    gam = torch.arange(0.2, 10.0005, 0.001, dtype=torch.float64)
    r = torch.exp(2 * torch.lgamma(2 / gam) - torch.lgamma(1 / gam) - torch.lgamma(3 / gam))
    return gam.to(device), r.to(device)


def aggd_fit(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fit an asymmetric generalized Gaussian to each row of ``x`` (moment matching, as NIQE).

    Args:
        x: ``(B, M)`` samples, one distribution per row.

    Returns:
        ``(alpha, beta_left, beta_right)``, each ``(B,)``: shape and the two scales. As the
        reference, a row without negative (positive) samples has ``beta_left`` (``beta_right``)
        NaN and ``alpha`` 0.2, the first entry of the shape table.
    """
    x2 = x * x
    neg, pos = x < 0, x > 0
    # a side without samples has no scale: NaN (0 / 0), as the reference's mean of an empty set, so that
    # the block's features are NaN and the block is left out (a flat block's coefficients are all 0)
    left_std = (torch.where(neg, x2, 0).sum(1) / neg.sum(1)).sqrt()
    right_std = (torch.where(pos, x2, 0).sum(1) / pos.sum(1)).sqrt()
    gammahat = left_std / right_std
    rhat = x.abs().mean(1) ** 2 / x2.mean(1)
    rhatnorm = rhat * (gammahat ** 3 + 1) * (gammahat + 1) / (gammahat ** 2 + 1) ** 2
    gam, r_gam = _gamma_table(x.device)
    # r(gamma) increases with gamma: the nearest table entry is one of the two around rhatnorm
    hi = torch.searchsorted(r_gam, rhatnorm.contiguous()).clamp(1, r_gam.numel() - 1)
    lo = hi - 1
    nearest = torch.where((r_gam[hi] - rhatnorm) ** 2 < (r_gam[lo] - rhatnorm) ** 2, hi, lo)
    nearest = torch.where(torch.isnan(rhatnorm), 0, nearest)  # the reference's argmin over NaNs: the first entry
    alpha = gam[nearest]
    ratio = torch.exp(0.5 * (torch.lgamma(1 / alpha) - torch.lgamma(3 / alpha)))
    return alpha, left_std * ratio, right_std * ratio


def _block_features(coef: torch.Tensor, block: int, stride: int | None = None) -> torch.Tensor:
    """18 features for each ``block x block`` window of ``(1, 1, H, W)`` MSCN coefficients -> ``(B, 18)``.

    The windows are NIQE's tiles (``stride`` = ``block``, the default) or, with a smaller
    ``stride``, overlapping windows in row-major order (the local NIQE map of ``detect.baselines``).
    """
    blocks = F.unfold(coef, block, stride=stride or block).transpose(1, 2).reshape(-1, block, block)
    feats = []
    a, bl, br = aggd_fit(blocks.reshape(blocks.shape[0], -1))
    feats += [a, (bl + br) / 2]
    # neighbour products are taken inside each block (circular shift within the block, as the reference)
    for dy, dx in _SHIFTS:
        prod = (blocks * torch.roll(blocks, shifts=(dy, dx), dims=(1, 2))).reshape(blocks.shape[0], -1)
        a, bl, br = aggd_fit(prod)
        mean = (br - bl) * torch.exp(torch.lgamma(2 / a) - torch.lgamma(1 / a))
        feats += [a, mean, bl, br]
    return torch.stack(feats, 1)


def _luma_255(x: torch.Tensor, crop_border: int) -> torch.Tensor:
    check_image(x, "image", channels=(1, 3))
    if not isinstance(crop_border, int) or crop_border < 0:
        raise InputError(f"expected crop_border as a non-negative int, got {crop_border!r}")
    if crop_border:
        x = x[..., crop_border:-crop_border, crop_border:-crop_border]
    y = rgb_to_y(x.double()) if x.shape[1] == 3 else x.double()
    return (y * 255).round()


def image_features(img255: torch.Tensor, block: int = BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """36 NIQE features per block of one ``(1, 1, H, W)`` luma image on 0..255.

    Returns:
        ``(features (B, 36), sharpness (B,))``: sharpness is the block's mean local deviation
        at full scale (used to pick pristine blocks).
    """
    h, w = img255.shape[-2:]
    nh, nw = h // block, w // block
    if nh == 0 or nw == 0:
        raise InputError(f"NIQE needs images of at least {block}x{block} px, got {w}x{h}")
    img = img255[..., : nh * block, : nw * block]
    coef, sigma = mscn(img)
    f1 = _block_features(coef, block)
    sharp = F.avg_pool2d(sigma, block).flatten()
    half = resize(img / 255.0, (img.shape[-2] // 2, img.shape[-1] // 2), "bicubic") * 255.0
    coef2, _ = mscn(half)
    f2 = _block_features(coef2, block // 2)
    return torch.cat([f1, f2], 1), sharp


def _nan_cov(f: torch.Tensor) -> torch.Tensor:
    f = f[torch.isfinite(f).all(1)]
    if f.shape[0] < 2:
        raise InputError(f"NIQE needs at least 2 usable (not flat) {BLOCK}x{BLOCK} blocks, e.g. an image of "
                         f"{2 * BLOCK}x{BLOCK} px; got {f.shape[0]} (the image is too small or flat)")
    c = f - f.mean(0)
    return c.T @ c / (f.shape[0] - 1)


def check_pristine(mu: torch.Tensor, cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu (36,), cov (36, 36))`` of a finite pristine model (``mu`` may come as ``(1, 36)``, the
    MATLAB layout); :class:`InputError` otherwise."""
    if not (isinstance(mu, torch.Tensor) and isinstance(cov, torch.Tensor)):
        raise InputError(f"expected the pristine model as torch tensors (mu, cov), got "
                         f"({type(mu).__name__}, {type(cov).__name__})")
    if mu.numel() != 36 or tuple(cov.shape) != (36, 36):
        raise InputError(f"expected a pristine model of 36 features: mu (36,) and cov (36, 36), got "
                         f"{tuple(mu.shape)} and {tuple(cov.shape)}")
    if not (torch.isfinite(mu).all() and torch.isfinite(cov).all()):
        raise InputError("the pristine model has NaN or infinite values")
    return mu.reshape(36), cov


def load_pristine(pristine: str | os.PathLike | tuple[torch.Tensor, torch.Tensor] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu (36,), cov (36, 36))`` float64, checked (:func:`check_pristine`): the shipped model,
    a ``.npz``/``.safetensors`` file, or a ``(mu, cov)`` pair given as it is."""
    if isinstance(pristine, tuple):
        return check_pristine(*pristine)
    return check_pristine(*_read_pristine(pristine))


def _read_pristine(pristine: str | os.PathLike | None) -> tuple[torch.Tensor, torch.Tensor]:
    if pristine is None:
        from .. import weights as ws

        return ws.load_into("niqe-pristine-photos", lambda sd: (sd["mu"].double(), sd["cov"].double()),
                            "a NIQE pristine model (mu, cov)")
    path = str(pristine)
    if not Path(path).is_file():
        raise InputError(f"{path}: no such file (a NIQE pristine model: .safetensors or .npz)")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            sd = load_file(path)
            return sd["mu"].double(), sd["cov"].double()
        except Exception as e:  # safetensors raises its own types for damaged files
            raise InputError(f"{path}: not a NIQE pristine model (a .safetensors with mu and cov): "
                             f"{error_summary(e)}") from None
    from ..io import open_npz

    try:
        with open_npz(path, "a NIQE pristine model: mu_pris_param/cov_pris_param or mu/cov") as f:
            mu = f["mu_pris_param"] if "mu_pris_param" in f else f["mu"]
            cov = f["cov_pris_param"] if "cov_pris_param" in f else f["cov"]
            return torch.from_numpy(np.asarray(mu, np.float64)).flatten(), torch.from_numpy(np.asarray(cov, np.float64))
    except InputError:  # open_npz names the file and what it should hold
        raise
    except (OSError, KeyError, ValueError) as e:
        raise InputError(f"{path}: not a NIQE pristine model (mu_pris_param/cov_pris_param or mu/cov): {e}") from None


def niqe(x: torch.Tensor, pristine: str | os.PathLike | tuple[torch.Tensor, torch.Tensor] | None = None,
         crop_border: int = 0) -> torch.Tensor:
    """NIQE score per image (lower is more natural), ``(N,)`` float64.

    Args:
        x: ``(N, C, H, W)`` in [0, 1], C = 1 or 3, with at least two 96x96 blocks (e.g. 96x192 px)
            that are not flat.
        pristine: ``None`` for the shipped model (``niqe-pristine-photos``), a ``.safetensors``
            or ``.npz`` file, or ``(mu (36,), cov (36, 36))`` tensors.
        crop_border: pixels dropped on each side first, >= 0.

    Returns:
        ``(N,)`` float64 tensor of NIQE scores (unitless distances, >= 0; lower is more natural).

    Raises:
        InputError: if ``x`` is not a float ``(N, C, H, W)`` tensor in [0, 1] with C = 1 or 3,
            ``crop_border`` is not a non-negative int, an image has fewer than two non-flat
            96x96 blocks, or the pristine model is missing, unreadable or not 36 finite features.

    Example:
        >>> noise = torch.rand(1, 3, 96, 192, generator=torch.Generator().manual_seed(0))
        >>> yy, xx = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 192), indexing="ij")
        >>> smooth = (0.5 + 0.4 * torch.sin(12 * xx) * torch.cos(9 * yy)).expand(1, 3, 96, 192)
        >>> scores = niqe(torch.cat([noise, smooth]))
        >>> scores.shape, bool(scores[0] > scores[1])  # white noise is less natural
        (torch.Size([2]), True)
    """
    mu_p, cov_p = load_pristine(pristine)
    img = _luma_255(x, crop_border)
    scores = [torch.empty(0, dtype=torch.float64, device=img.device)]  # an empty batch gives no scores
    for i in range(img.shape[0]):
        f, _ = image_features(img[i:i + 1])
        mu_d = torch.nanmean(f, 0)
        cov_d = _nan_cov(f)
        d = (mu_p.to(f) - mu_d)
        inv = torch.linalg.pinv((cov_p.to(f) + cov_d) / 2)
        scores.append(torch.sqrt(d @ inv @ d).reshape(1))
    return torch.cat(scores)


def fit_pristine(images: list[torch.Tensor], sharpness_threshold: float = 0.75,
                 offsets: tuple[tuple[int, int], ...] = ((0, 0), (0, 48), (48, 0), (48, 48)),
                 ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Fit the pristine multivariate Gaussian from sharp blocks of ``(1, C, H, W)`` images in [0, 1].

    As the original, a block is kept when its mean local deviation is more than
    ``sharpness_threshold`` times the sharpest block of its image. Unlike the original (125
    large photos), we also read blocks on grids shifted by half a block (``offsets``), to get
    about four times as many blocks from a small set (a shifted grid that leaves less than one
    block of an image is skipped).

    Returns:
        ``(mu (36,), cov (36, 36), blocks used)``.
    """
    feats = []
    for i, x in enumerate(images):
        img = _luma_255(x, 0)
        h, w = img.shape[-2:]
        if min(h, w) < BLOCK:
            raise InputError(f"image {i}: NIQE needs images of at least {BLOCK}x{BLOCK} px, got {w}x{h}")
        for oy, ox in offsets:
            if h - oy < BLOCK or w - ox < BLOCK:
                continue  # a shifted grid with no whole block on this image
            f, sharp = image_features(img[..., oy:, ox:])
            keep = sharp > sharpness_threshold * sharp.max()
            feats.append(f[keep & torch.isfinite(f).all(1)])
    f = torch.cat(feats)
    if f.shape[0] < 37:
        raise InputError(f"fitting NIQE needs more than 36 sharp blocks; got {f.shape[0]} (give more or larger images)")
    return f.mean(0), _nan_cov(f), f.shape[0]
