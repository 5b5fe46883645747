import math

import cv2
import numpy as np
import pytest
import scipy.ndimage
import scipy.special
import torch

from genrestore._checks import InputError
from genrestore.degrade import (blur, gaussian_kernel, generalized_gaussian_kernel, pad_kernel, plateau_kernel,
                                random_mixed_kernels, sinc_kernel)


def _grid(k):
    r = np.arange(k) - k // 2
    return np.meshgrid(r, r, indexing="ij")  # yy, xx


@pytest.mark.parametrize("make", [
    lambda: gaussian_kernel(21, torch.tensor([0.3, 1.0, 5.0])),
    lambda: gaussian_kernel(15, 2.0, 0.7, 0.4),
    lambda: generalized_gaussian_kernel(13, 1.5, 3.0, -1.0, torch.tensor([0.5, 4.0])),
    lambda: plateau_kernel(21, 2.0, 1.0, 0.3, torch.tensor([1.0, 2.0])),
    lambda: sinc_kernel(21, torch.tensor([math.pi / 5, math.pi / 2, math.pi])),
])
def test_kernels_sum_to_one(make):
    k = make()
    assert k.dtype == torch.float32 and k.ndim == 3
    assert torch.allclose(k.sum((-2, -1)), torch.ones(k.shape[0]), atol=1e-6)


def test_isotropic_gaussian_equals_opencv_separable():
    for sigma in (0.5, 1.5, 4.0):
        g = cv2.getGaussianKernel(21, sigma, cv2.CV_64F)
        assert np.allclose(gaussian_kernel(21, sigma)[0].numpy(), g @ g.T, atol=1e-7)


def test_anisotropic_gaussian_closed_form():
    sx, sy, th = 3.0, 1.0, 0.6
    yy, xx = _grid(15)
    c, s = math.cos(th), math.sin(th)
    cov = np.array([[c, -s], [s, c]]) @ np.diag([sx ** 2, sy ** 2]) @ np.array([[c, s], [-s, c]])
    inv = np.linalg.inv(cov)
    pts = np.stack([xx, yy], -1)
    q = np.einsum("...i,ij,...j->...", pts, inv, pts)
    ref = np.exp(-0.5 * q)
    ref /= ref.sum()
    assert np.allclose(gaussian_kernel(15, sx, sy, th)[0].numpy(), ref, atol=1e-7)
    # rotating by pi/2 swaps the axes
    assert torch.allclose(gaussian_kernel(15, sx, sy, math.pi / 2), gaussian_kernel(15, sy, sx, 0.0), atol=1e-7)


def test_generalized_and_plateau_closed_forms():
    yy, xx = _grid(11)
    q = (xx ** 2 + yy ** 2) / 2.0 ** 2
    gg = np.exp(-0.5 * q ** 1.7)
    pl = 1 / (1 + q ** 1.3)
    assert np.allclose(generalized_gaussian_kernel(11, 2.0, beta=1.7)[0].numpy(), gg / gg.sum(), atol=1e-7)
    assert np.allclose(plateau_kernel(11, 2.0, beta=1.3)[0].numpy(), pl / pl.sum(), atol=1e-7)
    assert torch.allclose(generalized_gaussian_kernel(11, 2.0, beta=1.0), gaussian_kernel(11, 2.0), atol=1e-7)


def test_sinc_closed_form_with_scipy_bessel():
    wc = 1.3
    yy, xx = _grid(13)
    r = np.hypot(xx, yy)
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = wc * scipy.special.j1(wc * r) / (2 * np.pi * r)
    ref[6, 6] = wc ** 2 / (4 * np.pi)
    assert np.allclose(sinc_kernel(13, wc)[0].numpy(), ref / ref.sum(), atol=1e-6)


