"""Learned inpainters: condition, masks, the diffusion-GAN process against closed forms and diffusers,
training/resume, the one ``Inpainter`` interface, the CLI and the bench method."""

import json
import math

import pytest
import torch

from genrestore._checks import InputError
from genrestore.diffusion import ConditionalUNet, make_scheduler
from genrestore.diffusion.train import train_conditional
from genrestore.restore.diffusion_gan import (
    PatchDiscriminator,
    diffusion_gan_schedule,
    discriminator_loss,
    posterior_sample,
    real_pair,
    train_inpaint_gan,
)
from genrestore.restore.inpaint import Inpainter, composite, inpaint_condition, inpaint_degrade, training_masks

pytest.importorskip("diffusers")

TINY = dict(sample_size=16, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
            down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))


def tiny_generator(num_steps: int | None) -> ConditionalUNet:
    torch.manual_seed(0)
    schedule = diffusion_gan_schedule(num_steps) if num_steps else None
    return ConditionalUNet(3, cond_channels=4, prediction_type="sample", schedule=schedule, unet=TINY)


@pytest.fixture(scope="module")
def photos():
    g = torch.Generator().manual_seed(3)
    return [torch.rand(3, 40, 44, generator=g), torch.rand(3, 36, 36, generator=g)]


def test_schedule_is_the_vp_sde_closed_form():
    # alpha_bar at s_k = eps + (1 - eps) k / T is exp(-b0 s - (b1 - b0) s^2 / 2), relative to s_0
    for T in (1, 2, 4):
        sched = make_scheduler("ddpm", diffusion_gan_schedule(T), "sample")
        s = 1e-3 + (1 - 1e-3) * torch.arange(T + 1, dtype=torch.float64) / T
        log_ab = -0.1 * s - 0.5 * 19.9 * s**2
        expected = torch.exp(log_ab[1:] - log_ab[0])
        torch.testing.assert_close(sched.alphas_cumprod.double(), expected, rtol=1e-5, atol=1e-7)  # float32 betas
    assert make_scheduler("ddpm", diffusion_gan_schedule(1), "sample").alphas_cumprod[0] < 1e-4  # x_0: pure noise
    with pytest.raises(InputError, match="positive int"):
        diffusion_gan_schedule(0)


def test_posterior_sample_equals_diffusers_ddpm_step():
    sched = make_scheduler("ddpm", diffusion_gan_schedule(4), "sample", clip_sample=False)
    sched.set_timesteps(4)
    g = torch.Generator().manual_seed(0)
    x0, x_t = torch.randn(1, 3, 5, 6, generator=g), torch.randn(1, 3, 5, 6, generator=g)
    for t in sched.timesteps:
        ref = sched.step(x0, t, x_t, generator=torch.Generator().manual_seed(7)).prev_sample
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(7))
        ours = posterior_sample(sched.alphas_cumprod, x0, x_t, torch.tensor([int(t)]), noise)
        torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-6)
    # t = 0 returns x0 exactly, whatever the noise
    torch.testing.assert_close(posterior_sample(sched.alphas_cumprod, x0, x_t, torch.tensor([0]), noise), x0)


def test_real_pair_has_the_forward_marginals():
    abar = make_scheduler("ddpm", diffusion_gan_schedule(4), "sample").alphas_cumprod
    n = 200_000
    x0 = torch.full((n, 1, 1, 1), 0.6)
    g = torch.Generator().manual_seed(1)
    for t in range(4):
        tt = torch.full((n,), t)
        prev, x_t = real_pair(abar, x0, tt, torch.randn(x0.shape, generator=g), torch.randn(x0.shape, generator=g))
        ab_prev = 1.0 if t == 0 else float(abar[t - 1])
        ab = float(abar[t])
        # q(x_{t-1} | x0) = N(sqrt(ab_prev) x0, 1 - ab_prev); q(x_t | x0) = N(sqrt(ab) x0, 1 - ab)
        assert abs(prev.mean() - math.sqrt(ab_prev) * 0.6) < 0.01
        assert abs(prev.var() - (1 - ab_prev)) < 0.01
        assert abs(x_t.mean() - math.sqrt(ab) * 0.6) < 0.01
        assert abs(x_t.var() - (1 - ab)) < 0.01


