"""The detectors DeSRA compares itself with (seed 001, §4.2, Tables 1 and 2).

* **LDL\\*** -- the artifact map of LDL (Liang et al., CVPR 2022, "Details or Artifacts"), made
  for training with a ground truth, used at inference with the MSE-SR image in place of the
  ground truth, as DeSRA does. With ``R = sum_c |MSE-SR - GAN-SR|`` (images in [0, 1]), the map
  is ``var(R)^(1/5) * var_7x7(R)``: the variance of the whole residual to the power 1/5 (LDL's
  patch-level weight; here the patch is the whole image) times the unbiased variance of R over
  each pixel's 7x7 window, reflect-padded (LDL's pixel-level weight). LDL's training-time
  refinement (zero where an EMA model is worse) needs that model and is left out, as it must be
  at inference. A pixel is an artifact where the map exceeds the threshold; DeSRA reports
  thresholds 0.01, 0.005 and 0.001 and no morphology, and neither do we.
* **NIQE** -- the no-reference baseline: the GAN-SR image alone, scored by NIQE in a sliding
  window. DeSRA says only that "a similar sliding window mechanism" gives a pixel-wise map and
  that the best-performing threshold was chosen. Ours: each ``window`` x ``window`` window (96,
  NIQE's block, at a ``stride`` of 16 px) gets NIQE's 36 features of its one block (MSCN
  coefficients of the whole image, as NIQE computes them before tiling), and its score is NIQE's
  distance with the image's covariance zero (one block has none):
  ``sqrt((mu_p - f)^T (S_p / 2)^+ (mu_p - f))``. A pixel's value is the mean score of the windows
  that cover it; flat windows, which NIQE leaves out, do not count, and a pixel that only flat
  windows cover gets 0. Higher is less natural; a pixel is an artifact where its value exceeds
  the threshold.

PAL4Inpainting, the third baseline of Table 1, is a trained segmentation network that its
authors publish only as TorchScript checkpoints from their own server (``owenzlz/PAL4Inpaint``),
not in a package registry; it is not here.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from .._checks import InputError, check_image

LDL_WINDOW = 7
LDL_THRESHOLDS = (0.01, 0.005, 0.001)  # DeSRA Table 1
NIQE_WINDOW = 96
NIQE_STRIDE = 16


def _check_pair(gan_sr: torch.Tensor, mse_sr: torch.Tensor) -> None:
    check_image(gan_sr, "gan_sr")
    check_image(mse_sr, "mse_sr")
    if gan_sr.shape != mse_sr.shape:
        raise InputError(f"gan_sr {tuple(gan_sr.shape)} and mse_sr {tuple(mse_sr.shape)} differ in shape")


def ldl_artifact_map(gan_sr: torch.Tensor, mse_sr: torch.Tensor, window: int = LDL_WINDOW) -> torch.Tensor:
    """LDL's artifact map with the MSE-SR image as the ground truth (DeSRA's LDL\\*).

    Args:
        gan_sr: ``(N, C, H, W)`` GAN-SR outputs in [0, 1].
        mse_sr: the MSE-SR outputs of the same LR images, same shape.
        window: odd side of the local-variance window (LDL: 7).

    Returns:
        ``(N, 1, H, W)`` float64 map, >= 0 (higher: more likely an artifact).

    Raises:
        InputError: on shapes that differ, an even window, or images smaller than half the window.

    Example:
        >>> gan = torch.zeros(1, 3, 16, 16); gan[..., 4:12, 4:12] = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        >>> m = ldl_artifact_map(gan, torch.zeros(1, 3, 16, 16))
        >>> bool(m[..., 8, 8] > 0), float(m[..., 0, 0])
        (True, 0.0)
    """
    _check_pair(gan_sr, mse_sr)
    if not isinstance(window, int) or window % 2 != 1 or window < 3:
        raise InputError(f"window must be an odd size >= 3, got {window}")
    r = window // 2
    if min(gan_sr.shape[-2:]) <= r:
        raise InputError(f"images of {gan_sr.shape[-1]}x{gan_sr.shape[-2]} px are too small for a {window}x{window} window")
    res = (mse_sr.double() - gan_sr.double()).abs().sum(1, keepdim=True)  # LDL: sum over channels of |GT - SR|
    patch_weight = res.flatten(1).var(1).view(-1, 1, 1, 1) ** 0.2  # unbiased, as torch.var in LDL
    rc = F.pad(res - res.mean(dim=(2, 3), keepdim=True), (r, r, r, r), mode="reflect")  # centred: no cancellation
    n = window * window
    mean = F.avg_pool2d(rc, window, stride=1)
    mean_sq = F.avg_pool2d(rc * rc, window, stride=1)
    pixel_weight = ((mean_sq - mean * mean) * (n / (n - 1))).clamp_min(0)  # unbiased 7x7 variance
    return patch_weight * pixel_weight


def ldl_detect(gan_sr: torch.Tensor, mse_sr: torch.Tensor, threshold: float = 0.005,
               window: int = LDL_WINDOW) -> torch.Tensor:
    """DeSRA's LDL\\* detection: ``(N, 1, H, W)`` bool, True where :func:`ldl_artifact_map` > ``threshold``."""
    if not threshold > 0:
        raise InputError(f"threshold must be > 0, got {threshold}")
    return ldl_artifact_map(gan_sr, mse_sr, window) > threshold


