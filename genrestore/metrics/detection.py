"""Artifact-detection metrics of DeSRA (§4.2 eqs. 11-13 and §4.3).

Masks are boolean (or {0, 1}) ``(H, W)`` arrays or tensors, True where an artifact is; as in
:mod:`genrestore.detect`, a float mask is true above 0.5 and an integer one where it is non-zero.
Regions are 8-connected components.

* IoU (eq. 11): ``|A & B| / |A | B|`` per image, where A is the detected mask and B the
  ground truth; DeSRA averages it over the images of a set. Two empty masks give IoU 1.
* Region precision (eq. 12): a detected region z is correct when ``|z & B| / |z| > p``;
  ``precision = N_T / N_S`` over detected regions.
* Region recall (eq. 13): a ground-truth region z is found when ``|A & z| / |z| > p``;
  ``recall = N_R / N_G`` over ground-truth regions. DeSRA sets p = 0.5.
* Removal and addition (§4.3), between the detections of an original model (``old``) and of
  its fine-tuned version (``new``) on the same images: an old region is *removed* when no
  pixel of the new mask touches it (``A & B = 0``); a new region is *added* when it touches
  no pixel of the old mask. Both rates are counted over regions of the whole set and divided
  by the number of old regions, so that they read as fractions of the original artifacts.
  In the paper's notation (§4.1) A is the detected area and B the *ground-truth* (labelled)
  artifact area, and Table 3's IoU is against those labels; so §4.3's conditions compare the
  fine-tuned model's detection with the labels, not with the original model's detection. Pass
  the labelled mask as ``old`` to get the paper's removal rate (a labelled region no new pixel
  touches).

Counts are returned with every rate, so sets can be pooled exactly (``DetectionCounts.__add__``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._checks import InputError, real_number

Mask = np.ndarray | torch.Tensor


def _as_bool(mask: Mask, name: str) -> np.ndarray:
    a = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    a = np.squeeze(a)
    if a.ndim != 2:
        raise InputError(f"expected {name} as an (H, W) mask, got shape {np.shape(mask)}")
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise InputError(f"{name} has NaN or infinite values")
        return a > 0.5  # as genrestore.detect reads float masks
    return a.astype(bool)


def label_regions(mask: Mask) -> tuple[np.ndarray, int]:
    """8-connected components: ``(labels, count)`` with labels 1..count (0 = background)."""
    import cv2

    m = _as_bool(mask, "mask").astype(np.uint8)
    count, labels = cv2.connectedComponents(m, connectivity=8)
    return labels, count - 1


def _pair(a: Mask, b: Mask) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_bool(a, "detected mask"), _as_bool(b, "reference mask")
    if a.shape != b.shape:
        raise InputError(f"masks differ in size: {a.shape} vs {b.shape}")
    return a, b


def iou(detected: Mask, truth: Mask) -> float:
    """Intersection over union of two masks (DeSRA eq. 11); 1.0 when both are empty.

    Example:
        >>> a = np.zeros((4, 4), bool); a[:2] = True          # 8 px
        >>> b = np.zeros((4, 4), bool); b[1:3] = True         # 8 px, 4 shared
        >>> iou(a, b)
        0.3333333333333333
    """
    a, b = _pair(detected, truth)
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _overlap_fractions(regions_of: np.ndarray, n: int, other: np.ndarray) -> np.ndarray:
    """For each region 1..n of ``regions_of``: the fraction of its pixels inside ``other``."""
    if n == 0:
        return np.zeros(0)
    area = np.bincount(regions_of.ravel(), minlength=n + 1)[1:]
    inside = np.bincount(regions_of.ravel(), weights=other.ravel().astype(np.float64), minlength=n + 1)[1:]
    return inside / area


@dataclass(frozen=True)
class DetectionCounts:
    """Region counts of DeSRA's precision and recall, summable over images."""

    correct: int = 0    # N_T: detected regions that are mostly artifact
    detected: int = 0   # N_S
    found: int = 0      # N_R: ground-truth regions mostly covered by the detection
    truth: int = 0      # N_G

    def __add__(self, other: DetectionCounts) -> DetectionCounts:
        return DetectionCounts(self.correct + other.correct, self.detected + other.detected,
                               self.found + other.found, self.truth + other.truth)

    @property
    def precision(self) -> float:
        """``N_T / N_S``; NaN when nothing was detected."""
        return self.correct / self.detected if self.detected else float("nan")

    @property
    def recall(self) -> float:
        """``N_R / N_G``; NaN when there is no ground-truth region."""
        return self.found / self.truth if self.truth else float("nan")


