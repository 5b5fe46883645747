"""Set metrics of a benchmark run: one value per (task, level, method) group of rows, into
``OUT/set_metrics.json``: IS, FID and KID from the FID Inception, and DeSRA's pooled region
metrics (precision, recall, removal, addition)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .methods import _read_mask
from .results import read_results
from .suite import _INCEPTION_METRICS, SET_METRICS

SET_METRICS_FILE = "set_metrics.json"


def write_set_metrics(out_dir: Path, names: list[str], extractor=None, baseline: str | None = None,
                      truth_masks: Path | None = None) -> list[str]:
    """Set metrics of every (task, level, method) group into ``OUT/set_metrics.json``; return notes.

    IS of the group's outputs, FID and KID of its outputs against its ground-truth crops, all from the
    standard FID Inception (``inception-fid`` in the weight store). Without that weight every value
    is ``null`` and the note says so. With a handful of crops these are only indicative: FID needs
    thousands of images to be stable. DeSRA's region metrics pool the regions of the group's
    detection masks (``images.mask`` of each row): ``precision`` / ``recall`` against the labelled
    masks in ``truth_masks`` (rows without one are left out), ``removal`` / ``addition`` against the
    masks of the ``baseline`` method on the same images (for the other ``sr:`` methods only).

    Args:
        names: set metrics (``"is"``, ``"fid"``, ``"kid"``, KID over one subset of the whole group;
            ``"precision"``, ``"recall"``, ``"removal"``, ``"addition"``).
        extractor: ``x -> (features, logits)``; default :class:`~genrestore.metrics.fid.InceptionFeatures`.
        baseline: the method whose detections removal / addition compare with.
        truth_masks: folder of labelled artifact masks named like the outputs.
    """
    from .. import weights as ws
    from ..io import atomic_write_bytes, json_safe, read_image
    from ..metrics.distribution import FeatureStats, fid_from_stats, inception_score, inception_score_splits, kid

    rows = read_results(out_dir)
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["level"], r["method"]), []).append(r)
    notes = []
    inception = [n for n in names if n in _INCEPTION_METRICS]
    if inception and extractor is None and ws.find("inception-fid") is None:
        notes.append(f"{', '.join(inception)}: absent (inception-fid not in the weight store)")
    elif inception and extractor is None:
        from ..metrics.fid import InceptionFeatures

        extractor = InceptionFeatures()
    from .report import rows_digest

    out, singles = [], []
    for (task, level, method), grows in groups.items():
        entry: dict = {"task": task, "level": level, "method": method, "count": len(grows), "rows": rows_digest(grows)}
        entry.update({n: None for n in names})
        entry.update(_region_set_metrics(out_dir, grows, groups.get((task, level, baseline), []), names,
                                         method.startswith("sr:") and method != baseline, truth_masks))
        if extractor is not None and inception:
            load = lambda rel: read_image(out_dir / rel, "rgb")  # noqa: E731
            f_out, logits = extractor(torch.cat([load(r["images"]["output"]) for r in grows]))
            no_is = "is: absent (the stored inception-fid has no 1008-logit layer)"
            if "is" in names and logits is not None:
                entry["is"] = inception_score(logits, splits=inception_score_splits(logits.shape[0]))[0]
            elif "is" in names and no_is not in notes:
                notes.append(no_is)
            compared = [n for n in ("fid", "kid") if n in names]  # outputs against their truths
            if compared and len(grows) < 2:  # e.g. a shard's folder: no set to compare
                singles.append(f"{task} {level} {method}")
                compared = []
            if compared:
                f_ref, _ = extractor(torch.cat([load(r["images"]["truth"]) for r in grows]))
            if "fid" in compared:
                a, b = FeatureStats(), FeatureStats()
                a.update(f_ref)
                b.update(f_out)
                entry["fid"] = fid_from_stats(a, b)
            if "kid" in compared:
                entry["kid"] = kid(f_ref, f_out, subsets=1, subset_size=len(grows))[0]
        out.append(entry)
    if singles:
        notes.append(f"fid, kid: null for groups of one crop ({'; '.join(singles)}): they compare sets of images")
    record = {"metrics": names, "higher_is_better": {n: SET_METRICS[n] for n in names}, "notes": notes,
              "groups": out}
    text = json.dumps(json_safe(record), indent=1, allow_nan=False)
    atomic_write_bytes(out_dir / SET_METRICS_FILE, (text + "\n").encode())
    return notes


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
