"""Robust StyleGAN inversion (seed 003 §4) on a tiny random generator: NGD and the multiresolution
loss against hand-computed values, the three phases end to end, and the Adam baselines."""

from __future__ import annotations

import json

import pytest
import torch

from genrestore._checks import InputError
from genrestore.degrade import get_task
from genrestore.models.stylegan2 import StyleGAN2Generator
from genrestore.restore.stylegan_inversion import (InversionConfig, adam_invert, multiscale_loss, ngd_step,
                                                   perceptual_loss, robust_invert)


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    g = StyleGAN2Generator(z_dim=8, w_dim=8, resolution=32, channel_base=64, channel_max=16, n_mapping_layers=2)
    g.estimate_w_avg(256, generator=torch.Generator().manual_seed(1))
    return g.eval()


def _save_generator(G, path):
    """``G`` as a safetensors file with its JSON config beside it (what --generator reads)."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in G.state_dict().items()}, str(path))
    path.with_suffix(".json").write_text(json.dumps({"config": G.config}))
    return path


def test_ngd_normalizes_each_row_and_skips_zero_gradients():
    p = torch.tensor([[1.0, 1.0], [2.0, 2.0]], requires_grad=True)
    p.grad = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    ngd_step([p], lr=0.5)
    assert torch.allclose(p.detach(), torch.tensor([[1 - 0.3, 1 - 0.4], [2.0, 2.0]]))


def test_multiscale_loss_levels_and_l1():
    """64 px target: distance at 64 and 32 px (16 px stops), then 0.1 x L1 at 16 px."""
    calls = []

    def dist(x, y):
        calls.append(x.shape[-1])
        return torch.ones(x.shape[0])

    x = torch.zeros(2, 3, 64, 64)
    y = torch.full((2, 3, 64, 64), 0.5)
    out = multiscale_loss(x, y, dist)
    assert calls == [64, 32]
    assert torch.allclose(out, torch.full((2,), 2 + 0.1 * 0.5))
    calls.clear()
    multiscale_loss(x[..., :16, :16], y[..., :16, :16], dist)  # an x4 target of a 64 px image: L1 only
    assert calls == []
    with pytest.raises(InputError, match="differ"):
        multiscale_loss(x, y[..., :32, :32], dist)


def test_multiscale_loss_puts_the_same_noise_in_missing_pixels_on_both_sides():
    """Inpainting: f(x) and y are 0 where pixels are missing; both get the same noise there, so a
    difference-based distance sees none of it, while a distance that looks at values does."""
    g = torch.Generator().manual_seed(2)
    mask = torch.ones(1, 1, 40, 40)
    mask[..., :, :20] = 0
    x, y = torch.rand(1, 3, 40, 40, generator=g) * mask, torch.rand(1, 3, 40, 40, generator=g) * mask
    l1 = lambda p, q: (p - q).abs().mean(dim=(1, 2, 3))  # noqa: E731
    with_noise = multiscale_loss(x, y, l1, mask, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(with_noise, multiscale_loss(x, y, l1))
    seen = []
    multiscale_loss(x, y, lambda p, q: seen.append(p[..., :, :18].abs().mean()) or torch.zeros(1), mask,
                    generator=torch.Generator().manual_seed(0))
    assert seen[0] > 0.1  # the holes are no longer black


def test_multiscale_loss_draws_fresh_hole_noise_at_every_level():
    """As the authors' MultiscaleLPIPS: each level gets new (randn + 0.5) / 2 noise (std 0.5) in
    the holes, not the previous level's noise average-pooled (std 0.25)."""
    mask = torch.ones(1, 1, 64, 64)
    mask[..., :, :32] = 0
    x = torch.zeros(1, 3, 64, 64)
    holes = []
    multiscale_loss(x, x.clone(), lambda p, q: holes.append(p[..., :, : p.shape[-1] // 2]) or torch.zeros(1), mask,
                    generator=torch.Generator().manual_seed(0))
    assert len(holes) == 2  # 64 and 32 px; 16 px is the L1 level
    for h in holes:
        assert abs(h.mean().item() - 0.25) < 0.03 and abs(h.std().item() - 0.5) < 0.03


@pytest.mark.parametrize("task", ["denoise", "upsample", "inpaint", "UN"])
def test_robust_inversion_three_phases_reduce_the_loss(G, task):
    torch.manual_seed(3)
    with torch.no_grad():
        truth = G.generate(z=torch.randn(2, 8, generator=torch.Generator().manual_seed(4)))
    t = get_task(task, "M" if task == "UN" else "S")
    y, params = t.degrade_with_params(truth, torch.Generator().manual_seed(5))
    cfg = InversionConfig(step_scale=0.1)  # 15 steps per phase
    res = robust_invert(G, y, t, params, cfg, generator=torch.Generator().manual_seed(6), progress=False)
    assert list(res.images) == ["W", "W+", "W++"] and res.final.shape == truth.shape
    assert [len(v) for v in res.losses.values()] == [15, 15, 15]
    first, last = res.losses["W"][0], res.losses["W++"][-1]
    assert last < first, (first, last)
    assert res.loss.startswith("1-ssim") or res.loss == "lpips-vgg"
    assert [tuple(t.shape) for t in res.latents] == [(2, o, 8) for o in G.filter_counts]  # one w per filter


def test_adam_baselines_run_and_improve(G):
    with torch.no_grad():
        truth = G.generate(z=torch.randn(1, 8, generator=torch.Generator().manual_seed(7)))
    t = get_task("denoise", "M")
    y = t.degrade(truth, torch.Generator().manual_seed(8))
    for space in ("w", "w+"):
        res = adam_invert(G, y, t, space=space, steps=20, generator=torch.Generator().manual_seed(9), progress=False)
        h = list(res.losses.values())[0]
        assert len(h) == 20 and h[-1] < h[0]


def test_inversions_leave_the_generators_gradient_flags_as_they_were():
    g = StyleGAN2Generator(z_dim=8, w_dim=8, resolution=32, channel_base=64, channel_max=16, n_mapping_layers=2)
    g.mapping.requires_grad_(False)  # e.g. a caller training the synthesis network alone
    flags = {k: p.requires_grad for k, p in g.named_parameters()}
    assert any(flags.values()) and not all(flags.values())
    t = get_task("denoise", "M")
    y = t.degrade(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.Generator().manual_seed(1))
    robust_invert(g, y, t, config=InversionConfig(step_scale=0.01), progress=False)
    adam_invert(g, y, t, steps=2, progress=False)
    assert {k: p.requires_grad for k, p in g.named_parameters()} == flags
    assert all(p.grad is None for p in g.parameters())  # frozen while inverting


def test_perceptual_loss_names_its_fallback(monkeypatch, tmp_path):
    monkeypatch.setenv("GENRESTORE_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    fn, name = perceptual_loss("vgg")
    assert name.startswith("1-ssim") and "vgg16-torchvision" in name
    x = torch.rand(2, 3, 24, 24)
    assert torch.allclose(fn(x, x), torch.zeros(2), atol=1e-6)


def test_restore_cli_on_a_tiny_converted_generator(G, tmp_path, capsys):
    from genrestore.cli import main
    from genrestore.io import write_image

    gfile = _save_generator(G, tmp_path / "G.safetensors")
    with torch.no_grad():
        truth = G.generate(z=torch.randn(2, 8, generator=torch.Generator().manual_seed(10)))
    t = get_task("UP", "M")
    y, params = t.degrade_with_params(truth, torch.Generator().manual_seed(11))
    for i in range(2):
        write_image(tmp_path / "in" / f"im{i}.png", y[i:i + 1])
        write_image(tmp_path / "masks" / f"im{i}_mask.png", params["stages"][-1]["mask"][i:i + 1].float())
    args = ["restore", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--method", "stylegan-inversion",
            "--task", "UP", "--generator", str(gfile), "--steps", "0.02", "-q"]
    assert main(args) == 2 and "--masks" in capsys.readouterr().err
    assert main(args + ["--masks", str(tmp_path / "masks")]) == 0
    rec = json.loads((tmp_path / "out" / "im0.json").read_text())
    assert rec["steps"] == [3, 3, 3] and rec["task"] == "UP"
    assert (tmp_path / "out" / "im1.png").is_file()


def test_restore_and_convert_bad_input_exit_2(G, tmp_path, capsys):
    from genrestore.cli import main
    from genrestore.io import write_image

    gfile = _save_generator(G, tmp_path / "G.safetensors")
    write_image(tmp_path / "x.png", torch.rand(1, 3, 32, 32))
    (tmp_path / "bad.pkl").write_bytes(b"\x80\x04garbage")
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    (tmp_path / "bad.json").write_text("{not json")
    cases = [
        ["restore", str(tmp_path / "x.png"), "-o", str(tmp_path / "o"), "--method", "stylegan-inversion", "--task",
         "denoise", "--generator", str(gfile), "--steps", "0"],
        ["restore", str(tmp_path / "x.png"), "-o", str(tmp_path / "o"), "--method", "stylegan-inversion", "--task",
         "denoise", "--generator", str(tmp_path / "bad.safetensors")],
        ["restore", str(tmp_path / "x.png"), "-o", str(tmp_path / "o"), "--method", "idm", "--model",
         str(tmp_path / "bad.safetensors")],
        ["weights", "convert", str(tmp_path / "bad.pkl"), str(tmp_path / "out.safetensors")],
        ["train", "idm", "--data", str(tmp_path), "-o", str(tmp_path / "r"), "--size", "10", "--channels", "8", "8",
         "8", "--steps", "1"],
    ]
    for args in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("genrestore: error:") and len(err.splitlines()) == 1, err


def test_restore_cli_inverts_the_mask_as_written_not_thresholded(G, tmp_path, monkeypatch):
    """Paper §5.1, inpainting: f_hat = f, the known mask. The true degradation is y = x * m with
    antialiased (fractional) stroke edges, which `genrestore degrade` writes as NAME_mask.png;
    the CLI must hand that m to the inversion (as the library and the bench do), not m > 1/2."""
    from genrestore.cli import main
    from genrestore.io import write_image
    from genrestore.restore import stylegan_inversion as inv

    gfile = _save_generator(G, tmp_path / "G.safetensors")
    with torch.no_grad():
        truth = G.generate(z=torch.randn(1, 8, generator=torch.Generator().manual_seed(12)))
    t = get_task("inpaint", "L")
    y, params = t.degrade_with_params(truth, torch.Generator().manual_seed(13))
    m = params["mask"]
    assert ((m > 0.05) & (m < 0.95)).any()  # antialiased edges exist
    write_image(tmp_path / "in" / "im0.png", y)
    write_image(tmp_path / "masks" / "im0_mask.png", m.float())
    seen = {}

    def fake_invert(G_, y_, task, params_, *a, **k):
        seen["mask"] = params_["mask"].cpu()
        return inv.InversionResult({"W++": y_.clone()}, None, {"W++": [0.0]}, "1-ssim")

    monkeypatch.setattr(inv, "robust_invert", fake_invert)
    assert main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--method", "stylegan-inversion",
                 "--task", "inpaint", "--level", "L", "--generator", str(gfile), "--masks", str(tmp_path / "masks"),
                 "-q"]) == 0
    assert (seen["mask"] - m).abs().max().item() <= 0.5 / 255 + 1e-6  # 8-bit PNG rounding only
    # as `genrestore degrade` writes them, the mask beside its image in one folder: it is the
    # image's mask, not an input (it was refused as an image without a mask), in any shard
    write_image(tmp_path / "deg" / "im0.png", y)
    write_image(tmp_path / "deg" / "im0_mask.png", m.float())
    for i in (0, 1):
        seen.clear()
        assert main(["restore", str(tmp_path / "deg"), "-o", str(tmp_path / "out2"), "--method", "stylegan-inversion",
                     "--task", "inpaint", "--level", "L", "--generator", str(gfile), "--masks", str(tmp_path / "deg"),
                     "--shard", f"{i}/2", "-q"]) == 0
        assert bool(seen) == (i == 0)
    assert sorted(p.name for p in (tmp_path / "out2").iterdir()) == ["im0.json", "im0.png"]


@pytest.mark.parametrize("task", ["inpaint", "denoise"])
def test_robust_inversion_with_per_image_generators_is_batch_independent(G, task):
    """With one generator per image, an image's restoration does not depend on its batch-mates:
    the inpainting hole noise used to be drawn for the whole batch from one generator."""
    with torch.no_grad():
        truth = G.generate(z=torch.randn(2, 8, generator=torch.Generator().manual_seed(4)))
    t = get_task(task, "M")
    gens = lambda k: [torch.Generator().manual_seed(k), torch.Generator().manual_seed(k + 1)]  # noqa: E731
    y, params = t.degrade_with_params(truth, gens(10))
    cfg = InversionConfig(step_scale=0.02)  # 3 steps per phase
    both = robust_invert(G, y, t, params, cfg, generator=gens(20), progress=False).final
    one_params = {k: v[1:] for k, v in params.items()} if isinstance(params, dict) else params
    one = robust_invert(G, y[1:], t, one_params, cfg, generator=gens(20)[1:], progress=False).final
    # float32 convolutions of a batch of 1 and of 2 round differently (~1e-5 after 9 steps); a
    # draw shared with the batch-mate would differ by the noise itself (~0.1)
    torch.testing.assert_close(one, both[1:], atol=1e-4, rtol=0)


@pytest.mark.parametrize("case", ["aspect", "mask size", "no mask", "damaged mask"])
def test_restore_cli_checks_every_image_and_mask_before_the_first_inversion(G, tmp_path, capsys, monkeypatch, case):
    """b.png's aspect and mask were checked only when the loop reached it, after a.png had been
    inverted and written; every image (and with inpainting, its mask) is now checked first."""
    from genrestore.cli import main
    from genrestore.io import write_image
    from genrestore.restore import stylegan_inversion as inv

    def fake_invert(G_, y_, task, params_, *a, **k):
        return inv.InversionResult({"W++": y_.clone()}, None, {"W++": [0.0]}, "1-ssim")

    monkeypatch.setattr(inv, "robust_invert", fake_invert)
    gfile = _save_generator(G, tmp_path / "G.safetensors")
    g = torch.Generator().manual_seed(0)
    b_hw = (32, 16) if case == "aspect" else (32, 32)
    for name, hw in (("a", (32, 32)), ("b", b_hw)):
        write_image(tmp_path / "in" / f"{name}.png", torch.rand(1, 3, *hw, generator=g))
        write_image(tmp_path / "masks" / f"{name}_mask.png", torch.ones(1, 1, *hw))
    bad_mask = tmp_path / "masks" / "b_mask.png"
    if case == "mask size":
        write_image(bad_mask, torch.ones(1, 1, 16, 16))
    elif case == "no mask":
        bad_mask.unlink()
    elif case == "damaged mask":
        bad_mask.write_bytes(bad_mask.read_bytes()[:30])
    out = tmp_path / "out"
    assert main(["restore", str(tmp_path / "in"), "-o", str(out), "--method", "stylegan-inversion", "--task",
                 "inpaint", "--generator", str(gfile), "--masks", str(tmp_path / "masks"), "-q"]) == 2
    err = capsys.readouterr().err
    named = tmp_path / "in" / "b.png" if case in ("aspect", "no mask") else bad_mask
    assert err.startswith(f"genrestore: error: {named}: ") and err.count("\n") == 1, err
    assert not out.exists() or not list(out.iterdir())


class _LinearG:
    """A stand-in with robust_invert's generator interface whose image is affine in the latents:
    every pixel is ``0.5 + 0.01 sum_rows <row, a>`` over the per-filter style rows (2 layers of 3
    and 2 filters), so a loss that falls with the image's value has the gradient ``-a`` on every
    latent row, and NGD moves each row by exactly ``lr`` along ``a / |a|`` per step."""

    num_ws, filter_counts, resolution = 2, (3, 2), 32
    a = torch.tensor([1.0, 2.0])

    def __init__(self):
        self.mapping = torch.nn.Module()
        self.mapping.w_avg = torch.tensor([0.1, -0.2])

    def parameters(self):
        return iter(())

    def requires_grad_(self, flag):
        return self

    def wplus_to_wpp(self, ws):
        return [ws[:, i].unsqueeze(1).repeat(1, o, 1) for i, o in enumerate(self.filter_counts)]

    def styles_from_wpp(self, wpp):
        return list(wpp)

    def styles_from_wplus(self, ws):
        return [ws[:, i].unsqueeze(1).expand(-1, o, -1) for i, o in enumerate(self.filter_counts)]

    def styles_from_w(self, w):
        return self.styles_from_wplus(w.unsqueeze(1).expand(-1, self.num_ws, -1))

    def synthesis_from_styles(self, styles):
        v = 0.5 + 0.01 * sum((s @ self.a).sum(1) for s in styles)
        return v.view(-1, 1, 1, 1).expand(-1, 3, 32, 32)


class _Identity:
    @staticmethod
    def surrogate(img, params, generator):
        return img


def test_phases_step_each_latent_row_by_their_own_learning_rate_from_the_previous_phase():
    """Alg. 1 on an affine stand-in generator (value ``v = 0.5 + 0.05 <w, a>`` while all rows are
    equal), target 1 everywhere, distance ``mean(y - x)``: NGD moves every latent row by ``lr``
    along ``a / |a|`` per step, so after phases of (3, 5, 7) steps at (0.08, 0.02, 0.005) the rows
    are ``w_avg + (3 x 0.08 [+ 5 x 0.02 [+ 7 x 0.005]]) a / |a|``, each phase starting where the
    last ended. The loss history is eq. 9 per image, averaged over the batch:
    ``(1 - v) + l1_weight (1 - v)`` (32 px: one distance level, then L1 at 16 px)."""
    G = _LinearG()
    y = torch.ones(2, 3, 32, 32)
    cfg = InversionConfig(steps=(3, 5, 7), l1_weight=0.5)
    dist = (lambda x, t: (t - x).mean(dim=(1, 2, 3)), "mean")
    res = robust_invert(G, y, _Identity(), config=cfg, distance=dist, progress=False)
    unit, norm_a = G.a / G.a.norm(), float(G.a.norm())
    moved = {"W": 3 * 0.08, "W+": 3 * 0.08 + 5 * 0.02, "W++": 3 * 0.08 + 5 * 0.02 + 7 * 0.005}
    value = lambda d: 0.5 + 0.05 * (float(G.mapping.w_avg @ G.a) + d * norm_a)  # noqa: E731
    for phase, d in moved.items():
        torch.testing.assert_close(res.images[phase], torch.full((2, 3, 32, 32), value(d)), rtol=0, atol=1e-6)
    assert res.final is res.images["W++"]
    expected_rows = G.mapping.w_avg + moved["W++"] * unit
    for t, o in zip(res.latents, G.filter_counts):
        torch.testing.assert_close(t, expected_rows.expand(2, o, 2), rtol=0, atol=1e-6)
    assert [len(h) for h in res.losses.values()] == [3, 5, 7]
    v0 = value(0.0)
    assert res.losses["W"][0] == pytest.approx(1.5 * (1 - v0), abs=1e-6)
    assert res.losses["W+"][0] == pytest.approx(1.5 * (1 - value(moved["W"])), abs=1e-6)


def test_adam_baseline_scales_its_steps():
    """``step_scale`` multiplies the baselines' step count too (20 x 0.1 = 2 steps)."""
    res = adam_invert(_LinearG(), torch.ones(1, 3, 32, 32), _Identity(), steps=20,
                      config=InversionConfig(step_scale=0.1), distance=(lambda x, t: (t - x).mean(dim=(1, 2, 3)), "m"),
                      progress=False)
    assert [len(h) for h in res.losses.values()] == [2]


def test_inversion_config_is_alg_1():
    """Alg. 1's constants (the module docstring; the paper: 450 steps in all, the multiresolution
    loss down to 16 px, 0.1 x L1); ``step_scale`` rounds to the nearest step (150 x 0.105 =
    15.75: 16 steps, not 15) and never gives 0 steps."""
    cfg = InversionConfig()
    assert cfg.steps == (150, 150, 150) and sum(cfg.steps) == 450
    assert cfg.lrs == (0.08, 0.02, 0.005)
    assert (cfg.min_loss_res, cfg.levels, cfg.l1_weight) == (16, 6, 0.1)
    assert InversionConfig(step_scale=0.105).phase_steps() == [16, 16, 16]
    assert InversionConfig(step_scale=1e-4).phase_steps() == [1, 1, 1]


def test_multiscale_loss_stops_on_the_shorter_side_and_takes_l1_at_the_last_level():
    """Levels continue while both sides exceed 16 px (a 64 x 16 target is L1 only); the L1 term
    is between the images average-pooled to the last level (here 64 -> 32 -> 16 px, 2 x 2 block
    means written out with reshape), not at full resolution."""
    calls = []
    dist = lambda p, q: calls.append(tuple(p.shape[-2:])) or torch.zeros(p.shape[0])  # noqa: E731
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    multiscale_loss(x[..., :16, :], y[..., :16, :], dist)
    assert calls == []

    def pool4(t):  # 64 -> 16 px: two 2 x 2 average poolings = one 4 x 4 block mean
        return t.reshape(2, 3, 16, 4, 16, 4).mean(dim=(3, 5))

    out = multiscale_loss(x, y, dist)
    assert calls == [(64, 64), (32, 32)]
    torch.testing.assert_close(out, 0.1 * (pool4(x) - pool4(y)).abs().mean(dim=(1, 2, 3)))


def test_multiscale_loss_hole_noise_is_weighted_by_the_pooled_missing_fraction():
    """Inpainting noise at level ``k`` is ``(randn + 0.5) / 2 * (1 - m_k)`` on both sides, with
    ``m_k`` the mask average-pooled ``k`` times: a fractional mask pixel gets a fraction of the
    noise, and the pooled mask is a block mean (not a max). Reference: the same draws from the same
    seed, written out with reshape means."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(1, 3, 64, 64, generator=g), torch.rand(1, 3, 64, 64, generator=g)
    mask = torch.rand(1, 1, 64, 64, generator=g)  # fractional everywhere
    seen = []
    multiscale_loss(x, y, lambda p, q: seen.append((p, q)) or torch.zeros(1), mask,
                    generator=torch.Generator().manual_seed(7))
    ref = torch.Generator().manual_seed(7)
    m, xs, ys = mask, x, y
    for p, q in seen:
        noise = (torch.randn(xs.shape, generator=ref) + 0.5) / 2 * (1 - m)
        torch.testing.assert_close(p, xs + noise)
        torch.testing.assert_close(q, ys + noise)
        pool = lambda t: t.reshape(*t.shape[:2], t.shape[2] // 2, 2, t.shape[3] // 2, 2).mean(dim=(3, 5))  # noqa: E731
        m, xs, ys = pool(m), pool(xs), pool(ys)
    assert len(seen) == 2


def test_composition_inverts_with_its_inpainting_stages_mask():
    """A composition's parameters hold the inpainting mask in one of their ``stages``; the loss
    of the inversion must get it (noise in the holes), as for the inpainting task alone."""
    from genrestore.degrade.tasks import inpainting_mask

    m, target = torch.ones(1, 1, 4, 4), torch.zeros(1, 3, 4, 4)
    assert inpainting_mask(get_task("NP", "M"), {"stages": [{"sigma": 1}, {"mask": m}]}, target) is m
    assert inpainting_mask(get_task("inpaint", "M"), {"mask": m}, target) is m
    assert inpainting_mask(get_task("UN", "M"), {"stages": [{}, {}]}, target) is None
    assert inpainting_mask(get_task("denoise", "M"), {}, target) is None


def test_generator_size_refuses_another_aspect():
    """Only a square image is a resize of a square generator's output (32 x 30 is refused)."""
    from genrestore.restore.stylegan_inversion import check_generator_size

    assert check_generator_size(_LinearG(), (64, 64)) == (32, 32)
    with pytest.raises(InputError, match="aspect"):
        check_generator_size(_LinearG(), (32, 30))


def test_ssim_fallback_is_l1_below_the_ssim_window(monkeypatch, tmp_path):
    """Without the LPIPS backbone the distance is ``1 - SSIM``, whose 11 px Gaussian window does
    not fit images under 11 px: there (8 and 10 px) it is the mean absolute difference."""
    monkeypatch.setenv("GENRESTORE_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    fn, name = perceptual_loss("vgg")
    assert name.startswith("1-ssim")
    g = torch.Generator().manual_seed(3)
    for side in (8, 10):
        x, y = torch.rand(2, 3, side, side, generator=g), torch.rand(2, 3, side, side, generator=g)
        torch.testing.assert_close(fn(x, y), (x - y).abs().mean(dim=(1, 2, 3)))


def test_inversion_writes_grey_as_grey_keeps_alpha_and_16_bits(G, tmp_path, monkeypatch):
    """As the other restorers: a grey input gives the luma of the RGB result, an RGBA one keeps its
    alpha, a 16-bit one gives a 16-bit PNG (it wrote 8-bit RGB for all). The inversion is replaced
    by one that returns its input, so the output is the input in its own channels."""
    import cv2

    from genrestore.cli import main
    from genrestore.io import read_image, write_image
    from genrestore.restore import stylegan_inversion as inv

    gfile = _save_generator(G, tmp_path / "G.safetensors")
    side = G.resolution
    monkeypatch.setattr(inv, "robust_invert", lambda G_, y_, *a, **k: inv.InversionResult(
        {"W++": y_.clone()}, None, {"W++": [0.0]}, "1-ssim"))
    g = torch.Generator().manual_seed(14)
    grey, rgba = torch.rand(1, 1, side, side, generator=g), torch.rand(1, 4, side, side, generator=g)
    write_image(tmp_path / "in" / "g.png", grey, bits=16)
    write_image(tmp_path / "in" / "a.png", rgba)
    assert main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--method", "stylegan-inversion",
                 "--task", "denoise", "--level", "M", "--generator", str(gfile), "-q"]) == 0
    g_out = cv2.imread(str(tmp_path / "out" / "g.png"), cv2.IMREAD_UNCHANGED)
    assert g_out.dtype.name == "uint16" and g_out.ndim == 2
    assert (read_image(tmp_path / "out" / "g.png") - read_image(tmp_path / "in" / "g.png")).abs().max() <= 1e-4
    assert torch.equal(read_image(tmp_path / "out" / "a.png"), read_image(tmp_path / "in" / "a.png"))


