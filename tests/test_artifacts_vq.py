"""VQ token replacement and autoregressive resampling: tokens against brute force and formulas."""

import pytest
import torch

from genrestore._checks import InputError
from genrestore.artifacts import ar_resample, replace_tokens, vq_replace

pytest.importorskip("diffusers")
from genrestore.models.vq import TokenTransformer, VQAutoencoder  # noqa: E402


@pytest.fixture(scope="module")
def vq():
    torch.manual_seed(0)
    return VQAutoencoder(32, 4, (8, 16, 16), norm_num_groups=4).eval()


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(1)
    return TokenTransformer(32, 16, dim=16, depth=2, heads=2).eval()


def gens(n, base=0):
    return [torch.Generator().manual_seed(base + i) for i in range(n)]


def test_tokens_are_the_nearest_codes(vq):
    x = torch.rand(2, 3, 16, 12)
    with torch.no_grad():
        z_e = vq.vq.encode(x * 2 - 1).latents                    # (N, d, h, w)
        codebook = vq.vq.quantize.embedding.weight              # (K, d)
        dist = ((z_e.permute(0, 2, 3, 1)[..., None, :] - codebook) ** 2).sum(-1)
        assert torch.equal(vq.encode_tokens(x), dist.argmin(-1))
        # decoding the tokens equals decoding the quantized latents of the forward pass
        recon, _ = vq(x)
        torch.testing.assert_close(vq.decode_tokens(vq.encode_tokens(x)), recon.clamp(0, 1), atol=1e-5, rtol=0)  # straight-through rounding
    with pytest.raises(InputError, match="multiples of 4"):
        vq.encode_tokens(torch.rand(1, 3, 10, 12))


def test_attention_free_autoencoder_round_trips_its_config(tmp_path):
    from diffusers.models.attention_processor import Attention

    torch.manual_seed(0)
    plain = VQAutoencoder(16, 4, (8, 16), norm_num_groups=4, mid_attention=False)
    assert not any(isinstance(m, Attention) for m in plain.modules())
    assert any(isinstance(m, Attention) for m in VQAutoencoder(16, 4, (8, 16), norm_num_groups=4).modules())
    plain.save(tmp_path / "vq.safetensors")
    back = VQAutoencoder.load(tmp_path / "vq.safetensors")
    assert back.config["mid_attention"] is False
    x = torch.rand(1, 3, 24, 16)
    assert torch.equal(back.encode_tokens(x), plain.eval().encode_tokens(x))


def test_replace_tokens_changes_only_the_rectangle():
    tokens = torch.arange(2 * 6 * 7).view(2, 6, 7) % 32
    out, rects = replace_tokens(tokens, 4, 32, gens(2))
    for i, (top, left, h, w) in enumerate(rects):
        assert (h, w) == (4, 4) and 0 <= top <= 2 and 0 <= left <= 3
        inside = torch.zeros(6, 7, dtype=torch.bool)
        inside[top:top + h, left:left + w] = True
        assert torch.equal(out[i][~inside], tokens[i][~inside])
        assert out[i][inside].min() >= 0 and out[i][inside].max() < 32
        assert not torch.equal(out[i][inside], tokens[i][inside])
    alone, _ = replace_tokens(tokens[1:], 4, 32, gens(1, base=1))  # per-image generators
    assert torch.equal(alone[0], out[1])
    clipped, rects = replace_tokens(tokens, 9, 32, gens(2))
    assert rects[0] == [0, 0, 6, 7]


def test_vq_replace_level_zero_is_the_reconstruction(vq):
    x = torch.rand(1, 3, 15, 13)  # padded to 16 x 16, cropped back
    art, p = vq_replace(vq, x, 0.0, gens(1))
    from genrestore.restore.idm import pad_to_multiple

    with torch.no_grad():
        ref = vq.decode_tokens(vq.encode_tokens(pad_to_multiple(x, 4)[0]))[..., :15, :13]
    assert art.shape == x.shape and torch.equal(art, ref) and p["rects"][0][2] == 0
    _, p = vq_replace(vq, x, 0.5, gens(1))
    assert p["rect_tokens"] == 4  # the paper's 4 x 4 at level 0.5
    with pytest.raises(InputError, match=r"level in \[0, 1\]"):
        vq_replace(vq, x, 1.5)


