"""DiffGAR restorer (blind / non-blind / guided modes) and class-conditional training.

A tiny UNet (8/16 channels) built here; nothing is downloaded.
"""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("diffusers")

from genrestore._checks import InputError  # noqa: E402
from genrestore.diffusion import ConditionalUNet  # noqa: E402
from genrestore.diffusion.train import train_conditional  # noqa: E402
from genrestore.restore import diffgar  # noqa: E402
from genrestore.restore.diffgar import DIFFGAR_CLASSES, DiffGARRestorer, diffgar_degrade  # noqa: E402

TINY_UNET = dict(sample_size=16, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                 down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2)


def tiny_net(classes=DIFFGAR_CLASSES) -> ConditionalUNet:
    torch.manual_seed(0)  # test-only: weight init
    net = ConditionalUNet(3, class_names=classes, unet=TINY_UNET)
    if classes:
        with torch.no_grad():  # make the class embedding matter (diffusers may init it small)
            net.unet.class_embedding.weight.normal_(0, 1, generator=torch.Generator().manual_seed(1))
    return net


def g(i=0):
    return torch.Generator().manual_seed(i)


@pytest.fixture(scope="module")
def restorer():
    return DiffGARRestorer(tiny_net())


@pytest.fixture(scope="module")
def y():
    return torch.rand(2, 3, 8, 8, generator=g(5))


def test_modes_pass_labels_and_guidance_to_sample(restorer, monkeypatch):
    calls = []
    monkeypatch.setattr(diffgar, "sample", lambda model, y, **kw: calls.append(kw) or y)
    x = torch.rand(3, 3, 8, 8)
    restorer.restore(x, "blind")
    restorer.restore(x, "non-blind", "deartifact", guidance_scale=7.0)
    restorer.restore(x, "guided", "deartifact", steps=5)
    blind, nonblind, guided = calls
    assert blind["class_labels"] is None and blind["guidance_scale"] == 1.0
    assert torch.equal(nonblind["class_labels"], torch.full((3,), 2)) and nonblind["guidance_scale"] == 1.0
    assert torch.equal(guided["class_labels"], torch.full((3,), 2)) and guided["guidance_scale"] == 3.0
    assert all(c["scheduler"] == "ddim" and c["eta"] == 0.0 for c in calls)
    assert blind["steps"] == 30 and guided["steps"] == 5


def test_guided_with_scale_one_is_non_blind_and_blind_differs(restorer, y):
    nb = restorer.restore(y, "non-blind", "denoise", steps=2, generator=g())
    gd = restorer.restore(y, "guided", "denoise", guidance_scale=1.0, steps=2, generator=g())
    bl = restorer.restore(y, "blind", steps=2, generator=g())
    g3 = restorer.restore(y, "guided", "denoise", steps=2, generator=g())
    assert torch.equal(nb, gd)
    assert not torch.allclose(bl, nb) and not torch.allclose(g3, nb)
    assert nb.shape == y.shape and nb.dtype == torch.float32 and 0 <= nb.min() and nb.max() <= 1


def test_blind_is_the_mask_class(restorer, y):
    from genrestore.diffusion import sample
    out = restorer.restore(y, "blind", steps=2, generator=g())
    ref = sample(restorer.model, y, "ddim", 2, class_labels=torch.full((2,), 4), generator=g())
    assert torch.equal(out, ref)


def test_odd_sizes_are_padded_and_cropped(restorer):
    from genrestore.diffusion import sample
    from genrestore.restore.idm import pad_to_multiple
    x = torch.rand(1, 3, 7, 9, generator=g(3))
    out = restorer.restore(x, "guided", "inpaint", steps=2, generator=g())
    ref = sample(restorer.model, pad_to_multiple(x, 2)[0], "ddim", 2, class_labels=torch.tensor([3]),
                 guidance_scale=3.0, generator=g())[..., :7, :9]
    assert out.shape == (1, 3, 7, 9) and torch.equal(out, ref)
    assert restorer.restore(torch.rand(1, 3, 1, 3), "blind", steps=1).shape == (1, 3, 1, 3)


