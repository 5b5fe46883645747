import math
import numpy as np
import pytest
import scipy.linalg
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from genrestore._checks import InputError
from genrestore.degrade import jpeg_pillow
from genrestore.metrics import (PSNR, SSIM, FeatureStats, change_counts, frechet_distance, inception_score, iou,
                                kid, mse, psnr, region_counts, rgb_to_y, ssim)


@pytest.fixture(scope="module")
def pairs(photos):
    return photos, jpeg_pillow(photos, 15)


def _np(t):
    return t.permute(1, 2, 0).double().numpy()


def test_psnr_ssim_match_scikit_image_on_photos(pairs):
    """Reference: skimage.metrics with the SR papers' SSIM settings; agreement to 1e-4
    (float32 default: ~3e-7; float64: ~1e-14, checked below)."""
    x, y = pairs
    ours_p, ours_s = psnr(x, y), ssim(x, y)
    for i in range(x.shape[0]):
        a, b = _np(x[i]), _np(y[i])
        ref_p = peak_signal_noise_ratio(a, b, data_range=1)
        ref_s = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                      data_range=1, channel_axis=2)
        assert abs(ours_p[i].item() - ref_p) < 1e-4 and abs(ours_s[i].item() - ref_s) < 1e-4
        if i == 0:
            exact_p, exact_s = psnr(x[:1], y[:1], precision="float64"), ssim(x[:1], y[:1], precision="float64")
            assert abs(exact_p.item() - ref_p) < 1e-10 and abs(exact_s.item() - ref_s) < 1e-10


def test_y_channel_and_crop_border_match_scikit_image(pairs):
    x, y = pairs
    ours_p, ours_s = psnr(x, y, y_channel=True, crop_border=4), ssim(x, y, y_channel=True, crop_border=4)
    for i in range(x.shape[0]):
        ya = rgb_to_y(x[i:i + 1].double())[0, 0, 4:-4, 4:-4].numpy()
        yb = rgb_to_y(y[i:i + 1].double())[0, 0, 4:-4, 4:-4].numpy()
        assert abs(ours_p[i].item() - peak_signal_noise_ratio(ya, yb, data_range=1)) < 1e-4
        ref = structural_similarity(ya, yb, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)
        assert abs(ours_s[i].item() - ref) < 1e-4


def test_y_channel_of_strided_inputs_equals_contiguous(pairs):
    """Memory layouts take different paths (the luma as a product over channel planes or over each
    pixel's channels, or a weighted sum; row blocks of strided views): the same values up to float32
    rounding (PSNR in dB, SSIM)."""
    x, y = pairs
    cl = lambda t: t.contiguous(memory_format=torch.channels_last)  # noqa: E731
    for f, tol in ((psnr, 1e-5), (ssim, 1e-6)):
        for yc in (True, False):
            ref = f(x, y, y_channel=yc, crop_border=3)
            assert torch.allclose(f(cl(x), cl(y), y_channel=yc, crop_border=3), ref, rtol=0, atol=tol)
            assert torch.allclose(f(cl(x), y, y_channel=yc, crop_border=3), ref, rtol=0, atol=tol)
            assert torch.allclose(f(x[:, :, 1:], y[:, :, 1:], y_channel=yc, crop_border=2),
                                  f(x[:, :, 1:].contiguous(), y[:, :, 1:].contiguous(), y_channel=yc, crop_border=2),
                                  rtol=0, atol=tol)


def test_luma_of_each_layout_is_exact_for_equal_and_nearly_equal_images(pairs):
    """The CPU luma path takes each side's luma in its own layout (float32 rounding ~3e-8 per
    pixel); equal images must still give inf, and a difference far below that rounding must be
    measured, not drowned: one pixel moved by 1e-5 in red has luma MSE (65.481/255 1e-5)^2 / HW."""
    x = pairs[0][:2].contiguous()
    cl = x.contiguous(memory_format=torch.channels_last)
    assert torch.isinf(psnr(x, cl, y_channel=True)).all() and (mse(cl, x, y_channel=True, crop_border=2) == 0).all()
    moved = cl.clone()
    moved[1, 0, 5, 7] += 1e-5
    h, w = x.shape[-2:]
    expected = (65.481 / 255 * (moved[1, 0, 5, 7].double() - x[1, 0, 5, 7].double())) ** 2 / (h * w)
    got = mse(x, moved, y_channel=True)
    assert got[0].item() == 0 and got[1].item() == pytest.approx(expected.item(), rel=1e-6)


def test_luma_psnr_does_not_depend_on_the_thread_count(pairs, monkeypatch):
    """The mixed-layout luma path (planar photos against channels-last JPEGs) in units of 20 rows
    (126 rows inside the crop: 6 units and a short one), on 1 or 3 threads; an image's value is
    the same alone as in the batch."""
    import genrestore.metrics.full_reference as fr

    x, y = pairs
    assert fr._image_layout(x) == "planar" and fr._image_layout(y) == "channels_last"
    monkeypatch.setattr(fr, "_THREADED_PIXELS", 1024)
    monkeypatch.setattr(fr, "_LUMA_BLOCK", 20 * x.shape[-1])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = mse(x, y, y_channel=True, crop_border=1)
        torch.set_num_threads(3)
        three = mse(x, y, y_channel=True, crop_border=1)
    finally:
        torch.set_num_threads(threads)
    exact = mse(x, y, y_channel=True, crop_border=1, precision="float64")
    assert torch.allclose(one, three, rtol=1e-12, atol=0) and torch.allclose(one, exact, rtol=1e-6, atol=0)
    alone = torch.cat([mse(x[i:i + 1], y[i:i + 1], y_channel=True, crop_border=1) for i in range(len(x))])
    assert torch.equal(alone, three)


