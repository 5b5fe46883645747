"""genrestore.bench.report: tables (means, best marks, absent values), self-contained HTML."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import torch

from genrestore.bench.report import main, write_report
from genrestore.io import read_image, write_image

EVIL = "<b>x</b>"
# (level, method) -> per image (a, b): (psnr, lpips, seconds); hand-computed means in the asserts
VALUES = {
    ("M", "alpha"): [(20.0, 0.5, 1.0), (22.0, 0.7, 1.0)],
    ("M", EVIL): [(25.0, None, 2.0), (26.0, None, 4.0)],
    ("XS", "alpha"): [(30.0, 0.2, 1.0), (32.0, 0.4, 3.0)],
    ("XS", EVIL): [(28.0, 0.1, 0.5), (29.0, None, 0.5)],
}


def _make_run(tmp_path):
    g = torch.Generator().manual_seed(0)
    run = tmp_path / "run"
    rows = []
    for image in ("a", "b"):
        write_image(run / "in" / f"{image}.png", torch.rand(1, 3, 8, 8, generator=g))
        write_image(run / "gt" / f"{image}.png", torch.rand(1, 3, 8, 8, generator=g))
    for (level, method), per_image in VALUES.items():  # levels deliberately out of XS..XL order
        for k, (image, (psnr, lpips, sec)) in enumerate(zip(("a", "b"), per_image)):
            out = f"out/{level}/{k}/{image}.png"
            write_image(run / out, torch.rand(1, 3, 8, 8, generator=g))
            rows.append({"suite": "tiny & <suite>", "image": image, "task": "denoise", "level": level,
                         "method": method, "seed": 0, "seconds": sec,
                         "metrics": {"psnr": psnr, "lpips": lpips},
                         "higher_is_better": {"psnr": True, "lpips": False},
                         "images": {"input": f"in/{image}.png", "output": out,
                                    "truth": f"gt/{image}.png"}})
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_markdown_tables(tmp_path):
    run = _make_run(tmp_path)
    html_path, md_path = write_report(run)
    assert (html_path, md_path) == (run / "report.html", run / "report.md")
    md = md_path.read_text()
    assert "Rows: 8" in md
    evil = r"\<b\>x\</b\>"
    # XS before M (level order, not file order)
    xs, m = md.index("## denoise / XS"), md.index("## denoise / M")
    assert xs < m
    xs_part, m_part = md[xs:m], md[m:]
    assert "| method | psnr ↑ | lpips ↓ | s/image ↓ |" in xs_part
    # XS: psnr (30+32)/2=31 vs (28+29)/2=28.5; lpips 0.3 vs 0.1 (null skipped); s 2.0 vs 0.5
    assert "| alpha | **31.0000** | 0.3000 | 2.0000 |" in xs_part
    assert f"| {evil} | 28.5000 | **0.1000** | **0.5000** |" in xs_part
    # M: psnr 21 vs 25.5; lpips 0.6 vs all-null -> absent; s 1.0 vs 3.0
    assert "| alpha | 21.0000 | **0.6000** | **1.0000** |" in m_part
    assert f"| {evil} | **25.5000** | absent | 3.0000 |" in m_part
    assert "<b>" not in md


def test_html_self_contained_and_escaped(tmp_path):
    run = _make_run(tmp_path)
    html_path, _ = write_report(run, out_html=tmp_path / "r.html", out_md=tmp_path / "r.md")
    assert html_path == tmp_path / "r.html" and not (run / "report.html").exists()
    page = html_path.read_text()
    assert not re.search(r"https?://", page)
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", page)
    # 2 levels x 2 images x (input + 2 outputs + truth) cells, each full image + crop
    assert page.count('src="data:image/png;base64,') == 2 * 2 * 4 * 2
    assert EVIL not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "tiny &amp; &lt;suite&gt;" in page
    assert '<td class="best">31.0000</td>' in page and '<td class="absent">absent</td>' in page
    assert page.count("<svg") == 3  # psnr vs level, lpips vs level, psnr vs seconds


def test_main(tmp_path, capsys):
    run = _make_run(tmp_path)
    assert main([str(run)]) == 0
    assert capsys.readouterr().out.split() == [str(run / "report.html"), str(run / "report.md")]
    assert main([str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith("genrestore: error:")
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "results.jsonl").write_text("3\n")  # a bare number: one line, exit 2 (a TypeError once)
    assert main([str(tmp_path / "bare")]) == 2
    assert "results.jsonl:1: expected an object" in capsys.readouterr().err
    (tmp_path / "bare" / "results.jsonl").write_text("\n")  # no rows: an error, not an empty report
    assert main([str(tmp_path / "bare")]) == 2
    assert "results.jsonl: no rows yet" in capsys.readouterr().err
    assert not (tmp_path / "bare" / "report.md").exists()


def test_chromium_renders(tmp_path):
    exe = shutil.which("chromium")
    if exe is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    run = _make_run(tmp_path)
    html_path, _ = write_report(run)
    profile, shot = tmp_path / "profile", tmp_path / "shot.png"
    subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
                    f"--screenshot={shot}", "--window-size=1200,900", html_path.resolve().as_uri()],
                   timeout=60, capture_output=True, check=False)
    assert shot.is_file(), "chromium wrote no screenshot"
    x = read_image(shot, "rgb")
    assert (x != x[..., :1, :1]).any(), "screenshot is a single colour"


def test_legend_labels_short_and_distinct():
    from genrestore.bench.report import _legend_labels, _svg_chart

    names = ["degraded", "sr:realesrgan-x4plus", "sr:runs/desra-paper/realesrgan-x4plus-desra.safetensors",
             "sr:runs/other/realesrgan-x4plus-desra.safetensors", "idm:" + "x" * 40]
    labels = _legend_labels(names, limit=28)
    assert labels[:2] == ["degraded", "sr:realesrgan-x4plus"]  # short names kept as they are
    # a path becomes its stem; the two stems are equal, so they are numbered
    assert labels[2:4] == ["sr:realesrgan-x4plus-desra #1", "sr:realesrgan-x4plus-desra #2"]
    assert labels[4] == "idm:xxxxxxxxx\u2026" + "x" * 14 and len(labels[4]) == 28  # cut in the middle
    svg = _svg_chart("t", "x", "y", {n: [(0.0, float(i))] for i, n in enumerate(names)})
    for name, label in zip(names, labels):
        assert f">{label}<title>{name}</title></text>" in svg  # full name kept as the tooltip


def test_nan_set_metric_is_absent_and_never_hides_the_best(tmp_path):
    """A NaN set metric (e.g. FID of a degenerate group) is shown as absent and does not decide the
    best mark, whichever row comes first."""
    from genrestore.bench.report import render_markdown, summarize

    run = _make_run(tmp_path)
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    groups = [{"task": "denoise", "level": "M", "method": "alpha", "fid": float("nan")},
              {"task": "denoise", "level": "M", "method": EVIL, "fid": 12.5}]
    record = {"metrics": ["fid"], "higher_is_better": {"fid": False}, "notes": [], "groups": groups}
    (run / "set_metrics.json").write_text(json.dumps(record))  # json writes NaN as NaN
    summary = summarize(rows, json.loads((run / "set_metrics.json").read_text()))
    assert summary["tables"][("denoise", "M")]["alpha"]["fid"] is None
    md = render_markdown(rows, summary, "today")
    m_part = md[md.index("## denoise / M"):]
    assert "| alpha | 21.0000 | **0.6000** | absent | **1.0000** |" in m_part
    assert r"| \<b\>x\</b\> | **25.5000** | absent | **12.5000** | 3.0000 |" in m_part


def test_grid_line_shows_one_crop(tmp_path, monkeypatch):
    """The grid took the input and truth of an image from its lowest seed overall, but each method's
    output from that method's lowest seed: with several seeds (or crops) in a folder, an output sat
    beside another crop's input. Now a line holds one seed and one ground truth."""
    import genrestore.bench.report as report

    monkeypatch.setattr(report, "_image_cell", lambda run_dir, rel, zoom: f"<td>{rel}</td>")

    def row(method, seed, truth):
        return {"image": "a", "task": "denoise", "level": "M", "method": method, "seed": seed,
                "sha256": {"truth": truth}, "images": {"input": f"in-{seed}-{truth}", "truth": f"gt-{seed}-{truth}",
                                                       "output": f"{method}-{seed}-{truth}"}}

    rows = [row("m1", 0, "x"), row("m1", 1, "x"), row("m2", 1, "x"), row("m3", 0, "y"), row("m2", 0, "y"),
            row("m4", 0, "y")]
    html = report._render_grid(tmp_path, rows, "denoise", "M", ["m1", "m2", "m3", "m4"], 4, 2)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", html)
    # seed 0 has two crops: y (3 methods) is the line's, x's m1 is left out
    assert cells == ["a", "in-0-y", "absent", "m2-0-y", "m3-0-y", "m4-0-y", "gt-0-y"]


