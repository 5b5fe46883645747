"""Restorers against their baselines (issue 6): IDM, the L1 regression UNet, DiffGAR and classical methods.

On ``count`` 256x256 crops of the validation photos (positions fixed by the seed), for the IDM
degradation and each benchmark task at level M, every method that fits the task runs through the
bench harness (``genrestore.bench``; rows resume), and this prints one Markdown table per task:
PSNR, SSIM (RGB), LPIPS (AlexNet; "absent" without its backbone), NIQE (no-reference, shipped
pristine model; lower is more natural), FID and KID over the task's crops ("absent" without the
FID Inception), seconds per image on this machine, and network calls
per image. It also writes ``OUT/grid.png`` (inputs, outputs and truth of the first crops).

Methods: ``degraded`` (the input; bicubic for upsampling), ``nlmeans`` (OpenCV non-local means;
denoising and the IDM degradation), ``jpeg-deblock`` (re-application of JPEG; deartifacting),
``telea`` (OpenCV; inpainting), ``regression`` (``train idm --regression``: the same UNet trained
with L1 on the same data and steps), ``idm`` (10 DDPM steps) and ``diffgar`` (guided, CFG 3, 30
DDIM steps) and ``--sr`` (an SR model as a same-size restorer, e.g. ``realesrgan-x4plus``: the
model, then Lanczos back to the input size) when given.

    python benchmarks/restore.py -o runs/bench-restore --idm idm-default \\
        --regression genrestore/weights/... (or runs/idm-reg/model.safetensors) [--diffgar RUN/model.safetensors]

Targets (issue 6): IDM beats the regression UNet on LPIPS and FID and stays within 1 dB of it on
PSNR; the sampling throughput target (H100) is measured by ``--throughput`` on a GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from genrestore._checks import InputError
from genrestore.bench.harness import run_suite
from genrestore.bench.set_metrics import SET_METRICS_FILE, write_set_metrics
from genrestore.bench.suite import Suite
from genrestore.bench.report import load_rows, one_crop, summarize

TASKS = ("idm", "upsample", "denoise", "deartifact", "inpaint")
CLASSICAL = {"idm": ["nlmeans"], "upsample": [], "denoise": ["nlmeans"], "deartifact": ["jpeg-deblock"],
             "inpaint": ["telea"]}
METRICS = ["psnr", "ssim", "lpips", "niqe", "fid", "kid"]


def methods_for(task: str, learned: dict[str, str]) -> list[str]:
    """``degraded``, the classical baselines that fit ``task``, then the learned methods."""
    return ["degraded", *CLASSICAL[task], *(f"{kind}:{path}" for kind, path in learned.values())]


def label(method: str, learned: dict[str, str]) -> str:
    for name, (kind, path) in learned.items():
        if method == f"{kind}:{path}":
            return name
    return "degraded (bicubic)" if method == "degraded" else method


def tables(out: Path, learned: dict[str, str]) -> str:
    set_file = out / SET_METRICS_FILE
    summary = summarize(load_rows(out), json.loads(set_file.read_text()) if set_file.is_file() else None)
    rows = load_rows(out)
    fmt = {"psnr": "{:.2f}", "ssim": "{:.4f}", "lpips": "{:.4f}", "niqe": "{:.2f}", "fid": "{:.1f}", "kid": "{:.4f}",
           "seconds": "{:.3f}"}
    lines = []
    for (task, level), table in summary["tables"].items():
        lines += [f"\n{task} (level {level})" if task != "idm" else "\nIDM degradation (IDM §4.1 ranges)",
                  "| method | PSNR | SSIM | LPIPS | NIQE | FID | KID | s/img | NFE |", "|---|" + "---:|" * 8]
        for method, cell in table.items():
            nfe = next((r.get("nfe") for r in rows if r["task"] == task and r["method"] == method), None)
            vals = []
            for m in [*METRICS, "seconds"]:
                v = cell.get(m)
                vals.append("absent" if v is None or (isinstance(v, float) and not math.isfinite(v))
                            else fmt[m].format(v))
            lines.append(f"| {label(method, learned)} | " + " | ".join(vals) + f" | {nfe if nfe else '-'} |")
    return "\n".join(lines)


def grid(out: Path, learned: dict[str, str], crops: int = 2) -> Path:
    from genrestore.io import read_image, write_image
    from genrestore.viz import contact_sheet

    rows = load_rows(out)
    methods = list(dict.fromkeys(r["method"] for r in rows if r["method"] != "degraded"))
    images = list(dict.fromkeys(r["image"] for r in rows))[:crops]
    sheet, labels = [], []
    for task in dict.fromkeys(r["task"] for r in rows):
        for img in images:
            trows = {r["method"]: r for r in one_crop([r for r in rows if r["task"] == task and r["image"] == img])}
            if not trows:
                continue
            any_row = next(iter(trows.values()))
            cells = [read_image(out / any_row["images"]["input"], "rgb")]
            cells += [read_image(out / trows[m]["images"]["output"], "rgb") if m in trows else None for m in methods]
            cells.append(read_image(out / any_row["images"]["truth"], "rgb"))
            sheet.append(cells)
            labels.append(f"{task}")
    path = out / "grid.png"
    write_image(path, contact_sheet(sheet, labels, ["input", *(label(m, learned) for m in methods), "truth"],
                                    cell=192))
    return path


@torch.inference_mode()
def throughput(model: str, batch: int = 32, size: int = 256, steps: int = 10, repeats: int = 3) -> float:
    """Images per second of ``IDMRestorer.restore`` on ``(batch, 3, size, size)``; bf16 autocast on CUDA."""
    from genrestore.restore.idm import IDMRestorer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    r = IDMRestorer.from_file(model, device)
    y = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    best = float("inf")
    for _ in range(repeats + 1):  # the first call warms up
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            r.restore(y, steps, torch.Generator().manual_seed(1))
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return batch / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", required=True, help="run folder (resumes)")
    ap.add_argument("--images", default="../shared/data/photos/val")
    ap.add_argument("--count", type=int, default=6, help="crops (round-robin over the photos)")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--idm", help="IDM model: a file or weight name (e.g. idm-default)")
    ap.add_argument("--regression", help="regression UNet from `genrestore train idm --regression`")
    ap.add_argument("--diffgar", help="DiffGAR model (classes: the benchmark tasks)")
    ap.add_argument("--sr", help="an SR model as a same-size restorer (e.g. realesrgan-x4plus: the model, then "
                    "Lanczos back, as Real-ESRGAN's --outscale 1)")
    ap.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {','.join(TASKS)}")
    ap.add_argument("--throughput", action="store_true", help="also time IDM sampling: batch 32, 256 px, 10 steps")
    args = ap.parse_args()
    learned = {name: (kind, path) for name, kind, path in (("regression", "idm", args.regression),
                                                            ("idm", "idm", args.idm),
                                                            ("diffgar", "diffgar", args.diffgar),
                                                            (f"{args.sr} (same size)", "sr-same-size", args.sr))
               if path}
    out = Path(args.output)
    tasks = [t for t in args.tasks.split(",") if t]
    try:
        bad = [t for t in tasks if t not in TASKS]
        if bad:
            raise InputError(f"unknown tasks {bad}; known: {', '.join(TASKS)}")
        notes: list[str] = []
        for task in tasks:  # one suite per task: each has the baselines that fit it
            suite = Suite(name=f"restore-{task}", images=Path(args.images), tasks=[task], levels=["M"],
                          methods=methods_for(task, learned), metrics=["psnr", "ssim", "lpips", "niqe"],
                          count=args.count, crop=args.crop, seed=args.seed)
            notes += run_suite(suite, out)["notes"]
        notes += write_set_metrics(out, ["fid", "kid"])
    except InputError as e:
        raise SystemExit(f"restore benchmark: error: {e}") from None
    print(f"{args.count} crops of {args.crop} px from {args.images}, seed {args.seed}; "
          f"{torch.get_num_threads()} CPU threads; device cpu")
    for note in dict.fromkeys(notes):
        print("note:", note)
    print(tables(out, learned))
    print(f"\ngrid: {grid(out, learned)}")
    if args.throughput and args.idm:
        print(f"IDM sampling throughput (batch 32, 256 px, 10 steps, "
              f"{'cuda bf16' if torch.cuda.is_available() else 'cpu float32'}): "
              f"{throughput(args.idm):.2f} images/s")


if __name__ == "__main__":
    main()
