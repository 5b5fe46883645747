"""Set-level metrics from InceptionV3 features: FID, KID, IS and patch-FID.

* FID and KID compare the pool3 features (2048-d) of two image sets (see
  :mod:`genrestore.metrics.distribution` for the formulas); IS uses the 1008 logits of the
  evaluated set alone.
* Patch-FID (robust StyleGAN §6.1) is FID on random crops: its code takes 1000 crops of
  128x128 per image (250 in its DDRM comparison), each then resized to 299 like a whole image.
* Features come from :class:`~genrestore.models.inception.FIDInceptionV3` (weights
  ``inception-fid`` in the local store), batched, on any device; ``autocast=True`` runs it in
  bfloat16 on GPU (features are returned in float32 and checked for NaN/inf).
* With features-only weights (``genrestore weights install inception-fid``: no 1008-logit
  layer) the logits are ``None``; FID, KID and patch-FID work, IS raises
  :class:`~genrestore.models.inception.MissingLogits` (one line saying so).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from .. import _random
from .._checks import InputError, check_image, whole_number_at_least
from .distribution import FeatureStats, fid_from_stats, inception_score, inception_score_splits, kid


def random_crops(x: torch.Tensor, size: int, count: int, generator: _random.Generator = None) -> torch.Tensor:
    """``count`` random ``size x size`` crops of each image: ``(N * count, C, size, size)``."""
    check_image(x, "images", channels=(1, 3), check_range=False)
    size = whole_number_at_least(size, "the crop size", 1)
    count = whole_number_at_least(count, "the crop count", 1)
    n, c, h, w = x.shape
    if h < size or w < size:
        raise InputError(f"patch-FID crops of {size} px need images at least that large, got {w}x{h}")
    ys = _random.randint(generator, n * count, 0, h - size + 1)
    xs = _random.randint(generator, n * count, 0, w - size + 1)
    idx = torch.arange(size)
    rows = (ys[:, None] + idx[None]).to(x.device)  # (M, size)
    cols = (xs[:, None] + idx[None]).to(x.device)
    image = torch.arange(n, device=x.device).repeat_interleave(count)  # crop k is of image k // count
    # gather from x itself: a repeat of the images first held count copies (12 GB at 1000 crops of 1024 px)
    return x[image[:, None, None, None], torch.arange(c, device=x.device)[None, :, None, None],
             rows[:, None, :, None], cols[:, None, None, :]]


class InceptionFeatures:
    """Batched pool3 features and logits of image batches, with a model from the store.

    ``__call__`` returns ``(features, logits)``; ``logits`` is ``None`` when the model has no
    output layer (features-only weights).
    """

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 32, autocast: bool = False,
                 model=None) -> None:
        from ..models.inception import FIDInceptionV3

        self.device = torch.device(device)
        self.model = (model or FIDInceptionV3.from_store()).to(self.device).eval()
        self.batch_size = batch_size
        self.autocast = autocast and self.device.type == "cuda"

    @property
    def has_logits(self) -> bool:
        return getattr(self.model, "has_logits", True)

    def require_logits(self) -> None:
        """Raise :class:`~genrestore.models.inception.MissingLogits` when the model cannot give IS's logits."""
        if not self.has_logits:
            self.model.require_logits()

    @torch.no_grad()  # not inference_mode: features may be edited in place or kept for a loss
    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        check_image(x, "images", channels=(3,))  # 0..255 or uint8 images would give features without complaint
        feats, logits = [], []
        for chunk in x.split(self.batch_size):
            chunk = chunk.to(self.device, torch.float32)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                f, lg = self.model(chunk)
            f, lg = f.float(), (lg.float() if lg is not None else None)
            if not (torch.isfinite(f).all() and (lg is None or torch.isfinite(lg).all())):
                raise FloatingPointError("Inception features have NaN/inf (try without autocast)")
            feats.append(f.cpu())
            if lg is not None:
                logits.append(lg.cpu())
        return torch.cat(feats), (torch.cat(logits) if logits else None)


@dataclass
class SetFeatures:
    """Features (and logits) of one image set, accumulated image by image.

    FID needs only the running statistics: ``keep_features=False`` (no KID) and
    ``keep_logits=False`` (no IS) keep memory constant in the number of images (patch-FID's
    1000 crops an image would otherwise hold 8 MB of features per image).
    """

    stats: FeatureStats = field(default_factory=FeatureStats)
    features: list[torch.Tensor] = field(default_factory=list)
    logits: list[torch.Tensor | None] = field(default_factory=list)
    keep_features: bool = True
    keep_logits: bool = True

    def add(self, f: torch.Tensor, lg: torch.Tensor | None) -> None:
        """``lg`` is ``None`` from features-only weights; :meth:`all_logits` then raises."""
        self.stats.update(f)
        if self.keep_features:
            self.features.append(f)
        if self.keep_logits:
            self.logits.append(lg)

    def all_features(self) -> torch.Tensor:
        if not self.keep_features:
            raise ValueError("this SetFeatures was made with keep_features=False: KID needs the features")
        return torch.cat(self.features)

    def all_logits(self) -> torch.Tensor:
        if not self.keep_logits:
            raise ValueError("this SetFeatures was made with keep_logits=False: IS needs the logits")
        if any(lg is None for lg in self.logits):
            from ..models.inception import MISSING_LOGITS, MissingLogits

            raise MissingLogits(MISSING_LOGITS)
        return torch.cat(self.logits)


def collect(extractor: InceptionFeatures, images: Iterable[torch.Tensor], patch: tuple[int, int] | None = None,
            generator: _random.Generator = None) -> SetFeatures:
    """Features of every image (or of ``patch = (size, count)`` random crops per image)."""
    out = SetFeatures()
    for x in images:
        if patch is not None:
            x = random_crops(x, patch[0], patch[1], generator)
        out.add(*extractor(x))
    if out.stats.count == 0:
        raise InputError("no images to compute features of")
    return out


def set_metrics(ref: SetFeatures | FeatureStats, dist: SetFeatures, which: Iterable[str],
                kid_subset: int = 1000, generator: torch.Generator | None = None) -> dict[str, float]:
    """FID (``fid``), KID (``kid``, mean and std), IS (``is``, mean and std) of ``dist`` against ``ref``.

    IS uses 10 splits, fewer below 500 images (:func:`~genrestore.metrics.distribution.inception_score_splits`).
    """
    out: dict[str, float] = {}
    which = set(which)
    logits = dist.all_logits() if "is" in which else None  # MissingLogits before any work, features-only weights
    ref_stats = ref if isinstance(ref, FeatureStats) else ref.stats
    if which & {"fid", "pfid"}:
        out["fid" if "fid" in which else "pfid"] = fid_from_stats(ref_stats, dist.stats)
    if "kid" in which:
        if isinstance(ref, FeatureStats):
            raise InputError("KID needs the reference features, not only their statistics")
        out["kid"], out["kid_std"] = kid(ref.all_features(), dist.all_features(), subset_size=kid_subset,
                                         generator=generator)
    if "is" in which:
        out["is"], out["is_std"] = inception_score(logits, splits=inception_score_splits(logits.shape[0]))
    return out