class _LinearD(torch.nn.Module):
    """D(input) = <w, input> per image: its gradient in the input is w, whatever the input."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x, t=None):
        return (x * self.w).flatten(1).sum(1)


@pytest.mark.parametrize("num_steps", [1, 4])
def test_r1_penalises_the_slope_along_x_prev_only(num_steps):
    """DDGAN's R1 is on the real x_{t-1}; x_t and the condition, shared by real and fake pairs, are not
    penalised. A D that reads only x_t and c has no R1 term; one that reads x_{t-1} has gamma/2 ||w||^2."""
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    x_t = torch.randn(2, 3, 4, 4, generator=g) if num_steps > 1 else None
    cond, t = torch.randn(2, 4, 4, 4, generator=g), torch.tensor([0, num_steps - 1])
    in_ch = 3 + 4 + (3 if num_steps > 1 else 0)
    w = torch.randn(1, in_ch, 4, 4, generator=g)
    w_side = w.clone()
    w_side[:, :3] = 0  # reads x_t and c only
    d = _LinearD(w_side)
    torch.testing.assert_close(discriminator_loss(d, real, fake, x_t, cond, t, 10.0),
                               discriminator_loss(d, real, fake, x_t, cond, t, 0.0))
    d = _LinearD(w)
    extra = discriminator_loss(d, real, fake, x_t, cond, t, 10.0) - discriminator_loss(d, real, fake, x_t, cond, t, 0.0)
    torch.testing.assert_close(extra, 5.0 * w[:, :3].square().sum(), rtol=1e-5, atol=1e-5)
    # the non-saturating part: softplus(-D(real)) + softplus(D(fake))
    inp = (lambda p: torch.cat([p, cond] if x_t is None else [p, x_t, cond], 1))  # noqa: E731
    want = (torch.nn.functional.softplus(-(inp(real) * w).flatten(1).sum(1)).mean()
            + torch.nn.functional.softplus((inp(fake) * w).flatten(1).sum(1)).mean())
    torch.testing.assert_close(discriminator_loss(d, real, fake, x_t, cond, t, 0.0), want)


def test_patch_discriminator_sees_70_px_and_time():
    d = PatchDiscriminator(7, num_timesteps=1)
    x = torch.randn(1, 7, 160, 160, requires_grad=True)
    out = d(x)
    assert out.shape == (1, 1, 18, 18)  # H / 8 - 2
    out[0, 0, 9, 9].backward()
    cols = x.grad.abs().sum((0, 1, 2)).nonzero()
    assert int(cols.max() - cols.min()) + 1 == 70
    dt = PatchDiscriminator(10, num_timesteps=4)
    x = torch.randn(2, 10, 32, 32)
    assert not torch.equal(dt(x, torch.tensor([0, 0])), dt(x, torch.tensor([3, 3])))


def test_condition_masks_and_composite():
    y = torch.rand(2, 3, 8, 8)
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., :4] = 1
    c = inpaint_condition(y, mask)
    torch.testing.assert_close(c[:, :3, :, :4], y[..., :4])
    assert torch.all(c[:, :3, :, 4:] == 0.5) and torch.equal(c[:, 3:], mask)
    out = composite(y, mask, torch.zeros_like(y))
    assert torch.equal(out[..., :4], y[..., :4]) and torch.all(out[..., 4:] == 0)
    with pytest.raises(InputError, match="mask of shape"):
        inpaint_condition(y, mask[:1])


def test_training_masks_are_per_image_and_mixed():
    gens = [torch.Generator().manual_seed(i) for i in range(40)]
    masks = training_masks(gens, (32, 48))
    assert masks.shape == (40, 1, 32, 48) and masks.min() >= 0 and masks.max() <= 1
    # image i depends on its own generator only
    again = training_masks([torch.Generator().manual_seed(5)], (32, 48))
    assert torch.equal(again[0], masks[5])
    # boxes are binary with one hole; strokes have antialiased (fractional) edges
    fractional = ((masks > 0) & (masks < 1)).flatten(1).any(1)
    assert 5 < int(fractional.sum()) < 35
    hole = 1 - masks
    assert (hole.flatten(1).sum(1) > 0).float().mean() > 0.7  # most crops have a hole


def test_inpaint_degrade_is_deterministic():
    x = torch.rand(3, 3, 16, 16)
    a = inpaint_degrade(x, [torch.Generator().manual_seed(i) for i in range(3)])
    b = inpaint_degrade(x, [torch.Generator().manual_seed(i) for i in range(3)])
    assert a.shape == (3, 4, 16, 16) and torch.equal(a, b)


@pytest.mark.parametrize("num_steps", [1, 2])
def test_gan_training_resumes_bit_for_bit(photos, tmp_path, num_steps):
    kw = dict(batch_size=2, crop=32, save_every=2, seed=0, disc_width=8)
    full = train_inpaint_gan(tiny_generator(num_steps), photos, 4, out_dir=tmp_path / "a", **kw)
    train_inpaint_gan(tiny_generator(num_steps), photos, 2, out_dir=tmp_path / "b", **kw)
    resumed = train_inpaint_gan(tiny_generator(num_steps), photos, 4, out_dir=tmp_path / "b", **kw)
    for (k, v), w in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(v, w), k
    meta = json.loads((tmp_path / "a" / "model.json").read_text())
    assert meta["inpainter"] == ("gan" if num_steps == 1 else "ddgan") and meta["steps"] == 4
    with pytest.raises(InputError, match="another run"):
        train_inpaint_gan(tiny_generator(num_steps), photos, 4, out_dir=tmp_path / "a", **{**kw, "seed": 1})


def test_gan_training_resumes_only_on_the_same_photos(photos, tmp_path):
    """Another set of the same count and sizes is another run (the GAN trainer has its own run keys)."""
    kw = dict(batch_size=2, crop=32, seed=0, disc_width=8, out_dir=tmp_path)
    train_inpaint_gan(tiny_generator(1), photos, 1, **kw)
    with pytest.raises(InputError, match="other training images"):
        train_inpaint_gan(tiny_generator(1), [p.flip(-2) for p in photos], 2, **kw)


def test_gan_training_refuses_crops_the_discriminator_cannot_score(photos, tmp_path):
    """PatchDiscriminator: four 4x4 convolutions of stride 2, 2, 2, 1 and a last one of stride 1 (padding 1)
    leave side // 8 - 2 logits for sides that are multiples of 8: none below 24 px."""
    from genrestore.restore.diffusion_gan import PatchDiscriminator

    assert PatchDiscriminator.min_side() == 24
    assert PatchDiscriminator(3, 1, 8)(torch.zeros(1, 3, 24, 24)).shape == (1, 1, 1, 1)
    with pytest.raises(RuntimeError):
        PatchDiscriminator(3, 1, 8)(torch.zeros(1, 3, 23, 23))
    with pytest.raises(InputError, match="at least 24 px, got 16"):
        train_inpaint_gan(tiny_generator(1), photos, 1, batch_size=2, crop=16, out_dir=tmp_path / "a", disc_width=8)
    assert not (tmp_path / "a").exists()