def test_transformer_is_causal(gpt):
    a = torch.randint(0, 32, (1, 16), generator=torch.Generator().manual_seed(0))
    b = a.clone()
    b[0, 9:] = (b[0, 9:] + 5) % 32
    with torch.no_grad():
        la, lb = gpt(a), gpt(b)
    torch.testing.assert_close(la[0, :10], lb[0, :10])   # position i sees tokens < i only
    assert not torch.allclose(la[0, 10:], lb[0, 10:])


def test_nearest_codes_are_exact_at_near_ties():
    # codes far from the origin and close together: float32 distances by |z|^2 - 2 z.e + |e|^2
    # (torch.cdist's path for many rows, which diffusers' quantizer takes) lose the difference
    vq = VQAutoencoder(32, 4, (8, 16, 16), norm_num_groups=4).eval()
    g = torch.Generator().manual_seed(0)
    codes = 100 + 0.05 * torch.randn(32, 4, generator=g)
    vq.vq.quantize.embedding.weight.data.copy_(codes)
    a, b = torch.randint(0, 32, (2, 400), generator=g)
    t = 0.5 + 0.02 * torch.rand(400, generator=g)  # just past the midpoint, towards code b
    z = ((1 - t)[:, None] * codes[a] + t[:, None] * codes[b]).T.reshape(1, 4, 20, 20)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 4)
    truth = ((flat.double()[:, None] - codes.double()) ** 2).sum(-1).argmin(1)  # brute force in float64
    z_q, tokens = vq.nearest_codes(z)
    assert torch.equal(tokens.view(-1), truth)
    assert torch.equal(z_q.permute(0, 2, 3, 1).reshape(-1, 4), codes[truth])
    assert not torch.equal(torch.cdist(flat, codes).argmin(1), truth)  # float32 gets some of these wrong
    assert vq.nearest_codes(z[:, :, :0])[1].shape == (1, 0, 20)


def test_sampling_follows_top_k_and_temperature(gpt):
    n = 6000
    tokens = torch.randint(0, 32, (1, 16), generator=torch.Generator().manual_seed(2)).expand(n, 16).clone()
    keep = torch.ones(16, dtype=torch.bool)
    keep[5] = False
    out = gpt.sample(tokens, keep, temperature=0.7, top_k=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[:, keep], tokens[:, keep])
    with torch.no_grad():
        logits = gpt(tokens[:1])[0, 5].double()
    top, idx = logits.topk(3)
    p = torch.softmax(top / 0.7, 0)
    freq = torch.stack([(out[:, 5] == k).double().mean() for k in idx])
    assert freq.sum() == 1  # nothing outside the top 3
    assert (freq - p).abs().max() < 0.025  # 6000 draws: std <= 0.0065
    greedy = gpt.sample(tokens[:2], keep, temperature=1.0, top_k=1)
    assert torch.all(greedy[:, 5] == idx[0])
    with pytest.raises(InputError, match="knows 16 positions"):
        gpt.sample(torch.zeros(1, 20, dtype=torch.long), torch.zeros(20, dtype=torch.bool))


