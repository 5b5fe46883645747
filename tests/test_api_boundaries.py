"""Bad input at the public Python API gives an InputError that says what was expected.

Each case was found by a fuzz of the API (helper-31, 2026-12-07): before its fix it raised an
error from deep inside torch, NumPy or OpenCV, or returned garbage (NaN, a clamped image, a
constant) without complaint.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genrestore._checks import InputError, check_image

X = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
Y = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
G = torch.Generator().manual_seed(2)


def _cases():
    from genrestore.degrade import (dead_pixels, gaussian_kernel, gaussian_noise, poisson_noise, poisson_noise_scaled,
                                    resize, resize_8bit)
    from genrestore.degrade.resize import resize_adjoint
    from genrestore.detect import detect_artifacts, niqe_window_scores, pseudo_gt
    from genrestore.io import convert_channels, quantize
    from genrestore.metrics import psnr, ssim
    from genrestore.metrics.fid import InceptionFeatures
    from genrestore.metrics.full_reference import rgb_to_y, ssim_map
    from genrestore.metrics.lpips import lpips
    from genrestore.metrics.niqe import niqe
    from genrestore.restore.baselines import jpeg_reapply_deblock

    from genrestore.artifacts.ddim import ddim_gaussian
    from genrestore.artifacts.vq import ar_resample, replace_tokens
    from genrestore.artifacts import synthesize
    from genrestore.degrade import get_task
    from genrestore.detect import erode, fill_holes, local_variance, regions, variance_distance
    from genrestore.metrics.detection import iou, region_counts
    from genrestore.metrics.distribution import frechet_distance
    from genrestore.degrade.masks import random_box_mask, stroke_mask
    from genrestore.degrade.pipelines import BlurDownNoiseJpeg, SecondOrder
    from genrestore.diffusion import ConditionalUNet, make_scheduler, sample, training_loss
    from genrestore.metrics.fid import random_crops
    from genrestore.restore.inpaint import composite
    from genrestore.io import encode_image, tiled_apply
    from genrestore.metrics.distribution import inception_score_splits

    big = torch.rand(1, 3, 32, 32)
    unet = ConditionalUNet(3, unet=dict(sample_size=16, block_out_channels=(16, 32), layers_per_block=1,
                                        norm_num_groups=8, down_block_types=("DownBlock2D", "DownBlock2D"),
                                        up_block_types=("UpBlock2D", "UpBlock2D"))).eval()
    return {
        "upsample surrogate of a 3-D tensor": (lambda: get_task("upsample").surrogate(X[0]), "surrogate's input"),
        "JPEG surrogate of a 3-D tensor": (lambda: get_task("deartifact").surrogate(X[0]), "surrogate's input"),
        "x32 surrogate of 16 px": (lambda: get_task("upsample", "XL").surrogate(X), "x32 average pooling"),
        "synthesize without its generators": (lambda: synthesize("vq-replace", {}, X, 0.5), "load_generators"),
        "NaN Frechet statistics": (lambda: frechet_distance(torch.full((3,), math.nan), torch.eye(3), torch.zeros(3),
                                                            torch.eye(3)), "NaN"),
        "NumPy Frechet statistics": (lambda: frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(3)),
                                     "torch tensors"),
        "NaN detection mask": (lambda: iou(np.full((4, 4), np.nan), np.zeros((4, 4), bool)), "NaN"),
        "overlap threshold 2": (lambda: region_counts(np.zeros((4, 4), bool), np.zeros((4, 4), bool), p=2), "p"),
        "local variance of a 3-D tensor": (lambda: local_variance(X[0]), "(N, C, H, W)"),
        "D map with sigma 0": (lambda: variance_distance(X, Y, sigma=0), "sigma"),
        "erosion of a NumPy mask": (lambda: erode(np.zeros((1, 1, 8, 8), bool)), "mask tensor"),
        "fill_holes of a tensor": (lambda: fill_holes(torch.zeros(8, 8, dtype=torch.bool)), "NumPy bool"),
        "regions of a map of another size": (lambda: regions(torch.zeros(8, 8, dtype=torch.bool), torch.zeros(4, 4)),
                                             "of its size"),
        "level as a string": (lambda: ddim_gaussian(lambda x, t: x, X, "Q"), "level"),
        "NIQE pristine of 10 features": (lambda: niqe(torch.rand(1, 3, 96, 200), pristine=(torch.zeros(10), torch.eye(10))),
                                         "36 features"),
        "no timesteps": (lambda: make_scheduler("ddpm", {"num_train_timesteps": 0}), "num_train_timesteps"),
        "a negative beta": (lambda: make_scheduler("ddpm", {"beta_start": -0.1}), "betas"),
        "[MASK] probability 2": (lambda: training_loss(unet, X * 2 - 1, X * 2 - 1, G, mask_prob=2), "mask_prob"),
        "patch-FID crops of 0 px": (lambda: random_crops(X, 0, 4), "crop size"),
        "patch-FID crops of a 3-D tensor": (lambda: random_crops(X[0], 8, 4), "(N, C, H, W)"),
        "composite of mismatched shapes": (lambda: composite(X, torch.ones(2, 1, 8, 8), X), "mask (N, 1, H, W)"),
        "SecondOrder scale 0": (lambda: SecondOrder(scale=0), "scale"),
        "BlurDownNoiseJpeg scale 0": (lambda: BlurDownNoiseJpeg(scale_range=(0.0, 0.0)), "scale_range"),
        "negative noise range": (lambda: BlurDownNoiseJpeg(noise_range_255=(-1.0, 2.0)), "noise_range_255"),
        "even blur kernel": (lambda: BlurDownNoiseJpeg(kernel_size=40), "kernel_size"),
        "a kernel range with an even side": (lambda: SecondOrder(kernel_range=(7, 8)), "kernel_range"),
        "an empty kernel range": (lambda: SecondOrder(kernel_range=()), "kernel_range"),
        "NaN stroke endpoints": (lambda: stroke_mask((8, 8), torch.full((1, 1, 2, 2), math.nan)), "finite"),
        "NaN stroke width": (lambda: stroke_mask((8, 8), torch.rand(1, 1, 2, 2), math.nan), "width_frac"),
        "box hole larger than the image": (lambda: random_box_mask(G, 1, (8, 8), (2.0, 3.0)), "area_range"),
        "NaN GPT temperature": (lambda: ar_resample(None, None, X, temperature=math.nan), "temperature"),
        "top-k 0": (lambda: ar_resample(None, None, X, top_k=0), "top_k"),
        "float tokens": (lambda: replace_tokens(torch.rand(1, 4, 4), 2, 16), "integer"),
        "no codebook": (lambda: replace_tokens(torch.zeros(1, 4, 4, dtype=torch.long), 2, 0), "codebook_size"),
        "NaN DDIM alpha": (lambda: ddim_gaussian(lambda x, t: x, X, alpha=math.nan), "alpha"),
        "uint8 DDIM input": (lambda: ddim_gaussian(lambda x, t: x, (X * 255).to(torch.uint8)), "float tensor"),
        "NaN DDIM eta": (lambda: sample(unet, X, "ddim", steps=2, eta=math.nan), "eta"),
        "side not a UNet multiple": (lambda: sample(unet, torch.rand(1, 3, 17, 17), steps=1), "multiples of 2"),
        "12-bit PNG": (lambda: encode_image(X[:1], bits=12), "bits"),
        "JPEG quality 0": (lambda: encode_image(X[:1], ".jpg", jpeg_quality=0), "jpeg_quality"),
        "uint8 0..255 image to write": (lambda: encode_image((X[:1] * 255).to(torch.uint8)), "in [0, 1]"),
        "an inpainter given NumPy": (lambda: _inpainter().inpaint(X.numpy(), torch.ones(2, 1, 16, 16)), "torch.Tensor"),
        "tiling a 3-D tensor": (lambda: tiled_apply(lambda t: t, X[0]), "(N, C, H, W)"),
        "tiling scale 0": (lambda: tiled_apply(lambda t: t, X, scale=0), "scale"),
        "IS split of 0 images": (lambda: inception_score_splits(100, 0), "min_split"),
        "psnr of 0..255 images": (lambda: psnr(X * 255, Y), "pass data_range=255"),
        "ssim of 0..255 images": (lambda: ssim(X * 255, Y), "pass data_range=255"),
        "psnr precision": (lambda: psnr(X, Y, precision="float16"), "precision"),
        "ssim data_range 0": (lambda: ssim(X, Y, data_range=0), "data_range"),
        "ssim_map of a 3-D tensor": (lambda: ssim_map(X[0], Y[0]), "(N, C, H, W)"),
        "ssim_map even window": (lambda: ssim_map(X, Y, win_size=4), "odd win_size"),
        "rgb_to_y of uint8": (lambda: rgb_to_y((X * 255).to(torch.uint8)), "float tensor"),
        "lpips of 0..255 images": (lambda: lpips(big * 255, big), "in [0, 1]"),
        "lpips unknown net": (lambda: lpips(big, big, net="squeeze"), "unknown LPIPS net"),
        "Inception of uint8": (lambda: InceptionFeatures(model=torch.nn.Identity())((X * 255).to(torch.uint8)),
                               "float tensor"),
        "negative noise sigma": (lambda: gaussian_noise(X, -0.1, G), "sigma"),
        "NaN noise sigma": (lambda: gaussian_noise(X, math.nan, G), "sigma"),
        "dead-pixel probability 1.5": (lambda: dead_pixels(X, 1.5, G), "probability"),
        "no photons": (lambda: poisson_noise(X, 0.0, G), "photons"),
        "infinite photons": (lambda: poisson_noise(X, math.inf, G), "photons"),
        "Poisson levels 0": (lambda: poisson_noise_scaled(X, 1.0, G, levels=0), "levels"),
        "a seed as generator": (lambda: gaussian_noise(X, 0.1, 0), "generator_for(seed)"),
        "a string as generator": (lambda: gaussian_noise(X, 0.1, "seed"), "torch.Generator"),
        "too few generators": (lambda: gaussian_noise(X, 0.1, [G]), "expected 2 generators"),
        "too many per-image values": (lambda: gaussian_noise(X, torch.tensor([0.1, 0.2, 0.3]), G), "per-image"),
        "fractional resize size": (lambda: resize(X, (8.7, 8)), "whole pixels"),
        "resize size not a pair": (lambda: resize(X, 8), "whole pixels"),
        "resize_8bit of 0..255": (lambda: resize_8bit(X * 255, (8, 8)), "in [0, 1]"),
        "resize_adjoint filter": (lambda: resize_adjoint(X, (32, 32), "box"), "unknown resize filter"),
        "fractional kernel size": (lambda: gaussian_kernel(5.5, 1.0), "odd positive int"),
        "NaN kernel sigma": (lambda: gaussian_kernel(5, math.nan), "finite"),
        "detection scale 0": (lambda: detect_artifacts(big, big, scale=0), "scale"),
        "detection threshold NaN": (lambda: detect_artifacts(big, big, threshold=math.nan), "threshold"),
        "segmenter by name": (lambda: detect_artifacts(big, big, segmenter="texture"), "make_segmenter"),
        "empty detection batch": (lambda: detect_artifacts(big[:0], big[:0]), "empty batch"),
        "pseudo-GT of 0..255": (lambda: pseudo_gt(big * 255, big, torch.ones(1, 1, 32, 32, dtype=torch.bool)),
                                "in [0, 1]"),
        "pseudo-GT soft mask of 0..255": (lambda: pseudo_gt(big, big, torch.full((1, 1, 32, 32), 255.0)), "mask"),
        "NIQE-map chunks -1": (lambda: niqe_window_scores(big, 16, 8, rows_per_chunk=-1), "rows_per_chunk"),
        "NIQE crop_border -1": (lambda: niqe(torch.rand(1, 3, 96, 200), crop_border=-1), "crop_border"),
        "NIQE with one block": (lambda: niqe(torch.rand(1, 3, 96, 96)), "2 usable"),
        "convert_channels of uint8": (lambda: convert_channels((X * 255).to(torch.uint8), "gray"), "float tensor"),
        "convert_channels mode": (lambda: convert_channels(X, "grey"), "unknown channel mode"),
        "quantize to 0 bits": (lambda: quantize(X, 0), "bits"),
        "JPEG quality True": (lambda: jpeg_reapply_deblock(X, True), "JPEG quality"),
    }


def _inpainter():
    from genrestore.restore.inpaint import Inpainter

    return Inpainter.from_file("inpaint-gan")


CASES = _cases()


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_an_input_error_naming_it(case):
    call, words = CASES[case]
    with pytest.raises(InputError) as e:
        call()
    assert words in str(e.value), str(e.value)


def test_what_the_checks_still_accept(tmp_path):
    """The fixes refuse bad input only: data_range=255 images, empty batches, NumPy integers,
    whole float sizes and 0-d integer tensors as sizes, per-image parameters, bool masks to
    write and float64 images given to networks work."""
    from genrestore.degrade import gaussian_noise, resize
    from genrestore.io import read_image, write_image
    from genrestore.metrics import psnr, ssim
    from genrestore.metrics.niqe import niqe
    from genrestore.restore.baselines import jpeg_reapply_deblock

    torch.testing.assert_close(psnr(X * 255, Y * 255, data_range=255), psnr(X, Y))
    torch.testing.assert_close(ssim(X * 255, Y * 255, data_range=255), ssim(X, Y), rtol=1e-5, atol=1e-6)
    assert psnr(X[:0], Y[:0]).shape == (0,) and niqe(torch.rand(0, 3, 96, 96)).shape == (0,)
    assert resize(X, (np.int64(8), 8.0)).shape == resize(X, (torch.tensor(8), 8)).shape == (2, 3, 8, 8)
    assert jpeg_reapply_deblock(X, np.int64(20), shifts=1).shape == X.shape
    sigma = torch.tensor([0.0, 0.1])
    out = gaussian_noise(X, sigma, [torch.Generator().manual_seed(3), torch.Generator().manual_seed(4)])
    assert torch.equal(out[0], X[0]) and not torch.equal(out[1], X[1])
    # float64 images run through the float32 networks (they raised a dtype error from a convolution)
    from genrestore.models.sr import load_sr, upscale
    from genrestore.restore.idm import IDMRestorer

    net = load_sr("rdn-small-x2")
    torch.testing.assert_close(upscale(net, X.double()), upscale(net, X))
    idm = IDMRestorer.from_file("idm-default")
    gens = lambda: [torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)]  # noqa: E731
    torch.testing.assert_close(idm.restore(X.double(), 1, gens()), idm.restore(X, 1, gens()))
    mask = torch.rand(1, 1, 8, 8) > 0.5
    write_image(tmp_path / "mask.png", mask)
    write_image(tmp_path / "mask8.png", mask.to(torch.uint8))
    assert torch.equal(read_image(tmp_path / "mask.png", "gray"), mask.float())
    assert torch.equal(read_image(tmp_path / "mask8.png", "gray"), mask.float())


def test_numbers_of_any_kind_are_numbers(tmp_path):
    """NumPy scalars and one-element tensors pass where Python numbers do (helper-33's review of the
    checks above: ``data_range=img.max()`` is common), and the checks leave valid edge cases alone."""
    from genrestore.degrade import gaussian_kernel, resize_8bit
    from genrestore.degrade.pipelines import SecondOrder
    from genrestore.detect import detect_artifacts, erode
    from genrestore.metrics import psnr, ssim
    from genrestore.metrics.detection import region_counts
    from genrestore.metrics.niqe import load_pristine, niqe
    from genrestore.models.sr import upscale

    ref = psnr(X, Y)
    torch.testing.assert_close(psnr(X, Y, data_range=np.float32(1)), ref)
    torch.testing.assert_close(psnr(X, Y, data_range=torch.tensor(1.0)), ref)
    big = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(detect_artifacts(big, big, threshold=np.float32(0.7)).mask,
                               detect_artifacts(big, big).mask)
    assert region_counts(np.ones((4, 4), bool), np.ones((4, 4), bool), p=np.float32(0.5)).correct == 1
    torch.testing.assert_close(gaussian_kernel(np.int64(5), 1.0), gaussian_kernel(5, 1.0))
    assert SecondOrder(scale=np.int64(4), kernel_range=tuple(np.arange(7, 23, 2))).scale == 4
    # black against white at data_range 255 in float32 block sums: MSE rounds a hair above 255^2
    b, w = torch.zeros(1, 3, 1088, 1928), torch.full((1, 3, 1088, 1928), 255.0)
    assert abs(float(psnr(b[..., 4:-4, 4:-4], w[..., 4:-4, 4:-4], data_range=255))) < 1e-4
    # SSIM on Y of 0..255 images: the luma's offset is 16, not 16/255 (helper-33: 0.95982 against 0.96003)
    torch.testing.assert_close(ssim(X * 255, Y * 255, True, data_range=255), ssim(X, Y, True), rtol=1e-5, atol=1e-6)
    # unclamped outputs that overshoot a little, and [-1, 1] images with data_range=2
    assert torch.isfinite(ssim((X * 1.002 - 0.001), Y)).all()
    assert torch.isfinite(ssim(X * 2 - 1, Y * 2 - 1, data_range=2)).all()  # its luminance term sees the shift
    assert resize_8bit(X * 1.02, (8, 8)).max() <= 1  # a filter's overshoot is clipped as Pillow's 8 bits are
    mask = torch.rand(1, 1, 8, 8)
    assert torch.equal(erode(mask, 3), erode(mask > 0.5, 3))
    mu, cov = load_pristine()
    img = torch.rand(1, 3, 96, 200)
    assert niqe(img, (mu[None], cov)).item() == pytest.approx(niqe(img).item())  # mu as MATLAB's (1, 36)

    class Bicubic(torch.nn.Module):  # an SR "network" with no parameters
        scale = 2

        def forward(self, t):
            return torch.nn.functional.interpolate(t, scale_factor=2, mode="bicubic")

    assert upscale(Bicubic(), torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)
    # schedules of NumPy numbers and tensors (helper-35)
    from genrestore.diffusion import make_scheduler

    make_scheduler("ddpm", {"num_train_timesteps": np.int64(10), "beta_start": np.float32(1e-4)})
    make_scheduler("ddpm", {"num_train_timesteps": 4, "trained_betas": np.linspace(0.1, 0.5, 4, dtype=np.float32)})
    with pytest.raises(InputError, match="sequence of 4"):
        make_scheduler("ddpm", {"num_train_timesteps": 4, "trained_betas": 0.5})
    from genrestore.models.sr import resize_output

    with pytest.raises(InputError, match="whole pixels"):
        resize_output(torch.rand(1, 3, 8, 8), (5.7, 6.2))
    assert resize_output(torch.rand(0, 3, 8, 8), (4, 4)).shape == (0, 3, 4, 4)


def test_check_image_messages():
    with pytest.raises(InputError, match=r"got NaN values"):
        check_image(torch.full((1, 3, 2, 2), math.nan))
    with pytest.raises(InputError, match=r"with C in 1\.\.64, got \(1, 70, 2, 2\)"):
        check_image(torch.rand(1, 70, 2, 2), channels=tuple(range(1, 65)))