def test_gan_training_with_data_workers_equals_without(photos, tmp_path):
    kw = dict(batch_size=2, crop=32, save_every=2, seed=0, disc_width=8)
    ref = train_inpaint_gan(tiny_generator(2), photos, 2, out_dir=tmp_path / "a", **kw).state_dict()
    got = train_inpaint_gan(tiny_generator(2), photos, 2, out_dir=tmp_path / "b", workers=2, **kw).state_dict()
    assert all(torch.equal(got[k], ref[k]) for k in ref)


def test_gan_training_lowers_the_hole_l1(photos, tmp_path):
    """On a flat-coloured photo, 40 steps of the T = 2 generator fill the holes far better than before."""
    gen0 = tiny_generator(2)
    x = torch.tensor([0.8, 0.3, 0.6]).view(1, 3, 1, 1).expand(1, 3, 32, 32).clone()
    gens = [torch.Generator().manual_seed(11)]
    cond = inpaint_degrade(x, gens)
    mask = cond[:, 3:]

    def hole_l1(inp):
        out = inp.inpaint(x, mask, [torch.Generator().manual_seed(0)])
        return float(((out - x).abs() * (1 - mask)).sum() / (1 - mask).sum() / 3)

    before = hole_l1(Inpainter("ddgan", gen0.eval(), 2))
    trained = train_inpaint_gan(tiny_generator(2), [x[0]] * 2, 40, batch_size=4, crop=32, lr_g=2e-3, ema_decay=0.0,
                                out_dir=tmp_path, save_every=100, disc_width=8)
    assert hole_l1(Inpainter("ddgan", trained, 2)) < 0.3 * before