def test_draw_runs_the_inverse_cdf_in_code_order(gpt):
    # top 2 of [0, 2, 1, 3] at T = 1: codes 1 and 3 with p = e^2 / (e^2 + e^3) = 0.2689 and 0.7311,
    # laid out in code order, so u < 0.2689 picks code 1 and u above it code 3
    logits = torch.tensor([[0.0, 2.0, 1.0, 3.0]]).expand(5, 4)
    u = torch.tensor([0.0, 0.2, 0.268, 0.27, 0.999], dtype=torch.float64)
    assert gpt._draw(logits, u, 1.0, 2).tolist() == [1, 1, 1, 3, 3]
    # near-ties whose order flips under rounding-sized changes (as with another thread count)
    # give the same codes: the draw does not depend on the order of the likelihoods
    base = torch.linspace(0, 1e-3, 32, dtype=torch.float64)[torch.randperm(32, generator=torch.Generator().manual_seed(0))]
    nudged = base + 1e-4 * torch.randn(32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert not torch.equal(base.argsort(), nudged.argsort())
    u = torch.rand(200, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    a = gpt._draw(base.float().expand(200, 32), u, 18.0, 32)
    b = gpt._draw(nudged.float().expand(200, 32), u, 18.0, 32)
    assert (a == b).float().mean() > 0.95  # only draws within ~1e-5 of a CDF step may differ
    assert len(a.unique()) > 20


def test_incremental_logits_equal_the_full_forward(gpt):
    tokens = torch.randint(0, 32, (3, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = gpt(tokens)
        cache = []
        parts = [gpt._cached_logits(gpt._inputs(tokens)[:, :5], cache)]  # a prefill of 5 positions
        for i in range(5, 16):  # then one position at a time
            parts.append(gpt._cached_logits(gpt.tok(tokens[:, i - 1:i]) + gpt.pos[:, i:i + 1], cache))
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)
    assert cache[0][0].shape == (3, 2, 16, 8)  # (N, heads, L, dim / heads) per layer


def test_ar_resample_keeps_the_prefix(vq, gpt):
    x = torch.rand(2, 3, 16, 16)
    art, p = ar_resample(vq, gpt, x, 0.5, gens(2), top_k=500)
    assert art.shape == x.shape and p["first"] == 16 - round(0.1 * 16) and p["tokens_resampled"] == 2
    art_r, p = ar_resample(vq, gpt, x, 1.0, gens(2), region="rectangle")
    assert all(r[2] == r[3] == 2 for r in p["rects"])  # sqrt(0.2 * 16) ~ 2
    big, p = ar_resample(vq, gpt, torch.rand(1, 3, 32, 24), 0.5, gens(1))  # 8x6 tokens: a sliding window
    assert big.shape == (1, 3, 32, 24) and p["tokens_resampled"] == round(0.1 * 48)
    with pytest.raises(InputError, match="at least 16 px"):
        ar_resample(vq, gpt, torch.rand(1, 3, 8, 16), 0.5)  # 2x4 tokens, smaller than the 4x4 grid


def test_sliding_window_sampling_conditions_on_the_window_before_the_position(gpt):
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, 32, (2, 6, 7), generator=g)
    keep = torch.ones(6, 7, dtype=torch.bool)
    keep[5, 1] = False  # window rows 2..5, columns 0..3 (centred, clipped to the grid); local position 3 * 4 + 1
    out = gpt.sample_grid(tokens, keep, top_k=1)
    with torch.no_grad():
        expected = gpt(tokens[:, 2:6, 0:4].reshape(2, -1)[:, :14])[:, 13].argmax(-1)
    assert torch.equal(out[:, 5, 1], expected) and torch.equal(out[:, keep], tokens[:, keep])
    outside = tokens.clone()
    outside[:, 0:2] = (outside[:, 0:2] + 1) % 32  # rows above the window
    outside[:, 5, 2:] = (outside[:, 5, 2:] + 1) % 32  # after the position in raster order
    assert torch.equal(gpt.sample_grid(outside, keep, top_k=1)[:, 5, 1], expected)
    # on the model's own grid it is exactly sample()
    small, k = tokens[:, :4, :4], torch.rand(2, 4, 4, generator=g) < 0.5
    g1, g2 = gens(2, 7), gens(2, 7)
    assert torch.equal(gpt.sample_grid(small, k, 2.0, 5, g1).flatten(1), gpt.sample(small.flatten(1), k.flatten(1), 2.0, 5, g2))


def test_artifacts_cli_writes_pairs_and_refuses_bad_input(vq, gpt, tmp_path, capsys):
    import json

    from genrestore.cli import main
    from genrestore.diffusion import DenoisingUNet
    from genrestore.io import read_image, write_image

    torch.manual_seed(0)
    vq.save(tmp_path / "vq.safetensors")
    gpt.save(tmp_path / "gpt.safetensors")
    DenoisingUNet(3, schedule={"num_train_timesteps": 100}, unet=dict(
        sample_size=8, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))
    ).save(tmp_path / "ddpm.safetensors")
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    write_image(tmp_path / "in" / "a.png", x)
    models = {"vq-replace": ["--vq", str(tmp_path / "vq.safetensors")],
              "ar-resample": ["--vq", str(tmp_path / "vq.safetensors"), "--transformer", str(tmp_path / "gpt.safetensors")],
              "ddim-gauss": ["--ddpm", str(tmp_path / "ddpm.safetensors"), "--ddim-steps", "4"],
              "identity": []}
    for kind, extra in models.items():
        out = tmp_path / kind
        assert main(["artifacts", str(tmp_path / "in"), "-o", str(out), "--kind", kind, "-q", *extra]) == 0
        rec = json.loads((out / "a.json").read_text())
        assert read_image(out / "a.png").shape == (1, 3, 16, 16)
        assert torch.equal(read_image(out / "a_clean.png"), read_image(tmp_path / "in" / "a.png"))
        assert rec["kind"] == kind and rec["seed"] == 0
    # T0 defaults to DiffGAR's 840 of 1000 timesteps scaled to the model's T = 100; past T - 1 is refused
    assert json.loads((tmp_path / "ddim-gauss" / "a.json").read_text())["t0"] == 84
    capsys.readouterr()
    assert main(["artifacts", str(tmp_path / "in"), "-o", str(tmp_path / "t0"), "--kind", "ddim-gauss", "-q", "--t0",
                 "100", *models["ddim-gauss"]]) == 2
    assert "t0 100 is past the DDPM's last timestep 99" in capsys.readouterr().err
    # images of one size go through together; each keeps its own seed's artifact
    write_image(tmp_path / "in3" / "a.png", x)
    write_image(tmp_path / "in3" / "b.png", torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)))
    write_image(tmp_path / "in3" / "c.png", torch.rand(1, 3, 16, 20, generator=torch.Generator().manual_seed(2)))
    for kind in ("vq-replace", "ar-resample"):
        for bs in ("1", "3"):
            assert main(["artifacts", str(tmp_path / "in3"), "-o", str(tmp_path / f"b{bs}{kind}"), "--kind", kind,
                         "--batch-size", bs, "-q", *models[kind],
                         *(["--region", "rectangle"] if kind == "ar-resample" else [])]) == 0
        for name in "abc":
            one, three = (read_image(tmp_path / f"b{bs}{kind}" / f"{name}.png") for bs in "13")
            assert (one - three).abs().max() <= 1 / 255 + 1e-6
            recs = [json.loads((tmp_path / f"b{bs}{kind}" / f"{name}.json").read_text()) for bs in "13"]
            assert recs[0]["rects"] == recs[1]["rects"] and len(recs[0]["rects"]) == 4
    assert torch.equal(read_image(tmp_path / "b1vq-replace" / "a.png"), read_image(tmp_path / "vq-replace" / "a.png"))
    # same seed, same artifact
    assert main(["artifacts", str(tmp_path / "in"), "-o", str(tmp_path / "again"), "--kind", "vq-replace", "-q",
                 *models["vq-replace"]]) == 0
    assert torch.equal(read_image(tmp_path / "again" / "a.png"), read_image(tmp_path / "vq-replace" / "a.png"))
    capsys.readouterr()
    assert main(["artifacts", str(tmp_path / "in"), "-o", str(tmp_path / "x"), "--kind", "ddim-gauss", "--ddpm",
                 str(tmp_path / "nope.safetensors")]) == 2
    assert "nope.safetensors" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # argparse refuses it: a usage error
        main(["artifacts", str(tmp_path / "in"), "-o", str(tmp_path / "x"), "--kind", "identity", "--level", "2"])
    assert e.value.code == 2 and "[0, 1]" in capsys.readouterr().err


