"""Distribution metrics on feature vectors: FID (Fréchet distance), KID and Inception Score.

These functions take features or logits; the feature extractor (InceptionV3) is separate.

* :class:`FeatureStats` keeps float64 running sums (count, sum, sum of outer products), so a
  reference set is folded in batch by batch, merged across shards, and saved once to
  ``.npz`` (``mu``, ``sigma``: the layout pytorch-fid and clean-fid read and write).
* :func:`frechet_distance` (Heusel et al. 2017):
  ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))``. The trace of the matrix square
  root is computed from the symmetric eigen-decomposition
  ``tr((S1 S2)^(1/2)) = sum sqrt(eig(S1^(1/2) S2 S1^(1/2)))``, in float64 (CPU or GPU), with
  no complex arithmetic.
* :func:`kid` (Bińkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel
  ``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets (clean-fid's defaults: 100
  subsets of 1000).
* :func:`inception_score` (Salimans et al. 2016): ``exp(E_x KL(p(y|x) || p(y)))`` over
  ``splits`` parts (rows ``i * N // splits`` to ``(i + 1) * N // splits``, as the reference
  code); mean and (population) standard deviation.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

import numpy as np
import torch

from .._checks import InputError, whole_number_at_least


class FeatureStats:
    """Running mean and covariance of ``d``-dimensional features, in float64.

    Example:
        >>> s = FeatureStats(); s.update(torch.randn(100, 4)); s.update(torch.randn(50, 4))
        >>> s.count, tuple(s.mean.shape), tuple(s.cov.shape)
        (150, (4,), (4, 4))
    """

    def __init__(self) -> None:
        self.count = 0
        self.total: torch.Tensor | None = None
        self.outer: torch.Tensor | None = None
        # the features themselves while there are no more of them than dimensions: FID of such small
        # sets (a benchmark group, patch-FID) then needs no d x d eigendecomposition (see fid_from_stats)
        self._rows: list[torch.Tensor] | None = []

    def update(self, features: torch.Tensor) -> None:
        """Fold in ``(N, d)`` features (any float dtype and device)."""
        if not isinstance(features, torch.Tensor):
            raise InputError(f"expected (N, d) features as a torch tensor, got {type(features).__name__}")
        if features.ndim != 2:
            raise InputError(f"expected (N, d) features, got {tuple(features.shape)}")
        f = features.detach().to(torch.float64)
        if not torch.isfinite(f).all():
            raise InputError("features contain NaN or infinite values")
        if self.total is None:
            self.total = torch.zeros(f.shape[1], dtype=torch.float64, device=f.device)
            self.outer = torch.zeros(f.shape[1], f.shape[1], dtype=torch.float64, device=f.device)
        elif f.shape[1] != self.total.shape[0]:
            raise InputError(f"feature size changed from {self.total.shape[0]} to {f.shape[1]}")
        self.count += f.shape[0]
        self.total += f.sum(0).to(self.total.device)
        self.outer += (f.T @ f).to(self.outer.device)
        # kept rows must not share memory with the caller's tensor (float64 input: .to() is a no-op),
        # or changing that tensor in place later would change this set's FID
        self._keep([f.clone() if f.data_ptr() == features.data_ptr() else f])

    def _keep(self, rows: list[torch.Tensor] | None) -> None:
        if self._rows is None or rows is None or self.count > self.total.shape[0]:
            self._rows = None
        else:
            self._rows += [r.to(self.total.device) for r in rows]

    @property
    def features(self) -> torch.Tensor | None:
        """The ``(N, d)`` float64 features folded in, while ``N <= d`` (else ``None``)."""
        return None if not self._rows else torch.cat(self._rows)

    def merge(self, other: FeatureStats) -> None:
        """Add another instance's sums (another shard or process)."""
        if other.total is None:
            return
        if self.total is None:
            self.count, self.total, self.outer = other.count, other.total.clone(), other.outer.clone()
            self._rows = None if other._rows is None else list(other._rows)
            return
        self.count += other.count
        self.total += other.total.to(self.total.device)
        self.outer += other.outer.to(self.outer.device)
        self._keep(other._rows)

    @property
    def mean(self) -> torch.Tensor:
        self._check()
        return self.total / self.count

    @property
    def cov(self) -> torch.Tensor:
        """Unbiased sample covariance (``N - 1``), as ``numpy.cov`` and pytorch-fid."""
        self._check(2)
        mu = self.mean
        return (self.outer - self.count * torch.outer(mu, mu)) / (self.count - 1)

    def _check(self, n: int = 1) -> None:
        if self.count < n:
            raise InputError(f"feature statistics need at least {n} samples, got {self.count}")

    def save(self, path: str | os.PathLike, crop_border: int = 0, reference: str | None = None) -> None:
        """Write ``mu`` and ``sigma`` (float64), ``count`` and the ``crop_border`` (px, dropped on
        each side of the images before the features) to an ``.npz`` file, atomically.
        ``reference``: a fingerprint of the images (e.g. :func:`images_fingerprint`), checked on load."""
        import io

        from ..io import atomic_write_bytes

        buf = io.BytesIO()
        extra = {} if reference is None else {"reference": np.str_(reference)}
        np.savez(buf, mu=self.mean.cpu().numpy(), sigma=self.cov.cpu().numpy(), count=np.int64(self.count),
                 crop_border=np.int64(crop_border), **extra)
        atomic_write_bytes(path, buf.getvalue())

    @staticmethod
    def load_npz(path: str | os.PathLike, crop_border: int | None = None,
                 reference: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, sigma)`` from an ``.npz`` written by :meth:`save`, pytorch-fid or clean-fid.

        With ``crop_border``, the file must record that crop (files without one, pytorch-fid's,
        clean-fid's and ours before it was recorded, are of whole images: crop 0). With
        ``reference``, a file that records a fingerprint of its images must record this one
        (pytorch-fid's and clean-fid's record none, and are not checked; ours from before the
        fingerprint, told apart by their ``count``, are refused).
        """
        from ..io import open_npz

        what = "feature statistics with 'mu' and 'sigma'"
        try:
            with open_npz(path, what) as f:
                mu, sigma = torch.from_numpy(f["mu"]).double(), torch.from_numpy(f["sigma"]).double()
                saved_crop = int(f["crop_border"]) if "crop_border" in f.files else 0
                saved_reference = str(f["reference"]) if "reference" in f.files else None
                ours_unmarked = saved_reference is None and "count" in f.files  # ours, saved before fingerprints
        except InputError:  # open_npz names the file and what it should hold
            raise
        except (OSError, KeyError, ValueError) as e:
            raise InputError(f"{path}: not a feature-statistics .npz with 'mu' and 'sigma' ({e})") from None
        if not (torch.isfinite(mu).all() and torch.isfinite(sigma).all()):
            raise InputError(f"{path}: the feature statistics contain NaN or infinite values")
        if crop_border is not None and saved_crop != crop_border:
            raise InputError(f"{path}: statistics of images cropped by {saved_crop} px, asked for --crop-border "
                             f"{crop_border}; give the same crop, or another --ref-stats file")
        if reference is not None and ours_unmarked:
            raise InputError(f"{path}: statistics saved by an earlier genrestore, which did not record their "
                             "reference images; delete it to compute them again (and record them)")
        if reference is not None and saved_reference is not None and saved_reference != reference:
            raise InputError(f"{path}: statistics of other reference images than these (another folder, or files "
                             "changed or paired differently since); delete it to compute them again, or give "
                             "another --ref-stats file")
        return mu, sigma


def images_fingerprint(paths: Iterable[str | os.PathLike]) -> str:
    """A digest of a set of image files by content (sha256 of each, in any order): what reference
    statistics saved with :meth:`FeatureStats.save` were computed on."""
    from ..weights import sha256_file

    return hashlib.sha256("\n".join(sorted(sha256_file(p) for p in paths)).encode()).hexdigest()


def _sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(m)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """Fréchet distance between two Gaussians (the FID formula), in float64.

    Example:
        >>> mu, s = torch.zeros(3), torch.eye(3)
        >>> frechet_distance(mu, s, mu + 1, s)  # |mu1 - mu2|^2 = 3
        3.0
    """
    if not all(isinstance(t, torch.Tensor) for t in (mu1, sigma1, mu2, sigma2)):
        raise InputError("expected the means and covariances as torch tensors (torch.from_numpy for NumPy arrays)")
    mu1, mu2 = mu1.double(), mu2.double().to(mu1.device)
    s1, s2 = sigma1.double().to(mu1.device), sigma2.double().to(mu1.device)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.numel(), mu1.numel()):
        raise InputError(f"mismatched statistics: mu {tuple(mu1.shape)} / {tuple(mu2.shape)}, "
                         f"sigma {tuple(s1.shape)} / {tuple(s2.shape)}")
    if not all(torch.isfinite(t).all() for t in (mu1, mu2, s1, s2)):
        raise InputError("the feature statistics contain NaN or infinite values")
    s1 = (s1 + s1.T) / 2
    s2 = (s2 + s2.T) / 2
    root1 = _sqrtm_psd(s1)
    inner = root1 @ s2 @ root1
    tr_sqrt = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0).sqrt().sum()
    diff = mu1 - mu2
    return float(diff @ diff + torch.trace(s1) + torch.trace(s2) - 2 * tr_sqrt)


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    """FID between two sets of accumulated features.

    Sets with no more samples than dimensions (e.g. a handful of images against Inception's 2048)
    have covariances of rank below ``N``: then ``tr sqrt(S1^1/2 S2 S1^1/2)`` is the sum of the
    singular values of ``A B^T / sqrt((N-1)(M-1))`` (``A``, ``B`` the centered features), an
    ``N x M`` matrix, the same value as :func:`frechet_distance` without its two ``d x d``
    eigendecompositions (2 s each on 2 idle CPU cores at d = 2048, 20 s on busy ones)."""
    fa, fb = a.features, b.features
    if fa is None or fb is None or fa.shape[0] < 2 or fb.shape[0] < 2 or fa.shape[1] != fb.shape[1]:
        return frechet_distance(a.mean, a.cov, b.mean, b.cov)
    fb = fb.to(fa.device)
    ca, cb = fa - fa.mean(0), fb - fb.mean(0)
    na, nb = fa.shape[0] - 1, fb.shape[0] - 1
    tr_sqrt = torch.linalg.svdvals(ca @ cb.T).sum() / (na * nb) ** 0.5
    diff = fa.mean(0) - fb.mean(0)
    return float(diff @ diff + (ca * ca).sum() / na + (cb * cb).sum() / nb - 2 * tr_sqrt)


def kid(features_a: torch.Tensor, features_b: torch.Tensor, subsets: int = 100, subset_size: int = 1000,
        generator: torch.Generator | None = None) -> tuple[float, float]:
    """Kernel Inception Distance: mean and standard deviation over random subsets of unbiased MMD^2.

    Args:
        features_a, features_b: ``(N, d)`` and ``(M, d)`` features.
        subsets: number of random subsets.
        subset_size: samples per subset (clipped to the smaller set's size).
        generator: for the subset draws.

    Returns:
        ``(mean, std)``. When the sets are of one size, at most ``subset_size``, every subset is
        the whole of both, so the MMD^2 is computed once and the std is 0: it measures nothing then
        (see :func:`kid_subsets_are_whole_sets`). Both are Python floats in squared feature
        units (scaled by the kernel); near 0 for sets from one distribution (it can be
        slightly negative: the estimate is unbiased), larger as the distributions differ.

    Raises:
        InputError: if the features are not finite ``(N, d)`` and ``(M, d)`` tensors of one
            ``d``, ``subsets`` or ``subset_size`` is not a positive int, a subset would hold fewer
            than 2 samples, or ``generator`` is not one ``torch.Generator`` or None.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> a, b = torch.randn(64, 8, generator=g), torch.randn(64, 8, generator=g)
        >>> same = kid(a, b, subsets=10, subset_size=32, generator=torch.Generator().manual_seed(0))
        >>> shifted = kid(a, b + 1, subsets=10, subset_size=32, generator=torch.Generator().manual_seed(0))
        >>> abs(same[0]) < 0.5 < shifted[0]
        True
        >>> kid(a, b)[1]  # sets of one size, at most subset_size: one whole-set MMD^2, std 0
        0.0
    """
    from .._random import check_generator

    if not (isinstance(features_a, torch.Tensor) and isinstance(features_b, torch.Tensor)):
        raise InputError(f"expected KID features as torch tensors, got {type(features_a).__name__} and "
                         f"{type(features_b).__name__}")
    subsets = whole_number_at_least(subsets, "KID's subsets", 1)
    subset_size = whole_number_at_least(subset_size, "KID's subset_size", 1)
    if not isinstance(generator, (torch.Generator, type(None))):
        check_generator(generator)  # names what a generator is, and how to make one from a seed
        raise InputError("KID takes one torch.Generator (or None) for its subset draws, not one per image")
    a, b = features_a.double(), features_b.double().to(features_a.device)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise InputError(f"expected (N, d) and (M, d) features, got {tuple(a.shape)} and {tuple(b.shape)}")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise InputError("KID features contain NaN or infinite values")
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise InputError(f"KID needs subsets of at least 2 samples, got {m} (subset_size={subset_size}, "
                         f"sets of {a.shape[0]} and {b.shape[0]})")
    d = a.shape[1]
    if kid_subsets_are_whole_sets(a.shape[0], b.shape[0], subset_size):
        subsets = 1  # every draw would be a permutation of both whole sets: the same MMD^2
    values = []
    for _ in range(subsets):
        ia = torch.randperm(a.shape[0], generator=generator)[:m].to(a.device)
        ib = torch.randperm(b.shape[0], generator=generator)[:m].to(a.device)
        x, y = a[ia], b[ib]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        mmd = ((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
               + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)) - 2 * kxy.mean())
        values.append(mmd)
    v = torch.stack(values)
    return float(v.mean()), float(v.std(unbiased=False)) if len(values) > 1 else 0.0


def kid_subsets_are_whole_sets(n_a: int, n_b: int, subset_size: int = 1000) -> bool:
    """Whether :func:`kid`'s subsets of sets of ``n_a`` and ``n_b`` samples are the whole sets (its
    std is then 0 by construction, not a measure of spread): two sets of the same size, no larger
    than ``subset_size``."""
    return n_a == n_b <= subset_size


def inception_score_splits(n: int, min_split: int = 50) -> int:
    """The reference's 10 IS splits, fewer for a small set so that each holds ``min_split`` images.

    A split's score is at most its number of images (``exp`` of an entropy over them), so splits of
    a few images measure their size, not the images: below ``2 min_split`` images, one split.

    Example:
        >>> [inception_score_splits(n) for n in (4, 99, 100, 499, 500, 50000)]
        [1, 1, 2, 9, 10, 10]
    """
    if not (isinstance(min_split, int) and min_split >= 1):
        raise InputError(f"expected min_split as a positive int, got {min_split!r}")
    return max(1, min(10, n // min_split))


def inception_score(logits: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """Inception Score from ``(N, K)`` classifier logits: mean and std over ``splits`` parts.

    Example:
        >>> round(inception_score(torch.eye(10) * 100, splits=1)[0], 4)  # 10 confident, distinct classes
        10.0
    """
    if not isinstance(logits, torch.Tensor):
        raise InputError(f"expected logits as a torch tensor, got {type(logits).__name__}")
    splits = whole_number_at_least(splits, "the Inception Score's splits", 1)
    if logits.ndim != 2 or logits.shape[0] < splits:
        raise InputError(f"expected (N, K) logits with N >= splits={splits} >= 1, got {tuple(logits.shape)}")
    if not torch.isfinite(logits).all():
        raise InputError("Inception Score logits contain NaN or infinite values")
    logp = torch.log_softmax(logits.double(), dim=1)
    n = logp.shape[0]
    scores = []
    # exactly ``splits`` parts, bounded at i * N // splits as the reference code (torch.chunk gives fewer
    # parts when N is not a multiple: 12 rows in 10 chunks are 6 chunks of 2)
    for i in range(splits):
        part = logp[i * n // splits:(i + 1) * n // splits]
        p_y = torch.logsumexp(part, 0) - torch.log(torch.tensor(float(part.shape[0]), dtype=torch.float64))
        kl = (part.exp() * (part - p_y)).sum(1).mean()
        scores.append(kl.exp())
    s = torch.stack(scores)
    return float(s.mean()), float(s.std(unbiased=False))
