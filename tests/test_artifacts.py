"""DDIM-latent artifacts against closed forms: with a denoiser that predicts zero noise, DDIM
inversion is x_T0 = sqrt(a_T0) x0 and decoding divides by it, so each perturbation of the latent
reaches the image as a known formula."""

from __future__ import annotations

import pytest
import torch

from genrestore._checks import InputError
from genrestore.artifacts import ddim_gaussian, ddim_scale_shift, identity_pair
from genrestore.diffusion.schedulers import DEFAULT_SCHEDULE, make_scheduler

def _a_t0(t0=840, steps=48) -> float:
    """alphas_cumprod at the latent's timestep: with zero noise, inversion maps 1 to sqrt(a_T0)."""
    from genrestore.diffusion.sampling import ddim_invert

    z = ddim_invert(lambda x, t: torch.zeros_like(x), torch.ones(1, 1, 1, 1, dtype=torch.float64), steps, t0=t0)
    return float(z) ** 2


def test_gaussian_artifact_is_the_closed_form():
    eps = lambda x, t: torch.zeros_like(x)  # noqa: E731
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.6 + 0.2
    y, p = ddim_gaussian(eps, x, level=0.5, generator=torch.Generator().manual_seed(1))
    assert p["alpha"] == pytest.approx(0.3) and p["t0"] == 840 and p["steps"] == 48
    n = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    a = _a_t0()
    assert 0.0 < a < make_scheduler("ddim", DEFAULT_SCHEDULE).alphas_cumprod[700].item()  # deep in the chain
    expected = ((x * 2 - 1 + 0.3 * n / a ** 0.5 + 1) / 2).clamp(0, 1)  # x0' = x0 + alpha n / sqrt(a_T0)
    assert (y - expected).abs().max() < 1e-4


def test_scale_shift_artifact_is_the_closed_form_and_level_zero_is_clean():
    eps = lambda x, t: torch.zeros_like(x)  # noqa: E731
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2)) * 0.6 + 0.2
    y, p = ddim_scale_shift(eps, x, gamma=1.015, beta=0.01)
    # model space: x0' = gamma x0 + beta / sqrt(a_T0)
    a = _a_t0()
    expected = (((1.015 * (x * 2 - 1) + 0.01 / a ** 0.5) + 1) / 2).clamp(0, 1)
    assert (expected - y).abs().max() < 1e-4
    y0, _ = ddim_scale_shift(eps, x, level=0.0)
    assert (y0 - x).abs().max() < 1e-5
    assert ddim_scale_shift(eps, x, level=1.0)[1]["gamma"] == pytest.approx(1.03)


def test_seeded_and_identity_and_errors():
    eps = lambda x, t: torch.zeros_like(x)  # noqa: E731
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    a, _ = ddim_gaussian(eps, x, 0.3, [torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)])
    b, _ = ddim_gaussian(eps, x[1:], 0.3, [torch.Generator().manual_seed(6)])
    assert torch.equal(a[1:], b)  # an image's artifact does not depend on its batch
    c, p = identity_pair(x)
    assert torch.equal(c, x) and p == {"kind": "identity"}
    with pytest.raises(InputError, match="level"):
        ddim_gaussian(eps, x, 1.5)


def test_with_a_tiny_diffusers_unet():
    from diffusers import UNet2DModel

    from genrestore.artifacts.ddim import as_eps_fn

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
                       norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D")).eval()
    x = torch.rand(1, 3, 8, 8)
    y, p = ddim_gaussian(as_eps_fn(unet), x, 0.5, torch.Generator().manual_seed(0), steps=6)
    assert y.shape == x.shape and 0 <= float(y.min()) and float(y.max()) <= 1 and p["kind"] == "ddim-gauss"


def test_ar_resample_refuses_a_too_small_image_up_front_naming_it(tmp_path, capsys):
    """The transformer's size check ran inside the synthesis, batch by batch: the message named no
    file ("the transformer models 32x32 tokens ..."), and pairs of the images before it were written."""
    from genrestore.cli import main
    from genrestore.io import write_image

    g = torch.Generator().manual_seed(0)
    write_image(tmp_path / "in" / "a_small.png", torch.rand(1, 3, 16, 16, generator=g))
    write_image(tmp_path / "in" / "b_big.png", torch.rand(1, 3, 128, 128, generator=g))
    out = tmp_path / "o"
    assert main(["artifacts", str(tmp_path / "in"), "-o", str(out), "--kind", "ar-resample", "--device", "cpu",
                 "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genrestore: error: {tmp_path / 'in' / 'a_small.png'}: ") and "128 px" in err, err
    assert err.count("\n") == 1 and not out.exists()


def test_level_half_is_the_papers_training_setting_and_bad_gamma_beta_are_refused():
    """Module docstring: level 0.5 gives DiffGAR's training values (gamma 1.015, beta 0.01, alpha 0.3),
    reaching the image by the closed form; NaN / infinite gamma or beta are InputErrors."""
    from genrestore.artifacts import DDIM_PAPER

    eps = lambda x, t: torch.zeros_like(x)  # noqa: E731
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(4)) * 0.6 + 0.2
    y, p = ddim_scale_shift(eps, x, level=0.5)
    assert p["gamma"] == pytest.approx(DDIM_PAPER["gamma"]) and p["beta"] == pytest.approx(DDIM_PAPER["beta"])
    expected = (((1.015 * (x * 2 - 1) + 0.01 / _a_t0() ** 0.5) + 1) / 2).clamp(0, 1)
    assert (expected - y).abs().max() < 1e-4
    for bad in ({"gamma": float("nan")}, {"beta": float("inf")}):
        with pytest.raises(InputError, match=next(iter(bad))):
            ddim_scale_shift(eps, x, **bad)


