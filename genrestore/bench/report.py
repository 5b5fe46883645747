"""Benchmark report: ``results.jsonl`` -> a self-contained ``report.html`` and ``report.md``.

The harness writes one JSON object per line to ``run_dir/results.jsonl``::

    {"suite": str, "image": str, "task": str, "level": str, "method": str, "seed": int,
     "seconds": float, "metrics": {name: float | null}, "higher_is_better": {name: bool},
     "images": {"input": relpath | null, "output": relpath | null, "truth": relpath | null}}

with image paths relative to ``run_dir``. The HTML page has inline CSS, images as base64 PNG
data URIs and plots as inline SVG built here, so it opens offline and can be mailed as one file.

Usage::

    python -m genrestore.bench.report RUN_DIR
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import html
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .._checks import InputError
from ..io import atomic_write_bytes

LEVEL_ORDER = ("XS", "S", "M", "L", "XL")
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")
_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{margin-bottom:.2em} .meta{color:#555;margin-bottom:1.5em}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}
td.best{font-weight:bold;background:#d9f2d9}
td.absent{color:#999;font-style:italic}
.grid td{text-align:center;vertical-align:top}
.grid img{display:block;margin:2px auto;min-width:96px;max-width:256px;image-rendering:pixelated}
.plots svg{margin:0 1em 1em 0;border:1px solid #eee}
"""


def load_rows(run_dir: str | os.PathLike, notes: list[str] | None = None) -> list[dict]:
    """Read ``run_dir/results.jsonl`` (blank lines skipped). A last line without its newline that
    is not JSON, the row an interrupted bench was appending, is left out (the bench's next run
    runs that row again), with a note appended to ``notes``.

    Raises:
        InputError: the file is missing, a line is not JSON, or a row lacks a required key.
    """
    path = Path(run_dir) / "results.jsonl"
    if not path.is_file():
        raise InputError(f"{path}: no such file (expected the harness's results.jsonl)")
    from .results import _results_lock

    with _results_lock(path.parent, create=False):  # a bench shard may be appending a row
        text = path.read_text(encoding="utf-8")
    rows = []
    lines = text.splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if n == len(lines) and not text.endswith("\n"):  # cut by an interruption, as the bench reads it
                if notes is not None:
                    notes.append(f"{path}:{n}: left out a row cut short by an interrupted bench (no newline, not "
                                 f"JSON); `genrestore bench SUITE -o {path.parent}` runs it again")
                continue
            raise InputError(f"{path}:{n}: not JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}:{n}: expected an object with task, level, method, image; "
                             f"got a {type(row).__name__}")
        missing = [k for k in ("task", "level", "method", "image") if k not in row]
        if missing:
            raise InputError(f"{path}:{n}: expected an object with task, level, method, image; "
                             f"missing {missing}")
        bad = _malformed(row)
        if bad:
            raise InputError(f"{path}:{n}: not a harness row: {bad}")
        rows.append(row)
    return rows


def _is_number(v) -> bool:
    """A JSON number, or the strict-JSON spelling of a non-finite one (``"inf"``, ``"-inf"``, ``"nan"``)."""
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) or v in ("inf", "-inf", "nan")


_ROW_OBJECTS = {"metrics": ("numbers or null", lambda v: v is None or _is_number(v)),
                "higher_is_better": ("booleans", lambda v: isinstance(v, bool)),
                "images": ("paths or null", lambda v: v is None or isinstance(v, str))}


def _malformed(row: dict) -> str | None:
    """What in ``row`` has not the harness's shape (see the module docstring), or ``None``."""
    for k in ("task", "level", "method", "image"):
        if not isinstance(row[k], str):
            return f"{k} should be a string, got {json.dumps(row[k])}"
    for k, (what, is_value) in _ROW_OBJECTS.items():
        d = row.get(k)
        if d is not None and not (isinstance(d, dict) and all(is_value(v) for v in d.values())):
            return f"{k} should be an object of {what}, got {json.dumps(d)}"
    if row.get("seconds") is not None and not _is_number(row["seconds"]):
        return f"seconds should be a number or null, got {json.dumps(row['seconds'])}"
    if "seed" in row and not (isinstance(row["seed"], int) and not isinstance(row["seed"], bool)):
        return f"seed should be an integer, got {json.dumps(row['seed'])}"
    return None