def test_blur_borders_match_scipy():
    x = torch.rand(1, 1, 9, 11, generator=torch.Generator().manual_seed(5))
    k = gaussian_kernel(5, 1.0, 0.5, 0.3)
    for border, mode in (("replicate", "nearest"), ("circular", "wrap"), ("constant", "constant")):
        ref = scipy.ndimage.correlate(x[0, 0].double().numpy(), k[0].double().numpy(), mode=mode)
        assert np.allclose(blur(x, k, border)[0, 0].numpy(), ref, atol=1e-5), border
    with pytest.raises(InputError):
        blur(x, torch.ones(1, 4, 4) / 16)


def test_blur_equals_scipy_convolution_per_image():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 17, 23, generator=g)
    k = torch.stack([gaussian_kernel(7, 1.2, 0.6, 0.5)[0], sinc_kernel(7, 2.0)[0]])
    y = blur(x, k)
    for i in range(2):
        for c in range(3):
            # kornia 'reflect' = numpy 'reflect' = scipy.ndimage 'mirror' (edge not repeated)
            ref = scipy.ndimage.correlate(x[i, c].double().numpy(), k[i].double().numpy(), mode="mirror")
            assert np.allclose(y[i, c].numpy(), ref, atol=1e-5)


def test_blur_gradcheck():
    x = torch.rand(1, 2, 8, 9, dtype=torch.float64, requires_grad=True)
    k = gaussian_kernel(5, 1.0).double().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: blur(a, b), (x, k))


def test_random_mixed_kernels_deterministic_and_padded():
    k1, p1 = random_mixed_kernels(torch.Generator().manual_seed(3), 6, 11)
    k2, p2 = random_mixed_kernels(torch.Generator().manual_seed(3), 6, 11)
    assert torch.equal(k1, k2) and p1 == p2
    assert {p["type"] for p in p1} <= {"iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso",
                                      "plateau_aniso"}
    padded = pad_kernel(k1, 21)
    assert padded.shape == (6, 21, 21) and torch.allclose(padded.sum((-2, -1)), torch.ones(6), atol=1e-6)


def test_kernel_errors():
    with pytest.raises(InputError):
        gaussian_kernel(4, 1.0)
    with pytest.raises(InputError):
        gaussian_kernel(5, 0.0)
    with pytest.raises(InputError):
        sinc_kernel(5, 4.0)


def test_random_mixed_kernels_refuses_probs_not_matching_types():
    """One probability per kernel type: types=("iso", "aniso") with the six default
    probabilities drew aniso with probability 0.55 (0.25 + the other four, clamped to the
    last type) instead of refusing."""
    g = torch.Generator().manual_seed(0)
    with pytest.raises(InputError, match="probabilit"):
        random_mixed_kernels(g, 2, 7, types=("iso", "aniso"))
    with pytest.raises(InputError, match="probabilit"):
        random_mixed_kernels(g, 2, 7, types=("iso", "aniso"), probs=(1.0, -0.5))
    k, p = random_mixed_kernels(g, 2, 7, types=("iso", "aniso"), probs=(0.0, 1.0))
    assert [q["type"] for q in p] == ["aniso", "aniso"]


def _closed_form(p):
    """Real-ESRGAN's kernel families written out in numpy from one logged parameter dict."""
    yy, xx = _grid(p["size"])
    c, s = math.cos(p["theta"]), math.sin(p["theta"])
    rot = np.array([[c, -s], [s, c]])
    inv = np.linalg.inv(rot @ np.diag([p["sigma_x"] ** 2, p["sigma_y"] ** 2]) @ rot.T)
    pts = np.stack([xx, yy], -1)
    q = np.einsum("...i,ij,...j->...", pts, inv, pts)
    if p["type"].startswith("generalized"):
        k = np.exp(-0.5 * q ** p["beta"])
    elif p["type"].startswith("plateau"):
        k = 1 / (1 + q ** p["beta"])
    else:
        k = np.exp(-0.5 * q)
    return k / k.sum()