def _row(method, image, metrics, level="M", higher=None, seconds=1.0, truth=None):
    return {"image": image, "task": "denoise", "level": level, "method": method, "seed": 0, "seconds": seconds,
            "metrics": metrics, "higher_is_better": higher or {}, "sha256": {"truth": truth or image}}


def test_mean_leaves_out_null_and_nan_keeps_inf_and_inf_minus_inf_is_absent():
    """_mean against hand-computed values: null and NaN are left out (not a NaN mean, not absent), one
    inf makes the mean inf, inf and -inf together give no mean (not NaN)."""
    from genrestore.bench.report import _mean

    assert _mean([30.0, float("nan"), None, 32.0]) == 31.0
    assert _mean([float("nan"), None]) is None and _mean([]) is None
    assert _mean([float("inf"), 30.0]) == float("inf") and _mean(["-inf", 1.0]) == float("-inf")
    assert _mean([float("inf"), float("-inf"), 3.0]) is None


def test_markdown_defaults_unknown_levels_and_escaped_pipes():
    """Hand-checked Markdown: a metric without a higher_is_better entry counts as higher-is-better
    (arrow and bold on the max), a lower-is-better metric bolds the min and both of a printed tie,
    an unknown level sorts after XS..XL, every table line has as many cells as the header, and a
    '|' in a method name is escaped."""
    from genrestore.bench.report import render_markdown, summarize

    rows = [_row("a|b", "x", {"score": 2.0, "err": 0.10000001}, higher={"err": False}),
            _row("c", "x", {"score": 3.0, "err": 0.1}, higher={"err": False}, seconds=2.0),
            _row("c", "x", {"score": 1.0, "err": 0.5}, level="custom"),
            _row("c", "x", {"score": 1.0, "err": 0.5}, level="XL")]
    summary = summarize(rows)
    assert list(summary["tables"]) == [("denoise", "M"), ("denoise", "XL"), ("denoise", "custom")]
    md = render_markdown(rows, summary, "today")
    part = md[md.index("## denoise / M"):md.index("## denoise / XL")]
    lines = [ln for ln in part.splitlines() if ln.startswith("|")]
    assert lines[0] == "| method | score ↑ | err ↓ | s/image ↓ |"
    assert lines[2] == r"| a\|b | 2.0000 | **0.1000** | **1.0000** |"
    assert lines[3] == "| c | **3.0000** | **0.1000** | 2.0000 |"
    cells = [len(re.split(r"(?<!\\)\|", ln)) for ln in lines]
    assert len(set(cells)) == 1, lines