def _malformed_set_metrics(data) -> str | None:
    """What in a ``set_metrics.json`` has not the harness's shape, or ``None``."""
    if not isinstance(data, dict):
        return f"expected an object, got a {type(data).__name__}"
    for k, kind in (("metrics", list), ("notes", list), ("groups", list), ("higher_is_better", dict)):
        if k in data and not isinstance(data[k], kind):
            return f"{k} should be a{'n object' if kind is dict else ' list'}, got {json.dumps(data[k])}"
    names = data.get("metrics", [])
    if not all(isinstance(n, str) for n in names):
        return f"metrics should be names, got {json.dumps(names)}"
    for g in data.get("groups", []):
        if not isinstance(g, dict) or not all(g.get(n) is None or _is_number(g[n]) for n in names):
            return f"a group should be an object with numbers or null for {', '.join(names)}, got {json.dumps(g)}"
    return None


def _level_key(level: str) -> tuple[int, str]:
    return (LEVEL_ORDER.index(level), "") if level in LEVEL_ORDER else (len(LEVEL_ORDER), level)


def _unique(values) -> list:
    return list(dict.fromkeys(values))


def _mean(values: list) -> float | None:
    """Mean of the values that are not null or NaN; an infinite value (PSNR of an exact output)
    makes the mean infinite, as in BasicSR's averages, rather than being left out."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    mean = sum(vals) / len(vals) if vals else None
    return None if mean is None or math.isnan(mean) else mean  # inf - inf: no mean


def _finite(v) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else v


def rows_digest(rows: list[dict]) -> str:
    """A digest of which images a group of rows holds (each row's output and ground-truth sha256),
    whatever their order: set metrics record it, so that values computed on other rows are not shown."""
    import hashlib

    pairs = sorted(json.dumps([(r.get("sha256") or {}).get(k) for k in ("output", "truth")]) for r in rows)
    return hashlib.sha256("\n".join(pairs).encode()).hexdigest()[:16]


_WHY_NULL = {"fidelity": "the degraded images are under LPIPS AlexNet's 31 px, e.g. upsample L and XL of 256 px "
                         "crops, or alexnet-torchvision is not in the weight store",
             "lpips": "alexnet-torchvision is not in the weight store"}


def summarize(rows: list[dict], set_metrics: dict | None = None) -> dict:
    """Mean of each metric (and of seconds) per (task, level) and method, and the set metrics.

    Null metric values are left out of the mean; a metric with no value at all is ``None``.
    ``set_metrics`` is the harness's ``set_metrics.json`` (IS, FID per group), added as columns; a
    group whose recorded rows are not the rows there now (an earlier or interrupted run) is left
    out, with a note. A note also says when the methods of one table were scored on different
    ground-truth crops (rows kept from a run with other settings).

    Returns:
        ``{"metrics": [names], "higher": {name: bool}, "tables": {(task, level): {method:
        {name: mean or None, "seconds": mean or None}}}}``, tasks in file order, levels in
        XS..XL order, methods in file order.
    """
    metrics = _unique(m for r in rows for m in (r.get("metrics") or {}))
    higher: dict[str, bool] = {}
    for r in rows:
        higher.update({k: bool(v) for k, v in (r.get("higher_is_better") or {}).items()})
    tasks = _unique(r["task"] for r in rows)
    tables: dict[tuple[str, str], dict[str, dict]] = {}
    mixed: list[str] = []
    empty: dict[str, list[str]] = {}  # per-image metrics null in every row of a table (a column other tables have)
    for task in tasks:
        trows = [r for r in rows if r["task"] == task]
        for level in sorted(_unique(r["level"] for r in trows), key=_level_key):
            lrows = [r for r in trows if r["level"] == level]
            table = {}
            truths: dict[str, frozenset] = {}
            for method in _unique(r["method"] for r in lrows):
                mrows = [r for r in lrows if r["method"] == method]
                truths[method] = frozenset((r.get("sha256") or {}).get("truth") for r in mrows)
                cell = {m: _mean([(r.get("metrics") or {}).get(m) for r in mrows]) for m in metrics}
                cell["seconds"] = _mean([r.get("seconds") for r in mrows])
                table[method] = cell
            tables[(task, level)] = table
            for m in metrics:  # e.g. fidelity under LPIPS's 31 px, identity without a face: say why a column is missing
                if all(c[m] is None for c in table.values()):
                    empty.setdefault(m, []).append(f"{task} {level}")
            crop_sets = _unique(truths.values())
            if len(crop_sets) > 1:
                by_set = [[m for m, t in truths.items() if t == c] for c in crop_sets]
                mixed.append(f"{task} {level}: the methods were scored on different ground-truth crops ("
                             + "; ".join(f"{', '.join(ms)}: {len(c)}" for ms, c in zip(by_set, crop_sets))
                             + " crops): rows of a run with other settings are in the folder; run them again")
    notes = list((set_metrics or {}).get("notes", [])) + mixed + [
        f"{m}: null in every row of {', '.join(where)}, so {'that table has' if len(where) == 1 else 'those tables have'} "
        f"no {m} column ({_WHY_NULL.get(m, 'the bench run printed why')})" for m, where in empty.items()
        if len(where) < len(tables)]  # null in every table: the bench run noted it absent, no column anywhere
    if set_metrics:
        names = list(set_metrics.get("metrics", []))
        metrics += [n for n in names if n not in metrics]
        higher.update({k: bool(v) for k, v in set_metrics.get("higher_is_better", {}).items()})
        for cell in (c for t in tables.values() for c in t.values()):
            cell.update({n: None for n in names})
        stale = []
        by_key: dict[tuple, list[dict]] = {}  # the rows of each (task, level, method), grouped once
        for r in rows:
            by_key.setdefault((r["task"], r["level"], r["method"]), []).append(r)
        for g in set_metrics.get("groups", []):
            key = (g.get("task"), g.get("level"), g.get("method"))
            cell = tables.get(key[:2], {}).get(key[2])
            if cell is not None and "rows" in g and g["rows"] != rows_digest(  # files written before: no "rows"
                    by_key.get(key, [])):
                stale.append(" ".join(map(str, key)))  # computed on other rows than those there now
            elif cell is not None:  # NaN or inf: absent, like a null (NaN would also break the best mark)
                cell.update({n: _finite(g.get(n)) for n in names})
        if stale:
            notes.append(f"{', '.join(names)}: left out for {'; '.join(stale)} (set_metrics.json was computed on "
                         "other rows; run bench again to update it)")
    return {"metrics": metrics, "higher": higher, "tables": tables, "notes": notes}


def _columns(table: dict[str, dict], metrics: list[str]) -> list[str]:
    """Metrics that have a value for at least one method in this table, then seconds."""
    return [m for m in metrics if any(c[m] is not None for c in table.values())] + ["seconds"]


def _best(table: dict[str, dict], column: str, higher: dict[str, bool]) -> set[str]:
    vals = {meth: c[column] for meth, c in table.items() if c[column] is not None}
    if not vals:
        return set()
    pick = max if (column != "seconds" and higher.get(column, True)) else min
    target = _fmt(pick(vals.values()))
    return {meth for meth, v in vals.items() if _fmt(v) == target}  # ties as printed (4 decimals)


def _fmt(v: float | None) -> str:
    return "absent" if v is None else f"{v:.4f}"


def _header_label(column: str, higher: dict[str, bool]) -> str:
    if column == "seconds":
        return "s/image ↓"
    return f"{column} {'↑' if higher.get(column, True) else '↓'}"


def _md_escape(text: str) -> str:
    for ch in "\\|*_`<>[]":
        text = text.replace(ch, "\\" + ch)
    return text


# ----------------------------------------------------------------------------- markdown


def render_markdown(rows: list[dict], summary: dict, date: str) -> str:
    """The header and one table per (task, level) as Markdown; best values in bold."""
    suites = ", ".join(_unique(str(r.get("suite", "")) for r in rows)) or "unnamed"
    out = [f"# Benchmark report: {_md_escape(suites)}", "",
           f"Date: {date}  ", f"Rows: {len(rows)}", "",
           *(f"Note: {_md_escape(n)}  " for n in summary.get("notes", [])), *([""] if summary.get("notes") else [])]
    for (task, level), table in summary["tables"].items():
        cols = _columns(table, summary["metrics"])
        best = {c: _best(table, c, summary["higher"]) for c in cols}
        out += [f"## {_md_escape(task)} / {_md_escape(level)}", "",
                "| method | " + " | ".join(_md_escape(_header_label(c, summary["higher"])) for c in cols) + " |",
                "|---|" + "---:|" * len(cols)]
        for method, cell in table.items():
            vals = [f"**{_fmt(cell[c])}**" if method in best[c] else _fmt(cell[c]) for c in cols]
            out.append(f"| {_md_escape(method)} | " + " | ".join(vals) + " |")
        out.append("")
    return "\n".join(out)


# ----------------------------------------------------------------------------- images


def _png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _image_cell(run_dir: Path, rel: str | None, zoom: int) -> str:
    """An HTML table cell with the image and its centre-quarter crop enlarged ``zoom`` x (nearest)."""
    from ..io import encode_image, read_image

    if not rel:
        return '<td class="absent">absent</td>'
    path = run_dir / rel
    try:
        x = read_image(path)
    except InputError:
        return f'<td class="absent">missing: {html.escape(str(rel))}</td>'
    h, w = x.shape[-2:]
    crop = x[..., h // 4: h // 4 + max(1, h // 2), w // 4: w // 4 + max(1, w // 2)]
    crop = crop.repeat_interleave(zoom, dim=-2).repeat_interleave(zoom, dim=-1)
    full_uri, crop_uri = _png_data_uri(encode_image(x)), _png_data_uri(encode_image(crop))
    title = html.escape(str(rel), quote=True)
    return (f'<td><img src="{full_uri}" alt="{title}" title="{title}">'
            f'<img src="{crop_uri}" alt="centre crop x{zoom}" title="centre crop x{zoom}"></td>')


def one_crop(rows: list[dict]) -> list[dict]:
    """The rows of one image (one task and level) that share one crop, to be shown side by side:
    the lowest seed's, and of its ground truths (rows kept from a run with another crop size) the
    one most rows share, so that every output sits beside its own input and truth."""
    crops: dict[tuple, list[dict]] = {}
    for r in rows:
        crops.setdefault((r.get("seed", 0), (r.get("sha256") or {}).get("truth")), []).append(r)
    return crops[min(crops, key=lambda k: (k[0], -len(crops[k])))] if crops else []


def _render_grid(run_dir: Path, rows: list[dict], task: str, level: str, methods: list[str],
                 max_images: int, zoom: int) -> str:
    lrows = [r for r in rows if r["task"] == task and r["level"] == level]
    images = sorted(_unique(r["image"] for r in lrows))[:max_images]
    if not images:
        return ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["image", "input", *methods, "truth"])
    body = []
    for image in images:
        irows = one_crop([r for r in lrows if r["image"] == image])
        by_method = {}
        for r in irows:
            by_method.setdefault(r["method"], r)
        first = irows[0].get("images") or {}
        cells = [f"<td>{html.escape(str(image))}</td>", _image_cell(run_dir, first.get("input"), zoom)]
        for m in methods:
            r = by_method.get(m)
            cells.append(_image_cell(run_dir, (r.get("images") or {}).get("output"), zoom) if r
                         else '<td class="absent">absent</td>')
        cells.append(_image_cell(run_dir, first.get("truth"), zoom))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table class="grid"><tr>{head}</tr>' + "".join(body) + "</table>"
            f"<p>Under each image: the centre quarter, enlarged {zoom}x (nearest).</p>")


# ----------------------------------------------------------------------------- SVG plots


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


def _range(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi == lo:
        pad = abs(lo) * 0.05 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.05
    return lo - pad, hi + pad


_LEGEND_CHARS = 28  # longest legend label; the full name is the label's tooltip


def _legend_labels(names: list[str], limit: int = _LEGEND_CHARS) -> list[str]:
    """Short, distinct legend labels: a method's file path shortened to its stem
    (``sr:runs/a/model-ft.safetensors`` -> ``sr:model-ft``), long labels cut in the middle with an
    ellipsis, and a ``#k`` suffix where two names still give one label."""
    labels = []
    for name in names:
        kind, sep, rest = name.partition(":")
        if not sep:
            kind, rest = "", name
        if "/" in rest or "\\" in rest or rest.endswith(".safetensors"):
            rest = Path(rest.replace("\\", "/")).stem
        label = f"{kind}{sep}{rest}"
        if len(label) > limit:
            head = (limit - 1) // 2
            label = label[:head] + "\u2026" + label[len(label) - (limit - 1 - head):]
        labels.append(label)
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        if labels.count(label) > 1:
            seen[label] = seen.get(label, 0) + 1
            label = f"{label} #{seen[label]}"
        out.append(label)
    return out


def _svg_chart(title: str, x_label: str, y_label: str, series: dict[str, list[tuple[float, float]]],
               x_names: list[str] | None = None, lines: bool = True) -> str:
    """An SVG chart: ``series`` maps a name to (x, y) points; ``x_names`` labels integer x."""
    labels = _legend_labels(list(series))
    L, T, B, H = 60, 30, 45, 300
    R = max(120, 30 + 7 * max(map(len, labels), default=0))  # legend column fits the longest label
    W = 340 + R
    pts = [p for s in series.values() for p in s]
    if not pts:
        return ""
    xlo, xhi = (-0.5, len(x_names) - 0.5) if x_names else _range([p[0] for p in pts])
    ylo, yhi = _range([p[1] for p in pts])

    def sx(v: float) -> float:
        return L + (v - xlo) / (xhi - xlo) * (W - L - R)

    def sy(v: float) -> float:
        return H - B - (v - ylo) / (yhi - ylo) * (H - T - B)

    e = html.escape
    out = [f'<svg width="{W}" height="{H}" '
           f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="#fff"/>',
           f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13">{e(title)}</text>',
           f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="#333"/>',
           f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="#333"/>',
           f'<text x="{(L + W - R) / 2}" y="{H - 8}" text-anchor="middle">{e(x_label)}</text>',
           f'<text x="14" y="{(T + H - B) / 2}" text-anchor="middle" '
           f'transform="rotate(-90 14 {(T + H - B) / 2})">{e(y_label)}</text>']
    for v in _ticks(ylo, yhi):
        out.append(f'<line x1="{L - 4}" y1="{sy(v):.1f}" x2="{W - R}" y2="{sy(v):.1f}" stroke="#eee"/>'
                   f'<text x="{L - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">{v:.3g}</text>')
    xt = [(i, name) for i, name in enumerate(x_names)] if x_names else [(v, f"{v:.3g}") for v in _ticks(xlo, xhi)]
    for v, name in xt:
        out.append(f'<text x="{sx(v):.1f}" y="{H - B + 16}" text-anchor="middle">{e(name)}</text>')
    for k, ((name, s), label) in enumerate(zip(series.items(), labels)):
        colour = _PALETTE[k % len(_PALETTE)]
        if lines and len(s) > 1:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y in s:
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{colour}">'
                       f'<title>{e(name)}: ({x:.4g}, {y:.4g})</title></circle>')
        ly = T + 14 * k + 6
        out.append(f'<rect x="{W - R + 8}" y="{ly - 8}" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{W - R + 22}" y="{ly + 1}">{e(label)}<title>{e(name)}</title></text>')
    out.append("</svg>")
    return "".join(out)