def test_random_mixed_kernels_equal_the_closed_form_of_their_logged_params():
    """Each sampled kernel is the family's formula at the parameters it reports (BasicSR's
    random_mixed_kernels), so a logged pair can be rebuilt; iso kinds have sigma_y = sigma_x, theta 0."""
    k, params = random_mixed_kernels(torch.Generator().manual_seed(11), 60, 13,
                                     probs=(1, 1, 1, 1, 1, 1))
    assert {p["type"] for p in params} == {"iso", "aniso", "generalized_iso", "generalized_aniso",
                                           "plateau_iso", "plateau_aniso"}
    for ki, p in zip(k, params):
        assert np.allclose(ki.numpy(), _closed_form(p), atol=1e-6), p
        if not p["type"].endswith("aniso"):
            assert p["sigma_y"] == p["sigma_x"] and p["theta"] == 0.0


@pytest.mark.parametrize("kind", ["aniso", "generalized_aniso", "plateau_aniso"])
def test_random_anisotropic_kernels_span_their_ranges(kind):
    """Anisotropic kinds draw sigma_x and sigma_y independently in sigma_range and theta
    uniformly in (-pi, pi) (BasicSR random_bivariate_*): over 300 draws theta reaches below
    -2 and above 2, no sigma leaves the range, the two sigmas differ, and the kernels are not
    mirror-symmetric about the diagonal as an isotropic kernel is."""
    lo, hi = 1.0, 3.0
    k, params = random_mixed_kernels(torch.Generator().manual_seed(2), 300, 7, types=(kind,), probs=(1.0,),
                                     sigma_range=(lo, hi))
    theta = np.array([p["theta"] for p in params])
    sx = np.array([p["sigma_x"] for p in params])
    sy = np.array([p["sigma_y"] for p in params])
    assert theta.min() < -2 and theta.max() > 2 and (np.abs(theta) <= math.pi).all()
    for s in (sx, sy):
        assert s.min() >= lo and s.max() <= hi
        assert s.min() < lo + 0.1 and s.max() > hi - 0.1  # uniform: both ends are reached
    assert (sx != sy).all() and abs(np.corrcoef(sx, sy)[0, 1]) < 0.2
    asym = (k - k.transpose(-1, -2)).abs().amax((-2, -1))
    assert (asym > 1e-4).float().mean() > 0.8


@pytest.mark.parametrize("kind, beta_range", [("generalized_iso", (0.5, 4.0)), ("plateau_iso", (1.0, 2.0))])
def test_random_kernel_betas_split_at_one_within_their_range(kind, beta_range):
    """BasicSR draws beta half the time uniformly in [lo, 1) and half in [1, hi): over 300
    draws every beta lies in the range, about half are below 1 (for the generalized Gaussian) and
    the upper half spans [1, hi]."""
    lo, hi = beta_range
    _, params = random_mixed_kernels(torch.Generator().manual_seed(4), 300, 7, types=(kind,), probs=(1.0,),
                                     beta_gaussian_range=beta_range if kind.startswith("gen") else (0.5, 4.0),
                                     beta_plateau_range=beta_range if kind.startswith("plat") else (1.0, 2.0))
    beta = np.array([p["beta"] for p in params])
    assert beta.min() >= lo and beta.max() <= hi
    upper = beta[beta > 1]
    assert upper.min() < 1 + 0.05 * (hi - 1) and upper.max() > hi - 0.05 * (hi - 1)
    if lo < 1:
        assert 0.4 < (beta < 1).mean() < 0.6
        assert beta.min() < lo + 0.05


def test_random_mixed_kernels_normalise_the_probabilities():
    """Probabilities are relative weights: (1, 1) draws both kinds about equally, (3, 1) about 3:1."""
    g = torch.Generator().manual_seed(6)
    _, p = random_mixed_kernels(g, 300, 5, types=("iso", "aniso"), probs=(1, 1))
    assert 0.4 < np.mean([q["type"] == "aniso" for q in p]) < 0.6
    _, p = random_mixed_kernels(g, 300, 5, types=("iso", "aniso"), probs=(3, 1))
    assert 0.17 < np.mean([q["type"] == "aniso" for q in p]) < 0.33