def test_set_metrics_keep_their_notes_drop_inf_and_add_no_duplicate_column():
    """summarize with a hand-made set_metrics.json: its notes are kept, an infinite set value is absent
    (like NaN), a set metric named like a row metric gives one column, and a group's row digest does
    not depend on the order of the rows."""
    from genrestore.bench.report import rows_digest, summarize

    rows = [_row("a", "x", {"psnr": 20.0}, truth="t"), _row("a", "y", {"psnr": 22.0}, truth="t"),
            _row("b", "x", {"psnr": 25.0}, truth="t")]
    for r, sha in zip(rows, ("o1", "o2", "o3")):
        r["sha256"]["output"] = sha
    a_rows = rows[:2]
    assert rows_digest(a_rows) == rows_digest(a_rows[::-1])
    record = {"metrics": ["fid", "psnr"], "higher_is_better": {"fid": False}, "notes": ["computed on 2 crops"],
              "groups": [{"task": "denoise", "level": "M", "method": "a", "fid": 3.0, "psnr": 21.0,
                          "rows": rows_digest(a_rows[::-1])},
                         {"task": "denoise", "level": "M", "method": "b", "fid": float("inf"), "psnr": None,
                          "rows": rows_digest(rows[2:])}]}
    summary = summarize(rows, record)
    assert summary["metrics"] == ["psnr", "fid"]
    assert summary["notes"] == ["computed on 2 crops"]
    table = summary["tables"][("denoise", "M")]
    assert table["a"]["fid"] == 3.0 and table["b"]["fid"] is None


