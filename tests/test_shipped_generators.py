"""The shipped artifact generators (vq-default, transformer-default, ddpm-default): each file loads,
does what its JSON says on the bundled photo, and `genrestore artifacts` runs with them by default."""

import json
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
import genrestore  # noqa: E402
from genrestore import weights as ws  # noqa: E402
from genrestore.diffusion import DenoisingUNet  # noqa: E402
from genrestore.io import read_image  # noqa: E402
from genrestore.metrics import psnr  # noqa: E402
from genrestore.models.vq import TokenTransformer, VQAutoencoder  # noqa: E402

PHOTO = Path(genrestore.__file__).parent / "assets" / "astronaut.png"  # 256 px, not a training photo


@pytest.fixture(scope="module")
def photo():
    return read_image(PHOTO)


@pytest.fixture(scope="module")
def vq():
    return VQAutoencoder.load(ws.model_file("vq-default")).eval()


def test_vq_default_reconstructs_the_photo_far_better_than_its_mean_colour(vq, photo):
    with torch.no_grad():
        tokens = vq.encode_tokens(photo)
        rec = vq.decode_tokens(tokens)
    value = float(psnr(rec, photo))
    flat = float(psnr(photo.mean((2, 3), keepdim=True).expand_as(photo), photo))
    assert value == pytest.approx(15.69, abs=0.05)  # measured when shipped (flat: 10.24 dB)
    assert value > flat + 5
    assert tokens.shape == (1, 64, 64) and tokens.unique().numel() > 100  # f = 4, many codes in use
    meta = json.loads(ws.model_file("vq-default").with_suffix(".json").read_text())
    assert meta["quality"]["reconstruction_psnr_db"] > 20 and meta["stored_dtype"] == "float16"


def test_transformer_default_predicts_the_photos_tokens_better_than_uniform(vq, photo):
    gpt = TokenTransformer.load(ws.model_file("transformer-default")).eval()
    assert gpt.vocab_size == vq.codebook_size and gpt.grid * vq.factor == 128
    with torch.no_grad():
        tokens = vq.encode_tokens(photo[..., 64:192, 64:192]).flatten(1)
        bits = float(torch.nn.functional.cross_entropy(gpt(tokens)[0], tokens[0])) / math.log(2)
    assert bits == pytest.approx(7.442, abs=0.02)  # measured when shipped (5.34 on held-out crops of the val photos)
    assert bits < math.log2(vq.codebook_size) - 1


def test_ddpm_default_inverts_and_decodes_the_photo(photo):
    from genrestore.artifacts import ddim_gaussian

    net = DenoisingUNet.load(ws.model_file("ddpm-default")).eval()
    x = photo[..., 96:160, 96:160]
    clean, _ = ddim_gaussian(net, x, level=0.0, t0=840, steps=24, schedule=net.config["schedule"])
    noisy, p = ddim_gaussian(net, x, level=0.5, generator=torch.Generator().manual_seed(0), t0=840, steps=24,
                             schedule=net.config["schedule"])
    round_trip, perturbed = float(psnr(clean, x)), float(psnr(noisy, x))
    assert round_trip == pytest.approx(34.44, abs=0.1)  # 34.47 when shipped, on the earlier grid ending at 839
    assert perturbed < round_trip - 1 and p["alpha"] == pytest.approx(0.3)


def test_artifacts_cli_uses_the_shipped_generators(tmp_path, photo):
    from genrestore.cli import main
    from genrestore.io import write_image

    write_image(tmp_path / "in" / "a.png", photo[..., :128, :128])
    for kind, extra in {"vq-replace": [], "ar-resample": [], "ddim-scale": ["--ddim-steps", "8"]}.items():
        out = tmp_path / kind
        assert main(["artifacts", str(tmp_path / "in"), "-o", str(out), "--kind", kind, "-q", *extra]) == 0
        rec = json.loads((out / "a.json").read_text())
        assert rec["models"] and rec["models"] == {k: f"{k}-default" for k in rec["models"]}
        assert read_image(out / "a.png").shape == (1, 3, 128, 128)
