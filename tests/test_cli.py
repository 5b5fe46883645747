import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from genrestore.cli import example_path, main
from genrestore.io import read_image, write_image


@pytest.fixture
def inputs(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    g = torch.Generator().manual_seed(0)
    write_image(d / "a.png", torch.rand(1, 3, 40, 48, generator=g))
    write_image(d / "b.png", torch.rand(1, 4, 32, 32, generator=g))  # RGBA
    write_image(d / "c.png", torch.rand(1, 1, 33, 35, generator=g))  # grey
    return d


def test_degrade_writes_images_and_exact_params(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["degrade", str(inputs), "-o", str(out), "--task", "denoise", "--level", "L", "--seed", "3",
                 "-q", "--json"]) == 0
    lines = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3
    rec = json.loads((out / "a.json").read_text())
    assert rec["degradation"] == {"task": "denoise", "code": "N", "level": "L", "lambda": 12.0, "p": 0.32}
    assert rec["seed"] == 3
    assert read_image(out / "b.png").shape[1] == 4  # alpha kept
    assert torch.equal(read_image(out / "b.png")[:, 3], read_image(inputs / "b.png")[:, 3])
    assert read_image(out / "c.png").shape[1] == 1  # grey stays grey
    first = (out / "a.png").read_bytes()
    assert main(["degrade", str(inputs / "a.png"), "-o", str(tmp_path / "again"), "--task", "denoise",
                 "--level", "L", "--seed", "3", "-q"]) == 0
    assert (tmp_path / "again" / "a.png").read_bytes() == first  # same seed, same bytes, batch-independent


def test_upsample_inpaint_composition_outputs(inputs, tmp_path):
    out = tmp_path / "o"
    assert main(["degrade", str(inputs / "a.png"), "-o", str(out), "--task", "upsample", "--level", "S", "-q"]) == 0
    assert read_image(out / "a.png").shape[-2:] == (10, 12)
    assert json.loads((out / "a.json").read_text())["params"]["filter"] in ("bilinear", "bicubic", "lanczos")
    assert main(["degrade", str(inputs / "a.png"), "-o", str(out), "--task", "inpaint", "-q"]) == 0
    mask = read_image(out / "a_mask.png")
    assert mask.shape == (1, 1, 40, 48) and mask.min() == 0
    assert main(["degrade", str(inputs / "a.png"), "-o", str(out), "--task", "UNAP", "-q"]) == 0
    rec = json.loads((out / "a.json").read_text())
    assert [s["task"] for s in rec["degradation"]["stages"]] == ["upsample", "denoise", "deartifact", "inpaint"]
    assert main(["degrade", str(inputs / "a.png"), "-o", str(out), "--task", "realesrgan-x4", "-q"]) == 0
    assert read_image(out / "a.png").shape[-2:] == (10, 12)
    rec = json.loads((out / "a.json").read_text())
    assert set(rec["params"]) == {"stage1", "stage2", "final"}
    assert main(["degrade", str(inputs / "a.png"), "-o", str(out), "--task", "idm", "-q"]) == 0
    rec = json.loads((out / "a.json").read_text())
    assert 50 <= rec["params"]["jpeg_quality"] <= 100 and rec["output_size"] == [40, 48]


def test_only_tasks_that_make_masks_reserve_their_names(tmp_path, capsys):
    """a.png and a_mask.png in one folder (as `degrade --task inpaint` leaves them) degrade side by
    side under a task without masks; a task with masks refuses them (both would write a_mask.png)."""
    src = tmp_path / "src"
    write_image(src / "a.png", torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    write_image(src / "a_mask.png", torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(1)))
    assert main(["degrade", str(src), "-o", str(tmp_path / "o"), "--task", "denoise", "-q"]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.json", "a.png", "a_mask.json", "a_mask.png"]
    assert json.loads((tmp_path / "o" / "a_mask.json").read_text())["input"] == str(src / "a_mask.png")
    for task in ("inpaint", "NP"):
        capsys.readouterr()
        assert main(["degrade", str(src), "-o", str(tmp_path / task), "--task", task, "-q"]) == 2
        assert "would both write" in capsys.readouterr().err


def test_resume_skips_done_images(inputs, tmp_path, capsys):
    out = tmp_path / "o"
    args = ["degrade", str(inputs), "-o", str(out), "--task", "deartifact", "-q"]
    assert main(args) == 0
    mtime = (out / "a.png").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args + ["--resume"]) == 0
    assert "0 degraded, 3 already done" in capsys.readouterr().out
    assert (out / "a.png").stat().st_mtime_ns == mtime


def test_resume_redoes_an_image_whose_output_or_mask_is_damaged(inputs, tmp_path, capsys):
    """A truncated output or a deleted inpainting mask is not "done": each is checked against the
    sha256 its JSON records (a resume used to trust any NAME.png beside a matching JSON)."""
    out = tmp_path / "o"
    args = ["degrade", str(inputs), "-o", str(out), "--task", "inpaint", "-q"]
    assert main(args) == 0
    good = (out / "a.png").read_bytes()
    (out / "a.png").write_bytes(good[:100])
    (out / "b_mask.png").unlink()
    capsys.readouterr()
    assert main(args + ["--resume"]) == 0
    assert "2 degraded, 1 already done" in capsys.readouterr().out
    assert (out / "a.png").read_bytes() == good and (out / "b_mask.png").is_file()


def test_shards_together_equal_one_run(inputs, tmp_path):
    full, sharded = tmp_path / "full", tmp_path / "sharded"
    assert main(["degrade", str(inputs), "-o", str(full), "--task", "inpaint", "-q"]) == 0
    for i in range(2):
        assert main(["degrade", str(inputs), "-o", str(sharded), "--task", "inpaint", "--shard", f"{i}/2", "-q"]) == 0
    for name in ("a.png", "b.png", "c.png"):
        assert (full / name).read_bytes() == (sharded / name).read_bytes()


def test_grid_on_bundled_example(tmp_path, capsys):
    assert example_path().is_file()
    assert main(["degrade", "--example", "-o", str(tmp_path), "--grid", "-q", "--json"]) == 0
    grid = read_image(tmp_path / "grid_astronaut.png")
    assert grid.shape[1] == 3 and grid.shape[-1] > 6 * 160 and grid.shape[-2] > 4 * 160
    line = json.loads(capsys.readouterr().out)  # --json: one line per contact sheet (it printed nothing)
    assert line == {"input": str(example_path()), "grid": str(tmp_path / "grid_astronaut.png"), "seed": 0}


@pytest.mark.parametrize("argv,message", [
    (["--task", "bogus"], "unknown task 'bogus'"),
    (["--task", "idm", "--level", "M"], "--level applies"),
    ([], "nothing to do"),
])
def test_bad_usage_one_line_exit_2_nothing_written(inputs, tmp_path, capsys, argv, message):
    out = tmp_path / "o"
    assert main(["degrade", str(inputs), "-o", str(out)] + argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("genrestore: error:")
    assert not out.exists()


def test_image_smaller_than_factor(tmp_path, capsys):
    write_image(tmp_path / "small.png", torch.rand(1, 3, 16, 40))
    assert main(["degrade", str(tmp_path / "small.png"), "-o", str(tmp_path / "o"), "--task", "upsample",
                 "--level", "XL"]) == 2
    err = capsys.readouterr().err
    assert "small.png" in err and "smaller than the factor" in err
    assert not (tmp_path / "o").exists()


def test_unreadable_file_names_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    assert main(["degrade", str(bad), "-o", str(tmp_path / "o"), "--task", "denoise"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "cannot decode as an image" in err
    assert not (tmp_path / "o").exists()


def test_inputs_never_overwritten(inputs, capsys):
    before = (inputs / "a.png").read_bytes()
    assert main(["degrade", str(inputs / "a.png"), "-o", str(inputs), "--task", "denoise", "-q"]) == 2
    assert "overwrite an input" in capsys.readouterr().err
    assert (inputs / "a.png").read_bytes() == before


def test_exif_rotated_jpeg_input(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    assert main(["degrade", str(tmp_path / "r.jpg"), "-o", str(tmp_path / "o"), "--task", "upsample",
                 "--level", "XS", "-q"]) == 0
    assert read_image(tmp_path / "o" / "r.png").shape[-2:] == (15, 10)  # rotated to 30x20, then halved


def test_console_script_entry_point():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "genrestore.cli", "degrade", "-o", "/tmp/x", "--task", "nope"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().startswith("genrestore: error:") and "Traceback" not in r.stderr


def test_wrong_mode_is_refused(tmp_path, capsys):
    Image.new("LAB", (8, 8)).save(tmp_path / "lab.tif")  # CIELAB: not an RGB-family mode
    assert main(["degrade", str(tmp_path / "lab.tif"), "-o", str(tmp_path / "o"), "--task", "denoise"]) == 2
    err = capsys.readouterr().err
    assert "lab.tif" in err and "unsupported image mode 'LAB'" in err
    assert not (tmp_path / "o").exists()


def test_metrics_command_pairs_by_name(tmp_path, capsys):
    from skimage.metrics import peak_signal_noise_ratio

    ref, dist = tmp_path / "ref", tmp_path / "dist"
    g = torch.Generator().manual_seed(0)
    for name in ("a", "b"):
        x = torch.rand(1, 3, 24, 24, generator=g)
        write_image(ref / f"{name}.png", x)
        write_image(dist / f"{name}.png", (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1))
    assert main(["metrics", str(ref), str(dist), "--metrics", "psnr,ssim", "--csv", str(tmp_path / "m.csv"),
                 "--json", "-q"]) == 0
    lines = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    a = read_image(ref / "a.png")[0].permute(1, 2, 0).double().numpy()
    b = read_image(dist / "a.png")[0].permute(1, 2, 0).double().numpy()
    # float32 arithmetic by default (~1e-7 dB from scikit-image's float64; the issue asks 1e-4)
    assert abs(lines[0]["psnr"] - peak_signal_noise_ratio(a, b, data_range=1)) < 1e-5
    assert lines[-1]["summary"]["images"] == 2 and lines[-1]["summary"]["weights_used"] == []
    assert (tmp_path / "m.csv").read_text().splitlines()[0] == "name,reference,psnr,ssim"


def test_metrics_json_is_strict_for_identical_images(tmp_path, capsys):
    """PSNR of identical images is inf: --json writes it as the string "inf" (RFC 8259 has no
    Infinity; before, the lines held a bare Infinity that strict parsers refuse)."""
    ref, dist = tmp_path / "ref", tmp_path / "dist"
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    write_image(ref / "a.png", x)
    write_image(dist / "a.png", x)
    assert main(["metrics", str(ref), str(dist), "--metrics", "psnr,mse", "--json", "-q"]) == 0

    def refuse(constant):
        raise ValueError(constant)

    row, summary = [json.loads(s, parse_constant=refuse) for s in capsys.readouterr().out.splitlines()]
    assert row["psnr"] == "inf" and float(row["psnr"]) == math.inf and row["mse"] == 0.0
    assert summary["summary"]["psnr"] == "inf"


def test_metrics_pairs_the_same_file_name_before_the_same_stem(tmp_path, capsys):
    """ref/a.jpg and ref/a.png: before the fix both dist/a.jpg and dist/a.png were paired with
    ref/a.png (the last of the sorted stems), so a.jpg got PSNR against the wrong reference."""
    ref, dist = tmp_path / "ref", tmp_path / "dist"
    g = torch.Generator().manual_seed(0)
    jpg_ref = torch.rand(1, 3, 16, 16, generator=g)
    write_image(ref / "a.jpg", jpg_ref)
    write_image(ref / "a.png", torch.rand(1, 3, 16, 16, generator=g))
    write_image(dist / "a.jpg", read_image(ref / "a.jpg"))  # a second JPEG round trip: close to ref/a.jpg
    assert main(["metrics", str(ref), str(dist), "--metrics", "mse", "--json", "-q"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert row["reference"] == str(ref / "a.jpg") and row["mse"] < 0.01  # against a.png: ~0.17
    write_image(dist / "a.bmp", torch.rand(1, 3, 16, 16, generator=g))  # a stem with two references: ambiguous
    assert main(["metrics", str(ref), str(dist), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "a.bmp" in err and "a.jpg, a.png" in err and len(err.splitlines()) == 1, err


def test_metrics_command_bad_input(tmp_path, capsys):
    ref, dist = tmp_path / "ref", tmp_path / "dist"
    write_image(ref / "a.png", torch.rand(1, 3, 16, 16))
    write_image(dist / "a.png", torch.rand(1, 3, 16, 17))
    write_image(dist / "z.png", torch.rand(1, 3, 16, 16))
    assert main(["metrics", str(ref), str(dist)]) == 2
    assert "z.png" in capsys.readouterr().err
    (dist / "z.png").unlink()
    assert main(["metrics", str(ref), str(dist), "-q"]) == 2
    assert "differs from its reference" in capsys.readouterr().err
    assert main(["metrics", str(ref), str(dist), "--metrics", "bogus"]) == 2
    assert "unknown metric" in capsys.readouterr().err
    (dist / "a.png").unlink()
    write_image(dist / "a.png", torch.rand(1, 3, 16, 16))
    for bad in ("-1", "x"):  # before the fix -1 exited 1 with "ValueError: range() arg 3 must not be zero"
        with pytest.raises(SystemExit) as e:
            main(["metrics", str(ref), str(dist), "--crop-border", bad, "-q"])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert "--crop-border" in err and "non-negative integer" in err and len(err.splitlines()) == 1, err


def test_metrics_lpips_reports_weights(tmp_path, capsys, monkeypatch):
    from genrestore.metrics.lpips import LPIPS
    from genrestore.weights import load_state_dict

    monkeypatch.setenv("GENRESTORE_WEIGHTS", str(tmp_path / "store"))
    torch.manual_seed(0)
    model = LPIPS("alex")
    torch.save({f"features.{k}": v for k, v in model.backbone.features.state_dict().items()}, tmp_path / "alex.pth")
    assert main(["weights", "add", "alexnet-torchvision", str(tmp_path / "alex.pth"), "--force"]) == 0
    ref, dist = tmp_path / "ref", tmp_path / "dist"
    x, y = torch.rand(1, 3, 40, 40), torch.rand(1, 3, 40, 40)
    write_image(ref / "a.png", x)
    write_image(dist / "a.png", y)
    capsys.readouterr()
    assert main(["metrics", str(ref), str(dist), "--metrics", "lpips", "--json", "-q"]) == 0
    out = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    model.load_heads(load_state_dict("lpips-alex-v0.1"))
    expected = model(read_image(ref / "a.png"), read_image(dist / "a.png")).item()
    assert abs(out[0]["lpips"] - expected) < 1e-6
    used = out[-1]["summary"]["weights_used"]
    assert any(u.startswith("alexnet-torchvision") for u in used) and any(u.startswith("lpips-alex-v0.1") for u in used)


# Regressions found in review: bad input anywhere in a folder stops the run before any output.

def test_bad_file_among_good_ones_writes_nothing(tmp_path, capsys):
    d = tmp_path / "in"
    write_image(d / "a_good.png", torch.rand(1, 3, 32, 32))
    good = (d / "a_good.png").read_bytes()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(d / "b.jpg", quality=90)
    (d / "b.jpg").write_bytes((d / "b.jpg").read_bytes()[:200])  # truncated JPEG
    assert main(["degrade", str(d), "-o", str(tmp_path / "o"), "--task", "denoise", "-q"]) == 2
    err = capsys.readouterr().err
    assert "b.jpg" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists() and (d / "a_good.png").read_bytes() == good


def test_pipeline_too_small_names_the_file_and_writes_nothing(tmp_path, capsys):
    d = tmp_path / "in"
    write_image(d / "a.png", torch.rand(1, 3, 32, 32))
    write_image(d / "tiny.png", torch.rand(1, 3, 1, 1))
    assert main(["degrade", str(d), "-o", str(tmp_path / "o"), "--task", "realesrgan-x4", "-q"]) == 2
    assert "tiny.png" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_outputs_of_two_inputs_cannot_collide(tmp_path, capsys):
    d = tmp_path / "in"
    write_image(d / "a.png", torch.rand(1, 3, 32, 32))
    write_image(d / "a_mask.png", torch.rand(1, 3, 32, 32))
    assert main(["degrade", str(d), "-o", str(tmp_path / "o"), "--task", "inpaint", "-q"]) == 2
    assert "would both write" in capsys.readouterr().err and not (tmp_path / "o").exists()
    (d / "a_mask.png").rename(d / "grid_a.png")
    assert main(["degrade", str(d), "-o", str(tmp_path / "o"), "--task", "denoise", "-q"]) == 0  # no grid: fine
    assert main(["degrade", str(d), "-o", str(tmp_path / "o2"), "--task", "denoise", "--grid", "-q"]) == 2


def test_usage_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["degrade", str(tmp_path), "-o", str(tmp_path / "o"), "--task", "denoise", "--level", "XXL"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("genrestore: error:") and "XXL" in err


def test_resume_notices_a_backend_change(inputs, tmp_path, capsys):
    out = tmp_path / "o"
    base = ["degrade", str(inputs / "a.png"), "-o", str(out), "--task", "upsample", "--level", "XS", "-q"]
    assert main(base) == 0
    assert json.loads((out / "a.json").read_text())["degradation"]["backend"] == "pil"
    capsys.readouterr()
    assert main(base + ["--backend", "torch", "--resume"]) == 0
    assert "1 degraded, 0 already done" in capsys.readouterr().out


def test_every_help_page_renders():
    """argparse formats help lazily with %: a stray '%' in any help text breaks --help; a
    description is not %-formatted, so a '%%' there shows as written."""
    import argparse

    from genrestore.cli import build_parser

    def walk(parser):
        assert "%%" not in parser.format_help(), parser.prog
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield sub
                    yield from walk(sub)

    pages = list(walk(build_parser()))
    assert len(pages) > 15


@pytest.mark.parametrize("argv", [
    ["train", "idm", "--lr", "nan"],
    ["train", "idm", "--lr", "0"],
    ["train", "idm", "--ema-decay", "1"],
    ["train", "desra", "--threshold", "0"],
    ["detect", "--threshold", "-0.5"],  # > 10 for --method desra: test_detect_cli_method_argument_errors
    ["artifacts", "--level", "1.5"],
    ["artifacts", "--batch-size", "0"],
    ["train", "niqe", "--sharpness", "inf"],
    ["metrics", "--pfid-size", "0"],
    ["metrics", "--batch-size", "0"],
    ["metrics", "--steps", "0"],
])
def test_numeric_options_refuse_out_of_range_values(tmp_path, capsys, argv):
    """Each bad value stops argparse (exit 2, one line naming the value) before any file is read."""
    required = {"idm": ["--data", str(tmp_path), "-o", str(tmp_path / "o")],
                "desra": ["--lr-images", str(tmp_path), "--mse", "m", "--model", "g", "-o", str(tmp_path / "o")],
                "detect": [str(tmp_path), "--mse", "m", "--gan", "g", "-o", str(tmp_path / "o")],
                "niqe": ["--data", str(tmp_path), "-o", str(tmp_path / "p.safetensors")],
                "artifacts": [str(tmp_path), "-o", str(tmp_path / "o")],
                "metrics": [str(tmp_path), str(tmp_path)]}
    key = argv[1] if argv[0] == "train" else argv[0]
    with pytest.raises(SystemExit) as e:
        main(argv + required[key])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("genrestore: error:") and argv[-1] in err
    assert not (tmp_path / "o").exists()


def test_argtypes_interval_ends():
    import argparse

    from genrestore._argtypes import float_in, int_at_least

    decay = float_in(0, 1, high_open=True)
    assert decay("0") == 0.0 and decay("0.999") == 0.999
    for bad in ("1", "-0.1", "nan", "-inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            decay(bad)
    rate = float_in(0, 10, low_open=True)
    assert rate("10") == 10.0
    with pytest.raises(argparse.ArgumentTypeError, match=r"\(0, 10\]"):
        rate("0")
    lr = float_in(0, low_open=True)  # an infinite end is never included: its bracket says so
    with pytest.raises(argparse.ArgumentTypeError, match=r"in \(0, inf\), got 'inf'"):
        lr("inf")
    assert int_at_least(0, "non-negative")("0") == 0
    with pytest.raises(argparse.ArgumentTypeError, match="positive"):
        int_at_least(1, "positive")("2.5")


@pytest.mark.parametrize("command", [
    ["degrade", "IN", "--task", "denoise"],
    ["train", "idm", "--data", "IN"],
    ["train", "diffgar", "--data", "IN"],
])
def test_an_output_folder_that_is_a_file_is_an_input_error(inputs, tmp_path, capsys, command):
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"keep me")
    for out in (blocker, blocker / "sub"):
        argv = [str(inputs) if a == "IN" else a for a in command] + ["-o", str(out), "-q"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "cannot be an output folder" in err and "Traceback" not in err
    assert blocker.read_bytes() == b"keep me"


def test_an_empty_input_folder_is_an_input_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    out = tmp_path / "o"
    assert main(["degrade", str(tmp_path / "empty"), "-o", str(out), "--task", "denoise", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genrestore: error:") and err.count("\n") == 1 and "no images found in" in err
    assert str(tmp_path / "empty") in err and not out.exists()
    assert main(["metrics", str(tmp_path / "empty"), str(tmp_path / "empty"), "-q"]) == 2
    assert "no images found in" in capsys.readouterr().err


def test_backend_reaches_the_upsampling_stage_of_a_composition(inputs, tmp_path):
    out = tmp_path / "o"
    assert main(["degrade", str(inputs / "a.png"), "-o", str(out), "--task", "UN", "--backend", "torch", "-q"]) == 0
    assert json.loads((out / "a.json").read_text())["degradation"]["stages"][0]["backend"] == "torch"


def test_alpha_follows_the_cropped_pixels_of_an_odd_size_upsample(tmp_path):
    """35 x 37 at x4: RGB and alpha both come from the top-left 32 x 36 (area means of 4 x 4 blocks)."""
    d = tmp_path / "in"
    alpha = torch.zeros(1, 1, 35, 37)
    alpha[..., 32:, :] = 1  # only the rows the x4 downscale drops are opaque
    write_image(d / "a.png", torch.cat([torch.full((1, 3, 35, 37), 0.5), alpha], 1))
    assert main(["degrade", str(d), "-o", str(tmp_path / "o"), "--task", "upsample", "--level", "S", "-q"]) == 0
    out = read_image(tmp_path / "o" / "a.png")
    assert out.shape == (1, 4, 8, 9) and out[:, 3].max() == 0


@pytest.mark.parametrize("verb", ["degrade", "restore", "artifacts"])
def test_shards_refuse_two_inputs_of_one_stem_like_one_run(tmp_path, capsys, verb):
    """a/x.png and b/x.png would both write OUT/x.png: one run refuses, and so must each shard
    (outputs were planned on the shard's own images, so shards 0/2 and 1/2 each passed and the
    second overwrote the first's outputs)."""
    for folder, seed in (("a", 0), ("b", 1)):
        write_image(tmp_path / folder / "x.png", torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(seed)))
    out = tmp_path / "o"
    extra = {"degrade": ["--task", "denoise"], "restore": ["--steps", "1"],
             "artifacts": ["--kind", "identity"]}[verb]
    base = [verb, str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(out), *extra, "-q"]
    assert main(base) == 2
    capsys.readouterr()
    for i in range(2):
        assert main(base + ["--shard", f"{i}/2"]) == 2
        err = capsys.readouterr().err.strip()
        assert "would both write" in err and len(err.splitlines()) == 1, err
    assert not out.exists() or not list(out.iterdir())


def test_metrics_csv_refuses_an_input_a_folder_or_a_path_under_a_file(tmp_path, capsys):
    """--csv equal to an input overwrote it with the CSV (exit 0); a folder or a path under a file
    failed after all the work with exit 1 ("IsADirectoryError: ...", "FileExistsError: ...")."""
    g = torch.Generator().manual_seed(0)
    ref, dist = tmp_path / "ref", tmp_path / "dist"
    write_image(ref / "a.png", torch.rand(1, 3, 16, 16, generator=g))
    write_image(dist / "a.png", torch.rand(1, 3, 16, 16, generator=g))
    before = {p: p.read_bytes() for p in (ref / "a.png", dist / "a.png")}
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"keep me")
    for csv, why in ((dist / "a.png", "would overwrite an input"), (ref / "a.png", "would overwrite an input"),
                     (ref, "is a folder"), (blocker / "x.csv", "is a file")):
        assert main(["metrics", str(ref), str(dist), "--csv", str(csv), "-q"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("genrestore: error: --csv ") and err.count("\n") == 1 and why in err, err
    assert {p: p.read_bytes() for p in before} == before and blocker.read_bytes() == b"keep me"


def test_train_niqe_output_under_a_file_is_refused_up_front(tmp_path, capsys):
    """-o under a file exited 1 with "FileExistsError: [Errno 17] File exists" after the fit."""
    write_image(tmp_path / "data" / "a.png", torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(0)))
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"keep me")
    for out in (blocker / "m.safetensors", tmp_path / "data" / "dir.safetensors"):
        if out.parent != blocker:
            out.mkdir()
        assert main(["train", "niqe", "--data", str(tmp_path / "data"), "-o", str(out), "-q"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"genrestore: error: {out}") and err.count("\n") == 1, err
    assert blocker.read_bytes() == b"keep me"


def test_train_niqe_names_an_image_too_small_for_its_blocks(tmp_path, capsys):
    """NIQE's 96 px blocks: the refusal names the file (it said only 'got 16x16')."""
    write_image(tmp_path / "data" / "a.png", torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(0)))
    write_image(tmp_path / "data" / "tiny.png", torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)))
    assert main(["train", "niqe", "--data", str(tmp_path / "data"), "-o", str(tmp_path / "m.safetensors"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genrestore: error: {tmp_path / 'data' / 'tiny.png'}: ") and "16x16" in err, err
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("row,what", [
    ({"metrics": 5}, "metrics"),
    ({"metrics": {"psnr": "abc"}}, "metrics"),
    ({"metrics": {"psnr": True}}, "metrics"),
    ({"seconds": "fast"}, "seconds"),
    ({"higher_is_better": [1]}, "higher_is_better"),
    ({"images": "x.png"}, "images"),
    ({"seed": "a"}, "seed"),
    ({"task": ["denoise"]}, "task"),
])
def test_report_of_a_malformed_results_row_is_an_input_error(tmp_path, capsys, row, what):
    """Rows of the wrong shape exited 1 with e.g. "genrestore: error: TypeError: 'int' object is not
    iterable" or "ValueError: could not convert string to float: 'abc'", naming neither file nor line."""
    run = tmp_path / "run"
    run.mkdir()
    good = {"task": "denoise", "level": "M", "method": "m", "image": "a", "seed": 0, "seconds": 1.0,
            "metrics": {"psnr": 20.0}, "higher_is_better": {"psnr": True}, "images": {"output": None}}
    (run / "results.jsonl").write_text(json.dumps(good) + "\n" + json.dumps({**good, **row}) + "\n")
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genrestore: error: {run / 'results.jsonl'}:2: ") and what in err, err
    assert err.count("\n") == 1 and sorted(p.name for p in run.iterdir()) == ["results.jsonl"]


def test_report_of_a_line_that_is_not_an_object_says_so(tmp_path, capsys):
    """A JSON line that is not an object said "missing []"."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.jsonl").write_text("[1, 2]\n")
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert "results.jsonl:1: expected an object" in err and "missing []" not in err and "got a list" in err, err


def test_metrics_niqe_model_that_is_not_safetensors_is_an_input_error(tmp_path, capsys):
    """--niqe-model FAKE.safetensors exited 1 with 'genrestore: error: SafetensorError: Error while
    deserializing header: header too large', naming no file (a bad .npz was already exit 2)."""
    write_image(tmp_path / "a.png", torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    fake = tmp_path / "fake.safetensors"
    fake.write_text("not a safetensors file")
    a = str(tmp_path / "a.png")
    assert main(["metrics", a, a, "--metrics", "niqe", "--niqe-model", str(fake), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genrestore: error: {fake}: not a NIQE pristine model") and err.count("\n") == 1, err
    for missing in ("mine.safetensors", "mine.npz"):  # said "not a NIQE pristine model: FileNotFoundError..."
        assert main(["metrics", a, a, "--metrics", "niqe", "--niqe-model", str(tmp_path / missing), "-q"]) == 2
        assert capsys.readouterr().err == f"genrestore: error: {tmp_path / missing}: no such file (a NIQE pristine model: .safetensors or .npz)\n"


def test_a_model_of_another_architecture_names_its_file(tmp_path, capsys):
    """restore --model rdn-x2 said only "expected a config with arch 'conditional-unet', got 'rdn'"."""
    from genrestore.weights import resolve

    write_image(tmp_path / "a.png", torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    out = tmp_path / "o"
    assert main(["restore", str(tmp_path / "a.png"), "-o", str(out), "--model", "rdn-x2", "--steps", "1",
                 "--device", "cpu", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genrestore: error: {resolve('rdn-x2')}: expected a config with arch 'conditional-unet'")
    assert err.count("\n") == 1 and not out.exists()


def test_train_names_the_image_smaller_than_the_crop(tmp_path, capsys):
    """said "images [0] are smaller than the crop size 16": an index, not the file."""
    write_image(tmp_path / "data" / "tiny.png", torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)))
    out = tmp_path / "o"
    assert main(["train", "idm", "--data", str(tmp_path / "data"), "-o", str(out), "--size", "16", "--steps", "1",
                 "--batch-size", "1", "--channels", "8", "8", "--device", "cpu", "-q"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "data" / "tiny.png") in err and "8x8" in err and err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.parametrize("extra,words", [
    ([], "SSIM needs images of at least 11x11 px, got 3x2"),
    (["--metrics", "psnr", "--crop-border", "1"], "leaves nothing of a 3x2 image"),
])
def test_metrics_errors_of_one_pair_name_its_file(tmp_path, capsys, extra, words):
    """said e.g. "SSIM needs images of at least 11x11 px, got 3x2" without the image's name."""
    g = torch.Generator().manual_seed(0)
    write_image(tmp_path / "ref" / "ok.png", torch.rand(1, 3, 16, 16, generator=g))
    write_image(tmp_path / "ref" / "small.png", torch.rand(1, 3, 2, 3, generator=g))
    write_image(tmp_path / "dist" / "ok.png", torch.rand(1, 3, 16, 16, generator=g))
    write_image(tmp_path / "dist" / "small.png", torch.rand(1, 3, 2, 3, generator=g))
    assert main(["metrics", str(tmp_path / "ref"), str(tmp_path / "dist"), *extra, "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genrestore: error: {tmp_path / 'dist' / 'small.png'}: ") and words in err, err
    assert err.count("\n") == 1


@pytest.mark.parametrize("verb,blocked", [("degrade", "x.json"), ("restore", "x.png"), ("artifacts", "x.png")])
def test_an_output_path_that_is_a_folder_is_refused_up_front(tmp_path, capsys, verb, blocked):
    """OUT/x.png (or x.json) being a folder failed after the work with exit 1, "genrestore: error:
    IsADirectoryError: [Errno 21] Is a directory: ...", leaving the outputs written before it
    (degrade: x.png; artifacts: x_clean.png)."""
    write_image(tmp_path / "in" / "x.png", torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    out = tmp_path / "o"
    (out / blocked).mkdir(parents=True)
    extra = {"degrade": ["--task", "denoise"], "restore": ["--steps", "1", "--device", "cpu"],
             "artifacts": ["--kind", "identity"]}[verb]
    assert main([verb, str(tmp_path / "in"), "-o", str(out), *extra, "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genrestore: error: {out / blocked}: ") and "folder" in err and err.count("\n") == 1, err
    assert sorted(p.name for p in out.iterdir()) == [blocked]


@pytest.mark.parametrize("set_metrics", ["[1]", '{"groups": 5, "metrics": ["fid"]}', '{"metrics": 5}',
                                         '{"metrics": ["fid"], "groups": [{"fid": "x"}]}'])
def test_report_of_a_malformed_set_metrics_file_is_an_input_error(tmp_path, capsys, set_metrics):
    """exited 1 with "AttributeError: 'list' object has no attribute 'get'" or "TypeError: 'int'
    object is not iterable", naming no file."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.jsonl").write_text(json.dumps({"task": "denoise", "level": "M", "method": "m", "image": "a",
                                                   "metrics": {"psnr": 20.0}}) + "\n")
    (run / "set_metrics.json").write_text(set_metrics)
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genrestore: error: {run / 'set_metrics.json'}: ") and err.count("\n") == 1, err
    assert not (run / "report.html").exists()


def test_report_whose_output_is_a_folder_writes_nothing(tmp_path, capsys):
    """report.md being a folder exited 1 ("IsADirectoryError: ...") after writing report.html."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.jsonl").write_text(json.dumps({"task": "denoise", "level": "M", "method": "m", "image": "a"})
                                       + "\n")
    (run / "report.md").mkdir()
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genrestore: error: {run / 'report.md'}: is a folder") and err.count("\n") == 1, err
    assert sorted(p.name for p in run.iterdir()) == ["report.md", "results.jsonl"]


def test_degrade_unknown_task_lists_the_pipelines_too(tmp_path, capsys):
    """degrade --task takes the pipelines as well as the benchmark tasks; the error said only the latter."""
    assert main(["degrade", "--example", "-o", str(tmp_path / "o"), "--task", "nosuch"]) == 2
    err = capsys.readouterr().err.strip()
    assert "'nosuch'" in err and "UNAP" in err and "realesrgan-x4" in err and len(err.splitlines()) == 1, err


def _truncated_png(path):
    write_image(path, torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(5)))
    path.write_bytes(path.read_bytes()[:60])


@pytest.mark.parametrize("case,extra,words", [
    ("size", [], "differs from its reference"),
    ("damaged", [], "cannot"),
    ("ssim", [], "SSIM needs images of at least 11x11 px"),
    ("crop", ["--metrics", "psnr", "--crop-border", "10"], "--crop-border 10 leaves nothing of a 16x16 image"),
    ("niqe", ["--metrics", "niqe"], "NIQE needs"),
])
def test_metrics_checks_every_pair_before_the_first_row(tmp_path, capsys, case, extra, words):
    """A bad pair late in the folder (z.png) failed only when the loop reached it, after the rows of
    the pairs before it were printed; every pair is now checked before the progress bar starts."""
    g = torch.Generator().manual_seed(0)
    ref, dist = tmp_path / "ref", tmp_path / "dist"
    a = torch.rand(1, 3, 96, 192, generator=g)  # two NIQE blocks
    write_image(ref / "a.png", a)
    write_image(dist / "a.png", a.flip(-1))
    side = {"ssim": 8, "niqe": 96}.get(case, 16)
    z = torch.rand(1, 3, side, side, generator=g)
    write_image(ref / "z.png", z)
    if case == "size":
        write_image(dist / "z.png", torch.rand(1, 3, 16, 17, generator=g))
    elif case == "damaged":
        _truncated_png(dist / "z.png")
    else:
        write_image(dist / "z.png", z.flip(-2))
    assert main(["metrics", str(ref), str(dist), "--json", *extra]) == 2
    captured = capsys.readouterr()
    assert captured.out == "", captured.out  # no row: nothing was measured
    err = captured.err
    assert err.startswith("genrestore: error:") and "z.png" in err and words in err and err.count("\n") == 1, err


@pytest.mark.parametrize("content", [b"not a safetensors file", None])
def test_training_report_of_a_damaged_checkpoint_is_an_input_error(tmp_path, content):
    """The report after a --time-limit stop read the checkpoint with a bare safe_open: a damaged one
    raised 'SafetensorError: ...' (one without its run record: 'TypeError: ...'), naming no file."""
    import argparse

    from safetensors.torch import save_file

    from genrestore._checks import InputError
    from genrestore.cli_train import report_training

    ckpt = tmp_path / "checkpoint.safetensors"
    if content is None:
        save_file({"model.x": torch.zeros(2)}, str(ckpt))
    else:
        ckpt.write_bytes(content)
    with pytest.raises(InputError, match=f"^{ckpt}: not a"):
        report_training(argparse.Namespace(output=str(tmp_path), steps=5), "IDM model")


@pytest.fixture
def unwritable(tmp_path):
    """A folder this process cannot create files in: a read-only one (root writes there anyway, so
    for root /proc/self, which nobody can)."""
    import os
    from pathlib import Path

    folder = Path("/proc/self") if os.geteuid() == 0 else tmp_path / "read-only"
    if folder != Path("/proc/self"):
        folder.mkdir()
        folder.chmod(0o555)
    if os.access(folder, os.W_OK):
        pytest.skip(f"{folder} is writable here")
    yield folder
    if folder != Path("/proc/self"):
        folder.chmod(0o755)


@pytest.mark.parametrize("verb", ["degrade", "metrics --csv", "train idm", "train niqe", "weights convert"])
def test_an_unwritable_output_location_is_refused_up_front(inputs, tmp_path, capsys, unwritable, verb):
    """An output in a folder that cannot be written failed after the work, with exit 1 and e.g.
    "FileNotFoundError: [Errno 2] No such file or directory: '/proc/self/.m.csv.mp1qdv0_.tmp'"."""
    (tmp_path / "G.pkl").write_bytes(b"\x80\x04garbage")
    a = str(inputs / "a.png")
    target = unwritable / "out"
    argv = {"degrade": ["degrade", a, "-o", str(target), "--task", "denoise", "-q"],
            "metrics --csv": ["metrics", a, a, "--csv", str(target / "m.csv"), "-q"],
            "train idm": ["train", "idm", "--data", str(inputs), "-o", str(target), "--size", "16", "--steps", "1",
                          "--batch-size", "1", "--channels", "8", "8", "--device", "cpu", "-q"],
            "train niqe": ["train", "niqe", "--data", str(inputs), "-o", str(target / "n.safetensors"), "-q"],
            "weights convert": ["weights", "convert", str(tmp_path / "G.pkl"), str(target / "G.safetensors")]}[verb]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("genrestore: error: ") and f"({unwritable} is not writable" in err, err
    assert err.count("\n") == 1, err


def test_a_folder_that_refuses_new_files_is_refused_though_os_access_allows_it(inputs, tmp_path, capsys):
    """/proc passes os.access(W_OK) for root but creates no files: metrics --csv /proc/m.csv ran the
    metrics, then exited 1 with 'FileNotFoundError: ... /proc/.m.csv....tmp'."""
    import os
    from pathlib import Path

    if not Path("/proc").is_dir() or not os.access("/proc", os.W_OK):
        pytest.skip("needs a /proc that os.access calls writable (Linux, as root)")
    a = str(inputs / "a.png")
    assert main(["metrics", a, a, "--csv", "/proc/m.csv", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genrestore: error: --csv /proc/m.csv: cannot be written (/proc is not writable"), err
    assert err.count("\n") == 1 and not Path("/proc/m.csv").exists()


def test_metrics_reads_float32_rgb_tiff_that_pillow_cannot_parse(tmp_path, capsys):
    """Pillow does not parse float32 RGB TIFF, which read_image (OpenCV) reads: the up-front check
    falls back to it instead of refusing the file ('cannot read as an image', exit 2)."""
    import json

    import cv2
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    rng = np.random.default_rng(0)
    ref = rng.random((20, 24, 3), dtype=np.float32)
    dist = np.clip(ref + rng.normal(0, 0.05, ref.shape).astype(np.float32), 0, 1)
    for name, arr in (("ref", ref), ("dist", dist)):
        (tmp_path / name).mkdir()
        assert cv2.imwrite(str(tmp_path / name / "a.tif"), arr[..., ::-1])
    with pytest.raises(UnidentifiedImageError):  # the case this test is about
        Image.open(tmp_path / "ref" / "a.tif")
    assert main(["metrics", str(tmp_path / "ref"), str(tmp_path / "dist"), "--metrics", "psnr", "--json", "-q"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    expected = 10 * np.log10(1 / np.mean((ref.astype(np.float64) - dist) ** 2))
    assert row["psnr"] == pytest.approx(expected, abs=1e-4)


def test_metrics_reads_headers_up_front_and_decodes_each_image_once(inputs, tmp_path, monkeypatch):
    """Decoding is most of what PSNR costs: the check before the loop reads headers only."""
    from genrestore import io

    decoded = []
    real = io.read_image
    monkeypatch.setattr(io, "read_image", lambda p, *a, **k: decoded.append(str(p)) or real(p, *a, **k))
    assert main(["metrics", str(inputs), str(inputs), "--metrics", "psnr", "-q"]) == 0
    assert sorted(decoded) == sorted(str(p) for p in io.list_images([inputs]) for _ in range(2))


def test_metrics_crop_border_applies_to_every_metric(inputs, tmp_path, capsys):
    """--crop-border crops for every metric (the header says so): identity here, compared with the
    library on the cropped images; a border that leaves nothing is one line naming the file, exit 2."""
    from genrestore.models.face_descriptor import identity_similarity

    a = inputs / "a.png"  # 48x40
    b = tmp_path / "b.png"
    write_image(b, read_image(a, "rgb").flip(-1))
    for metrics in ("psnr", "identity"):
        assert main(["metrics", str(a), str(a), "--metrics", metrics, "--crop-border", "20", "-q"]) == 2
        assert "a.png: --crop-border 20 leaves nothing" in capsys.readouterr().err
    assert main(["metrics", str(a), str(b), "--metrics", "identity", "--crop-border", "6", "--json", "-q"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    x, y = read_image(a, "rgb"), read_image(b, "rgb")
    want = float(identity_similarity(x[..., 6:-6, 6:-6], y[..., 6:-6, 6:-6])[0])
    assert row["identity"] == pytest.approx(want, abs=1e-6) and abs(want - float(identity_similarity(x, y)[0])) > 1e-4


def _rgb_folder(tmp_path):
    d = tmp_path / "rgb"
    if not d.is_dir():
        g = torch.Generator().manual_seed(1)
        for name in ("a", "b"):
            write_image(d / f"{name}.png", torch.rand(1, 3, 32, 32, generator=g))
    return d


def _one_line_error(capsys, argv, *words):
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("genrestore: error:") and len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, err
    assert "Traceback" not in err
    return err


def test_model_options_that_build_no_network_are_one_line_errors(tmp_path, capsys):
    """Before the fix these exited 1 with the constructor's raw exception (GroupNorm groups that do
    not divide the width, attention heads that do not divide the embedding, no attention heads at
    all at 7 channels), and train ddpm left an empty output folder."""
    common = ["--data", str(_rgb_folder(tmp_path)), "--steps", "1", "--batch-size", "1", "--size", "16", "-q"]
    _one_line_error(capsys, ["train", "vq", "-o", str(tmp_path / "t6"), *common, "--groups", "7"],
                    "--groups 7 must divide every --channels width")
    _one_line_error(capsys, ["train", "transformer", "-o", str(tmp_path / "t7"), *common, "--vq", "vq-default",
                             "--dim", "64", "--heads", "3"], "--heads", "divisible")
    for model in (["ddpm"], ["idm"], ["inpaint", "--kind", "diffusion"]):  # inpaint: no attending blocks but the middle
        _one_line_error(capsys, ["train", *model, "-o", str(tmp_path / "t8"), *common, "--channels", "7"],
                        "--channels", "at least 8")
    assert not any((tmp_path / t).exists() for t in ("t6", "t7", "t8"))


def test_sidecar_configs_that_build_no_network_name_the_file(tmp_path, capsys):
    """A JSON sidecar whose config the constructor rejects: one line naming the file (was exit 1)."""
    from safetensors.torch import save_file

    cases = {"sr": ({"arch": "rdn", "scale": "x", "D": -1}, ["upscale", str(_rgb_folder(tmp_path)), "-o", str(tmp_path / "u"),
                                                              "--model"]),
             "g": ({"arch": "stylegan2", "z_dim": -1, "resolution": 33},
                   ["restore", str(_rgb_folder(tmp_path)), "-o", str(tmp_path / "r"), "--method", "stylegan-inversion", "--task",
                    "denoise", "--generator"]),
             "u": ({"arch": "conditional-unet", "channels": 3, "unet": {"block_out_channels": [7]}},
                   ["restore", str(_rgb_folder(tmp_path)), "-o", str(tmp_path / "r2"), "--steps", "1", "--model"])}
    for name, (config, argv) in cases.items():
        save_file({"w": torch.zeros(3, 3)}, str(tmp_path / f"{name}.safetensors"))
        (tmp_path / f"{name}.json").write_text(json.dumps({"config": config}))
        _one_line_error(capsys, [*argv, str(tmp_path / f"{name}.safetensors"), "-q"], f"{name}.")


def test_state_dict_mismatch_names_the_keys(tmp_path, capsys):
    """The first line of torch's load_state_dict error names only the class; the message goes on."""
    from safetensors.torch import save_file

    import genrestore.weights as ws

    save_file({"w": torch.zeros(3, 3)}, str(tmp_path / "vw.safetensors"))
    (tmp_path / "vw.json").write_text(ws.resolve("rdn-x4").with_suffix(".json").read_text())
    err = _one_line_error(capsys, ["upscale", str(_rgb_folder(tmp_path)), "-o", str(tmp_path / "u"), "--model",
                                   str(tmp_path / "vw.safetensors"), "-q"], "vw.safetensors", "Missing key(s)")
    assert not err.endswith(":")


def test_metrics_refuses_gray_with_y_and_foreign_npz_files(tmp_path, capsys):
    _one_line_error(capsys, ["metrics", str(_rgb_folder(tmp_path)), str(_rgb_folder(tmp_path)), "--gray", "--y"], "--y", "--gray")
    (tmp_path / "bad.json").write_text('{"not": "what you expect"')
    big = tmp_path / "big"
    write_image(big / "a.png", torch.rand(1, 3, 100, 100, generator=torch.Generator().manual_seed(2)))
    err = _one_line_error(capsys, ["metrics", str(big), str(big), "--metrics", "niqe", "--niqe-model",
                                   str(tmp_path / "bad.json")], "bad.json: not an .npz archive")
    assert "pickle" not in err  # numpy's advice for a non-archive was to unpickle it
    from genrestore._checks import InputError
    from genrestore.metrics.distribution import FeatureStats

    with pytest.raises(InputError, match=r"bad.json: not an .npz archive \(feature statistics"):
        FeatureStats.load_npz(tmp_path / "bad.json")


def test_weights_list_takes_no_names(capsys):
    _one_line_error(capsys, ["weights", "list", "extra"], "takes no names")


def test_artifacts_names_ddim_steps_beyond_t0(tmp_path, capsys):
    _one_line_error(capsys, ["artifacts", str(_rgb_folder(tmp_path)), "-o", str(tmp_path / "a"), "--kind", "ddim-gauss",
                             "--t0", "2", "-q"], "--ddim-steps 48", "--t0 2")
    assert not (tmp_path / "a").exists()


def test_an_error_naming_a_file_with_a_line_break_is_one_line(tmp_path, capsys):
    bad = tmp_path / "two\nlines.png"
    bad.write_bytes(b"not an image")
    assert main(["degrade", str(bad), "-o", str(tmp_path / "o"), "--task", "denoise"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "two\\nlines.png" in err, err


def test_every_option_has_help():
    """Each option of each (sub)command says what it does in --help, and every help renders."""
    import argparse

    from genrestore.cli import build_parser

    missing = []

    def walk(parser, path):
        parser.format_help()  # a stray % in a help string raises here
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif action.option_strings and not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings)}")

    walk(build_parser(), "genrestore")
    assert not missing, missing


def test_options_between_positionals(tmp_path, capsys):
    """argparse leaves the words after an option that stands between positionals over; they go back to
    their positional, and a real unknown option is reported against the subcommand's own help."""
    ref, dist = tmp_path / "ref", tmp_path / "dist"
    write_image(ref / "a.png", torch.full((1, 3, 16, 16), 0.5))
    write_image(dist / "a.png", torch.full((1, 3, 16, 16), 0.6))
    assert main(["metrics", str(ref), "--metrics", "mse", "--json", str(dist), "-q"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["mse"] == pytest.approx((25 / 255) ** 2, rel=1e-6)  # 8-bit 128 against 153
    assert main(["weights", "info", "--json", "lpips-alex-v0.1"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "lpips-alex-v0.1"
    assert main(["metrics", str(ref), "--metrics", "mse", "--", str(dist)]) == 0  # "--": the rest are positionals
    assert "1 image pair," in capsys.readouterr().out
    with pytest.raises(SystemExit):  # an unknown option among them: only it is reported
        main(["weights", "info", "--json", "lpips-alex-v0.1", "--bogus"])
    assert "unrecognized arguments: --bogus (see `genrestore weights --help`)" in capsys.readouterr().err
    for argv, prog in ((["metrics", str(ref), str(dist), str(dist)], "genrestore metrics"),
                       (["degrade", str(ref), "-o", str(tmp_path / "o"), "--tile-size", "3"], "genrestore degrade"),
                       (["train", "niqe", "--data", str(ref), "-o", str(tmp_path / "n.safetensors"), "--nope"],
                        "genrestore train niqe")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and "unrecognized arguments" in err and f"see `{prog} --help`" in err, err
    assert not (tmp_path / "o").exists() and not (tmp_path / "n.safetensors").exists()


def test_verbose_after_the_verb_and_train_desra_aliases():
    """--verbose may follow the verb (before it, it is not undone by the subcommand's default);
    train desra takes --gan and --steps, the spellings of detect and the other trainers."""
    from genrestore.cli import build_parser

    p = build_parser()
    base = ["degrade", "x.png", "-o", "out"]
    assert p.parse_args(base + ["--verbose"]).verbose and p.parse_args(["--verbose"] + base).verbose
    assert not p.parse_args(base).verbose
    args = p.parse_args(["train", "desra", "--gan", "g", "--mse", "m", "--lr-images", "lr", "-o", "o",
                         "--steps", "5"])
    assert (args.model, args.iterations) == ("g", 5)


# Regressions of the bad-input sweep (helper-49): each case exits 2 with one line, before any work.

def test_weights_add_refuses_a_file_unlike_a_pinned_weight(tmp_path, monkeypatch, capsys):
    """A weight pinned only by its stored sha256 (the shipped ones) took any file without --force,
    which then shadowed the shipped weight (exit 0; `weights verify` said mismatch); a folder was
    reported as 'no such file'."""
    from safetensors.torch import save_file

    from genrestore import weights as ws

    store = tmp_path / "store"
    monkeypatch.setenv("GENRESTORE_WEIGHTS", str(store))
    save_file({"x": torch.zeros(2)}, tmp_path / "other.safetensors")
    assert main(["weights", "add", "niqe-pristine-photos", str(tmp_path / "other.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "not the registry's" in err and "--force" in err and err.count("\n") == 1, err
    assert not (store / "niqe-pristine-photos.safetensors").exists()
    assert main(["weights", "add", "niqe-pristine-photos", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}: is a folder; weights add takes one file" in err and err.count("\n") == 1, err
    genuine = ws.PACKAGE_DIR / "niqe-pristine-photos.safetensors"
    assert main(["weights", "add", "niqe-pristine-photos", str(genuine)]) == 0  # the shipped file itself
    assert ws.verify("niqe-pristine-photos") == (True, "ok")
    assert main(["weights", "add", "niqe-pristine-photos", str(tmp_path / "other.safetensors"), "--force"]) == 0


def _ddpm_t100(path):
    from genrestore.diffusion import DenoisingUNet

    torch.manual_seed(0)
    DenoisingUNet(3, schedule={"num_train_timesteps": 100}, unet=dict(
        sample_size=8, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))).save(path)


def test_artifacts_checks_t0_and_ddim_steps_against_the_model_up_front(tmp_path, capsys):
    """Without --t0 (0.84 T) a --ddim-steps past it, and a --t0 past the model's T - 1, were refused
    only inside the first batch, after the progress bar, as 'expected steps as an int in [1, t0 + 1
    = ...]' / 't0 ...' without the option names."""
    _ddpm_t100(tmp_path / "ddpm.safetensors")
    write_image(tmp_path / "in" / "a.png", torch.rand(1, 3, 16, 16))
    base = ["artifacts", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "--ddpm", str(tmp_path / "ddpm.safetensors")]
    for extra, message in ((["--kind", "ddim-gauss", "--ddim-steps", "86"],
                            "--ddim-steps 86 is more than the 85 timesteps from 0 to --t0 84 (the default)"),
                           (["--kind", "ddim-scale", "--t0", "100", "--ddim-steps", "4"],
                            "--t0 100 is past the DDPM's last timestep 99")):
        assert main([*base, *extra]) == 2  # no -q: the progress bar has not started
        err = capsys.readouterr().err
        assert err.startswith(f"genrestore: error: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_artifacts_refuses_more_crops_per_photo_than_it_has(tmp_path, capsys):
    """--per-image 100000000 ran for ever (and would fill the memory) planning crops of a small photo."""
    write_image(tmp_path / "in" / "a.png", torch.rand(1, 3, 10, 11))
    base = ["artifacts", str(tmp_path / "in"), "--kind", "identity", "--crop", "9", "-q"]
    assert main([*base, "-o", str(tmp_path / "o"), "--per-image", "100000000"]) == 2
    err = capsys.readouterr().err
    assert "--per-image 100000000 is more than the 6 distinct 9 px crops of a 11x10 px photo" in err
    assert err.count("\n") == 1 and not (tmp_path / "o").exists()
    assert main([*base, "-o", str(tmp_path / "ok"), "--per-image", "6"]) == 0  # 2 x 3 positions


def test_bench_refuses_a_count_beyond_memory_and_empty_lists(tmp_path, capsys):
    """count = 10**12 crops ran for ever filling the memory; --methods , ran the suite's methods."""
    write_image(tmp_path / "photos" / "p.png", torch.rand(1, 3, 32, 32))
    text = ('name = "t"\nimages = "photos"\ncount = {}\ncrop = 16\ntasks = ["denoise"]\nlevels = ["XS"]\n'
            'methods = ["degraded"]\nmetrics = ["psnr"]\n')
    (tmp_path / "huge.toml").write_text(text.format(10**12))
    (tmp_path / "ok.toml").write_text(text.format(1))
    assert main(["bench", str(tmp_path / "huge.toml"), "-o", str(tmp_path / "o"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "count 1000000000000 crops of 16 px need about" in err and "lower 'count' or 'crop'" in err
    assert err.count("\n") == 1 and not (tmp_path / "o").exists()
    for option in ("--methods", "--tasks"):
        assert main(["bench", str(tmp_path / "ok.toml"), "-o", str(tmp_path / "o"), option, ","]) == 2
        err = capsys.readouterr().err
        assert f"{option}: no names given" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_eta_above_one_and_masks_not_a_folder_refused(tmp_path, capsys):
    """--eta 1e9 ran (DDIM's eta is in [0, 1]) and gave noise; --masks FILE said 'no mask FILE/NAME_mask.png'."""
    write_image(tmp_path / "in" / "a.png", torch.rand(1, 3, 16, 16))
    for argv in (["restore", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "--sampler", "ddim", "--eta", "1e9"],
                 ["metrics", str(tmp_path / "in"), "--authenticity", "idm-default", "--sampler", "ddim", "--eta", "2"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and "--eta: expected a finite number in [0, 1]" in err and err.count("\n") == 1
    assert main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "--method", "inpaint", "--model",
                 "inpaint-gan", "--masks", str(tmp_path / "in" / "a.png"), "-q"]) == 2
    err = capsys.readouterr().err
    assert f"--masks {tmp_path / 'in' / 'a.png'}: no such folder" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_steps_given_to_a_one_step_inpainter_is_refused_as_typed(tmp_path, capsys):
    """The GAN inpainter runs its one step: --steps 3 is refused, quoting 3 (it printed '3.0')."""
    write_image(tmp_path / "in" / "a.png", torch.rand(1, 3, 16, 16))
    write_image(tmp_path / "m" / "a_mask.png", torch.ones(1, 1, 16, 16))
    assert main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "--method", "inpaint", "--model",
                 "inpaint-gan", "--masks", str(tmp_path / "m"), "--steps", "3", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.endswith("a gan inpainter always runs its 1 step(s); drop --steps (got 3)\n") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_an_error_under_a_progress_bar_starts_its_own_line(tmp_path, capsys):
    """An unreadable image found while the bar runs: the bar is closed first, so the error is a
    line of its own (it was written after the bar's last state, on the same line)."""
    write_image(tmp_path / "d" / "a.png", torch.rand(1, 3, 100, 100))
    (tmp_path / "d" / "b.png").write_text("not an image")
    assert main(["train", "niqe", "--data", str(tmp_path / "d"), "-o", str(tmp_path / "m.safetensors")]) == 2
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    assert f"genrestore: error: {tmp_path / 'd' / 'b.png'}: cannot decode as an image" in lines, lines


def test_inputs_are_checked_under_a_progress_bar_that_quiet_hides(tmp_path, capsys, monkeypatch):
    """The up-front decode of every input (minutes for a large folder) shows a bar on a terminal,
    cleared when done; -q hides it; a bad file found under it gives the error on a line of its own."""
    import sys

    for name in ("a", "b"):
        write_image(tmp_path / "d" / f"{name}.png", torch.rand(1, 3, 16, 16))
    assert main(["degrade", str(tmp_path / "d"), "-o", str(tmp_path / "o0"), "--task", "denoise"]) == 0
    assert "check inputs" not in capsys.readouterr().err  # not a terminal: no transient bar in a log
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["degrade", str(tmp_path / "d"), "-o", str(tmp_path / "o"), "--task", "denoise"]) == 0
    err = capsys.readouterr().err
    assert "check inputs:   0%|          | 0/2" in err
    assert main(["degrade", str(tmp_path / "d"), "-o", str(tmp_path / "o2"), "--task", "denoise", "-q"]) == 0
    assert capsys.readouterr().err == ""
    (tmp_path / "d" / "b.png").write_text("not an image")
    assert main(["degrade", str(tmp_path / "d"), "-o", str(tmp_path / "o3"), "--task", "denoise"]) == 2
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    assert f"genrestore: error: {tmp_path / 'd' / 'b.png'}: cannot decode as an image" in lines, lines
    assert not (tmp_path / "o3").exists()


def test_restore_keeps_grey_grey_and_the_alpha_channel(tmp_path):
    """restore ran grey and RGBA images as RGB and wrote RGB: a grey input now gives the BT.601 luma
    of the RGB restoration, and an RGBA one its restoration with the input's alpha, unchanged."""
    from PIL import Image

    from genrestore.io import convert_channels, read_image

    g = torch.Generator().manual_seed(7)
    grey, rgba = torch.rand(1, 1, 12, 16, generator=g), torch.rand(1, 4, 12, 16, generator=g)
    write_image(tmp_path / "in" / "g.png", grey)
    write_image(tmp_path / "in" / "a.png", rgba)
    write_image(tmp_path / "rgb" / "g.png", convert_channels(read_image(tmp_path / "in" / "g.png"), "rgb"))
    write_image(tmp_path / "rgb" / "a.png", read_image(tmp_path / "in" / "a.png")[:, :3])
    for d in ("in", "rgb"):
        assert main(["restore", str(tmp_path / d), "-o", str(tmp_path / f"o_{d}"), "--steps", "2", "-q"]) == 0
    assert Image.open(tmp_path / "o_in" / "g.png").mode == "L" and Image.open(tmp_path / "o_in" / "a.png").mode == "RGBA"
    as_rgb = read_image(tmp_path / "o_rgb" / "g.png")  # the same restoration of the same pixels, as RGB
    luma = convert_channels(as_rgb, "gray")
    assert (read_image(tmp_path / "o_in" / "g.png") - luma).abs().max() <= 1 / 255 + 1e-6  # two 8-bit roundings
    out = read_image(tmp_path / "o_in" / "a.png")
    assert torch.equal(out[:, 3:], read_image(tmp_path / "in" / "a.png")[:, 3:])
    assert torch.equal(out[:, :3], read_image(tmp_path / "o_rgb" / "a.png"))
    assert json.loads((tmp_path / "o_in" / "a.json").read_text())["channels"] == 4


def test_restore_resume_redoes_a_record_without_channels(tmp_path, capsys):
    """--resume does not keep an older run's output of a grey input (RGB, its record without
    "channels"/"bits"): the image is restored again and written as grey."""
    from PIL import Image

    write_image(tmp_path / "in" / "g.png", torch.rand(1, 1, 12, 16, generator=torch.Generator().manual_seed(3)))
    args = ["restore", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "--steps", "1", "-q", "--resume"]
    assert main(args) == 0
    rec = json.loads((tmp_path / "o" / "g.json").read_text())
    del rec["channels"], rec["bits"]  # as an older run wrote it
    (tmp_path / "o" / "g.json").write_text(json.dumps(rec))
    capsys.readouterr()
    assert main(args) == 0
    assert "0 already done" in "".join(capsys.readouterr())
    assert Image.open(tmp_path / "o" / "g.png").mode == "L"
    assert main(args) == 0
    assert "1 already done" in "".join(capsys.readouterr())


def test_restore_and_degrade_write_grey_alpha_as_grey_alpha(tmp_path, capsys):
    """A grey+alpha (LA) input was written as RGBA by restore and degrade; it now comes back LA (as
    Pillow reads it) with the input's alpha. An older run's RGBA output (record "channels": 4) is redone."""
    la = np.random.default_rng(11).integers(0, 256, (12, 16, 2), dtype=np.uint8)
    (tmp_path / "in").mkdir()
    Image.fromarray(la, "LA").save(tmp_path / "in" / "la.png")
    for verb in (["restore", "--steps", "1"], ["degrade", "--task", "denoise"]):
        out = tmp_path / verb[0]
        args = [verb[0], str(tmp_path / "in"), "-o", str(out), *verb[1:], "-q", "--resume"]
        assert main(args) == 0
        with Image.open(out / "la.png") as im:
            assert im.mode == "LA", verb
            np.testing.assert_array_equal(np.asarray(im)[:, :, 1], la[:, :, 1])
        rec = json.loads((out / "la.json").read_text())
        assert rec["channels"] == 2
        capsys.readouterr()
        assert main(args) == 0
        assert "1 already done" in capsys.readouterr().out
        rec["channels"] = 4  # as the run before the fix recorded its RGBA output
        (out / "la.json").write_text(json.dumps(rec))
        assert main(args) == 0
        assert "0 already done" in capsys.readouterr().out


def test_rgb_only_commands_name_grey_alpha_as_such(tmp_path):
    """artifacts and detect refuse non-RGB files by kind: a grey+alpha (LA) file was called "RGBA"
    (io.read_image gives it as RGBA)."""
    import re

    from genrestore._checks import InputError
    from genrestore.cli import _validate_inputs

    la = np.zeros((4, 5, 2), np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    Image.fromarray(np.zeros((4, 5, 4), np.uint8), "RGBA").save(tmp_path / "rgba.png")
    for name, kind in (("la", "grey+alpha"), ("rgba", "RGBA")):
        with pytest.raises(InputError, match=re.escape(f"{name}.png: {kind} image; X take RGB")):
            _validate_inputs([tmp_path / f"{name}.png"], rgb_only="X")


def test_restored_channels_follow_the_input_by_hand():
    """_like_input: grey -> 0.299 R + 0.587 G + 0.114 B of the restoration (hand-written); RGBA -> the
    input's alpha, resized as OpenCV's INTER_LINEAR when the restoration is larger (DiffGAR --upscale)."""
    import cv2

    from genrestore.cli_restore import _like_input

    g = torch.Generator().manual_seed(8)
    x = torch.rand(1, 3, 6, 8, generator=g)
    grey = _like_input(x, torch.rand(1, 1, 6, 8, generator=g))
    assert torch.allclose(grey, 0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:], atol=1e-7)
    y = torch.rand(1, 4, 3, 4, generator=g)
    out = _like_input(x, y)
    ref = cv2.resize(y[0, 3].numpy(), (8, 6), interpolation=cv2.INTER_LINEAR)
    assert torch.equal(out[:, :3], x) and torch.allclose(out[0, 3], torch.from_numpy(ref), atol=1e-6)
    assert torch.equal(_like_input(x, x), x)
    out = _like_input(x, y[:, [0, 3]])  # grey+alpha: the luma and the input's alpha, resized
    assert out.shape == (1, 2, 6, 8) and torch.allclose(out[:, :1], grey, atol=1e-7)
    assert torch.allclose(out[0, 1], torch.from_numpy(ref), atol=1e-6)


def test_python_m_genrestore_is_the_command(tmp_path):
    """``python -m genrestore`` runs the same CLI as the ``genrestore`` script, with its exit codes."""
    import subprocess
    import sys

    import genrestore

    ok = subprocess.run([sys.executable, "-m", "genrestore", "--version"], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.strip() == f"genrestore {genrestore.__version__}"
    bad = subprocess.run([sys.executable, "-m", "genrestore", "metrics", str(tmp_path / "a"), str(tmp_path / "b")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no such file" in bad.stderr


def test_a_rerun_with_another_task_removes_the_earlier_tasks_mask(inputs, tmp_path):
    """The inpainting run's NAME_mask.png went with its record; a later denoising run over the same
    folder used to leave it beside the new NAME.png as if it were that image's mask. A mask the
    user changed since is theirs and stays."""
    out = tmp_path / "o"
    assert main(["degrade", str(inputs), "-o", str(out), "--task", "inpaint", "-q"]) == 0
    (out / "c_mask.png").write_bytes((out / "c_mask.png").read_bytes() + b"edited")
    assert main(["degrade", str(inputs), "-o", str(out), "--task", "denoise", "-q"]) == 0
    assert not (out / "a_mask.png").exists() and not (out / "b_mask.png").exists()
    assert (out / "c_mask.png").read_bytes().endswith(b"edited")
    rec = json.loads((out / "a.json").read_text())
    assert set(rec["sha256"]) == {"a.png"} and "mask" not in rec
