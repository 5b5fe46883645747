"""Diffusion core: ConditionalUNet, classifier-free guidance, DDPM/DDIM sampling, DDIM inversion, losses.

Every network is a tiny UNet built here (16 px, 16/32 channels); nothing is downloaded.
"""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("diffusers")

from conftest import TOL  # noqa: E402

from genrestore._checks import InputError  # noqa: E402
from genrestore.diffusion import (  # noqa: E402
    ConditionalUNet,
    ddim_decode,
    ddim_invert,
    make_scheduler,
    mask_class_labels,
    predict,
    sample,
    training_loss,
    training_target,
)

TINY_UNET = dict(sample_size=16, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                 down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"))
CLASSES = ("replace_token", "gpt_sampling")


def tiny_net(prediction_type="epsilon", classes=CLASSES, seed=0, out_scale=1.0) -> ConditionalUNet:
    torch.manual_seed(seed)  # test-only: weight init
    net = ConditionalUNet(3, class_names=classes, prediction_type=prediction_type, unet=TINY_UNET).eval()
    if out_scale != 1.0:
        # An untrained UNet's output jumps with its input, which no trained denoiser does; a small
        # output layer makes it smooth enough for DDIM's "eps(x_{t-1}) ~ eps(x_t)" to hold.
        with torch.no_grad():
            net.unet.conv_out.weight.mul_(out_scale)
            net.unet.conv_out.bias.zero_()
    return net


def data(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 16, 16, generator=g) * 2 - 1, torch.rand(n, 3, 16, 16, generator=g) * 2 - 1


def gaussian_eps(sd: float):
    """The exact eps for data ~ N(0, sd^2 I): eps(x_t) = sqrt(1 - a) x_t / (a sd^2 + 1 - a)."""
    a = make_scheduler("ddpm").alphas_cumprod.double()
    return (lambda x, t: (1 - a[t]).sqrt() * x / (a[t] * sd ** 2 + 1 - a[t])), a


# ----------------------------------------------------------------------------- model


def test_forward_shapes_and_mask_default():
    net = tiny_net()
    x, y = data(3)
    out = net(x, torch.tensor([0, 500, 999]), y, torch.tensor([0, 1, 2]))
    assert out.shape == (3, 3, 16, 16) and torch.isfinite(out).all()
    assert net.unet.config.in_channels == 6 and net.unet.class_embedding.num_embeddings == 3
    # no labels means [MASK] (blind restoration)
    torch.testing.assert_close(net(x, 10, y), net(x, 10, y, torch.full((3,), net.mask_label)), rtol=0, atol=0)


def test_unconditional_model_has_no_class_embedding():
    net = tiny_net(classes=())
    x, y = data()
    assert net.unet.class_embedding is None and net(x, 3, y).shape == x.shape
    with pytest.raises(InputError, match="no classes"):
        net(x, 3, y, torch.tensor([0, 0]))


@pytest.mark.parametrize("bad, match", [
    (dict(prediction_type="x0"), "prediction_type"),
    (dict(unet=dict(in_channels=6)), "set by ConditionalUNet"),
])
def test_bad_config_raises(bad, match):
    with pytest.raises(InputError, match=match):
        ConditionalUNet(3, **{"unet": TINY_UNET, **bad})


def test_bad_labels_and_shapes_raise():
    net = tiny_net()
    x, y = data()
    with pytest.raises(InputError, match=r"in \[0, 2\]"):
        net(x, 1, y, torch.tensor([0, 3]))
    with pytest.raises(InputError, match=r"y as \(N, 3, H, W\)"):
        net(x, 1, y[:1])
    with pytest.raises(InputError, match=r"y as \(N, 3, H, W\)"):
        net(x, 1, torch.cat([y, y[:, :1]], 1))


def test_save_load_round_trip(tmp_path):
    net = tiny_net("v_prediction")
    path = tmp_path / "idm-tiny.safetensors"
    net.save(path, recipe="test")
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["config"]["arch"] == "conditional-unet" and meta["config"]["class_names"] == list(CLASSES)
    assert meta["config"]["prediction_type"] == "v_prediction" and meta["recipe"] == "test"
    loaded = ConditionalUNet.load(path)
    assert loaded.config == net.config
    x, y = data()
    c = torch.tensor([1, 2])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, 123, y, c), net(x, 123, y, c), rtol=0, atol=0)


