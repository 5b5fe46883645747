"""DeSRA evaluation: detection on a GAN-SR model before and after fine-tuning, on LR images made
from the validation photos with Real-ESRGAN's second-order degradation.

Prints, for the original and the fine-tuned GAN-SR model: fraction of pixels detected, region
count, removal and addition rates (DeSRA §4.3), PSNR / SSIM (RGB) and LPIPS (when its weights
are present) against the HR photo; writes a side-by-side grid; and times SR + detection per
256x256 LR image on the CPU (and the GPU when there is one).

    python benchmarks/desra.py --gan realesrgan-x4plus --mse rdn-x4 \
        --finetuned runs/desra/realesrgan-x4plus-desra.safetensors -o bench_out/desra
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from _common import VAL_PHOTOS
from genrestore._random import generator_for
from genrestore.degrade import PIPELINES
from genrestore.detect import detect_artifacts, make_segmenter
from genrestore.io import list_images, read_image, write_image
from genrestore.metrics import change_counts, psnr, ssim
from genrestore.metrics.detection import ChangeCounts
from genrestore.models.sr import load_sr, upscale
from genrestore.viz import contact_sheet



def make_lr(hr_paths: list[Path], crop: int, seed: int, degradation: str = "realesrgan-x4"
            ) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """Centre ``crop`` px HR crops and their x4 LR images (seeded by file name): Real-ESRGAN's
    second-order degradation, or ``bicubic`` (Pillow bicubic x4, 8-bit), the SR-benchmark setting."""
    from genrestore.degrade import resize_8bit

    deg = PIPELINES["realesrgan-x4"]
    out = []
    for p in hr_paths:
        x = read_image(p, "rgb")
        h, w = x.shape[-2:]
        c = min(crop, h, w) // 4 * 4
        hr = x[..., (h - c) // 2:(h - c) // 2 + c, (w - c) // 2:(w - c) // 2 + c]
        lr = (resize_8bit(hr, (c // 4, c // 4), "bicubic") if degradation == "bicubic"
              else deg.degrade(hr, generator_for(seed, p.name)))
        out.append((p.stem, hr, lr))
    return out


def _lpips():
    from genrestore import weights as ws

    if ws.find("alexnet-torchvision") is None:
        return None
    from genrestore.metrics.lpips import lpips

    return lambda a, b: float(lpips(a, b, net="alex")[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gan", default="realesrgan-x4plus")
    ap.add_argument("--mse", default="rdn-x4")
    ap.add_argument("--finetuned", help="fine-tuned GAN-SR .safetensors (from genrestore train desra)")
    ap.add_argument("--hr", default=str(VAL_PHOTOS), help="HR photos (default: the shared validation photos)")
    ap.add_argument("--crop", type=int, default=512, help="HR crop side, px (LR is a quarter of it)")
    ap.add_argument("--degradation", choices=("realesrgan-x4", "bicubic"), default="realesrgan-x4")
    ap.add_argument("--tile", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("-o", "--output", default="bench_out/desra")
    args = ap.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    out = Path(args.output)
    data = make_lr(list_images([args.hr]), args.crop, args.seed, args.degradation)
    mse = load_sr(args.mse, device)
    models = {"original": load_sr(args.gan, device)}
    if args.finetuned:
        models["fine-tuned"] = load_sr(args.finetuned, device)
    seg = make_segmenter("texture")
    lp = _lpips()
    rows, labels = [], []
    stats = {k: {"fraction": 0.0, "regions": 0, "psnr": 0.0, "ssim": 0.0, "lpips": 0.0} for k in models}
    changes = ChangeCounts()
    for name, hr, lr in data:
        hr, lr = hr.to(device), lr.to(device)
        y_mse = upscale(mse, lr, args.tile)
        masks, row = {}, [torch.nn.functional.interpolate(lr, scale_factor=4, mode="nearest"), y_mse]
        for k, net in models.items():
            y = upscale(net, lr, args.tile)
            det = detect_artifacts(y, y_mse, seg, scale=4)
            masks[k] = det.mask[0, 0]
            s = stats[k]
            s["fraction"] += float(det.fraction()[0]) / len(data)
            s["regions"] += len(det.regions[0])
            s["psnr"] += float(psnr(y, hr)[0]) / len(data)
            s["ssim"] += float(ssim(y, hr)[0]) / len(data)
            s["lpips"] += (lp(y, hr) if lp else float("nan")) / len(data)
            from genrestore.cli_sr import overlay

            row.append(overlay(y, det.mask))
            write_image(out / f"{name}_{k}.png", y)
            write_image(out / f"{name}_{k}_mask.png", det.mask.float())
        if "fine-tuned" in masks:
            changes = changes + change_counts(masks["original"], masks["fine-tuned"])
        rows.append([*row, hr])
        labels.append(name[:12])
    write_image(out / "grid.png", contact_sheet(rows, labels, ["LR", f"MSE-SR {args.mse}", *models, "HR"], cell=256))

    print(f"\nDeSRA on {len(data)} val photos, {args.crop} px HR crops, x4 LR by {args.degradation} (seed {args.seed}); "
          f"GAN-SR {args.gan}, MSE-SR {args.mse}, segmenter texture; device {device}")
    print("| model | detected px | regions | removal | addition | PSNR | SSIM | LPIPS |")
    print("|---|---|---|---|---|---|---|---|")
    for k, s in stats.items():
        rem = add = "-"
        if k != "original":  # both rates are over the original's regions: undefined without any, so '-'
            rem, add = ((f"{100 * changes.removal_rate:.1f} % ", f"{100 * changes.addition_rate:.1f} % ")
                        if changes.old else ("- ", "- "))
            rem, add = rem + f"({changes.removed}/{changes.old})", add + f"({changes.added} new)"
        lps = f"{s['lpips']:.4f}" if lp else "absent (alexnet weights)"
        print(f"| {k} | {100 * s['fraction']:.2f} % | {s['regions']} | {rem} | {add} | {s['psnr']:.2f} | "
              f"{s['ssim']:.4f} | {lps} |")

    # time per 256x256 LR image: GAN-SR + MSE-SR + detection
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print("\n| device | GAN-SR s | MSE-SR s | detection s | total s (256x256 LR -> 1024x1024) |")
    print("|---|---|---|---|---|")
    lr = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    for dev in devices:
        g, m = load_sr(args.gan, dev), load_sr(args.mse, dev)
        x = lr.to(dev)
        times = []
        for f in (lambda: upscale(g, x, args.tile), lambda: upscale(m, x, args.tile)):
            f()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            y = f()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        yg, ym = upscale(g, x, args.tile), upscale(m, x, args.tile)
        t = time.perf_counter()
        detect_artifacts(yg, ym, seg, scale=4)
        times.append(time.perf_counter() - t)
        print(f"| {dev.type} | {times[0]:.2f} | {times[1]:.2f} | {times[2]:.2f} | {sum(times):.2f} |")
    (out / "summary.json").write_text(json.dumps({"stats": stats, "changes": vars(changes)}, indent=1))


if __name__ == "__main__":
    main()