@pytest.mark.parametrize("scale", [1e-4, 1e-3, 1e-2])
def test_mixed_layout_luma_mse_of_close_images_is_within_1e_6_of_float64(photos, scale):
    """Each side's float32 luma rounding (~3e-8) weighs more as the images get closer: a
    planar photo against a channels-last copy moved by noise of std ``scale`` (luma MSE ~5e-9 to
    5e-5) stays within 1e-6 relative of the float64 luma of the difference."""
    import genrestore.metrics.full_reference as fr

    x = photos[:2].contiguous()
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3)) * scale
    y = (x + noise).contiguous(memory_format=torch.channels_last)
    d = (torch.tensor(fr._Y_WEIGHTS, dtype=torch.float64).view(1, 3, 1, 1) * (x.double() - y.double())).sum(1)
    want = _crop_ref(d, 2).square().flatten(1).mean(1)
    assert torch.allclose(mse(x, y, y_channel=True, crop_border=2), want, rtol=1e-6, atol=0)


@pytest.mark.parametrize("shape", [(1, 1, 5), (2, 1, 9), (3, 17, 13), (2, 33, 31)])
def test_mixed_layout_luma_mse_on_views_odd_sizes_and_short_blocks(shape, monkeypatch):
    """Planar crops of a larger tensor (rows not adjacent) and channels-last crops (padded rows),
    odd widths, single rows and units of 3 rows, every crop, both argument orders, against the
    float64 luma of the difference; each image's value alone equals its value in the batch."""
    import genrestore.metrics.full_reference as fr

    n, h, w = shape
    g = torch.Generator().manual_seed(h * w)
    big_x, big_y = (torch.rand(n, 3, h + 6, w + 8, generator=g).mul(255).round().div(255) for _ in range(2))
    x = big_x[:, :, 2:2 + h, 3:3 + w]
    y = big_y.contiguous(memory_format=torch.channels_last)[:, :, 2:2 + h, 3:3 + w]
    assert fr._image_layout(x) is None and fr._image_layout(y) is None  # views: not the same-layout path
    monkeypatch.setattr(fr, "_LUMA_BLOCK", 3 * w)
    monkeypatch.setattr(fr, "_THREADED_PIXELS", 1)
    weights = torch.tensor(fr._Y_WEIGHTS, dtype=torch.float64).view(1, 3, 1, 1)
    for a, b in ((x, y), (y, x)):
        for crop in range(0, (min(h, w) + 1) // 2):
            want = _crop_ref((weights * (a.double() - b.double())).sum(1), crop).square().flatten(1).mean(1)
            got = mse(a, b, y_channel=True, crop_border=crop)
            assert torch.allclose(got, want, rtol=1e-6, atol=0), (shape, crop)
            alone = torch.cat([mse(a[i:i + 1], b[i:i + 1], y_channel=True, crop_border=crop) for i in range(n)])
            assert torch.equal(alone, got)


def test_bt601_luma_hand_values():
    rgb = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]).T.reshape(1, 3, 1, 3)
    y = rgb_to_y(rgb)[0, 0, 0] * 255
    assert torch.allclose(y, torch.tensor([235.0, 16.0, 16 + 65.481]), atol=1e-3)


def test_hand_computed_psnr_and_identical_images():
    x = torch.zeros(1, 1, 11, 11)
    assert mse(x, x + 0.5).item() == 0.25
    assert abs(psnr(x, x + 0.5).item() - 10 * np.log10(4)) < 1e-12
    assert psnr(x, x).item() == float("inf") and ssim(x + 0.3, x + 0.3).item() == pytest.approx(1.0)


@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (1, 3, 300, 280), (3, 1, 16, 16)], ids=["group", "strips", "gray"])
def test_ssim_of_identical_images_is_exactly_one(shape):
    """SSIM(x, x) = 1 by its formula; float32 rounding gave 1.0000000044 when the numerator and
    denominator of a term were rounded differently (scikit-image gives 1.0 exactly)."""
    from genrestore.metrics.full_reference import ssim_map

    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    for y_channel in {False, shape[1] == 3}:
        assert ssim(x, x, y_channel).tolist() == [1.0] * shape[0]
        assert ssim(x.double(), x.double(), y_channel, precision="float64").tolist() == [1.0] * shape[0]
    leaf = x.clone().requires_grad_(True)  # the out-of-place path of a loss
    assert ssim_map(leaf, x).detach().eq(1).all()


def test_metric_classes_stream_and_merge(pairs):
    x, y = pairs
    whole = PSNR()
    whole.update(x, y)
    a, b = PSNR(), PSNR()
    a.update(x[:3], y[:3])
    b.update(x[3:], y[3:])
    a.merge(b)
    assert abs(a.compute() - whole.compute()) < 1e-12
    assert abs(whole.compute() - psnr(x, y).mean().item()) < 1e-12
    s = SSIM(y_channel=True)
    s.update(x, y)
    assert SSIM.higher_is_better and s.compute() < 1


