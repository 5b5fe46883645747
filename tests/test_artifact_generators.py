"""Training the VQ autoencoder, the token transformer and the DDPM: resume, quality records, learning."""

import json
import math

import pytest
import torch

pytest.importorskip("diffusers")
from genrestore.artifacts.generators import (CodeUsage, train_ddpm, train_token_transformer,  # noqa: E402
                                             train_vq_autoencoder)
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
    train_token_transformer(gpt, vq, flat, 60, batch_size=4, lr=3e-3, ema_decay=0.0, out_dir=tmp_path)
    q = json.loads((tmp_path / "model.json").read_text())["quality"]
    assert q["uniform_bits_per_token"] == pytest.approx(math.log2(16))
    assert q["bits_per_token"] < 0.5  # the sequence is deterministic: far below log2(16) = 4 bits
    with pytest.raises(Exception, match="square token grid"):
        train_token_transformer(TokenTransformer(16, 15, dim=8, depth=1, heads=2), vq, flat, 1, out_dir=tmp_path)


def test_ddpm_training_runs_and_saves(photos, tmp_path):
    torch.manual_seed(0)
    net = DenoisingUNet(3, schedule={"num_train_timesteps": 50}, unet=dict(
        sample_size=16, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D")))
    train_ddpm(net, photos, 2, batch_size=2, crop=16, out_dir=tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["steps"] == 2 and meta["config"]["arch"] == "denoising-unet"
    assert DenoisingUNet.load(tmp_path / "model.safetensors").config == net.config


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
                 "--size", "16", "--dim", "8", "--depth", "1", "--heads", "2", *data]) == 0
    meta = json.loads((tmp_path / "gpt" / "model.json").read_text())
    assert meta["config"]["length"] == 64 and "bits_per_token" in meta["quality"]
