"""The benchmark harness: suite validation, rows, resume and shards, on tiny generated photos."""

from __future__ import annotations

import json

import pytest
import torch

from genrestore._checks import InputError
from genrestore.bench.harness import run_suite
from genrestore.bench.suite import ground_truth, load_suite
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
    (("images = \"photos\"", "images = \"nowhere\""), "'nowhere' not found beside the suite file or in the working "
     "folder; give the photos with --images DIR"),
    (("count = 2", "count = \"six\""), "'count' must be an integer >= 1, got 'six'"),
    (("count = 2", "count = 0"), "'count' must be an integer >= 1, got 0"),
    (("crop = 32", "crop = -5"), "'crop' must be an integer >= 1, got -5"),
    (("crop = 32", "crop = 24"), "'lpips' (AlexNet) needs crops of at least 31 px a side; the suite crops 24"),
    (("seed = 0", "seed = 1.5"), "'seed' must be an integer >= 0, got 1.5"),
    (("images = \"photos\"", "images = 5"), "'images' must be a string, got 5"),
    (("tasks = [\"inpaint\"]", "tasks = [[\"inpaint\"]]"), "'tasks' must be a non-empty list of strings"),
    (("\"telea\"]", "1]"), "'methods' must be a non-empty list of strings"),
    (("\"lpips\"]", "[\"psnr\"]]"), "'metrics' must be a non-empty list of strings"),
    (('"telea"]', '"telea:x.safetensors"]'), "method 'telea' takes no argument, got 'telea:x.safetensors'"),
    (('images = "photos"\n', ""), "no 'images' folder (give it in the suite, or --images)"),
])
def test_suite_errors_name_the_key(suite_file, change, words):
    bad = suite_file.with_name("bad.toml")
    bad.write_text(suite_file.read_text().replace(*change))
    with pytest.raises(InputError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_suite(bad)
    with pytest.raises(InputError, match="^--methods: method 'idm' needs its weights"):
        load_suite(suite_file, ["idm"])


def test_command_line_lists_are_blamed_not_the_suite(suite_file, tmp_path):
    """A bad entry of --methods, --tasks or --images is the command line's, not the suite file's."""
    with pytest.raises(InputError, match="^--methods: unknown method 'bogus'; known: degraded"):
        load_suite(suite_file, ["degraded", "bogus"])
    with pytest.raises(InputError, match="^--tasks: unknown task 'nosuch'; known"):
        load_suite(suite_file, tasks=["nosuch"])
    with pytest.raises(InputError, match="^--images: no folder"):
        load_suite(suite_file, images=tmp_path / "nosuch")
    bad = suite_file.with_name("bad.toml")
    bad.write_text(suite_file.read_text().replace('"telea"]', '"bogus"]'))
    with pytest.raises(InputError, match=r"bad.toml: unknown method 'bogus' in 'methods'"):
        load_suite(bad)


def test_niqe_metric_scores_the_output_alone():
    """The harness's no-reference column is NIQE of the output (the truth is ignored); null when the
    crop has fewer than two 96 px blocks."""
    from genrestore.bench.methods import metric_functions
    from genrestore.bench.suite import METRICS
    from genrestore.metrics.niqe import niqe

    fns, notes = metric_functions(["niqe"])
    x = torch.rand(1, 3, 192, 200, generator=torch.Generator().manual_seed(0))
    assert fns["niqe"](x, torch.zeros_like(x)) == float(niqe(x)[0]) and METRICS["niqe"] is False
    assert fns["niqe"](x[..., :96, :112], x[..., :96, :112]) is None and not notes


def test_run_rows_resume_and_shards(suite_file, tmp_path, monkeypatch):
    from genrestore.bench import harness
    from genrestore.degrade import get_task
    from genrestore._random import generator_for
    from genrestore.metrics import psnr

    suite = load_suite(suite_file)
    out = tmp_path / "run"
    calls = []
    degrade = harness._degrade
    monkeypatch.setattr(harness, "_degrade", lambda *a: calls.append(a[3]) or degrade(*a))
    s = run_suite(suite, out, progress=False)
    monkeypatch.undo()
    assert s["rows_run"] == 2 * 1 * 2 * 2 and s["rows_skipped"] == 0
    assert len(calls) == len(set(calls)) == 2 * 2  # each input is degraded once for both methods
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
    from genrestore.bench.set_metrics import write_set_metrics
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


def test_set_metrics_fid_and_pfid_of_small_groups_skip_the_d_by_d_eigendecomposition(suite_file, tmp_path, monkeypatch):
    """A group's FID and patch-FID compare a few images (crops) in Inception's 2048 dimensions: their
    covariances have rank < N, so FID comes from an N x M matrix, equal to the dense formula, and no
    2048 x 2048 eigendecomposition runs (two of them took 28 s a group on 2 CPU cores: 4 of the 4.4
    minutes of the inpainting suite's set metrics at count = 2, 15 groups)."""
    from genrestore.bench.set_metrics import write_set_metrics
    from genrestore.metrics import distribution
    from genrestore.metrics.distribution import FeatureStats, fid_from_stats, frechet_distance

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(3, 2048, generator=g, dtype=torch.float64), torch.rand(4, 2048, generator=g, dtype=torch.float64) * 2
    a, b = FeatureStats(), FeatureStats()
    a.update(x[:1])
    a.update(x[1:])
    b.update(y)
    dense = frechet_distance(a.mean, a.cov, b.mean, b.cov)
    text = suite_file.read_text().replace('"lpips"]', '"lpips", "fid", "pfid"]')
    suite_file.write_text(text)
    out = tmp_path / "run"
    run_suite(load_suite(suite_file), out, progress=False)

    def no_eigh(*args, **kwargs):
        raise AssertionError("a d x d eigendecomposition for a set smaller than d")

    monkeypatch.setattr(distribution.torch.linalg, "eigh", no_eigh)
    monkeypatch.setattr(distribution.torch.linalg, "eigvalsh", no_eigh)
    assert abs(fid_from_stats(a, b) - dense) < 1e-6 * dense
    write_set_metrics(out, ["fid", "pfid"], lambda im: (torch.nn.functional.interpolate(im, size=(32, 64)).flatten(1)[:, :2048],
                                                        None), pfid=(16, 4))
    record = json.loads((out / "set_metrics.json").read_text())
    assert all(grp["fid"] is not None and grp["pfid"] is not None for grp in record["groups"])


def test_builtin_suites_are_valid(tmp_path, monkeypatch):
    from genrestore.bench.suite import SUITES_DIR

    monkeypatch.chdir(tmp_path)  # the diffgar suite's generator paths must not resolve against a dev's runs/
    names = sorted(p.stem for p in SUITES_DIR.glob("*.toml"))
    assert {"inpainting", "denoise", "robust-inversion", "robust-inversion-compositions"} <= set(names)
    for name in names:
        if name == "diffgar":  # no generators table: the shipped ones, resolved to their files
            from genrestore import weights as ws

            gens = load_suite(name, images=tmp_path).generators
            assert gens == {k: str(ws.model_file(f"{k}-default")) for k in ("vq", "transformer", "ddpm")}
            with monkeypatch.context() as m, pytest.raises(InputError, match="needs generators.vq"):
                m.setattr(ws, "REGISTRY", {})  # without them, the suite names what is missing
                load_suite(name, images=tmp_path)
            # --tasks replaces the suite's list, checked the same way
            assert load_suite(name, images=tmp_path, tasks=["denoise"]).tasks == ["denoise"]
            with pytest.raises(InputError, match="unknown task 'nope'"):
                load_suite(name, images=tmp_path, tasks=["nope"])
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
                                            f'"diffgar-nonblind:{tmp_path / "dg.safetensors"}", '
                                            f'"diffgar:{tmp_path / "dg.safetensors"}", '
                                            f'"diffgar-s1:{tmp_path / "dg.safetensors"}", '
                                            f'"diffgar-s5-steps4:{tmp_path / "dg.safetensors"}"')
            .replace('"lpips"]', '"psnr"]\n\n[generators]\nvq = "' + str(tmp_path / "vq.safetensors") + '"'))
    suite_file.write_text(text.replace('metrics = ["psnr", "ssim", "psnr"]', 'metrics = ["psnr", "ssim"]'))
    run_suite(load_suite(suite_file), tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 6 and {r["task"] for r in rows} == {"vq-replace"}
    # network calls per image: 30 DDIM steps (or -stepsN), two passes each when guided (CFG) with s != 1
    assert {r["method"].partition(":")[0]: r["nfe"] for r in rows} == {
        "degraded": None, "diffgar-blind": 30, "diffgar-nonblind": 30, "diffgar": 60, "diffgar-s1": 30,
        "diffgar-s5-steps4": 8}
    by = {(r["image"], r["method"].partition(":")[0]): r["metrics"]["psnr"] for r in rows}
    for image in {r["image"] for r in rows}:  # guidance with s = 1 is the conditional prediction
        assert by[image, "diffgar-s1"] == by[image, "diffgar-nonblind"] != by[image, "diffgar"]
    for bad_method in ("diffgar-blind-s2", "diffgar-steps", "diffgar-s0.5", "diffgar-guided"):
        with pytest.raises(InputError, match="DiffGAR|guidance scale"):
            load_suite(suite_file, [f"{bad_method}:{tmp_path / 'dg.safetensors'}"])
    bad = suite_file.with_name("bad.toml")
    bad.write_text(suite_file.read_text().replace('vq = "', 'vqq = "'))
    with pytest.raises(InputError, match="unknown generator 'vqq'"):
        load_suite(bad)
    bad.write_text(suite_file.read_text().replace(str(tmp_path / "vq.safetensors"), "nope.safetensors"))
    with pytest.raises(InputError, match="needs generators.vq"):
        load_suite(bad)


DESRA_SUITE = """
name = "tiny-desra"
images = "photos"
count = 2
crop = 128
seed = 0
tasks = ["realesrgan-x4"]
levels = ["M"]
methods = ["degraded", "sr:gan0.safetensors", "sr:gan1.safetensors"]
metrics = ["psnr", "detected", "regions", "iou", "precision", "recall", "removal", "addition"]

[detection]
mse = "mse.safetensors"
masks = "labels"
"""


@pytest.fixture()
def desra_suite(tmp_path, monkeypatch):
    """Two tiny random x4 GAN-SR models, an MSE-SR one, 128 px photos and one labelled mask."""
    from test_sr_cli import TINY_RRDB, TINY_VGG, _save_model

    monkeypatch.chdir(tmp_path)  # the sr: paths are relative to the working folder
    g = torch.Generator().manual_seed(0)
    for i in range(2):
        base = torch.linspace(0, 1, 144).view(1, 1, 1, 144).expand(1, 3, 136, 144)
        write_image(tmp_path / "photos" / f"p{i}.png", 0.6 * base + 0.4 * torch.rand(1, 3, 136, 144, generator=g))
    _save_model(tmp_path / "gan0.safetensors", TINY_RRDB, 0)
    _save_model(tmp_path / "gan1.safetensors", TINY_RRDB, 5)
    _save_model(tmp_path / "mse.safetensors", TINY_VGG, 1)
    (tmp_path / "labels").mkdir()
    (tmp_path / "desra.toml").write_text(DESRA_SUITE)
    return tmp_path / "desra.toml"


def test_desra_suite_matches_direct_detection(desra_suite, tmp_path):
    """Per-image detection metrics, and the pooled precision / recall / removal / addition, equal
    DeSRA's detection and region counts computed directly on the same LR inputs."""
    import numpy as np

    from genrestore._random import generator_for
    from genrestore.degrade import PIPELINES
    from genrestore.detect import TextureSegmenter, detect_artifacts
    from genrestore.metrics.detection import ChangeCounts, DetectionCounts, change_counts, iou, region_counts
    from genrestore.models.sr import load_sr, upscale

    suite = load_suite(desra_suite)
    truths = ground_truth(suite)
    label = np.zeros((128, 128), bool)
    label[:, :64] = True  # the "artifact" a user labelled on the first image's gan1 output
    write_image(tmp_path / "labels" / f"{truths[0][0]}_s0_realesrgan-x4_M_sr_gan1.safetensors.png",
                torch.from_numpy(label).float()[None, None])
    summary = run_suite(suite, tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and summary["rows_run"] == 6
    mse = load_sr("mse.safetensors")
    masks, changes, counts = {}, ChangeCounts(), DetectionCounts()
    for img, x in truths:
        y, _ = PIPELINES["realesrgan-x4"].degrade_with_params(x, generator_for(0, f"{img}:realesrgan-x4:M"))
        ref = upscale(mse, y)
        for name in ("gan0", "gan1"):
            det = detect_artifacts(upscale(load_sr(f"{name}.safetensors"), y), ref, TextureSegmenter(), scale=4)
            masks[img, name] = det.mask[0, 0]
            row = next(r for r in rows if r["image"] == img and r["method"] == f"sr:{name}.safetensors")
            assert row["metrics"]["detected"] == pytest.approx(float(det.fraction()[0]), abs=1e-12)
            assert row["metrics"]["regions"] == len(det.regions[0])
        changes = changes + change_counts(masks[img, "gan0"], masks[img, "gan1"])
    first = next(r for r in rows if r["image"] == truths[0][0] and r["method"] == "sr:gan1.safetensors")
    assert first["metrics"]["iou"] == pytest.approx(iou(masks[truths[0][0], "gan1"], label))
    assert all(r["metrics"]["iou"] is None for r in rows if r is not first)  # no label: null
    counts = region_counts(masks[truths[0][0], "gan1"], label)
    assert changes.old > 0  # the tiny random models do produce regions to compare
    groups = {g["method"]: g for g in json.loads((tmp_path / "run" / "set_metrics.json").read_text())["groups"]}
    assert groups["sr:gan1.safetensors"]["removal"] == pytest.approx(changes.removal_rate)
    assert groups["sr:gan1.safetensors"]["addition"] == pytest.approx(changes.addition_rate)
    assert groups["sr:gan1.safetensors"]["precision"] == (counts.precision if counts.detected else None)
    assert groups["sr:gan1.safetensors"]["recall"] == pytest.approx(counts.recall)
    assert groups["sr:gan0.safetensors"]["removal"] is None  # the baseline itself
    assert groups["degraded"]["removal"] is None  # not an SR model


@pytest.mark.parametrize("change,words", [
    (('tasks = ["realesrgan-x4"]', 'tasks = ["denoise"]'), "must downsample by 4"),
    (('mse = "mse.safetensors"', 'mse = "none.safetensors"'), "detection.mse"),
    (('masks = "labels"', 'masks = "labels"\ncolour = 1'), "unknown key(s) colour in 'detection'"),
    (('"sr:gan0.safetensors", "sr:gan1.safetensors"', '"nlmeans"'), "first 'sr:' method"),
    (('"sr:gan0.safetensors"', '"sr:missing.safetensors"'), "no file missing.safetensors"),
])
def test_desra_suite_errors(desra_suite, change, words):
    desra_suite.write_text(desra_suite.read_text().replace(*change))
    with pytest.raises(InputError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_suite(desra_suite)


def test_region_set_metrics_on_hand_drawn_masks(tmp_path):
    """removal / addition against the baseline and pooled precision / recall, hand-counted."""
    import numpy as np

    from genrestore.bench.set_metrics import write_set_metrics

    def draw(rel, boxes, size=32):
        m = np.zeros((size, size), np.float32)
        for y0, y1, x0, x1 in boxes:
            m[y0:y1, x0:x1] = 1
        write_image(tmp_path / rel, torch.from_numpy(m)[None, None])

    rows = []
    for img, old, new in [("a", [(0, 8, 0, 8), (20, 28, 20, 28)], [(4, 12, 4, 12)]),   # 1 of 2 removed, 0 added
                          ("b", [(0, 8, 0, 8)], [(0, 8, 0, 8), (20, 30, 0, 10)])]:      # 0 of 1 removed, 1 added
        for method, boxes in (("sr:old", old), ("sr:new", new)):
            rel = {"output": f"images/{img}_{method[3:]}.png", "mask": f"images/{img}_{method[3:]}_mask.png"}
            draw(rel["mask"], boxes)
            rows.append({"image": img, "task": "realesrgan-x4", "level": "M", "method": method, "images": rel})
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "labels").mkdir()
    draw("labels/a_new.png", [(4, 12, 4, 10), (24, 32, 24, 32)])  # image a's new output: 2 labelled regions
    notes = write_set_metrics(tmp_path, ["removal", "addition", "precision", "recall"], baseline="sr:old",
                              truth_masks=tmp_path / "labels")
    assert notes == []
    groups = {g["method"]: g for g in json.loads((tmp_path / "set_metrics.json").read_text())["groups"]}
    new, old = groups["sr:new"], groups["sr:old"]
    assert new["removal"] == pytest.approx(1 / 3) and new["addition"] == pytest.approx(1 / 3)  # over 3 old regions
    # image a only (b has no label): the one detected region is 48/64 labelled (> 0.5): precision 1;
    # labelled regions: the first is 48/48 covered, the second 0: recall 1/2
    assert new["precision"] == 1.0 and new["recall"] == 0.5
    assert old["removal"] is None and old["precision"] is None  # the baseline; no label for its outputs


def test_guided_diffgar_on_a_task_outside_its_classes_runs_blind_and_says_so(tmp_path):
    """Guided DiffGAR needs the task as a class: on another task it runs blind, with a warning that
    names the task (non-blind refuses); the blind output equals diffgar-blind's."""
    pytest.importorskip("diffusers")
    from genrestore.bench.methods import run_method
    from genrestore.diffusion import ConditionalUNet

    torch.manual_seed(0)
    ConditionalUNet(3, class_names=["vq-replace"], unet=dict(
        sample_size=16, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))
    ).save(tmp_path / "dg.safetensors")
    y = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    cache: dict = {}

    def run(kind):
        return run_method(f"{kind}-steps2:{tmp_path / 'dg.safetensors'}", "denoise", None, y, {}, (16, 16), 0, "k",
                          cache)

    with pytest.warns(UserWarning, match="'denoise' is not among the model's classes.*runs blind"):
        guided = run("diffgar")
    assert torch.equal(guided, run("diffgar-blind"))
    with pytest.raises(InputError, match="do not include 'denoise'"):
        run("diffgar-nonblind")


def test_resume_after_a_cut_last_line(suite_file, tmp_path):
    """An interrupted run can leave results.jsonl ending in half a row, with no newline: the rerun
    drops it and runs that row again; the new rows are not glued onto it (the CSV and the report
    read every line)."""
    from genrestore.bench.report import load_rows

    suite = load_suite(suite_file)
    out = tmp_path / "run"
    run_suite(suite, out, progress=False)
    lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
    (out / "results.jsonl").write_text("".join(lines[:5]) + lines[5][:40])  # cut inside the sixth row
    s = run_suite(suite, out, progress=False)
    assert s["rows_run"] == 3 and s["rows_skipped"] == 5
    rows = load_rows(out)
    assert len(rows) == 8 and len({(r["image"], r["level"], r["method"]) for r in rows}) == 8
    assert len((out / "results.csv").read_text().splitlines()) == 1 + 8


def test_foreign_lines_in_results_are_moved_aside_with_a_note(suite_file, tmp_path):
    """A line that is not a row anywhere but last (edited by hand, or two shards' lines run
    together) was dropped silently before the fix; now it goes to results.jsonl.dropped and the
    run says so. A cut last line is still dropped quietly (test above)."""
    suite = load_suite(suite_file)
    out = tmp_path / "run"
    run_suite(suite, out, progress=False)
    lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
    (out / "results.jsonl").write_text("garbage\n" + "".join(lines[:3]) + lines[3][:30] + lines[4] + "".join(lines[5:]))
    s = run_suite(suite, out, progress=False)
    assert s["rows_run"] == 2 and s["rows_skipped"] == 6  # the glued row and the one glued onto it
    assert (out / "results.jsonl.dropped").read_text() == "garbage\n" + lines[3][:30] + lines[4]
    assert any("2 line(s)" in n and "results.jsonl.dropped" in n for n in s["notes"])
    assert len((out / "results.jsonl").read_text().splitlines()) == 8
    # a whole last line (it ends in a newline) that is not a row was not cut by an interruption either
    with open(out / "results.jsonl", "a") as f:
        f.write("a note by hand\n")
    s = run_suite(suite, out, progress=False)
    assert s["rows_run"] == 0 and any("1 line(s)" in n for n in s["notes"])
    assert (out / "results.jsonl.dropped").read_text().endswith("a note by hand\n")


def test_bench_refuses_the_image_folder_as_output(suite_file, tmp_path):
    with pytest.raises(InputError, match="among the suite's photos"):
        run_suite(load_suite(suite_file), tmp_path / "photos", progress=False)
    assert not (tmp_path / "photos" / "results.jsonl").exists()
    (tmp_path / "photos").rename(tmp_path / "images")  # OUT/images/ would be the photo folder
    suite_file.write_text(suite_file.read_text().replace('images = "photos"', 'images = "images"'))
    with pytest.raises(InputError, match="among the suite's photos"):
        run_suite(load_suite(suite_file), tmp_path, progress=False)


@pytest.mark.parametrize("name", ["results.csv", "results.jsonl"])
def test_bench_refuses_a_folder_where_a_results_file_goes(suite_file, tmp_path, name):
    """A folder named results.csv failed after every row had run ('IsADirectoryError', exit 1)."""
    (tmp_path / "out" / name).mkdir(parents=True)
    with pytest.raises(InputError, match=f"{name}: is a folder"):
        run_suite(load_suite(suite_file), tmp_path / "out", progress=False)
    assert [p.name for p in (tmp_path / "out").iterdir()] == [name]


def test_two_seeds_in_one_folder_keep_their_own_images(suite_file, tmp_path):
    """Rows of seed 0 and seed 1 share an output folder (the seed is part of a row's key): each row's
    truth, input and output files are its own seed's (crop positions and degradations differ)."""
    import dataclasses

    from genrestore.bench.report import load_rows
    from genrestore.io import read_image

    suite = load_suite(suite_file)
    out = tmp_path / "run"
    truths = {}
    for seed in (0, 1):
        s = dataclasses.replace(suite, seed=seed)
        truths.update({(img, seed): x for img, x in ground_truth(s)})
        run_suite(s, out, progress=False)
    rows = load_rows(out)
    assert len(rows) == 16 and len({r["images"]["output"] for r in rows}) == 16
    for r in rows:
        x = truths[r["image"], r["seed"]]
        assert (read_image(out / r["images"]["truth"]) - x).abs().max() <= 0.5 / 255 + 1e-6
        if r["method"] == "degraded":  # the output is the input itself
            assert torch.equal(read_image(out / r["images"]["output"]), read_image(out / r["images"]["input"]))


def test_resume_reruns_rows_of_other_settings(suite_file, tmp_path):
    """A finished row is skipped only when it was made from the same ground truth (images, crop,
    seed) and per-image metrics; rows of other settings run again and replace the old ones, and
    their truth and input files are rewritten."""
    import shutil

    from genrestore.bench.report import load_rows
    from genrestore.io import read_image

    out = tmp_path / "run"
    run_suite(load_suite(suite_file), out, progress=False)
    suite_file.write_text(suite_file.read_text().replace("crop = 32", "crop = 36"))
    s = run_suite(load_suite(suite_file), out, progress=False)
    assert s["rows_run"] == 8 and s["rows_skipped"] == 0
    rows = load_rows(out)
    assert len(rows) == 8 and all(read_image(out / r["images"][k]).shape[-1] == 36 for r in rows
                                  for k in ("truth", "input", "output"))
    assert run_suite(load_suite(suite_file), out, progress=False)["rows_skipped"] == 8
    # other photos under the same names (--images): other crops, so every row runs again
    other = tmp_path / "other"
    shutil.copytree(tmp_path / "photos", other)
    for p in other.iterdir():
        write_image(p, 1 - read_image(p))
    assert run_suite(load_suite(suite_file, images=other), out, progress=False)["rows_run"] == 8
    # another per-image metric: the rows lack it, so they run again
    suite_file.write_text(suite_file.read_text().replace('"lpips"]', '"lpips", "niqe"]'))
    assert run_suite(load_suite(suite_file, images=other), out, progress=False)["rows_run"] == 8
    rows = load_rows(out)
    assert len(rows) == 8 and all("niqe" in r["metrics"] for r in rows)


def test_resume_reruns_rows_of_changed_weights(desra_suite, tmp_path):
    """Retrained weights under the same file name: that method's rows run again, the others are kept."""
    from test_sr_cli import TINY_RRDB, _save_model

    from genrestore.bench.report import load_rows

    desra_suite.write_text(desra_suite.read_text().replace(', "iou", "precision", "recall"', ""))
    out = tmp_path / "run"
    run_suite(load_suite(desra_suite), out, progress=False)
    before = {(r["image"], r["method"]): r["metrics"]["psnr"] for r in load_rows(out)}
    _save_model(tmp_path / "gan1.safetensors", TINY_RRDB, 7)
    s = run_suite(load_suite(desra_suite), out, progress=False)
    assert s["rows_run"] == 2 and s["rows_skipped"] == 4
    after = {(r["image"], r["method"]): r["metrics"]["psnr"] for r in load_rows(out)}
    assert len(load_rows(out)) == 6 and after.keys() == before.keys()
    assert all((after[k] != before[k]) == (k[1] == "sr:gan1.safetensors") for k in after)


def test_shard_started_beside_a_running_one_loses_no_rows(suite_file, tmp_path, monkeypatch):
    """Two shards in one folder: the second starts while the first runs and rewrites results.jsonl
    (dropping its stale rows); the first shard's later rows still land in the file."""
    from genrestore.bench import harness
    from genrestore.bench.report import load_rows

    out = tmp_path / "run"
    run_suite(load_suite(suite_file), out, progress=False)
    suite_file.write_text(suite_file.read_text().replace("crop = 32", "crop = 36"))  # every row is stale
    suite = load_suite(suite_file)
    run_method = harness.run_method
    started = []

    def run_and_start_the_other_shard(*a):
        if not started:
            started.append(None)
            started[0] = run_suite(suite, out, shard=(1, 2), progress=False)
        return run_method(*a)

    monkeypatch.setattr(harness, "run_method", run_and_start_the_other_shard)
    first = run_suite(suite, out, shard=(0, 2), progress=False)
    assert first["rows_run"] == 4 and started[0]["rows_run"] == 4
    rows = load_rows(out)
    assert len(rows) == 8 and all(r["config"] for r in rows)


def test_row_files_of_methods_given_by_paths_never_collide():
    """sr:a/b.safetensors and sr:a_b.safetensors wrote one PNG; a long path made a name past 255 bytes."""
    from genrestore.bench.harness import _row_files

    names = {_row_files("im", "t", "M", m, 0)["output"] for m in
             ("sr:a/b.safetensors", "sr:a_b.safetensors", "sr:c/a/b.safetensors", "degraded", "sr:realesrgan-x4plus")}
    assert len(names) == 5
    assert _row_files("im", "t", "M", "sr:realesrgan-x4plus", 0)["output"] == "images/im_s0_t_M_sr_realesrgan-x4plus.png"
    long = _row_files("im", "t", "M", "idm:/" + "d" * 300 + "/model.safetensors", 0)["output"]
    assert len(long.split("/")[-1]) < 80 and "model.safetensors-" in long


def test_resume_reruns_rows_scored_while_a_metric_weight_was_absent(suite_file, tmp_path, monkeypatch):
    """Rows scored without LPIPS (weights absent) run again once the weights are in the store."""
    import genrestore.metrics.lpips as lpips_module
    from genrestore import weights as ws

    real_find = ws.find
    monkeypatch.setattr(ws, "find", lambda name: None if name == "alexnet-torchvision" else real_find(name))
    out = tmp_path / "run"
    assert run_suite(load_suite(suite_file), out, progress=False)["rows_run"] == 8
    assert run_suite(load_suite(suite_file), out, progress=False)["rows_skipped"] == 8
    monkeypatch.setattr(ws, "find", lambda name: tmp_path if name == "alexnet-torchvision" else real_find(name))
    monkeypatch.setattr(lpips_module, "lpips", lambda a, b, net: (a - b).abs().mean(dim=(1, 2, 3)))
    assert run_suite(load_suite(suite_file), out, progress=False)["rows_run"] == 8
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(r["metrics"]["lpips"] is not None for r in rows)


@pytest.mark.parametrize("method", ["stylegan-inversion:FAKE", "idm:RDN"])
def test_a_bad_method_model_is_refused_before_any_row_is_written(suite_file, tmp_path, capsys, method):
    """The models were loaded row by row: the 'degraded' rows were written (results.jsonl, images)
    before a bad model of the next method stopped the run with exit 2."""
    from genrestore.cli import main
    from genrestore.weights import resolve

    fake = tmp_path / "fake.safetensors"
    fake.write_text("not a model")
    method = method.replace("FAKE", str(fake)).replace("RDN", str(resolve("rdn-x2")))
    out = tmp_path / "run"
    assert main(["bench", str(suite_file), "-o", str(out), "--methods", f"degraded,{method}", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genrestore: error:") and err.count("\n") == 1, err
    assert not out.exists()


def test_refused_images_leave_no_output_folder(suite_file, tmp_path, capsys):
    """A bad --images folder was refused (exit 2) after OUT had been created."""
    from genrestore.cli import main

    (tmp_path / "empty").mkdir()
    out = tmp_path / "run"
    assert main(["bench", str(suite_file), "-o", str(out), "--images", str(tmp_path / "empty"), "-q"]) == 2
    assert "no images found" in capsys.readouterr().err and not out.exists()


def test_resume_reruns_rows_whose_images_are_missing_or_changed(suite_file, tmp_path):
    """A finished row is skipped only when its image files are there with the sha256 it recorded:
    a deleted output, a truncated one and a changed truth each run their rows again, and the
    files come back equal to the first run's."""
    from genrestore.weights import sha256_file

    suite = load_suite(suite_file)
    out = tmp_path / "run"
    run_suite(suite, out, progress=False)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert all(r["sha256"][k] == sha256_file(out / p) for r in rows for k, p in r["images"].items())
    first, second = rows[0]["images"]["output"], rows[1]["images"]["output"]
    before = {p: (out / p).read_bytes() for p in (first, second)}
    (out / first).unlink()
    (out / second).write_bytes(before[second][:100])  # cut, as by an interruption
    s = run_suite(suite, out, progress=False)
    assert s["rows_run"] == 2 and s["rows_skipped"] == 6
    assert all((out / p).read_bytes() == b for p, b in before.items())
    # the truth and input a kept row found intact are not rewritten (a degradation that is not
    # bit-reproducible, e.g. on a GPU, would break that row's record at every resume)
    shared = [rows[0]["images"]["truth"], rows[0]["images"]["input"]]
    assert any(r["images"]["input"] == shared[1] for r in rows[1:])
    inodes = [(out / p).stat().st_ino for p in shared]
    (out / first).unlink()
    assert run_suite(suite, out, progress=False)["rows_run"] == 1
    assert [(out / p).stat().st_ino for p in shared] == inodes and (out / first).read_bytes() == before[first]
    truth = rows[-1]["images"]["truth"]
    sharing = sum(r["images"]["truth"] == truth for r in rows)
    (out / truth).write_bytes(b"not a png")
    s = run_suite(suite, out, progress=False)
    assert s["rows_run"] == sharing and 0 < sharing < 8
    assert run_suite(suite, out, progress=False)["rows_run"] == 0


def test_sr_same_size_method_is_the_model_then_lanczos_back(suite_file, tmp_path, monkeypatch):
    """``sr-same-size:MODEL`` (DiffGAR Table 1's Real-ESRGAN baseline): with every weight of an
    SRVGG x4 zero, the network is nearest-neighbour x4 upsampling, and OpenCV's Lanczos back to the
    input size returns each pixel as a Lanczos sum over its nearest-upsampled copies; on this
    smooth ramp that stays within 2/255 of the input. A suite row runs it on the degraded crop."""
    import cv2
    import numpy as np
    from safetensors.torch import save_file

    from genrestore.bench.methods import sr_same_size
    from genrestore.models.sr import build_sr, load_sr
    from test_sr_cli import TINY_VGG

    net = build_sr(TINY_VGG)
    save_file({k: torch.zeros_like(v).contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "nn.safetensors"))
    (tmp_path / "nn.json").write_text(json.dumps({"config": TINY_VGG}))
    net = load_sr(tmp_path / "nn.safetensors")
    ramp = torch.linspace(0.1, 0.9, 24).view(1, 1, 1, 24) * torch.linspace(0.5, 1, 20).view(1, 1, 20, 1)
    x = ramp.expand(1, 3, 20, 24).contiguous()
    big = torch.nn.functional.interpolate(x, scale_factor=4, mode="nearest")[0].permute(1, 2, 0).numpy()
    expect = cv2.resize(np.ascontiguousarray(big), (24, 20), interpolation=cv2.INTER_LANCZOS4)
    out = sr_same_size(net, x)
    assert out.shape == x.shape
    np.testing.assert_allclose(out[0].permute(1, 2, 0).numpy(), expect.clip(0, 1), atol=1e-6)
    assert float((out - x)[..., 2:-2, 2:-2].abs().max()) < 2 / 255
    monkeypatch.chdir(tmp_path)
    suite = suite_file.read_text().replace('"telea"]', '"sr-same-size:nn.safetensors"]').replace(
        '["inpaint"]', '["denoise"]').replace('"lpips"]', '"ssim"]')
    suite_file.write_text(suite)
    run_suite(load_suite(suite_file), tmp_path / "out", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    same = [r for r in rows if r["method"] == "sr-same-size:nn.safetensors"]
    assert len(same) == len(rows) / 2 == 4
    from genrestore.io import read_image

    for r in same:  # the row's output is the method run on the row's (8-bit) input
        inp, got = (read_image(tmp_path / "out" / r["images"][k], "rgb") for k in ("input", "output"))
        assert float((got - sr_same_size(net, inp)).abs().max()) <= 0.5 / 255 + 1e-6


def test_rows_kept_from_another_setting_keep_their_files_and_the_report_says_so(suite_file, tmp_path):
    """A run with another crop and fewer methods keeps the other methods' rows (they are not in
    its list), but used to rewrite the truth and input files those rows share (named by image,
    seed, task and level only): their FID then compared 32 px outputs with 36 px crops. Now those
    files are named by their crop, the kept rows' files stay intact, and the report notes that
    the methods of a table were scored on different crops."""
    import hashlib

    from genrestore.bench.report import load_rows, summarize

    out = tmp_path / "run"
    run_suite(load_suite(suite_file), out, progress=False)
    before = {r["images"]["output"]: r for r in load_rows(out) if r["method"] == "telea"}
    suite_file.write_text(suite_file.read_text().replace("crop = 32", "crop = 36"))
    assert run_suite(load_suite(suite_file, methods=["degraded"]), out, progress=False)["rows_run"] == 4
    rows = load_rows(out)
    assert len(rows) == 8
    for r in (r for r in rows if r["method"] == "telea"):
        assert r == before[r["images"]["output"]]
        for name, rel in r["images"].items():  # every file of the kept row is the one it recorded
            assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == r["sha256"][name]
    notes = summarize(rows)["notes"]
    assert any("inpaint M: the methods were scored on different ground-truth crops (telea: 2; degraded: 2 crops)" in n
               for n in notes), notes
    assert not summarize([r for r in rows if r["method"] == "telea"])["notes"]


def test_rows_of_crops_the_suite_no_longer_has_are_dropped(suite_file, tmp_path):
    """count 2 -> 1: the rows of the second crop belong to this suite's tasks, levels and methods
    but to no crop of it now; they were kept and pooled into the tables (2 images reported)."""
    from genrestore.bench.report import load_rows

    out = tmp_path / "run"
    run_suite(load_suite(suite_file), out, progress=False)
    assert len({r["image"] for r in load_rows(out)}) == 2
    suite_file.write_text(suite_file.read_text().replace("count = 2", "count = 1"))
    s = run_suite(load_suite(suite_file), out, progress=False)
    assert s["rows_run"] == 0 and s["rows_skipped"] == 4
    assert len(load_rows(out)) == 4 and len({r["image"] for r in load_rows(out)}) == 1


def test_set_metrics_of_other_rows_are_not_shown(suite_file, tmp_path):
    """set_metrics.json records which rows each group was computed on; the report leaves out a group
    whose rows changed since (e.g. an interrupted run, or joined shards), and a run that asks for no
    set metric removes an earlier run's file instead of leaving it to be shown beside new rows."""
    from genrestore.bench.set_metrics import write_set_metrics
    from genrestore.bench.report import load_rows, summarize

    out = tmp_path / "run"
    run_suite(load_suite(suite_file), out, progress=False)
    write_set_metrics(out, ["fid"], lambda x: (x.mean((2, 3)).double() * 10, None))
    record = json.loads((out / "set_metrics.json").read_text())
    rows = load_rows(out)
    assert summarize(rows, record)["tables"][("inpaint", "M")]["telea"]["fid"] is not None
    changed = [dict(r, sha256={**r["sha256"], "output": "0" * 64}) if r["method"] == "telea" and r["level"] == "M"
               else r for r in rows]
    summary = summarize(changed, record)
    assert summary["tables"][("inpaint", "M")]["telea"]["fid"] is None
    assert summary["tables"][("inpaint", "M")]["degraded"]["fid"] is not None
    assert any("left out for inpaint M telea" in n for n in summary["notes"])
    run_suite(load_suite(suite_file), out, progress=False)  # psnr, ssim, lpips only
    assert not (out / "set_metrics.json").exists()


def test_a_rerun_reuses_set_metrics_whose_inputs_did_not_change(suite_file, tmp_path, monkeypatch):
    """A rerun with every row done recomputed every group's FID (Inception on every image, then a
    2048-d matrix square root per group: minutes for a built-in suite). A group now keeps its values
    while its rows, their files and the Inception weight are unchanged, and only a changed group is
    computed again."""
    import genrestore.metrics.fid as fid_module
    from genrestore import weights as ws
    from genrestore.bench.set_metrics import write_set_metrics

    weight = tmp_path / "inception-fid.safetensors"
    weight.write_bytes(b"stand-in")
    real_find = ws.find
    monkeypatch.setattr(ws, "find", lambda name: weight if name == "inception-fid" else real_find(name))
    calls = []

    class CountingFeatures:  # channel means as "features", no logits
        def __call__(self, x):
            calls.append(x.shape[0])
            return x.mean((2, 3)).double() * 10, None

    monkeypatch.setattr(fid_module, "InceptionFeatures", CountingFeatures)
    suite_file.write_text(suite_file.read_text().replace('"lpips"]', '"fid"]'))
    out = tmp_path / "run"
    run_suite(load_suite(suite_file), out, progress=False)
    assert len(calls) == 4 * 2  # 4 groups: outputs and truths
    first = (out / "set_metrics.json").read_text()
    assert run_suite(load_suite(suite_file), out, progress=False)["rows_run"] == 0
    assert len(calls) == 8 and (out / "set_metrics.json").read_text() == first
    lines = (out / "results.jsonl").read_text().splitlines()  # one row of one group made with other settings
    row = json.loads(lines[0])
    lines[0] = json.dumps(dict(row, config="0" * 16))
    (out / "results.jsonl").write_text("\n".join(lines) + "\n")
    write_set_metrics(out, ["fid"])
    assert len(calls) == 10  # that group alone
    groups = json.loads((out / "set_metrics.json").read_text())["groups"]
    assert [g["fid"] for g in groups] == [g["fid"] for g in json.loads(first)["groups"]]  # same images, same values
    weight.write_bytes(b"another stand-in")  # a replaced Inception: every group again
    write_set_metrics(out, ["fid"])
    assert len(calls) == 18
    write_set_metrics(out, ["fid", "kid"])  # other metrics: every group again
    assert len(calls) == 26


def test_fid_and_kid_need_two_crops(suite_file, tmp_path):
    """count = 1 with fid or kid ran every row, then failed ('feature statistics need at least 2
    samples'); now it is refused first, and a group of one row (a shard's folder) gets null."""
    from genrestore.bench.set_metrics import write_set_metrics

    suite_file.write_text(suite_file.read_text().replace("count = 2", "count = 1").replace('"lpips"]', '"kid"]'))
    with pytest.raises(InputError, match=r"kid compare sets of images: the suite needs count >= 2 crops \(got 1\)"):
        run_suite(load_suite(suite_file), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    suite_file.write_text(suite_file.read_text().replace('"kid"]', '"psnr"]'))
    run_suite(load_suite(suite_file), tmp_path / "run", progress=False)
    notes = write_set_metrics(tmp_path / "run", ["fid", "kid"], lambda x: (x.mean((2, 3)).double(), None))
    record = json.loads((tmp_path / "run" / "set_metrics.json").read_text())
    assert all(g["fid"] is None and g["kid"] is None and g["count"] == 1 for g in record["groups"])
    assert any(n.startswith("fid, kid: null for groups of one crop") for n in notes)


def test_a_latent_diffgar_rows_config_covers_its_autoencoder(suite_file, tmp_path):
    """A latent DiffGAR model names its VQ autoencoder, a second file; the row config hashed only the
    model, so retraining the autoencoder at the same path reused the old rows."""
    from genrestore.bench.harness import _row_config

    suite = load_suite(suite_file)
    (tmp_path / "dg").mkdir()
    (tmp_path / "dg" / "m.safetensors").write_bytes(b"model")
    (tmp_path / "dg" / "m.json").write_text(json.dumps({"config": {}, "autoencoder": "../vq/ae.safetensors"}))
    (tmp_path / "vq").mkdir()
    ae = tmp_path / "vq" / "ae.safetensors"
    configs = []
    for content in (b"first", b"second"):
        ae.write_bytes(content)
        configs.append(_row_config(suite, "t", "inpaint", f"diffgar-blind:{tmp_path / 'dg' / 'm.safetensors'}",
                                   "o.png", {}))
    assert configs[0] != configs[1]


def test_diffgar_table_reads_one_level(tmp_path):
    """benchmarks/diffgar.py's Table 1 read level M whatever the rows' levels: a folder with rows at
    S and M printed one column per (kind, level), each with M's value, and MSE pooled both levels."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("diffgar_table", Path(__file__).parents[1] / "benchmarks" / "diffgar.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = [{"image": "a", "task": "vq-replace", "level": lv, "method": "degraded", "seed": 0, "seconds": 0.0,
             "metrics": {"psnr": psnr}, "higher_is_better": {"psnr": True}, "sha256": {}}
            for lv, psnr in (("S", 30.0), ("M", 20.0))]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for level, psnr in (("M", 20.0), ("S", 30.0)):
        lines = module.table(tmp_path, level).splitlines()
        assert lines[0] == "| metric | method | vq-replace | ALL |"
        assert f"| psnr | degraded | {psnr:.4f} | {psnr:.4f} |" in lines
        assert f"| mse | degraded | {1e3 * 10 ** (-psnr / 10):.4f} | {1e3 * 10 ** (-psnr / 10):.4f} |" in lines


def test_report_means_keep_infinite_psnr_and_mark_ties_as_printed():
    """A method scoring PSNR [inf, 30] was reported as 30 (inf left out), so another method's 45
    took the bold; and two means that print alike (45.00004, 45.00001) got only one bold."""
    from genrestore.bench.report import _best, summarize

    def row(method, img, psnr):
        return {"image": img, "task": "denoise", "level": "M", "method": method, "seed": 0, "seconds": 1.0,
                "metrics": {"psnr": psnr}, "higher_is_better": {"psnr": True}, "sha256": {"truth": img}}

    rows = [row("exact", "a", float("inf")), row("exact", "b", 30.0), row("other", "a", 45.0), row("other", "b", 45.0)]
    table = summarize(rows)["tables"][("denoise", "M")]
    assert table["exact"]["psnr"] == float("inf") and table["other"]["psnr"] == 45.0
    assert _best(table, "psnr", {"psnr": True}) == {"exact"}
    close = {"a": {"psnr": 45.00004}, "b": {"psnr": 45.00001}, "c": {"psnr": 44.9}}
    assert _best(close, "psnr", {"psnr": True}) == {"a", "b"}


def test_an_sr_method_whose_scale_does_not_fit_the_task_is_refused_before_any_row(suite_file, tmp_path, capsys):
    """sr:rdn-x2 on a same-size task (inpaint) was found out at its first row, after the 'degraded'
    rows had been written; the x2 model on a x2 upsample task runs."""
    from genrestore.cli import main
    from genrestore.weights import resolve

    out = tmp_path / "run"
    rdn = resolve("rdn-x2")
    assert main(["bench", str(suite_file), "-o", str(out), "--methods", f"degraded,sr:{rdn}", "-q"]) == 2
    err = capsys.readouterr().err
    assert f"sr:{rdn} on inpaint S: a x2 model turns the task's 32x32 px input into 64x64, not the ground truth's " \
           "32x32" in err and err.count("\n") == 1, err
    assert not out.exists()
    suite_file.write_text(suite_file.read_text().replace('tasks = ["inpaint"]', 'tasks = ["upsample"]')
                          .replace('levels = ["S", "M"]', 'levels = ["XS"]').replace('"telea"]', '"nlmeans"]'))
    assert main(["bench", str(suite_file), "-o", str(out), "--methods", f"sr:{rdn}", "-q"]) == 0


def test_results_lock_keeps_readers_off_a_half_written_row(tmp_path):
    """A shard appending a row holds the lock from its first byte to its newline: a reader (or a
    starting shard's rewrite) waits, then sees the whole row, never a cut line."""
    import threading
    import time

    from genrestore.bench.results import _results_lock, read_results

    (tmp_path / "results.jsonl").write_text('{"n": 1}\n')
    holding, seen = threading.Event(), []

    def append_slowly():
        with _results_lock(tmp_path), (tmp_path / "results.jsonl").open("a") as log:
            holding.set()
            log.write('{"n": ')
            log.flush()
            time.sleep(0.3)
            log.write('2}\n')

    writer = threading.Thread(target=append_slowly)
    writer.start()
    holding.wait()
    seen.extend(read_results(tmp_path))  # blocks until the row is whole (without the lock: a JSON error)
    writer.join()
    assert seen == [{"n": 1}, {"n": 2}]


def test_ground_truth_reads_each_photo_once_and_keeps_only_crops(suite_file, monkeypatch):
    """count = 5 crops round-robin over 2 photos: 2 reads; each crop owns just its pixels (a view
    would keep the whole photo alive for the run); the crops equal the photos' pixels there."""
    from genrestore import io as gio

    suite_file.write_text(suite_file.read_text().replace("count = 2", "count = 5"))
    reads = []
    real = gio.read_image
    monkeypatch.setattr(gio, "read_image", lambda p, *a, **k: reads.append(p) or real(p, *a, **k))
    truths = ground_truth(load_suite(suite_file))
    assert len(truths) == 5 and sorted(p.name for p in reads) == ["p0.png", "p1.png"]
    for name, x in truths:
        assert x.shape == (1, 3, 32, 32) and x.untyped_storage().nbytes() == x.numel() * x.element_size()
        photo = real(suite_file.parent / "photos" / f"{name.rsplit('-', 1)[0]}.png", "rgb")
        hits = [(y, x0) for y in range(40 - 32 + 1) for x0 in range(48 - 32 + 1)
                if torch.equal(photo[..., y:y + 32, x0:x0 + 32], x)]
        assert len(hits) == 1


def _last_row_appended_slowly(suite_file, out):
    """Run the suite into ``out``, take its last row off results.jsonl, and start a thread that
    appends it again under the shards' lock, pausing 0.3 s halfway; returns once the lock is held
    (join the thread when done)."""
    import threading
    import time

    from genrestore.bench.results import _results_lock

    assert run_suite(load_suite(suite_file), out, progress=False)["rows_run"] == 8
    results = out / "results.jsonl"
    *first, last = results.read_text().splitlines(keepends=True)
    results.write_text("".join(first))
    holding = threading.Event()

    def append_slowly():
        with _results_lock(out), results.open("a") as log:
            holding.set()
            log.write(last[:20])
            log.flush()
            time.sleep(0.3)
            log.write(last[20:])

    writer = threading.Thread(target=append_slowly)
    writer.start()
    holding.wait()
    return writer


def test_shard_starting_during_an_append_waits_for_the_row(suite_file, tmp_path):
    """A shard that starts while another is halfway through appending a row keeps that row
    (without the lock it read the cut line as an interrupted append, dropped it and ran it again)."""
    out = tmp_path / "run"
    writer = _last_row_appended_slowly(suite_file, out)
    summary = run_suite(load_suite(suite_file), out, progress=False)
    writer.join()
    assert (summary["rows_run"], summary["rows_skipped"]) == (0, 8)
    assert len((out / "results.jsonl").read_text().splitlines()) == 8


def test_results_are_strict_json_and_an_exact_output_reads_back_as_inf(suite_file, tmp_path, monkeypatch):
    """A method whose output equals the crop has PSNR inf: results.jsonl spells it "inf" (strict
    JSON, RFC 8259, which jq and JavaScript read; json.dumps wrote the bare word Infinity), and the
    report's mean of that method is inf."""
    from genrestore.bench import harness
    from genrestore.bench.report import load_rows, summarize

    run_method = harness.run_method
    monkeypatch.setattr(harness, "run_method", lambda m, t, task, y, params, size, seed, key, cache: (
        cache["truth"] if m == "telea" else run_method(m, t, task, y, params, size, seed, key, cache)))
    truth_of = dict(ground_truth(load_suite(suite_file)))
    real_degrade = harness._degrade

    def degrade_and_note_the_truth(t, lv, x, key, suite, cache):
        cache["truth"] = truth_of[key.split(":")[0]]
        return real_degrade(t, lv, x, key, suite, cache)

    monkeypatch.setattr(harness, "_degrade", degrade_and_note_the_truth)
    out = tmp_path / "run"
    run_suite(load_suite(suite_file), out, progress=False)

    def no_constants(word):
        raise AssertionError(f"non-standard JSON constant {word}")

    lines = (out / "results.jsonl").read_text().splitlines()
    rows = [json.loads(line, parse_constant=no_constants) for line in lines]
    assert {r["metrics"]["psnr"] for r in rows if r["method"] == "telea"} == {"inf"}
    assert all(isinstance(r["metrics"]["psnr"], float) for r in rows if r["method"] == "degraded")
    table = summarize(load_rows(out))["tables"][("inpaint", "S")]
    assert table["telea"]["psnr"] == float("inf") and table["telea"]["ssim"] == pytest.approx(1.0)
    assert 5 < table["degraded"]["psnr"] < 60


def test_report_reads_rows_under_the_shards_lock(suite_file, tmp_path):
    """`genrestore report` run while a shard appends waits for the row's newline (it read the
    cut line and stopped with 'not JSON')."""
    from genrestore.bench.report import load_rows

    out = tmp_path / "run"
    writer = _last_row_appended_slowly(suite_file, out)
    rows = load_rows(out)
    writer.join()
    assert len(rows) == 8


def test_set_metrics_of_a_given_extractor_are_not_reused_as_the_stores(suite_file, tmp_path, monkeypatch):
    """Review reproduction: a run with a given extractor records its groups' inputs with the Inception
    state "absent" (no weight was looked up); a later run without an extractor and without the
    inception-fid weight then reuses those values while its note says they are absent. They should
    be null (computed again), as on a first run without the weight."""
    from genrestore import weights as ws
    from genrestore.bench.set_metrics import write_set_metrics

    real_find = ws.find
    monkeypatch.setattr(ws, "find", lambda name: None if name == "inception-fid" else real_find(name))
    out = tmp_path / "run"
    run_suite(load_suite(suite_file), out, progress=False)
    write_set_metrics(out, ["fid"], lambda x: (x.mean((2, 3)).double() * 10, None))
    assert all(g["fid"] is not None for g in json.loads((out / "set_metrics.json").read_text())["groups"])
    notes = write_set_metrics(out, ["fid"])  # no extractor, no weight
    assert any("absent" in n for n in notes)
    assert all(g["fid"] is None for g in json.loads((out / "set_metrics.json").read_text())["groups"])


def _stand_in_lpips(monkeypatch, tmp_path):
    """The AlexNet backbone "present", LPIPS replaced by the mean absolute difference."""
    import genrestore.metrics.lpips as lpips_module
    from genrestore import weights as ws

    real_find = ws.find
    monkeypatch.setattr(ws, "find", lambda name: tmp_path if name == "alexnet-torchvision" else real_find(name))
    monkeypatch.setattr(lpips_module, "lpips", lambda a, b, net: (a - b).abs().mean(dim=(1, 2, 3)))


@pytest.mark.parametrize("name, level, side", [("upsample", "XS", 64), ("denoise", "XL", 64), ("deartifact", "M", 64),
                                               ("inpaint", "L", 64), ("UNAP", "M", 256)])
def test_fidelity_degrades_the_output_again_as_the_target_was(name, level, side, monkeypatch, tmp_path):
    """Robust StyleGAN §6.1's fidelity re-degrades the prediction from the target's seed: the ground
    truth itself gives exactly 0 (same blur, Poisson draws, dead pixels, JPEG, strokes), another
    image does not, and images under LPIPS's 31 px give None."""
    from genrestore._random import generator_for
    from genrestore.bench.methods import fidelity_function
    from genrestore.degrade import get_task

    _stand_in_lpips(monkeypatch, tmp_path)
    fidelity, notes = fidelity_function()
    assert notes == []
    task = get_task(name, level)
    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(1))
    y, _ = task.degrade_with_params(x, generator_for(0, "im:key"))
    assert fidelity(x, y, task, generator_for(0, "im:key")) == 0.0
    other = (x + 0.1 * torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    assert fidelity(other, y, task, generator_for(0, "im:key")) > 0.01
    small = get_task("upsample", "M")  # x8: 64 -> 8 px, 256 -> 32 px
    assert fidelity(x[..., :64, :64], small.degrade(x[..., :64, :64]), small, generator_for(0, "k")) is None


def test_fidelity_in_a_suite(suite_file, tmp_path, monkeypatch):
    """Rows carry fidelity (lower is better) as computed from their own files, null with a note where
    the degraded crop is too small for LPIPS; absent weights are a note and null; suites with
    pipelines are refused."""
    from genrestore import weights as ws
    from genrestore._random import generator_for
    from genrestore.bench.methods import fidelity_function
    from genrestore.degrade import get_task
    from genrestore.io import read_image

    suite_file.write_text(suite_file.read_text().replace('["inpaint"]', '["upsample", "denoise"]')
                          .replace('["S", "M"]', '["XS"]').replace('["degraded", "telea"]', '["degraded"]')
                          .replace('"lpips"]', '"fidelity"]'))
    real_find = ws.find
    monkeypatch.setattr(ws, "find", lambda name: None if name == "alexnet-torchvision" else real_find(name))
    s = run_suite(load_suite(suite_file), tmp_path / "absent", progress=False)
    assert "fidelity: absent (alexnet-torchvision not in the weight store)" in s["notes"]
    _stand_in_lpips(monkeypatch, tmp_path)
    out = tmp_path / "run"
    s = run_suite(load_suite(suite_file), out, progress=False)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["higher_is_better"]["fidelity"] is False for r in rows)
    fidelity, _ = fidelity_function()
    for r in rows:
        if r["task"] == "upsample":  # 32 px crops, x2: 16 px, under LPIPS's 31
            assert r["metrics"]["fidelity"] is None
            continue
        pred, y = read_image(out / r["images"]["output"]), read_image(out / r["images"]["input"])
        expected = fidelity(pred, y, get_task("denoise", "XS"), generator_for(0, f"{r['image']}:denoise:XS"))
        assert 0 < r["metrics"]["fidelity"] == pytest.approx(expected, abs=1e-6)
    assert "fidelity: null where the degraded images are under 31 px (LPIPS AlexNet), e.g. upsample at XS" in s["notes"]
    assert sum(n.startswith("fidelity: null where") for n in s["notes"]) == 1  # once a run, not once a row
    suite_file.write_text(suite_file.read_text().replace('["upsample", "denoise"]', '["idm"]').replace('["XS"]', '["M"]'))
    with pytest.raises(InputError, match="'fidelity' degrades the outputs again .* also has \\['idm'\\]"):
        load_suite(suite_file)


def test_patch_fid_of_each_group(suite_file, tmp_path, monkeypatch):
    """pfid (robust StyleGAN's realism): FID of pfid_crops random pfid_size crops of each output
    against as many of each ground truth, positions from the seed. Checked against the Frechet
    distance computed with NumPy/SciPy from the same crops' stand-in features; the ground truths'
    crops go through the extractor once a run; a rerun reuses the values; other crop settings
    compute them again; a bad setting is refused."""
    import numpy as np
    import scipy.linalg

    import genrestore.metrics.fid as fid_module
    from genrestore import weights as ws
    from genrestore._random import generator_for
    from genrestore.io import read_image
    from genrestore.metrics.fid import random_crops

    weight = tmp_path / "inception-fid.safetensors"
    weight.write_bytes(b"stand-in")
    real_find = ws.find
    monkeypatch.setattr(ws, "find", lambda name: weight if name == "inception-fid" else real_find(name))
    calls = []

    def features(x):  # 4 stand-in features of each crop: channel means and the mean square, no logits
        return torch.cat([x.mean((2, 3)), (x * x).mean((1, 2, 3))[:, None]], 1).double() * 10

    class CountingFeatures:
        def __call__(self, x):
            calls.append(x.shape[0])
            return features(x), None

    monkeypatch.setattr(fid_module, "InceptionFeatures", CountingFeatures)
    suite_file.write_text(suite_file.read_text().replace('"lpips"]', '"pfid"]\npfid_size = 12\npfid_crops = 9'))
    out = tmp_path / "run"
    run_suite(load_suite(suite_file), out, progress=False)
    assert calls == [9] * (2 + 4 * 2)  # 2 truths once, then 2 outputs of each of 4 groups
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    data = json.loads((out / "set_metrics.json").read_text())
    assert data["higher_is_better"] == {"pfid": False}

    def crops_features(files, key):
        g = generator_for(0, key)
        return np.concatenate([features(random_crops(read_image(out / f, "rgb"), 12, 9, g)).numpy() for f in files])

    def frechet(a, b):
        ma, mb, ca, cb = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        return float(((ma - mb) ** 2).sum() + np.trace(ca + cb - 2 * scipy.linalg.sqrtm(ca @ cb).real))

    for g in data["groups"]:
        group = [r for r in rows if (r["task"], r["level"], r["method"]) == (g["task"], g["level"], g["method"])]
        truth = crops_features(sorted(r["images"]["truth"] for r in group), "pfid:truth")
        output = crops_features(sorted(r["images"]["output"] for r in group), f"pfid:{g['task']}:{g['level']}:{g['method']}")
        assert g["pfid"] == pytest.approx(frechet(truth, output), rel=1e-6, abs=1e-9)
    assert len({g["pfid"] for g in data["groups"]}) == 4
    first = (out / "set_metrics.json").read_text()
    run_suite(load_suite(suite_file), out, progress=False)
    assert len(calls) == 10 and (out / "set_metrics.json").read_text() == first
    suite_file.write_text(suite_file.read_text().replace("pfid_crops = 9", "pfid_crops = 5"))
    run_suite(load_suite(suite_file), out, progress=False)
    assert calls[10:] == [5] * 10
    suite_file.write_text(suite_file.read_text().replace("pfid_size = 12", "pfid_size = 33"))
    with pytest.raises(InputError, match="'pfid_size' 33 is larger than the suite's 32 px crops"):
        load_suite(suite_file)
    suite_file.write_text(suite_file.read_text().replace('"pfid"]', '"psnr"]'))
    with pytest.raises(InputError, match="'pfid_size' and 'pfid_crops' set the crops of metric 'pfid'"):
        load_suite(suite_file)


def _stand_in_inception(monkeypatch, tmp_path):
    """inception-fid "present", its features 4 channel statistics of each crop (no logits)."""
    import genrestore.metrics.fid as fid_module
    from genrestore import weights as ws

    weight = tmp_path / "inception-fid.safetensors"
    weight.write_bytes(b"stand-in")
    real_find = ws.find
    monkeypatch.setattr(ws, "find", lambda name: weight if name == "inception-fid" else real_find(name))

    class Features:
        def __call__(self, x):
            return torch.cat([x.mean((2, 3)), (x * x).mean((1, 2, 3))[:, None]], 1).double() * 10, None

    monkeypatch.setattr(fid_module, "InceptionFeatures", Features)


def test_patch_fid_does_not_depend_on_the_order_of_the_rows(suite_file, tmp_path, monkeypatch):
    """Shards interleave the rows of a group in results.jsonl; the same outputs must give the same
    patch-FID as one run (the crops are drawn in the order of the file names, not of the rows)."""
    _stand_in_inception(monkeypatch, tmp_path)
    write_image(tmp_path / "photos" / "p2.png", torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(5)))
    suite_file.write_text(suite_file.read_text().replace("count = 2", "count = 3").replace('["S", "M"]', '["M"]')
                          .replace('"telea"]', '"telea", "navier-stokes"]')
                          .replace('"lpips"]', '"pfid"]\npfid_size = 12\npfid_crops = 9'))
    suite = load_suite(suite_file)
    values = []
    for name, shards in (("one", [(0, 1)]), ("shards", [(1, 2), (0, 2)])):
        for shard in shards:
            run_suite(suite, tmp_path / name, shard=shard, progress=False)
        groups = json.loads((tmp_path / name / "set_metrics.json").read_text())["groups"]
        values.append({(g["task"], g["level"], g["method"]): g["pfid"] for g in groups})
    order = [json.loads(line)["image"] for line in (tmp_path / "shards" / "results.jsonl").read_text().splitlines()
             if '"degraded"' in line]
    assert order != sorted(order)  # the shards did interleave a group's rows
    assert all(v is not None for v in values[0].values())
    assert values[0] == pytest.approx(values[1], rel=1e-12)


def test_patch_fid_of_one_crop_is_null_with_a_note(suite_file, tmp_path, monkeypatch):
    """A group of one row at pfid_crops = 1 (a shard's folder) has one patch a set: pfid is null with
    a note, not an error after every row has run; a suite that can only make such groups is refused."""
    _stand_in_inception(monkeypatch, tmp_path)
    suite_file.write_text(suite_file.read_text().replace('"lpips"]', '"pfid"]\npfid_crops = 1'))
    s = run_suite(load_suite(suite_file), tmp_path / "run", shard=(0, 8), progress=False)
    assert any(n.startswith("pfid: null for groups of one crop") for n in s["notes"])
    groups = json.loads((tmp_path / "run" / "set_metrics.json").read_text())["groups"]
    assert groups and all(g["pfid"] is None for g in groups)
    suite_file.write_text(suite_file.read_text().replace("count = 2", "count = 1"))
    with pytest.raises(InputError, match=r"^pfid compares sets of patches: the suite needs count x pfid_crops >= 2 "
                                         r"\(got 1 x 1\)$"):
        run_suite(load_suite(suite_file), tmp_path / "one", progress=False)


def test_diffgar_table_all_is_the_papers_mixed_set(tmp_path, monkeypatch):
    """DiffGAR §5.1's ALL restores each image from one randomly drawn artifact kind and scores that
    set: its PSNR is the mean over images of the drawn kind's PSNR (not the mean of the kinds'
    means), the same draw for every method, and its FID is of the one mixed set."""
    import importlib.util
    from pathlib import Path

    import numpy as np
    import scipy.linalg

    import genrestore.metrics.fid as fid_module
    from genrestore import weights as ws
    from genrestore._random import generator_for
    from genrestore.io import read_image

    spec = importlib.util.spec_from_file_location("diffgar_table", Path(__file__).parents[1] / "benchmarks" / "diffgar.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    kinds, images, methods = ["vq-replace", "ddim-gauss"], [f"im{i}" for i in range(6)], ["degraded", "other"]
    g = torch.Generator().manual_seed(0)
    rows = []
    for img in images:
        write_image(tmp_path / f"{img}_truth.png", torch.rand(1, 3, 8, 8, generator=g))
        for k, kind in enumerate(kinds):
            for m, method in enumerate(methods):
                out = f"{img}_{kind}_{method}.png"
                write_image(tmp_path / out, torch.rand(1, 3, 8, 8, generator=g))
                psnr = 20.0 + 5 * k * (images.index(img) + 1) + m  # the kind matters more on later images
                rows.append({"image": img, "task": kind, "level": "M", "method": method, "seed": 3, "seconds": 1.0 + k,
                             "metrics": {"psnr": psnr}, "higher_is_better": {"psnr": True}, "sha256": {},
                             "images": {"truth": f"{img}_truth.png", "output": out}})
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    drawn = {img: kinds[int(torch.randint(2, (1,), generator=generator_for(3, f"diffgar-all:{img}")))] for img in images}
    assert len(set(drawn.values())) == 2  # this seed mixes both kinds
    lines = module.table(tmp_path).splitlines()
    for m, method in enumerate(methods):
        chosen = [r for r in rows if r["method"] == method and r["task"] == drawn[r["image"]]]
        expected = np.mean([r["metrics"]["psnr"] for r in chosen])
        assert expected != np.mean([np.mean([r["metrics"]["psnr"] for r in rows if r["method"] == method
                                             and r["task"] == k]) for k in kinds])
        assert any(line.startswith(f"| psnr | {method} |") and line.endswith(f"| {expected:.4f} |") for line in lines)
        seconds = np.mean([r["seconds"] for r in chosen])
        assert any(line.startswith(f"| seconds | {method} |") and line.endswith(f"| {seconds:.4f} |") for line in lines)

    weight = tmp_path / "inception-fid.safetensors"  # a stand-in Inception: channel means and mean square
    weight.write_bytes(b"stand-in")
    real_find = ws.find
    monkeypatch.setattr(ws, "find", lambda name: weight if name == "inception-fid" else real_find(name))

    def features(x):
        return torch.cat([x.mean((2, 3)), (x * x).mean((1, 2, 3))[:, None]], 1).double()

    monkeypatch.setattr(fid_module, "InceptionFeatures", lambda: (lambda x: (features(x), None)))
    (tmp_path / "set_metrics.json").write_text(json.dumps({"metrics": ["fid"], "groups": []}))
    mixed = module.paper_all(tmp_path, rows, kinds, methods, fid=True)
    for method in methods:
        chosen = [r for r in rows if r["method"] == method and r["task"] == drawn[r["image"]]]
        a, b = (np.concatenate([features(read_image(tmp_path / r["images"][n], "rgb")).numpy() for r in chosen])
                for n in ("truth", "output"))
        ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * scipy.linalg.sqrtm(ca @ cb).real)
        assert mixed[("fid", method)] == pytest.approx(expected, rel=1e-6)


def test_a_pipeline_given_by_tasks_on_a_suite_with_levels_names_the_flag(suite_file):
    """--tasks idm on a suite with levels S, M: the error names --tasks (the suite file has no idm) and the levels."""
    with pytest.raises(InputError, match=r"^--tasks idm: \['idm'\] have no levels .*\['S', 'M'\].*a copy of"):
        load_suite(suite_file, tasks=["idm"])


def test_report_notes_a_metric_null_in_every_row_of_a_table(tmp_path):
    """fidelity of upsample L (8 px inputs from 128 px crops) is null: the report says why its column is missing."""
    from genrestore.bench.report import summarize

    def row(level, fid):
        return {"suite": "s", "image": "a", "task": "upsample", "level": level, "method": "degraded", "seed": 0,
                "seconds": 0.0, "metrics": {"psnr": 20.0, "fidelity": fid},
                "higher_is_better": {"psnr": True, "fidelity": False}, "images": {}}

    summary = summarize([row("M", 0.1), row("L", None)])
    assert [n for n in summary["notes"] if n.startswith("fidelity: null in every row of upsample L,")]
    assert not [n for n in summary["notes"] if "upsample M" in n or n.startswith("psnr")]


def test_region_set_metrics_are_recomputed_when_a_mask_the_baseline_or_the_labels_change(tmp_path):
    """A group's removal / addition / precision / recall are reused only while what they depend on is
    unchanged: the group's own mask file (its sha256, config unchanged), the baseline's masks, and the
    labelled-mask folder each make them computed again. Values hand-counted on 16 px masks."""
    import numpy as np

    from genrestore.bench.set_metrics import write_set_metrics

    def draw(rel, boxes):
        m = np.zeros((16, 16), np.float32)
        for y0, y1, x0, x1 in boxes:
            m[y0:y1, x0:x1] = 1
        write_image(tmp_path / rel, torch.from_numpy(m)[None, None])

    def rows(old, new):  # the sha256 of each mask stands in for its file's digest
        out = []
        for method, boxes in (("sr:old", old), ("sr:new", new)):
            rel = {"output": f"images/a_{method[3:]}.png", "mask": f"images/a_{method[3:]}_mask.png"}
            draw(rel["mask"], boxes)
            out.append({"image": "a", "task": "realesrgan-x4", "level": "M", "method": method, "images": rel,
                        "config": "same settings", "sha256": {"mask": json.dumps(boxes)}})
        (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in out))

    def new_group(labels):
        write_set_metrics(tmp_path, ["removal", "addition", "precision", "recall"], baseline="sr:old",
                          truth_masks=labels)
        groups = json.loads((tmp_path / "set_metrics.json").read_text())["groups"]
        g = next(g for g in groups if g["method"] == "sr:new")
        return g["removal"], g["addition"], g["precision"], g["recall"]

    for name, boxes in (("labels1", [(0, 4, 0, 4)]), ("labels2", [(10, 14, 10, 14)])):
        (tmp_path / name).mkdir()
        draw(f"{name}/a_new.png", boxes)
    two_old = [(0, 4, 0, 4), (10, 14, 10, 14)]
    rows(two_old, [(0, 4, 0, 4)])
    assert new_group(tmp_path / "labels1") == (0.5, 0.0, 1.0, 1.0)  # 1 of 2 old regions untouched, none added
    rows(two_old, [(0, 4, 0, 4), (10, 14, 0, 4)])  # the new method's mask file changed: one region added
    assert new_group(tmp_path / "labels1") == (0.5, 0.5, 0.5, 1.0)
    rows([(0, 4, 0, 4)], [(0, 4, 0, 4), (10, 14, 0, 4)])  # the baseline's mask changed: one old region
    assert new_group(tmp_path / "labels1") == (0.0, 1.0, 0.5, 1.0)
    # other labels: the (10:14, 10:14) region is in neither detected region; the (10:14, 0:4) one is not labelled
    assert new_group(tmp_path / "labels2") == (0.0, 1.0, 0.0, 0.0)
    # another list of metrics: nothing is reused from the file of the four
    write_set_metrics(tmp_path, ["addition"], baseline="sr:old", truth_masks=tmp_path / "labels2")
    g = next(g for g in json.loads((tmp_path / "set_metrics.json").read_text())["groups"] if g["method"] == "sr:new")
    assert g["addition"] == 1.0 and not {"removal", "precision", "recall"} & set(g)


def test_patch_fid_of_one_row_with_two_crops_and_of_another_seed(tmp_path, monkeypatch):
    """One row at pfid_crops = 2 has two patches a set: enough for a Frechet distance (pfid is not
    null). The seed draws the crop positions: a rerun with another seed computes the value again,
    it does not reuse the first seed's. Checked against the 1-D Frechet distance of the crops' mean
    (|m1 - m2|^2 + (s1 - s2)^2 with sample standard deviations)."""
    import genrestore.metrics.fid as fid_module
    from genrestore import weights as ws
    from genrestore._random import generator_for
    from genrestore.bench.set_metrics import write_set_metrics
    from genrestore.io import read_image
    from genrestore.metrics.fid import random_crops

    weight = tmp_path / "inception-fid.safetensors"
    weight.write_bytes(b"stand-in")
    real_find = ws.find
    monkeypatch.setattr(ws, "find", lambda name: weight if name == "inception-fid" else real_find(name))

    def feature(x):  # one stand-in feature a crop: its mean, x10
        return x.mean((1, 2, 3))[:, None].double() * 10

    class Features:
        def __call__(self, x):
            return feature(x), None

    monkeypatch.setattr(fid_module, "InceptionFeatures", Features)
    g = torch.Generator().manual_seed(3)
    rel = {"truth": "images/a_truth.png", "output": "images/a_out.png"}
    write_image(tmp_path / rel["truth"], torch.rand(1, 3, 16, 16, generator=g))
    write_image(tmp_path / rel["output"], torch.rand(1, 3, 16, 16, generator=g) ** 2)
    row = {"image": "a", "task": "inpaint", "level": "M", "method": "degraded", "images": rel,
           "config": "c", "sha256": {"truth": "t", "output": "o"}}
    (tmp_path / "results.jsonl").write_text(json.dumps(row) + "\n")

    def expected(seed):
        t = feature(random_crops(read_image(tmp_path / rel["truth"], "rgb"), 8, 2, generator_for(seed, "pfid:truth")))
        o = feature(random_crops(read_image(tmp_path / rel["output"], "rgb"), 8, 2,
                                 generator_for(seed, "pfid:inpaint:M:degraded")))
        t, o = t.numpy()[:, 0], o.numpy()[:, 0]
        return (t.mean() - o.mean()) ** 2 + (t.std(ddof=1) - o.std(ddof=1)) ** 2

    def pfid(seed):
        notes = write_set_metrics(tmp_path, ["pfid"], pfid=(8, 2), seed=seed)
        assert notes == []
        return json.loads((tmp_path / "set_metrics.json").read_text())["groups"][0]["pfid"]

    first = pfid(0)
    assert first is not None and first == pytest.approx(expected(0), rel=1e-9, abs=1e-12)
    assert expected(1) != pytest.approx(expected(0))
    assert pfid(1) == pytest.approx(expected(1), rel=1e-9, abs=1e-12)


def test_fidelity_takes_degraded_images_of_exactly_lpips_minimum_size(monkeypatch, tmp_path):
    """LPIPS AlexNet takes 31 px images: a degraded target of 31 px is scored, one of 30 px is None."""
    from genrestore._random import generator_for
    from genrestore.bench.methods import fidelity_function
    from genrestore.degrade import get_task
    from genrestore.metrics.lpips import MIN_SIZE

    assert MIN_SIZE["alex"] == 31
    _stand_in_lpips(monkeypatch, tmp_path)
    fidelity, _ = fidelity_function()
    task = get_task("denoise", "S")  # keeps the size
    for side, scored in ((31, True), (30, False)):
        x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(side))
        y = task.degrade(x, generator_for(0, "k"))
        value = fidelity(x, y, task, generator_for(0, "k"))
        assert (value is not None) == scored
        if scored:  # the ground truth re-degraded from the target's seed is the target itself
            assert value == 0.0


def test_suite_defaults_of_patch_fid_and_diffgar(suite_file):
    """Without pfid_size / pfid_crops, patch-FID takes 64 crops of half the crop side; a pfid_size equal
    to the crop side is allowed (larger is refused); DiffGAR's guided default is s = 3 with 30 steps."""
    from genrestore.bench.suite import diffgar_settings

    suite_file.write_text(suite_file.read_text().replace('"lpips"]', '"pfid"]'))
    assert load_suite(suite_file).pfid == (16, 64)  # 32 px crops
    suite_file.write_text(suite_file.read_text().replace('"pfid"]', '"pfid"]\npfid_size = 32'))
    assert load_suite(suite_file).pfid == (32, 64)
    assert diffgar_settings("diffgar") == ("guided", 3.0, 30)
    assert diffgar_settings("diffgar-nonblind-steps7") == ("non-blind", 1.0, 7)


def test_ground_truth_crops_reach_every_position_and_differ_per_crop(tmp_path):
    """Crops of one photo are drawn each from its own generator (they differ), and every position is
    possible, the last one (touching the bottom-right corner) included. The photo's red and green
    channels hold each pixel's row and column, so a crop's corner tells its position."""
    ys, xs = torch.meshgrid(torch.arange(34.0), torch.arange(34.0), indexing="ij")
    grid = torch.stack([ys, xs, torch.zeros(34, 34)])[None] / 255
    write_image(tmp_path / "photos" / "grid.png", grid)
    (tmp_path / "s.toml").write_text(SUITE.replace("count = 2", "count = 12"))
    corners = []
    for _, x in ground_truth(load_suite(tmp_path / "s.toml")):
        y0, x0 = round(float(x[0, 0, 0, 0]) * 255), round(float(x[0, 1, 0, 0]) * 255)
        assert (x - grid[..., y0:y0 + 32, x0:x0 + 32]).abs().max() < 1e-6
        corners.append((y0, x0))
    assert all(0 <= y0 <= 2 and 0 <= x0 <= 2 for y0, x0 in corners)  # 34 px photo, 32 px crops
    assert len(set(corners)) > 1  # not one position for every crop of the photo
    assert max(y0 for y0, _ in corners) == 2 and max(x0 for _, x0 in corners) == 2  # the last row / column


def test_weight_digest_covers_the_config_beside_the_weights(tmp_path):
    """A row's config digests its weights file and the .json config beside it: a changed config (e.g.
    another architecture or scale for the same tensors) makes the rows run again."""
    from genrestore.bench.harness import _file_digest

    w = tmp_path / "m.safetensors"
    w.write_bytes(b"tensors")
    alone = _file_digest(w, {})
    (tmp_path / "m.json").write_text('{"scale": 4}')
    with_config = _file_digest(w, {})
    (tmp_path / "m.json").write_text('{"scale": 2}')
    other_config = _file_digest(w, {})
    assert len({alone, with_config, other_config}) == 3
    assert _file_digest(tmp_path / "missing.safetensors", {}) is None and _file_digest(None, {}) is None


def test_set_metrics_are_recomputed_when_a_labelled_mask_changes_in_place(tmp_path):
    """precision / recall reused from the last set_metrics.json only while the labelled masks are the
    same files: relabelling one in the same folder (write_set_metrics called directly, without the
    harness's row configs) computes them again. Values hand-counted on 16 px masks."""
    from genrestore.bench.set_metrics import write_set_metrics

    (tmp_path / "images").mkdir()
    labels = tmp_path / "labels"
    labels.mkdir()
    square = torch.zeros(1, 1, 16, 16)
    square[..., 2:6, 2:6] = 1
    write_image(tmp_path / "images" / "a_mask.png", square)
    write_image(labels / "a.png", square)  # the detection covers the labelled region: precision 1
    row = {"suite": "s", "image": "a", "task": "upsample", "level": "M", "method": "sr:x", "seed": 0, "seconds": 0.0,
           "metrics": {}, "higher_is_better": {}, "config": "c", "sha256": {"output": "o", "mask": "m"},
           "images": {"output": "images/a.png", "mask": "images/a_mask.png"}}
    (tmp_path / "results.jsonl").write_text(json.dumps(row) + "\n")
    write_set_metrics(tmp_path, ["precision", "recall"], truth_masks=labels)
    first = json.loads((tmp_path / "set_metrics.json").read_text())["groups"][0]
    assert first["precision"] == 1.0 and first["recall"] == 1.0
    elsewhere = torch.zeros(1, 1, 16, 16)
    elsewhere[..., 10:14, 10:14] = 1
    write_image(labels / "a.png", elsewhere)  # relabelled in place: the detection now misses it
    write_set_metrics(tmp_path, ["precision", "recall"], truth_masks=labels)
    again = json.loads((tmp_path / "set_metrics.json").read_text())["groups"][0]
    assert again["precision"] == 0.0 and again["recall"] == 0.0


def test_diffgar_table_all_leaves_nulls_out_as_the_kind_cells_do(tmp_path):
    """A null identity (no face found) in one image of the mixed set: ALL is the mean of the others,
    as each kind's cell is, not absent."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("diffgar_table", Path(__file__).parents[1] / "benchmarks" / "diffgar.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = [{"image": f"im{i}", "task": "vq-replace", "level": "M", "method": "degraded", "seed": 0, "seconds": 1.0,
             "metrics": {"psnr": 20.0 + i, "identity": None if i == 0 else 0.5 + 0.1 * i}, "sha256": {}, "images": {}}
            for i in range(3)]
    mixed = module.paper_all(tmp_path, rows, ["vq-replace"], ["degraded"], fid=False)
    assert mixed[("identity", "degraded")] == pytest.approx((0.6 + 0.7) / 2)
    assert mixed[("psnr", "degraded")] == pytest.approx(21.0)


def test_set_metrics_show_a_progress_bar_over_the_groups(suite_file, tmp_path, monkeypatch, capsys):
    """pfid takes minutes on a CPU after the rows' bar has reached 100 %: the groups have their own bar
    (none with progress=False, as for the rows)."""
    _stand_in_inception(monkeypatch, tmp_path)
    suite_file.write_text(suite_file.read_text().replace('"lpips"]', '"pfid"]\npfid_size = 12\npfid_crops = 2'))
    run_suite(load_suite(suite_file), tmp_path / "quiet", progress=False)
    assert "set metrics" not in capsys.readouterr().err
    run_suite(load_suite(suite_file), tmp_path / "run", progress=True)
    err = capsys.readouterr().err
    assert "bench tiny" in err and "set metrics" in err and "4/4" in err


def test_artifacts_table_sets_diffgars_test_perturbation_and_is_part_of_the_rows(suite_file, tmp_path):
    """[artifacts] gamma/beta make ddim-scale's inputs with DiffGAR's test settings (1.009, 0.005, no
    single level): the row's input is synthesize's with those values (a zero-eps DDPM: the closed form
    gamma x0 + beta / sqrt(a_T0), by hand), and a run with other options makes new inputs instead of
    keeping the earlier ones. Options of a task the suite lacks, or out of range, are refused."""
    import numpy as np

    from genrestore.diffusion import DenoisingUNet
    from genrestore.io import read_image

    torch.manual_seed(0)
    net = DenoisingUNet(3, schedule={"num_train_timesteps": 100}, unet=dict(
        sample_size=8, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D")))
    for p in net.unet.conv_out.parameters():
        p.data.zero_()
    net.save(tmp_path / "ddpm.safetensors")
    base = (suite_file.read_text().replace('tasks = ["inpaint"]', 'tasks = ["ddim-scale"]')
            .replace('levels = ["S", "M"]', 'levels = ["M"]').replace('"degraded", "telea"', '"degraded"')
            .replace('"lpips"]', '"psnr"]') + f'\n[generators]\nddpm = "{tmp_path / "ddpm.safetensors"}"\n')
    suite_file.write_text(base + "\n[artifacts]\ngamma = 1.009\nbeta = 0.005\n")
    suite = load_suite(suite_file)
    assert suite.artifacts == {"gamma": 1.009, "beta": 0.005} and suite.artifact_options("ddim-gauss") == {}
    run_suite(suite, tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    a = float(np.cumprod(1 - np.linspace(1e-4, 0.02, 100))[84])  # T0 = 0.84 T
    for r in rows:
        x = read_image(tmp_path / "run" / r["images"]["truth"]).double()
        expected = ((1.009 * (x * 2 - 1) + 0.005 / a ** 0.5 + 1) / 2).clamp(0, 1)
        assert (read_image(tmp_path / "run" / r["images"]["input"]) - expected).abs().max() < 0.6 / 255
    suite_file.write_text(base)  # the level's gamma 1.015, beta 0.01: other inputs, not the kept ones
    run_suite(load_suite(suite_file), tmp_path / "run", progress=False)
    again = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert {r["images"]["input"] for r in again}.isdisjoint({r["images"]["input"] for r in rows})
    for table, words in (("alpha = 0.25", "artifacts.alpha sets task 'ddim-gauss', which 'tasks' lacks"),
                         ("gamma = 0", "artifacts.gamma must be a finite number > 0"),
                         ("gamma = true", "artifacts.gamma must be"), ("sigma = 1", "unknown key 'sigma' in 'artifacts'")):
        suite_file.write_text(base + f"\n[artifacts]\n{table}\n")
        with pytest.raises(InputError, match=words.replace("(", r"\(").replace(")", r"\)")):
            load_suite(suite_file)