def test_artifacts_cli_cuts_seeded_crops(tmp_path, capsys):
    """--crop/--per-image: each pair is the photo's window at the recorded position (drawn from the
    seed, the same for every kind), named STEM-j; a photo smaller than the crop is refused."""
    import json

    from genrestore.cli import main
    from genrestore.cli_artifacts import crop_items
    from genrestore.io import read_image, write_image

    photo = torch.rand(1, 3, 20, 30, generator=torch.Generator().manual_seed(0))
    write_image(tmp_path / "in" / "a.png", photo)
    x = read_image(tmp_path / "in" / "a.png")
    for out in ("o1", "o2"):
        assert main(["artifacts", str(tmp_path / "in"), "-o", str(tmp_path / out), "--kind", "identity",
                     "--crop", "8", "--per-image", "3", "-q"]) == 0
        # -q hides the progress bar only: the summary is printed as by every command
        assert f"3 identity pairs (level 0.5), 0 already done -> {tmp_path / out}" in capsys.readouterr().out
    boxes = set()
    for j in range(3):
        rec = json.loads((tmp_path / "o1" / f"a-{j}.json").read_text())
        x0, y0, side = rec["crop_xy_size"]
        assert side == 8 and 0 <= x0 <= 22 and 0 <= y0 <= 12
        assert torch.equal(read_image(tmp_path / "o1" / f"a-{j}_clean.png"), x[..., y0:y0 + 8, x0:x0 + 8])
        assert torch.equal(read_image(tmp_path / "o1" / f"a-{j}.png"), x[..., y0:y0 + 8, x0:x0 + 8])  # identity
        assert rec == {**json.loads((tmp_path / "o2" / f"a-{j}.json").read_text()),
                       "clean": rec["clean"], "artifact": rec["artifact"]}
        boxes.add((x0, y0))
    assert len(boxes) == 3  # 3 draws over 23 x 13 positions: distinct here
    items = crop_items([tmp_path / "in" / "a.png"], [(20, 30)], 8, 3, seed=1)
    assert {it.box[:2] for it in items} != boxes  # another seed, other windows
    assert [it.name.name for it in crop_items([tmp_path / "in" / "a.png"], [(20, 30)], None, 1, 0)] == ["a.png"]
    with pytest.raises(InputError, match="--per-image 3 needs --crop"):  # was ignored
        crop_items([tmp_path / "in" / "a.png"], [(20, 30)], None, 3, 0)
    capsys.readouterr()
    assert main(["artifacts", str(tmp_path / "in"), "-o", str(tmp_path / "o3"), "--kind", "identity",
                 "--crop", "21"]) == 2
    assert "smaller than --crop 21" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["artifacts", str(tmp_path / "in"), "-o", str(tmp_path / "o3"), "--kind", "identity",
              "--crop", "8", "--per-image", "0"])
    assert e.value.code == 2
    assert not (tmp_path / "o3").exists()