def niqe_window_scores(image: torch.Tensor, window: int = NIQE_WINDOW, stride: int = NIQE_STRIDE,
                       pristine: str | os.PathLike | tuple[torch.Tensor, torch.Tensor] | None = None,
                       rows_per_chunk: int = 8) -> torch.Tensor:
    """NIQE distance of each ``window`` x ``window`` window of each image (see the module docstring).

    Args:
        image: ``(N, C, H, W)`` in [0, 1], C = 1 or 3, at least ``window`` px a side.
        window: window side in px, even (NIQE's block: 96); its half-scale block is ``window / 2``.
        stride: step between windows in px; even, and ``window`` must be a multiple of it.
        pristine: the NIQE model (see :func:`genrestore.metrics.niqe`).
        rows_per_chunk: window rows computed at once (memory: about ``rows * cols * window^2 * 40`` bytes).

    Returns:
        ``(N, rows, cols)`` float64, ``rows = (H - window) // stride + 1``; NaN for flat windows.
    """
    from ..degrade.resize import resize
    from ..metrics.niqe import _block_features, _luma_255, load_pristine, mscn

    check_image(image, "image", channels=(1, 3))
    if not (isinstance(rows_per_chunk, int) and rows_per_chunk >= 1):
        raise InputError(f"expected rows_per_chunk as a positive int, got {rows_per_chunk!r}")
    if window < 8 or window % 2 or stride < 2 or stride % 2 or window % stride:
        raise InputError(f"the NIQE map needs an even window >= 8 px and an even stride that divides it; "
                         f"got window {window}, stride {stride}")
    h, w = image.shape[-2:]
    if min(h, w) < window:
        raise InputError(f"the NIQE map needs images of at least {window}x{window} px, got {w}x{h}")
    mu_p, cov_p = load_pristine(pristine)
    img = _luma_255(image, 0)
    inv = torch.linalg.pinv(cov_p.to(img) / 2)  # NIQE's ((S_p + S_d) / 2)^+ with S_d = 0: one block
    mu_p = mu_p.to(img)
    rows, cols = (h - window) // stride + 1, (w - window) // stride + 1
    out = torch.empty(img.shape[0], rows, cols, dtype=img.dtype, device=img.device)
    wide = (cols - 1) * stride + window
    for i in range(img.shape[0]):
        one = img[i:i + 1]
        coef, _ = mscn(one)
        half = resize(one / 255.0, (h // 2, w // 2), "bicubic") * 255.0
        coef2, _ = mscn(half)
        for r0 in range(0, rows, rows_per_chunk):
            r1 = min(rows, r0 + rows_per_chunk)
            top, bottom = r0 * stride, (r1 - 1) * stride + window
            f = torch.cat([_block_features(coef[..., top:bottom, :wide], window, stride),
                           _block_features(coef2[..., top // 2:bottom // 2, :wide // 2], window // 2, stride // 2)], 1)
            d = f - mu_p
            out[i, r0:r1] = torch.einsum("bi,ij,bj->b", d, inv, d).clamp_min(0).sqrt().view(r1 - r0, cols)
    return out


def niqe_map(image: torch.Tensor, window: int = NIQE_WINDOW, stride: int = NIQE_STRIDE,
             pristine: str | os.PathLike | tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Pixel-wise sliding-window NIQE of ``(N, C, H, W)`` images in [0, 1] -> ``(N, 1, H, W)`` float64.

    Each pixel gets the mean score of the non-flat windows (:func:`niqe_window_scores`) that
    cover it, 0 if none; pixels past the last window (fewer than ``stride`` at the right and
    bottom edges) take the value of their nearest covered neighbour.
    """
    scores = niqe_window_scores(image, window, stride, pristine)
    k = window // stride
    valid = torch.isfinite(scores)
    grid = torch.stack([torch.where(valid, scores, 0.0), valid.to(scores.dtype)], 1)  # (N, 2, rows, cols)
    ones = torch.ones(2, 1, k, k, dtype=scores.dtype, device=scores.device)
    # cell (a, b) of stride x stride px is covered by the windows (i, j), a - k < i <= a, b - k < j <= b
    cells = F.conv2d(grid, ones, padding=k - 1, groups=2)
    cell_map = torch.where(cells[:, 1:] > 0, cells[:, :1] / cells[:, 1:].clamp_min(1), 0.0)
    px = cell_map.repeat_interleave(stride, 2).repeat_interleave(stride, 3)
    h, w = image.shape[-2:]
    return F.pad(px, (0, w - px.shape[-1], 0, h - px.shape[-2]), mode="replicate")


def niqe_detect(image: torch.Tensor, threshold: float, window: int = NIQE_WINDOW, stride: int = NIQE_STRIDE,
                pristine: str | os.PathLike | tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """The NIQE baseline: ``(N, 1, H, W)`` bool, True where :func:`niqe_map` > ``threshold``."""
    if not threshold > 0:
        raise InputError(f"threshold must be > 0, got {threshold}")
    return niqe_map(image, window, stride, pristine) > threshold