def test_residual_model_adds_the_condition(tmp_path):
    """residual=True: x0 = y + UNet(concat(x_t, y), t); kept through save/load; only for x0 models."""
    torch.manual_seed(0)  # test-only: weight init
    net = ConditionalUNet(3, prediction_type="sample", unet=TINY_UNET, residual=True).eval()
    x, y = data()
    with torch.no_grad():
        plain = net.unet(torch.cat([x, y], dim=1), torch.tensor([5, 5])).sample
        torch.testing.assert_close(net(x, 5, y), plain + y, rtol=0, atol=0)
    net.save(tmp_path / "r.safetensors")
    assert ConditionalUNet.load(tmp_path / "r.safetensors").residual
    assert "residual" not in tiny_net("sample").config  # older configs stay as they were
    with pytest.raises(InputError, match="residual"):
        ConditionalUNet(3, prediction_type="epsilon", unet=TINY_UNET, residual=True)


def test_load_without_sidecar_raises(tmp_path):
    path = tmp_path / "w.safetensors"
    tiny_net().save(path)
    path.with_suffix(".json").unlink()
    with pytest.raises(InputError, match="w.json"):
        ConditionalUNet.load(path)


# ----------------------------------------------------------------------------- guidance


def test_cfg_scale_one_is_the_conditional_prediction_exactly():
    net = tiny_net()
    x, y = data()
    c = torch.tensor([0, 1])
    with torch.no_grad():
        assert torch.equal(predict(net, x, 700, y, c, guidance_scale=1.0), net(x, 700, y, c))


def test_cfg_formula_matches_two_separate_passes():
    net = tiny_net()
    x, y = data()
    c, s = torch.tensor([0, 1]), 3.0
    with torch.no_grad():
        cond, uncond = net(x, 700, y, c), net(x, 700, y, torch.full_like(c, net.mask_label))
        # one batched pass of 2N versus two of N: float32 rounding of batched convs only
        torch.testing.assert_close(predict(net, x, 700, y, c, s), uncond + s * (cond - uncond), **TOL[torch.float32])


def test_cfg_needs_labels():
    net = tiny_net()
    x, y = data()
    with pytest.raises(InputError, match="class_labels"):
        predict(net, x, 1, y, None, guidance_scale=3.0)


# ----------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("scheduler, steps", [("ddpm", 1), ("ddpm", 10), ("ddim", 1), ("ddim", 10)])
@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_sample_shapes_and_range(scheduler, steps, prediction_type):
    net = tiny_net(prediction_type)
    y = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    out = sample(net, y, scheduler, steps, class_labels=torch.tensor([0, 2]), guidance_scale=3.0,
                 generator=torch.Generator().manual_seed(0))
    assert out.shape == y.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("scheduler, eta", [("ddpm", 0.0), ("ddim", 0.0), ("ddim", 1.0)])
def test_sample_is_seeded_and_batch_independent(scheduler, eta):
    net = tiny_net("sample")
    y = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    gens = lambda: [torch.Generator().manual_seed(k) for k in (10, 11, 12)]  # noqa: E731
    c = torch.tensor([0, 1, 2])
    full = sample(net, y, scheduler, 4, class_labels=c, eta=eta, generator=gens())
    again = sample(net, y, scheduler, 4, class_labels=c, eta=eta, generator=gens())
    alone = sample(net, y[1:2], scheduler, 4, class_labels=c[1:2], eta=eta, generator=gens()[1:2])
    assert torch.equal(full, again)
    torch.testing.assert_close(alone, full[1:2], **TOL[torch.float32])


def test_sample_checks_inputs():
    net = tiny_net()
    y = torch.rand(1, 3, 16, 16)
    with pytest.raises(InputError, match=r"in \[0, 1\]"):
        sample(net, y * 2 - 1)
    with pytest.raises(InputError, match="eta"):
        sample(net, y, "ddpm", 2, eta=1.0)
    with pytest.raises(InputError, match="steps"):
        sample(net, y, "ddim", 0)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("eta", [0.0, 0.7])