@pytest.mark.parametrize("kind", ["diffusion", "ddgan", "gan"])
def test_inpainter_keeps_known_pixels(photos, tmp_path, kind):
    if kind == "diffusion":
        train_conditional(tiny_generator(None), photos, inpaint_degrade, 1, 2, 32, out_dir=tmp_path,
                          meta={"inpainter": "diffusion"})
    else:
        train_inpaint_gan(tiny_generator(1 if kind == "gan" else 4), photos, 1, batch_size=2, crop=32,
                          out_dir=tmp_path, disc_width=8)
    inp = Inpainter.from_file(tmp_path / "model.safetensors")
    assert inp.kind == kind and inp.default_steps == {"diffusion": 50, "ddgan": 4, "gan": 1}[kind]
    y = torch.rand(2, 3, 13, 19)
    mask = (torch.rand(2, 1, 13, 19) > 0.4).float()
    gens = [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)]
    out = inp.inpaint(y, mask, gens, steps=3 if kind == "diffusion" else None)
    assert out.shape == y.shape
    assert torch.equal(out * mask, y * mask)
    # per-image generators: image 1 alone gives the same result
    alone = inp.inpaint(y[1:], mask[1:], [torch.Generator().manual_seed(1)],
                        steps=3 if kind == "diffusion" else None)
    torch.testing.assert_close(alone, out[1:], atol=1e-5, rtol=0)
    if kind != "diffusion":
        with pytest.raises(InputError, match="always runs"):
            inp.inpaint(y, mask, steps=7)


def test_inpainter_rejects_other_models(tmp_path):
    torch.manual_seed(0)
    net = ConditionalUNet(3, prediction_type="sample", unet=TINY)
    net.save(tmp_path / "idm.safetensors", inpainter="gan")
    with pytest.raises(InputError, match="4-channel condition"):
        Inpainter.from_file(tmp_path / "idm.safetensors")
    tiny_generator(None).save(tmp_path / "plain.safetensors")
    with pytest.raises(InputError, match="'inpainter'"):
        Inpainter.from_file(tmp_path / "plain.safetensors")


