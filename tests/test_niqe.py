import numpy as np
import pytest
import scipy.ndimage
import scipy.special
import scipy.stats
import torch

from genrestore._checks import InputError
from genrestore.degrade import gaussian_noise, jpeg_pillow, resize
from genrestore.metrics.niqe import aggd_fit, fit_pristine, image_features, load_pristine, mscn, niqe


def test_mscn_matches_scipy_reference():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 50)).astype(np.float64)
    r = np.arange(7) - 3
    g = np.exp(-r ** 2 / (2 * (7 / 6) ** 2))
    win = np.outer(g, g) / np.outer(g, g).sum()
    mu = scipy.ndimage.correlate(img, win, mode="nearest")
    sigma = np.sqrt(np.abs(scipy.ndimage.correlate(img * img, win, mode="nearest") - mu * mu))
    ours, ours_sigma = mscn(torch.from_numpy(img)[None, None])
    assert np.allclose(ours[0, 0].numpy(), (img - mu) / (sigma + 1), atol=1e-9)
    assert np.allclose(ours_sigma[0, 0].numpy(), sigma, atol=1e-9)


@pytest.mark.parametrize("shape", [0.6, 1.0, 2.0, 4.0])
def test_aggd_fit_recovers_generalized_gaussian(shape):
    """Symmetric case: scipy's generalized normal with shape a and scale s -> alpha = a, beta = s."""
    x = scipy.stats.gennorm.rvs(shape, scale=0.7, size=(3, 200_000), random_state=np.random.default_rng(1))
    alpha, bl, br = aggd_fit(torch.from_numpy(x))
    assert torch.allclose(alpha, torch.full((3,), shape, dtype=torch.float64), rtol=0.05)
    assert torch.allclose(bl, torch.full((3,), 0.7, dtype=torch.float64), rtol=0.05)
    assert torch.allclose(br, torch.full((3,), 0.7, dtype=torch.float64), rtol=0.05)


def test_aggd_fit_recovers_asymmetric_scales():
    rng = np.random.default_rng(2)
    mag = np.abs(scipy.stats.gennorm.rvs(1.5, size=400_000, random_state=rng))
    sign = rng.random(400_000) < 0.5 / (0.5 + 1.5)  # an AGGD's left mass is beta_l / (beta_l + beta_r)
    x = np.where(sign, -0.5 * mag, 1.5 * mag)  # left scale 0.5, right scale 1.5
    alpha, bl, br = aggd_fit(torch.from_numpy(x)[None])
    assert abs(alpha.item() - 1.5) < 0.08 and abs(bl.item() - 0.5) < 0.03 and abs(br.item() - 1.5) < 0.08


def test_flat_areas_have_no_aggd_fit_as_the_reference():
    """A flat area's MSCN coefficients are 0 (not rounding noise of one sign); a row with no negative
    (positive) samples has a NaN left (right) scale and alpha 0.2, as the reference's mean of an empty
    set and argmin over NaN; a wholly flat image has no usable block."""
    img = torch.full((1, 1, 40, 60), 140.0, dtype=torch.float64)
    img[..., 30:] = torch.randint(0, 256, (40, 30), generator=torch.Generator().manual_seed(0)).double()
    coef, _ = mscn(img)
    assert (coef[..., :20] == 0).all() and (coef[..., 30:] != 0).any()
    alpha, bl, br = aggd_fit(torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 2.0]], dtype=torch.float64))
    assert alpha.tolist() == pytest.approx([0.2, 0.2]) and bl.isnan().all()
    assert br[0].isnan() and torch.isfinite(br[1])
    with pytest.raises(InputError, match="flat"):
        niqe(torch.full((1, 3, 192, 192), 0.5))


def test_features_shape_and_too_small():
    f, sharp = image_features(torch.rand(1, 1, 200, 300, dtype=torch.float64) * 255)
    assert f.shape == (6, 36) and sharp.shape == (6,) and torch.isfinite(f).all()
    with pytest.raises(InputError, match="at least 96x96"):
        niqe(torch.rand(1, 3, 64, 200))


def test_shipped_model_scores_degradations_worse(photos):
    import skimage.data

    x = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1)[None].float() / 255
    clean = niqe(x).item()
    jpeg = [niqe(jpeg_pillow(x, q)).item() for q in (10, 4)]  # mild JPEG can score better than clean
    noisy = niqe(gaussian_noise(x, 0.1, torch.Generator().manual_seed(0)).clamp(0, 1)).item()
    blurry = niqe(resize(resize(x, (128, 128), "bicubic"), (512, 512), "bicubic").clamp(0, 1)).item()
    assert clean < jpeg[0] < jpeg[1] and clean < noisy and clean < blurry, (clean, jpeg, noisy, blurry)


def test_pristine_npz_with_matlab_keys(tmp_path):
    mu, cov = load_pristine()
    assert mu.shape == (36,) and cov.shape == (36, 36) and torch.allclose(cov, cov.T)
    np.savez(tmp_path / "p.npz", mu_pris_param=mu.numpy()[None], cov_pris_param=cov.numpy(), gaussian_window=np.ones((7, 7)))
    mu2, cov2 = load_pristine(tmp_path / "p.npz")
    assert torch.equal(mu2, mu) and torch.equal(cov2, cov)
    x = torch.rand(1, 3, 200, 300, generator=torch.Generator().manual_seed(0))
    assert niqe(x, tmp_path / "p.npz").item() == pytest.approx(niqe(x).item())