def _zero_eps_unet(timesteps):
    """A tiny DenoisingUNet whose output convolution is zero: it predicts eps = 0 at every step."""
    from genrestore.diffusion import DenoisingUNet

    torch.manual_seed(0)
    net = DenoisingUNet(3, schedule={"num_train_timesteps": timesteps}, unet=dict(
        sample_size=8, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))).eval()
    for p in net.unet.conv_out.parameters():
        p.data.zero_()
    return net


def test_synthesize_ddim_scale_uses_the_models_schedule_level_and_size():
    """synthesize('ddim-scale') on a 9 x 11 image (padded to the UNet's multiple of 2, cropped back) with a
    zero-eps DDPM of T = 100: the closed form x0' = gamma x0 + beta / sqrt(a_T0) with gamma = 1 + 0.03 level,
    beta = 0.02 level, T0 = round(0.84 T) = 84 and a_T0 the product of (1 - beta_t) of the linear
    1e-4..0.02 schedule over 100 steps, by hand. For T = 3, round(0.84 T) = 3 is past the last step: T0 = 2."""
    import numpy as np

    from genrestore.artifacts import synthesize

    x = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(0)) * 0.6 + 0.2
    y, p = synthesize("ddim-scale", {"ddpm": _zero_eps_unet(100)}, x, 0.25, ddim_steps=4)
    assert y.shape == x.shape and p["t0"] == 84
    assert p["gamma"] == pytest.approx(1.0075) and p["beta"] == pytest.approx(0.005)
    a = float(np.cumprod(1 - np.linspace(1e-4, 0.02, 100))[84])
    expected = ((1.0075 * (x.double() * 2 - 1) + 0.005 / a ** 0.5 + 1) / 2).clamp(0, 1)
    assert (y - expected).abs().max() < 1e-5
    y, p = synthesize("ddim-scale", {"ddpm": _zero_eps_unet(3)}, x, 0.0, ddim_steps=2)
    assert p["t0"] == 2 and (y - x).abs().max() < 1e-5


def test_ddim_scale_shift_called_directly_on_a_denoising_unet_uses_its_stored_schedule():
    """The public ddim_scale_shift / ddim_gaussian on a DenoisingUNet of T = 100 without ``schedule``
    or ``t0``: the model's own schedule and T0 = round(0.84 T) = 84, as synthesize uses them (the
    closed form with a_T0 of the linear schedule over 100 steps, by hand), not the default T = 1000
    schedule with T0 = 840 (timesteps this model never saw)."""
    import numpy as np

    net = _zero_eps_unet(100)
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2)) * 0.6 + 0.2
    y, p = ddim_scale_shift(net, x, 0.5, steps=4)
    assert p["t0"] == 84
    a = float(np.cumprod(1 - np.linspace(1e-4, 0.02, 100))[84])
    expected = ((1.015 * (x.double() * 2 - 1) + 0.01 / a ** 0.5 + 1) / 2).clamp(0, 1)
    assert (y - expected).abs().max() < 1e-5
    g = [torch.Generator().manual_seed(3)]
    y, p = ddim_gaussian(net, x, 0.5, g, steps=4)
    n = torch.randn(x.shape, generator=torch.Generator().manual_seed(3)).double()
    assert p["t0"] == 84
    assert (y - ((x.double() * 2 - 1 + 0.3 * n / a ** 0.5 + 1) / 2).clamp(0, 1)).abs().max() < 1e-5


def test_artifacts_cli_takes_diffgars_test_perturbation_instead_of_the_level(tmp_path, capsys):
    """DiffGAR's test pairs use gamma 1.009, beta 0.005 (and alpha 0.25), which no single level gives
    (1 + 0.03 level, 0.02 level): --gamma/--beta/--alpha set them. On a zero-eps DDPM of T = 100 the
    output is the closed form x0' = gamma x0 + beta / sqrt(a_84), by hand; alpha 0 gives back x."""
    import json

    import numpy as np

    from genrestore.cli import main
    from genrestore.io import read_image, write_image

    _zero_eps_unet(100).save(tmp_path / "ddpm.safetensors")
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.6 + 0.2
    write_image(tmp_path / "in" / "a.png", x)
    x = read_image(tmp_path / "in" / "a.png")
    base = ["artifacts", str(tmp_path / "in"), "--ddpm", str(tmp_path / "ddpm.safetensors"), "--ddim-steps", "4", "-q"]
    assert main(base + ["-o", str(tmp_path / "s"), "--kind", "ddim-scale", "--gamma", "1.009", "--beta", "0.005"]) == 0
    rec = json.loads((tmp_path / "s" / "a.json").read_text())
    assert (rec["gamma"], rec["beta"]) == (1.009, 0.005) and rec["settings"]["options"]["gamma"] == 1.009
    a = float(np.cumprod(1 - np.linspace(1e-4, 0.02, 100))[84])
    expected = ((1.009 * (x.double() * 2 - 1) + 0.005 / a ** 0.5 + 1) / 2).clamp(0, 1)
    assert (read_image(tmp_path / "s" / "a.png") - expected).abs().max() < 0.6 / 255
    assert main(base + ["-o", str(tmp_path / "g"), "--kind", "ddim-gauss", "--alpha", "0"]) == 0
    assert json.loads((tmp_path / "g" / "a.json").read_text())["alpha"] == 0.0
    assert (read_image(tmp_path / "g" / "a.png") - x).abs().max() <= 1 / 255
    capsys.readouterr()
    assert main(base + ["-o", str(tmp_path / "x"), "--kind", "ddim-scale", "--alpha", "0.25"]) == 2
    assert "--alpha" in capsys.readouterr().err and not (tmp_path / "x").exists()
