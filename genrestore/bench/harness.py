"""The benchmark harness: one result row per image x task x level x method.

:func:`run_suite` runs (or resumes) a :class:`~genrestore.bench.suite.Suite` (a TOML file, see
:mod:`genrestore.bench.suite` for its keys, methods and metrics) into an output folder: the
ground-truth crops are degraded once per task and level, each method restores them
(:mod:`.methods`), each row's images go to ``OUT/images/`` and the row to ``OUT/results.jsonl``
(:mod:`.results`: resume, shards, lock), then the set metrics of each group of rows
(:mod:`.set_metrics`).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch

from .._checks import InputError
from .._random import generator_for
from ..metrics.lpips import MIN_SIZE
from .methods import (_check_sr_size, _Detector, _network_calls, fidelity_function, load_method, metric_functions,
                      run_method)
from .results import _cached_sha256, _keep_finished_rows, _results_lock, _write_hashed, write_csv
from .set_metrics import SET_METRICS_FILE, write_set_metrics
from .suite import ARTIFACT_LEVELS, ARTIFACT_TASKS, _LEARNED, METRICS, SET_METRICS, Suite, ground_truth, method_kind

def run_suite(suite: Suite, out_dir: str | Path, shard: tuple[int, int] = (0, 1), progress: bool = True) -> dict:
    """Run (or resume) ``suite`` into ``out_dir``; return a summary (rows done, skipped, notes).

    Raises:
        InputError: ``suite`` not a :class:`Suite` (:func:`~genrestore.bench.suite.load_suite` gives one),
            or outputs that would overwrite the suite's photos.
    """
    from tqdm import tqdm

    from ..io import check_output_file, check_output_folder, json_line

    if not isinstance(suite, Suite):
        shown = " ".join(repr(suite).split())[:60]  # one line: an array's repr spans several
        raise InputError(f"expected suite as a Suite, got {type(suite).__name__} {shown}; "
                         f"genrestore.bench.suite.load_suite(name) loads one")

    out = Path(out_dir)
    check_output_folder(out)  # the folder is made once the images and models have loaded
    for name in ("results.jsonl", "results.csv"):  # e.g. a folder in their place: refused before any row runs
        check_output_file(out / name)
    if suite.images.resolve() in (out.resolve(), (out / "images").resolve()):
        raise InputError(f"{out}: the results or the row images (OUT/images/) would be written among the suite's "
                         f"photos in {suite.images}; choose another output folder")
    results = out / "results.jsonl"
    truths = ground_truth(suite)
    fns, notes = metric_functions(suite.metrics)
    fidelity, fidelity_notes = fidelity_function() if "fidelity" in suite.metrics else (None, [])
    notes += fidelity_notes
    if suite.count < 2 and {"fid", "kid"} & set(suite.metrics):
        raise InputError(f"{', '.join(n for n in ('fid', 'kid') if n in suite.metrics)} compare sets of images: "
                         f"the suite needs count >= 2 crops (got {suite.count})")
    if "pfid" in suite.metrics and suite.count * suite.pfid[1] < 2:
        raise InputError(f"pfid compares sets of patches: the suite needs count x pfid_crops >= 2 "
                         f"(got {suite.count} x {suite.pfid[1]})")
    every = [(img, t, lv, m) for img, _ in truths for t in suite.tasks for lv in suite.levels for m in suite.methods]
    jobs = every[shard[0]::shard[1]]
    digests: dict = {}
    truth_digest = {img: hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest() for img, x in truths}
    gen_digest = {t: hashlib.sha256(json.dumps(_generator_digests(suite, t, digests), sort_keys=True).encode()).hexdigest()
                  for t in suite.tasks if t in ARTIFACT_TASKS}

    def files(img: str, t: str, lv: str, m: str) -> dict:
        return _row_files(img, t, lv, m, suite.seed, truth_digest[img], gen_digest.get(t, ""))

    # every shard's rows are checked (a shard run drops the other shards' stale rows too)
    config = {(img, t, lv, m, suite.seed): _row_config(suite, truth_digest[img], t, m,
                                                       Path(files(img, t, lv, m)["output"]).name, digests, notes)
              for img, t, lv, m in every}
    combos = {key[1:] for key in config}  # (task, level, method, seed) of this suite
    done = set()
    file_sha: dict[str, str | None] = {}  # sha256 of the files under OUT, by relative path, once a run
    kept_files: set[str] = set()  # the files of the rows kept: found intact, they are not rewritten
    if results.is_file():
        with _results_lock(out):  # a shard beside this one may be appending
            notes += _keep_finished_rows(results, config, combos, done, file_sha, kept_files)
    detector = _Detector(suite.detection) if suite.detection else None
    if detector is not None and {"iou", "precision", "recall"} & set(suite.metrics) and detector.masks is None:
        notes.append("iou, precision, recall: null (no detection.masks folder of labelled artifact masks)")
    truth_of = dict(truths)
    written: set[str] = set()
    cache: dict = {}
    pending = [(img, t, lv, m) for img, t, lv, m in jobs if (img, t, lv, m, suite.seed) not in done]
    for m in dict.fromkeys(m for _, _, _, m in pending):  # a bad model stops the run before any row is written
        load_method(m, cache)
    _check_sr_sizes(pending, suite, cache)
    for t in dict.fromkeys(t for _, t, _, _ in pending if t in ARTIFACT_TASKS):
        _generators(t, suite, cache)
    out.mkdir(parents=True, exist_ok=True)
    last_input: tuple = (None,)  # (key, task, degraded image, its parameters)
    ran = skipped = 0
    too_small_noted = False
    for img, t, lv, m in tqdm(jobs, desc=f"bench {suite.name}", unit="row", disable=not progress):
        row_key = (img, t, lv, m, suite.seed)
        if row_key in done:
            skipped += 1
            continue
        x = truth_of[img]
        key = f"{img}:{t}:{lv}"
        if last_input[0] != key:  # the methods of one input are consecutive rows: degrade it once
            last_input = (key, *_degrade(t, lv, x, key, suite, cache))
        _, task, y, params = last_input
        load_method(m, cache)  # outside the timing
        start = time.perf_counter()
        pred = run_method(m, t, task, y, params, tuple(x.shape[-2:]), suite.seed, key, cache)
        seconds = time.perf_counter() - start
        rel = files(img, t, lv, m)
        for name, image in (("truth", x), ("input", y)):  # once a run: a file there may be another setting's,
            if rel[name] not in written and rel[name] not in kept_files:  # but not one a kept row found intact
                _write_hashed(out, rel[name], image, file_sha)
                written.add(rel[name])
        _write_hashed(out, rel["output"], pred, file_sha)
        metrics = {n: f(pred, x) for n, f in fns.items()}
        higher = {n: METRICS[n] for n in fns}
        if "fidelity" in suite.metrics:
            metrics["fidelity"] = fidelity(pred, y, task, generator_for(suite.seed, key)) if fidelity else None
            higher["fidelity"] = METRICS["fidelity"]
            if metrics["fidelity"] is None and fidelity and not too_small_noted:
                notes.append(f"fidelity: null where the degraded images are under {MIN_SIZE['alex']} px "
                             f"(LPIPS AlexNet), e.g. {t} at {lv}")
                too_small_noted = True
        if detector is not None:
            rel["mask"] = rel["output"][:-4] + "_mask.png"
            metrics.update(_detection_metrics(detector, pred, y, key, out, rel, suite.metrics))
            higher.update({n: METRICS[n] for n in ("detected", "regions", "iou") if n in metrics})
        file_sha.pop(rel.get("mask"), None)  # written just now (hashed below)
        row = {"suite": suite.name, "image": img, "task": t, "level": lv, "method": m, "seed": suite.seed,
               "seconds": round(seconds, 4), "nfe": _network_calls(m, cache, t), "metrics": metrics,
               "higher_is_better": higher, "images": rel, "config": config[row_key],
               "sha256": {name: _cached_sha256(out / path, path, file_sha) for name, path in rel.items()}}
        with _results_lock(out), results.open("a") as log:  # opened a row at a time: another shard may rewrite it
            log.write(json_line(row) + "\n")
        ran += 1
    write_csv(out)
    if any(n in SET_METRICS for n in suite.metrics):
        notes += write_set_metrics(out, [n for n in suite.metrics if n in SET_METRICS], baseline=suite.baseline_sr,
                                   pfid=suite.pfid, seed=suite.seed, progress=progress,
                                   truth_masks=detector.masks if detector else None)
    elif (out / SET_METRICS_FILE).is_file():  # an earlier run's, of rows that may have changed since
        (out / SET_METRICS_FILE).unlink()
    return {"rows_run": ran, "rows_skipped": skipped, "notes": notes, "results": str(results)}


def _row_files(img: str, t: str, lv: str, m: str, seed: int, truth: str = "", inputs: str = "") -> dict:
    """The image files of a row, relative to the output folder. A method given by a path
    (``sr:runs/x/model.safetensors``) is named by its file name and a digest of the whole method,
    so that two paths never share a file (``a/b`` vs ``a_b``) and names stay short.

    ``truth`` (the ground-truth crop's digest) and ``inputs`` (one of what else makes the degraded
    input: the artifact generators) go into the names of the files that rows share, so that a run
    with another crop size, other photos or other generators never rewrites the truth or input of
    rows it keeps from an earlier run (e.g. of other methods). The output is one row's own."""
    if "/" in m or "\\" in m:
        kind, _, arg = m.partition(":")
        safe = f"{kind}_{Path(arg).name}-{hashlib.sha256(m.encode()).hexdigest()[:8]}"
    else:
        safe = m.replace(":", "_")
    stem = f"images/{img}_s{seed}"  # crops and degradations differ by seed: one file set each
    crop = stem + (f"_{truth[:8]}" if truth else "")  # and the shared files one per crop
    made = f"_{inputs[:8]}" if inputs else ""
    return {"truth": f"{crop}_truth.png", "input": f"{crop}_{t}_{lv}{made}_input.png",
            "output": f"{stem}_{t}_{lv}_{safe}.png"}  # one row's own (labelled masks are named like it)


