"""From DeSRA's D map to the final artifact mask (§3.2, eq. 9 and the morphology after it),
the regions it holds, and the pseudo-GT of eq. 10.

Steps, as the authors' released code runs them (except that regions of exactly the minimum area are
kept, as the issue words it; the code keeps those strictly larger):

1. candidates: ``D / A_k < threshold`` (0.7);
2. erosion with a 5x5 ones kernel once, then dilation with it three times (pixels outside
   the image neither erode nor dilate, OpenCV's default);
3. hole filling (background components, 8-connected, that do not touch the border);
4. removal of 8-connected regions smaller than 4000 pixels at x4 output scale; for another
   scale s the area is ``4000 * (s / 4)^2`` (the same area in LR pixels).

Steps 1-2 are batched torch (GPU when the inputs are there); 3-4 label connected components
with OpenCV on the CPU, one mask at a time (uint8 masks, a few ms each).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import InputError, check_image, whole_number_at_least

MIN_AREA_X4 = 4000


def _as_mask(mask: torch.Tensor) -> torch.Tensor:
    """An ``(N, 1, H, W)`` (or ``(N, H, W)``) mask as bool: float masks are true above 0.5, integer
    ones where non-zero."""
    if not (isinstance(mask, torch.Tensor) and (mask.ndim == 3 or mask.ndim == 4 and mask.shape[1] == 1)
            and not mask.is_complex()):
        raise InputError(f"expected an (N, 1, H, W) mask tensor, got "
                         f"{tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__}")
    if mask.dtype == torch.bool:
        return mask
    return mask > 0.5 if mask.is_floating_point() else mask != 0


def _box_max(x: torch.Tensor, kernel: int, iterations: int) -> torch.Tensor:
    """Max of ``(N, 1, H, W)`` {0, 1} maps over ``iterations`` repeats of a ``kernel`` square anchored at
    ``kernel // 2`` (OpenCV's default anchor), pixels outside the image left out; same size out.

    k x k squares compose: n passes equal one (n (k - 1) + 1)-square whose anchor is n times as far in
    (OpenCV does the same). Padding with 0 leaves the outside out, as every window holds its own pixel.
    """
    if not isinstance(kernel, int) or kernel < 1:
        raise InputError(f"morphology kernel must be an int of at least 1 px, got {kernel!r}")
    a = kernel // 2
    lo, hi = iterations * a, iterations * (kernel - 1 - a)
    return F.max_pool2d(F.pad(x, (lo, hi, lo, hi), value=0.0), lo + hi + 1, stride=1)


def erode(mask: torch.Tensor, kernel: int = 5, iterations: int = 1) -> torch.Tensor:
    """Binary erosion by a ``kernel`` x ``kernel`` square; ``(N, 1, H, W)`` bool out (float masks in:
    true above 0.5), or ``(N, H, W)`` for ``(N, H, W)`` in.

    Raises:
        InputError: ``mask`` not an ``(N, 1, H, W)`` or ``(N, H, W)`` tensor, a bad ``kernel``, or
            ``iterations`` not an int >= 0.
    """
    mask = _as_mask(mask)
    iterations = whole_number_at_least(iterations, "iterations", 0)
    if iterations == 0:
        return mask
    return ~(_box_max((~mask).to(torch.float32), kernel, iterations) > 0)


def dilate(mask: torch.Tensor, kernel: int = 5, iterations: int = 1) -> torch.Tensor:
    """Binary dilation by a ``kernel`` x ``kernel`` square; ``(N, 1, H, W)`` bool out (float masks in:
    true above 0.5), or ``(N, H, W)`` for ``(N, H, W)`` in.

    Raises:
        InputError: ``mask`` not an ``(N, 1, H, W)`` or ``(N, H, W)`` tensor, a bad ``kernel``, or
            ``iterations`` not an int >= 0.
    """
    mask = _as_mask(mask)
    iterations = whole_number_at_least(iterations, "iterations", 0)
    if iterations == 0:
        return mask
    return _box_max(mask.to(torch.float32), kernel, iterations) > 0


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes of an ``(H, W)`` bool mask: background regions (8-connected) not touching the border.

    Equals ``scipy.ndimage.binary_fill_holes(mask, structure=np.ones((3, 3)))``.
    """
    import cv2

    if not (isinstance(mask, np.ndarray) and mask.dtype == bool and mask.ndim == 2):
        raise InputError(f"expected an (H, W) NumPy bool mask, got "
                         f"{(mask.shape, mask.dtype) if hasattr(mask, 'dtype') else type(mask).__name__}")
    background = (~mask).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(background, connectivity=8)
    x, y, w, h = stats[:, 0], stats[:, 1], stats[:, 2], stats[:, 3]
    H, W = mask.shape
    touches = (x == 0) | (y == 0) | (x + w == W) | (y + h == H)
    hole = ~touches
    hole[0] = False  # label 0 is the foreground
    return mask | hole[labels]


