"""The classical baselines: JPEG deblocking by re-application (Nosratinia 2001)."""

import pytest
import torch

from genrestore._checks import InputError
from genrestore.degrade.jpeg import jpeg_pillow
from genrestore.io import read_image
from genrestore.metrics import psnr
from genrestore.restore.baselines import jpeg_reapply_deblock


@pytest.fixture(scope="module")
def photo():
    from importlib import resources

    x = read_image(resources.files("genrestore") / "assets" / "astronaut.png", "rgb")
    return x[..., 96:224, 160:288]  # 128 px: face, helmet and flag


def test_one_shift_is_one_recompression_on_the_original_grid(photo):
    """shifts=1 keeps the block grid: on sides that are multiples of 16 it equals libjpeg re-compression."""
    y = jpeg_pillow(photo[..., :32, :48], 30)
    assert torch.equal(jpeg_reapply_deblock(y, 30, shifts=1), jpeg_pillow(y, 30))


@pytest.mark.parametrize("quality", [6, 12])  # the deartifact task at XL and M
def test_deblocking_brings_the_image_closer_to_the_original(photo, quality):
    """Nosratinia's claim: averaging shifted re-compressions beats the JPEG image (here by > 0.3 dB)."""
    y = jpeg_pillow(photo, quality)
    out = jpeg_reapply_deblock(y, quality)
    assert out.shape == y.shape and torch.equal(out, (out * 255).round() / 255)
    assert float(psnr(out, photo)) > float(psnr(y, photo)) + 0.3


def test_bad_arguments(photo):
    with pytest.raises(InputError, match="quality"):
        jpeg_reapply_deblock(photo, 0)
    with pytest.raises(InputError, match="shifts"):
        jpeg_reapply_deblock(photo, 10, shifts=17)
    for bad in (True, 10.5, "10"):
        with pytest.raises(InputError, match="quality"):
            jpeg_reapply_deblock(photo, bad)
        with pytest.raises(InputError, match="shifts"):
            jpeg_reapply_deblock(photo, 10, shifts=bad)


def test_whole_number_arguments_are_taken_as_ints():
    """Qualities and shifts given as NumPy integers or integral floats give the same result as ints."""
    import numpy as np

    y = jpeg_pillow(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)), 20)
    want = jpeg_reapply_deblock(y, 20, shifts=2)
    assert torch.equal(jpeg_reapply_deblock(y, np.int64(20), shifts=2.0), want)