def _render_plots(summary: dict) -> str:
    tasks = _unique(t for t, _ in summary["tables"])
    parts = []
    for task in tasks:
        levels = [lv for t, lv in summary["tables"] if t == task]
        tables = [summary["tables"][(task, lv)] for lv in levels]
        methods = _unique(m for tab in tables for m in tab)
        metrics = [m for m in summary["metrics"] if any(c[m] is not None for tab in tables for c in tab.values())]
        svgs = []
        for metric in metrics:
            series = {meth: [(i, tab[meth][metric]) for i, tab in enumerate(tables)  # inf (PSNR): off the chart
                             if meth in tab and _finite(tab[meth][metric]) is not None] for meth in methods}
            svgs.append(_svg_chart(f"{task}: {metric} vs level", "level", metric, series, x_names=levels))
        if metrics:
            q = metrics[0]
            series = {meth: [(tab[meth]["seconds"], tab[meth][q]) for tab in tables
                             if meth in tab and _finite(tab[meth][q]) is not None and tab[meth]["seconds"] is not None]
                      for meth in methods}
            svgs.append(_svg_chart(f"{task}: {q} vs seconds (all levels)", "seconds / image", q,
                                   series, lines=False))
        parts.append(f"<h3>{html.escape(task)}</h3><div class=\"plots\">" + "".join(svgs) + "</div>")
    return "".join(parts)