@pytest.mark.parametrize("name, level", [("inpaint", "XL"), ("NP", "M")])
def test_hole_noise_also_when_the_inpainting_params_hold_only_the_stroke_endpoints(name, level):
    # the inpainting surrogate accepts params with only the endpoints (it draws the mask from them);
    # the loss must then put the paper's hole noise (§5.1) in the same pixels as with the mask
    from genrestore.restore.stylegan_inversion import _image_loss

    task = get_task(name, level)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y, params = task.degrade_with_params(x, torch.Generator().manual_seed(1))
    if "stages" in params:
        ends_only = {"stages": [*params["stages"][:-1], {"endpoints": params["stages"][-1]["endpoints"]}]}
    else:
        ends_only = {"endpoints": params["endpoints"]}
    seen = []

    def record(a, b):
        seen.append(a.detach().clone())
        return (a - b).abs().mean(dim=(1, 2, 3))

    img = torch.zeros(2, 3, 32, 32)
    losses = [_image_loss(task, p, y, record, InversionConfig(), torch.Generator().manual_seed(2))(img)
              for p in (params, ends_only)]
    full, ends = seen[: len(seen) // 2], seen[len(seen) // 2:]
    assert full[0].abs().max() > 0.5  # the black prediction got noise in its holes
    for a, b in zip(full, ends):
        assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(losses[0], losses[1], atol=1e-6)
