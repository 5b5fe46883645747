"""--half on the CPU and the channels-last network calls (genrestore.models.precision)."""

import pytest
import torch

import genrestore.models.precision as precision
from genrestore.diffusion import ConditionalUNet, sample
from genrestore.models.precision import half_dtype, run_network
from genrestore.models.sr import build_sr, upscale

TINY_UNET = dict(sample_size=16, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                 down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"))


@pytest.fixture(params=[True, False], ids=["native-bf16", "no-bf16"])
def native_bf16(request, monkeypatch):
    """The CPU's bf16 support as half_dtype sees it (bf16 arithmetic itself runs on any CPU)."""
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: request.param)
    return request.param


def test_half_dtype_on_the_cpu_is_bf16_only_where_native(native_bf16):
    assert half_dtype("cpu") == (torch.bfloat16 if native_bf16 else None)


def tiny_sr():
    torch.manual_seed(0)  # test-only: weight init
    return build_sr({"arch": "rrdbnet", "num_feat": 8, "num_block": 1, "num_grow_ch": 4, "scale": 4}).eval()


def test_upscale_half_on_the_cpu(native_bf16):
    net = tiny_sr()
    x = torch.rand(2, 3, 40, 52, generator=torch.Generator().manual_seed(1))
    full, half = upscale(net, x), upscale(net, x, half=True)
    assert full.dtype == half.dtype == torch.float32
    diff = float((half - full).abs().max())
    if native_bf16:  # bf16 ran: close (8-bit mantissa), but not the float32 values
        assert 0 < diff < 2e-2
    else:  # float32, the same call
        assert diff == 0
    # tiled, the half path agrees with itself untiled as float32 does (pad covers the field)
    assert float((upscale(net, x, tile=32, tile_pad=10, half=True) - half).abs().max()) < 2e-2


def test_float32_call_is_channels_last_with_the_plain_values():
    net = tiny_sr()
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    seen = []
    out = run_network(lambda t: seen.append(t) or net(t), x)
    assert seen[0].is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert float((out - net(x)).abs().max()) < 1e-5


class Overflows(torch.nn.Module):
    """Finite in float32, inf under autocast (as a float16 overflow would be)."""
    scale = 1

    def forward(self, t):
        return t * 0 + (torch.inf if torch.is_autocast_enabled(t.device.type) else 0.5)


def test_non_finite_half_result_is_recomputed_in_float32(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    x = torch.rand(1, 3, 8, 8)
    with pytest.warns(UserWarning, match="bfloat16 SR output; recomputed in float32"):
        y = upscale(Overflows(), x, half=True)
    assert torch.isfinite(y).all() and float(y.max()) == 0.5


def test_sampler_half_close_to_float32_and_same_noise(native_bf16):
    torch.manual_seed(0)  # test-only: weight init
    net = ConditionalUNet(3, prediction_type="sample", unet=TINY_UNET).eval()
    y = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(3))
    full = sample(net, y, "ddpm", 3, generator=torch.Generator().manual_seed(4))
    half = sample(net, y, "ddpm", 3, generator=torch.Generator().manual_seed(4), half=True)
    tiled = sample(net, y, "ddpm", 3, generator=torch.Generator().manual_seed(4), half=True, tile=16, tile_pad=2,
                   tile_blend=2)
    assert half.dtype == torch.float32 and half.shape == full.shape
    diff = float((half - full).abs().max())
    if native_bf16:
        assert 0 < diff < 0.05  # the same noise, the network's rounding only
    else:
        assert diff == 0
    assert torch.isfinite(tiled).all() and tiled.shape == full.shape


class OverflowingDenoiser(ConditionalUNet):
    """An x0-predictor that is finite in float32 and inf under autocast."""

    def forward(self, x_t, t, y, class_labels=None):
        return y * 0 + (torch.inf if torch.is_autocast_enabled(y.device.type) else 0.25)


def test_sampler_recomputes_a_non_finite_half_step_in_float32(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    net = OverflowingDenoiser(3, prediction_type="sample", unet=TINY_UNET).eval()
    y = torch.rand(1, 3, 16, 16)
    with pytest.warns(UserWarning, match="bfloat16 diffusion output; recomputed in float32"):
        out = sample(net, y, "ddpm", 2, generator=torch.Generator().manual_seed(0), half=True)
    assert torch.isfinite(out).all()
    assert torch.equal(out, sample(net, y, "ddpm", 2, generator=torch.Generator().manual_seed(0)))


def test_float64_network_is_left_in_float64_by_half(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    net = tiny_sr().double()
    x = torch.rand(1, 3, 12, 12, dtype=torch.float64)
    with torch.no_grad():
        out = run_network(net, x, half=True)
        assert out.dtype == torch.float64 and torch.allclose(out, net(x), rtol=0, atol=1e-12)