def test_bad_inputs(restorer, y):
    with pytest.raises(InputError, match="'upsample', 'denoise', 'deartifact', 'inpaint'"):
        restorer.restore(y, "guided", "blur")
    with pytest.raises(InputError, match="needs the artifact"):
        restorer.restore(y, "non-blind")
    with pytest.raises(InputError, match="blind mode"):
        restorer.restore(y, "blind", "denoise")
    with pytest.raises(InputError, match="mode"):
        restorer.restore(y, "sharp", "denoise")
    with pytest.raises(InputError, match="class"):
        DiffGARRestorer(tiny_net(()))
    with pytest.raises(InputError, match="class names"):
        diffgar_degrade(["blur"])


def test_degrade_gives_classes_and_clean_size():
    fn = diffgar_degrade(level="XS")
    x = torch.rand(8, 3, 16, 16, generator=g(1))
    gens = [g(i) for i in range(8)]
    y, c = fn(x, gens)
    y2, c2 = fn(x, [g(i) for i in range(8)])
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1 and c.dtype == torch.long
    assert torch.equal(y, y2) and torch.equal(c, c2) and set(c.tolist()) == {0, 1, 2, 3}  # upsample resized back
    y1, c1 = fn(x[3:4], [g(3)])  # an image alone matches itself in the batch
    assert torch.equal(y1, y[3:4]) and c1.item() == c[3].item()


def run(out_dir, steps, calls=None):
    imgs = [torch.rand(3, 20, 20, generator=g(0)), torch.rand(3, 16, 24, generator=g(1))]
    fn = diffgar_degrade(level="XS")

    def degrade(x, gens):
        if calls is not None:
            calls.append(1)
        return fn(x, gens)
    return train_conditional(tiny_net(), imgs, degrade, steps=steps, batch_size=2, crop=16, lr=1e-3,
                             ema_decay=0.5, out_dir=out_dir, save_every=1, seed=3)


def test_class_conditional_training_saves_and_resumes(tmp_path):
    full = run(tmp_path / "full", steps=2)
    meta = json.loads((tmp_path / "full" / "model.json").read_text())
    assert meta["config"]["class_names"] == list(DIFFGAR_CLASSES) and meta["steps"] == 2
    r = DiffGARRestorer.from_file(tmp_path / "full" / "model.safetensors")
    assert r.class_names == list(DIFFGAR_CLASSES)
    run(tmp_path / "cut", steps=1)
    calls = []
    resumed = run(tmp_path / "cut", steps=2, calls=calls)
    assert len(calls) == 1
    for k, v in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k
    # the class embedding was trained
    assert not torch.equal(full.unet.class_embedding.weight, tiny_net().unet.class_embedding.weight)


def test_labels_need_a_class_model(tmp_path):
    fn = diffgar_degrade(level="XS")
    with pytest.raises(InputError, match="no classes"):
        train_conditional(tiny_net(()), [torch.rand(3, 16, 16)], fn, steps=1, batch_size=1, crop=16,
                          out_dir=tmp_path)
    with pytest.raises(InputError, match="class labels"):
        train_conditional(tiny_net(), [torch.rand(3, 16, 16)], lambda x, gs: (x, torch.tensor([9])),
                          steps=1, batch_size=1, crop=16, out_dir=tmp_path)


def test_train_diffgar_then_restore_cli(tmp_path, capsys):
    import json

    from genrestore.cli import main
    from genrestore.io import read_image, write_image

    g = torch.Generator().manual_seed(0)
    for i in range(2):
        write_image(tmp_path / "photos" / f"p{i}.png", torch.rand(1, 3, 24, 24, generator=g))
    write_image(tmp_path / "in" / "x.png", torch.rand(1, 3, 10, 9, generator=g))
    run = tmp_path / "run"
    assert main(["train", "diffgar", "--data", str(tmp_path / "photos"), "-o", str(run), "--size", "16", "--steps",
                 "2", "--batch-size", "2", "--channels", "8", "16", "--device", "cpu"]) == 0
    assert json.loads((run / "model.json").read_text())["config"]["class_names"] == list(DIFFGAR_CLASSES)
    out = tmp_path / "out"
    args = ["restore", str(tmp_path / "in"), "-o", str(out), "--method", "diffgar", "--model",
            str(run / "model.safetensors"), "--steps", "2", "-q"]
    assert main(args + ["--mode", "guided", "--artifact", "denoise"]) == 0
    assert read_image(out / "x.png").shape == (1, 3, 10, 9)
    rec = json.loads((out / "x.json").read_text())
    assert rec["mode"] == "guided" and rec["guidance_scale"] == 3.0 and rec["steps"] == 2
    capsys.readouterr()
    assert main(args + ["--mode", "guided", "--artifact", "nosuch"]) == 2
    assert "denoise" in capsys.readouterr().err  # the message lists the classes
    assert main(args + ["--mode", "blind", "--artifact", "denoise"]) == 2
    assert "--mode blind restores without a class; drop --artifact denoise" in capsys.readouterr().err
    assert main(args + ["--mode", "non-blind"]) == 2
    assert "--mode non-blind needs --artifact, one of" in capsys.readouterr().err


