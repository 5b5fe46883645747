import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from genrestore._checks import InputError
from genrestore.degrade import resize, resize_8bit, resize_adjoint

PIL_FILTERS = {"nearest": Image.NEAREST, "area": Image.BOX, "bilinear": Image.BILINEAR,
               "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}
SIZES = [((37, 53), (12, 20)), ((37, 53), (80, 61)), ((64, 64), (16, 16)), ((30, 40), (29, 41))]


@pytest.mark.parametrize("filt", list(PIL_FILTERS))
@pytest.mark.parametrize("src,dst", SIZES)
def test_matches_pillow_float_mode(filt, src, dst):
    """Reference: Pillow's own resampler on 32-bit float ('F') images, channel by channel."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 2, *src, generator=g)
    y = resize(x, dst, filt)
    for c in range(2):
        ref = np.asarray(Image.fromarray(x[0, c].numpy(), mode="F").resize(dst[::-1], PIL_FILTERS[filt]))
        assert np.abs(y[0, c].numpy() - ref).max() < 2e-5, filt


@pytest.mark.parametrize("filt", ["bilinear", "bicubic", "lanczos", "area"])
@pytest.mark.parametrize("dst", [(40, 56), (16, 16), (64, 128)])
def test_resize_8bit_matches_pillow_bytes(filt, dst, photos):
    """Pillow rounds and clips to 8 bits between its two passes; resize_8bit does the same and
    differs from Pillow's fixed-point arithmetic by at most one level, on few pixels."""
    x = photos[:3]
    y = (resize_8bit(x, dst, filt) * 255).round()
    for i in range(3):
        a = (x[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        ref = np.asarray(Image.fromarray(a).resize(dst[::-1], PIL_FILTERS[filt])).astype(np.float32)
        diff = np.abs(y[i].permute(1, 2, 0).numpy() - ref)
        # box averages over 8x8 pixels land exactly on halves often, where Pillow's 22-bit
        # fixed-point weights tip either way: hence 2 % of pixels rather than 1 %
        assert diff.max() <= 1 and (diff > 0).mean() < 0.02, (filt, dst, diff.max(), (diff > 0).mean())


def test_no_antialias_matches_opencv():
    x = torch.rand(1, 3, 24, 30, generator=torch.Generator().manual_seed(1))
    a = x[0].permute(1, 2, 0).numpy()
    for filt, flag in (("bilinear", cv2.INTER_LINEAR), ("bicubic", cv2.INTER_CUBIC)):
        for dst in ((48, 60), (17, 11)):
            ref = cv2.resize(a, dst[::-1], interpolation=flag)
            y = resize(x, dst, filt, antialias=False)[0].permute(1, 2, 0).numpy()
            if filt == "bilinear" or dst[0] > 24:
                assert np.abs(y - ref).max() < 1e-4, (filt, dst)
    ref = cv2.resize(a, (15, 12), interpolation=cv2.INTER_AREA)
    assert np.abs(resize(x, (12, 15), "area")[0].permute(1, 2, 0).numpy() - ref).max() < 1e-5


def test_adjoint():
    g = torch.Generator().manual_seed(2)
    for filt in ("bicubic", "lanczos", "area"):
        x = torch.randn(2, 3, 21, 34, generator=g, dtype=torch.float64)
        y = torch.randn(2, 3, 9, 50, generator=g, dtype=torch.float64)
        lhs = (resize(x, (9, 50), filt) * y).sum()
        rhs = (x * resize_adjoint(y, (21, 34), filt)).sum()
        assert torch.allclose(lhs, rhs, rtol=1e-10)


def test_gradcheck_and_batch_consistency():
    x = torch.rand(2, 1, 7, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: resize(t, (4, 13), "bicubic"), (x,))
    xb = torch.rand(3, 3, 20, 20)
    assert torch.allclose(resize(xb, (7, 7), "lanczos")[1:2], resize(xb[1:2], (7, 7), "lanczos"))


def test_errors():
    with pytest.raises(InputError, match="unknown resize filter"):
        resize(torch.rand(1, 3, 4, 4), (2, 2), "cubic")
    with pytest.raises(InputError):
        resize(torch.rand(3, 4, 4), (2, 2))
    with pytest.raises(InputError):
        resize(torch.rand(1, 3, 4, 4), (0, 2))


def test_resize_8bit_refuses_0_to_255_input():
    """resize_8bit clips to 8-bit levels of [0, 1], so 0..255 input would come out all white:
    it is refused (NaN too); a filter's small overshoot around [0, 1] is accepted."""
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        resize_8bit(x * 255, (6, 6), "bicubic")
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        resize_8bit(bad, (6, 6), "bicubic")
    y = resize_8bit(x * 1.2 - 0.1, (6, 6), "bicubic")  # overshoot is clipped as Pillow's 8-bit images are
    assert y.min() >= 0 and y.max() <= 1 and torch.equal(y, (y * 255).round() / 255)


# --- found by mutating the code (helper-72) ---


def test_resize_8bit_refuses_images_well_outside_0_1():
    """Only a filter's overshoot (within half the range past 0 and 1) is accepted: 0..2 or -1..1 is refused."""
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    for bad in (x * 2, x * 2 - 1):
        with pytest.raises(InputError, match=r"\[0, 1\]"):
            resize_8bit(bad, (6, 6), "bilinear")
    resize_8bit(x * 1.9 - 0.45, (6, 6), "bilinear")  # -0.45 .. 1.45: accepted
