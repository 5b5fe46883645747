"""DeSRA Table 1's layout: DeSRA-det against the detectors it compares with (NIQE, LDL*).

On LR images made from the validation photos (the LR of ``benchmarks/desra.py``: Real-ESRGAN's
second-order degradation x4 of 512 px centre crops, seeded by file name), or on a folder of
your own LR images (``--lr``), each detector runs on the same GAN-SR / MSE-SR outputs:

* DeSRA-det (§3.2: D, semantic adjustment with the ``texture`` segmenter, threshold 0.7, morphology);
* LDL* at DeSRA's three thresholds 0.01, 0.005, 0.001 (LDL's artifact map, MSE-SR as ground truth);
* NIQE at each of ``--niqe-thresholds`` (sliding-window NIQE of the GAN-SR image alone).

With ``--truth DIR`` (one mask per LR image, ``STEM.png`` or ``STEM_mask.png``, white = artifact,
the GAN-SR output's size: labelled artifact regions, as DeSRA's annotators drew them), it prints
Table 1's columns: IoU (eq. 11, % averaged over images), region precision and recall (eqs. 12-13,
p = 0.5, pooled over the set), and for NIQE only the best threshold by IoU, as DeSRA chose it.
Without labels there is no accuracy to report: it prints what each detector flags (pixels,
regions) and how far it agrees with DeSRA-det (IoU of the flagged pixels with DeSRA-det's, pooled
over the images), which is not accuracy.

    python benchmarks/desra_detectors.py -o bench_out/desra-detectors
    python benchmarks/desra_detectors.py --lr my_lr/ --truth my_masks/ -o bench_out/desra-table1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from _common import VAL_PHOTOS
from desra import make_lr
from genrestore.cli_sr import overlay
from genrestore.detect import detect_artifacts, ldl_artifact_map, make_segmenter, niqe_map
from genrestore.detect.baselines import LDL_THRESHOLDS
from genrestore.io import list_images, read_image, write_image
from genrestore.metrics.detection import DetectionCounts, iou, label_regions, region_counts
from genrestore.models.sr import load_sr, upscale
from genrestore.viz import contact_sheet

NIQE_THRESHOLDS = (10.0, 15.0, 20.0, 25.0, 30.0)


def _truth_for(folder: Path, stem: str, size: tuple[int, int]) -> torch.Tensor:
    for name in (f"{stem}.png", f"{stem}_mask.png"):
        if (folder / name).is_file():
            m = read_image(folder / name, "gray")[0, 0] > 0.5
            if tuple(m.shape) != size:
                raise SystemExit(f"{folder / name}: mask is {tuple(m.shape)}, the GAN-SR output {size}")
            return m
    raise SystemExit(f"no mask for {stem} in {folder} (expected {stem}.png or {stem}_mask.png)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gan", default="realesrgan-x4plus")
    ap.add_argument("--mse", default="rdn-x4")
    ap.add_argument("--hr", default=str(VAL_PHOTOS), help="HR photos to make LR from (default: validation photos)")
    ap.add_argument("--lr", help="a folder of LR images to use instead of --hr")
    ap.add_argument("--truth", help="labelled artifact masks, one per LR image (STEM.png or STEM_mask.png)")
    ap.add_argument("--crop", type=int, default=512, help="HR crop side, px (LR is a quarter of it)")
    ap.add_argument("--niqe-thresholds", type=float, nargs="+", default=list(NIQE_THRESHOLDS))
    ap.add_argument("--tile", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grid-images", type=int, default=3, help="images in OUT/grid.png (masks outlined on the GAN-SR)")
    ap.add_argument("-o", "--output", default="bench_out/desra-detectors")
    args = ap.parse_args()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    if args.lr:
        data = [(p.stem, read_image(p, "rgb")) for p in list_images([args.lr])]
    else:
        data = [(stem, lr) for stem, _, lr in make_lr(list_images([args.hr]), args.crop, args.seed)]
    gan, mse = load_sr(args.gan), load_sr(args.mse)
    segmenter = make_segmenter("texture")
    methods = (["DeSRA-det"] + [f"LDL* (threshold={t:g})" for t in LDL_THRESHOLDS]
               + [f"NIQE (threshold={t:g})" for t in args.niqe_thresholds])
    masks: dict[str, list[torch.Tensor]] = {m: [] for m in methods}
    seconds = {"DeSRA-det": 0.0, "LDL*": 0.0, "NIQE": 0.0, "SR": 0.0}
    truths, grid_rows = [], []
    for stem, lr in data:
        t0 = time.perf_counter()
        with torch.inference_mode():
            y_gan, y_mse = upscale(gan, lr, args.tile), upscale(mse, lr, args.tile)
        t1 = time.perf_counter()
        masks["DeSRA-det"].append(detect_artifacts(y_gan, y_mse, segmenter, scale=gan.scale).mask[0, 0])
        t2 = time.perf_counter()
        ldl = ldl_artifact_map(y_gan, y_mse)[0, 0]
        for t in LDL_THRESHOLDS:
            masks[f"LDL* (threshold={t:g})"].append(ldl > t)
        t3 = time.perf_counter()
        nq = niqe_map(y_gan)[0, 0]
        for t in args.niqe_thresholds:
            masks[f"NIQE (threshold={t:g})"].append(nq > t)
        t4 = time.perf_counter()
        for k, dt in zip(("SR", "DeSRA-det", "LDL*", "NIQE"), (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            seconds[k] += dt
        if args.truth:
            truths.append(_truth_for(Path(args.truth), stem, tuple(y_gan.shape[-2:])))
        if len(grid_rows) < args.grid_images:  # LDL* at detect's default, NIQE at the middle of --niqe-thresholds
            shown = [masks["DeSRA-det"][-1], masks["LDL* (threshold=0.005)"][-1],
                     masks[f"NIQE (threshold={args.niqe_thresholds[len(args.niqe_thresholds) // 2]:g})"][-1]]
            grid_rows.append([y_gan, *(overlay(y_gan, m[None, None], width=3) for m in shown)]
                             + ([overlay(y_gan, truths[-1][None, None], width=3)] if args.truth else []))
        print(f"  {stem}: {tuple(y_gan.shape[-2:])} px, SR {t1 - t0:.1f} s, DeSRA {t2 - t1:.2f} s, "
              f"LDL* {t3 - t2:.2f} s, NIQE {t4 - t3:.2f} s", flush=True)
    n = len(data)
    rows = {}
    for m, ms in masks.items():
        px = sum(int(a.sum()) for a in ms) / sum(a.numel() for a in ms)
        row = {"detected_px": px, "regions": sum(label_regions(a)[1] for a in ms)}
        if truths:
            counts = sum((region_counts(a, b) for a, b in zip(ms, truths)), DetectionCounts())
            row.update(iou=100 * sum(iou(a, b) for a, b in zip(ms, truths)) / n,
                       precision=counts.precision, recall=counts.recall)
        else:
            # pooled over the set: per-image IoU would count each image where both masks are empty as 100 %
            inter = sum(int((a & b).sum()) for a, b in zip(ms, masks["DeSRA-det"]))
            union = sum(int((a | b).sum()) for a, b in zip(ms, masks["DeSRA-det"]))
            row["iou_with_desra"] = 100 * inter / union if union else 100.0
        rows[m] = row
    if truths:  # DeSRA: "we select the best-performing threshold" for NIQE
        niqe_rows = [m for m in rows if m.startswith("NIQE")]
        best = max(niqe_rows, key=lambda m: rows[m]["iou"])
        shown = [m for m in rows if not m.startswith("NIQE") or m == best]
        print(f"\n{n} images, labelled masks from {args.truth}; NIQE: best of {len(niqe_rows)} thresholds by IoU\n")
        print("| method | IoU (%) | precision | recall | detected px | regions |")
        print("|---|---:|---:|---:|---:|---:|")
        for m in shown:
            r = rows[m]
            print(f"| {m} | {r['iou']:.1f} | {r['precision']:.4f} | {r['recall']:.4f} | "
                  f"{100 * r['detected_px']:.2f} % | {r['regions']} |")
    else:
        print(f"\n{n} images, no labelled masks: what each detector flags, and the IoU of its pixels with "
              f"DeSRA-det's, pooled over the images (agreement, not accuracy)\n")
        print("| method | detected px | regions | pixel IoU with DeSRA-det (%) |")
        print("|---|---:|---:|---:|")
        for m, r in rows.items():
            print(f"| {m} | {100 * r['detected_px']:.2f} % | {r['regions']} | {r['iou_with_desra']:.1f} |")
    per = {k: round(v / n, 3) for k, v in seconds.items()}
    print(f"\nseconds per image (CPU threads: {torch.get_num_threads()}): SR (both models) {per['SR']}, "
          f"DeSRA-det {per['DeSRA-det']}, LDL* map {per['LDL*']}, NIQE map {per['NIQE']}")
    if grid_rows:
        mid = args.niqe_thresholds[len(args.niqe_thresholds) // 2]
        cols = ["GAN-SR", "DeSRA-det", "LDL* 0.005", f"NIQE {mid:g}"] + (["labelled"] if args.truth else [])
        write_image(out / "grid.png", contact_sheet(grid_rows, [s for s, _ in data[:len(grid_rows)]], cols, cell=256))
        print(f"grid: {out / 'grid.png'} (outlines of each mask on the GAN-SR output)")
    record = {"images": [s for s, _ in data], "gan": args.gan, "mse": args.mse, "truth": args.truth,
              "rows": rows, "seconds_per_image": per}
    (out / "detectors.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"-> {out / 'detectors.json'}")


if __name__ == "__main__":
    main()
