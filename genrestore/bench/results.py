"""The results of a benchmark run: ``OUT/results.jsonl``, its resume and its lock, and ``results.csv``.

Rows go to ``OUT/results.jsonl`` (appended as they finish) and ``OUT/results.csv``; ground
truth, inputs and outputs to ``OUT/images/``. A rerun skips rows already there (resume) when they
were made with the same settings (a row's ``config``: a digest of its ground-truth crop, method
weights, generators, per-image metrics and detection settings; other rows run again) and their
image files are there unchanged (each row records their sha256; a missing or changed file runs
its row again), and
``shard=(i, n)`` runs every n-th row, so machines can split a suite. Shards may share one output
folder: every read, rewrite and append of ``results.jsonl`` holds an exclusive lock on
``OUT/.results.jsonl.lock`` (``fcntl.flock``; on systems without it, give each shard its own
folder), so a shard that starts while another appends cannot rewrite the file without the
other's newest row, and no reader sees half a line.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch

def _row_key(row: dict) -> tuple:
    return (row["image"], row["task"], row["level"], row["method"], row["seed"])


def _keep_finished_rows(results: Path, config: dict, combos: set, done: set, file_sha: dict,
                        kept_files: set) -> list[str]:
    """Keep the rows of ``results`` that are finished, made with this suite's ``config`` and
    whose files are intact (their keys go to ``done``); rewrite the file without the others.
    Lines that are not rows move to ``results.jsonl.dropped``. Returns notes. Call it holding
    :func:`_results_lock`."""
    from ..io import atomic_write_bytes

    out = results.parent
    notes = []
    text = results.read_text()
    lines = text.splitlines()
    kept, foreign = [], []
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
            key = _row_key(row)
        except (ValueError, KeyError, TypeError):
            cut = i == len(lines) - 1 and not text.endswith("\n")  # an interrupted append: no newline yet
            if line.strip() and not cut:
                foreign.append(line)  # not a row cut by an interruption: keep it
            continue  # a line cut by an interruption: its row runs again
        if key in config and (row.get("config") != config[key] or key in done):
            continue  # made with other settings, weights or images (or a duplicate): it runs again
        if key not in config and key[1:] in combos:
            continue  # a crop this suite no longer has (other photos, a smaller count): dropped
        if key in config and not _files_intact(out, row, file_sha, kept_files):
            continue  # an image of the row is missing, truncated or replaced: it runs again
        done.add(key)
        kept.append(line)
    if len(kept) != len(lines) or (text and not text.endswith("\n")):
        # drop the cut line and the stale rows, so that new rows do not go onto the one or sit beside
        # the others (every reader parses each line, and the report averages every row)
        if foreign:  # e.g. a line edited by hand, or two shards' lines run together when one was killed
            dropped = out / "results.jsonl.dropped"
            previous = dropped.read_bytes() if dropped.is_file() else b""
            atomic_write_bytes(dropped, previous + "".join(line + "\n" for line in foreign).encode())
            notes.append(f"{len(foreign)} line(s) of {results} were not result rows; they are moved to {dropped} "
                         f"and their rows, if any, run again")
        atomic_write_bytes(results, "".join(line + "\n" for line in kept).encode())
    return notes


@contextlib.contextmanager
def _results_lock(out: Path, create: bool = True):
    """Hold an exclusive lock on ``out/.results.jsonl.lock`` while the block runs (shards sharing
    ``out`` take turns reading, rewriting and appending ``results.jsonl``). ``create=False``
    (a reader such as the report, which writes nothing there) locks only when the file exists:
    every append creates it first, so without it no row is being written. Without ``fcntl``
    (Windows) it does nothing."""
    lock = out / ".results.jsonl.lock"
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        fcntl = None
    if fcntl is None or not (create or lock.is_file()):
        yield
        return
    with open(lock, "a" if create else "r") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_results(out_dir: str | Path) -> list[dict]:
    """The rows of ``out_dir/results.jsonl`` (blank lines skipped), read under the shards' lock."""
    out_dir = Path(out_dir)
    with _results_lock(out_dir):
        text = (out_dir / "results.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _cached_sha256(path: Path, rel: str, cache: dict) -> str | None:
    """sha256 of the file ``path`` (``rel`` under the output folder), ``None`` when it is missing;
    computed once per run and kept in ``cache`` by ``rel``."""
    if rel not in cache:
        from ..weights import sha256_file

        cache[rel] = sha256_file(path) if path.is_file() else None
    return cache[rel]


def _write_hashed(out: Path, rel: str, image: torch.Tensor, file_sha: dict) -> None:
    """Write ``image`` as the PNG ``out / rel`` atomically; note its sha256 in ``file_sha[rel]``."""
    from ..io import write_image_hashed

    hashes: dict[str, str] = {}
    write_image_hashed(out / rel, image, hashes)
    file_sha[rel] = hashes[Path(rel).name]


def _files_intact(out: Path, row: dict, cache: dict, intact: set) -> bool:
    """Whether every image file of a finished ``row`` is under ``out`` with the sha256 the row
    recorded (rows written before 2026-12-06 record none: they run once more); if so, its files
    are added to ``intact``."""
    recorded = row.get("sha256")
    if not isinstance(recorded, dict) or set(recorded) != set(row.get("images", {})):
        return False
    if not all(_cached_sha256(out / row["images"][name], row["images"][name], cache) == digest
               for name, digest in recorded.items()):
        return False
    intact.update(row["images"].values())
    return True


def write_csv(out_dir: Path) -> Path:
    """``results.csv`` from ``results.jsonl`` (one column per metric), written atomically."""
    import csv
    import io as _io

    from ..io import atomic_write_bytes

    rows = read_results(out_dir)
    metrics = sorted({k for r in rows for k in r["metrics"]})
    buf = _io.StringIO()
    w = csv.writer(buf)
    w.writerow(["suite", "image", "task", "level", "method", "seed", "seconds", *metrics])
    for r in rows:
        w.writerow([r["suite"], r["image"], r["task"], r["level"], r["method"], r["seed"], r["seconds"],
                    *("" if r["metrics"].get(m) is None else r["metrics"][m] for m in metrics)])
    atomic_write_bytes(out_dir / "results.csv", buf.getvalue().encode())
    return out_dir / "results.csv"