def test_train_diffgar_resumes_only_with_the_same_level_and_autoencoder(tmp_path, capsys):
    """The level and the autoencoder change the training data but not the UNet's config: a
    checkpoint made with others is refused, not continued (and its model relabelled)."""
    from genrestore.cli import main
    from genrestore.io import write_image

    g = torch.Generator().manual_seed(0)
    for i in range(2):
        write_image(tmp_path / "photos" / f"p{i}.png", torch.rand(1, 3, 24, 24, generator=g))
    for i, seed in enumerate((0, 1)):
        torch.manual_seed(seed)  # test-only: two autoencoders of the same shape, other weights
        from genrestore.models.vq import VQAutoencoder

        VQAutoencoder(16, 4, (8, 16), norm_num_groups=4).save(tmp_path / f"vq{i}.safetensors")
    base = ["train", "diffgar", "--data", str(tmp_path / "photos"), "--size", "16", "--steps", "1", "--batch-size",
            "2", "--channels", "8", "16", "--device", "cpu", "-q"]
    assert main(base + ["-o", str(tmp_path / "px")]) == 0
    capsys.readouterr()
    assert main(base + ["-o", str(tmp_path / "px"), "--level", "L", "--steps", "2"]) == 2
    assert "checkpoint of another run (saved vs now: {'settings': (None, '--level L')})" in capsys.readouterr().err
    assert main(base + ["-o", str(tmp_path / "px"), "--steps", "2"]) == 0  # the same level trains on
    latent = base + ["-o", str(tmp_path / "z"), "--autoencoder"]
    assert main(latent + [str(tmp_path / "vq0.safetensors")]) == 0
    capsys.readouterr()
    assert main(latent + [str(tmp_path / "vq1.safetensors"), "--steps", "2"]) == 2
    assert "checkpoint of another run" in capsys.readouterr().err


def test_train_diffgar_on_artifact_pairs(tmp_path, capsys):
    """Pairs from `genrestore artifacts` train a model with the artifact kinds as classes; the same
    crop cuts both images of a pair."""
    import json

    from genrestore.cli import main
    from genrestore.diffusion.train import random_crops
    from genrestore.io import write_image
    from genrestore.restore.diffgar import ARTIFACT_CLASSES, load_artifact_pairs

    g = torch.Generator().manual_seed(0)
    for i, kind in enumerate(["vq-replace", "ddim-scale", "identity"]):
        clean = torch.rand(1, 3, 24, 24, generator=g)
        write_image(tmp_path / "pairs" / f"p{i}_clean.png", clean)
        write_image(tmp_path / "pairs" / f"p{i}.png", 1 - clean)
        (tmp_path / "pairs" / f"p{i}.json").write_text(json.dumps({"kind": kind}))
    pairs = load_artifact_pairs([tmp_path / "pairs"])
    assert [p[2] for p in pairs] == [0, 3, 4]  # identity -> [MASK]
    crops = random_crops([torch.cat(p[:2]) for p in pairs], 8, 16, torch.Generator().manual_seed(1))
    torch.testing.assert_close(crops[:, 3:], 1 - crops[:, :3], atol=1 / 255, rtol=0)  # aligned windows and flips
    run = tmp_path / "run"
    assert main(["train", "diffgar", "--pairs", str(tmp_path / "pairs"), "-o", str(run), "--size", "16",
                 "--steps", "2", "--batch-size", "2", "--channels", "8", "16", "--device", "cpu"]) == 0
    meta = json.loads((run / "model.json").read_text())
    assert meta["config"]["class_names"] == list(ARTIFACT_CLASSES) and "--pairs" in meta["recipe"]
    capsys.readouterr()
    assert main(["train", "diffgar", "-o", str(run), "--size", "16"]) == 2
    assert "either --data" in capsys.readouterr().err
    (tmp_path / "pairs" / "p0.json").write_text(json.dumps({"kind": "jpeg"}))
    with pytest.raises(InputError, match="not one of the classes"):
        load_artifact_pairs([tmp_path / "pairs"])
    (tmp_path / "pairs" / "p0.json").write_text(json.dumps({"kind": "vq-replace"}))
    write_image(tmp_path / "pairs" / "p1.png", torch.rand(1, 3, 24, 20, generator=g))  # named, not "pair 1"
    with pytest.raises(InputError, match=r"p1\.png: 20x24 px, but p1_clean\.png beside it is 24x24 px"):
        load_artifact_pairs([tmp_path / "pairs"])


