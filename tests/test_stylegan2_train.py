"""Training a StyleGAN2 prior: the residual discriminator, ADA-style augmentation, the loop.

Tiny networks (8-16 px, 8 channels); nothing is downloaded.
"""

from __future__ import annotations

import json

import pytest
import torch

from genrestore._checks import InputError
from genrestore.models import stylegan2_train as sgt
from genrestore.models.stylegan2 import StyleGAN2Generator, load_stylegan2
from genrestore.models.stylegan2_train import StyleGAN2Discriminator, augment, train_stylegan2


def tiny_g() -> StyleGAN2Generator:
    return StyleGAN2Generator(z_dim=8, w_dim=8, resolution=8, channel_base=64, channel_max=8, n_mapping_layers=1,
                              generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def photos():
    g = torch.Generator().manual_seed(0)
    return [torch.rand(3, 20, 24, generator=g), torch.rand(3, 24, 20, generator=g)]


def test_discriminator_downsamples_to_4px_and_uses_the_minibatch_std():
    torch.manual_seed(0)  # test-only: weight init
    d = StyleGAN2Discriminator(16, channel_base=64, channel_max=8)
    assert len(d.blocks) == 2  # 16 -> 8 -> 4
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    out = d(x)
    assert out.shape == (4,) and torch.isfinite(out).all()
    # the minibatch-std feature couples the images of a group: changing image 3 moves image 0's logit
    x2 = x.clone()
    x2[3] = -x2[3]
    assert not torch.allclose(d(x2)[0], out[0])
    # a batch of 6 groups by 3 (not by 1, whose std feature is a constant): image 2 moves image 0
    x6 = torch.rand(6, 3, 16, 16) * 2 - 1
    x6b = x6.clone()
    x6b[2] = -x6b[2]
    assert not torch.allclose(d(x6b)[0], d(x6)[0])
    with pytest.raises(InputError, match="power-of-two"):
        StyleGAN2Discriminator(12)


def test_augment_is_identity_at_p0_and_global_per_image_at_p1():
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    assert augment(x, 0.0) is x
    # a constant image stays constant under flips, rotations, translations and global colour changes
    flat = torch.rand(6, 3, 1, 1).expand(6, 3, 16, 16) * 2 - 1
    out = augment(flat, 1.0, torch.Generator().manual_seed(1))
    assert torch.allclose(out, out[..., :1, :1].expand_as(out), atol=1e-6)
    assert not torch.allclose(out, flat)  # the colour ops did act
    # differentiable: gradients reach every pixel that a translation (<= 2 px at 16 px) keeps in view
    xg = x.clone().requires_grad_(True)
    augment(xg, 1.0, torch.Generator().manual_seed(2)).square().sum().backward()
    assert (xg.grad.abs() > 0).float().mean() >= (14 / 16) ** 2


def test_geometric_ops_permute_pixels():
    """With the colour ops at identity (monkeypatched draws are not needed): a flip/rotation/shift
    of a one-hot image moves the hot pixel but keeps one pixel hot per image at p = 1, colour aside."""
    x = torch.full((4, 3, 16, 16), -1.0)
    x[:, :, 8, 8] = 1.0  # far enough from the border for any shift of up to 2 px
    out = augment(x, 1.0, torch.Generator().manual_seed(3))
    hot = (out - out.amin(dim=(2, 3), keepdim=True)).abs().sum(1) > 1e-4
    assert hot.flatten(1).sum(1).tolist() == [1, 1, 1, 1]


def test_train_saves_a_loadable_generator_and_resumes_exactly(photos, tmp_path):
    full = train_stylegan2(tiny_g(), photos, steps=3, batch_size=4, crop=16, out_dir=tmp_path / "a", save_every=1)
    meta = json.loads((tmp_path / "a" / "model.json").read_text())
    assert meta["steps"] == 3 and meta["config"]["arch"] == "stylegan2" and "ada_p" in meta
    g = load_stylegan2(tmp_path / "a" / "model.safetensors")
    assert g.generate(torch.randn(2, 8)).shape == (2, 3, 8, 8)
    assert g.mapping.w_avg.abs().sum() > 0  # set from the EMA generator's mean w
    train_stylegan2(tiny_g(), photos, steps=2, batch_size=4, crop=16, out_dir=tmp_path / "b", save_every=1)
    resumed = train_stylegan2(tiny_g(), photos, steps=3, batch_size=4, crop=16, out_dir=tmp_path / "b", save_every=1)
    for k, v in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k
    with pytest.raises(InputError, match="smaller"):
        train_stylegan2(tiny_g(), photos, steps=1, crop=4, out_dir=tmp_path / "c")


def test_ada_raises_p_when_the_discriminator_overfits(photos, tmp_path, monkeypatch):
    """ADA §3: r_t = E[sign D(real)] above 0.6 raises p by batch * 4 / (ada_kimg * 1000) every 4 steps."""
    monkeypatch.setattr(StyleGAN2Discriminator, "forward", lambda self, x: (x * 0).sum(dim=(1, 2, 3)) + 1.0 + 0 * self.out.bias)
    train_stylegan2(tiny_g(), photos, steps=8, batch_size=2, crop=16, ada_kimg=0.1, r1_gamma=0.0,
                    out_dir=tmp_path, save_every=8)
    p = json.loads((tmp_path / "model.json").read_text())["ada_p"]
    assert p == pytest.approx(2 * 2 * 4 / 100)  # two adjustments of 2 * 4 / (0.1 * 1000)


def test_ada_resumes_mid_interval_like_a_straight_run(photos, tmp_path, monkeypatch):
    """The signs of an unfinished ADA interval travel in the checkpoint: D says "fake" (-1) at steps
    0-1 and "real" (+1) at 2-3, so r_t over the interval is 0 < 0.6 and p stays 0, also when the
    run stops after step 1 and resumes (r_t from steps 2-3 alone would be 1 and raise p)."""
    from genrestore.diffusion.train import TrainRun

    state = {"step": 0}
    draw = TrainRun.draw

    def tracking_draw(self, tag):
        if tag.startswith("loss-"):
            state["step"] = int(tag.split("-")[1])
        return draw(self, tag)

    monkeypatch.setattr(TrainRun, "draw", tracking_draw)
    monkeypatch.setattr(StyleGAN2Discriminator, "forward", lambda self, x: (x * 0).sum(dim=(1, 2, 3)) + 0 * self.out.bias
                        + (1.0 if state["step"] >= 2 else -1.0))
    kw = dict(batch_size=2, crop=16, ada_kimg=0.1, r1_gamma=0.0, save_every=1)
    train_stylegan2(tiny_g(), photos, steps=4, out_dir=tmp_path / "straight", **kw)
    train_stylegan2(tiny_g(), photos, steps=2, out_dir=tmp_path / "resumed", **kw)
    train_stylegan2(tiny_g(), photos, steps=4, out_dir=tmp_path / "resumed", **kw)
    for run in ("straight", "resumed"):
        assert json.loads((tmp_path / run / "model.json").read_text())["ada_p"] == 0.0


def test_compiled_training_matches_eager(photos, tmp_path):
    """--compile compiles the mapping, synthesis and discriminator the loop calls (dynamo with the
    eager backend here): the same weights up to float rounding, the same checkpoint keys."""
    from torch._dynamo import register_backend

    compiled = []

    @register_backend(name="genrestore_test_counting")
    def counting(gm, example_inputs):  # the eager backend, counting the graphs handed to it
        compiled.append(gm)
        return gm.forward

    kw = dict(steps=2, batch_size=4, crop=16, save_every=1)
    ref = train_stylegan2(tiny_g(), photos, out_dir=tmp_path / "ref", **kw).state_dict()
    got = train_stylegan2(tiny_g(), photos, out_dir=tmp_path / "fast", compile="genrestore_test_counting",
                          **kw).state_dict()
    assert len(compiled) >= 3  # mapping, synthesis, discriminator (graph breaks may add more)
    assert list(got) == list(ref)
    assert all(torch.allclose(got[k], ref[k], atol=1e-4) for k in ref)


def test_cli_trains_a_generator_for_inversion(tmp_path):
    from genrestore.cli import main
    from genrestore.io import write_image

    g = torch.Generator().manual_seed(0)
    for i in range(2):
        write_image(tmp_path / "photos" / f"p{i}.png", torch.rand(1, 3, 24, 24, generator=g))
    run = tmp_path / "run"
    assert main(["train", "stylegan2", "--data", str(tmp_path / "photos"), "-o", str(run), "--resolution", "8",
                 "--size", "16", "--steps", "2", "--batch-size", "2", "--z-dim", "8", "--mapping-layers", "1",
                 "--channel-base", "64", "--channel-max", "8", "--device", "cpu", "-q"]) == 0
    meta = json.loads((run / "model.json").read_text())
    assert "train stylegan2" in meta["recipe"] and meta["config"]["resolution"] == 8
    assert load_stylegan2(run / "model.safetensors").resolution == 8
    assert sgt.r1_gamma_auto(8, 2) == pytest.approx(0.0002 * 64 / 2)


def test_lazy_r1_scales_the_discriminators_adam(photos, tmp_path, monkeypatch):
    """StyleGAN2 App. B (NVIDIA's training loop): R1 every 16 steps means lr * c and betas ** c for
    D's Adam, c = 16 / 17; G (no regulariser here) keeps lr and betas (0, 0.99)."""
    made = []

    class Recording(torch.optim.Adam):
        def __init__(self, params, **kw):
            made.append(kw)
            super().__init__(params, **kw)

    monkeypatch.setattr(torch.optim, "Adam", Recording)
    train_stylegan2(tiny_g(), photos, steps=1, batch_size=2, crop=16, lr=0.002, out_dir=tmp_path)
    c = 16 / 17
    g_kw, d_kw = made  # G's optimizer, then D's
    assert g_kw["lr"] == 0.002 and g_kw["betas"] == (0.0, 0.99)
    assert d_kw["lr"] == pytest.approx(0.002 * c)
    assert d_kw["betas"][0] == 0.0 and d_kw["betas"][1] == pytest.approx(0.99 ** c)


def test_cli_recipe_records_the_ema_decay(tmp_path):
    """The model JSON's recipe reproduces the model: a non-default --ema-decay (which sets the
    returned EMA weights) is in it."""
    from genrestore.cli import main
    from genrestore.io import write_image

    write_image(tmp_path / "photos" / "p.png", torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    run = tmp_path / "run"
    assert main(["train", "stylegan2", "--data", str(tmp_path / "photos"), "-o", str(run), "--resolution", "8",
                 "--size", "16", "--steps", "1", "--batch-size", "2", "--z-dim", "8", "--mapping-layers", "1",
                 "--channel-base", "64", "--channel-max", "8", "--ema-decay", "0.5", "--device", "cpu", "-q"]) == 0
    assert "--ema-decay 0.5" in json.loads((run / "model.json").read_text())["recipe"]
