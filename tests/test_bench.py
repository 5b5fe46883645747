"""The benchmark harness: suite validation, rows, resume and shards, on tiny generated photos."""

from __future__ import annotations

import json

import pytest
import torch

from genrestore._checks import InputError
from genrestore.bench.harness import ground_truth, load_suite, run_suite
from genrestore.io import write_image

SUITE = """
name = "tiny"
images = "photos"
count = 2
crop = 32
seed = 0
tasks = ["inpaint"]
levels = ["S", "M"]
methods = ["degraded", "telea"]
metrics = ["psnr", "ssim", "lpips"]
"""


@pytest.fixture()
def suite_file(tmp_path):
    g = torch.Generator().manual_seed(0)
    for i in range(2):
        base = torch.linspace(0, 1, 48).view(1, 1, 1, 48).expand(1, 3, 40, 48)
        write_image(tmp_path / "photos" / f"p{i}.png", (0.7 * base + 0.3 * torch.rand(1, 3, 40, 48, generator=g)))
    (tmp_path / "tiny.toml").write_text(SUITE)
    return tmp_path / "tiny.toml"


@pytest.mark.parametrize("change,words", [
    (("tasks = [\"inpaint\"]", "tasks = [\"inpainting\"]"), "unknown task 'inpainting'"),
    (("levels = [\"S\", \"M\"]", "levels = [\"XXL\"]"), "unknown level 'XXL'"),
    (("\"telea\"]", "\"gan\"]"), "unknown method 'gan'"),
    (("\"lpips\"]", "\"brisque\"]"), "unknown metric 'brisque'"),
    (("seed = 0", "seed = 0\ncolour = 1"), "unknown key(s) colour"),
    (("tasks = [\"inpaint\"]", "tasks = [\"denoise\"]"), "only restores inpainting"),
    (("images = \"photos\"", "images = \"nowhere\""), "not found"),
])
def test_suite_errors_name_the_key(suite_file, change, words):
    bad = suite_file.with_name("bad.toml")
    bad.write_text(suite_file.read_text().replace(*change))
    with pytest.raises(InputError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_suite(bad)
    with pytest.raises(InputError, match="needs its weights"):
        load_suite(suite_file, ["idm"])


def test_niqe_metric_scores_the_output_alone():
    """The harness's no-reference column is NIQE of the output (the truth is ignored); null when the
    crop has fewer than two 96 px blocks."""
    from genrestore.bench.harness import METRICS, _metric_fns
    from genrestore.metrics.niqe import niqe

    fns, notes = _metric_fns(["niqe"])
    x = torch.rand(1, 3, 192, 200, generator=torch.Generator().manual_seed(0))
    assert fns["niqe"](x, torch.zeros_like(x)) == float(niqe(x)[0]) and METRICS["niqe"] is False
    assert fns["niqe"](x[..., :96, :112], x[..., :96, :112]) is None and not notes


def test_run_rows_resume_and_shards(suite_file, tmp_path):
    from genrestore.degrade import get_task
    from genrestore._random import generator_for
    from genrestore.metrics import psnr

    suite = load_suite(suite_file)
    out = tmp_path / "run"
    s = run_suite(suite, out, progress=False)
    assert s["rows_run"] == 2 * 1 * 2 * 2 and s["rows_skipped"] == 0
    assert any("lpips: absent" in n for n in s["notes"]) or s["notes"] == []
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    # the 'degraded' row's PSNR is that of the degraded crop, recomputed here
    img, x = ground_truth(suite)[0]
    y, _ = get_task("inpaint", "M").degrade_with_params(x, generator_for(0, f"{img}:inpaint:M"))
    row = next(r for r in rows if r["image"] == img and r["level"] == "M" and r["method"] == "degraded")
    assert abs(row["metrics"]["psnr"] - float(psnr(y, x)[0])) < 1e-9
    telea = next(r for r in rows if r["image"] == img and r["level"] == "M" and r["method"] == "telea")
    assert telea["metrics"]["psnr"] > row["metrics"]["psnr"]  # OpenCV fills the strokes
    assert (out / row["images"]["output"]).is_file() and (out / "results.csv").is_file()
    again = run_suite(suite, out, progress=False)
    assert again["rows_run"] == 0 and again["rows_skipped"] == 8
    parts = tmp_path / "sharded"
    for i in range(3):
        run_suite(suite, parts, shard=(i, 3), progress=False)
    keys = lambda d: sorted((r["image"], r["level"], r["method"], round(r["metrics"]["psnr"], 9))  # noqa: E731
                            for r in map(json.loads, (d / "results.jsonl").read_text().splitlines()))
    assert keys(parts) == keys(out)


def test_bench_cli_bad_suite_is_one_line(tmp_path, capsys):
    from genrestore.cli import main

    assert main(["bench", "nosuch", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genrestore: error:") and "built-in" in err and len(err.splitlines()) == 1


def test_set_metrics_is_fid_kid_per_group(suite_file, tmp_path):
    """IS, FID and KID per (task, level, method) from an injected extractor equal the formulas on its outputs."""
    from genrestore.bench.harness import write_set_metrics
    from genrestore.bench.report import summarize, load_rows
    from genrestore.io import read_image
    from genrestore.metrics.distribution import frechet_distance, inception_score

    text = suite_file.read_text().replace('"lpips"]', '"lpips", "is", "fid"]')
    suite_file.write_text(text)
    out = tmp_path / "run"
    s = run_suite(load_suite(suite_file), out, progress=False)
    record = json.loads((out / "set_metrics.json").read_text())
    if record["notes"]:  # the standard Inception is absent here: nulls, and a note that says so
        assert "inception-fid" in s["notes"][-1] and all(g["is"] is None for g in record["groups"])

    def extractor(x):  # 3 "features": channel means; 4 "logits": channel means and brightness
        f = x.mean((2, 3)).double()
        return f * 10, torch.cat([f, f.mean(1, keepdim=True)], 1) * 5

    write_set_metrics(out, ["is", "fid", "kid"], extractor)
    record = json.loads((out / "set_metrics.json").read_text())
    g = next(g for g in record["groups"] if g["method"] == "telea" and g["level"] == "M")
    rows = [r for r in load_rows(out) if r["method"] == "telea" and r["level"] == "M"]
    outs = torch.cat([read_image(out / r["images"]["output"]) for r in rows])
    truths = torch.cat([read_image(out / r["images"]["truth"]) for r in rows])
    assert g["count"] == 2
    assert abs(g["is"] - inception_score(extractor(outs)[1], splits=1)[0]) < 1e-9
    fo, ft = extractor(outs)[0], extractor(truths)[0]
    ref = frechet_distance(ft.mean(0), torch.cov(ft.T, correction=1), fo.mean(0), torch.cov(fo.T, correction=1))
    assert abs(g["fid"] - ref) < 1e-6 * max(1.0, abs(ref))
    # KID: unbiased MMD^2 with the cubic kernel (x.y / d + 1)^3 over the whole group, by hand for 2 + 2 samples
    k = lambda a, b: (float(a @ b) / 3 + 1) ** 3  # noqa: E731
    kid_ref = k(ft[0], ft[1]) + k(fo[0], fo[1]) - sum(k(a, b) for a in ft for b in fo) / 2
    assert abs(g["kid"] - kid_ref) < 1e-9 * max(1.0, abs(kid_ref))
    summary = summarize(load_rows(out), record)
    assert summary["tables"][("inpaint", "M")]["telea"]["fid"] == g["fid"] and summary["higher"]["fid"] is False


def test_builtin_suites_are_valid(tmp_path, monkeypatch):
    from genrestore.bench.harness import SUITES_DIR

    monkeypatch.chdir(tmp_path)  # the diffgar suite's generator paths must not resolve against a dev's runs/
    names = sorted(p.stem for p in SUITES_DIR.glob("*.toml"))
    assert {"inpainting", "denoise", "robust-inversion", "robust-inversion-compositions"} <= set(names)
    for name in names:
        if name == "diffgar":  # its generators are the user's: the suite names where they go
            with pytest.raises(InputError, match="needs generators.vq"):
                load_suite(name, images=tmp_path)
            continue
        suite = load_suite(name, images=tmp_path)
        assert suite.tasks and suite.methods and suite.metrics


def test_pipeline_task_and_identity_metric(suite_file, tmp_path):
    from genrestore.degrade import PIPELINES
    from genrestore._random import generator_for
    from genrestore.metrics import psnr

    text = (suite_file.read_text().replace('tasks = ["inpaint"]', 'tasks = ["idm"]')
            .replace('levels = ["S", "M"]', 'levels = ["M"]').replace('"degraded", "telea"', '"degraded"')
            .replace('"lpips"]', '"identity"]'))
    suite_file.write_text(text)
    suite = load_suite(suite_file)
    run_suite(suite, tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    img, x = ground_truth(suite)[0]
    y, _ = PIPELINES["idm"].degrade_with_params(x, generator_for(0, f"{img}:idm:M"))
    row = next(r for r in rows if r["image"] == img)
    from genrestore.degrade import resize
    y = resize(y, tuple(x.shape[-2:]), "bicubic").clamp(0, 1) if y.shape != x.shape else y
    assert abs(row["metrics"]["psnr"] - float(psnr(y, x)[0])) < 1e-6
    ident = row["metrics"]["identity"]
    assert ident is None or -1 <= ident <= 1
    bad = suite_file.with_name("bad.toml")
    bad.write_text(text.replace('levels = ["M"]', 'levels = ["S"]'))
    with pytest.raises(InputError, match="M only"):
        load_suite(bad)


def test_artifact_tasks_with_diffgar_modes(suite_file, tmp_path):
    from genrestore.diffusion import ConditionalUNet
    from genrestore.models.vq import VQAutoencoder
    from genrestore.restore.diffgar import ARTIFACT_CLASSES

    pytest.importorskip("diffusers")
    torch.manual_seed(0)
    VQAutoencoder(16, 4, (8, 16), norm_num_groups=4).save(tmp_path / "vq.safetensors")
    ConditionalUNet(3, class_names=ARTIFACT_CLASSES, unet=dict(
        sample_size=16, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))
    ).save(tmp_path / "dg.safetensors")
    text = (suite_file.read_text().replace('tasks = ["inpaint"]', 'tasks = ["vq-replace"]')
            .replace('levels = ["S", "M"]', 'levels = ["M"]')
            .replace('"degraded", "telea"', f'"degraded", "diffgar-blind:{tmp_path / "dg.safetensors"}", '
                                            f'"diffgar-nonblind:{tmp_path / "dg.safetensors"}"')
            .replace('"lpips"]', '"psnr"]\n\n[generators]\nvq = "' + str(tmp_path / "vq.safetensors") + '"'))
    suite_file.write_text(text.replace('metrics = ["psnr", "ssim", "psnr"]', 'metrics = ["psnr", "ssim"]'))
    run_suite(load_suite(suite_file), tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 3 and {r["task"] for r in rows} == {"vq-replace"}
    bad = suite_file.with_name("bad.toml")
    bad.write_text(suite_file.read_text().replace('vq = "', 'vqq = "'))
    with pytest.raises(InputError, match="needs generators.vq"):
        load_suite(bad)
