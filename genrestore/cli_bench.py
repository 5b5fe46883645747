"""CLI verbs ``bench`` (run a suite) and ``report`` (HTML + Markdown of a run)."""

from __future__ import annotations

import argparse
import sys

from ._checks import InputError


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench.harness import run_suite
    from .bench.suite import load_suite
    from .cli import _parse_shard
    from .io import json_line

    methods = [m for m in args.methods.split(",") if m] if args.methods else None
    tasks = [t for t in args.tasks.split(",") if t] if args.tasks else None
    for option, given, items in (("--methods", args.methods, methods), ("--tasks", args.tasks, tasks)):
        if given is not None and not items:  # e.g. --methods , (not the suite's list, silently)
            raise InputError(f"{option}: no names given ({given!r}); give a comma-separated list or leave it out")
    suite = load_suite(args.suite, methods, args.images, tasks)
    summary = run_suite(suite, args.output, _parse_shard(args.shard), progress=not args.quiet)
    for note in summary["notes"]:
        print(f"genrestore: note: {note}", file=sys.stderr)
    if args.json:
        print(json_line(summary))
    else:
        from .cli import counted

        print(f"suite {suite.name}: {counted(summary['rows_run'], 'row')} run, {summary['rows_skipped']} already done "
              f"-> {summary['results']}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .bench.report import write_report

    run = Path(args.run)
    if run.is_file():  # e.g. the run's results.jsonl or report.html itself
        hint = f"; give its folder: `genrestore report {run.parent}`" if (run.parent / "results.jsonl").is_file() else ""
        raise InputError(f"{run}: is a file; report takes a bench run's folder (the -o of `genrestore bench`){hint}")
    if not (run / "results.jsonl").is_file():
        raise InputError(f"{run}: no results.jsonl (run `genrestore bench SUITE -o {run}` first)")
    notes: list[str] = []
    html, md = write_report(args.run, notes=notes)
    for note in notes:
        print(f"genrestore: note: {note}", file=sys.stderr)
    print(f"report -> {html}, {md}")
    return 0


def _builtin_suites() -> str:
    from pathlib import Path

    return ", ".join(sorted(p.stem for p in (Path(__file__).parent / "bench" / "suites").glob("*.toml")))


def add_parsers(sub) -> None:
    b = sub.add_parser("bench", help="run a benchmark suite (tasks x levels x methods x metrics)",
                       description=f"Suites are TOML files (built-in: {_builtin_suites()}). Rows go to "
                                   "OUT/results.jsonl and results.csv; reruns resume. Example: genrestore bench "
                                   "inpainting -o runs/bench-inpaint --methods degraded,telea")
    b.add_argument("suite", help="a suite file or a built-in suite name")
    b.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder (results.jsonl, results.csv and the rows' "
                   "outputs)")
    b.add_argument("--methods", help="comma-separated methods replacing the suite's (e.g. degraded,idm:MODEL)")
    b.add_argument("--tasks", help="comma-separated tasks replacing the suite's (e.g. vq-replace,ar-resample)")
    b.add_argument("--images", metavar="DIR", help="ground-truth image folder replacing the suite's (relative to "
                   "the working folder; the suite's own 'images' is relative to the suite file)")
    b.add_argument("--shard", metavar="i/n", help="run every n-th row, starting at i")
    b.add_argument("--resume", action="store_true", help="(always on) finished rows are skipped")
    b.add_argument("--json", action="store_true", help="print the run's summary as one JSON object")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=cmd_bench)

    r = sub.add_parser("report", help="write report.html and report.md of a bench run",
                       description="Example: genrestore report runs/bench-inpaint")
    r.add_argument("run", metavar="DIR")
    r.set_defaults(func=cmd_report)