def test_bad_inputs():
    with pytest.raises(InputError, match="differ in shape"):
        psnr(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(InputError, match="NaN"):
        ssim(torch.full((1, 3, 16, 16), float("nan")), torch.rand(1, 3, 16, 16))
    with pytest.raises(InputError, match="at least 11"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(InputError, match="before any update"):
        PSNR().compute()


def test_negative_crop_border_is_an_input_error():
    """Before the fix crop_border=-1 sliced [-1:1] (an empty crop): psnr raised a bare ValueError
    from range(), ssim blamed a 0x0 image."""
    x, y = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    for f in (mse, psnr, ssim):
        for yc in (False, True):
            with pytest.raises(InputError, match="expected crop_border as a non-negative int"):
                f(x, y, y_channel=yc, crop_border=-1)


# ---------------------------------------------------------------------------- detection (hand-drawn masks)

def _masks():
    gt = np.zeros((10, 10), bool)
    gt[0:4, 0:4] = True        # GT region 1: 16 px
    gt[7:10, 7:10] = True      # GT region 2: 9 px
    det = np.zeros((10, 10), bool)
    det[1:4, 1:5] = True       # 12 px, 9 inside GT region 1 -> 0.75 > 0.5: correct
    det[6:8, 0:2] = True       # 4 px, no GT: wrong
    det[9, 9] = True           # 1 px inside GT region 2: correct (1.0), but covers 1/9 of it
    return det, gt


def test_iou_hand_computed():
    det, gt = _masks()
    # intersection 9 + 1 = 10; union 16 + 9 + 3 + 4 = 32
    assert iou(det, gt) == 10 / 32
    assert iou(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    assert iou(torch.ones(3, 3), torch.zeros(3, 3)) == 0.0


def test_region_precision_recall_hand_computed():
    det, gt = _masks()
    c = region_counts(det, gt, p=0.5)
    assert (c.correct, c.detected) == (2, 3)   # regions 1 and 3 are > 50 % artifact
    assert (c.found, c.truth) == (1, 2)        # GT region 1: 9/16 covered; region 2: 1/9
    assert c.precision == 2 / 3 and c.recall == 0.5
    total = c + region_counts(gt, gt)
    assert (total.correct, total.detected, total.found, total.truth) == (4, 5, 3, 4)
    # diagonal touching pixels are one region (8-connectivity)
    diag = np.eye(4, dtype=bool)
    assert region_counts(diag, diag).detected == 1


def test_removal_and_addition_hand_computed():
    old = np.zeros((10, 10), bool)
    old[0:3, 0:3] = True       # A: shrinks but stays -> not removed
    old[5:7, 5:7] = True       # B: gone -> removed
    old[0:2, 8:10] = True      # C: gone -> removed
    new = np.zeros((10, 10), bool)
    new[1:2, 1:2] = True       # inside A: not added
    new[9, 0:3] = True         # touches nothing old: added
    c = change_counts(old, new)
    assert (c.removed, c.old, c.added, c.new) == (2, 3, 1, 2)
    assert c.removal_rate == 2 / 3 and c.addition_rate == 1 / 3
    assert np.isnan(change_counts(np.zeros((2, 2)), np.zeros((2, 2))).removal_rate)


# ---------------------------------------------------------------------------- distributions

def _scipy_fid(mu1, s1, mu2, s2):
    """pytorch-fid's formula with scipy.linalg.sqrtm: the reference."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real
    diff = mu1 - mu2
    return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    for d in (8, 64):
        fa, fb = rng.normal(size=(500, d)), rng.normal(0.3, 1.2, size=(400, d)) @ rng.normal(size=(d, d)) / np.sqrt(d)
        mu1, s1 = fa.mean(0), np.cov(fa, rowvar=False)
        mu2, s2 = fb.mean(0), np.cov(fb, rowvar=False)
        ref = _scipy_fid(mu1, s1, mu2, s2)
        ours = frechet_distance(*(torch.from_numpy(v) for v in (mu1, s1, mu2, s2)))
        assert abs(ours - ref) / abs(ref) < 1e-6


def test_feature_stats_match_numpy_and_npz_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    f = rng.normal(size=(300, 16))
    s = FeatureStats()
    for chunk in np.array_split(f, 7):
        s.update(torch.from_numpy(chunk).float())
    assert np.allclose(s.mean.numpy(), f.astype(np.float32).mean(0), atol=1e-6)
    assert np.allclose(s.cov.numpy(), np.cov(f.astype(np.float32).astype(np.float64), rowvar=False), atol=1e-9)
    a, b = FeatureStats(), FeatureStats()
    a.update(torch.from_numpy(f[:100]))
    b.update(torch.from_numpy(f[100:]))
    a.merge(b)
    assert torch.allclose(a.cov, torch.from_numpy(np.cov(f, rowvar=False)))
    a.save(tmp_path / "ref.npz")
    mu, sigma = FeatureStats.load_npz(tmp_path / "ref.npz")
    assert torch.equal(mu, a.mean) and torch.equal(sigma, a.cov)
    with pytest.raises(InputError):
        FeatureStats.load_npz(tmp_path / "missing.npz")
    sigma_nan = sigma.numpy().copy()
    sigma_nan[0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", mu=mu.numpy(), sigma=sigma_nan)
    with pytest.raises(InputError, match="nan.npz: the feature statistics contain NaN"):
        FeatureStats.load_npz(tmp_path / "nan.npz")


def test_kid_matches_explicit_unbiased_mmd():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(40, 5)), rng.normal(0.5, 1, size=(40, 5))
    k = lambda a, b: (a @ b.T / 5 + 1) ** 3  # noqa: E731
    m = 40
    ref = 0.0
    for i in range(m):
        for j in range(m):
            if i != j:
                ref += (k(x[i:i + 1], x[j:j + 1]) + k(y[i:i + 1], y[j:j + 1]))[0, 0] / (m * (m - 1))
            ref -= 2 * k(x[i:i + 1], y[j:j + 1])[0, 0] / (m * m)
    mean, std = kid(torch.from_numpy(x), torch.from_numpy(y), subsets=3, subset_size=40)
    assert abs(mean - ref) < 1e-10 and std == 0.0  # full-size subsets are all the same set: computed once


def test_kid_subsets_are_whole_sets_only_for_two_sets_of_one_size_within_the_subset():
    from genrestore.metrics.distribution import kid_subsets_are_whole_sets

    assert kid_subsets_are_whole_sets(4, 4) and kid_subsets_are_whole_sets(1000, 1000)
    assert not kid_subsets_are_whole_sets(1001, 1001)  # subsets of 1000 of them vary
    assert not kid_subsets_are_whole_sets(4, 6)  # 4 of the 6 vary


def test_kid_rejects_no_subsets_and_non_finite_features():
    a, b = torch.randn(10, 4, dtype=torch.float64), torch.randn(10, 4, dtype=torch.float64)
    with pytest.raises(InputError, match="subset"):
        kid(a, b, subsets=0)
    b[0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):  # as FeatureStats.update; it returned (nan, nan)
        kid(a, b, subsets=2)


def test_inception_score_hand_values():
    assert inception_score(torch.zeros(20, 7), splits=2)[0] == pytest.approx(1.0)  # uniform: KL 0
    assert inception_score(torch.eye(10).repeat(2, 1) * 50, splits=2)[0] == pytest.approx(10.0, rel=1e-6)


def test_inception_score_uses_exactly_the_asked_splits():
    """12 confident, distinct images: a split of k of them scores k. The reference bounds the 10 parts at
    i * 12 // 10, sizes 1,1,1,1,2,1,1,1,1,2 (mean 1.2, std 0.4); torch.chunk made 6 parts of 2 (2.0, 0)."""
    mean, std = inception_score(torch.eye(12) * 100, splits=10)
    assert mean == pytest.approx(1.2, rel=1e-9) and std == pytest.approx(0.4, rel=1e-9)
    with pytest.raises(InputError):
        inception_score(torch.eye(12), splits=0)


def _mmd_unbiased(x, y):
    """Unbiased MMD^2 (Bińkowski et al. 2018, eq. 3) with k(x, y) = (x.y / d + 1)^3, in NumPy."""
    m, d = x.shape
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    kxx, kyy = k(x, x), k(y, y)
    return ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * k(x, y).mean()


def test_kid_subsets_are_clipped_to_the_smaller_set_and_its_std_is_the_population_one():
    """3 and 2 features, subset_size 10: subsets are clipped to 2 samples (the smaller set, whole), so a
    subset's MMD^2 is one of 3 values, one per pair of rows of the larger set. Two subsets give the mean
    and the population std (torch-fidelity's np.std of the subset values) of two of them."""
    import itertools

    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(3, 4)), rng.normal(0.5, 1, size=(2, 4))
    u = [_mmd_unbiased(a[list(p)], b) for p in itertools.combinations(range(3), 2)]
    mean, std = kid(torch.from_numpy(a), torch.from_numpy(b), subsets=2, subset_size=10,
                    generator=torch.Generator().manual_seed(1))
    assert std > 0  # this seed draws two different subsets
    assert any(abs(mean - (ui + uj) / 2) < 1e-9 and abs(std - abs(ui - uj) / 2) < 1e-9
               for ui, uj in itertools.combinations(u, 2)), (mean, std, u)


def test_kid_draws_the_subsets_of_the_two_sets_independently():
    """KID of a set of 3 against itself with subsets of 2: each side's subset is drawn independently, so
    over 1000 subsets the mean and std are those of MMD^2 over all 3 x 3 pairs of subsets (the same rows on
    both sides would average the 3 diagonal pairs only, 1.35 standard deviations away)."""
    import itertools

    a = np.random.default_rng(167).normal(size=(3, 2))
    subs = [list(p) for p in itertools.combinations(range(3), 2)]
    vals = np.array([[_mmd_unbiased(a[i], a[j]) for j in subs] for i in subs])
    k = 1000
    mean, std = kid(torch.from_numpy(a), torch.from_numpy(a.copy()), subsets=k, subset_size=2,
                    generator=torch.Generator().manual_seed(0))
    assert abs(vals.mean() - np.diag(vals).mean()) > 20 * vals.std() / k ** 0.5
    assert abs(mean - vals.mean()) < 4 * vals.std() / k ** 0.5
    assert abs(std - vals.std()) < 0.1 * vals.std()


def test_kid_and_inception_score_refuse_too_few_samples():
    """A KID subset of 1 sample has no pair for the unbiased terms (0 / 0); IS needs a sample per split."""
    a = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(InputError, match="at least 2 samples"):
        kid(a, a, subsets=2, subset_size=1)
    with pytest.raises(InputError, match="at least 2 samples"):
        kid(a, a[:1], subsets=2)
    with pytest.raises(InputError, match="N >= splits"):
        inception_score(torch.eye(5), splits=6)


def test_frechet_distance_of_rank_deficient_covariances_is_exact():
    """4 samples in 8 dimensions: the covariance has rank 3 and eigenvalues of about +-1e-16, which must
    not become NaN square roots. By hand: FID(mu, S, mu + t, S) = |t|^2, so 0 for the same statistics."""
    f = torch.from_numpy(np.random.default_rng(4).normal(size=(4, 8)))
    mu, s = f.mean(0), torch.from_numpy(np.cov(f.numpy(), rowvar=False))
    assert torch.linalg.eigvalsh(s).min() < 0  # rounding makes some eigenvalues negative
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-6  # square roots of eigenvalues ~1e-16: ~1e-8 each
    t = torch.full((8,), 0.5, dtype=torch.float64)
    assert frechet_distance(mu, s, mu + t, s) == pytest.approx(8 * 0.25, abs=1e-6)


def test_frechet_distance_uses_the_symmetric_part_and_checks_shapes():
    """A covariance with rounding asymmetry (as float32 sums give) counts by its symmetric part: the
    scipy reference on (S + S^T) / 2, whichever triangle holds the error; mismatched shapes are refused."""
    rng = np.random.default_rng(5)
    fa, fb = rng.normal(size=(50, 6)), rng.normal(0.2, 1.1, size=(60, 6))
    mu1, s1, mu2, s2 = fa.mean(0), np.cov(fa, rowvar=False), fb.mean(0), np.cov(fb, rowvar=False)
    skew = np.triu(rng.normal(scale=0.05, size=(6, 6)), 1)
    ref = _scipy_fid(mu1, s1, mu2, s2)
    for s1_noisy in (s1 + skew, s1 + skew.T):  # the symmetric part of both is s1 + (skew + skew.T) / 2
        sym = (s1_noisy + s1_noisy.T) / 2
        ours = frechet_distance(*(torch.from_numpy(v) for v in (mu1, s1_noisy, mu2, s2)))
        assert ours == pytest.approx(_scipy_fid(mu1, sym, mu2, s2), rel=1e-9) and ours != pytest.approx(ref, rel=1e-6)
    with pytest.raises(InputError, match="mismatched statistics"):
        frechet_distance(torch.zeros(3), torch.eye(4), torch.zeros(3), torch.eye(4))


def test_feature_stats_refuse_a_changed_size_and_non_finite_features():
    s = FeatureStats()
    s.update(torch.zeros(3, 4))
    with pytest.raises(InputError, match="feature size changed from 4 to 5"):
        s.update(torch.zeros(3, 5))
    with pytest.raises(InputError, match="NaN or infinite"):
        s.update(torch.tensor([[0.0, 1.0, float("inf"), 0.0]]))
    assert s.count == 3 and torch.equal(s.total, torch.zeros(4, dtype=torch.float64))  # refused batches leave no trace


def test_feature_stats_npz_remembers_its_crop_border(tmp_path):
    """A saved crop must match the asked one; files without the key (pytorch-fid's) are of whole images."""
    s = FeatureStats()
    s.update(torch.from_numpy(np.random.default_rng(6).normal(size=(10, 3))))
    s.save(tmp_path / "c8.npz", crop_border=8)
    assert int(np.load(tmp_path / "c8.npz")["crop_border"]) == 8
    mu, sigma = FeatureStats.load_npz(tmp_path / "c8.npz", crop_border=8)
    assert torch.equal(mu, s.mean) and torch.equal(sigma, s.cov)
    FeatureStats.load_npz(tmp_path / "c8.npz")  # no crop asked: no check
    with pytest.raises(InputError, match="cropped by 8 px, asked for --crop-border 0"):
        FeatureStats.load_npz(tmp_path / "c8.npz", crop_border=0)
    np.savez(tmp_path / "pytorch_fid.npz", mu=mu.numpy(), sigma=sigma.numpy())
    FeatureStats.load_npz(tmp_path / "pytorch_fid.npz", crop_border=0)
    with pytest.raises(InputError, match="cropped by 0 px, asked for --crop-border 8"):
        FeatureStats.load_npz(tmp_path / "pytorch_fid.npz", crop_border=8)


def test_ssim_in_place_path_equals_the_differentiable_one_and_gradients_check():
    """Without gradients SSIM runs its formula in place; as a loss it runs out of place: same values,
    and the gradient passes torch.autograd.gradcheck (float64, finite differences)."""
    from genrestore.metrics.full_reference import ssim_map

    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g)
    with torch.no_grad():
        fast = ssim_map(a, b)
    slow = ssim_map(a.clone().requires_grad_(), b)
    assert slow.requires_grad and torch.allclose(fast, slow.detach(), rtol=0, atol=1e-6)
    a64 = a[:1, :1, :12, :12].double().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: ssim_map(t, b[:1, :1, :12, :12].double()).mean(), (a64,))