# ----------------------------------------------------------------------------- HTML


def render_html(run_dir: Path, rows: list[dict], summary: dict, date: str, max_images: int = 4,
                zoom: int = 2) -> str:
    """The whole report as one self-contained HTML page (every text escaped)."""
    e = html.escape
    suites = ", ".join(_unique(str(r.get("suite", "")) for r in rows)) or "unnamed"
    out = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
           f"<title>Benchmark report: {e(suites)}</title><style>{_CSS}</style></head><body>",
           f"<h1>Benchmark report: {e(suites)}</h1>",
           f'<div class="meta">Date: {e(date)} &middot; Rows: {len(rows)} &middot; '
           f"Run: {e(run_dir.name)}</div>",
           *(f'<div class="meta">Note: {e(n)}</div>' for n in summary.get("notes", [])), "<h2>Tables</h2>"]
    for (task, level), table in summary["tables"].items():
        cols = _columns(table, summary["metrics"])
        best = {c: _best(table, c, summary["higher"]) for c in cols}
        out.append(f"<h3>{e(task)} / {e(level)}</h3><table><tr><th>method</th>"
                   + "".join(f"<th>{e(_header_label(c, summary['higher']))}</th>" for c in cols) + "</tr>")
        for method, cell in table.items():
            tds = []
            for c in cols:
                cls = "best" if method in best[c] else ("absent" if cell[c] is None else "")
                tds.append(f'<td class="{cls}">{_fmt(cell[c])}</td>' if cls else f"<td>{_fmt(cell[c])}</td>")
            out.append(f"<tr><td>{e(method)}</td>" + "".join(tds) + "</tr>")
        out.append("</table>")
    out.append("<h2>Plots</h2>" + _render_plots(summary))
    out.append("<h2>Images</h2>")
    for (task, level), table in summary["tables"].items():
        grid = _render_grid(run_dir, rows, task, level, list(table), max_images, zoom)
        if grid:
            out.append(f"<h3>{e(task)} / {e(level)}</h3>{grid}")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(run_dir: str | os.PathLike, out_html: str | os.PathLike | None = None,
                 out_md: str | os.PathLike | None = None, max_images: int = 4, zoom: int = 2,
                 notes: list[str] | None = None) -> tuple[Path, Path]:
    """Write the HTML and Markdown reports for a benchmark run.

    Args:
        run_dir: folder with ``results.jsonl`` and the PNGs its rows name.
        out_html: HTML path; default ``run_dir/report.html``.
        out_md: Markdown path; default ``run_dir/report.md``.
        max_images: images shown per (task, level) in the grids.
        zoom: nearest-neighbour enlargement of the centre-quarter crops.
        notes: a list that gets what the report left out (see :func:`load_rows`).

    Returns:
        ``(html_path, md_path)``, both written atomically.

    Raises:
        InputError: ``results.jsonl`` is missing, malformed or empty, ``max_images`` < 0 (0: no grids) or ``zoom`` < 1.
    """
    from .._checks import whole_number

    n_images, n_zoom = whole_number(max_images), whole_number(zoom)
    if n_images is None or n_zoom is None or n_images < 0 or n_zoom < 1:
        raise InputError(f"expected max_images as an int >= 0 and zoom as an int >= 1, got {max_images!r} and {zoom!r}")
    max_images, zoom = n_images, n_zoom
    run_dir = Path(run_dir)
    rows = load_rows(run_dir, notes)
    if not rows:
        raise InputError(f"{run_dir / 'results.jsonl'}: no rows yet (run `genrestore bench SUITE -o {run_dir}` first)")
    set_file = run_dir / "set_metrics.json"
    try:
        set_metrics = json.loads(set_file.read_text()) if set_file.is_file() else None
    except ValueError:
        raise InputError(f"{set_file}: not JSON") from None
    bad = None if set_metrics is None else _malformed_set_metrics(set_metrics)
    if bad:
        raise InputError(f"{set_file}: not the harness's set metrics: {bad}")
    summary = summarize(rows, set_metrics)
    date = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    html_path = Path(out_html) if out_html is not None else run_dir / "report.html"
    md_path = Path(out_md) if out_md is not None else run_dir / "report.md"
    from ..io import check_output_file

    if html_path.resolve() == md_path.resolve():
        raise InputError(f"{html_path}: the HTML and the Markdown report would be one file; give two names")
    inputs = [run_dir / "results.jsonl", set_file]  # what the report is made from
    for path in (html_path, md_path):  # both or neither are written
        check_output_file(path, inputs)
    atomic_write_bytes(html_path, render_html(run_dir, rows, summary, date, max_images, zoom).encode("utf-8"))
    atomic_write_bytes(md_path, render_markdown(rows, summary, date).encode("utf-8"))
    return html_path, md_path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m genrestore.bench.report RUN_DIR``: write the reports, print their paths."""
    p = argparse.ArgumentParser(prog="python -m genrestore.bench.report",
                                description="Write report.html and report.md for a benchmark run.")
    p.add_argument("run_dir", help="folder holding results.jsonl")
    p.add_argument("--html", default=None, help="HTML output (default RUN_DIR/report.html)")
    p.add_argument("--md", default=None, help="Markdown output (default RUN_DIR/report.md)")
    p.add_argument("--max-images", type=int, default=4, help="images per (task, level) in the grids")
    args = p.parse_args(argv)
    notes: list[str] = []
    try:
        paths = write_report(args.run_dir, args.html, args.md, max_images=args.max_images, notes=notes)
    except (InputError, OSError) as e:
        print(f"genrestore: error: {e}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"genrestore: note: {note}", file=sys.stderr)
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
