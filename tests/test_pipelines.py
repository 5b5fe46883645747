import pytest
import torch

from genrestore._checks import InputError
from genrestore.degrade import GFPGAN, IDM, PIPELINES, SecondOrder


def test_presets_follow_their_sources():
    # IDM §4.1: sigma in [0.2, 10], scale in [1, 8], noise in [0, 15], JPEG q in [50, 100]; kernel 41
    assert (IDM.kernel_size, IDM.sigma_range, IDM.scale_range, IDM.noise_range_255, IDM.jpeg_range) == (
        41, (0.2, 10.0), (1.0, 8.0), (0.0, 15.0), (50, 100))
    # GFPGAN's options: sigma [0.1, 10], scale [0.8, 8], noise [0, 20], JPEG [60, 100]; iso/aniso 50/50
    assert (GFPGAN.kernel_size, GFPGAN.sigma_range, GFPGAN.scale_range, GFPGAN.noise_range_255,
            GFPGAN.jpeg_range, GFPGAN.aniso_prob) == (41, (0.1, 10.0), (0.8, 8.0), (0.0, 20.0), (60, 100), 0.5)


@pytest.mark.parametrize("preset", [IDM, GFPGAN])
def test_face_pipeline_params_in_range_and_size_kept(preset, photos):
    g = [torch.Generator().manual_seed(i) for i in range(4)]
    y, params = preset.degrade_with_params(photos[:4], g)
    assert y.shape == photos[:4].shape
    assert torch.equal(y * 255, (y * 255).round())
    for p in params:
        assert preset.sigma_range[0] <= p["sigma_x"] <= preset.sigma_range[1]
        assert preset.scale_range[0] <= p["scale"] <= preset.scale_range[1]
        assert preset.noise_range_255[0] <= p["noise_sigma_255"] <= preset.noise_range_255[1]
        assert preset.jpeg_range[0] <= p["jpeg_quality"] <= preset.jpeg_range[1]
    # it degrades: blur + downsampling lose detail
    assert ((y - photos[:4]) ** 2).mean() > 1e-4


def test_face_pipeline_deterministic_per_image(photos):
    g = lambda: [torch.Generator().manual_seed(i) for i in range(3)]  # noqa: E731
    y = IDM.degrade(photos[:3], g())
    assert torch.equal(y, IDM.degrade(photos[:3], g()))
    assert torch.equal(y[1:2], IDM.degrade(photos[1:2], [torch.Generator().manual_seed(1)]))


def test_second_order_size_and_determinism(photos):
    g = lambda: [torch.Generator().manual_seed(i) for i in range(3)]  # noqa: E731
    for scale in (2, 4):
        y, params = SecondOrder(scale=scale).degrade_with_params(photos[:3], g())
        assert y.shape == (3, 3, 128 // scale, 128 // scale)
        assert torch.equal(y, SecondOrder(scale=scale).degrade(photos[:3], g()))
        for p in params:
            assert 30 <= p["stage1"]["jpeg_quality"] <= 95
            assert p["stage1"]["noise"]["type"] in ("gaussian", "poisson")
    with pytest.raises(InputError):
        SecondOrder(scale=4).degrade(torch.rand(1, 3, 3, 3))


def test_pipeline_registry():
    assert set(PIPELINES) == {"idm", "gfpgan", "realesrgan-x4", "realesrgan-x2"}


def test_no_resize_back_batches_at_the_documented_size(photos):
    from genrestore.degrade import BlurDownNoiseJpeg

    p = BlurDownNoiseJpeg(resize_back=False)
    g = lambda: [torch.Generator().manual_seed(i) for i in range(2)]  # noqa: E731
    y, params = p.degrade_with_params(photos[:2], g())
    assert y.shape == (2, 3, *p.output_size((128, 128))) == (2, 3, 16, 16)
    assert params[0]["scale"] != params[1]["scale"]
    assert torch.equal(y * 255, (y * 255).round())
    assert torch.equal(y[1:], p.degrade(photos[1:2], [torch.Generator().manual_seed(1)]))


def test_empty_batch_passes_through():
    """Like the benchmark tasks and jpeg_pillow, an empty batch gives an empty batch of the
    output size (torch.cat of no images raised)."""
    from genrestore.degrade import BlurDownNoiseJpeg

    x = torch.rand(0, 3, 32, 32)
    g = torch.Generator().manual_seed(0)
    assert IDM.degrade(x, g).shape == (0, 3, 32, 32)
    assert BlurDownNoiseJpeg(resize_back=False).degrade(x, []).shape == (0, 3, 4, 4)
    y, params = SecondOrder(scale=4).degrade_with_params(x, g)
    assert y.shape == (0, 3, 8, 8) and params == []
