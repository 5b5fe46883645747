"""Edge cases of the public Python API found by a review as a library user (helper-56): each test
states what the docstring or README promises."""

import pytest
import torch

from genrestore._checks import InputError


def G(s):
    return torch.Generator().manual_seed(s)


def test_a_none_in_a_list_of_generators_is_the_global_one():
    """check_generator and per_image accept None entries ("one generator (or None) per image"), but
    the draws called g.device on them (AttributeError). A None entry draws from torch's global
    generator; the other images keep their own draws."""
    from genrestore.degrade import gaussian_noise, get_task

    x = torch.rand(2, 3, 8, 8, generator=G(7))
    assert torch.equal(gaussian_noise(x, 0.1, [None, G(0)])[1], gaussian_noise(x, 0.1, [G(9), G(0)])[1])
    for name in ("upsample", "denoise", "inpaint"):
        task = get_task(name)
        assert torch.equal(task.degrade(x, [None, G(0)])[1], task.degrade(x, [G(9), G(0)])[1]), name


def test_an_empty_batch_is_refused_by_the_samplers():
    """IDMRestorer.restore (so Inpainter.inpaint), DiffGAR and synthesize failed deep in torch
    ("cannot reshape tensor of 0 elements") on a batch of no images."""
    from genrestore.artifacts import load_generators, synthesize
    from genrestore.restore.idm import IDMRestorer

    with pytest.raises(InputError, match=r"expected at least one degraded image, got an empty batch \(0, 3, 8, 8\)"):
        IDMRestorer.from_file("idm-default").restore(torch.rand(0, 3, 8, 8), steps=1, generator=G(0))
    with pytest.raises(InputError, match="empty batch"):
        synthesize("ddim-gauss", load_generators("ddim-gauss", {}), torch.rand(0, 3, 16, 16), 0.5, G(0), ddim_steps=2)


def test_ssim_empty_batch_like_psnr():
    from genrestore.metrics import psnr, ssim
    x = torch.rand(0, 3, 16, 16)
    assert psnr(x, x).shape == (0,)
    assert ssim(x, x).shape == (0,)


def test_robust_invert_images_in_unit_range():
    from genrestore.degrade import get_task
    from genrestore.models.stylegan2 import StyleGAN2Generator
    from genrestore.restore.stylegan_inversion import InversionConfig, perceptual_loss, robust_invert
    g = StyleGAN2Generator(z_dim=8, w_dim=8, resolution=32, channel_base=64, channel_max=16,
                           n_mapping_layers=2, generator=G(0)).eval()
    with torch.no_grad():
        x = g.generate(torch.randn(2, 8, generator=G(1))).clamp(0, 1)
    task = get_task("denoise")
    y = task.degrade(x, [G(3), G(4)])
    r = robust_invert(g, y, task, config=InversionConfig(step_scale=0.01), generator=[G(5), G(6)],
                      progress=False, distance=perceptual_loss("alex"))
    for k, im in r.images.items():  # InversionResult: "Restored images (N, 3, H, W) in [0, 1]"
        assert im.min() >= 0 and im.max() <= 1, (k, im.min().item(), im.max().item())


def test_inception_score_nan_logits_refused():
    from genrestore.metrics import inception_score
    with pytest.raises(InputError):
        inception_score(torch.full((20, 10), float("nan")), splits=2)


def test_kid_seed_instead_of_generator_refused_clearly():
    from genrestore.metrics import kid
    a, b = torch.randn(30, 4), torch.randn(30, 4)
    with pytest.raises(InputError):
        kid(a, b, subsets=2, subset_size=10, generator=0)


def test_inpainter_steps_zero_refused():
    from genrestore.restore.inpaint import Inpainter
    ip = Inpainter.from_file("inpaint-diffusion")
    y, m = torch.rand(1, 3, 8, 8), torch.ones(1, 1, 8, 8)
    with pytest.raises(InputError):  # IDMRestorer refuses steps=0; here it silently runs 50 steps
        ip.inpaint(y, m, G(0), steps=0)


def test_jpeg_pillow_subsampling_checked():
    from genrestore.degrade import jpeg_pillow
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(InputError):
        jpeg_pillow(x, 50, subsampling="4:2:2")
    with pytest.raises(InputError):
        jpeg_pillow(x, 50, subsampling="foo")


def test_synthesize_ddim_grey_refused_clearly():
    from genrestore.artifacts import load_generators, synthesize
    gens = load_generators("ddim-gauss", {})
    with pytest.raises(InputError):
        synthesize("ddim-gauss", gens, torch.rand(1, 1, 16, 16), 0.5, G(0), ddim_steps=2)


def test_blur_empty_batch_and_4d_kernel():
    from genrestore.degrade import blur, gaussian_kernel
    k = gaussian_kernel(5, 1.0)
    assert blur(torch.rand(0, 3, 16, 16), k).shape == (0, 3, 16, 16)
    with pytest.raises(InputError):
        blur(torch.rand(2, 3, 16, 16), k[None])  # (1, 1, 5, 5)


def test_psnr_crop_border_float():
    from genrestore.metrics import psnr
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(InputError):
        psnr(x, x, crop_border=2.5)


def test_write_image_unknown_suffix():
    from genrestore.io import encode_image
    with pytest.raises(InputError):
        encode_image(torch.rand(1, 3, 4, 4), ".xyz")
