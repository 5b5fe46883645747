import io

import numpy as np
import pytest
import torch
from PIL import Image

import genrestore.degrade.jpeg as jpeg_mod
from genrestore._checks import InputError
from genrestore.degrade import jpeg_pillow, jpeg_torch, quantization_tables, round_surrogate
from conftest import psnr


def _pillow_tables(q: int):
    im = Image.fromarray(np.zeros((16, 16, 3), np.uint8))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=q)
    buf.seek(0)
    t = Image.open(buf).quantization
    return torch.tensor([list(t[0]), list(t[1])], dtype=torch.float32).view(2, 8, 8)


def test_tables_equal_pillow_at_every_quality():
    ours = quantization_tables(torch.arange(1, 101))
    for q in range(1, 101):
        assert torch.equal(ours[q - 1], _pillow_tables(q)), q


@pytest.mark.parametrize("q", [6, 12, 18, 50, 90])
def test_torch_jpeg_close_to_libjpeg_on_photos(q, photos):
    """Reference: Pillow's decode of Pillow's encode (libjpeg, 4:2:0). Issue target: >= 35 dB."""
    ours = jpeg_torch(photos, q, rounding="exact")
    ref = jpeg_pillow(photos, q)
    p = psnr(ours, ref)
    print(f"q={q}: PSNR(torch JPEG, libjpeg) mean {p.mean():.2f} dB, min {p.min():.2f} dB")
    assert p.mean() >= 40 and p.min() >= 35
    # and it really compresses: far from the input at low quality
    assert psnr(ours, photos).mean() < psnr(ref, photos).mean() + 1


def test_grey_jpeg_matches_pillow_L(photos):
    grey = photos[:, :1]
    p = psnr(jpeg_torch(grey, 20, rounding="exact"), jpeg_pillow(grey, 20))
    assert p.min() >= 40


def test_odd_sizes_and_per_image_quality(photos):
    x = photos[:3, :, :37, :45]
    q = torch.tensor([10, 50, 95])
    both = jpeg_torch(x, q)
    for i in range(3):
        assert torch.allclose(both[i:i + 1], jpeg_torch(x[i:i + 1], int(q[i])), atol=1e-6)
    assert psnr(both, jpeg_pillow(x, q)).min() >= 35


def test_quality_100_444_is_nearly_lossless(photos):
    assert psnr(jpeg_torch(photos, 100, subsampling="4:4:4"), photos).min() > 45


def test_round_surrogate_forward_and_gradient():
    x = torch.tensor([-2.5, -0.4, 0.0, 0.3, 0.5, 1.49], dtype=torch.float64, requires_grad=True)
    y = round_surrogate(x, 0.8)
    assert y.tolist() == [-3.0, -0.0, 0.0, 0.0, 1.0, 1.0]  # halves away from zero, as libjpeg
    y.sum().backward()
    d = x.detach() - y.detach()
    assert torch.allclose(x.grad, 0.2 + 2.4 * d * d)


def test_pipeline_gradient_equals_autograd_of_the_lerp_formula(photos, monkeypatch):
    """Backward through jpeg_torch equals autograd through lerp(x, r + (x - r)^3, 0.8), r = round(x) held fixed.

    The range limits are the identity here: their forward would clamp the two runs' (different)
    decoded samples at different places, and their gradient is the identity anyway (tested below)."""
    monkeypatch.setattr(jpeg_mod, "_range_limit", lambda v, top=255.0: v)
    x = photos[:1, :, :24, :40].double().requires_grad_()
    y = jpeg_torch(x, 12)
    upstream = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(0))
    y.backward(upstream)

    def explicit(v, k):  # the default k is the paper's 0.8: the reference does not take jpeg_torch's
        r = jpeg_mod._round_half_away(v).detach()
        return torch.lerp(v, r + (v - r) ** 3, 0.8)

    monkeypatch.setattr(jpeg_mod, "round_surrogate", explicit)
    x2 = x.detach().clone().requires_grad_()
    jpeg_torch(x2, 12).backward(upstream)  # its forward is not exact, its gradient is the reference
    assert torch.allclose(x2.grad, x.grad, atol=1e-9)
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("q", [1, 6, 100])
@pytest.mark.parametrize("hw", [(17, 23), (8, 8), (33, 16)])
def test_gradients_finite_everywhere(q, hw):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, *hw, generator=g)
    x[0, :, :3] = 0.0
    x[1, :, :3] = 1.0
    x.requires_grad_()
    y = jpeg_torch(x, q)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


