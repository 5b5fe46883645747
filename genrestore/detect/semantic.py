"""Semantic-aware adjustment of DeSRA's D map (§3.2, eqs. 8-9) and the segmenters it uses.

Each pixel gets the weight ``A_k`` of its class ``k``; a pixel is an artifact candidate where
``D / A_k < threshold`` (0.7). ``A_k`` is the value that 85 % of class k's D values exceed
("sort in descending order, take the value at 85 %", eq. 8), so classes where GANs normally
add texture (foliage: A ~ 0.75) tolerate a lower D than smooth or regular ones (sky: 1.0).

Segmenters map an MSE-SR batch ``(N, 3, H, W)`` in [0, 1] to labels ``(N, H, W)`` (int64):

* ``none``: one class, weight 1 (the ablation "without semantics", Table 4).
* ``texture`` (default, no weights): three classes from the MSE-SR image itself:
  smooth (local std of BT.601 luma < 4 on its 16..235 scale), regular (strongly oriented structure: structure
  tensor coherence >= 0.5, as on buildings and text) and complex (the rest: foliage, fur,
  gravel). Their weights 1.0 / 0.8 / 0.75 are those the authors fitted for sky, building and
  tree, the classes they stand in for; refit them on your data with :class:`AdjustmentFit`.
* ``segformer``: a SegFormer trained on ADE20K (150 classes), loaded with ``transformers`` from a
  local folder (``config.json`` + weights), with the authors' released per-class weights
  (``ade20k_adjustment.json``). This is the paper's setting.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from typing import Protocol

import torch
import torch.nn.functional as F

from .._checks import InputError, check_float_tensor, check_image
from ..metrics.full_reference import rgb_to_y
from .distance import _blur, local_variance


class Segmenter(Protocol):
    """Maps ``(N, 3, H, W)`` RGB in [0, 1] to ``(N, H, W)`` int64 class labels."""

    name: str
    class_names: list[str]
    weights: torch.Tensor  # (K,) adjustment weights A_k

    def __call__(self, image: torch.Tensor) -> torch.Tensor: ...


class NoSegmenter:
    """One class for every pixel, ``A = 1``: plain thresholding of D."""

    name = "none"
    class_names = ["all"]

    def __init__(self) -> None:
        self.weights = torch.ones(1)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        check_image(image, "image to segment", channels=(3,))
        return torch.zeros(image.shape[0], *image.shape[-2:], dtype=torch.long, device=image.device)


class TextureSegmenter:
    """Weight-free smooth / regular / complex texture classes of an (MSE-SR) image.

    Args:
        smooth_std: local luma standard deviation (0..255 units, 11x11 Gaussian window) below
            which a pixel is smooth.
        coherence: structure-tensor coherence ``(l1 - l2) / (l1 + l2)`` at or above which a
            textured pixel is regular (oriented) rather than complex.
        weights: adjustment weights for (smooth, regular, complex).
    """

    name = "texture"
    class_names = ["smooth", "regular", "complex"]

    def __init__(self, smooth_std: float = 4.0, coherence: float = 0.5,
                 weights: tuple[float, float, float] = (1.0, 0.8, 0.75)) -> None:
        self.smooth_std, self.coherence = smooth_std, coherence
        self.weights = torch.tensor(weights, dtype=torch.float32)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        check_image(image, "image to segment", channels=(3,))
        y = rgb_to_y(image.float()) * 255.0                       # (N, 1, H, W), BT.601 luma
        std = local_variance(y).sqrt()
        gy, gx = torch.gradient(y, dim=(2, 3))                     # central differences
        j = _blur(torch.cat([gx * gx, gy * gy, gx * gy], 1), 11, 1.5)
        jxx, jyy, jxy = j[:, 0], j[:, 1], j[:, 2]
        coh = ((jxx - jyy) ** 2 + 4 * jxy ** 2).sqrt() / (jxx + jyy + 1e-6)
        labels = torch.where(coh >= self.coherence, 1, 2)
        return torch.where(std[:, 0] < self.smooth_std, 0, labels).long()


def ade20k_adjustment() -> tuple[list[str], torch.Tensor]:
    """ADE20K class names and DeSRA's released adjustment weights for them (150 each)."""
    data = json.loads((resources.files("genrestore.detect") / "ade20k_adjustment.json").read_text())
    return data["classes"], torch.tensor(data["weights"], dtype=torch.float32)


