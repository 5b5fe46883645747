"""The whole DeSRA detection (§3.2 and appendix A.2) on a batch of GAN-SR / MSE-SR pairs."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .._checks import InputError, finite_number
from .distance import variance_distance
from .mask import MIN_AREA_X4, Region, refine_mask, regions
from .semantic import Segmenter, TextureSegmenter, adjustment_map


@dataclass
class ArtifactDetection:
    """What :func:`detect_artifacts` found, for a batch of N images of H x W output pixels.

    Attributes:
        d_map: ``(N, 1, H, W)`` D (eq. 7), 1 = same local contrast as the MSE-SR.
        adjusted: ``(N, 1, H, W)`` ``D / A_k`` (eq. 9's left side).
        labels: ``(N, H, W)`` segmenter classes of the MSE-SR image.
        candidates: ``(N, 1, H, W)`` bool, ``adjusted < threshold``.
        mask: ``(N, 1, H, W)`` bool final artifact mask (M = 1: artifact).
        segmenter: name of the segmenter that produced ``labels``.
        regions: per image, the mask's regions, largest first.
    """

    d_map: torch.Tensor
    adjusted: torch.Tensor
    labels: torch.Tensor
    candidates: torch.Tensor
    mask: torch.Tensor
    segmenter: str
    regions: list[list[Region]] = field(default_factory=list)

    def fraction(self) -> torch.Tensor:
        """``(N,)`` fraction of each image's pixels in the mask."""
        return self.mask.float().mean(dim=(1, 2, 3))


def detect_artifacts(gan_sr: torch.Tensor, mse_sr: torch.Tensor, segmenter: Segmenter | None = None,
                     threshold: float = 0.7, scale: float = 4, min_area_x4: float = MIN_AREA_X4,
                     numerator_constant: bool = True, sigma: float | None = 1.5) -> ArtifactDetection:
    """DeSRA artifact detection.

    Args:
        gan_sr: ``(N, 3, H, W)`` GAN-SR outputs in [0, 1].
        mse_sr: ``(N, 3, H, W)`` MSE-SR outputs of the same LR images, in [0, 1].
        segmenter: classes for the semantic adjustment, run on ``mse_sr`` (default
            :class:`TextureSegmenter`, which needs no weights).
        threshold: eq. 9's threshold (0.7).
        scale: SR scale factor of the outputs (sets the minimum region area).
        min_area_x4: minimum region area at x4 output (4000 px).
        numerator_constant: see :func:`~genrestore.detect.variance_distance`.
        sigma: the local window's Gaussian sigma (1.5, SSIM's); ``None``: the unweighted standard
            deviation of eq. 3 as printed (see :func:`~genrestore.detect.variance_distance`).

    Returns:
        An :class:`ArtifactDetection`: its maps and masks are ``(N, 1, H, W)`` (labels
        ``(N, H, W)``) on ``gan_sr``'s device, its regions in output pixels.

    Raises:
        InputError: if the images are not ``(N, 3, H, W)`` in [0, 1] of one shape, the batch is
            empty, ``segmenter`` is not callable, ``threshold`` or ``scale`` is not a finite number
            > 0, ``min_area_x4`` is not a finite number >= 0, or the segmenter's labels do not
            match the images.

    Example:
        >>> mse = torch.full((1, 3, 64, 64), 0.5)  # a flat MSE-SR output
        >>> gan = mse.clone()  # ... where the GAN-SR invents texture in the centre
        >>> gan[..., 16:48, 16:48] += 0.3 * (torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0)) - 0.5)
        >>> det = detect_artifacts(gan, mse, scale=1)
        >>> det.mask.shape, det.segmenter, len(det.regions[0])  # one region (box, area, mean D)
        (torch.Size([1, 1, 64, 64]), 'texture', 1)
        >>> bool(det.mask[0, 0, 16:48, 16:48].all()), bool(det.mask[0, 0, :8].any())  # the square, not the border
        (True, False)
        >>> detect_artifacts(mse, mse, scale=1).fraction().tolist()  # no artifacts against itself
        [0.0]
    """
    if not callable(segmenter) and segmenter is not None:
        raise InputError(f"expected segmenter as a Segmenter (e.g. make_segmenter({segmenter!r})), "
                         f"got {type(segmenter).__name__}")
    finite_number(threshold, "threshold", 0, low_open=True)
    finite_number(scale, "scale", 0, low_open=True)
    finite_number(min_area_x4, "min_area_x4", 0)
    if isinstance(gan_sr, torch.Tensor) and gan_sr.ndim == 4 and gan_sr.shape[0] == 0:
        raise InputError("expected at least one GAN-SR / MSE-SR pair, got an empty batch")
    segmenter = segmenter or TextureSegmenter()
    d = variance_distance(gan_sr, mse_sr, sigma=sigma, numerator_constant=numerator_constant)
    labels = segmenter(mse_sr).to(d.device)
    if tuple(labels.shape) != (d.shape[0], *d.shape[2:]):
        raise InputError(f"segmenter {segmenter.name!r} gave labels of shape {tuple(labels.shape)} for "
                         f"{d.shape[0]} images of {d.shape[-1]}x{d.shape[-2]} px; expected {(d.shape[0], *d.shape[2:])}")
    adjusted = d / adjustment_map(labels, segmenter.weights).to(d.dtype)
    candidates = adjusted < threshold
    mask = refine_mask(candidates, scale=scale, min_area_x4=min_area_x4)
    found = [regions(m, dm) for m, dm in zip(mask, d)]
    return ArtifactDetection(d, adjusted, labels, candidates, mask, segmenter.name, found)