def test_exact_rounding_has_no_gradient_path():
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    jpeg_torch(x, 50, rounding="exact").sum().backward()
    assert x.grad.abs().max() == 0


def test_bad_quality_and_shape():
    with pytest.raises(InputError, match="1..100"):
        jpeg_torch(torch.rand(1, 3, 8, 8), 0)
    with pytest.raises(InputError, match="whole number"):
        quantization_tables(50.5)
    with pytest.raises(InputError):
        jpeg_torch(torch.rand(1, 2, 8, 8), 50)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        jpeg_pillow(torch.full((1, 3, 8, 8), 2.0), 50)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_pillow_jpeg_returns_the_input_dtype(dtype, photos):
    x = photos[:2, :, :24, :40]
    ref = jpeg_pillow(x, 50)  # libjpeg's bytes, as float32 levels
    y = jpeg_pillow(x.to(dtype), 50)
    assert y.dtype == dtype and y.shape == x.shape
    if dtype == torch.float64:  # the same bytes, as exact float64 levels k / 255
        assert torch.equal((y * 255).round(), (ref * 255).round())
        assert (y * 255 - (y * 255).round()).abs().max() < 1e-9


def test_empty_batch_passes_through():
    """Like the other benchmark tasks, an empty batch gives an empty batch (it raised
    numpy's 'need at least one array to stack')."""
    from genrestore.degrade import get_task

    x = torch.rand(0, 3, 32, 32)
    assert jpeg_pillow(x, 12).shape == (0, 3, 32, 32)
    assert get_task("UNAP").degrade(x, torch.Generator().manual_seed(0)).shape == (0, 3, 4, 4)


def test_420_chroma_bottom_padding_follows_libjpeg(photos):
    """libjpeg (jcprepct.c) pads an even-height image's *subsampled* chroma to whole blocks by
    repeating its last chroma row (the 2x2 mean of rows H-2 and H-1); replicating the full-size
    last row before averaging (the old code) put row H-1's colour alone in the padding, and
    the bottom chroma blocks' DCT differed from libjpeg's. Reference: Pillow (libjpeg)."""
    x = photos[:2, :, :40, :48].clone()  # H = 40: even, not a multiple of the 16 px MCU
    x[:, :, -2] = torch.tensor([0.0, 0.0, 1.0]).view(3, 1)  # blue row H-2
    x[:, :, -1] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1)  # red row H-1
    ours = jpeg_torch(x, 50, rounding="exact")
    ref = jpeg_pillow(x, 50)
    p = psnr(ours[..., -16:, :], ref[..., -16:, :])  # the last MCU row
    print(f"bottom MCU row PSNR(torch JPEG, libjpeg): {p.tolist()}")
    assert p.min() >= 40


def test_decoded_samples_are_range_limited_before_colour_conversion():
    """libjpeg limits every decoded Y, Cb, Cr sample to 0..255 after the inverse DCT (chroma at
    its subsampled size, before upsampling); without that, saturated colours decoded far from
    Pillow's (q 10: 32.5 dB). The limit is straight-through: the surrogate's gradient is the one
    of the unlimited samples."""
    g = torch.Generator().manual_seed(0)
    blocks = (torch.rand(1, 3, 8, 8, generator=g) > 0.5).float()  # pure primaries, white, black
    x = torch.nn.functional.interpolate(blocks, scale_factor=8, mode="nearest")
    for q, floor in ((10, 40.0), (30, 35.0)):
        assert psnr(jpeg_torch(x, q, rounding="exact"), jpeg_pillow(x, q)).item() >= floor, q
    v = torch.tensor([-20.0, 10.0, 300.0], requires_grad=True)
    limited = jpeg_mod._range_limit(v)
    limited.sum().backward()
    assert limited.tolist() == [0.0, 10.0, 255.0] and v.grad.tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("channels", [3, 1])
