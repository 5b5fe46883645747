"""DeSRA (``../shared/seeds/001``): detect where a GAN-SR model invented artifacts, from its
output and an MSE-SR reference, and build the pseudo-GT that fine-tuning learns from; plus the
detectors DeSRA compares with (LDL*, a sliding-window NIQE map: :mod:`.baselines`).

>>> import torch
>>> from genrestore.detect import detect_artifacts
>>> gan, mse = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
>>> det = detect_artifacts(gan, mse, scale=4)
>>> det.mask.shape, det.segmenter
(torch.Size([1, 1, 64, 64]), 'texture')
"""

from .baselines import ldl_artifact_map, ldl_detect, niqe_detect, niqe_map, niqe_window_scores
from .distance import C_DESRA, local_variance, variance_distance
from .mask import Region, dilate, erode, fill_holes, min_area_for_scale, pseudo_gt, refine_mask, regions, remove_small_regions
from .pipeline import ArtifactDetection, detect_artifacts
from .semantic import (AdjustmentFit, NoSegmenter, SegFormerSegmenter, Segmenter, TextureSegmenter, adjustment_map,
                       ade20k_adjustment, make_segmenter)

__all__ = [
    "C_DESRA", "local_variance", "variance_distance",
    "Region", "dilate", "erode", "fill_holes", "min_area_for_scale", "pseudo_gt", "refine_mask", "regions",
    "remove_small_regions", "ArtifactDetection", "detect_artifacts",
    "AdjustmentFit", "NoSegmenter", "SegFormerSegmenter", "Segmenter", "TextureSegmenter", "adjustment_map",
    "ade20k_adjustment", "make_segmenter",
    "ldl_artifact_map", "ldl_detect", "niqe_detect", "niqe_map", "niqe_window_scores",
]