def test_pad_kernel_is_numpy_zero_padding_around_the_centre():
    """Padding keeps the kernel centred (a shift would move the blurred image): pad_kernel equals
    np.pad with the same margin on every side, for an asymmetric kernel too."""
    k = torch.rand(2, 7, 7, generator=torch.Generator().manual_seed(8))
    ref = np.pad(k.numpy(), ((0, 0), (3, 3), (3, 3)))
    assert np.array_equal(pad_kernel(k, 13).numpy(), ref)
    assert np.array_equal(pad_kernel(k, 7).numpy(), k.numpy())
    with pytest.raises(InputError):
        pad_kernel(k, 5)


@pytest.mark.parametrize("shape", [(1, 1, 3, 8), (1, 1, 8, 3), (1, 2, 2, 2)])
def test_reflect_blur_falls_back_to_replicate_when_the_image_is_no_wider_than_the_pad(shape):
    """Reflect padding needs a side longer than the pad (torch refuses pad >= side); a 7x7
    kernel (pad 3) on a 3 px side uses replicate, as scipy.ndimage mode "nearest"."""
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    k = gaussian_kernel(7, 1.5, 0.8, 0.4).double()
    y = blur(x, k)
    for c in range(shape[1]):
        ref = scipy.ndimage.correlate(x[0, c].numpy(), k[0].numpy(), mode="nearest")
        assert np.allclose(y[0, c].numpy(), ref, atol=1e-7)
    # one pixel wider than the pad: true reflection (scipy "mirror")
    x = torch.rand(1, 1, 4, 8, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    ref = scipy.ndimage.correlate(x[0, 0].numpy(), k[0].numpy(), mode="mirror")
    assert np.allclose(blur(x, k)[0, 0].numpy(), ref, atol=1e-7)


# --- found by mutating the code (helper-72) ---


def test_random_mixed_kernels_defaults_are_real_esrgans():
    """The defaults are Real-ESRGAN's first-stage options (train_realesrgan_x4plus.yml): kernel_list iso, aniso,
    generalized_iso, generalized_aniso, plateau_iso, plateau_aniso with kernel_prob 0.45, 0.25, 0.12, 0.03,
    0.12, 0.03; blur_sigma [0.2, 3]; betag_range [0.5, 4]; betap_range [1, 2]. Over 1000 draws each kind's
    share is within 4 binomial standard deviations, and the sigmas and betas span their ranges."""
    from genrestore.degrade.kernels import KERNEL_TYPES

    n = 1000
    _, params = random_mixed_kernels(torch.Generator().manual_seed(72), n, 3)
    kinds = [p["type"] for p in params]
    for kind, prob in zip(KERNEL_TYPES, (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)):
        share = kinds.count(kind) / n
        assert abs(share - prob) < 4 * math.sqrt(prob * (1 - prob) / n), (kind, share)
    sx = np.array([p["sigma_x"] for p in params])
    assert sx.min() >= 0.2 and sx.max() <= 3.0 and sx.min() < 0.22 and sx.max() > 2.98
    for prefix, lo, hi in (("generalized", 0.5, 4.0), ("plateau", 1.0, 2.0)):
        beta = np.array([p["beta"] for p in params if p["type"].startswith(prefix)])
        assert beta.min() >= lo and beta.max() <= hi
        assert beta.min() < lo + 0.05 * (hi - lo) and beta.max() > hi - 0.05 * (hi - lo), prefix
        # BasicSR's split draw: half in [lo, 1), half in [1, hi); with lo = 1 the lower half is beta = 1 exactly
        assert 0.35 < ((beta < 1) if lo < 1 else (beta == 1)).mean() < 0.65, prefix