def test_ddim_step_equals_diffusers_where_its_stride_is_the_grid(prediction_type, eta):
    """With n = 10 dividing T = 1000, diffusers' DDIMScheduler.step (to t - T // n) moves between
    grid points too: ddim_step must give the same samples, noise included."""
    from genrestore.diffusion.schedulers import ddim_step

    ref = make_scheduler("ddim", prediction_type=prediction_type)
    ref.set_timesteps(10)
    grid = ref.timesteps.tolist()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 4, generator=g)
    for t, t_next in zip(grid, grid[1:] + [-1]):
        out = torch.randn(2, 3, 4, 4, generator=g)
        want = ref.step(out, t, x, eta=eta, generator=torch.Generator().manual_seed(t)).prev_sample
        got = ddim_step(ref, out, x, t, t_next, eta, torch.Generator().manual_seed(t))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        x = want


@pytest.mark.parametrize("steps", [7, 30])
def test_ddim_sampling_steps_between_its_own_timesteps(monkeypatch, steps):
    """An exact x0 predictor: each DDIM step must land on the marginal of the grid's next timestep
    and the last on x0 itself. diffusers' step goes to t - T // n, which for n not dividing T
    is off the "trailing" grid and ends at t = 0 (a 1e-2 residue of noise)."""
    import genrestore.diffusion.sampling as sampling

    net = tiny_net("sample")
    target = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1  # model space
    seen = []

    def exact(model, x, t, *args, **kwargs):
        seen.append((int(t), x.clone()))
        return target

    monkeypatch.setattr(sampling, "predict", exact)
    x_T = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    out = sample(net, torch.rand(1, 3, 16, 16), "ddim", steps, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, (target + 1) / 2, rtol=0, atol=1e-6)
    a = make_scheduler("ddim").alphas_cumprod
    eps = (seen[0][1] - a[seen[0][0]].sqrt() * target) / (1 - a[seen[0][0]]).sqrt()
    torch.testing.assert_close(seen[0][1], x_T)
    for t, x in seen[1:]:  # deterministic DDIM keeps eps: x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps
        torch.testing.assert_close(x, a[t].sqrt() * target + (1 - a[t]).sqrt() * eps, rtol=1e-5, atol=1e-5)
    assert len(seen) == steps and seen[0][0] == 999


# ----------------------------------------------------------------------------- DDIM inversion


def test_inversion_grid_has_the_steps_and_ends_at_t0():
    from genrestore.diffusion.sampling import inversion_grid

    for steps, t0 in [(48, 840), (24, 840), (10, 500), (7, 999), (1, 0), (5, 4)]:
        g = inversion_grid(steps, t0)
        assert len(g) == steps and g[-1] == t0 and g[0] >= 0
        assert all(b > a for a, b in zip(g, g[1:]))
        gaps = [b - a for a, b in zip([-1] + g, g)]
        assert max(gaps) - min(gaps) <= 1  # as even as integers allow
    with pytest.raises(InputError, match="steps"):
        ddim_invert(lambda x, t: x, torch.zeros(1, 1, 2, 2), 6, t0=4)


@pytest.mark.parametrize("steps, t0, max_rel", [(50, None, 0.06), (200, None, 0.015), (48, 840, 0.05)])
def test_ddim_inversion_exact_denoiser(steps, t0, max_rel):
    """Data ~ N(0, 0.25 I) has an exact eps; its DDIM ODE maps x0 to x0 sqrt(a sd^2 + 1 - a) / sd.

    Seen (float64, relative RMS): decode(invert(x0)) vs x0: 5.4e-2 at 50 steps, 1.3e-2 at 200,
    4.8e-2 at 48 steps to t0 = 840; invert vs the closed form: 3.8e-3, 1.4e-3 and 3.6e-3. The
    error is the first-order DDIM discretization (it shrinks as 1 / steps).
    """
    sd = 0.5
    eps, a = gaussian_eps(sd)
    x0 = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * sd
    z = ddim_invert(eps, x0, steps, t0)
    rec = ddim_decode(eps, z, steps, t0)
    t_end = 999 if t0 is None else 840  # the grid ends at t0 exactly
    z_exact = x0 * (a[t_end] * sd ** 2 + 1 - a[t_end]).sqrt() / sd
    assert (z - z_exact).norm() / z_exact.norm() < 5e-3
    assert (rec - x0).norm() / x0.norm() < max_rel