def test_fit_pristine_gives_a_valid_gaussian():
    import skimage.data

    imgs = [torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255
            for a in (skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket())]
    mu, cov, n = fit_pristine(imgs)
    assert n > 36 and mu.shape == (36,) and torch.linalg.eigvalsh(cov).min() > -1e-9


def test_fit_pristine_on_images_under_one_and_a_half_blocks():
    """Images of 96-143 px a side have no whole block on the grids shifted by half a block: those
    grids are skipped (before the fix the shifted crop was refused as smaller than 96 px)."""
    import skimage.data

    crops = []
    for a in (skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket()):
        t = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255
        crops += [t[..., y:y + 120, x:x + 130] for y in (0, 90, 170) for x in (0, 100, 200, 300)]
    mu, cov, n = fit_pristine(crops)
    mu0, cov0, n0 = fit_pristine(crops, offsets=((0, 0),))
    assert n == n0 == 48 and torch.equal(mu, mu0) and torch.equal(cov, cov0)
    with pytest.raises(InputError, match="image 0: NIQE needs images of at least 96x96 px, got 130x90"):
        fit_pristine([crops[0][..., :90, :]] + crops)


@pytest.mark.skipif(not __import__("os").environ.get("GENRESTORE_BASICSR_SRC"),
                    reason="set GENRESTORE_BASICSR_SRC to an extracted basicsr-1.4.2 source (see benchmarks/niqe_reference.py)")