def test_saturated_output_pixels_keep_the_surrogate_gradient(channels, monkeypatch):
    """The final clamp to [0, 1] is libjpeg's, so the forward pass keeps it, but pixels that ring past
    0 or 1 must still pass gradient (the authors' DiffJPEG has no clamp at all): the backward pass
    equals the one with every range limit removed, while a hard clamp zeroes those pixels."""
    g = torch.Generator().manual_seed(0)
    blocks = (torch.rand(1, channels, 4, 4, generator=g) > 0.5).double()  # black, white, primaries
    x = torch.nn.functional.interpolate(blocks, scale_factor=8, mode="nearest").requires_grad_()
    upstream = torch.randn(1, channels, 32, 32, dtype=torch.float64, generator=g)
    y = jpeg_torch(x, 10)
    y.backward(upstream)
    assert y.min() >= 0 and y.max() <= 1

    monkeypatch.setattr(jpeg_mod, "_range_limit", lambda v, top=255.0: v)
    x_free = x.detach().clone().requires_grad_()
    y_free = jpeg_torch(x_free, 10)
    y_free.backward(upstream)
    outside = (y_free < 0) | (y_free > 1)
    assert outside.sum() > 20  # q 10 rings past black and white
    torch.testing.assert_close(x.grad, x_free.grad, rtol=0, atol=1e-12)

    x_hard = x.detach().clone().requires_grad_()
    jpeg_torch(x_hard, 10).clamp(0, 1).backward(upstream)  # a hard final clamp
    assert (x_hard.grad - x.grad).abs().max() > 1e-3


# --- boundaries and defaults that only hand-made cases pin (found by mutating the code, helper-43) ---


def test_jfif_colour_constants():
    """JFIF's RGB -> YCbCr: white is (255, 128, 128) exactly, red has Y = 0.299 * 255 (a 0.3 weight
    moved PSNR against Pillow by under 1 dB, which the photo tests did not see)."""
    from genrestore.degrade import jpeg as J

    rgb = torch.tensor([[255.0, 0, 0], [255, 255, 255]]).T.reshape(1, 3, 1, 2)
    ycc = J._color_convert(rgb, J._RGB_TO_YCC, J._YCC_OFFSET)[0, :, 0]
    torch.testing.assert_close(ycc[:, 1], torch.tensor([255.0, 128.0, 128.0]))
    assert abs(ycc[0, 0].item() - 0.299 * 255) < 1e-4


def test_jpeg_pillow_rounds_to_8_bit_and_honours_subsampling():
    """Values between 8-bit levels are rounded (100.6 -> 101, not truncated), and 4:4:4 keeps 1 px
    chroma detail (52.9 dB here; subsampled, 7.6 dB)."""
    from genrestore.degrade import jpeg_pillow

    flat = torch.full((1, 3, 16, 16), 100.6 / 255)
    assert ((jpeg_pillow(flat, 100, "4:4:4") * 255).round() == 101).all()
    cols = torch.zeros(1, 3, 16, 16)
    cols[:, 0, :, 0::2] = 1
    cols[:, 2, :, 1::2] = 1
    assert (jpeg_pillow(cols, 100, "4:4:4") - cols).abs().max().item() < 8 / 255


def test_fancy_upsampling_sees_the_real_chroma_size(monkeypatch):
    """4:2:0 chroma of a 38x46 image is ceil(38/2) x ceil(46/2) = 19 x 23 before upsampling (a
    wrong slice moved only edge pixels, which a PSNR against Pillow does not see)."""
    from genrestore.degrade import jpeg as J

    seen = []
    original = J._fancy_upsample
    monkeypatch.setattr(J, "_fancy_upsample", lambda t: seen.append(tuple(t.shape[-2:])) or original(t))
    J.jpeg_torch(torch.rand(1, 3, 38, 46), 50)
    assert seen == [(19, 23)]


# --- found by mutating the code (helper-72) ---


def test_round_surrogate_default_k_is_0_8():
    """Robust StyleGAN eqs. 14-15 with k = 0.8: d/dx lerp(x, r + (x - r)^3, 0.8) = 0.2 + 2.4 (x - r)^2."""
    x = torch.tensor([-1.3, 0.25, 2.5], dtype=torch.float64, requires_grad=True)
    y = round_surrogate(x)
    y.sum().backward()
    d = x.detach() - y.detach()
    assert torch.allclose(x.grad, 0.2 + 2.4 * d * d)


def test_grey_jpeg_of_odd_size_pads_by_replication_as_libjpeg(photos):
    """libjpeg pads a grey image to whole 8x8 blocks by repeating its last row and column; zero padding would
    put a dark edge into every border block, which shows after quantization."""
    grey = photos[:4, :1, :21, :27]
    p = psnr(jpeg_torch(grey, 20, rounding="exact"), jpeg_pillow(grey, 20))
    assert p.min() >= 40