def test_ddim_round_trip_conditional_unet_with_guidance():
    """Seen with the smoothed tiny UNet, 50 steps to t0 = 840, s = 3:
    decode(invert(x0)) max |err| 7.1e-2 (mean 1.1e-2); invert(decode(z)) max 6.5e-3 (mean 1.3e-3)."""
    net = tiny_net(out_scale=0.05)
    x0, y = data()
    kw = dict(steps=50, t0=840, y=y, class_labels=torch.tensor([0, 1]), guidance_scale=3.0)
    rec = ddim_decode(net, ddim_invert(net, x0, **kw), **kw)
    assert (rec - x0).abs().max() < 0.15 and (rec - x0).abs().mean() < 0.02
    z = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    back = ddim_invert(net, ddim_decode(net, z, **kw), **kw)
    assert (back - z).abs().max() < 0.015 and (back - z).abs().mean() < 3e-3


@pytest.mark.parametrize("prediction_type", ["sample", "v_prediction"])
def test_ddim_inversion_of_x0_and_v_models_is_finite(prediction_type):
    # diffusers' inverse scheduler divides by sqrt(1 - 1) = 0 at the first step of an x0 model;
    # outputs are read as eps at their own timestep instead
    net = tiny_net(prediction_type)
    x0, y = data()
    z = ddim_invert(net, x0, 10, 500, y=y)
    assert torch.isfinite(z).all() and torch.isfinite(ddim_decode(net, z, 10, 500, y=y)).all()


def test_inversion_argument_errors():
    net = tiny_net()
    x0, y = data()
    with pytest.raises(InputError, match="needs its condition"):
        ddim_invert(net, x0, 10)
    with pytest.raises(InputError, match="t0"):
        ddim_invert(net, x0, 10, t0=1000, y=y)
    with pytest.raises(InputError, match="plain callable"):
        ddim_invert(lambda x, t: x, x0, 10, y=y)


@pytest.mark.parametrize("prediction_type", ["sample", "v_prediction"])
def test_ddim_inversion_of_exact_x0_and_v_predictors_equals_the_eps_one(prediction_type):
    """Data ~ N(0, sd^2 I): the exact x0 predictor is sqrt(a) sd^2 x / (a sd^2 + 1 - a) and the
    exact v is sqrt(a) eps - sqrt(1 - a) x0 (Salimans & Ho 2022 §4), both written out here from
    the exact eps. Read back as eps, they must invert (and decode) exactly as the eps predictor."""
    sd = 0.5
    eps, a = gaussian_eps(sd)

    def x0_hat(x, t):
        return a[t].sqrt() * sd ** 2 * x / (a[t] * sd ** 2 + 1 - a[t])

    def v_hat(x, t):
        return a[t].sqrt() * eps(x, t) - (1 - a[t]).sqrt() * x0_hat(x, t)

    fn = x0_hat if prediction_type == "sample" else v_hat
    x0 = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * sd
    z_eps = ddim_invert(eps, x0, 20, 840)
    z = ddim_invert(fn, x0, 20, 840, prediction_type=prediction_type)
    assert (z - z_eps).abs().max() < 1e-9 * z_eps.abs().max()
    back = ddim_decode(fn, z_eps, 20, 840, prediction_type=prediction_type)
    assert (back - ddim_decode(eps, z_eps, 20, 840)).abs().max() < 1e-9


