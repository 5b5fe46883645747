"""IDM restorer: padding to the UNet's multiple, tiling with full-size noise (no seams), loading.

Networks are tiny UNets built here (8/16 channels); nothing is downloaded.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("diffusers")

from genrestore._checks import InputError  # noqa: E402
from genrestore._random import generator_for  # noqa: E402
from genrestore.diffusion import ConditionalUNet  # noqa: E402
from genrestore.restore.idm import IDMRestorer, pad_to_multiple, size_multiple  # noqa: E402

# three resolutions: sides must be multiples of 4
TINY_UNET = dict(sample_size=16, block_out_channels=(8, 8, 16), layers_per_block=1, norm_num_groups=4,
                 down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3)


def tiny_net(seed: int = 0) -> ConditionalUNet:
    torch.manual_seed(seed)  # test-only: weight init
    return ConditionalUNet(3, prediction_type="sample", unet=TINY_UNET).eval()


class LocalDenoiser(ConditionalUNet):
    """An x0-predictor with a 1-pixel receptive field that depends on x_t (so on the noise).

    Tiling it with ``tile_pad >= 1`` must reproduce the untiled restoration exactly, but only if
    every tile sees the same ``x_t``: independent noise per tile would leave seams.
    """

    def forward(self, x_t, t, y, class_labels=None):
        return y + 0.5 * F.avg_pool2d(x_t, 3, stride=1, padding=1, count_include_pad=False)


def local_denoiser() -> LocalDenoiser:
    return LocalDenoiser(3, prediction_type="sample", unet=TINY_UNET).eval()


def test_size_multiple():
    assert size_multiple(tiny_net()) == 4


@pytest.mark.parametrize("hw", [(1, 1), (3, 2), (5, 7), (13, 6), (16, 16)])
def test_odd_sizes_are_padded_and_cropped_back(hw):
    y = torch.rand(2, 3, *hw)
    out = IDMRestorer(tiny_net()).restore(y, steps=2, generator=[generator_for(0, "a"), generator_for(0, "b")])
    assert out.shape == y.shape and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1


def test_padding_is_reflect_then_crop():
    y = torch.rand(1, 3, 5, 7)
    r = IDMRestorer(tiny_net())
    out = r.restore(y, steps=2, generator=generator_for(0, "x"))
    padded = F.pad(y, (0, 1, 0, 3), mode="reflect")
    ref = r.restore(padded, steps=2, generator=generator_for(0, "x"))[..., :5, :7]
    torch.testing.assert_close(out, ref, atol=0, rtol=0)
    assert pad_to_multiple(y, 4)[0].shape[-2:] == (8, 8)


@pytest.mark.parametrize("constant", [True, False])
def test_tiled_equals_untiled_for_a_local_denoiser(constant):
    """The seam test: tiles share x_t, so a local network gives the untiled image, no seams."""
    y = torch.full((1, 3, 40, 52), 0.4) if constant else torch.rand(1, 3, 40, 52)
    r = IDMRestorer(local_denoiser())
    full = r.restore(y, steps=3, generator=generator_for(1, "img"))
    tiled = r.restore(y, steps=3, generator=generator_for(1, "img"), tile=16, tile_pad=2, tile_blend=4)
    assert (tiled - full).abs().max() < 1 / 255 / 100
    # non-trivial: the output does depend on the noise by far more than the tolerance
    other = r.restore(y, steps=3, generator=generator_for(2, "img"))
    assert (other - full).abs().max() > 10 / 255


def test_tiled_unet_is_deterministic_and_batch_independent():
    r = IDMRestorer(tiny_net())
    y = torch.rand(2, 3, 36, 28)
    gens = lambda: [generator_for(0, "a"), generator_for(0, "b")]  # noqa: E731
    a = r.restore(y, steps=2, generator=gens(), tile=16, tile_pad=2, tile_blend=4)
    b = r.restore(y, steps=2, generator=gens(), tile=16, tile_pad=2, tile_blend=4)
    one = r.restore(y[1:], steps=2, generator=[generator_for(0, "b")], tile=16, tile_pad=2, tile_blend=4)
    assert a.shape == y.shape and torch.equal(a, b)
    torch.testing.assert_close(one, a[1:], atol=1e-5, rtol=1e-5)


def test_bad_arguments():
    r = IDMRestorer(tiny_net())
    with pytest.raises(InputError, match="multiple of 4"):
        r.restore(torch.rand(1, 3, 8, 8), tile=18, tile_pad=2, tile_blend=4)
    with pytest.raises(InputError, match="steps"):
        r.restore(torch.rand(1, 3, 8, 8), steps=0)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        r.restore(torch.rand(1, 3, 8, 8) * 2)


def test_from_file_round_trip(tmp_path):
    net = tiny_net(3)
    net.save(tmp_path / "idm.safetensors", recipe="test")
    r = IDMRestorer.from_file(tmp_path / "idm.safetensors")
    y = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(r.restore(y, steps=2, generator=generator_for(0, "y")),
                               IDMRestorer(net).restore(y, steps=2, generator=generator_for(0, "y")),
                               atol=0, rtol=0)


def test_train_idm_then_restore_cli(tmp_path, capsys):
    import json

    from genrestore.cli import main
    from genrestore.io import read_image, write_image

    g = torch.Generator().manual_seed(0)
    for i in range(2):
        write_image(tmp_path / "photos" / f"p{i}.png", torch.rand(1, 3, 24, 24, generator=g))
    write_image(tmp_path / "in" / "x.png", torch.rand(1, 3, 20, 18, generator=g))
    run = tmp_path / "run"
    assert main(["train", "idm", "--data", str(tmp_path / "photos"), "-o", str(run), "--size", "16", "--steps", "2",
                 "--batch-size", "1", "--channels", "8", "16", "--save-every", "1", "--device", "cpu"]) == 0
    assert json.loads((run / "model.json").read_text())["steps"] == 2
    out = tmp_path / "out"
    assert main(["restore", str(tmp_path / "in"), "-o", str(out), "--method", "idm", "--model",
                 str(run / "model.safetensors"), "--steps", "2", "-q"]) == 0
    assert read_image(out / "x.png").shape == (1, 3, 20, 18)
    assert json.loads((out / "x.json").read_text())["steps"] == 2
    capsys.readouterr()
    assert main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "o2"), "--model", "no-such-weight"]) == 2
    assert "no-such-weight" in capsys.readouterr().err
    assert main(["restore", "-o", str(tmp_path / "o3")]) == 2
    assert "--example" in capsys.readouterr().err


def test_ddim_sampler_is_diffusion_sample_on_the_padded_image():
    """restore(sampler="ddim", eta) is genrestore.diffusion.sample's DDIM (tested against
    diffusers) on the image padded to the UNet's multiple, cropped back; eta reaches it, and eta
    without DDIM is refused."""
    from genrestore.diffusion.sampling import sample

    net, y = tiny_net(), torch.rand(2, 3, 7, 9, generator=torch.Generator().manual_seed(1))
    restorer = IDMRestorer(net)

    def gens():
        return [torch.Generator().manual_seed(s) for s in (3, 4)]

    for eta in (0.0, 0.7):
        got = restorer.restore(y, 3, gens(), sampler="ddim", eta=eta)
        with torch.no_grad():
            ref = sample(net, pad_to_multiple(y, 4)[0], "ddim", 3, eta=eta, generator=gens())[..., :7, :9]
        torch.testing.assert_close(got, ref, atol=0, rtol=0)
    assert not torch.equal(restorer.restore(y, 3, gens(), sampler="ddim", eta=0.7),
                           restorer.restore(y, 3, gens(), sampler="ddim"))
    assert not torch.equal(restorer.restore(y, 3, gens(), sampler="ddim"), restorer.restore(y, 3, gens()))
    with pytest.raises(InputError, match="eta applies to the 'ddim' scheduler only"):
        restorer.restore(y, 3, sampler="ddpm", eta=0.5)
    with pytest.raises(InputError, match="scheduler 'ddpm' or 'ddim'"):
        restorer.restore(y, 3, sampler="euler")


def test_regression_baseline_is_one_l1_step(tmp_path):
    """`train idm --regression`: a T = 1 model whose x_1 is pure noise, trained with L1; the
    restorer takes its one step whatever --steps says, and returns the network's x0 directly."""
    import json

    from genrestore.cli import main
    from genrestore.diffusion.sampling import training_loss
    from genrestore.io import write_image
    from genrestore.restore.idm import REGRESSION_SCHEDULE

    g = torch.Generator().manual_seed(0)
    for i in range(2):
        write_image(tmp_path / "photos" / f"p{i}.png", torch.rand(1, 3, 24, 24, generator=g))
    run = tmp_path / "run"
    assert main(["train", "idm", "--regression", "--data", str(tmp_path / "photos"), "-o", str(run), "--size", "16",
                 "--steps", "2", "--batch-size", "2", "--channels", "8", "16", "--device", "cpu"]) == 0
    meta = json.loads((run / "model.json").read_text())
    assert meta["restorer"] == "regression" and meta["config"]["schedule"]["trained_betas"] == [1.0]
    r = IDMRestorer.from_file(run / "model.safetensors")
    y = torch.rand(1, 3, 16, 16, generator=g)
    out = r.restore(y, steps=10, generator=torch.Generator().manual_seed(3))
    noise = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        direct = r.model(noise, torch.zeros(1, dtype=torch.long), y * 2 - 1)
    torch.testing.assert_close(out, ((direct.clamp(-1, 1) + 1) / 2), atol=1e-6, rtol=0)
    ddim = r.restore(y, steps=10, generator=torch.Generator().manual_seed(3), sampler="ddim", eta=0.5)
    torch.testing.assert_close(ddim, out, atol=1e-6, rtol=0)  # DDIM's one step to alpha_bar = 1 is the x0 too
    # the L1 loss on the one-step schedule is |f(noise, 0, y) - x0|: the regression loss
    net = ConditionalUNet(3, prediction_type="sample", schedule=REGRESSION_SCHEDULE, unet=TINY_UNET)
    x0, yy = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1, torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    loss = training_loss(net, x0, yy, generator=torch.Generator().manual_seed(5), loss="l1")
    from genrestore._random import randint, randn

    gen = torch.Generator().manual_seed(5)
    t, n = randint(gen, 2, 0, 1), randn(gen, x0.shape)  # the loss's own draws, in its order
    with torch.no_grad():
        ref = (net(n, t, yy) - x0).abs().mean()
    torch.testing.assert_close(loss.detach(), ref, atol=1e-6, rtol=0)