class LocalClassDenoiser(ConditionalUNet):
    """An eps-predictor with a 3x3 receptive field that depends on x_t, y and the class label."""

    def forward(self, x_t, t, y, class_labels=None):
        c = 0.0 if class_labels is None else (class_labels.float() / 10).view(-1, 1, 1, 1)
        return 0.3 * torch.nn.functional.avg_pool2d(x_t, 3, stride=1, padding=1, count_include_pad=False) - 0.2 * y + c


@pytest.mark.parametrize("constant", [True, False])
def test_tiled_diffgar_equals_untiled_for_a_local_denoiser(constant):
    """The seam test for DiffGAR: tiles share x_t (and the guided pair of passes), so a local
    network gives the untiled image."""
    net = LocalClassDenoiser(3, class_names=DIFFGAR_CLASSES, unet=TINY_UNET).eval()
    r = DiffGARRestorer(net)
    y = torch.full((1, 3, 40, 52), 0.4) if constant else torch.rand(1, 3, 40, 52, generator=g(3))
    full = r.restore(y, "guided", "denoise", steps=3, generator=[g(1)])
    tiled = r.restore(y, "guided", "denoise", steps=3, generator=[g(1)], tile=16, tile_pad=2, tile_blend=4)
    assert (tiled - full).abs().max() < 1 / 255 / 100
    with pytest.raises(InputError, match="tile"):
        r.restore(y, "blind", tile=15, tile_pad=2, tile_blend=4)  # not a multiple of the UNet's 2


class OracleEps(ConditionalUNet):
    """Predicts the eps for which x_0 = y exactly: DDIM (eta 0) then lands on the condition."""

    def forward(self, x_t, t, y, class_labels=None):
        from genrestore.diffusion.schedulers import make_scheduler

        a = make_scheduler("ddim", self.config["schedule"]).alphas_cumprod[t].to(x_t)
        return (x_t - a.sqrt() * y) / (1 - a).sqrt()


def tiny_vq():
    from genrestore.models.vq import VQAutoencoder

    torch.manual_seed(0)  # test-only: weight init
    return VQAutoencoder(16, 4, (8, 16), norm_num_groups=4).eval()


def test_latent_diffgar_samples_in_the_scaled_latent_space_and_decodes():
    """With an oracle denoiser the latent sample equals the scaled encoding of y, so the restored
    image is the autoencoder's own reconstruction of y (scale in and out, no clipping, quantized)."""
    ae = tiny_vq()
    net = OracleEps(4, cond_channels=4, class_names=DIFFGAR_CLASSES, unet=TINY_UNET).eval()
    y = torch.rand(2, 3, 10, 13, generator=g(4))
    scale = 0.37
    out = DiffGARRestorer(net, ae, latent_scale=scale).restore(y, "blind", steps=4, generator=[g(1), g(2)])
    from genrestore.restore.idm import pad_to_multiple

    y_pad, _ = pad_to_multiple(y, 4)  # UNet multiple 2 x autoencoder factor 2
    with torch.no_grad():
        ref = ae(y_pad)[0].clamp(0, 1)[..., :10, :13]
    assert out.shape == (2, 3, 10, 13)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)
    with pytest.raises(InputError, match="embed_dim"):
        DiffGARRestorer(tiny_net(), ae)