@pytest.mark.parametrize("scheduler", ["ddpm", "ddim"])
def test_latent_sampling_does_not_clip_the_predicted_x0(monkeypatch, scheduler):
    """Latents are not in [-1, 1]: with latent=True an oracle that predicts x0 = 3 everywhere
    must get 3 back (pixel sampling clips x0 to [-1, 1] and maps to [0, 1], giving 1)."""
    import genrestore.diffusion.sampling as sampling

    net = tiny_net("sample", classes=())
    monkeypatch.setattr(sampling, "predict", lambda model, x, t, *a, **k: torch.full_like(x, 3.0))
    y = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    out = sample(net, y, scheduler, 5, generator=torch.Generator().manual_seed(0), latent=True)
    torch.testing.assert_close(out, torch.full_like(out, 3.0), rtol=0, atol=1e-4)
    pixels = sample(net, y.sigmoid(), scheduler, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(pixels, torch.ones_like(pixels), rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_training_target_matches_hand_formula(prediction_type):
    s = make_scheduler("ddpm", prediction_type=prediction_type)
    x0, noise = data(4)
    t = torch.tensor([0, 17, 500, 999])
    a = s.alphas_cumprod[t].view(-1, 1, 1, 1)
    expected = {"epsilon": noise, "sample": x0,
                "v_prediction": a.sqrt() * noise - (1 - a).sqrt() * x0}[prediction_type]
    torch.testing.assert_close(training_target(s, x0, noise, t, prediction_type), expected, **TOL[torch.float32])
    # and x_t = sqrt(a) x0 + sqrt(1 - a) eps is what add_noise builds
    torch.testing.assert_close(s.add_noise(x0, noise, t), a.sqrt() * x0 + (1 - a).sqrt() * noise,
                               **TOL[torch.float32])


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_training_loss_redraws_the_same_noise(prediction_type):
    from genrestore._random import rand, randint, randn

    net = tiny_net(prediction_type).train()
    x0, y = data(3)
    c = torch.tensor([0, 1, 1])
    loss = training_loss(net, x0, y, c, generator=torch.Generator().manual_seed(5), mask_prob=0.5)
    g = torch.Generator().manual_seed(5)
    t, noise, drop = randint(g, 3, 0, 1000), randn(g, x0.shape), rand(g, (3,)) < 0.5
    s = make_scheduler("ddpm", prediction_type=prediction_type)
    out = net(s.add_noise(x0, noise, t), t, y, torch.where(drop, net.mask_label, c))
    torch.testing.assert_close(loss, ((out - training_target(s, x0, noise, t, prediction_type)) ** 2).mean())
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters() if p.requires_grad)


def test_training_loss_rejects_mismatched_scheduler():
    net = tiny_net("sample")
    x0, y = data()
    with pytest.raises(InputError, match="predicts"):
        training_loss(net, x0, y, scheduler=make_scheduler("ddpm", prediction_type="epsilon"))


def test_mask_rate():
    labels = torch.zeros(4000, dtype=torch.long)
    out = mask_class_labels(labels, 2, 0.5, torch.Generator().manual_seed(0))
    assert set(out.unique().tolist()) == {0, 2}
    assert abs((out == 2).float().mean().item() - 0.5) < 0.03  # 4 sigma for n = 4000
    assert torch.equal(mask_class_labels(labels, 2, 0.0), labels)
    assert (mask_class_labels(labels, 2, 1.0) == 2).all()
    with pytest.raises(InputError, match="mask_prob"):
        mask_class_labels(labels, 2, 1.5)


# ----------------------------------------------------------------------------- schedules


def test_default_schedule_is_ddpm_linear_1e4_to_002():
    """DDPM §4: T = 1000, betas linear from 1e-4 to 0.02, so a_999 = prod(1 - beta) = 4.04e-5
    (numpy, float64); beta_end 0.012 would leave a_999 = 2.4e-3."""
    import numpy as np

    betas = np.linspace(1e-4, 0.02, 1000)
    want = np.prod(1 - betas)
    assert abs(want - 4.04e-5) < 1e-7
    for kind in ("ddpm", "ddim", "ddim_inverse"):
        s = make_scheduler(kind)
        np.testing.assert_allclose(s.betas.double().numpy(), betas, rtol=1e-6, atol=1e-9)
        assert abs(float(s.alphas_cumprod[-1]) / want - 1) < 1e-3


def test_ddim_step_refuses_noise_on_the_way_up():
    """DDIM inversion is deterministic: eta > 0 from t = 10 up to t = 20 is refused; eta = 0 up,
    and eta > 0 down, are allowed."""
    from genrestore.diffusion.schedulers import ddim_step

    s = make_scheduler("ddim", clip_sample=False)
    x = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    out = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    with pytest.raises(InputError, match="eta"):
        ddim_step(s, out, x, 10, 20, eta=0.5, generator=torch.Generator().manual_seed(2))
    a, b = s.alphas_cumprod[10], s.alphas_cumprod[20]
    up = ddim_step(s, out, x, 10, 20)
    torch.testing.assert_close(up, b.sqrt() * (x - (1 - a).sqrt() * out) / a.sqrt() + (1 - b).sqrt() * out)
    assert torch.isfinite(ddim_step(s, out, x, 20, 10, eta=0.5, generator=torch.Generator().manual_seed(2))).all()