def test_extrinsic_iteration_and_authenticity_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GENRESTORE_WEIGHTS", str(tmp_path / "store"))  # an empty user store: LPIPS absent
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    import json

    from genrestore.cli import main
    from genrestore.io import read_image, write_image
    from genrestore.restore.idm import IDMRestorer, authenticity

    g = torch.Generator().manual_seed(1)
    for i in range(2):
        write_image(tmp_path / "photos" / f"p{i}.png", torch.rand(1, 3, 24, 24, generator=g))
    base = ["--data", str(tmp_path / "photos"), "--size", "16", "--steps", "1", "--batch-size", "1", "--channels", "8",
            "16", "--device", "cpu"]
    assert main(["train", "idm", "-o", str(tmp_path / "k0"), *base]) == 0
    k0 = tmp_path / "k0" / "model.safetensors"
    assert main(["train", "idm", "-o", str(tmp_path / "k1"), *base, "--extrinsic-from", str(k0),
                 "--extrinsic-steps", "2"]) == 0
    restored = read_image(tmp_path / "k1" / "extrinsic_data" / "p0.png")
    from genrestore._random import generator_for

    expected = IDMRestorer.from_file(k0).restore(read_image(tmp_path / "photos" / "p0.png"), 2,
                                                 generator_for(0, "p0.png"))
    assert (restored - expected).abs().max() <= 0.5 / 255 + 1e-6  # eq. 10 data, written as 8-bit PNG
    recipe = json.loads((tmp_path / "k1" / "model.json").read_text())["recipe"]
    assert "--extrinsic-from" in recipe and "--ema-decay 0.999" in recipe
    assert "--extrinsic-steps 2 --extrinsic-tile 256" in recipe  # what restored the data is part of the recipe
    # the cached restorations are reused only with the same model and settings
    capsys.readouterr()
    assert main(["train", "idm", "-o", str(tmp_path / "k1"), *base, "--extrinsic-from", str(k0),
                 "--extrinsic-steps", "3"]) == 2
    assert "'steps': (2, 3)" in capsys.readouterr().err
    assert main(["train", "idm", "-o", str(tmp_path / "k1"), *base, "--extrinsic-from",
                 str(tmp_path / "k1" / "model.safetensors"), "--extrinsic-steps", "2"]) == 2
    assert "model_sha256" in capsys.readouterr().err
    assert main(["train", "idm", "-o", str(tmp_path / "k1"), *base, "--extrinsic-from", str(k0),
                 "--extrinsic-steps", "2", "-q"]) == 0  # the same run resumes (already at its step)
    assert capsys.readouterr().err == ""  # -q: no progress bars, the extrinsic one included
    assert main(["metrics", str(tmp_path / "k1" / "extrinsic_data"), "--authenticity", str(k0), "--steps", "2",
                 "--json", "-q"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["summary"]
    from genrestore._random import generator_for

    expected_psnr = [float(authenticity(IDMRestorer.from_file(k0),
                                        read_image(tmp_path / "k1" / "extrinsic_data" / f"p{i}.png"), 2,
                                        generator_for(0, f"p{i}.png"), 256, 16)["psnr"][0]) for i in range(2)]
    assert summary["images"] == 2 and abs(summary["psnr"] - sum(expected_psnr) / 2) < 1e-6
    assert "absent" in summary["lpips_note"]


def test_extrinsic_from_takes_a_store_name_and_checks_it_first(tmp_path, capsys):
    """--extrinsic-from idm-default (a shipped weight's name) works end to end; an unknown name
    stops before any photo is restored."""
    from genrestore.cli import main
    from genrestore.io import write_image

    write_image(tmp_path / "photos" / "p0.png", torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(2)))
    base = ["--data", str(tmp_path / "photos"), "--size", "16", "--steps", "1", "--batch-size", "1", "--device", "cpu",
            "-q", "--extrinsic-steps", "1"]
    assert main(["train", "idm", "-o", str(tmp_path / "bad"), *base, "--extrinsic-from", "no-such-model"]) == 2
    assert "no-such-model" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    assert main(["train", "idm", "-o", str(tmp_path / "k1"), *base, "--extrinsic-from", "idm-default"]) == 0
    assert (tmp_path / "k1" / "extrinsic_data" / "p0.png").is_file() and (tmp_path / "k1" / "model.safetensors").is_file()


def test_unet_config_groups_divide_every_width():
    """GroupNorm's groups must divide every block width: --channels 48 96 once crashed with 32 groups."""
    import argparse

    from genrestore.cli_train import _unet_config

    for channels, groups in [((8, 16), 8), ((12, 24), 12), ((48, 96), 24), ((64, 128), 32), ((40, 80), 20)]:
        cfg = _unet_config(argparse.Namespace(channels=list(channels), layers_per_block=1, size=16))
        assert cfg["norm_num_groups"] == groups
    ConditionalUNet(3, prediction_type="sample", unet=cfg)  # builds; min(32, gcd) = 32 groups does not divide 40


def test_authenticity_cli_lpips_skips_only_images_under_31_px(tmp_path, capsys, monkeypatch):
    """An image too small for AlexNet gets no LPIPS, and the others keep theirs: the summary is
    their mean and says over how many (a small image once switched LPIPS off for the rest of the run)."""
    import json

    import genrestore.metrics.lpips as lpips_module
    from genrestore import weights as ws
    from genrestore.cli import main
    from genrestore.io import write_image

    real_find = ws.find
    monkeypatch.setattr(ws, "find", lambda name: tmp_path if name == "alexnet-torchvision" else real_find(name))
    monkeypatch.setattr(lpips_module, "lpips", lambda a, b, net: (a - b).abs().mean(dim=(1, 2, 3)) + 1)
    tiny_net().save(tmp_path / "m.safetensors")
    g = torch.Generator().manual_seed(3)
    for name, side in [("a", 32), ("b", 16), ("c", 32)]:
        write_image(tmp_path / "fx" / f"{name}.png", torch.rand(1, 3, side, side, generator=g))
    assert main(["metrics", str(tmp_path / "fx"), "--authenticity", str(tmp_path / "m.safetensors"), "--steps", "1",
                 "--json", "-q"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    rows, summary = lines[:3], lines[3]["summary"]
    assert ["lpips" in r for r in rows] == [True, False, True] and all(r["lpips"] >= 1 for r in (rows[0], rows[2]))
    assert summary["lpips"] == pytest.approx((rows[0]["lpips"] + rows[2]["lpips"]) / 2)
    assert "over 2 of 3 images" in summary["lpips_note"] and "b.png" in summary["lpips_note"]


def test_restore_cli_resume_and_shards(tmp_path, capsys):
    """restore --resume redoes only images whose output is missing or damaged, or that were made
    with other settings; --shard i/n together equal one run (seeds come from file names)."""
    from genrestore.cli import main
    from genrestore.io import write_image

    tiny_net().save(tmp_path / "m.safetensors")
    g = torch.Generator().manual_seed(4)
    for name in "abc":
        write_image(tmp_path / "in" / f"{name}.png", torch.rand(1, 3, 16, 16, generator=g))
    base = ["restore", str(tmp_path / "in"), "--model", str(tmp_path / "m.safetensors"), "--steps", "2", "-q"]
    assert main([*base, "-o", str(tmp_path / "full")]) == 0
    full = {n: (tmp_path / "full" / f"{n}.png").read_bytes() for n in "abc"}
    (tmp_path / "full" / "b.png").write_bytes(full["b"][:50])
    capsys.readouterr()
    assert main([*base, "-o", str(tmp_path / "full"), "--resume"]) == 0
    assert "1 restored by IDM (2 steps), 2 already done" in capsys.readouterr().out
    assert (tmp_path / "full" / "b.png").read_bytes() == full["b"]
    assert main([*base[:-2], "3", "-q", "-o", str(tmp_path / "full"), "--resume"]) == 0
    assert "3 restored by IDM (3 steps), 0 already done" in capsys.readouterr().out
    for i in range(2):
        assert main([*base, "-o", str(tmp_path / "shards"), "--shard", f"{i}/2"]) == 0
    assert {n: (tmp_path / "shards" / f"{n}.png").read_bytes() for n in "abc"} == full


@pytest.mark.parametrize("native_bf16", [True, False], ids=["native-bf16", "no-bf16"])
def test_restore_cli_half_records_its_precision_and_resume_tells_it_apart(tmp_path, capsys, monkeypatch, native_bf16):
    """--half runs bf16 on a CPU that computes it natively (faked here: bf16 runs on any CPU) and
    says so in the JSON ("half": "bfloat16"; null for float32, which records made before --half,
    without the key, match on --resume); a --half run does not reuse float32 outputs, nor the
    reverse, where they differ."""
    import json

    import genrestore.models.precision as precision
    from genrestore.cli import main
    from genrestore.io import write_image

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native_bf16)
    tiny_net().save(tmp_path / "m.safetensors")
    write_image(tmp_path / "in" / "a.png", torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(6)))
    base = ["restore", str(tmp_path / "in"), "--model", str(tmp_path / "m.safetensors"), "--steps", "2", "-q",
            "-o", str(tmp_path / "o"), "--device", "cpu"]
    assert main(base) == 0
    record = json.loads((tmp_path / "o" / "a.json").read_text())
    assert record["half"] is None
    del record["half"]  # as written before --half
    (tmp_path / "o" / "a.json").write_text(json.dumps(record))
    capsys.readouterr()
    assert main([*base, "--resume"]) == 0
    assert "0 restored by IDM (2 steps), 1 already done" in capsys.readouterr().out
    full = (tmp_path / "o" / "a.png").read_bytes()
    capsys.readouterr()
    assert main([*base, "--half", "--resume"]) == 0
    out = capsys.readouterr().out
    record = json.loads((tmp_path / "o" / "a.json").read_text())
    if native_bf16:
        assert "1 restored by IDM (2 steps) in bfloat16, 0 already done" in out and record["half"] == "bfloat16"
        assert (tmp_path / "o" / "a.png").read_bytes() != full  # bf16 ran
        assert main([*base, "--resume"]) == 0
        assert "1 restored" in capsys.readouterr().out
    else:  # no 16-bit here: --half is float32, the same outputs
        assert "0 restored by IDM (2 steps), 1 already done" in out and "half" not in record
    assert (tmp_path / "o" / "a.png").read_bytes() == full
    assert main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "s"), "--method", "stylegan-inversion",
                 "--task", "denoise", "--generator", str(tmp_path / "m.safetensors"), "--half"]) == 2
    assert "--half: does not apply to --method stylegan-inversion" in capsys.readouterr().err