def remove_small_regions(mask: np.ndarray, min_area: float) -> np.ndarray:
    """Keep the 8-connected regions of an ``(H, W)`` bool mask with at least ``min_area`` pixels."""
    import cv2

    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False
    return keep[labels]


def min_area_for_scale(scale: float, min_area_x4: float = MIN_AREA_X4) -> float:
    """DeSRA's minimum region area (4000 px at x4 output) for output scale ``scale``."""
    return min_area_x4 * (scale / 4.0) ** 2


def refine_mask(candidates: torch.Tensor, scale: float = 4, kernel: int = 5, erosions: int = 1,
                dilations: int = 3, min_area_x4: float = MIN_AREA_X4) -> torch.Tensor:
    """Morphology, hole filling and small-region removal of candidate masks.

    Args:
        candidates: ``(N, 1, H, W)`` bool, True where ``D / A < threshold``.
        scale: SR output scale (sets the minimum area).
        kernel, erosions, dilations: the square structuring element and its repeat counts.
        min_area_x4: minimum region area at x4 output.

    Returns:
        ``(N, 1, H, W)`` bool final masks, on the input's device.
    """
    if candidates.ndim != 4 or candidates.shape[1] != 1:
        raise InputError(f"expected candidate masks of shape (N, 1, H, W), got {tuple(candidates.shape)}")
    m = dilate(erode(candidates.bool(), kernel, erosions), kernel, dilations)
    min_area = min_area_for_scale(scale, min_area_x4)
    out = [remove_small_regions(fill_holes(a[0]), min_area) for a in m.cpu().numpy()]
    return torch.from_numpy(np.stack(out)[:, None]).to(candidates.device)


@dataclass(frozen=True)
class Region:
    """One detected artifact region: bounding box ``(x, y, w, h)`` in output pixels, area and mean D."""

    box: tuple[int, int, int, int]
    area: int
    mean_d: float

    def as_dict(self) -> dict:
        return {"box_xywh": list(self.box), "area": self.area, "mean_d": round(self.mean_d, 5)}


def regions(mask: torch.Tensor | np.ndarray, d_map: torch.Tensor | np.ndarray) -> list[Region]:
    """8-connected regions of one ``(H, W)`` mask with their boxes, areas and mean D, largest first."""
    import cv2

    # detached: a D map computed from a network's output (no torch.no_grad) still requires grad
    m = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask).squeeze().astype(np.uint8)
    d = np.asarray(d_map.detach().cpu() if isinstance(d_map, torch.Tensor) else d_map, dtype=np.float64).squeeze()
    if m.ndim != 2 or m.shape != d.shape:
        raise InputError(f"expected one (H, W) mask and a map of its size, got {m.shape} and {d.shape}")
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return []
    sums = np.bincount(labels.ravel(), weights=d.ravel(), minlength=n)
    out = [Region(tuple(int(v) for v in stats[i, :4]), int(stats[i, 4]), float(sums[i] / stats[i, 4]))
           for i in range(1, n)]
    return sorted(out, key=lambda r: -r.area)


def pseudo_gt(gan_sr: torch.Tensor, mse_sr: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """DeSRA eq. 10: ``M * MSE-SR + (1 - M) * GAN-SR``.

    Args:
        gan_sr, mse_sr: ``(N, C, H, W)`` in [0, 1].
        mask: ``(N, 1, H, W)`` bool or float in [0, 1] (a soft mask blends).

    Returns:
        ``(N, C, H, W)`` pseudo ground truth.

    Example:
        >>> g, m = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
        >>> mask = torch.zeros(1, 1, 4, 4, dtype=torch.bool); mask[..., :2] = True
        >>> pseudo_gt(g, m, mask)[0, 0, 0].tolist()
        [1.0, 1.0, 0.0, 0.0]
    """
    check_image(gan_sr, "GAN-SR image")
    check_image(mse_sr, "MSE-SR image")
    if not isinstance(mask, torch.Tensor) or not (mask.dtype == torch.bool or mask.is_floating_point()):
        raise InputError(f"expected the mask as a bool or float tensor, got "
                         f"{mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__}")
    if gan_sr.shape != mse_sr.shape:
        raise InputError(f"GAN-SR and MSE-SR images differ in shape: {tuple(gan_sr.shape)} vs {tuple(mse_sr.shape)}")
    if mask.shape[0] != gan_sr.shape[0] or mask.shape[1] != 1 or mask.shape[-2:] != gan_sr.shape[-2:]:
        raise InputError(f"expected a mask of shape {(gan_sr.shape[0], 1, *gan_sr.shape[-2:])}, got {tuple(mask.shape)}")
    m = mask.to(gan_sr.dtype)
    if mask.is_floating_point():
        check_image(m, "mask", channels=(1,))  # a soft mask blends: in [0, 1]
    return m * mse_sr + (1 - m) * gan_sr
