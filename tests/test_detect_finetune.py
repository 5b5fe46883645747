"""DeSRA fine-tuning (seed 001 §3.3, §4.1) on tiny stand-in networks: the recipe's constants, the
aligned LR/HR crops, each loss term of Real-ESRGAN's objective against its formula written out
(BCE as softplus), the per-window means of the log, and resuming with the discriminator."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genrestore._checks import InputError
from genrestore.detect.finetune import FinetuneConfig, finetune, sample_batch


class TinySR(nn.Module):
    """x2: nearest upsampling plus a 3x3 convolution (random, seeded)."""

    scale = 2

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)  # test-only: weight init
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class TinyD(nn.Module):
    """A per-pixel logit map, like Real-ESRGAN's U-Net discriminator."""

    def __init__(self, seed=1):
        super().__init__()
        torch.manual_seed(seed)  # test-only: weight init
        self.conv = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


class L1Perceptual(nn.Module):
    """The perceptual loss's contract (``forward(x, y)``, ``y`` the target, not differentiated)
    with a distance anyone can compute: ``2 x mean |x - y|^2``."""

    network = "stand-in"

    def forward(self, x, y):
        return 2 * (x - y.detach()).pow(2).mean()


def _pair(seed=0, h=8, w=8):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, h, w, generator=g), torch.rand(1, 3, 2 * h, 2 * w, generator=g)


def test_config_is_desras_recipe():
    """DeSRA §4.1: HR patches of 256 px, 1000 iterations, lr 1e-4; Real-ESRGAN's Adam betas
    (0.9, 0.99) and loss weights 1 (L1), 1 (perceptual), 0.1 (GAN)."""
    cfg = FinetuneConfig()
    assert (cfg.hr_patch, cfg.iterations, cfg.lr, cfg.betas) == (256, 1000, 1e-4, (0.9, 0.99))
    assert (cfg.l1_weight, cfg.perceptual_weight, cfg.gan_weight) == (1.0, 1.0, 0.1)


def test_sample_batch_crops_aligned_patches_at_every_offset():
    """LR pixels encode their (row, column); the HR image is their nearest x2 upsampling, so an
    aligned crop pair satisfies HR patch == upsampled LR patch. On a 10 x 13 LR image with 4 px LR
    patches, the top-left corners cover every row 0..6 and column 0..9 (the last included)."""
    h, w = 10, 13
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                indexing="ij")
    lr = torch.stack([rows, cols, rows * 0]).unsqueeze(0)
    hr = lr.repeat_interleave(2, -2).repeat_interleave(2, -1)
    lrs, hrs = sample_batch([(lr, hr)], 2, 8, 300, torch.Generator().manual_seed(0))
    assert lrs.shape == (300, 3, 4, 4) and hrs.shape == (300, 3, 8, 8)
    torch.testing.assert_close(hrs, lrs.repeat_interleave(2, -2).repeat_interleave(2, -1), rtol=0, atol=0)
    assert set(lrs[:, 0, 0, 0].long().tolist()) == set(range(h - 4 + 1))
    assert set(lrs[:, 1, 0, 0].long().tolist()) == set(range(w - 4 + 1))
    with pytest.raises(InputError, match="multiple"):
        sample_batch([(lr, hr)], 2, 7, 1, torch.Generator())
    with pytest.raises(InputError, match="smaller"):
        sample_batch([(lr[..., :3], hr[..., :6])], 2, 8, 1, torch.Generator())  # 3 px wide, 4 px patch


def test_logged_loss_terms_are_real_esrgans_formulas(tmp_path):
    """lr = 0 keeps both networks at their initial weights, and a single pair of exactly one patch
    makes every batch the same, so every iteration's terms are: ``l1_w * mean|G(x) - y|``,
    ``p_w * P(G(x), y)``, ``gan_w * mean softplus(-D(G(x)))`` (BCE against "real") and, for D,
    ``mean softplus(-D(y)) + mean softplus(D(G(x)))``. The log's windows (every 2 iterations and
    at the end) are means over the iterations of each window: 3 iterations give windows [2, 3]."""
    lr, hr = _pair()
    g, d, p = TinySR(), TinyD(), L1Perceptual()
    with torch.no_grad():
        sr = g(lr.repeat(2, 1, 1, 1))
        hr2 = hr.repeat(2, 1, 1, 1)
        expected = {"l1": 0.5 * (sr - hr2).abs().mean(), "perceptual": 3.0 * 2 * (sr - hr2).pow(2).mean(),
                    "gan": 0.25 * F.softplus(-d(sr)).mean(),
                    "d": F.softplus(-d(hr2)).mean() + F.softplus(d(sr)).mean()}
    cfg = FinetuneConfig(iterations=3, lr=0.0, batch_size=2, hr_patch=16, save_every=2, l1_weight=0.5,
                         perceptual_weight=3.0, gan_weight=0.25)
    log = finetune(g, [(lr, hr)], cfg, tmp_path, perceptual=p, discriminator=d, progress=False)
    assert cfg.losses == ["l1", "perceptual", "gan"] and cfg.perceptual_network == "stand-in"
    assert [w["iteration"] for w in log["windows"]] == [2, 3]
    for window in log["windows"]:
        assert window.keys() == {"iteration", *expected}
        for k, v in expected.items():
            assert window[k] == pytest.approx(float(v), rel=1e-4, abs=1e-6), k


def test_perceptual_term_trains_the_generator_through_its_output(tmp_path):
    """With the L1 weight 0 and no discriminator, the perceptual term alone moves the generator:
    it is called as ``P(G(x), target)``, the first argument carrying the gradient."""
    lr, hr = _pair()
    g = TinySR()
    before = g.conv.weight.detach().clone()
    cfg = FinetuneConfig(iterations=1, lr=1e-2, batch_size=1, hr_patch=16, save_every=1, l1_weight=0.0)
    finetune(g, [(lr, hr)], cfg, tmp_path, perceptual=L1Perceptual(), progress=False)
    assert (g.conv.weight.detach() - before).abs().max() > 1e-3


def test_resume_with_a_discriminator_equals_a_straight_run_and_checks_the_settings(tmp_path):
    """3 iterations straight == 1, stop, resume to 3 for both G and D (their Adam moments are in
    the checkpoint); resuming with another learning rate or other run metadata is refused."""
    pairs = [_pair(0, 10, 12), _pair(1, 9, 8)]

    def run(out, iters, seed, meta=None, lr=1e-2):
        g, d = TinySR(seed), TinyD(seed + 1)
        cfg = FinetuneConfig(iterations=iters, lr=lr, batch_size=2, hr_patch=16, save_every=1)
        finetune(g, pairs, cfg, out, discriminator=d, progress=False, meta=meta or {"model": "a"})
        return torch.cat([t.detach().flatten() for t in [*g.parameters(), *d.parameters()]])

    straight = run(tmp_path / "a", 3, 0)
    run(tmp_path / "b", 1, 0)
    resumed = run(tmp_path / "b", 3, 5)  # other initial weights: only the checkpoint's give `straight`
    torch.testing.assert_close(resumed, straight, rtol=0, atol=1e-6)
    with pytest.raises(InputError, match=r"other settings \(lr\)"):
        run(tmp_path / "b", 4, 0, lr=1e-3)
    with pytest.raises(InputError, match=r"other settings \(model\)"):
        run(tmp_path / "b", 4, 0, meta={"model": "b"})
    # fewer iterations than the checkpoint's would return its 3-iteration weights as a 2-iteration run
    with pytest.raises(InputError, match="is at iteration 3, past --iterations 2; give --iterations 3 or more"):
        run(tmp_path / "b", 2, 0)