def test_authenticity_cli_restores_with_restore_tiling(tmp_path, capsys):
    """f(f(x)) must come from the same f as f(x): `restore` tiles by default (256 px), so the
    authenticity test takes --tile/--tile-pad too (it used to run f untiled whatever made f(x))."""
    import json

    from genrestore.cli import main
    from genrestore.io import read_image, write_image
    from genrestore.restore.idm import authenticity

    tiny_net().save(tmp_path / "m.safetensors")
    write_image(tmp_path / "fx" / "a.png", torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(5)))
    assert main(["metrics", str(tmp_path / "fx"), "--authenticity", str(tmp_path / "m.safetensors"), "--steps", "1",
                 "--tile", "32", "--tile-pad", "4", "--json", "-q"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["summary"]
    restorer, fx = IDMRestorer.from_file(tmp_path / "m.safetensors"), read_image(tmp_path / "fx" / "a.png")
    tiled, whole = (float(authenticity(restorer, fx, 1, generator_for(0, "a.png"), tile, 4)["psnr"][0])
                    for tile in (32, 0))
    assert abs(tiled - whole) > 1e-3  # the tiny UNet sees the whole image: tiling changes f
    assert summary["psnr"] == pytest.approx(tiled, abs=1e-6) and summary["tile"] == 32


def test_authenticity_cli_half_restores_as_restore_half(tmp_path, capsys, monkeypatch):
    """f(x) made by restore --half is restored again in the same precision by metrics --authenticity
    --half (bf16 on a CPU with native bf16, faked here), as the library call with half=True."""
    import json

    import genrestore.models.precision as precision
    from genrestore.cli import main
    from genrestore.io import read_image, write_image
    from genrestore.restore.idm import authenticity

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    tiny_net().save(tmp_path / "m.safetensors")
    write_image(tmp_path / "fx" / "a.png", torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(8)))
    base = ["metrics", str(tmp_path / "fx"), "--authenticity", str(tmp_path / "m.safetensors"), "--steps", "2",
            "--json", "-q", "--device", "cpu"]
    psnrs = {}
    for half in (False, True):
        assert main(base + (["--half"] if half else [])) == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["summary"]
        assert summary["half"] == ("bfloat16" if half else None)
        psnrs[half] = summary["psnr"]
    fx = read_image(tmp_path / "fx" / "a.png")
    expected = float(authenticity(IDMRestorer.from_file(tmp_path / "m.safetensors"), fx, 2, generator_for(0, "a.png"),
                                  256, 16, half=True)["psnr"][0])
    assert psnrs[True] == pytest.approx(expected, abs=1e-6) and abs(psnrs[True] - psnrs[False]) > 1e-4
    assert main(["metrics", str(tmp_path / "fx"), str(tmp_path / "fx"), "--half"]) == 2
    assert "--half applies to --authenticity" in capsys.readouterr().err


def test_restore_and_authenticity_cli_sampler_ddim(tmp_path, capsys):
    """restore --sampler ddim --eta E writes what IDMRestorer.restore(sampler="ddim", eta=E) gives
    and records both; --resume does not take DDPM outputs for DDIM ones; metrics --authenticity
    restores f(x) again with the same sampler; --eta without --sampler ddim, and --sampler outside
    IDM and --authenticity, are refused in one line with exit 2."""
    import json

    from genrestore.cli import main
    from genrestore.io import read_image, write_image
    from genrestore.restore.idm import authenticity

    tiny_net().save(tmp_path / "m.safetensors")
    write_image(tmp_path / "in" / "a.png", torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(2)))
    base = ["restore", str(tmp_path / "in"), "--model", str(tmp_path / "m.safetensors"), "--steps", "3",
            "--tile", "0", "-o", str(tmp_path / "o"), "--device", "cpu"]
    assert main([*base, "-q"]) == 0
    ddpm_png = (tmp_path / "o" / "a.png").read_bytes()
    record = json.loads((tmp_path / "o" / "a.json").read_text())
    assert record["sampler"] == "ddpm" and "eta" not in record
    capsys.readouterr()
    assert main([*base, "-q", "--resume", "--sampler", "ddim", "--eta", "0.5"]) == 0
    assert "1 restored by IDM (3 DDIM steps, eta 0.5), 0 already done" in capsys.readouterr().out
    record = json.loads((tmp_path / "o" / "a.json").read_text())
    assert record["sampler"] == "ddim" and record["eta"] == 0.5
    restorer, y = IDMRestorer.from_file(tmp_path / "m.safetensors"), read_image(tmp_path / "in" / "a.png")
    ref = restorer.restore(y, 3, generator_for(0, "a.png"), sampler="ddim", eta=0.5)
    assert (read_image(tmp_path / "o" / "a.png") - ref).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit PNG
    assert (tmp_path / "o" / "a.png").read_bytes() != ddpm_png
    assert main([*base, "-q", "--resume", "--sampler", "ddim", "--eta", "0.5"]) == 0
    assert "0 restored by IDM (3 DDIM steps, eta 0.5), 1 already done" in capsys.readouterr().out

    auth = ["metrics", str(tmp_path / "o"), "--authenticity", str(tmp_path / "m.safetensors"), "--steps", "3",
            "--tile", "0", "--json", "-q", "--sampler", "ddim", "--eta", "0.5"]
    assert main(auth) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["summary"]
    fx = read_image(tmp_path / "o" / "a.png")
    expected = float(authenticity(restorer, fx, 3, generator_for(0, "a.png"), 0, 16, sampler="ddim", eta=0.5)["psnr"][0])
    assert summary["psnr"] == pytest.approx(expected, abs=1e-6) and (summary["sampler"], summary["eta"]) == ("ddim", 0.5)

    refusals = [([*base, "--eta", "0.5"], "--eta: only with --sampler ddim"),
                ([*base, "--method", "inpaint", "--sampler", "ddim"], "--sampler, --tile: does not apply to --method inpaint"),
                ([*auth[:-4], "--eta", "0.5"], "--eta: only with --sampler ddim"),
                (["metrics", str(tmp_path / "o"), str(tmp_path / "o"), "--sampler", "ddim"],
                 "--sampler: only for --authenticity's restorations")]
    for argv, message in refusals:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


