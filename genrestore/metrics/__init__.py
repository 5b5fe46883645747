"""Metrics that the papers report, batched in torch and checked against their reference implementations."""

from .detection import ChangeCounts, DetectionCounts, change_counts, iou, label_regions, region_counts
from .distribution import FeatureStats, fid_from_stats, frechet_distance, inception_score, inception_score_splits, kid
from .full_reference import MSE, PSNR, SSIM, mse, psnr, rgb_to_y, ssim, ssim_map

__all__ = [
    "ChangeCounts", "DetectionCounts", "change_counts", "iou", "label_regions", "region_counts",
    "FeatureStats", "fid_from_stats", "frechet_distance", "inception_score", "inception_score_splits", "kid",
    "MSE", "PSNR", "SSIM", "mse", "psnr", "rgb_to_y", "ssim", "ssim_map",
]