def test_mse_row_blocks_and_gradient_path_equal_float64(pairs, monkeypatch):
    """Blocks of a few rows (a short last block), crops and luma, against the float64 reference."""
    import genrestore.metrics.full_reference as fr

    x, y = pairs
    exact = {(yc, cb): mse(x, y, yc, cb, precision="float64") for yc in (False, True) for cb in (0, 3)}
    monkeypatch.setattr(fr, "_BLOCK", 7 * x.shape[0] * 3 * x.shape[-1])  # blocks of 7 rows: the last one is shorter (128 = 18 x 7 + 2; 122 = 17 x 7 + 3)
    for (yc, cb), ref in exact.items():
        assert torch.allclose(mse(x, y, yc, cb), ref, rtol=1e-6, atol=0)
        xg = x.clone().requires_grad_()
        loss = mse(xg, y, yc, cb)
        assert torch.allclose(loss.detach(), ref, rtol=1e-6, atol=0)
        loss.sum().backward()
        d = (x - y)[..., cb:x.shape[-2] - cb, cb:x.shape[-1] - cb]
        if not yc:  # d/dx of mean((x - y)^2) = 2 (x - y) / count inside the crop, 0 outside
            inner = xg.grad[..., cb:x.shape[-2] - cb, cb:x.shape[-1] - cb]
            assert torch.allclose(inner, 2 * d / d[0].numel(), rtol=1e-5, atol=1e-12)
            assert xg.grad.abs().sum() == pytest.approx(inner.abs().sum().item(), rel=1e-6)


