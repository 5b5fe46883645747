"""Training the VQ autoencoder, the token transformer and the DDPM: resume, quality records, learning."""

import json
import math

import pytest
import torch

from genrestore._checks import InputError

pytest.importorskip("diffusers")
from genrestore.artifacts import generators  # noqa: E402
from genrestore.artifacts.generators import (CodeUsage, sample_ddpm, sample_quality, sample_tokens,  # noqa: E402
                                             train_ddpm, train_token_transformer, train_vq_autoencoder)
from genrestore.diffusion import DenoisingUNet  # noqa: E402
from genrestore.models.vq import TokenTransformer, VQAutoencoder  # noqa: E402


def tiny_vq():
    torch.manual_seed(0)
    return VQAutoencoder(16, 4, (8, 16), norm_num_groups=4)


@pytest.fixture(scope="module")
def photos():
    g = torch.Generator().manual_seed(0)
    return [torch.rand(3, 40, 40, generator=g), torch.rand(3, 36, 44, generator=g)]


def test_vq_training_resumes_bit_for_bit_and_records_psnr(photos, tmp_path):
    kw = dict(batch_size=2, crop=32, disc_start=1, save_every=1)
    full = train_vq_autoencoder(tiny_vq(), photos, 3, out_dir=tmp_path / "a", **kw)
    train_vq_autoencoder(tiny_vq(), photos, 2, out_dir=tmp_path / "b", **kw)
    resumed = train_vq_autoencoder(tiny_vq(), photos, 3, out_dir=tmp_path / "b", **kw)
    for (k, v), w in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(v, w), k
    q = json.loads((tmp_path / "a" / "model.json").read_text())["quality"]
    assert 0 < q["reconstruction_psnr_db"] < 60 and q["held_out_crops"] == 16
    assert VQAutoencoder.load(tmp_path / "a" / "model.safetensors").codebook_size == 16


def test_vq_trains_on_with_more_steps_keeping_the_first_calls_disc_start(photos, tmp_path, monkeypatch):
    """The default disc_start is half of the first call's steps (1 of 2); a rerun with more steps
    keeps it instead of refusing the checkpoint for a disc_start of 2, and equals a straight run."""
    from genrestore import weights as ws

    monkeypatch.setattr(ws, "find", lambda name: None)  # no LPIPS: faster, and the GAN loss is what matters
    kw = dict(batch_size=2, crop=32, save_every=1, ema_decay=0.5)
    train_vq_autoencoder(tiny_vq(), photos, 2, out_dir=tmp_path / "b", **kw)
    resumed = train_vq_autoencoder(tiny_vq(), photos, 4, out_dir=tmp_path / "b", **kw)
    full = train_vq_autoencoder(tiny_vq(), photos, 4, out_dir=tmp_path / "a", disc_start=1, **kw)
    for (k, v), w in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(v, w), k


def test_transformer_resumes_only_with_the_same_autoencoder_weights(tmp_path):
    """Two autoencoders of one config give other tokens: the checkpoint of one is not continued on the other's."""
    flat = [torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))]

    def gpt():
        torch.manual_seed(1)  # test-only: weight init
        return TokenTransformer(16, 16, dim=16, depth=1, heads=2)

    vq = tiny_vq().eval()
    kw = dict(batch_size=2, ema_decay=0.0, out_dir=tmp_path, quality_samples=0)
    train_token_transformer(gpt(), vq, flat, 1, **kw)
    other = tiny_vq().eval()
    with torch.no_grad():
        other.vq.quantize.embedding.weight.add_(1.0)
    with pytest.raises(InputError, match="checkpoint of another run .*'vq_weights'"):
        train_token_transformer(gpt(), other, flat, 2, **kw)
    train_token_transformer(gpt(), tiny_vq().eval(), flat, 2, **kw)  # the same weights, loaded again, train on
    # a checkpoint from before the autoencoder was recorded lacks vq_weights: unknown, so it resumes
    import json

    from safetensors.torch import load_file, save_file

    from genrestore.diffusion.train import checkpoint_run

    ckpt = tmp_path / "checkpoint.safetensors"
    meta = checkpoint_run(ckpt)
    del meta["vq_weights"]
    save_file(load_file(str(ckpt)), str(ckpt), metadata={"run": json.dumps(meta)})
    train_token_transformer(gpt(), other, flat, 3, **kw)
    assert checkpoint_run(ckpt)["step"] == 3 and "vq_weights" in checkpoint_run(ckpt)