def test_matches_basicsr_with_standard_parameters():
    """Reference: BasicSR's NumPy NIQE with the MATLAB pristine parameters; ours differs only by
    MATLAB imresize's border handling in the half-scale image (we see <= 0.007)."""
    import importlib.util
    import os
    from pathlib import Path

    import skimage.data

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "niqe_reference.py"
    spec = importlib.util.spec_from_file_location("niqe_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    calculate_niqe, standard = module.load_basicsr_niqe(Path(os.environ["GENRESTORE_BASICSR_SRC"]))
    half_flat = skimage.data.astronaut().copy()
    half_flat[:, :256] = 128  # flat blocks: NaN features, left out (they scored 5.57 for BasicSR's 6.42)
    for a in (skimage.data.astronaut(), skimage.data.coffee(), half_flat):
        x = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255
        ref = calculate_niqe(a[:, :, ::-1].astype(np.float64), crop_border=0, input_order="HWC", convert_to="y")
        assert abs(niqe(x, standard).item() - ref) < 0.02, ref


# ---------------------------------------------------------------------------- a NumPy reference
# BasicSR's NIQE (basicsr/metrics/niqe.py, after the MATLAB code of Mittal et al.) in NumPy/SciPy,
# with this module's two documented choices: differences under FLAT grey levels are 0 (flat blocks
# have NaN features), and the half-scale image is genrestore's antialiased bicubic resize.

def _ref_mscn(img):
    r = np.arange(7) - 3
    g = np.exp(-r ** 2 / (2 * (7 / 6) ** 2))
    win = np.outer(g, g) / np.outer(g, g).sum()
    mu = scipy.ndimage.correlate(img, win, mode="nearest")
    sigma = np.sqrt(np.abs(scipy.ndimage.correlate(img * img, win, mode="nearest") - mu * mu))
    diff = img - mu
    diff[np.abs(diff) < 1e-8] = 0
    return diff / (sigma + 1), sigma


_GAM = np.arange(0.2, 10.001, 0.001)
_R_GAM = scipy.special.gamma(2 / _GAM) ** 2 / (scipy.special.gamma(1 / _GAM) * scipy.special.gamma(3 / _GAM))


def _ref_aggd(x):
    """BasicSR's estimate_aggd_param: moment matching, alpha the argmin over the 0.001 table."""
    x = x.ravel()
    left = np.sqrt(np.mean(x[x < 0] ** 2)) if (x < 0).any() else np.nan  # mean of an empty set: NaN
    right = np.sqrt(np.mean(x[x > 0] ** 2)) if (x > 0).any() else np.nan
    gammahat = left / right
    rhat = np.mean(np.abs(x)) ** 2 / np.mean(x ** 2) if x.any() else np.nan
    rhatnorm = rhat * (gammahat ** 3 + 1) * (gammahat + 1) / (gammahat ** 2 + 1) ** 2
    alpha = _GAM[np.argmin((_R_GAM - rhatnorm) ** 2)]  # NaN: argmin is the first entry
    ratio = np.sqrt(scipy.special.gamma(1 / alpha) / scipy.special.gamma(3 / alpha))
    return alpha, left * ratio, right * ratio


def _ref_block_features(block):
    a, bl, br = _ref_aggd(block)
    feat = [a, (bl + br) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a, bl, br = _ref_aggd(block * np.roll(block, shift, axis=(0, 1)))
        feat += [a, (br - bl) * scipy.special.gamma(2 / a) / scipy.special.gamma(1 / a), bl, br]
    return feat


def _ref_features(img):
    """(features (B, 36), sharpness (B,)) of a 2-D luma image on 0..255, blocks in row-major order."""
    nh, nw = img.shape[0] // 96, img.shape[1] // 96
    img = img[:nh * 96, :nw * 96]
    feats, sharp = [], None
    for scale in (1, 2):
        coef, sigma = _ref_mscn(img)
        b = 96 // scale
        feats.append(np.array([_ref_block_features(coef[i * b:(i + 1) * b, j * b:(j + 1) * b])
                               for i in range(nh) for j in range(nw)]))
        if scale == 1:
            sharp = sigma.reshape(nh, 96, nw, 96).mean((1, 3)).ravel()
            img = resize(torch.from_numpy(img)[None, None] / 255, (img.shape[0] // 2, img.shape[1] // 2),
                         "bicubic")[0, 0].numpy() * 255
    return np.concatenate(feats, 1), sharp


def _ref_niqe(img, mu_p, cov_p):
    f, _ = _ref_features(img)
    mu_d = np.nanmean(f, 0)
    cov_d = np.cov(f[~np.isnan(f).any(1)], rowvar=False)
    d = mu_p - mu_d
    return np.sqrt(d @ np.linalg.pinv((cov_p + cov_d) / 2) @ d)


def _textured(seed, h, w, flat=0):
    """A grey image in [0, 1] off the 8-bit levels: smoothed noise plus noise whose strength grows
    to the right (blocks of different sharpness), with a flat top-left square of side ``flat``."""
    rng = np.random.default_rng(seed)
    x = scipy.ndimage.gaussian_filter(rng.random((h, w)), 2) * 2 - 0.5
    x = x + rng.normal(size=(h, w)) * np.linspace(0.08, 0.2, w)
    x = np.clip(x, 0, 1)
    x[:flat, :flat] = 0.5
    return torch.from_numpy(x)[None, None]


def test_features_and_score_match_the_numpy_reference():
    """image_features (both scales, the 18 features of each block) and the score against the NumPy
    reference, on a 200 x 300 grey image off the 8-bit levels (rounded to them first, cropped to
    2 x 3 whole blocks) whose top-left block is flat (NaN features: left out of the covariance,
    nanmean for the mean)."""
    x = _textured(0, 200, 300, flat=130)
    img = (x[0, 0].numpy() * 255).round()
    ref_f, ref_sharp = _ref_features(img)
    assert np.isnan(ref_f[0]).any() and not np.isnan(ref_f[1:]).any()
    f, sharp = image_features(torch.from_numpy(img)[None, None])
    np.testing.assert_allclose(f.numpy(), ref_f, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(sharp.numpy(), ref_sharp, rtol=1e-9, atol=1e-5)  # sqrt of rounding where flat
    mu_p, cov_p = load_pristine()
    ours = niqe(x, (mu_p, cov_p)).item()
    assert ours == pytest.approx(_ref_niqe(img, mu_p.numpy(), cov_p.numpy()), rel=1e-7)


def test_fit_pristine_matches_the_numpy_reference():
    """fit_pristine against the reference: per image and shifted grid, the blocks sharper than 0.75 of
    that grid's sharpest (mean local deviation), then their mean and (N - 1) covariance; fewer than
    37 blocks is refused."""
    images = [_textured(s, 240, 290) for s in (1, 2, 3)]
    offsets = ((0, 0), (0, 48), (48, 0), (48, 48))
    kept = []
    for x in images:
        img = (x[0, 0].numpy() * 255).round()
        for oy, ox in offsets:
            f, sharp = _ref_features(img[oy:, ox:])
            kept.append(f[sharp > 0.75 * sharp.max()])
    kept = np.concatenate(kept)
    mu, cov, n = fit_pristine(images, offsets=offsets)
    assert n == len(kept) and 37 <= n < 6 * 3 * 4  # some blocks are left out as blurry
    np.testing.assert_allclose(mu.numpy(), kept.mean(0), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(cov.numpy(), np.cov(kept, rowvar=False), rtol=1e-6, atol=1e-9)
    with pytest.raises(InputError, match="more than 36 sharp blocks"):
        fit_pristine(images[:1], offsets=((0, 0),))


def test_a_pristine_model_of_the_wrong_size_is_an_input_error():
    """mu must hold 36 features ((36,) or MATLAB's (1, 36)) like cov's 36 x 36; a 37-feature mu was a
    RuntimeError from reshape when only cov was checked."""
    with pytest.raises(InputError, match="36 features"):
        load_pristine((torch.zeros(37, dtype=torch.float64), torch.eye(36, dtype=torch.float64)))
    with pytest.raises(InputError, match="36 features"):
        load_pristine((torch.zeros(36, dtype=torch.float64), torch.eye(35, dtype=torch.float64)))
    mu, cov = load_pristine((torch.zeros(1, 36, dtype=torch.float64), torch.eye(36, dtype=torch.float64)))
    assert mu.shape == (36,)