def test_train_latent_diffgar_cli(tmp_path, capsys):
    """`train diffgar --autoencoder` trains on scaled latents (unit std on the step-0 crops); the
    model's JSON names the autoencoder relative to the model's folder, so both folders can move,
    even when both files are called model.safetensors (as `train vq` and `train diffgar` write them)."""
    import shutil

    from genrestore._random import generator_for
    from genrestore.cli import main
    from genrestore.diffusion.train import random_crops
    from genrestore.io import read_image, write_image

    gen = torch.Generator().manual_seed(0)
    photos = [torch.rand(1, 3, 24, 24, generator=gen) for _ in range(2)]
    for i, p in enumerate(photos):
        write_image(tmp_path / "photos" / f"p{i}.png", p)
    write_image(tmp_path / "in" / "x.png", torch.rand(1, 3, 10, 9, generator=gen))
    run = tmp_path / "runs" / "dg"
    (tmp_path / "runs" / "vq").mkdir(parents=True)
    ae = tiny_vq()
    ae.save(tmp_path / "runs" / "vq" / "model.safetensors")
    assert main(["train", "diffgar", "--data", str(tmp_path / "photos"), "-o", str(run), "--size", "16", "--steps",
                 "2", "--batch-size", "2", "--channels", "8", "16", "--device", "cpu",
                 "--autoencoder", str(tmp_path / "runs" / "vq" / "model.safetensors")]) == 0
    meta = json.loads((run / "model.json").read_text())
    assert meta["autoencoder"] == "../vq/model.safetensors"
    capsys.readouterr()  # a size whose latents are too small for the UNet names both factors
    assert main(["train", "diffgar", "--data", str(tmp_path / "photos"), "-o", str(tmp_path / "small"), "--size", "4",
                 "--steps", "2", "--channels", "8", "16", "--device", "cpu",
                 "--autoencoder", str(tmp_path / "runs" / "vq" / "model.safetensors")]) == 2
    assert ("--size must be a multiple of 4 (2^(blocks - 1) x the autoencoder's factor 2) and at least 8, got 4"
            in capsys.readouterr().err)
    shutil.move(tmp_path / "runs", tmp_path / "moved")  # the pair moves together
    run = tmp_path / "moved" / "dg"
    assert meta["config"]["channels"] == 4 and meta["config"]["unet"]["sample_size"] == 8
    loaded = [read_image(tmp_path / "photos" / f"p{i}.png")[0] for i in range(2)]
    crops = random_crops(loaded, 2, 16, generator_for(0, "crop-0"))
    with torch.no_grad():
        z = ae.encode_latents(crops) * meta["latent_scale"]
    assert abs(float(z.std()) - 1) < 1e-4
    r = DiffGARRestorer.from_file(run / "model.safetensors")
    assert r.autoencoder is not None and r.factor == 2
    out = tmp_path / "out"
    assert main(["restore", str(tmp_path / "in"), "-o", str(out), "--method", "diffgar", "--model",
                 str(run / "model.safetensors"), "--steps", "2", "--mode", "blind", "-q"]) == 0
    assert read_image(out / "x.png").shape == (1, 3, 10, 9)
    # a JSON that names the model itself (or nothing that exists) is a clear error, and --autoencoder overrides it
    sidecar = json.loads((run / "model.json").read_text())
    (run / "model.json").write_text(json.dumps({**sidecar, "autoencoder": "model.safetensors"}))
    with pytest.raises(InputError, match="is the model file itself"):
        DiffGARRestorer.from_file(run / "model.safetensors")
    (run / "model.json").write_text(json.dumps({**sidecar, "autoencoder": "gone.safetensors"}))
    assert main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "o2"), "--method", "diffgar", "--model",
                 str(run / "model.safetensors"), "--mode", "blind", "-q"]) == 2
    assert main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "o2"), "--method", "diffgar", "--model",
                 str(run / "model.safetensors"), "--steps", "2", "--mode", "blind", "-q",
                 "--autoencoder", str(tmp_path / "moved" / "vq" / "model.safetensors")]) == 0