def test_artifacts_cli_resume_and_shards(vq, tmp_path, capsys):
    """--resume remakes only pairs that are missing, damaged or of other settings (here another
    --level); --shard i/n together equal one run."""
    from genrestore.cli import main
    from genrestore.io import write_image

    vq.save(tmp_path / "vq.safetensors")
    write_image(tmp_path / "in" / "a.png", torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0)))
    base = ["artifacts", str(tmp_path / "in"), "--kind", "vq-replace", "--vq", str(tmp_path / "vq.safetensors"),
            "--crop", "16", "--per-image", "3"]
    assert main([*base, "-o", str(tmp_path / "full"), "-q"]) == 0
    names = [f"a-{j}{s}.png" for j in range(3) for s in ("", "_clean")]
    full = {n: (tmp_path / "full" / n).read_bytes() for n in names}
    (tmp_path / "full" / "a-1_clean.png").write_bytes(b"")
    capsys.readouterr()
    assert main([*base, "-o", str(tmp_path / "full"), "--resume"]) == 0
    assert "1 vq-replace pair (level 0.5), 2 already done" in capsys.readouterr().out
    assert {n: (tmp_path / "full" / n).read_bytes() for n in names} == full
    assert main([*base, "-o", str(tmp_path / "full"), "--resume", "--level", "0.75"]) == 0
    assert "3 vq-replace pairs (level 0.75), 0 already done" in capsys.readouterr().out
    for i in range(2):
        assert main([*base, "-o", str(tmp_path / "shards"), "--shard", f"{i}/2", "-q"]) == 0
    assert {n: (tmp_path / "shards" / n).read_bytes() for n in names} == full


