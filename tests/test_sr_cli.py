"""SR loading, tiled inference, and the upscale / detect / train desra commands, on tiny random
networks of the real architectures (no converted weights needed)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from genrestore.cli import main
from genrestore.io import read_image, write_image
from genrestore._checks import InputError
from genrestore.models.sr import build_sr, load_sr, peak_activation_bytes, sr_scale, upscale


def _save_model(path, config, seed=0):
    torch.manual_seed(seed)
    net = build_sr(config)
    with torch.no_grad():  # small weights keep outputs in range, so clamping does not hide differences
        for p in net.parameters():
            p.mul_(0.5)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    path.with_suffix(".json").write_text(json.dumps({"config": config}))
    return net.eval()


def _memory_between_whole_and_tiled(monkeypatch, config, tile):
    """Patch the available memory so that 32x32 LR images fit in tiles of ``tile`` px but not whole."""
    import genrestore.cli_sr as cli_sr

    net = build_sr(config).eval()
    whole, tiled = cli_sr._estimate_bytes(net, (32, 32)), cli_sr._estimate_bytes(net, (tile, tile), (32, 32))
    assert tiled < whole
    monkeypatch.setattr(cli_sr, "available_bytes", lambda device: (whole + tiled) / 2 / 0.8)


def test_peak_activation_bytes_by_hand():
    # (10, 20) px: input 3 + conv 8 channels of float32 alive, then conv 3 (the in-place ReLU adds none)
    inplace = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(inplace=True),
                                  torch.nn.Conv2d(8, 3, 3, padding=1))
    assert peak_activation_bytes(inplace, (10, 20)) == (3 + 8 + 3) * 4 * 200
    # an out-of-place ReLU: input, conv output and ReLU output are alive together
    copying = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                  torch.nn.Conv2d(8, 3, 3, padding=1))
    assert peak_activation_bytes(copying, (10, 20)) == (3 + 8 + 8) * 4 * 200


TINY_RRDB = {"arch": "rrdbnet", "num_feat": 8, "num_block": 1, "num_grow_ch": 4, "scale": 4}
TINY_VGG = {"arch": "srvgg", "num_feat": 8, "num_conv": 2, "upscale": 4}


@pytest.fixture()
def models(tmp_path):
    gan = tmp_path / "gan.safetensors"
    mse = tmp_path / "mse.safetensors"
    _save_model(gan, TINY_RRDB, 0)
    _save_model(mse, TINY_VGG, 1)
    return gan, mse


@pytest.fixture()
def lr_dir(tmp_path, photos):
    d = tmp_path / "lr"
    small = torch.nn.functional.avg_pool2d(photos[:2], 4)  # 32x32 LR images
    for i, im in enumerate(small):
        write_image(d / f"im{i}.png", im[None])
    return d


def test_load_sr_from_file_equals_built_model(models):
    gan, _ = models
    net = load_sr(gan)
    ref = build_sr(TINY_RRDB)
    ref.load_state_dict(net.state_dict())
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    assert net.scale == 4 and torch.equal(net(x), ref.eval()(x))
    assert upscale(net, x).shape == (2, 3, 48, 48)


def test_sr_scale_reads_the_config_not_the_weights(tmp_path):
    for config, scale in ((TINY_RRDB, 4), (TINY_VGG, 4), ({**TINY_VGG, "upscale": 2}, 2),
                          ({"arch": "rdn", "C": 1, "D": 1, "G": 4, "G0": 4, "scale": 3}, 3)):
        path = tmp_path / f"{config['arch']}{scale}.safetensors"
        _save_model(path, config)
        assert load_sr(path).scale == sr_scale(path) == scale
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    broken.with_suffix(".json").write_text(json.dumps({"config": TINY_RRDB}))
    assert sr_scale(broken) == 4
    with pytest.raises(InputError, match="not a readable safetensors"):
        load_sr(broken)


def test_tiled_equals_untiled_when_pad_covers_receptive_field(models):
    """SRVGG with 3 convolutions at LR scale: receptive-field radius 3 px < pad 4."""
    net = load_sr(models[1])
    x = torch.rand(1, 3, 40, 52, generator=torch.Generator().manual_seed(1))
    whole = upscale(net, x)
    tiled = upscale(net, x, tile=20, tile_pad=4)
    assert (whole - tiled).abs().max() < 1e-5
    rrdb = load_sr(models[0])  # ~20 LR px of context: pad 24 covers it
    x = torch.rand(1, 3, 72, 90, generator=torch.Generator().manual_seed(2))
    whole, tiled = upscale(rrdb, x), upscale(rrdb, x, tile=64, tile_pad=24)
    assert (whole - tiled).abs().max() < 1 / 255


@pytest.mark.parametrize("scale,multiple", [(2, 2), (1, 4)])
def test_rrdb_x2_x1_take_any_size_by_reflect_padding(scale, multiple):
    import numpy as np

    torch.manual_seed(0)
    net = build_sr({**TINY_RRDB, "scale": scale}).eval()
    x = torch.rand(1, 3, 33, 38, generator=torch.Generator().manual_seed(1))
    y = upscale(net, x)
    assert y.shape[-2:] == (33 * scale, 38 * scale)
    pad = ((0, 0), (0, 0), (0, -33 % multiple), (0, -38 % multiple))
    padded = torch.from_numpy(np.pad(x.numpy(), pad, mode="reflect"))  # Real-ESRGAN's mod_pad, by NumPy
    with torch.no_grad():
        expected = net(padded)[..., :33 * scale, :38 * scale].clamp(0, 1)
    torch.testing.assert_close(y, expected, atol=1e-6, rtol=0)
    assert upscale(net, x, tile=27, tile_pad=4).shape == y.shape  # tiles rounded down to the multiple
    even = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))  # no padding, odd tile
    assert upscale(net, even, tile=27, tile_pad=4).shape[-2:] == (64 * scale, 64 * scale)


def test_upscale_cli_outputs_resume_and_reference(models, lr_dir, tmp_path, capsys):
    gan, mse = models
    out = tmp_path / "sr"
    assert main(["upscale", str(lr_dir), "-o", str(out), "--model", str(gan), "--reference", str(mse), "-q"]) == 0
    y = read_image(out / "im0.png")
    assert y.shape == (1, 3, 128, 128) and (out / "im0_ref.png").is_file()
    rec = json.loads((out / "im0.json").read_text())
    assert rec["scale"] == 4 and rec["output_size"] == [128, 128]
    expected = upscale(load_sr(gan), read_image(lr_dir / "im0.png"))
    assert (y - expected).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit rounding only
    capsys.readouterr()
    assert main(["upscale", str(lr_dir), "-o", str(out), "--model", str(gan), "--reference", str(mse), "-q",
                 "--resume"]) == 0
    assert "0 upscaled" in capsys.readouterr().out
    for i in range(2):  # shards together make the same files as one run
        assert main(["upscale", str(lr_dir), "-o", str(tmp_path / "shards"), "--model", str(gan), "-q",
                     "--shard", f"{i}/2"]) == 0
    names = sorted(p.name for p in lr_dir.iterdir())
    assert len(names) >= 2 and sorted(p.name for p in (tmp_path / "shards").glob("*.png")) == names
    for n in names:
        assert (tmp_path / "shards" / n).read_bytes() == (out / n).read_bytes()


def test_upscale_image_replays_real_esrgans_grey_and_alpha_handling(models):
    """Grey and RGBA as Real-ESRGAN's RealESRGANer.enhance, replayed with OpenCV on float32:
    grey -> GRAY2RGB -> the network -> RGB2GRAY; RGBA: the RGB through the network, the alpha
    through it as grey (default) or cv2.resize INTER_LINEAR; RGB is plain upscale."""
    import cv2
    import numpy as np

    from genrestore.models.sr import upscale_image

    net = load_sr(models[0])
    g = torch.Generator().manual_seed(3)
    rgba = torch.rand(1, 4, 9, 11, generator=g)

    def hwc(t):
        return np.ascontiguousarray(t[0].permute(1, 2, 0).numpy())

    def grey_via_net(plane):  # (H, W) float32 -> the network's output as grey, by OpenCV
        rgb = cv2.cvtColor(plane, cv2.COLOR_GRAY2RGB)
        y = upscale(net, torch.from_numpy(rgb).permute(2, 0, 1)[None])
        return cv2.cvtColor(hwc(y), cv2.COLOR_RGB2GRAY)

    grey = rgba[:, :1]
    assert torch.allclose(upscale_image(net, grey)[0, 0], torch.from_numpy(grey_via_net(hwc(grey)[..., 0])), atol=1e-6)
    assert torch.equal(upscale_image(net, rgba[:, :3]), upscale(net, rgba[:, :3]))
    out = upscale_image(net, rgba)
    assert out.shape == (1, 4, 36, 44) and torch.equal(out[:, :3], upscale(net, rgba[:, :3]))
    assert torch.allclose(out[0, 3], torch.from_numpy(grey_via_net(hwc(rgba[:, 3:])[..., 0])), atol=1e-6)
    linear = upscale_image(net, rgba, alpha_upsampler="linear")
    ref = cv2.resize(hwc(rgba[:, 3:]), (44, 36), interpolation=cv2.INTER_LINEAR)
    assert torch.equal(linear[:, :3], out[:, :3]) and torch.allclose(linear[0, 3], torch.from_numpy(ref), atol=1e-6)
    with pytest.raises(InputError, match="alpha_upsampler must be one of model, linear"):
        upscale_image(net, rgba, alpha_upsampler="bicubic")


def test_upscale_writes_grey_as_grey_and_keeps_alpha(models, tmp_path, capsys):
    """The CLI upscales grey and RGBA files (it refused them): outputs keep the input's channels,
    the record says how many, --alpha-upsampler changes only the alpha, --outscale resizes all
    four channels, and a rerun with other alpha settings redoes the image with alpha only."""
    from PIL import Image

    from genrestore.models.sr import upscale_image

    g = torch.Generator().manual_seed(4)
    d = tmp_path / "in"
    write_image(d / "g.png", torch.rand(1, 1, 10, 12, generator=g))
    write_image(d / "a.png", torch.rand(1, 4, 10, 12, generator=g))
    out = tmp_path / "o"
    assert main(["upscale", str(d), "-o", str(out), "--model", str(models[0]), "-q"]) == 0
    assert Image.open(out / "g.png").mode == "L" and Image.open(out / "a.png").mode == "RGBA"
    assert json.loads((out / "a.json").read_text())["channels"] == 4
    net = load_sr(models[0])
    for name in ("g", "a"):
        ref = upscale_image(net, read_image(d / f"{name}.png"))
        assert (read_image(out / f"{name}.png") - ref).abs().max() <= 0.5 / 255 + 1e-6
    before = read_image(out / "a.png")
    assert main(["upscale", str(d), "-o", str(out), "--model", str(models[0]), "--resume",
                 "--alpha-upsampler", "linear"]) == 0
    assert "1 upscaled x4 with" in capsys.readouterr().out  # the grey image has no alpha: it resumes
    assert "alpha_upsampler" not in json.loads((out / "g.json").read_text())
    after = read_image(out / "a.png")
    assert torch.equal(after[:, :3], before[:, :3]) and not torch.equal(after[:, 3], before[:, 3])
    assert main(["upscale", str(d / "a.png"), "-o", str(tmp_path / "s"), "--model", str(models[0]), "-q",
                 "--outscale", "2.5"]) == 0
    assert read_image(tmp_path / "s" / "a.png").shape == (1, 4, 25, 30)


def test_upscale_writes_grey_alpha_as_grey_alpha(models, tmp_path):
    """A grey+alpha (LA) input was upscaled as RGBA and written as RGBA; it now comes back LA (as
    Pillow reads it), the grey and the alpha each upscaled as a grey image by the model."""
    import numpy as np
    from PIL import Image

    from genrestore.models.sr import upscale_image

    la = np.random.default_rng(12).integers(0, 256, (10, 12, 2), dtype=np.uint8)
    (tmp_path / "in").mkdir()
    Image.fromarray(la, "LA").save(tmp_path / "in" / "la.png")
    out = tmp_path / "o"
    assert main(["upscale", str(tmp_path / "in"), "-o", str(out), "--model", str(models[0]), "-q"]) == 0
    with Image.open(out / "la.png") as im:
        assert im.mode == "LA" and im.size == (48, 40)
        got = torch.from_numpy(np.asarray(im).astype(np.float32) / 255).permute(2, 0, 1)[None]
    ref = upscale_image(load_sr(models[0]), torch.from_numpy(la.astype(np.float32) / 255).permute(2, 0, 1)[None])
    assert (got - ref).abs().max() <= 0.5 / 255 + 1e-6
    assert json.loads((out / "la.json").read_text())["channels"] == 2


def test_upscale_errors_missing_weight_scale_mismatch_and_memory(models, lr_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GENRESTORE_WEIGHTS", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["upscale", str(lr_dir), "-o", str(tmp_path / "o"), "--model", "realesrgan-x4plus"]) == 2
    assert "genrestore weights install realesrgan-x4plus" in capsys.readouterr().err
    x2 = tmp_path / "x2.safetensors"
    _save_model(x2, {**TINY_VGG, "upscale": 2})
    assert main(["upscale", str(lr_dir), "-o", str(tmp_path / "o"), "--model", str(models[0]),
                 "--reference", str(x2)]) == 2
    assert "same scale" in capsys.readouterr().err
    assert main(["detect", str(lr_dir), "-o", str(tmp_path / "o"), "--gan", str(models[0]), "--mse", str(x2)]) == 2
    assert "same size" in capsys.readouterr().err
    _memory_between_whole_and_tiled(monkeypatch, TINY_RRDB, 24)
    assert main(["upscale", str(lr_dir), "-o", str(tmp_path / "o"), "--model", str(models[0])]) == 2
    assert "--tile" in capsys.readouterr().err
    assert main(["upscale", str(lr_dir), "-o", str(tmp_path / "o2"), "--model", str(models[0]), "--tile", "24", "--tile-pad", "4",
                 "-q"]) == 0


def test_detect_cli_writes_mask_overlay_dmap_regions(models, lr_dir, tmp_path):
    gan, mse = models
    out = tmp_path / "det"
    assert main(["detect", str(lr_dir), "-o", str(out), "--gan", str(gan), "--mse", str(mse), "--save-sr", "-q"]) == 0
    rec = json.loads((out / "im0_regions.json").read_text())
    assert rec["segmenter"] == "texture" and rec["output_size"] == [128, 128]
    assert "method" not in rec  # the record of a DeSRA run has its earlier keys: --resume finds older runs
    mask = read_image(out / "im0_mask.png")
    assert mask.shape == (1, 1, 128, 128) and set(mask.unique().tolist()) <= {0.0, 1.0}
    assert abs(float(mask.mean()) - rec["fraction"]) < 1e-6
    assert sum(r["area"] for r in rec["regions"]) == int(mask.sum())
    assert read_image(out / "im0_overlay.png").shape == (1, 3, 128, 128)
    assert read_image(out / "im0_dmap.png").shape == (1, 3, 128, 128)
    g, m, p = (read_image(out / f"im0_{k}.png") for k in ("gan", "mse", "pseudo_gt"))
    assert torch.equal(p, torch.where(mask.bool(), m, g))  # eq. 10 on the written 8-bit images


@pytest.mark.parametrize("method", ["ldl", "niqe"])
def test_detect_cli_comparison_methods_equal_the_library(method, models, lr_dir, tmp_path):
    """--method ldl / niqe (DeSRA Table 1's detectors): the mask is the library's map against the
    threshold on the same SR outputs; niqe needs no MSE-SR."""
    from genrestore.detect import ldl_artifact_map, niqe_map

    gan, mse = models
    if method == "niqe":  # the tiny random RRDB's output is flat at 8 bits, where NIQE has no windows
        gan = mse
    out = tmp_path / method
    x = read_image(lr_dir / "im1.png", "rgb")
    y_gan = upscale(load_sr(gan), x)
    score = ldl_artifact_map(y_gan, upscale(load_sr(mse), x)) if method == "ldl" else niqe_map(y_gan)
    threshold = f"{float(score[score > 0].quantile(0.8)):.6g}"  # some pixels above it, most below
    expect = score > float(threshold)
    extra = ["--mse", str(mse)] if method == "ldl" else []
    assert main(["detect", str(lr_dir), "-o", str(out), "--gan", str(gan), *extra, "--method", method,
                 "--threshold", threshold, "--save-sr", "-q"]) == 0
    mask = read_image(out / "im1_mask.png") > 0.5
    assert torch.equal(mask, expect) and 0 < float(expect.float().mean()) < 1
    rec = json.loads((out / "im1_regions.json").read_text())
    assert rec["method"] == method and rec["segmenter"] is None and rec["threshold"] == float(threshold)
    key = "mean_ldl_map" if method == "ldl" else "mean_niqe"
    assert rec["regions"] and all(key in r for r in rec["regions"])
    assert sum(r["area"] for r in rec["regions"]) == int(expect.sum())
    assert (out / "im1_mse.png").is_file() == (method == "ldl")
    q = rec["score_quantiles"]  # the map's quantiles, to choose a threshold
    assert q["p50"] <= q["p90"] <= q["p99"] and q["p90"] == pytest.approx(float(score.double().quantile(0.9)), rel=1e-5)


def test_detect_cli_method_argument_errors(models, lr_dir, tmp_path, capsys):
    gan, mse = models
    base = ["detect", str(lr_dir), "-o", str(tmp_path / "o"), "--gan", str(gan)]
    cases = [([*base, "--method", "niqe"], "needs --threshold"),
             ([*base, "--method", "ldl"], "give --mse"),
             ([*base, "--mse", str(mse), "--method", "ldl", "--segmenter", "none"], "uses no classes"),
             ([*base, "--mse", str(mse), "--threshold", "12"], "(0, 10]")]
    for args, words in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("genrestore: error:") and words in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_detect_refuses_the_input_folder_as_output(models, lr_dir, capsys):
    """Its masks and overlays there would be read as LR images by the next run (was accepted)."""
    gan, mse = models
    before = sorted(p.name for p in lr_dir.iterdir())
    assert main(["detect", str(lr_dir), "-o", str(lr_dir), "--gan", str(gan), "--mse", str(mse), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is the input folder" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in lr_dir.iterdir()) == before


def test_upscale_outscale_is_the_output_resized_with_opencv_lanczos(models, lr_dir, tmp_path):
    """--outscale S (Real-ESRGAN's): the x4 output resized to S times the input with OpenCV's
    INTER_LANCZOS4, computed here with OpenCV directly; S = the model's scale changes nothing."""
    import cv2
    import numpy as np

    gan, _ = models
    for s, side in ((1, 32), (2.5, 80), (4, 128)):
        out = tmp_path / f"o{s}"
        assert main(["upscale", str(lr_dir), "-o", str(out), "--model", str(gan), "--outscale", str(s), "-q"]) == 0
        y = upscale(load_sr(gan), read_image(lr_dir / "im0.png", "rgb"))
        big = np.ascontiguousarray(y[0].permute(1, 2, 0).numpy())
        ref = big if side == 128 else cv2.resize(big, (side, side), interpolation=cv2.INTER_LANCZOS4)
        got = read_image(out / "im0.png", "rgb")[0].permute(1, 2, 0).numpy()
        assert got.shape == (side, side, 3)
        assert np.abs(got - np.clip(ref, 0, 1)).max() <= 0.5 / 255 + 1e-6
        assert json.loads((out / "im0.json").read_text())["outscale"] == s
    plain = tmp_path / "plain"
    assert main(["upscale", str(lr_dir), "-o", str(plain), "--model", str(gan), "-q"]) == 0
    assert (plain / "im0.png").read_bytes() == (tmp_path / "o4" / "im0.png").read_bytes()
    assert json.loads((plain / "im0.json").read_text())["outscale"] is None  # records without the key still resume
    # dropping --outscale on a resumed run redoes the image (its record says another outscale)
    assert main(["upscale", str(lr_dir), "-o", str(tmp_path / "o1"), "--model", str(gan), "--resume", "-q"]) == 0
    assert read_image(tmp_path / "o1" / "im0.png").shape[-1] == 128


def test_finetune_resume_equals_straight_run(tmp_path):
    """4 iterations straight == 2 iterations, stop, resume to 4; both from the same initial weights."""
    from genrestore.detect.finetune import FinetuneConfig, finetune

    g = torch.Generator().manual_seed(3)
    pairs = [(torch.rand(1, 3, 12, 12, generator=g), torch.rand(1, 3, 48, 48, generator=g)) for _ in range(2)]
    torch.manual_seed(0)
    init = {k: v.clone() for k, v in build_sr(TINY_RRDB).state_dict().items()}
    torch.manual_seed(1)  # other weights: the resumed call matches only if it loads the checkpoint
    other = {k: v.clone() for k, v in build_sr(TINY_RRDB).state_dict().items()}

    def run(out, iters, state):
        net = build_sr(TINY_RRDB)
        net.load_state_dict(state)
        cfg = FinetuneConfig(iterations=iters, batch_size=2, hr_patch=32, save_every=2, lr=1e-3)
        log = finetune(net, pairs, cfg, out, progress=False)
        return {k: v.detach().clone() for k, v in net.state_dict().items()}, log

    def max_diff(a, b):
        assert a.keys() == b.keys()
        return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)

    straight, log = run(tmp_path / "a", 4, init)
    half, _ = run(tmp_path / "b", 2, init)
    resumed, resumed_log = run(tmp_path / "b", 4, other)
    assert max_diff(straight, resumed) < 1e-6  # tight: 4 Adam steps of lr 1e-3 move weights by ~1e-3
    assert max_diff(straight, init) > 1e-4 and max_diff(half, init) > 1e-4 and max_diff(straight, half) > 1e-4
    assert [w["iteration"] for w in log["windows"]] == [w["iteration"] for w in resumed_log["windows"]] == [2, 4]
    assert log["windows"][0]["l1"] > 0


def test_train_desra_cli_tiny(models, lr_dir, tmp_path, capsys):
    gan, mse = models
    out = tmp_path / "run"
    args = ["train", "desra", "--model", str(gan), "--mse", str(mse), "--lr-images", str(lr_dir), "-o", str(out),
            "--iterations", "2", "--batch-size", "1", "--hr-patch", "32", "--save-every", "1", "-q"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "without vgg19-torchvision" in err
    final = out / "gan-desra.safetensors"
    rec = json.loads(final.with_suffix(".json").read_text())
    assert rec["recipe"]["losses"] == ["l1"] and rec["config"]["arch"] == "rrdbnet"
    assert load_sr(final).scale == 4
    assert (out / "pseudo_gt" / "im0.png").is_file()


def test_train_desra_resumes_only_on_the_same_lr_images(models, lr_dir, tmp_path, capsys):
    """Other LR images under the same names are refused (their cached pseudo-GT is of the old ones);
    a run recorded before the images' digest was (no lr_sha256) still resumes."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    gan, mse = models
    out = tmp_path / "run"
    args = ["train", "desra", "--model", str(gan), "--mse", str(mse), "--lr-images", str(lr_dir), "-o", str(out),
            "--batch-size", "1", "--hr-patch", "32", "--save-every", "1", "--perceptual", "none", "-q"]
    assert main([*args, "--iterations", "1"]) == 0
    original = (lr_dir / "im0.png").read_bytes()
    write_image(lr_dir / "im0.png", read_image(lr_dir / "im0.png").flip(-1))
    capsys.readouterr()
    assert main([*args, "--iterations", "2"]) == 2
    assert "holds pseudo-GT made with other settings or images" in capsys.readouterr().err
    (lr_dir / "im0.png").write_bytes(original)
    ckpt, settings = out / "checkpoint.safetensors", out / "pseudo_gt" / "settings.json"
    for f in (settings, ckpt.with_suffix(".json")):
        f.write_text(json.dumps({k: v for k, v in json.loads(f.read_text()).items() if k != "lr_sha256"}))
    with safe_open(str(ckpt), "pt") as f:
        record = json.loads(f.metadata()["genrestore_run"])
    del record["lr_sha256"]
    save_file(load_file(str(ckpt)), str(ckpt), metadata={"genrestore_run": json.dumps(record)})
    assert main([*args, "--iterations", "2"]) == 0
    assert json.loads((out / "gan-desra.json").read_text())["log"]["iterations"] == 2
    # the cache's old record cannot tell, but the checkpoint records the digest from now on
    write_image(lr_dir / "im0.png", read_image(lr_dir / "im0.png").flip(-1))
    capsys.readouterr()
    assert main([*args, "--iterations", "3"]) == 2
    assert "the run there used other settings (lr_sha256)" in capsys.readouterr().err


def test_discriminator_and_perceptual_loss():
    from genrestore.detect.finetune import VGGPerceptualLoss
    from genrestore.models.discriminator import UNetDiscriminatorSN

    d = UNetDiscriminatorSN(num_feat=4)
    assert d(torch.rand(2, 3, 32, 32)).shape == (2, 1, 32, 32)
    assert {"conv1.weight_orig", "conv1.weight_u", "conv1.weight_v", "conv9.weight"} <= set(d.state_dict())
    loss = VGGPerceptualLoss()
    x = torch.rand(1, 3, 32, 32)
    assert float(loss(x, x)) == 0.0 and float(loss(x, x.flip(-1))) > 0
    n = sum(p.numel() for p in loss.taps.features.parameters())
    assert n == 20_024_384  # torchvision vgg19().features, conv1_1 .. conv5_4


def test_perceptual_loss_equals_real_esrgans_recipe_written_out():
    """Real-ESRGAN (BasicSR PerceptualLoss, use_input_norm=True, range_norm=False, L1): VGG19
    convolutions conv1_2, conv2_2, conv3_4, conv4_4, conv5_4 before their ReLU, weights 0.1, 0.1,
    1, 1, 1, on ImageNet-normalized [0, 1] images; here from the same random state with plain
    F.conv2d. The test above only checks loss(x, x) == 0, which no wrong tap or weight fails."""
    import torch.nn.functional as F

    from genrestore.detect.finetune import VGGPerceptualLoss

    torch.manual_seed(0)
    loss = VGGPerceptualLoss()
    sd = loss.taps.features.state_dict()
    convs = sorted({int(k.split(".")[0]) for k in sd})
    names = [f"{b}_{i}" for b, n in zip(range(1, 6), (2, 2, 4, 4, 4)) for i in range(1, n + 1)]
    weights = {"1_2": 0.1, "2_2": 0.1, "3_4": 1.0, "4_4": 1.0, "5_4": 1.0}
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def features(t):
        t, out = (t - mean) / std, {}
        for c, name in zip(convs, names):
            t = out[name] = F.conv2d(t, sd[f"{c}.weight"], sd[f"{c}.bias"], padding=1)
            t = F.relu(t)
            if name in ("1_2", "2_2", "3_4", "4_4"):
                t = F.max_pool2d(t, 2)
        return out

    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    fx, fy = features(x), features(y)
    expected = sum(w * (fx[k] - fy[k]).abs().mean() for k, w in weights.items())
    assert abs(float(loss(x, y)) - float(expected)) <= 1e-6 * float(expected)


def test_caffe_perceptual_loss_is_the_original_vgg19_input_convention_written_out():
    """convention="caffe" (vgg19-caffe, the original VGG19): the same taps and layer weights on BGR
    images on 0..255 minus the mean pixel (103.939, 116.779, 123.68), the loss divided by
    255 x 0.226 (the mean ImageNet std), so that it is on the torchvision convention's scale."""
    import torch.nn.functional as F

    from genrestore.detect.finetune import VGGPerceptualLoss

    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in VGGPerceptualLoss().taps.features.state_dict().items()}
    loss = VGGPerceptualLoss(state, "caffe")
    assert loss.network == "vgg19-caffe" and VGGPerceptualLoss(state).network == "vgg19-torchvision"
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    convs = sorted({int(k.split(".")[1]) for k in state})
    taps = {1: 0.1, 3: 0.1, 7: 1.0, 11: 1.0, 15: 1.0}  # conv1_2, conv2_2, conv3_4, conv4_4, conv5_4 (0-based order)
    pools_after = {1, 3, 7, 11}

    def features(t):
        t = t[:, [2, 1, 0]] * 255 - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
        out = {}
        for j, c in enumerate(convs):
            t = out[j] = F.conv2d(t, state[f"features.{c}.weight"], state[f"features.{c}.bias"], padding=1)
            t = F.max_pool2d(F.relu(t), 2) if j in pools_after else F.relu(t)
        return out

    fx, fy = features(x), features(y)
    expected = sum(w * (fx[j] - fy[j]).abs().mean() for j, w in taps.items()) / (255 * 0.226)
    assert abs(float(loss(x, y)) - float(expected)) <= 1e-5 * float(expected)
    with pytest.raises(InputError, match="convention"):
        VGGPerceptualLoss(state, "keras")


def test_train_desra_perceptual_vgg19_caffe(models, lr_dir, tmp_path, capsys, monkeypatch):
    """--perceptual vgg19-caffe trains with the Caffe VGG19 from the store and records it; absent,
    it stops before the pseudo-GT with the weight's name and how to install it; a run folder
    trained with one perceptual network does not resume with another."""
    from safetensors.torch import save_file

    from genrestore.detect.finetune import VGGPerceptualLoss

    gan, mse = models
    store = tmp_path / "store"
    monkeypatch.setenv("GENRESTORE_WEIGHTS", str(store))
    base = ["train", "desra", "--model", str(gan), "--mse", str(mse), "--lr-images", str(lr_dir), "--iterations", "1",
            "--batch-size", "1", "--hr-patch", "32", "-q", "--perceptual", "vgg19-caffe"]
    assert main([*base, "-o", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err
    assert "weight 'vgg19-caffe' not found" in err and "genrestore weights install vgg19-caffe" in err
    assert err.count("\n") == 1 and not (tmp_path / "absent" / "pseudo_gt").exists()
    torch.manual_seed(0)
    store.mkdir()
    save_file({f"features.{k}": v.contiguous() for k, v in VGGPerceptualLoss().taps.features.state_dict().items()},
              str(store / "vgg19-caffe.safetensors"))
    assert main([*base, "-o", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "vgg19" not in err and "without realesrgan-x4plus-netd" in err
    recipe = json.loads((tmp_path / "run" / "gan-desra.json").read_text())["recipe"]
    assert recipe["losses"] == ["l1", "perceptual"] and recipe["perceptual_network"] == "vgg19-caffe"
    log = json.loads((tmp_path / "run" / "gan-desra.json").read_text())["log"]
    assert log["windows"][0]["perceptual"] > 0
    assert main([*base[:-2], "--perceptual", "none", "--iterations", "2", "-o", str(tmp_path / "run")]) == 2
    assert "other settings (losses, perceptual_network)" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_half_on_cuda_close_to_float32_and_nan_guard(models):
    net = load_sr(models[1], "cuda")
    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(5)).cuda()
    assert (upscale(net, x, half=True) - upscale(net, x)).abs().max() < 2e-2

    class Overflows(torch.nn.Module):  # inf in half precision only
        scale = 1

        def forward(self, t):
            return t * 0 + (torch.inf if torch.is_autocast_enabled() else 0.5)

    with pytest.warns(UserWarning, match="recomputed in float32"):
        y = upscale(Overflows(), x, half=True)
    assert torch.isfinite(y).all() and float(y.max()) == 0.5


def test_cli_bad_arguments_are_one_line_errors(models, lr_dir, tmp_path, capsys):
    gan, mse = models
    (tmp_path / "empty").mkdir()
    cases = [
        (["upscale", str(tmp_path / "empty"), "-o", str(tmp_path / "o"), "--model", str(gan)], "no images found"),
        (["detect", str(lr_dir), "-o", str(tmp_path / "o"), "--gan", str(gan), "--mse", str(mse), "--threshold", "nan"],
         "threshold"),
        (["upscale", str(lr_dir), "-o", str(tmp_path / "o"), "--model", str(tmp_path / "x.pth")], ".safetensors"),
        (["train", "desra", "--model", str(gan), "--mse", str(mse), "--lr-images", str(lr_dir), "-o",
          str(tmp_path / "t"), "--hr-patch", "30"], "multiple of the scale"),
        (["train", "desra", "--model", str(gan), "--mse", str(mse), "--lr-images", str(lr_dir), "-o",
          str(tmp_path / "t"), "--save-every", "0"], "positive integer"),
    ]
    (tmp_path / "x.pth").write_bytes(b"not a checkpoint")
    for args, words in cases:
        try:
            code = main(args)
        except SystemExit as e:  # argparse rejects bad option values itself, also with exit code 2
            code = e.code
        assert code == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("genrestore: error:") and words in err and len(err.splitlines()) == 1, err


def test_train_desra_refuses_a_folder_made_with_other_settings(models, lr_dir, tmp_path, capsys):
    gan, mse = models
    base = ["train", "desra", "--model", str(gan), "--mse", str(mse), "--lr-images", str(lr_dir), "-o",
            str(tmp_path / "run"), "--iterations", "1", "--batch-size", "1", "--hr-patch", "32", "-q"]
    assert main(base) == 0
    assert main(base + ["--threshold", "0.6"]) == 2
    assert "other settings" in capsys.readouterr().err


@pytest.mark.parametrize("case,words", [("damaged", "not a readable safetensors file"),
                                        ("no run record", "not a DeSRA fine-tuning checkpoint")])
def test_train_desra_refuses_a_damaged_checkpoint_before_the_pseudo_gt(models, lr_dir, tmp_path, capsys, case, words):
    """A damaged OUT/checkpoint.safetensors was read only after the pseudo-GT of every image was
    made, and then exited 1 with 'SafetensorError: ...', naming no file (one without the run
    record: 'KeyError: 'iteration'' or a list of 'other settings')."""
    gan, mse = models
    out = tmp_path / "run"
    out.mkdir()
    ckpt = out / "checkpoint.safetensors"
    if case == "damaged":
        ckpt.write_bytes(b"not a safetensors file")
    else:
        save_file({"g.x": torch.zeros(2)}, str(ckpt))
    assert main(["train", "desra", "--model", str(gan), "--mse", str(mse), "--lr-images", str(lr_dir), "-o",
                 str(out), "--iterations", "1", "--batch-size", "1", "--hr-patch", "32", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genrestore: error: {ckpt}: {words}") and err.count("\n") == 1, err
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.safetensors"]  # no pseudo-GT made


def test_detect_refuses_too_small_images_up_front_naming_the_file(models, tmp_path, capsys):
    """A 1x1 LR image gives a 4x4 x4 output, too small for the 11x11 window: before the fix the
    run wrote a.png's outputs, then failed on b.png with a message that named no file."""
    gan, mse = models
    d = tmp_path / "lr"
    write_image(d / "a.png", torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0)))
    write_image(d / "b.png", torch.rand(1, 3, 1, 1, generator=torch.Generator().manual_seed(1)))
    out = tmp_path / "det"
    assert main(["detect", str(d), "-o", str(out), "--gan", str(gan), "--mse", str(mse), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genrestore: error:") and "b.png" in err and len(err.splitlines()) == 1, err
    assert not out.exists() or not list(out.iterdir())
    write_image(d / "b.png", torch.rand(1, 3, 2, 2, generator=torch.Generator().manual_seed(1)))  # 8x8 output: fine
    assert main(["detect", str(d), "-o", str(out), "--gan", str(gan), "--mse", str(mse), "-q"]) == 0
    assert (out / "b_mask.png").is_file()


@pytest.mark.parametrize("verb", ["upscale", "detect"])
def test_tile_smaller_than_its_overlap_is_refused_up_front(models, tmp_path, capsys, verb):
    """--tile 12 --tile-pad 8 (overlap 2 * 8 + 8 = 24): tiling only starts on images larger than
    the tile, so before the fix a.png (10x10) was written and b.png (20x20) then failed with
    'tile (12) must be larger than 2 * pad + blend (24)', naming no option."""
    gan, mse = models
    d = tmp_path / "lr"
    write_image(d / "a.png", torch.rand(1, 3, 10, 10, generator=torch.Generator().manual_seed(0)))
    write_image(d / "b.png", torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(1)))
    out = tmp_path / "o"
    models_args = ["--model", str(gan)] if verb == "upscale" else ["--gan", str(gan), "--mse", str(mse)]
    assert main([verb, str(d), "-o", str(out), *models_args, "--tile", "12", "--tile-pad", "8", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genrestore: error:") and "--tile-pad" in err and len(err.splitlines()) == 1, err
    assert not out.exists() or not list(out.iterdir())
    assert main([verb, str(d), "-o", str(out), *models_args, "--tile", "12", "--tile-pad", "1", "-q"]) == 0


@pytest.mark.parametrize("verb", ["upscale", "detect", "train desra"])
def test_tile_that_rounds_down_to_its_overlap_is_refused_up_front(tmp_path, capsys, verb):
    """RRDBNet x2 takes tiles of even sides, so --tile 25 --tile-pad 8 runs tiles of 24 px, no larger
    than their 2 * 8 + 8 = 24 px overlap: a.png (10x10, untiled) was written, then b.png (30x30)
    failed with 'tile (24) must be larger than 2 * pad + blend (24)', naming no option."""
    gan, mse = tmp_path / "gan2.safetensors", tmp_path / "mse2.safetensors"
    _save_model(gan, {**TINY_RRDB, "scale": 2}, 0)
    _save_model(mse, {**TINY_VGG, "upscale": 2}, 1)
    d = tmp_path / "lr"
    write_image(d / "a.png", torch.rand(1, 3, 10, 10, generator=torch.Generator().manual_seed(0)))
    write_image(d / "b.png", torch.rand(1, 3, 30, 30, generator=torch.Generator().manual_seed(1)))
    out = tmp_path / "o"
    argv = {"upscale": ["upscale", str(d), "--model", str(gan)],
            "detect": ["detect", str(d), "--gan", str(gan), "--mse", str(mse)],
            "train desra": ["train", "desra", "--model", str(gan), "--mse", str(mse), "--lr-images", str(d),
                            "--iterations", "1", "--batch-size", "1", "--hr-patch", "16"]}[verb]
    assert main([*argv, "-o", str(out), "--tile", "25", "--tile-pad", "8", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genrestore: error: --tile 25 rounds down to 24") and "--tile-pad" in err, err
    assert len(err.splitlines()) == 1, err
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]
    assert main([*argv, "-o", str(out), "--tile", "26", "--tile-pad", "8", "-q"]) == 0


def test_resume_redoes_missing_corrupt_or_unrequested_outputs(models, tmp_path, capsys):
    """Before the fix --resume trusted the JSON record alone: a truncated NAME.png was kept
    (upscale), and detect skipped images whose PNGs were deleted or whose --save-sr images were
    never made. Each JSON now lists its outputs' sha256, checked on resume."""
    gan, mse = models
    d = tmp_path / "lr"
    write_image(d / "a.png", torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)))
    up = ["upscale", str(d), "-o", str(tmp_path / "sr"), "--model", str(gan), "--reference", str(mse), "-q"]
    assert main(up) == 0
    good = (tmp_path / "sr" / "a_ref.png").read_bytes()
    (tmp_path / "sr" / "a_ref.png").write_bytes(good[:100])  # a partial file
    capsys.readouterr()
    assert main(up + ["--resume"]) == 0
    assert "1 upscaled" in capsys.readouterr().out
    assert (tmp_path / "sr" / "a_ref.png").read_bytes() == good
    assert main(up + ["--resume"]) == 0
    assert "0 upscaled" in capsys.readouterr().out

    det = ["detect", str(d), "-o", str(tmp_path / "det"), "--gan", str(gan), "--mse", str(mse), "-q", "--resume"]
    assert main(det) == 0
    assert main(det + ["--save-sr"]) == 0
    assert (tmp_path / "det" / "a_pseudo_gt.png").is_file() and (tmp_path / "det" / "a_gan.png").is_file()
    (tmp_path / "det" / "a_mask.png").unlink()
    capsys.readouterr()
    assert main(det) == 0
    assert "1 image:" in capsys.readouterr().out and (tmp_path / "det" / "a_mask.png").is_file()
    assert main(det) == 0
    assert "0 images" in capsys.readouterr().out


def test_resume_redoes_images_made_with_other_weights_under_the_same_name(models, tmp_path, capsys):
    """Before the fix the record held only the model's name: after the file at that path was
    replaced (e.g. train desra run again), --resume kept the old model's outputs silently."""
    gan, mse = models
    d = tmp_path / "lr"
    write_image(d / "a.png", torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)))
    model = tmp_path / "m.safetensors"
    _save_model(model, TINY_VGG, 1)
    up = ["upscale", str(d), "-o", str(tmp_path / "sr"), "--model", str(model), "-q", "--resume"]
    det = ["detect", str(d), "-o", str(tmp_path / "det"), "--gan", str(gan), "--mse", str(model), "-q", "--resume"]
    assert main(up) == 0 and main(det) == 0
    before = (tmp_path / "sr" / "a.png").read_bytes()
    _save_model(model, TINY_VGG, 2)  # other weights, same file
    capsys.readouterr()
    assert main(up) == 0 and main(det) == 0
    out = capsys.readouterr().out
    assert "1 upscaled" in out and "1 image:" in out
    assert (tmp_path / "sr" / "a.png").read_bytes() != before


def test_outputs_never_overwrite_the_model_files(tmp_path, capsys, monkeypatch):
    """Before the fix ``upscale m.jpg -o . --model m.safetensors`` wrote ./m.json over the model's
    config (and detect of d.jpg wrote d_regions.json over a model d_regions.safetensors' config),
    and the next run failed with 'no architecture config'."""
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    _save_model(tmp_path / "m.safetensors", TINY_VGG)
    _save_model(tmp_path / "d_regions.safetensors", TINY_VGG)
    config = (tmp_path / "m.json").read_text()
    for name in ("m.jpg", "d.jpg"):
        Image.new("RGB", (8, 8), (10, 200, 30)).save(tmp_path / name)
    for argv, clobbered in ((["upscale", "m.jpg", "-o", ".", "--model", "m.safetensors"], "m.json"),
                            (["detect", "d.jpg", "-o", ".", "--gan", "m.safetensors", "--mse", "d_regions.safetensors"],
                             "d_regions.json")):
        assert main(argv + ["-q"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("genrestore: error:") and clobbered in err and len(err.splitlines()) == 1, err
        assert (tmp_path / clobbered).read_text() == config
    assert main(["upscale", "m.jpg", "-o", "sr", "--model", "m.safetensors", "-q"]) == 0


def test_overlay_outlines_regions_that_touch_the_image_border():
    """Before the fix pixels outside the image counted as mask, so a region's side along the
    border had no outline, and a mask covering the whole image gave an overlay with no outline."""
    from genrestore.cli_sr import overlay

    image = torch.full((1, 3, 12, 16), 0.5)
    red = torch.tensor([1.0, 0.1, 0.1]).view(1, 3, 1, 1)
    full = overlay(image, torch.ones(1, 1, 12, 16, dtype=torch.bool), width=1)
    on_edge = (full == red).all(1)[0]
    ring = torch.ones(12, 16, dtype=torch.bool)
    ring[1:-1, 1:-1] = False
    assert torch.equal(on_edge, ring)
    box = torch.zeros(1, 1, 12, 16, dtype=torch.bool)
    box[..., 3:8, 0:5] = True  # touches the left border
    on_edge = (overlay(image, box, width=1) == red).all(1)[0]
    expected = box[0, 0].clone()
    expected[4:7, 1:4] = False  # the interior; column 0, on the border, is outline
    assert torch.equal(on_edge, expected)


@pytest.mark.parametrize("verb", ["upscale", "detect"])
def test_shards_refuse_what_one_run_refuses(models, tmp_path, capsys, verb):
    """One run of a/x.png and b/x.png refuses (both would write OUT/x.png); before the fix the
    outputs were planned on the shard's images only, so with --shard 0/2 and 1/2 each shard
    passed the check and the second silently overwrote the first's x.png and x.json. Shards
    together must behave as one run: each refuses, naming both inputs, before writing anything."""
    gan, mse = models
    for folder, seed in (("a", 0), ("b", 1)):
        write_image(tmp_path / folder / "x.png", torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(seed)))
    out = tmp_path / "o"
    models_args = ["--model", str(gan)] if verb == "upscale" else ["--gan", str(gan), "--mse", str(mse)]
    base = [verb, str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(out), *models_args, "-q"]
    assert main(base) == 2
    capsys.readouterr()
    for i in range(2):
        assert main(base + ["--shard", f"{i}/2"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("genrestore: error:") and "would both write" in err and len(err.splitlines()) == 1, err
    assert not out.exists() or not list(out.iterdir())


@pytest.mark.parametrize("capability,expected", [((7, 5), torch.float16), ((7, 0), torch.float16),
                                                 ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_half_uses_bf16_only_where_the_gpu_has_it_natively(monkeypatch, capability, expected):
    """--half is "bf16, fp16 without bf16". Before the fix the choice was torch.cuda.is_bf16_supported(),
    which (including_emulation=True by default) also says True on pre-Ampere GPUs (T4 = 7.5, V100 = 7.0)
    where bf16 is only emulated, without tensor cores, so those ran emulated bf16 instead of fp16.
    Native bf16 needs compute capability 8.0 (Ampere). The CUDA device is faked as torch sees a T4/V100/A100/H100."""
    from types import SimpleNamespace
    from unittest import mock

    import genrestore.models.sr as sr

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda *a: SimpleNamespace(major=capability[0], minor=capability[1]))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda *a: True, raising=False)
    monkeypatch.setattr(torch.version, "hip", None)
    used = []

    class Recorder:  # stands in for torch.autocast("cuda", dtype=...) on this CPU-only machine
        def __init__(self, device_type, dtype):
            used.append(dtype)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(torch, "autocast", Recorder)
    x = mock.MagicMock()
    x.device, x.dtype = torch.device("cuda", 0), torch.float32
    y = sr._run(lambda t: torch.zeros(1, 3, 4, 4), x, half=True)
    assert used == [expected] and torch.equal(y, torch.zeros(1, 3, 4, 4))


def test_memory_check_applies_when_the_tile_covers_the_image(models, lr_dir, tmp_path, capsys, monkeypatch):
    """upscale only tiles images larger than --tile, so --tile 64 on these 32x32 images is
    whole-image inference. Before the fix any --tile skipped the memory check, and such a run
    started on memory too small for it; now a tile is checked at the size it runs at
    (min(tile, H) x min(tile, W)), and the error is one line naming --tile."""
    _memory_between_whole_and_tiled(monkeypatch, TINY_RRDB, 24)
    out = tmp_path / "o"
    assert main(["upscale", str(lr_dir), "-o", str(out), "--model", str(models[0]), "--tile", "64", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genrestore: error:") and "--tile" in err and len(err.splitlines()) == 1, err
    assert not out.exists() or not list(out.iterdir())
    assert main(["upscale", str(lr_dir), "-o", str(out), "--model", str(models[0]), "--tile", "24", "--tile-pad", "4",
                 "-q"]) == 0


def test_a_damaged_model_sidecar_is_one_line_naming_it(tmp_path, capsys):
    """upscale --model FILE whose FILE.json is cut (or not an object) stops with one line naming the
    sidecar, exit 2 (it was 'JSONDecodeError: ...', exit 1)."""
    from genrestore.cli import main
    from genrestore.io import write_image

    model = tmp_path / "m.safetensors"
    _save_model(model, TINY_RRDB)
    write_image(tmp_path / "lr" / "a.png", torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)))
    for text in ('{"config": {"arch": "rrdb', "[1, 2]", '{"config": null}'):
        model.with_suffix(".json").write_text(text)
        assert main(["upscale", str(tmp_path / "lr"), "-o", str(tmp_path / "sr"), "--model", str(model), "-q"]) == 2
        err = capsys.readouterr().err
        assert ("m.json: not a model sidecar" in err or "m.json with a 'config' entry" in err), err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "sr").exists()


@pytest.mark.parametrize("native_bf16", [True, False], ids=["native-bf16", "no-bf16"])
def test_upscale_half_on_the_cpu_records_the_dtype_that_ran(models, lr_dir, tmp_path, capsys, monkeypatch,
                                                             native_bf16):
    """--half ran float32 on CPUs before (recorded "half": true); now it runs bf16 where the CPU
    computes it natively and records "half": "bfloat16", else float32 recorded as false, the value
    float32 runs have always written, so their records still resume."""
    import genrestore.models.precision as precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native_bf16)
    out = tmp_path / "o"
    base = ["upscale", str(lr_dir), "-o", str(out), "--model", str(models[0]), "--device", "cpu", "-q"]
    assert main(base) == 0
    plain = (out / "im0.png").read_bytes()
    assert json.loads((out / "im0.json").read_text())["half"] is False
    capsys.readouterr()
    assert main([*base, "--half", "--resume"]) == 0
    assert json.loads((out / "im0.json").read_text())["half"] == ("bfloat16" if native_bf16 else False)
    if not native_bf16:  # float32 again: resumed, nothing redone
        assert (out / "im0.png").read_bytes() == plain


def test_tiled_x2_rrdbnet_equals_untiled_at_the_pixel_unshuffle_phase():
    """RRDBNet x2 folds 2x2 pixels into channels first, so a tile that starts on an odd pixel sees
    another phase of the image and differs from the whole-image output (by 0.023 here with the
    even tile grid laid out in pixels, starts 0/12/25/38); laid out in units of 2, it does not."""
    from genrestore.io import _tile_grid

    torch.manual_seed(0)  # test-only: weight init
    net = build_sr({"arch": "rrdbnet", "num_feat": 8, "num_block": 1, "num_grow_ch": 4, "scale": 2}).eval()
    x = torch.rand(1, 3, 100, 100, generator=torch.Generator().manual_seed(3))
    starts, _ = _tile_grid(100, 64, 2 * 20 + 8, 2)
    assert len(starts) > 2 and all(s % 2 == 0 for s in starts)
    assert (upscale(net, x, tile=64, tile_pad=20) - upscale(net, x)).abs().max() < 1e-5


def test_upscale_and_restore_write_16_bit_pngs_for_16_bit_inputs(models, tmp_path):
    """A 16-bit PNG comes out as a 16-bit PNG (as Real-ESRGAN writes it), within half a 16-bit level of
    the float result; an 8-bit one stays 8-bit. OpenCV reads the files' sample types."""
    import cv2

    from genrestore.io import read_image_bits
    from genrestore.models.sr import upscale_image

    levels = torch.randint(0, 65536, (1, 3, 9, 10), generator=torch.Generator().manual_seed(6))
    write_image(tmp_path / "in" / "deep.png", levels / 65535.0, bits=16)
    write_image(tmp_path / "in" / "flat.png", levels / 65535.0)
    x, bits = read_image_bits(tmp_path / "in" / "deep.png")
    assert bits == 16 and torch.equal(x, levels / 65535.0)
    assert main(["upscale", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "--model", str(models[0]), "-q"]) == 0
    deep = cv2.imread(str(tmp_path / "o" / "deep.png"), cv2.IMREAD_UNCHANGED)
    assert deep.dtype.name == "uint16" and cv2.imread(str(tmp_path / "o" / "flat.png"), cv2.IMREAD_UNCHANGED).dtype.name == "uint8"
    ref = upscale_image(load_sr(models[0]), x)
    assert (read_image(tmp_path / "o" / "deep.png") - ref).abs().max() <= 0.5 / 65535 + 1e-7
    assert json.loads((tmp_path / "o" / "deep.json").read_text())["bits"] == 16
    assert main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "r"), "--steps", "1", "-q"]) == 0
    assert cv2.imread(str(tmp_path / "r" / "deep.png"), cv2.IMREAD_UNCHANGED).dtype.name == "uint16"
    assert cv2.imread(str(tmp_path / "r" / "flat.png"), cv2.IMREAD_UNCHANGED).dtype.name == "uint8"


def test_upscale_resume_redoes_a_record_without_channels_and_bits(models, tmp_path, capsys):
    """A record made before outputs kept the input's channels and bits (no "channels"/"bits":
    an 8-bit PNG of a 16-bit input) is not resumed: the image is upscaled again, at 16 bits."""
    import cv2
    import numpy as np

    d = tmp_path / "in"
    d.mkdir()
    cv2.imwrite(str(d / "w.png"), np.arange(120, dtype=np.uint16).reshape(10, 12) * 500)
    out = tmp_path / "o"
    args = ["upscale", str(d), "-o", str(out), "--model", str(models[0]), "-q", "--resume"]
    assert main(args) == 0
    rec = json.loads((out / "w.json").read_text())
    assert rec["bits"] == 16 and rec["channels"] == 1
    del rec["bits"], rec["channels"]  # as an older run wrote it
    (out / "w.json").write_text(json.dumps(rec))
    capsys.readouterr()
    assert main(args) == 0
    assert "1 upscaled" in "".join(capsys.readouterr())
    assert json.loads((out / "w.json").read_text())["bits"] == 16
    assert main(args) == 0
    assert "1 already done" in "".join(capsys.readouterr())


def test_upscale_resume_keeps_an_older_record_of_an_rgb_8_bit_image(models, tmp_path, capsys):
    """An RGB 8-bit image's output did not change when outputs began to keep their input's
    channels and bits: its older record (no "channels"/"bits") still resumes."""
    write_image(tmp_path / "in" / "c.png", torch.rand(1, 3, 10, 12, generator=torch.Generator().manual_seed(9)))
    out = tmp_path / "o"
    args = ["upscale", str(tmp_path / "in"), "-o", str(out), "--model", str(models[0]), "-q", "--resume"]
    assert main(args) == 0
    rec = json.loads((out / "c.json").read_text())
    del rec["bits"], rec["channels"]  # as an older run wrote it
    (out / "c.json").write_text(json.dumps(rec))
    capsys.readouterr()
    assert main(args) == 0
    assert "0 upscaled" in capsys.readouterr().out


def test_detect_without_save_sr_removes_an_earlier_runs_sr_images(models, lr_dir, tmp_path):
    """A --method ldl run over a folder where a --save-sr run wrote NAME_gan/_mse/_pseudo_gt.png
    used to leave them there, the pseudo-GT made from another mask than the new NAME_mask.png."""
    gan, mse = models
    out = tmp_path / "det"
    base = ["detect", str(lr_dir), "-o", str(out), "--gan", str(gan), "--mse", str(mse), "-q"]
    assert main(base + ["--save-sr"]) == 0
    assert (out / "im0_pseudo_gt.png").is_file()
    assert main(base + ["--method", "ldl", "--threshold", "0.01"]) == 0
    left = sorted(p.name for p in out.iterdir() if p.name.startswith("im0"))
    assert left == ["im0_dmap.png", "im0_mask.png", "im0_overlay.png", "im0_regions.json"]
    assert set(json.loads((out / "im0_regions.json").read_text())["sha256"]) == {
        "im0_dmap.png", "im0_mask.png", "im0_overlay.png"}


def test_upscale_without_reference_removes_an_earlier_runs_reference_image(models, lr_dir, tmp_path):
    """As detect without --save-sr: a --reference run's NAME_ref.png (another model's output) was left
    beside the new NAME.png, as if the rerun had made it; one the user changed since stays."""
    gan, mse = models
    out = tmp_path / "sr"
    base = ["upscale", str(lr_dir), "-o", str(out), "--model", str(gan), "-q"]
    assert main(base + ["--reference", str(mse)]) == 0
    (out / "im1_ref.png").write_bytes((out / "im1_ref.png").read_bytes() + b"edited")
    assert main(base) == 0
    assert sorted(p.name for p in out.iterdir()) == ["im0.json", "im0.png", "im1.json", "im1.png", "im1_ref.png"]
    assert set(json.loads((out / "im0.json").read_text())["sha256"]) == {"im0.png"}