def test_ssim_of_a_batch_equals_one_image_at_a_time(pairs):
    """Images folded into channels in groups (4 for luma, 2 for RGB; 5 leaves a short group)."""
    x, y = pairs[0][:5], pairs[1][:5]
    for yc in (False, True):
        batch = ssim(x, y, y_channel=yc, crop_border=2)
        single = torch.cat([ssim(x[i:i + 1], y[i:i + 1], y_channel=yc, crop_border=2) for i in range(5)])
        assert torch.allclose(batch, single, rtol=0, atol=1e-7)
        assert batch.std() > 1e-3  # distinct images: a mix-up between them would show


def test_ssim_in_strips_equals_the_whole_map(pairs, monkeypatch):
    """Strips of 20 output rows (118 = 5 x 20 + 18: a short last strip) against one ssim_map call."""
    import genrestore.metrics.full_reference as fr

    x, y = pairs[0][:3], pairs[1][:3]
    whole = fr.ssim_map(x, y).double().mean(dim=(1, 2, 3))
    monkeypatch.setattr(fr, "_SSIM_MIN_ROWS", 1)
    monkeypatch.setattr(fr, "_SSIM_ELEMENTS", 4 * 3 * x.shape[-1] * (20 + 10))
    assert torch.allclose(ssim(x, y), whole, rtol=0, atol=2e-7)
    xg = x.clone().requires_grad_()
    loss = ssim(xg, y)
    loss.sum().backward()
    xr = x.clone().requires_grad_()
    fr.ssim_map(xr, y).double().mean(dim=(1, 2, 3)).sum().backward()
    assert torch.allclose(loss.detach(), whole, rtol=0, atol=2e-7)
    assert torch.allclose(xg.grad, xr.grad, rtol=0, atol=1e-3 * xr.grad.abs().max().item())
    with pytest.raises(InputError, match="at least 11x11"):
        ssim(x[..., :10], y[..., :10])