def test_ar_resample_changes_only_the_resampled_tokens(vq, gpt, monkeypatch):
    """The tokens handed to the decoder equal the clean image's outside the recorded region (the
    suffix from ``first``, or each image's rectangle) and differ inside it."""
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        clean = vq.encode_tokens(x)
    decoded = []
    decode = vq.decode_tokens
    monkeypatch.setattr(vq, "decode_tokens", lambda t: decoded.append(t.clone()) or decode(t))
    _, p = ar_resample(vq, gpt, x, 1.0, gens(2), temperature=18.0)
    inside = torch.zeros(2, 16, dtype=torch.bool)
    inside[:, p["first"]:] = True
    assert p["first"] == 16 - round(0.2 * 16)
    out = decoded[-1].view(2, 16)
    assert torch.equal(out[~inside], clean.view(2, 16)[~inside]) and not torch.equal(out[inside], clean.view(2, 16)[inside])
    _, p = ar_resample(vq, gpt, x, 1.0, gens(2), temperature=18.0, region="rectangle")
    for i, (top, left, h, w) in enumerate(p["rects"]):
        inside = torch.zeros(4, 4, dtype=torch.bool)
        inside[top:top + h, left:left + w] = True
        assert inside.sum() == p["tokens_resampled"] == 4
        assert torch.equal(decoded[-1][i][~inside], clean[i][~inside])
        assert not torch.equal(decoded[-1][i][inside], clean[i][inside])


def test_rectangle_side_rounds_and_positions_and_codes_are_uniform(vq):
    """r = round(8 level) (module docstring): 6 tokens at level 0.7, 2 at 0.2. A 2 x 2 rectangle in a 3 x 3
    grid takes each of its 4 positions, and its codes each of the 3 codes of the book, over 64 images
    (each has probability 1/4 or 1/3 per image: missing one is a chance of about 1e-8)."""
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert vq_replace(vq, x, 0.7, gens(1))[1]["rect_tokens"] == 6
    assert vq_replace(vq, x, 0.2, gens(1))[1]["rect_tokens"] == 2
    out, rects = replace_tokens(torch.zeros(64, 3, 3, dtype=torch.long), 2, 3, gens(64))
    assert {(top, left) for top, left, _, _ in rects} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    codes = torch.cat([out[i, top:top + 2, left:left + 2].flatten() for i, (top, left, _, _) in enumerate(rects)])
    assert set(codes.tolist()) == {0, 1, 2}


def test_ar_resample_rectangle_fits_the_grid_and_bad_settings_are_refused(vq, gpt):
    """fraction 1 on an 8 x 6 token grid: sqrt(48) ~ 7 is clipped to the grid's short side, a 6 x 6 square
    (36 tokens); a fraction past 1 and a transformer over another codebook are InputErrors."""
    x = torch.rand(1, 3, 32, 24, generator=torch.Generator().manual_seed(5))
    _, p = ar_resample(vq, gpt, x, 0.5, gens(1), region="rectangle", fraction=1.0)
    (top, left, h, w), = p["rects"]
    assert (h, w, left) == (6, 6, 0) and 0 <= top <= 2 and p["tokens_resampled"] == 36
    with pytest.raises(InputError, match="fraction"):
        ar_resample(vq, gpt, x, 0.5, gens(1), fraction=1.5)
    torch.manual_seed(2)
    other = TokenTransformer(16, 16, dim=16, depth=1, heads=2).eval()  # 16 codes, the autoencoder has 32
    with pytest.raises(InputError, match="of 16 codes"):
        ar_resample(vq, other, x, 0.5, gens(1))


def test_ar_resample_size_message_gives_tokens_as_width_x_height():
    """The CLI names an image W x H px; the token grid it then gave was H x W (a 200x40 px image
    "has 10x50 tokens"). By hand: ceil(200 / 4) = 50 tokens wide, 40 / 4 = 10 tall."""
    from types import SimpleNamespace

    from genrestore.artifacts.vq import check_ar_resample_size

    vq, gpt = SimpleNamespace(factor=4, codebook_size=512), SimpleNamespace(grid=32, vocab_size=512)
    with pytest.raises(InputError, match="this image has 50x10 tokens"):
        check_ar_resample_size(vq, gpt, (40, 200))
