"""DiffGAR's Table 1 (seed 000) from a run of the ``diffgar`` bench suite.

Runs (or resumes) the suite and prints the paper's layout: one row per metric and method, one
column per artifact kind and ALL, plus seconds per image. ALL is the paper's (§5.1): each image
is restored from one artifact kind drawn at random (here ``generator_for(seed,
"diffgar-all:IMAGE")``, the same kind for every method) and that mixed set is scored, so its FID
is of one set (with the standard Inception in the store), not the mean of the kinds' FIDs. MSE is the mean over images of
``10^(-PSNR/10)`` (each row's MSE on [0, 1] images), times 1e3; the paper prints it unscaled, and
its values are about 4x the [0, 1] MSE its PSNRs imply (10 log10(4 / MSE) is 0.1-0.7 dB under the
PSNR in 22 of its 24 cells, as for MSE on [-1, 1] images), so compare PSNR, not MSE, with the paper.

    python benchmarks/diffgar.py -o runs/bench-diffgar --suite genrestore/bench/suites/diffgar.toml \
        --methods degraded,idm:runs/idm/model.safetensors,diffgar-blind:runs/dg/model.safetensors,\
diffgar-nonblind:runs/dg/model.safetensors,diffgar:runs/dg/model.safetensors

The ablations of Fig. 4 are methods too: ``diffgar-sS`` (guidance scale S, 30 steps) and
``diffgar-stepsN`` (s = 3, N DDIM steps), e.g. ``--methods diffgar-s1:M,diffgar-s2:M,diffgar-s5:M,\
diffgar-steps10:M,diffgar-steps20:M,diffgar-steps50:M``.

The artifact generators and the restorers are trained with `genrestore train vq|transformer|ddpm`,
`genrestore artifacts` and `genrestore train diffgar --pairs` (see the README).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from genrestore._checks import InputError
from genrestore.bench.harness import run_suite
from genrestore.bench.suite import load_suite
from genrestore.bench.report import _mean, summarize


def table(run_dir: Path, level: str = "M") -> str:
    """The Table 1 layout of the run's rows at ``level`` (the paper's: one level, M)."""
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["level"] == level]
    set_file = run_dir / "set_metrics.json"
    summary = summarize(rows, json.loads(set_file.read_text()) if set_file.is_file() else None)
    kinds = [t for t, _ in summary["tables"]]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    metrics = [m for m in ("fid", "psnr", "ssim", "lpips", "identity") if m in summary["metrics"]]
    lines = ["| metric | method | " + " | ".join(kinds) + " | ALL |", "|---|---|" + "---:|" * (len(kinds) + 1)]

    def cell(kind, method, metric):
        if metric == "mse":
            mses = [10 ** (-r["metrics"]["psnr"] / 10) for r in rows if r["task"] == kind and r["method"] == method
                    and r["metrics"].get("psnr") is not None]
            return 1e3 * sum(mses) / len(mses) if mses else None
        return summary["tables"][(kind, level)].get(method, {}).get(metric)

    mixed = paper_all(run_dir, rows, kinds, methods, "fid" in metrics)
    for metric in [*metrics[:1], "mse", *metrics[1:], "seconds"] if "psnr" in metrics else [*metrics, "seconds"]:
        for method in methods:
            vals = [cell(k, method, metric) for k in kinds]
            allv = mixed.get((metric, method))
            fmt = (lambda v: "absent" if v is None else f"{v:.4f}")
            lines.append(f"| {metric} | {method} | " + " | ".join(fmt(v) for v in vals) + f" | {fmt(allv)} |")
    return "\n".join(lines)


def paper_all(run_dir: Path, rows: list[dict], kinds: list[str], methods: list[str], fid: bool) -> dict:
    """DiffGAR's ALL column, ``{(metric, method): value}``: every image's rows of one kind drawn from
    ``generator_for(seed, "diffgar-all:IMAGE")``; per-image metrics, MSE (x1e3) and seconds are
    means over that mixed set, FID is the FID of the set's outputs against their ground truths
    (``None`` without the standard Inception or with fewer than 2 images)."""
    import torch

    from genrestore import weights as ws
    from genrestore._random import generator_for
    from genrestore.metrics import fid as fid_module
    from genrestore.metrics.distribution import fid_from_stats

    if not rows or not kinds:
        return {}
    seed = rows[0]["seed"]
    choice = {img: kinds[int(torch.randint(len(kinds), (1,), generator=generator_for(seed, f"diffgar-all:{img}")))]
              for img in sorted({r["image"] for r in rows})}
    # one Inception for every method; the truths are the same files for every method's mixed set
    extractor = fid_module.InceptionFeatures() if fid and len(choice) >= 2 and ws.find("inception-fid") else None
    truth_stats = None
    out: dict = {}
    for method in methods:
        chosen = [r for r in rows if r["method"] == method and r["task"] == choice[r["image"]]]
        if len(chosen) != len(choice):  # a kind's row of some image is missing
            continue
        for metric in {m for r in chosen for m in r["metrics"]}:  # nulls left out, as in the per-kind cells
            out[(metric, method)] = _mean([r["metrics"].get(metric) for r in chosen])
        mses = [10 ** (-r["metrics"]["psnr"] / 10) for r in chosen if r["metrics"].get("psnr") is not None]
        if mses:
            out[("mse", method)] = 1e3 * sum(mses) / len(mses)
        out[("seconds", method)] = sum(r["seconds"] for r in chosen) / len(chosen)
        out[("fid", method)] = None
        if extractor is not None:
            truth_stats = truth_stats or _stats(extractor, run_dir, chosen, "truth")
            out[("fid", method)] = fid_from_stats(truth_stats, _stats(extractor, run_dir, chosen, "output"))
    return out


def _stats(extractor, run_dir: Path, rows: list[dict], name: str):
    """Inception feature statistics of the rows' ``name`` images (``"truth"`` or ``"output"``)."""
    import torch

    from genrestore.io import read_image
    from genrestore.metrics.distribution import FeatureStats

    stats = FeatureStats()
    stats.update(extractor(torch.cat([read_image(run_dir / r["images"][name], "rgb") for r in rows]))[0])
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", required=True, help="run folder")
    ap.add_argument("--suite", default="diffgar")
    ap.add_argument("--methods", help="comma-separated, as `genrestore bench --methods`")
    ap.add_argument("--images")
    ap.add_argument("--tasks", help="comma-separated artifact kinds replacing the suite's (e.g. vq-replace,ar-resample)")
    ap.add_argument("--count", type=int, help="crops replacing the suite's count (FID pools every row of a run "
                    "folder: use one count per folder)")
    args = ap.parse_args()
    try:
        methods = [m for m in args.methods.split(",") if m] if args.methods else None
        tasks = [t for t in args.tasks.split(",") if t] if args.tasks else None
        suite = load_suite(args.suite, methods, args.images, tasks)
        if args.count is not None:
            if args.count < 1:
                raise InputError(f"--count must be at least 1, got {args.count}")
            suite = dataclasses.replace(suite, count=args.count)
        if len(suite.levels) != 1:  # Table 1 has one column per artifact kind, at one level
            raise InputError(f"{args.suite}: Table 1 is at one level; the suite has levels {suite.levels}")
        summary = run_suite(suite, args.output)
    except InputError as e:
        raise SystemExit(f"diffgar benchmark: error: {e}") from None
    for note in summary["notes"]:
        print("note:", note)
    print(table(Path(args.output), suite.levels[0]))


if __name__ == "__main__":
    main()