def _file_digest(path: str | Path | None, digests: dict) -> str | None:
    """sha256 of a file and of its ``.json`` config beside it (once per run), ``None`` for no file."""
    if path is None or not Path(path).is_file():
        return None
    path = Path(path)
    if path not in digests:
        from ..weights import sha256_file

        config = path.with_suffix(".json")
        digests[path] = sha256_file(path) + (sha256_file(config) if config.is_file() else "")
    return digests[path]


def _generator_digests(suite: Suite, t: str, digests: dict) -> dict:
    """Digests of the artifact generators that make task ``t``'s inputs (none for other tasks), and
    the suite's ``[artifacts]`` options for ``t`` when it has any (rows made without keep their digest)."""
    if t not in ARTIFACT_TASKS:
        return {}
    from ..artifacts.synth import NEEDS

    options = suite.artifact_options(t)
    return {**{k: _file_digest(suite.generators.get(k), digests) for k in NEEDS.get(t, ())},
            **({"options": options} if options else {})}


def _row_config(suite: Suite, truth_digest: str, t: str, m: str, output_name: str, digests: dict,
                absent: tuple[str, ...] | list[str] = ()) -> str:
    """A digest of everything besides the row's key that its values depend on: the ground-truth crop
    (images, crop size, seed), the method's weights, the artifact generators, the per-image metrics
    and the detection settings (the MSE-SR, and the labelled mask of this output), and which metric
    weights were ``absent`` (a row scored without LPIPS runs again once its weights are added). A
    resume trusts a finished row only when it matches."""
    from ..weights import model_file

    kind, _, arg = m.partition(":")
    weights = None
    if method_kind(m) in _LEARNED:
        weights = _file_digest(Path(arg) if kind == "stylegan-inversion" else model_file(arg), digests)
        if method_kind(m).startswith("diffgar"):  # a latent model's autoencoder is another file
            from ..models.checkpoint import read_sidecar
            from ..restore.diffgar import autoencoder_file

            spec = read_sidecar(model_file(arg)).get("autoencoder")
            if spec:
                weights = f"{weights}+{_file_digest(autoencoder_file(model_file(arg), spec), digests)}"
    gens = _generator_digests(suite, t, digests)
    det = dict(suite.detection)
    if det:
        det["mse"] = _file_digest(model_file(det["mse"]), digests)
        det["masks"] = _file_digest(Path(det["masks"]) / output_name, digests) if "masks" in det else None
    record = {"truth": truth_digest, "method": m, "weights": weights, "generators": gens, "detection": det,
              "metrics": sorted(n for n in suite.metrics if n in METRICS), "absent": sorted(absent)}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def _generators(t: str, suite: Suite, cache: dict) -> dict:
    """The artifact generators of kind ``t``, loaded from the suite's files once per run into ``cache``."""
    if f"generators:{t}" not in cache:
        from ..artifacts import load_generators

        cache[f"generators:{t}"] = load_generators(t, suite.generators, flag="generators.")
    return cache[f"generators:{t}"]