@pytest.mark.parametrize("verb", ["restore", "authenticity"])
@pytest.mark.parametrize("tiling", [["--tile", "30"], ["--tile", "40", "--tile-pad", "12"]])
def test_restore_and_authenticity_check_the_tile_against_the_model_up_front(tmp_path, capsys, verb, tiling):
    """--tile 30 (not a multiple of the UNet's 4) or 40 (not above 2 * 12 + 16) failed at the first
    image, after the progress bar had started, with 'expected tile = 0 or a multiple of 4 larger
    than 2 * tile_pad + tile_blend ...', naming no option."""
    from genrestore.cli import main
    from genrestore.io import write_image

    tiny_net().save(tmp_path / "m.safetensors")
    write_image(tmp_path / "in" / "a.png", torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    out = tmp_path / "o"
    argv = {"restore": ["restore", str(tmp_path / "in"), "-o", str(out), "--model", str(tmp_path / "m.safetensors")],
            "authenticity": ["metrics", str(tmp_path / "in"), "--authenticity", str(tmp_path / "m.safetensors")]}[verb]
    assert main([*argv, "--steps", "1", *tiling]) == 2  # no -q: a started progress bar would show on stderr
    err = capsys.readouterr().err
    assert err.startswith(f"genrestore: error: --tile {tiling[1]} must be 0 or a multiple of 4") and "--tile-pad" in err
    assert err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.parametrize("case", ["damaged", "no run record"])
def test_train_idm_refuses_a_damaged_checkpoint_in_one_line(tmp_path, capsys, case):
    """Resuming from a damaged OUT/checkpoint.safetensors exited 1 with 'SafetensorError: ...' (one
    without the run record: 'TypeError: 'NoneType' object is not subscriptable'), naming no file."""
    from safetensors.torch import save_file

    from genrestore.cli import main
    from genrestore.io import write_image

    g = torch.Generator().manual_seed(0)
    write_image(tmp_path / "photos" / "p0.png", torch.rand(1, 3, 24, 24, generator=g))
    run = tmp_path / "run"
    run.mkdir()
    ckpt = run / "checkpoint.safetensors"
    if case == "damaged":
        ckpt.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\": 1}garbage")
    else:
        save_file({"model.x": torch.zeros(2)}, str(ckpt))
    assert main(["train", "idm", "--data", str(tmp_path / "photos"), "-o", str(run), "--size", "16", "--steps", "1",
                 "--batch-size", "1", "--channels", "8", "16", "--device", "cpu", "-q"]) == 2
    err = capsys.readouterr().err
    words = "not a readable safetensors file" if case == "damaged" else "not a training checkpoint"
    assert err.startswith(f"genrestore: error: {ckpt}: {words}") and err.count("\n") == 1, err


