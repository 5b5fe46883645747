"""Training the VQ autoencoder, the token transformer and the DDPM: resume, quality records, learning."""

import json
import math

import pytest
import torch

pytest.importorskip("diffusers")
from genrestore.artifacts.generators import train_ddpm, train_token_transformer, train_vq_autoencoder  # noqa: E402
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