@pytest.mark.parametrize("layout", ["planar", "channels_last"])
def test_same_layout_opencv_path_equals_float64(pairs, layout, monkeypatch):
    """The OpenCV path for pairs of one layout (RGB: fused norm per plane; Y: luma of the
    difference per row block), threaded or not, against float64 torch on the same crop."""
    import genrestore.metrics.full_reference as fr

    x, y = pairs
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x, y = x.contiguous(memory_format=fmt), y.contiguous(memory_format=fmt)
    assert fr._image_layout(x) == fr._image_layout(y) == layout
    monkeypatch.setattr(fr, "_BLOCK", 7 * 3 * x.shape[-1])  # Y in row blocks of 7 rows
    for threaded in (1 << 30, 1):
        monkeypatch.setattr(fr, "_THREADED_PIXELS", threaded)
        for yc in (False, True):
            for crop in (0, 3):
                d = _crop_ref(x.double(), crop) - _crop_ref(y.double(), crop)
                if yc:
                    d = (torch.tensor(fr._Y_WEIGHTS, dtype=torch.float64).view(1, 3, 1, 1) * d).sum(1)
                want = d.square().flatten(1).mean(1)
                got = mse(x, y, y_channel=yc, crop_border=crop)
                assert torch.allclose(got, want, rtol=2e-6, atol=0), (layout, threaded, yc, crop)
    assert (mse(x, x.clone(), y_channel=True, crop_border=2) == 0).all()


def _crop_ref(t, b):
    return t[..., b:t.shape[-2] - b, b:t.shape[-1] - b]


# --- boundaries and defaults that only hand-made cases pin (found by mutating the code, helper-43) ---


def test_region_counts_overlap_of_exactly_p_is_not_enough():
    """DeSRA counts a region when more than p = 0.5 of it overlaps: exactly half does not."""
    det = np.zeros((4, 4), bool)
    det[0:2, 0:2] = True
    gt = np.zeros((4, 4), bool)
    gt[0:2, 0:1] = True
    c = region_counts(det, gt)  # the detected region is 2/4 inside the truth; the truth is wholly covered
    assert (c.correct, c.detected, c.found, c.truth) == (0, 1, 1, 1)
    c = region_counts(gt, det)  # roles swapped: the truth region is half covered
    assert (c.correct, c.detected, c.found, c.truth) == (1, 1, 0, 1)


def test_region_counts_default_p_is_one_half():
    det = np.zeros((4, 6), bool)
    det[0, 0:5] = det[2, 0:4] = True
    gt = np.zeros((4, 6), bool)
    gt[0, 0:3] = gt[2, 0:1] = True
    c = region_counts(det, gt)  # the detected regions are 3/5 = 0.6 (correct) and 1/4 (not) inside the truth
    assert (c.correct, c.detected, c.found, c.truth) == (1, 2, 2, 2)