class SegFormerSegmenter:
    """A local SegFormer checkpoint (``transformers`` layout) for ADE20K's 150 classes.

    Args:
        folder: a folder with ``config.json`` and the weights, e.g. a local copy of
            ``nvidia/segformer-b5-finetuned-ade-640-640``. Nothing is downloaded.
        size: the square size images are resized to for the network (bilinear); the logits are
            resized back to the input size before the argmax.
        weights: per-class adjustment weights; default DeSRA's ADE20K table (150 classes).
        device: where the network runs.
    """

    name = "segformer"
    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(self, folder: str | os.PathLike, size: int = 640, weights: torch.Tensor | None = None,
                 device: str | torch.device = "cpu") -> None:
        try:
            from transformers import SegformerForSemanticSegmentation
        except ImportError:
            raise InputError("the SegFormer segmenter needs `transformers`: pip install transformers") from None
        if not os.path.isfile(os.path.join(folder, "config.json")):
            raise InputError(f"{folder}: not a SegFormer folder (no config.json); download one such as "
                             f"nvidia/segformer-b5-finetuned-ade-640-640 on a machine with internet and pass its folder")
        self.model = SegformerForSemanticSegmentation.from_pretrained(str(folder), local_files_only=True).to(device).eval()
        k = self.model.config.num_labels
        id2label = self.model.config.id2label
        self.class_names = [id2label.get(i, id2label.get(str(i), str(i))) for i in range(k)]
        if weights is None:
            if k != 150:
                raise InputError(f"{folder}: {k} classes; DeSRA's weights are for ADE20K's 150: pass weights=")
            _, weights = ade20k_adjustment()
        if weights.numel() != k:
            raise InputError(f"expected {k} adjustment weights, got {weights.numel()}")
        self.weights, self.size, self.device = weights.float(), size, torch.device(device)

    @torch.no_grad()  # not inference_mode: labels may be edited in place (merging classes)
    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        check_image(image, "image to segment", channels=(3,))
        h, w = image.shape[-2:]
        x = F.interpolate(image.to(self.device, torch.float32), size=(self.size, self.size), mode="bilinear",
                          align_corners=False)
        mean = torch.tensor(self.MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.STD, device=x.device).view(1, 3, 1, 1)
        logits = self.model(pixel_values=(x - mean) / std).logits
        return upsampled_argmax(logits, (h, w)).to(image.device)


def upsampled_argmax(logits: torch.Tensor, size: tuple[int, int], max_bytes: int = 1 << 28) -> torch.Tensor:
    """``argmax`` over classes of ``logits`` bilinearly resized to ``size`` (as ``F.interpolate`` with
    ``align_corners=False``), in bands of output rows so that ``(N, K, H, W)`` is never held at once.

    Args:
        logits: ``(N, K, h, w)``.
        size: output ``(H, W)``.
        max_bytes: memory for one band of resized logits.

    Returns:
        ``(N, H, W)`` int64 labels.
    """
    n, k, h_in, w_in = logits.shape
    h, w = size
    band = max(1, max_bytes // (4 * n * k * w))
    # source coordinates of output pixel centres, normalized to [-1, 1] for grid_sample (align_corners=False)
    xs = ((torch.arange(w, device=logits.device, dtype=torch.float32) + 0.5) * (w_in / w) - 0.5)
    xs = (xs + 0.5) / w_in * 2 - 1
    out = torch.empty(n, h, w, dtype=torch.long, device=logits.device)
    for r0 in range(0, h, band):
        r1 = min(h, r0 + band)
        ys = (torch.arange(r0, r1, device=logits.device, dtype=torch.float32) + 0.5) * (h_in / h) - 0.5
        ys = (ys + 0.5) / h_in * 2 - 1
        grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], -1).expand(n, -1, -1, -1)
        out[:, r0:r1] = F.grid_sample(logits.float(), grid, mode="bilinear", padding_mode="border",
                                      align_corners=False).argmax(1)
    return out