def test_authenticity_cli_checks_every_image_before_the_first(tmp_path, capsys, monkeypatch):
    """A damaged file late in the folder is one line naming it, exit 2, before any image is restored
    (it used to fail when the loop reached it, after the rows before it were printed)."""
    from genrestore import cli
    from genrestore.io import write_image
    from genrestore.restore import idm

    tiny_net().save(tmp_path / "m.safetensors")
    write_image(tmp_path / "fx" / "a.png", torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(6)))
    (tmp_path / "fx" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    calls = []
    monkeypatch.setattr(idm, "authenticity", lambda *a, **k: calls.append(a) or {"psnr": torch.zeros(1)})
    assert cli.main(["metrics", str(tmp_path / "fx"), "--authenticity", str(tmp_path / "m.safetensors"),
                     "--steps", "1", "--json", "-q"]) == 2
    captured = capsys.readouterr()
    assert calls == [] and captured.out == ""
    assert "b.png" in captured.err and len(captured.err.strip().splitlines()) == 1


def test_extrinsic_tile_is_checked_before_anything_is_written(tmp_path, capsys):
    """--extrinsic-tile 30 (not a multiple of the UNet's 4) is one line naming the option, exit 2,
    before params.json or any restored photo is written (it failed at the first photo, after
    params.json, with the library's argument names)."""
    from genrestore.cli import main
    from genrestore.io import write_image

    tiny_net().save(tmp_path / "k0.safetensors")
    write_image(tmp_path / "photos" / "p0.png", torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(7)))
    assert main(["train", "idm", "-o", str(tmp_path / "k1"), "--data", str(tmp_path / "photos"), "--size", "16",
                 "--steps", "1", "--batch-size", "1", "--extrinsic-from", str(tmp_path / "k0.safetensors"),
                 "--extrinsic-tile", "30", "-q"]) == 2
    err = capsys.readouterr().err
    assert "--extrinsic-tile 30" in err and "tile_pad" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "k1" / "extrinsic_data").exists()