def _check_sr_sizes(jobs: list[tuple[str, str, str, str]], suite: Suite, cache: dict) -> None:
    """Before any row runs: each ``sr:`` method's scale turns its tasks' inputs (a crop degraded
    once, on zeros; artifact kinds keep the crop's size) back into the crop's size."""
    from ..degrade import PIPELINES, get_task

    crop = (suite.crop, suite.crop)
    low: dict[tuple[str, str], tuple[int, int]] = {}  # each task's input size, found once
    for t, lv, m in dict.fromkeys((t, lv, m) for _, t, lv, m in jobs if method_kind(m) == "sr"):
        if (t, lv) not in low:
            task = None if t in ARTIFACT_TASKS else PIPELINES[t] if t in PIPELINES else get_task(t, lv)
            low[t, lv] = crop if task is None else tuple(
                task.degrade_with_params(torch.zeros(1, 3, *crop), generator_for(0, "size"))[0].shape[-2:])
        _check_sr_size(int(load_method(m, cache).scale), low[t, lv], crop, f"{m} on {t} {lv}")


def _degrade(t: str, lv: str, x: torch.Tensor, key: str, suite: Suite, cache: dict):
    """``(task, y, params)``: the ground truth ``x`` degraded by task or artifact kind ``t`` at level
    ``lv``, from ``generator_for(suite.seed, key)`` (``task`` is ``None`` for artifact kinds)."""
    from ..degrade import PIPELINES, get_task

    if t in ARTIFACT_TASKS:
        from ..artifacts import synthesize

        y, params = synthesize(t, _generators(t, suite, cache), x, ARTIFACT_LEVELS[lv], [generator_for(suite.seed, key)],
                               **suite.artifact_options(t))
        return None, y, params
    task = PIPELINES[t] if t in PIPELINES else get_task(t, lv)
    return (task, *task.degrade_with_params(x, generator_for(suite.seed, key)))


def _detection_metrics(detector: _Detector, pred: torch.Tensor, y: torch.Tensor, key: str, out: Path, rel: dict,
                       names: list[str]) -> dict:
    """Detect artifacts in ``pred``, write the mask to ``rel["mask"]``; the per-image detection metrics."""
    from ..io import write_image
    from ..metrics.detection import iou

    det = detector(pred, y, key)
    mask = det.mask[0, 0]
    write_image(out / rel["mask"], mask[None, None].float())
    values = {"detected": float(det.fraction()[0]), "regions": len(det.regions[0])}
    if "iou" in names:
        truth = detector.truth(Path(rel["output"]).name)
        values["iou"] = None if truth is None else iou(mask.cpu(), truth)
    return {n: v for n, v in values.items() if n in names}