def test_dead_codes_restart_from_encoder_outputs_and_used_codes_stay(tmp_path):
    g = torch.Generator().manual_seed(0)
    codebook = torch.zeros(8, 3)
    codebook[2] = torch.tensor([5.0, 5.0, 5.0])
    z_e = torch.randn(2, 3, 2, 2, generator=g)
    tokens = torch.full((2, 2, 2), 2)  # only code 2 is used
    usage = CodeUsage(8, every=4)
    assert usage.update(tokens, z_e, codebook, step=1, generator=g) == 0  # not a check step: counting only
    assert usage.count.tolist() == [0, 0, 8, 0, 0, 0, 0, 0] and codebook[0].abs().sum() == 0
    assert usage.update(tokens, z_e, codebook, step=4, generator=g) == 7
    assert codebook[2].tolist() == [5.0, 5.0, 5.0] and usage.count.sum() == 0
    vecs = z_e.permute(0, 2, 3, 1).reshape(-1, 3)
    nearest = torch.cdist(codebook[[0, 1, 3, 4, 5, 6, 7]], vecs).min(dim=1).values
    assert (nearest <= 0.01 * vecs.std() * 5).all() and (nearest > 0).all()  # a batch vector + 1 % noise
    # with the restart, a short training uses more of a 16-code book than without
    photos = [torch.rand(3, 32, 32, generator=g) for _ in range(2)]
    used = {}
    for every in (0, 1):
        vq = train_vq_autoencoder(tiny_vq(), photos, 2, batch_size=2, crop=16, adv_weight=0.0, ema_decay=0.0,
                                  out_dir=tmp_path / str(every), restart_every=every)
        used[every] = vq.encode_tokens(torch.stack(photos)).unique().numel()
    assert used[1] > used[0]


def test_transformer_learns_a_constant_token_grid(tmp_path):
    vq = tiny_vq().eval()
    flat = [torch.full((3, 16, 16), 0.4)]  # every crop encodes to the same tokens
    torch.manual_seed(1)
    gpt = TokenTransformer(16, 16, dim=16, depth=1, heads=2)
    train_token_transformer(gpt, vq, flat, 60, batch_size=4, lr=3e-3, ema_decay=0.0, out_dir=tmp_path,
                            quality_samples=3)
    q = json.loads((tmp_path / "model.json").read_text())["quality"]
    assert q["uniform_bits_per_token"] == pytest.approx(math.log2(16))
    assert q["bits_per_token"] < 0.5  # the sequence is deterministic: far below log2(16) = 4 bits
    assert "samples_temperature_1" in q
    gpt = TokenTransformer.load(tmp_path / "model.safetensors")
    drawn = sample_tokens(gpt, 3, torch.Generator().manual_seed(0), temperature=0.05)  # all 16 positions drawn
    assert torch.equal(drawn, vq.encode_tokens(flat[0][None, :, :8, :8]).flatten(1).expand(3, -1))  # its 8 px crops
    with pytest.raises(Exception, match="square token grid"):
        train_token_transformer(TokenTransformer(16, 15, dim=8, depth=1, heads=2), vq, flat, 1, out_dir=tmp_path)