def test_load_rows_takes_strict_json_infinities_and_refuses_a_boolean_seed(tmp_path):
    """load_rows: the harness writes non-finite metrics as the strings "inf", "-inf", "nan" (all
    accepted), and a seed must be an integer, not a JSON boolean."""
    from genrestore._checks import InputError
    from genrestore.bench.report import load_rows

    rows = [_row("a", "x", {"psnr": v}) for v in ("inf", "-inf", "nan", 1.5)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r["metrics"]["psnr"] for r in load_rows(tmp_path)] == ["inf", "-inf", "nan", 1.5]
    rows[0]["seed"] = True
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError, match="seed should be an integer"):
        load_rows(tmp_path)


def test_a_row_cut_by_an_interrupted_bench_is_left_out_with_a_note(tmp_path, capsys):
    """Walkthrough: a bench killed while appending leaves a last line without its newline; the
    report stopped with 'results.jsonl:9: not JSON' (the bench's own rerun drops that line and runs
    its row again). It reports the finished rows and says what it left out; a whole line that is
    not JSON is still an error."""
    from genrestore.cli import main as cli_main

    run = _make_run(tmp_path)
    whole = (run / "results.jsonl").read_text()
    (run / "results.jsonl").write_text(whole + whole.splitlines()[0][:30])  # the cut ninth row
    assert cli_main(["report", str(run)]) == 0
    captured = capsys.readouterr()
    assert "results.jsonl:9: left out a row cut short" in captured.err and "Traceback" not in captured.err
    assert "Rows: 8" in (run / "report.md").read_text()
    (run / "results.jsonl").write_text(whole + "not json\n")  # a whole line: not an interruption
    assert cli_main(["report", str(run)]) == 2
    assert "results.jsonl:9: not JSON" in capsys.readouterr().err


def test_cli_report_of_a_file_points_to_its_folder(tmp_path, capsys):
    """Walkthrough: `genrestore report RUN/results.jsonl` said "RUN/results.jsonl: no results.jsonl (run
    `genrestore bench SUITE -o RUN/results.jsonl` first)", advice that would write a run inside a file."""
    from genrestore.cli import main as cli_main

    run = _make_run(tmp_path)
    assert cli_main(["report", str(run / "results.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "results.jsonl: is a file" in err and f"`genrestore report {run}`" in err and "bench SUITE" not in err
    assert not (run / "report.html").exists()