def test_precision_without_detections_is_nan_and_p_one_is_refused():
    gt = np.zeros((4, 4), bool)
    gt[0, 0] = True
    c = region_counts(np.zeros((4, 4), bool), gt)
    assert np.isnan(c.precision) and c.recall == 0.0
    with pytest.raises(InputError):
        region_counts(gt, gt, p=1)  # no overlap fraction exceeds 1


def test_crop_that_leaves_nothing_is_refused():
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(InputError, match="leaves nothing"):
        mse(x, x, crop_border=8)
    with pytest.raises(InputError, match="leaves nothing"):
        mse(torch.rand(1, 1, 2, 3), torch.rand(1, 1, 2, 3), crop_border=1)


def test_ssim_span_check_and_mse_direction():
    from genrestore.metrics.full_reference import MSE

    x = torch.linspace(0, 1.2, 16 * 16).view(1, 1, 16, 16)
    with pytest.raises(InputError, match="wider than data_range"):
        ssim(x, x.clamp(0, 1))
    assert MSE.higher_is_better is False


def test_float_masks_read_as_genrestore_detect_reads_them():
    """A float mask is true above 0.5 (it was any non-zero value here, and above 0.5 in detect):
    a soft map of 0.3 is no detection, 0.7 is."""
    gt = np.zeros((4, 4), bool)
    gt[1:3, 1:3] = True
    assert iou(np.full((4, 4), 0.3, np.float32), np.zeros((4, 4), bool)) == 1.0  # both empty
    soft = np.where(gt, 0.7, 0.3).astype(np.float32)
    assert iou(soft, gt) == 1.0 and iou(torch.from_numpy(soft), gt) == 1.0
    c = region_counts(soft, gt)
    assert (c.correct, c.detected, c.found, c.truth) == (1, 1, 1, 1)


def test_float_mask_of_exactly_one_half_is_no_detection():
    """"True above 0.5", strictly, as genrestore.detect reads masks: a float mask of exactly 0.5 is
    empty, so against an empty truth the IoU is 1 (both empty) and no region is detected."""
    half = np.full((4, 4), 0.5, np.float32)
    assert iou(half, np.zeros((4, 4), bool)) == 1.0
    assert iou(torch.from_numpy(half).double(), np.zeros((4, 4), bool)) == 1.0
    gt = np.zeros((4, 4), bool)
    gt[0, 0] = True
    c = region_counts(half, gt)
    assert (c.correct, c.detected, c.found, c.truth) == (0, 0, 0, 1)
    assert change_counts(half, gt).old == 0


def test_small_set_fid_keeps_a_copy_of_float64_features_and_checks_their_size():
    """FeatureStats keeps the rows of sets no larger than d for fid_from_stats: a float64 tensor the
    caller changes in place afterwards must not change the FID (the sums were taken already), and sets
    of different feature sizes are an InputError as with frechet_distance, not a matmul error."""
    from genrestore.metrics import fid_from_stats

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 8, generator=g, dtype=torch.float64), torch.randn(6, 8, generator=g, dtype=torch.float64)
    a, b = FeatureStats(), FeatureStats()
    a.update(x)
    b.update(y)
    before = fid_from_stats(a, b)
    x.zero_()
    assert fid_from_stats(a, b) == before
    assert abs(before - frechet_distance(a.mean, a.cov, b.mean, b.cov)) < 1e-6 * before
    c = FeatureStats()
    c.update(torch.randn(4, 9, generator=g))
    with pytest.raises(InputError, match="mismatched statistics"):
        fid_from_stats(a, c)