def test_train_diffgar_x0_residual_cli(tmp_path):
    """`--prediction sample --residual`: an x0-predicting DiffGAR whose output adds the condition."""
    from genrestore.cli import main
    from genrestore.io import read_image, write_image

    gen = torch.Generator().manual_seed(0)
    for i in range(2):
        write_image(tmp_path / "photos" / f"p{i}.png", torch.rand(1, 3, 24, 24, generator=gen))
    run = tmp_path / "run"
    assert main(["train", "diffgar", "--data", str(tmp_path / "photos"), "-o", str(run), "--size", "16", "--steps",
                 "1", "--batch-size", "2", "--channels", "8", "16", "--device", "cpu", "--prediction", "sample",
                 "--residual"]) == 0
    meta = json.loads((run / "model.json").read_text())
    assert meta["config"]["prediction_type"] == "sample" and meta["config"]["residual"] is True
    assert "--prediction sample --residual" in meta["recipe"]
    x = torch.rand(1, 3, 16, 16, generator=gen)
    write_image(tmp_path / "in" / "x.png", x)
    assert main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--method", "diffgar", "--model",
                 str(run / "model.safetensors"), "--steps", "2", "--artifact", "denoise", "-q"]) == 0
    assert read_image(tmp_path / "out" / "x.png").shape == (1, 3, 16, 16)


def test_train_idm_and_regression_on_pairs(tmp_path, capsys):
    """`train idm --pairs` trains the classless baselines on the same pair folders; the
    regression UNet's L1 loss is recorded in its checkpoint."""
    import json

    from safetensors import safe_open

    from genrestore.cli import main
    from genrestore.io import write_image

    g = torch.Generator().manual_seed(0)
    for i, kind in enumerate(["vq-replace", "identity"]):
        clean = torch.rand(1, 3, 24, 24, generator=g)
        write_image(tmp_path / "pairs" / f"p{i}_clean.png", clean)
        write_image(tmp_path / "pairs" / f"p{i}.png", 1 - clean)
        (tmp_path / "pairs" / f"p{i}.json").write_text(json.dumps({"kind": kind}))
    for flag in ([], ["--regression"]):
        run = tmp_path / f"run{len(flag)}"
        assert main(["train", "idm", "--pairs", str(tmp_path / "pairs"), "-o", str(run), "--size", "16",
                     "--steps", "2", "--batch-size", "2", "--channels", "8", "16", "--device", "cpu", *flag]) == 0
        meta = json.loads((run / "model.json").read_text())
        assert "--pairs" in meta["recipe"] and meta["restorer"] == ("regression" if flag else "idm")
        assert "class_names" not in meta["config"] or not meta["config"]["class_names"]
        with safe_open(str(run / "checkpoint.safetensors"), "pt") as f:
            run_meta = json.loads(f.metadata()["run"])
        assert run_meta["pairs"] == 2 and run_meta.get("loss", "mse") == ("l1" if flag else "mse")
    capsys.readouterr()
    assert main(["train", "idm", "-o", str(tmp_path / "x"), "--size", "16"]) == 2
    assert "either --data" in capsys.readouterr().err
    assert main(["train", "idm", "--pairs", str(tmp_path / "pairs"), "--extrinsic-from", "m.safetensors",
                 "-o", str(tmp_path / "x"), "--size", "16"]) == 2
    assert "does not combine with --pairs" in capsys.readouterr().err