def make_segmenter(kind: str = "texture", folder: str | os.PathLike | None = None,
                   device: str | torch.device = "cpu") -> Segmenter:
    """A segmenter by name: ``none``, ``texture`` or ``segformer`` (needs ``folder``, used by no other)."""
    if folder is not None and kind != "segformer":
        raise InputError(f"a SegFormer folder (--segformer {folder}) is used only with the segformer segmenter "
                         f"(--segmenter segformer), not {kind!r}")
    if kind == "none":
        return NoSegmenter()
    if kind == "texture":
        return TextureSegmenter()
    if kind == "segformer":
        if folder is None:
            raise InputError("the segformer segmenter needs a local model folder (--segformer DIR)")
        return SegFormerSegmenter(folder, device=device)
    raise InputError(f"unknown segmenter {kind!r}; expected none, texture or segformer")


_INDEX_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def adjustment_map(labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-pixel ``A_k`` from labels ``(N, H, W)``: ``(N, 1, H, W)`` in ``weights``' dtype (float32 for
    the segmenters' weights).

    Args:
        labels: ``(N, H, W)`` integer class indices, as a :class:`Segmenter` gives them.
        weights: ``(K,)`` float ``A_k`` per class, e.g. from :func:`ade20k_adjustment`.

    Raises:
        InputError: labels that are not an integer ``(N, H, W)`` tensor, or outside ``0..K-1``;
            weights that are not a ``(K,)`` float tensor.
    """
    check_float_tensor(weights, "weights")
    if weights.ndim != 1:
        raise InputError(f"expected weights of shape (K,), got {tuple(weights.shape)}")
    if not isinstance(labels, torch.Tensor) or labels.ndim != 3 or labels.dtype not in _INDEX_DTYPES:
        got = f"{tuple(labels.shape)} {labels.dtype}" if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise InputError(f"expected labels as an (N, H, W) integer tensor of class indices, got {got}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= weights.numel()):
        raise InputError(f"labels outside 0..{weights.numel() - 1}")
    return weights.to(labels.device)[labels.long()].unsqueeze(1)  # uint8 would index as a mask


class AdjustmentFit:
    """Streaming fit of DeSRA's ``A_k`` (eq. 8): per class, the D value that ``fraction_above``
    (85 %) of its pixels exceed, from a histogram of ``bins`` bins on [0, 1]: the upper edge of
    the bin that holds it (``bins=20`` reproduces the authors' table's rounding).

    Example:
        >>> fit = AdjustmentFit(num_classes=2)
        >>> d = torch.linspace(0, 1, 1001).view(1, 1, 1, 1001)
        >>> fit.update(d, torch.zeros(1, 1, 1001, dtype=torch.long))
        >>> [round(v, 2) for v in fit.compute().tolist()]
        [0.15, 1.0]
    """

    def __init__(self, num_classes: int, fraction_above: float = 0.85, bins: int = 1000) -> None:
        self.k, self.fraction_above, self.bins = num_classes, fraction_above, bins
        self.counts = torch.zeros(num_classes, bins, dtype=torch.float64)

    def update(self, d: torch.Tensor, labels: torch.Tensor) -> None:
        """Fold a D map ``(N, 1, H, W)`` and its labels ``(N, H, W)`` into the histograms."""
        if d.ndim != 4 or d.shape[1] != 1 or tuple(labels.shape) != (d.shape[0], *d.shape[2:]):
            raise InputError(f"expected a D map of shape (N, 1, H, W) and labels (N, H, W), got D "
                             f"{tuple(d.shape)} and labels {tuple(labels.shape)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.k):
            raise InputError(f"labels outside 0..{self.k - 1}")
        if not torch.isfinite(d).all():
            raise InputError("D map has NaN or inf values")
        b = (d[:, 0].clamp(0, 1) * self.bins).long().clamp_max(self.bins - 1)
        idx = (labels.long() * self.bins + b).flatten().cpu()
        self.counts += torch.bincount(idx, minlength=self.k * self.bins).view(self.k, self.bins).double()

    def compute(self, missing: float = 1.0) -> torch.Tensor:
        """``(K,)`` weights; classes never seen get ``missing``."""
        total = self.counts.sum(1, keepdim=True)
        cdf = self.counts.cumsum(1) / total.clamp_min(1)
        # the bin where the fraction of values below reaches 1 - fraction_above; its upper edge, as
        # the authors' 20-bin weights round up (sky: 1.0); never 0, which would divide D by zero
        first = (cdf < 1 - self.fraction_above - 1e-12).sum(1)
        weights = ((first.double() + 1) / self.bins).clamp(max=1.0).float()
        return torch.where(total[:, 0] > 0, weights, torch.full_like(weights, missing))