def test_extrinsic_run_checks_a_damaged_checkpoint_before_restoring_the_data(tmp_path, capsys):
    """train idm --extrinsic-from restores every training photo first: a damaged OUT/checkpoint was
    found only after that (by the trainer's resume)."""
    from genrestore.cli import main
    from genrestore.io import write_image

    tiny_net().save(tmp_path / "k0.safetensors")
    write_image(tmp_path / "photos" / "p0.png", torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(8)))
    (tmp_path / "k1").mkdir()
    ckpt = tmp_path / "k1" / "checkpoint.safetensors"
    ckpt.write_bytes(b"not a safetensors file")
    assert main(["train", "idm", "-o", str(tmp_path / "k1"), "--data", str(tmp_path / "photos"), "--size", "16",
                 "--steps", "1", "--batch-size", "1", "--extrinsic-from", str(tmp_path / "k0.safetensors"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genrestore: error: {ckpt}: not a readable safetensors file") and err.count("\n") == 1
    assert not (tmp_path / "k1" / "extrinsic_data").exists()


def _train_photos(tmp_path):
    from genrestore.io import write_image

    g = torch.Generator().manual_seed(7)
    for i in range(2):
        write_image(tmp_path / "photos" / f"p{i}.png", torch.rand(1, 3, 24, 24, generator=g))
    return ["--data", str(tmp_path / "photos"), "--size", "16", "--batch-size", "2", "--channels", "8", "16",
            "--layers-per-block", "1", "--device", "cpu", "-q"]


def test_train_half_on_a_cpu_with_native_bf16_changes_the_run_and_is_part_of_it(tmp_path, capsys, monkeypatch):
    """train idm --half trains under bf16 autocast where the CPU computes bf16 natively (faked: it
    runs on any CPU), which changes the weights, so it is in the recipe and a checkpoint made with it
    does not resume without it; without native bf16 it is float32, the plain run's weights."""
    import json

    import genrestore.models.precision as precision
    from genrestore.cli import main
    from genrestore.diffusion import ConditionalUNet

    base = ["train", "idm", *_train_photos(tmp_path), "--steps", "2"]
    weights = {}
    for name, native, half in (("plain", True, False), ("bf16", True, True), ("emulated", False, True)):
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda native=native: native)
        assert main([*base, "-o", str(tmp_path / name)] + (["--half"] if half else [])) == 0
        weights[name] = ConditionalUNet.load(tmp_path / name / "model.safetensors").state_dict()
    assert all(torch.equal(weights["plain"][k], weights["emulated"][k]) for k in weights["plain"])
    assert max(float((weights["plain"][k] - weights["bf16"][k]).abs().max()) for k in weights["plain"]) > 1e-6
    assert json.loads((tmp_path / "bf16" / "model.json").read_text())["recipe"].endswith(" --half")
    capsys.readouterr()
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert main([*base[:-2], "--steps", "3", "-o", str(tmp_path / "bf16")]) == 2  # resume without --half
    assert "half" in capsys.readouterr().err


def test_train_init_starts_from_a_model_with_the_same_options(tmp_path, capsys):
    from genrestore.cli import main
    from genrestore.diffusion import ConditionalUNet

    opts = _train_photos(tmp_path)
    assert main(["train", "idm", *opts, "--steps", "2", "--lr", "0.01", "-o", str(tmp_path / "k")]) == 0
    start = ConditionalUNet.load(tmp_path / "k" / "model.safetensors").state_dict()
    # a learning rate of 1e-12: the fine-tuned model is its start, whatever a fresh model would be
    assert main(["train", "idm", *opts, "--steps", "1", "--lr", "1e-12", "--init", str(tmp_path / "k" / "model.safetensors"),
                 "-o", str(tmp_path / "ft")]) == 0
    tuned = ConditionalUNet.load(tmp_path / "ft" / "model.safetensors").state_dict()
    assert max(float((start[k] - tuned[k]).abs().max()) for k in start) < 1e-6
    torch.manual_seed(0)
    fresh = ConditionalUNet(3, prediction_type="sample", unet=ConditionalUNet.load(
        tmp_path / "k" / "model.safetensors").config["unet"]).state_dict()
    assert max(float((fresh[k] - tuned[k]).abs().max()) for k in start) > 1e-3
    # the crop size is no part of the weights: another --size fine-tunes too
    at = opts.index("--size") + 1
    sized = [*opts[:at], "20", *opts[at + 1:]]
    assert main(["train", "idm", *sized, "--steps", "1", "--init", str(tmp_path / "k" / "model.safetensors"),
                 "-o", str(tmp_path / "ft20")]) == 0
    # the start is part of the run: its checkpoint does not resume from another model, nor from none
    assert main(["train", "idm", *opts, "--steps", "2", "--lr", "0.01", "--seed", "5", "-o", str(tmp_path / "k2")]) == 0
    capsys.readouterr()
    for other in (["--init", str(tmp_path / "k2" / "model.safetensors")], []):
        assert main(["train", "idm", *opts, "--steps", "2", "--lr", "1e-12", *other, "-o", str(tmp_path / "ft")]) == 2
        assert "init_sha256" in capsys.readouterr().err
    assert main(["train", "idm", *opts, "--steps", "1", "--residual", "--init", str(tmp_path / "k" / "model.safetensors"),
                 "-o", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "another configuration" in err and "residual" in err and len(err.strip().splitlines()) == 1
    assert main(["train", "idm", *opts, "--steps", "1", "--init", "idm-default", "--extrinsic-from", "idm-default",
                 "-o", str(tmp_path / "bad2")]) == 2
    assert "drop --init" in capsys.readouterr().err


def test_authenticity_compares_the_second_restoration_with_the_first():
    """IDM eq. 2: distance(f(f(x)), f(x)). With a mean-absolute-difference distance the reported
    "lpips" is that of "twice" against "restored" (not of an image with itself, always 0), and
    "psnr" is 10 log10(1 / MSE) of the same pair; "twice" is the restorer run on "restored"."""
    from genrestore.restore.idm import authenticity

    r = IDMRestorer(local_denoiser())
    restored = torch.rand(2, 3, 12, 16, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    dist = lambda a, b: (a - b).abs().flatten(1).mean(1)  # noqa: E731
    out = authenticity(r, restored, 3, [generator_for(0, "a"), generator_for(0, "b")], distance=dist)
    twice = r.restore(restored, 3, [generator_for(0, "a"), generator_for(0, "b")])
    assert torch.equal(out["twice"], twice)
    want = (twice - restored).abs().flatten(1).mean(1)
    assert (want > 0.01).all()
    torch.testing.assert_close(out["lpips"], want, rtol=0, atol=1e-7)
    mse = ((twice.double() - restored.double()) ** 2).flatten(1).mean(1)
    torch.testing.assert_close(out["psnr"].double(), 10 * torch.log10(1 / mse), rtol=0, atol=1e-4)