def test_psnr_refuses_two_close_0_to_255_images_given_the_default_data_range():
    """Photos in 0..255 that differ by at most 1 level have MSE < 1 = data_range^2, which the MSE
    check passes: psnr returned ~48 dB (the true PSNR at data_range 255 is 10 log10(255^2 / MSE))."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (1, 3, 40, 40), generator=g).float()
    y = (x + torch.randint(0, 2, x.shape, generator=g)).clamp(0, 255)
    with pytest.raises(InputError, match="span .* wider than data_range = 1 .*data_range=255"):
        psnr(x, y)
    m = float(((x - y) ** 2).mean())
    assert float(psnr(x, y, data_range=255)) == pytest.approx(10 * math.log10(255 ** 2 / m), rel=1e-6)
    over = (x / 255 * 1.005 - 0.002)  # an unclamped output overshooting [0, 1] a little is still measured
    assert float(psnr(over, x / 255)) > 30


# --- found by mutating the code (helper-72) ---


def test_detection_and_change_counts_sum_field_by_field():
    """Pooled counts add each field to the same field (the counts below differ in every field, so a field
    taken from its neighbour shows)."""
    from genrestore.metrics import ChangeCounts, DetectionCounts

    total = DetectionCounts(1, 2, 3, 4) + DetectionCounts(10, 20, 30, 40)
    assert (total.correct, total.detected, total.found, total.truth) == (11, 22, 33, 44)
    assert total.precision == 0.5 and total.recall == 0.75
    changes = ChangeCounts(1, 2, 3, 4) + ChangeCounts(10, 20, 30, 40)
    assert (changes.removed, changes.old, changes.added, changes.new) == (11, 22, 33, 44)
    assert changes.removal_rate == 0.5 and changes.addition_rate == 1.5


def test_region_counts_p_zero_counts_any_overlap():
    """p = 0 is allowed: a region is correct (found) when any of its pixels overlaps, here 1 of 4."""
    det = np.zeros((6, 6), bool)
    det[0:2, 0:2] = True   # 1 of 4 px in the truth
    det[4:6, 4:6] = True   # none
    gt = np.zeros((6, 6), bool)
    gt[1, 1:4] = True      # 1 of 3 px detected
    c = region_counts(det, gt, p=0)
    assert (c.correct, c.detected, c.found, c.truth) == (1, 2, 1, 1)
    assert region_counts(det, gt, p=0.3).correct == 0


def test_change_counts_one_touching_pixel_keeps_a_region_and_is_not_added():
    """§4.3: removed means no new pixel touches the old region; added means the new region touches no old
    pixel. One shared pixel of four (overlap 1/4, under one half) is enough to count as touching."""
    old = np.zeros((6, 6), bool)
    old[0:2, 0:2] = True
    new = np.zeros((6, 6), bool)
    new[1:3, 1:3] = True   # shares old's pixel (1, 1)
    c = change_counts(old, new)
    assert (c.removed, c.old, c.added, c.new) == (0, 1, 0, 1)


def test_ssim_y_channel_in_0_255_matches_scikit_image_on_the_studio_range_luma():
    # the luma offset is 16 in 0..255 units (16 data_range / 255), which SSIM's luminance term sees
    g = np.random.default_rng(7)
    a = g.uniform(0, 255, (16, 16, 3))
    b = np.clip(a + g.normal(0, 20, a.shape), 0, 255)
    w = np.array([65.481, 128.553, 24.966]) / 255
    ya, yb = a @ w + 16, b @ w + 16
    ref = structural_similarity(ya, yb, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    t = lambda v: torch.from_numpy(v).permute(2, 0, 1)[None]
    ours = ssim(t(a), t(b), y_channel=True, data_range=255, precision="float64")
    assert ours.item() == pytest.approx(ref, abs=1e-9)


def test_psnr_in_0_255_accepts_an_mse_above_255():
    # MSE 100^2 = 10000 <= 255^2: valid; PSNR = 20 log10(255 / 100) by hand
    x, y = torch.zeros(1, 3, 8, 8), torch.full((1, 3, 8, 8), 100.0)
    assert psnr(x, y, data_range=255).item() == pytest.approx(20 * math.log10(2.55), abs=1e-9)


def test_psnr_refuses_a_sampled_span_5_percent_wider_than_data_range():
    # two close images (MSE 1e-4) whose values span 1.05 > 1.01 data_range: not in [0, 1]
    x = torch.linspace(-0.025, 1.025, 64).view(1, 1, 8, 8)
    with pytest.raises(InputError, match="span"):
        psnr(x, x + 0.01)


@pytest.mark.parametrize("y_channel", [False, True])
def test_float64_mse_of_an_image_larger_than_one_row_block_with_a_short_last_block(y_channel):
    # 3 x 300 x 700 = 630000 elements > one 2^19-element row block (249 rows): blocks of 249 and 51 rows
    g = np.random.default_rng(3)
    a, b = g.random((1, 3, 300, 700)), g.random((1, 3, 300, 700))
    d = a - b
    if y_channel:
        d = np.tensordot(np.array([65.481, 128.553, 24.966]) / 255, d, axes=([0], [1]))
    ours = mse(torch.from_numpy(a), torch.from_numpy(b), y_channel=y_channel, precision="float64")
    assert ours.item() == pytest.approx(float(np.mean(d ** 2)), rel=1e-12)


def test_feature_stats_keep_the_features_while_there_are_at_most_as_many_as_dimensions():
    f = torch.randn(4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    s = FeatureStats()
    s.update(f[:3])
    s.update(f[3:])  # N == d: still kept
    assert s.features is not None and torch.equal(s.features, f)
    s.update(f[:1])  # N == d + 1: dropped
    assert s.features is None


def test_frechet_distance_drops_the_negative_eigenvalues_of_a_slightly_indefinite_covariance():
    # as pytorch-fid: the real part of sqrtm(S1 S2); diag(1, -0.01) has root diag(1, 0.1i)
    s1, s2, mu = np.diag([1.0, -0.01]), np.eye(2), np.zeros(2)
    ref = np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
    ours = frechet_distance(*(torch.from_numpy(v) for v in (mu, s1, mu, s2)))
    assert ours == pytest.approx(ref, abs=1e-12) and ref == pytest.approx(0.99)


def test_inception_score_takes_as_many_splits_as_rows():
    # N == splits: one row per split, whose marginal is its own prediction: KL 0, score exp(0) = 1 each
    mean, std = inception_score(torch.eye(5) * 100, splits=5)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_merged_small_sets_give_the_fid_of_all_their_features():
    from genrestore.metrics.distribution import fid_from_stats

    g = np.random.default_rng(5)
    fa, fb = g.normal(size=(4, 8)), g.normal(0.3, 1.2, size=(3, 8))
    a, other, b = FeatureStats(), FeatureStats(), FeatureStats()
    a.update(torch.from_numpy(fa[:2]))
    other.update(torch.from_numpy(fa[2:]))
    a.merge(other)  # 4 <= 8 samples: the merged set keeps all 4 rows
    b.update(torch.from_numpy(fb))
    s1, s2 = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    d = fa.mean(0) - fb.mean(0)
    ref = d @ d + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
    assert torch.equal(a.features, torch.from_numpy(fa))
    assert fid_from_stats(a, b) == pytest.approx(ref, rel=1e-6)
