"""Set metrics of a benchmark run: one value per (task, level, method) group of rows, into
``OUT/set_metrics.json``: IS, FID and KID from the FID Inception, and DeSRA's pooled region
metrics (precision, recall, removal, addition)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..metrics.distribution import FeatureStats, fid_from_stats
from .methods import _read_mask
from .results import read_results
from .suite import _INCEPTION_METRICS, PFID_CROPS, SET_METRICS

SET_METRICS_FILE = "set_metrics.json"


def write_set_metrics(out_dir: Path, names: list[str], extractor=None, baseline: str | None = None,
                      truth_masks: Path | None = None, pfid: tuple[int, int] = (64, PFID_CROPS), seed: int = 0,
                      progress: bool = False) -> list[str]:
    """Set metrics of every (task, level, method) group into ``OUT/set_metrics.json``; return notes.

    IS of the group's outputs, FID and KID of its outputs against its ground-truth crops, and
    patch-FID (robust StyleGAN §6.1: FID of ``pfid = (size, count)`` random crops of each output
    against as many of each ground truth, positions drawn from ``seed``), all from the standard FID
    Inception (``inception-fid`` in the weight store). Without that weight every value
    is ``null`` and the note says so. With a handful of crops these are only indicative: FID needs
    thousands of images to be stable. DeSRA's region metrics pool the regions of the group's
    detection masks (``images.mask`` of each row): ``precision`` / ``recall`` against the labelled
    masks in ``truth_masks`` (rows without one are left out), ``removal`` / ``addition`` against the
    masks of the ``baseline`` method on the same images (for the other ``sr:`` methods only).
    A group keeps the values of the last run's file when nothing they depend on has changed (its
    rows' settings and image files, the baseline's rows, the labelled masks, the Inception weight;
    each group records a digest of them as ``inputs``), so a rerun with every row done computes
    nothing; a given ``extractor`` computes every group.

    Args:
        names: set metrics (``"is"``, ``"fid"``, ``"kid"``, KID over one subset of the whole group;
            ``"pfid"``;
            ``"precision"``, ``"recall"``, ``"removal"``, ``"addition"``).
        extractor: ``x -> (features, logits)``; default :class:`~genrestore.metrics.fid.InceptionFeatures`.
        baseline: the method whose detections removal / addition compare with.
        truth_masks: folder of labelled artifact masks named like the outputs.
        pfid, seed: patch-FID's crop side (px) and crops per image, and the seed of their positions.
        progress: a progress bar over the groups (on a terminal), as the rows have.
    """
    from .. import weights as ws
    from ..io import atomic_write_bytes, json_safe, read_image
    from tqdm import tqdm

    from ..metrics.distribution import inception_score, inception_score_splits, kid

    rows = read_results(out_dir)
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["level"], r["method"]), []).append(r)
    notes = []
    inception = [n for n in names if n in _INCEPTION_METRICS]
    weight = ws.find("inception-fid") if inception and extractor is None else None
    if inception and extractor is None and weight is None:
        notes.append(f"{', '.join(inception)}: absent (inception-fid not in the weight store)")
    # a value is reused from the last run when nothing it depends on has changed (a given extractor: never)
    previous = {} if extractor is not None else _previous_groups(out_dir / SET_METRICS_FILE, names)
    state = ("given extractor" if extractor is not None else "absent" if weight is None
             else f"{weight}:{weight.stat().st_size}:{weight.stat().st_mtime_ns}")
    if "pfid" in names:
        state = f"{state}; pfid {pfid[0]} px x {pfid[1]}, seed {seed}"
    truth_patches: dict[str, FeatureStats] = {}  # patch-FID statistics of a set of ground truths, by their digest
    scored = inception and (extractor is not None or weight is not None)
    no_is = "is: absent (the stored inception-fid has no 1008-logit layer)"
    from .report import rows_digest

    out, singles, pfid_singles = [], [], []
    for (task, level, method), grows in tqdm(groups.items(), desc="set metrics", unit="group", disable=not progress):
        compare = method.startswith("sr:") and method != baseline
        baseline_rows = groups.get((task, level, baseline), [])
        inputs = _group_inputs(grows, baseline_rows if compare else [], truth_masks, state if inception else None)
        compared = [n for n in ("fid", "kid") if n in names]  # outputs against their truths
        if scored and compared and len(grows) < 2:  # e.g. a shard's folder: no set to compare
            singles.append(f"{task} {level} {method}")
            compared = []
        patches = "pfid" in names and len(grows) * pfid[1] >= 2  # a Frechet distance needs 2 crops a set
        if scored and "pfid" in names and not patches:
            pfid_singles.append(f"{task} {level} {method}")
        old = previous.get((task, level, method))
        if old is not None and old.get("inputs") == inputs:
            if scored and "is" in names and old.get("is") is None and no_is not in notes:
                notes.append(no_is)
            out.append(old)
            continue
        entry: dict = {"task": task, "level": level, "method": method, "count": len(grows), "rows": rows_digest(grows),
                       "inputs": inputs}
        entry.update({n: None for n in names})
        entry.update(_region_set_metrics(out_dir, grows, baseline_rows, names, compare, truth_masks))
        if scored and extractor is None:
            from ..metrics.fid import InceptionFeatures

            extractor = InceptionFeatures()  # loaded once, for the first group not reused
        if scored:
            load = lambda rel: read_image(out_dir / rel, "rgb")  # noqa: E731
            whole = "is" in names or compared  # metrics of the whole outputs (pfid takes crops)
            f_out, logits = extractor(torch.cat([load(r["images"]["output"]) for r in grows])) if whole else (None, None)
            if "is" in names and logits is not None:
                entry["is"] = inception_score(logits, splits=inception_score_splits(logits.shape[0]))[0]
            elif "is" in names and no_is not in notes:
                notes.append(no_is)
            if compared:
                f_ref, _ = extractor(torch.cat([load(r["images"]["truth"]) for r in grows]))
            if "fid" in compared:
                a, b = FeatureStats(), FeatureStats()
                a.update(f_ref)
                b.update(f_out)
                entry["fid"] = fid_from_stats(a, b)
            if "kid" in compared:
                entry["kid"] = kid(f_ref, f_out, subsets=1, subset_size=len(grows))[0]
            if patches:
                entry["pfid"] = _patch_fid(extractor, grows, load, pfid, seed, truth_patches,
                                           f"pfid:{task}:{level}:{method}")
        out.append(entry)
    if singles:
        notes.append(f"fid, kid: null for groups of one crop ({'; '.join(singles)}): they compare sets of images")
    if pfid_singles:
        notes.append(f"pfid: null for groups of one crop at pfid_crops = 1 ({'; '.join(pfid_singles)}): "
                     "it compares sets of patches")
    record = {"metrics": names, "higher_is_better": {n: SET_METRICS[n] for n in names}, "notes": notes,
              "groups": out}
    text = json.dumps(json_safe(record), indent=1, allow_nan=False)
    atomic_write_bytes(out_dir / SET_METRICS_FILE, (text + "\n").encode())
    return notes


def _patch_fid(extractor, rows: list[dict], load, pfid: tuple[int, int], seed: int,
               truth_patches: dict[str, FeatureStats], key: str) -> float:
    """Patch-FID of one group: ``pfid[1]`` random ``pfid[0]`` px crops of each output (positions from
    ``seed`` and the group's ``key``) against as many of each ground truth (positions from ``seed``
    alone, so the truth statistics of a set of crops are computed once a run). Both sets are
    cropped in the order of their file names, not of the rows in ``results.jsonl`` (which shards
    and resumes interleave), so the same outputs always give the same value."""
    from .._random import generator_for
    from ..metrics.fid import random_crops

    def stats(files: list[str], generator) -> FeatureStats:
        out = FeatureStats()
        for rel in files:  # image by image: 1000 crops of 128 px are 200 MB
            out.update(extractor(random_crops(load(rel), pfid[0], pfid[1], generator))[0])
        return out

    truths = [r["images"]["truth"] for r in rows]
    digest = json.dumps(sorted(zip(truths, (r.get("sha256", {}).get("truth") for r in rows))))
    if digest not in truth_patches:
        truth_patches[digest] = stats(sorted(truths), generator_for(seed, "pfid:truth"))
    return fid_from_stats(truth_patches[digest], stats(sorted(r["images"]["output"] for r in rows),
                                                                generator_for(seed, key)))


def _group_inputs(rows: list[dict], baseline_rows: list[dict], truth_masks: Path | None, inception: str | None) -> str:
    """A digest of everything a group's set metrics depend on: each row's settings (its ``config``:
    weights, ground truth, labelled mask) and image files (sha256), those of the baseline rows that
    removal / addition compare with, the labelled masks of its outputs (each file's sha256) and the
    Inception weight file."""
    import hashlib

    def of(group: list[dict]) -> list[str]:
        return sorted(json.dumps([r.get("config"), r.get("sha256")], sort_keys=True) for r in group)

    labels = None
    if truth_masks is not None:  # the labelled mask of each output (a label changed in place counts too)
        from ..weights import sha256_file

        files = [Path(truth_masks) / Path(r["images"]["output"]).name for r in rows]
        labels = [str(truth_masks), sorted(f"{f.name}:{sha256_file(f) if f.is_file() else None}" for f in files)]
    record = [of(rows), of(baseline_rows), labels, inception]
    return hashlib.sha256(json.dumps(record).encode()).hexdigest()[:16]


def _previous_groups(path: Path, names: list[str]) -> dict[tuple[str, str, str], dict]:
    """The groups of the last run's ``set_metrics.json`` by ``(task, level, method)``, when it holds
    the same metrics (else, or when it cannot be read, none)."""
    try:
        data = json.loads(path.read_text())
        if data.get("metrics") != names:
            return {}
        return {(g["task"], g["level"], g["method"]): g for g in data["groups"] if "inputs" in g}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _region_set_metrics(out_dir: Path, rows: list[dict], baseline_rows: list[dict], names: list[str],
                        compare: bool, truth_masks: Path | None) -> dict:
    """Pooled DeSRA region metrics of one group (see :func:`write_set_metrics`); ``None`` where undefined.
    ``compare``: the group is an ``sr:`` method other than the baseline (removal / addition apply)."""
    from ..metrics.detection import ChangeCounts, DetectionCounts, change_counts, region_counts

    wanted = [n for n in ("precision", "recall", "removal", "addition") if n in names]
    if not wanted or any("mask" not in r["images"] for r in rows):
        return {}
    out: dict = {}
    if {"precision", "recall"} & set(wanted) and truth_masks is not None:
        counts, labelled = DetectionCounts(), 0
        for r in rows:
            truth = truth_masks / Path(r["images"]["output"]).name
            if truth.is_file():
                counts = counts + region_counts(_read_mask(out_dir / r["images"]["mask"]), _read_mask(truth))
                labelled += 1
        if labelled:
            out.update(precision=None if counts.detected == 0 else counts.precision,
                       recall=None if counts.truth == 0 else counts.recall)
    if {"removal", "addition"} & set(wanted) and compare:
        old_of = {r["image"]: r for r in baseline_rows if "mask" in r["images"]}
        changes = ChangeCounts()
        for r in rows:
            if r["image"] in old_of:
                changes = changes + change_counts(_read_mask(out_dir / old_of[r["image"]]["images"]["mask"]),
                                                  _read_mask(out_dir / r["images"]["mask"]))
        if changes.old:
            out.update(removal=changes.removal_rate, addition=changes.addition_rate)
    return {n: v for n, v in out.items() if n in wanted}