def test_ddpm_training_runs_and_saves(photos, tmp_path):
    torch.manual_seed(0)
    net = DenoisingUNet(3, schedule={"num_train_timesteps": 50}, unet=dict(
        sample_size=16, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D")))
    train_ddpm(net, photos, 2, batch_size=2, crop=16, out_dir=tmp_path, quality_samples=3, quality_steps=2)
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["steps"] == 2 and meta["config"]["arch"] == "denoising-unet"
    assert meta["quality"]["samples_ddim_2"]["samples"] == 3 and meta["quality"]["samples_ddim_2"]["crop"] == 16
    with pytest.raises(InputError, match="at least 2 samples"):  # refused before any training
        train_ddpm(net, photos, 2, batch_size=2, crop=16, out_dir=tmp_path / "one", quality_samples=1)
    assert not (tmp_path / "one").exists()
    assert DenoisingUNet.load(tmp_path / "model.safetensors").config == net.config


@pytest.mark.parametrize("train", ["vq", "ddpm"])
def test_bad_held_out_photos_are_refused_before_any_training(photos, tmp_path, train):
    """A missing folder or photos under the crop size stop the call up front, not after the last step."""
    if train == "vq":
        def call(ev, out):
            train_vq_autoencoder(tiny_vq(), photos, 1, batch_size=2, crop=16, adv_weight=0.0, out_dir=out,
                                 eval_images=ev)
    else:
        def call(ev, out):
            train_ddpm(DenoisingUNet(3, unet=dict(sample_size=16, block_out_channels=(8, 16), layers_per_block=1,
                                                  norm_num_groups=4, down_block_types=("DownBlock2D",) * 2,
                                                  up_block_types=("UpBlock2D",) * 2)),
                       photos, 1, batch_size=2, crop=16, out_dir=out, eval_images=ev, quality_samples=0)
    with pytest.raises(InputError, match="eval_images: 1 of 2 held-out images are smaller than the crop size 16 "
                                         "\\(the first is 15x20 px\\)"):
        call([photos[0], torch.rand(3, 20, 15)], tmp_path / "small")
    with pytest.raises(InputError, match="no such file"):
        call(tmp_path / "nosuch", tmp_path / "missing")
    assert not (tmp_path / "small").exists() and not (tmp_path / "missing").exists()


def test_train_vq_then_transformer_cli(tmp_path):
    from genrestore.cli import main
    from genrestore.io import write_image

    g = torch.Generator().manual_seed(0)
    for i in range(2):
        write_image(tmp_path / "photos" / f"p{i}.png", torch.rand(1, 3, 40, 40, generator=g))
    data = ["--data", str(tmp_path / "photos"), "--steps", "2", "--batch-size", "2", "--device", "cpu", "-q"]
    assert main(["train", "vq", "-o", str(tmp_path / "vq"), "--size", "32", "--channels", "8", "16",
                 "--groups", "4", "--codebook-size", "16", *data]) == 0
    assert main(["train", "transformer", "-o", str(tmp_path / "gpt"), "--vq", str(tmp_path / "vq" / "model.safetensors"),
                 "--size", "16", "--dim", "8", "--depth", "1", "--heads", "2", "--quality-samples", "2", *data]) == 0
    meta = json.loads((tmp_path / "gpt" / "model.json").read_text())
    assert meta["config"]["length"] == 64 and "bits_per_token" in meta["quality"]
    assert meta["quality"]["samples_temperature_1"]["samples"] == 2


class OnePointDenoiser(torch.nn.Module):
    """The exact epsilon of a data set of one point ``c``: ``(x_t - sqrt(a_t) c) / sqrt(1 - a_t)``."""

    def __init__(self, c: torch.Tensor, timesteps: int = 100):
        super().__init__()
        from genrestore.diffusion.schedulers import check_schedule, make_scheduler

        self.channels, self.config = c.shape[0], {"schedule": check_schedule({"num_train_timesteps": timesteps})}
        self.register_buffer("c", c)
        self.register_buffer("a", make_scheduler("ddpm", self.config["schedule"], "epsilon").alphas_cumprod)

    def forward(self, x_t, t):
        a = self.a[torch.as_tensor(t).long()].reshape(-1, 1, 1, 1)
        return (x_t - a.sqrt() * self.c) / (1 - a).sqrt()


def test_ddpm_samples_of_a_one_point_data_set_are_that_point():
    c = torch.tensor([-0.6, 0.2, 0.9]).view(3, 1, 1).expand(3, 4, 4).clone()
    x = sample_ddpm(OnePointDenoiser(c), 5, 4, steps=7, generator=torch.Generator().manual_seed(0), batch_size=2)
    assert x.shape == (5, 3, 4, 4)
    torch.testing.assert_close(x, ((c + 1) / 2).expand(5, -1, -1, -1), atol=1e-5, rtol=0)


def test_ddpm_samples_are_clamped_to_the_image_range():
    """A one-point data set outside [-1, 1] decodes to that point; the samples are images in [0, 1]:
    ((c + 1) / 2) clamped, by hand [0, 0.6, 1]."""
    c = torch.tensor([-1.5, 0.2, 1.4]).view(3, 1, 1).expand(3, 4, 4).clone()
    x = sample_ddpm(OnePointDenoiser(c), 2, 4, steps=7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x, torch.tensor([0.0, 0.6, 1.0]).view(1, 3, 1, 1).expand(2, 3, 4, 4), atol=1e-5, rtol=0)


class MeanColourFeatures:
    """A stand-in for the Inception: features are the 4x4 average-pooled pixels (48-d), a linear map."""

    def __init__(self, device="cpu"):
        pass

    def __call__(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x.double(), 4).flatten(1), None


def test_sample_quality_is_the_frechet_distance_of_the_features(photos, monkeypatch):
    import numpy as np
    import scipy.linalg

    import genrestore.metrics.fid as fid
    from genrestore import weights as ws

    monkeypatch.setattr(ws, "find", lambda name: None)
    absent = sample_quality(torch.rand(4, 3, 8, 8), photos)
    assert absent["fid"] is None and "inception-fid" in absent["note"]
    monkeypatch.setattr(ws, "find", lambda name: "present")
    monkeypatch.setattr(fid, "InceptionFeatures", MeanColourFeatures)
    real = generators._held_out(photos, 8, 64, 0 + 1)  # the crops sample_quality draws for seed 0
    assert sample_quality(real, photos)["fid"] == pytest.approx(0, abs=1e-6)
    fake = real * 0.5 + 0.25  # features f' = f / 2 + 1/4, covariance / 4
    f = MeanColourFeatures()(real)[0].numpy()
    mu, cov = f.mean(0), np.cov(f, rowvar=False, bias=False)
    g = f * 0.5 + 0.25
    mu2, cov2 = g.mean(0), np.cov(g, rowvar=False, bias=False)
    expected = ((mu - mu2) ** 2).sum() + np.trace(cov + cov2 - 2 * scipy.linalg.sqrtm(cov @ cov2).real)
    q = sample_quality(fake, photos)
    assert q["fid"] == pytest.approx(expected, rel=1e-3) and q["samples"] == 64 and q["crop"] == 8
    assert math.isfinite(q["kid"])
    with pytest.raises(InputError, match="at least 2 samples"):
        sample_quality(real[:1], photos)


def test_sample_quality_kid_is_the_unbiased_mmd_of_the_whole_sets_and_samples_are_clamped(photos, monkeypatch):
    """KID "over the whole sets": with 16 samples, the unbiased MMD^2 (cubic kernel, NumPy) of all 16
    feature vectors against all 16 of the held-out crops; samples outside [0, 1] count as clamped."""
    import numpy as np

    import genrestore.metrics.fid as fid
    from genrestore import weights as ws

    monkeypatch.setattr(ws, "find", lambda name: "present")
    monkeypatch.setattr(fid, "InceptionFeatures", MeanColourFeatures)
    real = generators._held_out(photos, 8, 16, 0 + 1)
    fake = real * 1.6 - 0.3  # partly outside [0, 1]
    x = MeanColourFeatures()(fake.clamp(0, 1))[0].numpy()
    y = MeanColourFeatures()(real)[0].numpy()
    k = lambda a, b: (a @ b.T / a.shape[1] + 1) ** 3  # noqa: E731
    m = 16
    ref = ((k(x, x).sum() - np.trace(k(x, x)) + k(y, y).sum() - np.trace(k(y, y))) / (m * (m - 1))
           - 2 * k(x, y).mean())
    q = sample_quality(fake, photos)
    assert q["kid"] == pytest.approx(ref, rel=1e-9, abs=1e-12)
    assert q["fid"] == pytest.approx(sample_quality(fake.clamp(0, 1), photos)["fid"], rel=1e-12)


@pytest.mark.parametrize("name, extra", [
    ("vq", ["--size", "32", "--channels", "8", "16", "--groups", "4", "--codebook-size", "16", "--no-attention",
            "--embed-dim", "2", "--adv-weight", "0.05", "--ema-decay", "0.05"]),  # below the EMA warm-up 1/10
    ("ddpm", ["--size", "16", "--channels", "8", "16", "--quality-samples", "0", "--ema-decay", "0.05"])])
def test_train_generator_cli_initial_weights_come_from_seed(tmp_path, name, extra):
    """The recipe in the JSON reproduces the model: the same --seed gives the same initial weights
    (the VQ's discriminator too), whatever torch's global generator holds before the command."""
    from safetensors.torch import load_file

    from genrestore.cli import main
    from genrestore.io import write_image

    write_image(tmp_path / "photos" / "p.png", torch.rand(1, 3, 36, 36, generator=torch.Generator().manual_seed(0)))
    models = []
    for run, global_seed in (("a", 1), ("b", 2)):
        torch.manual_seed(global_seed)  # a caller's global state must not leak into the weights
        assert main(["train", name, "--data", str(tmp_path / "photos"), "-o", str(tmp_path / run), "--steps", "1",
                     "--batch-size", "1", "--device", "cpu", "--seed", "0", "-q", *extra]) == 0
        models.append(load_file(str(tmp_path / run / "model.safetensors")))
    # and the recipe names every option that shapes the model: rerun as written, it gives the same weights
    recipe = json.loads((tmp_path / "a" / "model.json").read_text())["recipe"].split()
    assert recipe[:3] == ["genrestore", "train", name]
    assert main([*recipe[1:], "-o", str(tmp_path / "c"), "--device", "cpu", "-q"]) == 0
    models.append(load_file(str(tmp_path / "c" / "model.safetensors")))
    for other in models[1:]:
        assert models[0].keys() == other.keys()
        for k in models[0]:
            assert torch.equal(models[0][k], other[k]), k


def test_vq_training_refuses_crops_too_small_for_the_discriminator_up_front(photos, tmp_path):
    """Crops under 24 px leave the PatchDiscriminator no logits: refused before any step (it crashed
    at disc_start, half-way through by default)."""
    with pytest.raises(InputError, match="at least 24 px"):
        train_vq_autoencoder(tiny_vq(), photos, 2, batch_size=1, crop=16, out_dir=tmp_path / "a")
    assert not (tmp_path / "a").exists()  # without the GAN loss 16 px crops train (test_dead_codes_restart_...)


@pytest.mark.parametrize("extra, message", [
    (["transformer", "--vq", "missing.safetensors", "--dim", "64", "--heads", "3"],
     "--dim 64 is not divisible by --heads 3"),
    (["vq", "--channels", "8", "16"], "--groups 32 must divide every --channels width, got 8 16"),  # default groups
    (["vq", "--channels", "8", "12", "--groups", "8"], "--groups 8 must divide every --channels width, got 8 12")])
def test_train_generator_cli_names_the_options_a_network_cannot_be_built_from(tmp_path, capsys, extra, message):
    """One line naming the options, not torch's AssertionError or GroupNorm's num_groups, and before
    any work: the transformer's --vq is not even read."""
    from genrestore.cli import main

    assert main(["train", *extra, "--data", str(tmp_path / "photos"), "-o", str(tmp_path / "run"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err == f"genrestore: error: {message}\n"
    assert not (tmp_path / "run").exists()
