import numpy as np
import pytest
import scipy.ndimage
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