def region_counts(detected: Mask, truth: Mask, p: float = 0.5) -> DetectionCounts:
    """DeSRA eqs. 12-13 on one image: counts of correct detected regions and found truth regions.

    Example:
        >>> det = np.zeros((8, 8), bool); det[0:2, 0:2] = True; det[5:8, 5:8] = True
        >>> gt = np.zeros((8, 8), bool); gt[0:2, 0:3] = True
        >>> c = region_counts(det, gt)
        >>> (c.correct, c.detected, c.found, c.truth, c.precision, c.recall)
        (1, 2, 1, 1, 0.5, 1.0)
    """
    if real_number(p) is None or not 0 <= real_number(p) < 1:
        raise InputError(f"expected the overlap threshold p in [0, 1), got {p!r}")
    a, b = _pair(detected, truth)
    det_labels, n_det = label_regions(a)
    gt_labels, n_gt = label_regions(b)
    correct = int((_overlap_fractions(det_labels, n_det, b) > p).sum())
    found = int((_overlap_fractions(gt_labels, n_gt, a) > p).sum())
    return DetectionCounts(correct, n_det, found, n_gt)


@dataclass(frozen=True)
class ChangeCounts:
    """Region counts of DeSRA's removal and addition rates, summable over images."""

    removed: int = 0   # old regions the new mask does not touch
    old: int = 0       # regions in the original model's detection
    added: int = 0     # new regions that touch no old pixel
    new: int = 0       # regions in the fine-tuned model's detection

    def __add__(self, other: ChangeCounts) -> ChangeCounts:
        return ChangeCounts(self.removed + other.removed, self.old + other.old,
                            self.added + other.added, self.new + other.new)

    @property
    def removal_rate(self) -> float:
        """Removed old regions / old regions; NaN without old regions."""
        return self.removed / self.old if self.old else float("nan")

    @property
    def addition_rate(self) -> float:
        """Added new regions / old regions (a fraction of the original artifacts); NaN without old regions.

        "Added" follows the issue: a new region that intersects no old region. DeSRA §4.3 words it
        otherwise: "the condition for judging the introduction of new artifacts is A ∪ B > B", with
        A the fine-tuned model's detection and B the ground-truth artifact area (§4.1's notation);
        that also counts a detected region overlapping a labelled one but reaching outside it,
        which this code does not.
        """
        return self.added / self.old if self.old else float("nan")


def change_counts(old: Mask, new: Mask) -> ChangeCounts:
    """Removed and added regions between two detections of the same image (DeSRA §4.3).

    Example:
        >>> old = np.zeros((8, 8), bool); old[0:2, 0:2] = True; old[5:7, 5:7] = True
        >>> new = np.zeros((8, 8), bool); new[1:3, 1:3] = True; new[0:2, 6:8] = True
        >>> c = change_counts(old, new)
        >>> (c.removed, c.old, c.added, c.new, c.removal_rate, c.addition_rate)
        (1, 2, 1, 2, 0.5, 0.5)
    """
    a, b = _pair(old, new)
    old_labels, n_old = label_regions(a)
    new_labels, n_new = label_regions(b)
    removed = int((_overlap_fractions(old_labels, n_old, b) == 0).sum())
    added = int((_overlap_fractions(new_labels, n_new, a) == 0).sum())
    return ChangeCounts(removed, n_old, added, n_new)