def test_train_degrade_restore_cli(tmp_path, capsys):
    from genrestore.cli import main
    from genrestore.io import read_image, write_image

    g = torch.Generator().manual_seed(0)
    for i in range(2):
        write_image(tmp_path / "photos" / f"p{i}.png", torch.rand(1, 3, 40, 40, generator=g))
    write_image(tmp_path / "clean" / "x.png", torch.rand(1, 3, 36, 44, generator=g))
    run = tmp_path / "run"
    assert main(["train", "inpaint", "--kind", "ddgan", "--timesteps", "2", "--data", str(tmp_path / "photos"),
                 "-o", str(run), "--size", "32", "--steps", "2", "--batch-size", "2", "--channels", "8", "16",
                 "--disc-width", "8", "--device", "cpu", "-q"]) == 0
    meta = json.loads((run / "model.json").read_text())
    assert meta["inpainter"] == "ddgan" and "--timesteps 2" in meta["recipe"] and "--ema-decay" in meta["recipe"]
    assert main(["degrade", str(tmp_path / "clean"), "-o", str(tmp_path / "deg"), "--task", "inpaint",
                 "--level", "M", "--seed", "0"]) == 0
    out = tmp_path / "out"
    assert main(["restore", str(tmp_path / "deg"), "-o", str(out), "--method", "inpaint", "--model",  # skips x_mask.png
                 str(run / "model.safetensors"), "--masks", str(tmp_path / "deg"), "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["x.json", "x.png"]
    y, res = read_image(tmp_path / "deg" / "x.png"), read_image(out / "x.png")
    known = read_image(tmp_path / "deg" / "x_mask.png", "gray") == 1  # antialiased edges (< 1) are refilled
    assert res.shape == y.shape and torch.equal(res * known, y * known)
    rec = json.loads((out / "x.json").read_text())
    assert rec["inpainter"] == "ddgan" and rec["steps"] == 2
    capsys.readouterr()
    assert main(["restore", str(tmp_path / "deg" / "x.png"), "-o", str(tmp_path / "o2"), "--method", "inpaint",
                 "--model", str(run / "model.safetensors")]) == 2
    assert "--masks" in capsys.readouterr().err
    assert main(["restore", str(tmp_path / "deg" / "x.png"), "-o", str(tmp_path / "o3"), "--method", "inpaint",
                 "--model", str(run / "model.safetensors"), "--masks", str(tmp_path / "deg"), "--steps", "9"]) == 2
    assert "always runs its 2" in capsys.readouterr().err
    # shards split the images, not their masks: x_mask.png (second in the folder) was shard 1's
    # input, which then had no mask of its own
    for i in (0, 1):
        assert main(["restore", str(tmp_path / "deg"), "-o", str(tmp_path / "sh"), "--method", "inpaint", "--model",
                     str(run / "model.safetensors"), "--masks", str(tmp_path / "deg"), "--shard", f"{i}/2", "-q"]) == 0
    assert (tmp_path / "sh" / "x.png").read_bytes() == (out / "x.png").read_bytes()


def test_bench_inpaint_method_records_network_calls(tmp_path):
    from genrestore.bench.harness import run_suite
    from genrestore.bench.suite import load_suite
    from genrestore.io import write_image

    write_image(tmp_path / "photos" / "p.png", torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(0)))
    train_inpaint_gan(tiny_generator(4), tmp_path / "photos", 1, batch_size=2, crop=32, out_dir=tmp_path / "m",
                      disc_width=8)
    (tmp_path / "s.toml").write_text(
        'name = "t"\nimages = "photos"\ncount = 1\ncrop = 32\ntasks = ["inpaint"]\nlevels = ["M"]\n'
        f'methods = ["degraded", "inpaint:{tmp_path / "m" / "model.safetensors"}"]\nmetrics = ["psnr"]\n')
    run_suite(load_suite(tmp_path / "s.toml"), tmp_path / "out", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [r["nfe"] for r in rows] == [None, 4]
    with pytest.raises(InputError, match="only restores inpainting"):
        (tmp_path / "s.toml").write_text((tmp_path / "s.toml").read_text().replace('"inpaint"]', '"denoise"]'))
        load_suite(tmp_path / "s.toml")


def test_time_limit_stops_with_a_checkpoint_and_the_same_command_continues(tmp_path, capsys):
    from genrestore.cli import main
    from genrestore.io import write_image

    write_image(tmp_path / "photos" / "p.png", torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(0)))
    cmd = ["train", "inpaint", "--kind", "gan", "--data", str(tmp_path / "photos"), "-o", str(tmp_path / "run"),
           "--size", "32", "--steps", "3", "--batch-size", "2", "--channels", "8", "16", "--disc-width", "8",
           "--device", "cpu", "-q"]
    assert main([*cmd, "--time-limit", "0"]) == 0
    assert "stopped at step 1 of 3" in capsys.readouterr().out
    assert not (tmp_path / "run" / "model.safetensors").exists()
    assert main(cmd) == 0
    assert "after 3 steps" in capsys.readouterr().out
    assert json.loads((tmp_path / "run" / "model.json").read_text())["steps"] == 3


def test_fractional_mask_edges_are_refilled_not_kept(tmp_path):
    """A degraded input is x * mask: its antialiased edge pixels must come from the prediction."""
    train_inpaint_gan(tiny_generator(1), [torch.rand(3, 40, 40)], 1, batch_size=2, crop=32, out_dir=tmp_path,
                      disc_width=8)
    inp = Inpainter.from_file(tmp_path / "model.safetensors")
    x = torch.full((1, 3, 16, 16), 0.8)
    mask = torch.ones(1, 1, 16, 16)
    mask[..., 6:10] = 0.0
    mask[..., 5], mask[..., 10] = 0.5, 0.5  # antialiased edges
    y = x * mask
    out = inp.inpaint(y, mask, [torch.Generator().manual_seed(0)])
    pred = inp.inpaint(y, torch.zeros_like(mask) + (mask == 1).float(), [torch.Generator().manual_seed(0)])
    torch.testing.assert_close(out, pred)  # the 0.5 columns are treated as holes
    assert torch.equal(out[..., :5], y[..., :5]) and torch.equal(out[..., 11:], y[..., 11:])


def test_cli_refills_fractional_mask_edges_like_the_library(tmp_path):
    """`restore --method inpaint` reads NAME_mask.png as written (fractional on antialiased edges)
    and hands it to the inpainter, which refills every pixel below 1: an edge pixel of y = x * m
    is attenuated, so keeping it (as a 0.5 threshold on the mask would) leaves a dark rim."""
    from genrestore._random import generator_for
    from genrestore.cli import main
    from genrestore.io import read_image, write_image

    train_inpaint_gan(tiny_generator(1), [torch.rand(3, 40, 40)], 1, batch_size=2, crop=32, out_dir=tmp_path / "m",
                      disc_width=8)
    x = torch.full((1, 3, 16, 16), 0.8)
    mask = torch.ones(1, 1, 16, 16)
    mask[..., 6:10] = 0.0
    mask[..., 5], mask[..., 10] = 0.8, 0.2  # antialiased edges, one above and one below 1/2
    write_image(tmp_path / "deg" / "x.png", x * mask)
    write_image(tmp_path / "deg" / "x_mask.png", mask)
    assert main(["restore", str(tmp_path / "deg" / "x.png"), "-o", str(tmp_path / "out"), "--method", "inpaint",
                 "--model", str(tmp_path / "m" / "model.safetensors"), "--masks", str(tmp_path / "deg"), "-q"]) == 0
    y, m = read_image(tmp_path / "deg" / "x.png"), read_image(tmp_path / "deg" / "x_mask.png", "gray")
    inp = Inpainter.from_file(tmp_path / "m" / "model.safetensors")
    ref = inp.inpaint(y, m, [generator_for(0, "x.png")])
    got = read_image(tmp_path / "out" / "x.png")
    assert (got - ref).abs().max() <= 0.5 / 255 + 1e-6  # the library's result, up to 8-bit rounding
    assert not torch.equal(got[..., 5], y[..., 5])  # the 0.8 column is refilled, not kept at 0.8 x


@pytest.mark.parametrize("case", ["mask size", "damaged mask"])
def test_restore_inpaint_checks_every_mask_before_the_first_image(tmp_path, capsys, case):
    """Only the masks' presence was checked up front: b's mask of another size (or a damaged one)
    failed when the loop reached it, after a.png had been inpainted and written."""
    from genrestore.cli import main
    from genrestore.io import write_image

    tiny_generator(1).save(tmp_path / "gan.safetensors", inpainter="gan")
    g = torch.Generator().manual_seed(0)
    for name in "ab":
        write_image(tmp_path / "in" / f"{name}.png", torch.rand(1, 3, 16, 16, generator=g))
        write_image(tmp_path / "masks" / f"{name}_mask.png", torch.ones(1, 1, 16, 16))
    bad = tmp_path / "masks" / "b_mask.png"
    if case == "mask size":
        write_image(bad, torch.ones(1, 1, 16, 12))
    else:
        bad.write_bytes(bad.read_bytes()[:30])
    out = tmp_path / "out"
    assert main(["restore", str(tmp_path / "in"), "-o", str(out), "--method", "inpaint", "--model",
                 str(tmp_path / "gan.safetensors"), "--masks", str(tmp_path / "masks")]) == 2  # no -q: no bar either
    err = capsys.readouterr().err
    assert err.startswith(f"genrestore: error: {bad}: ") and err.count("\n") == 1, err
    assert not out.exists() or not list(out.iterdir())


def test_condition_and_composite_with_fractional_masks_written_out():
    """``inpaint_condition = concat(m y + (1 - m) / 2, m)`` and ``composite = m y + (1 - m) pred``
    for a fractional mask and a prediction outside [0, 1] (composite does not clamp), by hand."""
    y = torch.tensor([0.2, 0.8, 0.6]).view(1, 3, 1, 1).expand(1, 3, 1, 2).contiguous()
    m = torch.tensor([0.25, 1.0]).view(1, 1, 1, 2)
    c = inpaint_condition(y, m)
    assert c[0, :, 0, 0].tolist() == pytest.approx([0.2 * 0.25 + 0.375, 0.8 * 0.25 + 0.375, 0.6 * 0.25 + 0.375, 0.25])
    assert c[0, :, 0, 1].tolist() == pytest.approx([0.2, 0.8, 0.6, 1.0])
    out = composite(y, m, torch.full_like(y, 2.0))
    assert out[0, :, 0, 0].tolist() == pytest.approx([0.2 * 0.25 + 1.5, 0.8 * 0.25 + 1.5, 0.6 * 0.25 + 1.5])
    assert out[0, :, 0, 1].tolist() == pytest.approx([0.2, 0.8, 0.6])


def test_training_masks_defaults_box_probability_and_stroke_crops(monkeypatch):
    """The documented defaults (128 px canvas, up to 17 strokes, boxes half the time); ``box_prob``
    1 gives only binary boxes and 0 only strokes; strokes number 1..max_strokes (both ends), are
    drawn on a ``max(canvas, H, W)`` square canvas and cut at an offset that reaches every position
    (rows 0..side-H, columns 0..side-W, the two drawn independently). The canvas here is a stand-in whose
    pixel values are their own (row, column), so the cut's corner reads back its offset."""
    import inspect

    from genrestore.restore import inpaint

    d = {k: p.default for k, p in inspect.signature(training_masks).parameters.items()}
    assert (d["canvas"], d["max_strokes"], d["box_prob"]) == (128, 17, 0.5)
    boxes = training_masks([torch.Generator().manual_seed(i) for i in range(10)], (16, 16), box_prob=1.0)
    assert set(boxes.unique().tolist()) <= {0.0, 1.0}
    calls = []

    def canvas_stub(g, n, size, strokes, device=None):
        calls.append((size, strokes))
        r = torch.arange(size[0], dtype=torch.float32).view(-1, 1).expand(size)
        c = torch.arange(size[1], dtype=torch.float32).view(1, -1).expand(size)
        return torch.stack([r * 1000 + c]).view(1, 1, *size), None

    monkeypatch.setattr(inpaint, "random_stroke_mask", canvas_stub)
    out = training_masks([torch.Generator().manual_seed(i) for i in range(300)], (8, 12), canvas=20, max_strokes=2,
                         box_prob=0.0)
    assert len(calls) == 300 and {s for s, _ in calls} == {(20, 20)} and {k for _, k in calls} == {1, 2}
    y0, x0 = (out[:, 0, 0, 0] // 1000).long(), (out[:, 0, 0, 0] % 1000).long()
    assert set(y0.tolist()) == set(range(20 - 8 + 1)) and set(x0.tolist()) == set(range(20 - 12 + 1))
    assert bool((x0 != y0.clamp(max=20 - 12)).any())  # the two offsets are separate draws


def test_inpainter_runs_the_requested_steps_on_the_binarized_condition(monkeypatch):
    """``inpaint(y, mask, steps=3)`` on a diffusion inpainter calls the network 3 times, each on the
    condition of ``y`` and the mask binarized at 1 (fractional edge pixels become holes), in model
    space ``2 c - 1``."""
    net = tiny_generator(None).eval()
    seen = []
    forward = net.forward
    monkeypatch.setattr(net, "forward", lambda x_t, t, y, *a, **k: seen.append(y.clone()) or forward(x_t, t, y, *a, **k))
    y = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(1, 1, 8, 8)
    mask[..., 2:5] = 0.0
    mask[..., 5] = 0.5
    Inpainter("diffusion", net, 50).inpaint(y, mask, [torch.Generator().manual_seed(1)], steps=3)
    hard = (mask == 1).float()
    expected = 2 * torch.cat([y * hard + 0.5 * (1 - hard), hard], 1) - 1
    assert len(seen) == 3
    for cond in seen:
        torch.testing.assert_close(cond, expected)


def test_gan_inpainters_must_predict_x0(tmp_path):
    """A GAN or diffusion-GAN generator outputs the image (``x_0``); a sidecar naming such a kind on
    an eps-predicting network is refused when loaded, not sampled as if it were x0."""
    torch.manual_seed(0)
    ConditionalUNet(3, cond_channels=4, prediction_type="epsilon", unet=TINY).save(tmp_path / "eps.safetensors",
                                                                                    inpainter="gan")
    with pytest.raises(InputError, match="predicts x0"):
        Inpainter.from_file(tmp_path / "eps.safetensors")


def test_restore_inpaint_without_a_model_names_the_shipped_ones(tmp_path, capsys):
    """The refusal named only `genrestore train inpaint`, though three inpainters are shipped."""
    from genrestore.cli import main
    from genrestore.io import write_image

    write_image(tmp_path / "a.png", torch.rand(1, 3, 16, 16))
    assert main(["restore", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--method", "inpaint",
                 "--masks", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "a shipped inpainter (inpaint-diffusion, inpaint-ddgan, inpaint-gan)" in err and err.count("\n") == 1, err
    for name in ("inpaint-gan", "inpaint-ddgan", "inpaint-diffusion"):  # the names it gives restore
        write_image(tmp_path / "m" / "a_mask.png", torch.ones(1, 1, 16, 16))
        assert main(["restore", str(tmp_path / "a.png"), "-o", str(tmp_path / name), "--method", "inpaint",
                     "--model", name, "--masks", str(tmp_path / "m"), "-q"]) == 0


def test_training_condition_is_the_one_the_inpainter_builds():
    """Training conditions are built as inference builds them: ``Inpainter.inpaint`` refills every
    pixel whose mask is below 1 (its condition has mask 0 and mid-grey there), so training must not
    show the network fractional rim pixels ``x m + (1 - m) / 2`` with mask ``m``, which reveal the
    clean pixel that inference never sees."""
    gens = lambda: [torch.Generator().manual_seed(i) for i in range(12)]  # noqa: E731
    x = torch.rand(12, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    soft = training_masks(gens(), (32, 32))
    assert bool(((soft > 0) & (soft < 1)).any())  # strokes with antialiased rims are among them
    hard = (soft == 1).float()
    expected = torch.cat([x * hard + 0.5 * (1 - hard), hard], 1)  # what inpaint() builds for y = x * soft
    cond = inpaint_degrade(x, gens())
    torch.testing.assert_close(cond, expected, atol=0, rtol=0)
    assert set(cond[:, 3:].unique().tolist()) <= {0.0, 1.0}
