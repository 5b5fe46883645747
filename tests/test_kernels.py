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