def test_restore_diffgar_checks_the_tile_against_the_model_up_front(tmp_path, capsys):
    """--tile 33 (not a multiple of the UNet's 2) failed at the first image, after the progress bar
    had started, with 'expected tile = 0 or a multiple of 2 ...', naming no option."""
    from genrestore.cli import main
    from genrestore.io import write_image

    tiny_net().save(tmp_path / "m.safetensors")
    write_image(tmp_path / "in" / "a.png", torch.rand(1, 3, 8, 8, generator=g(0)))
    out = tmp_path / "o"
    assert main(["restore", str(tmp_path / "in"), "-o", str(out), "--method", "diffgar", "--model",
                 str(tmp_path / "m.safetensors"), "--mode", "blind", "--steps", "1", "--tile", "33"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genrestore: error: --tile 33 must be 0 or a multiple of 2") and "--tile-pad" in err
    assert err.count("\n") == 1, err
    assert not out.exists()


def test_degrade_resizes_upsample_back_bicubic_and_clamps():
    """DiffGAR conditions on a pixel-aligned y: the ``upsample`` task's small image is brought back
    to the clean size by bicubic interpolation (Keys a = -0.5; reference: Pillow's float-image
    BICUBIC, channel by channel) and clamped to [0, 1] (bicubic overshoots at the edges of flat 0 / 1 blocks)."""
    import numpy as np
    from PIL import Image

    from genrestore import _random
    from genrestore.degrade import get_task

    x = (torch.rand(1, 3, 2, 2, generator=g(2)) > 0.5).float().repeat_interleave(8, -1).repeat_interleave(8, -2)
    y, c = diffgar_degrade(["upsample"], "S")(x, [g(0)])
    gen = g(0)
    _random.randint(gen, 1, 0, 1)  # the class is drawn first (documented), then the task draws
    small = get_task("upsample", "S").degrade(x, [gen])
    assert c.tolist() == [0] and small.shape[-1] < 16
    ref = torch.stack([torch.from_numpy(np.array(Image.fromarray(ch.numpy(), "F").resize((16, 16), Image.BICUBIC)))
                       for ch in small[0]]).unsqueeze(0)
    assert ref.min() < 0 or ref.max() > 1  # the clamp matters here
    torch.testing.assert_close(y, ref.clamp(0, 1), atol=1e-4, rtol=0)


def test_guided_scale_zero_is_the_unconditional_prediction(restorer, y):
    """Eq. 9 with s = 0: ``out(.|[MASK]) + 0 (out(.|c) - out(.|[MASK]))`` is the [MASK] pass alone,
    so guided restoration at s = 0 (a valid scale) equals blind restoration."""
    assert restorer.sampling_args("guided", "denoise", 0.0, 2)[1] == 0.0
    gd = restorer.restore(y, "guided", "denoise", guidance_scale=0.0, steps=2, generator=g())
    bl = restorer.restore(y, "blind", steps=2, generator=g())
    torch.testing.assert_close(gd, bl, atol=1e-5, rtol=0)


def test_latent_autoencoder_path_is_looked_up_beside_the_model_first(tmp_path, monkeypatch):
    """A sidecar's relative ``autoencoder`` path is relative to the model's folder (the two
    folders move together); the working folder's file of the same name comes second."""
    from genrestore.restore.diffgar import autoencoder_file

    (tmp_path / "run").mkdir()
    for p in (tmp_path / "ae.safetensors", tmp_path / "run" / "ae.safetensors"):
        p.write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    found = autoencoder_file(tmp_path / "run" / "model.safetensors", "ae.safetensors")
    assert found.resolve() == (tmp_path / "run" / "ae.safetensors").resolve()
    assert autoencoder_file(tmp_path / "other" / "model.safetensors", "ae.safetensors").resolve() == \
        (tmp_path / "ae.safetensors").resolve()
    assert autoencoder_file(tmp_path / "run" / "model.safetensors", "none.safetensors") is None


def test_latent_tiling_is_in_image_pixels():
    """``tile``, ``tile_pad`` and ``tile_blend`` are image pixels, divided by the autoencoder's
    factor (2) for the latent network: 32 / 8 / 4 px are latent tiles of 16 with a 4 px pad and a
    2 px blend (valid: 16 > 2 x 4 + 2); with the oracle denoiser, which is pointwise, tiling
    changes nothing."""
    ae = tiny_vq()
    net = OracleEps(4, cond_channels=4, class_names=DIFFGAR_CLASSES, unet=TINY_UNET).eval()
    r = DiffGARRestorer(net, ae, latent_scale=0.37)
    y = torch.rand(1, 3, 48, 56, generator=g(4))
    full = r.restore(y, "blind", steps=2, generator=[g(1)])
    tiled = r.restore(y, "blind", steps=2, generator=[g(1)], tile=32, tile_pad=8, tile_blend=4)
    torch.testing.assert_close(tiled, full, atol=1e-4, rtol=0)
