"""The robust StyleGAN restoration table (seed 003, Tables 1-2) on our data, for any generator.

For each task x level (and the 11 compositions at level M): degrade ground-truth crops, then
restore with the 3-phase robust inversion (ours) and the two baselines (Adam in W, PULSE-style;
Adam in W+), each with the same number of steps (450 x --steps). Reports

* accuracy: LPIPS(prediction, ground truth)   (also PSNR/SSIM, which need no weights)
* fidelity: LPIPS(true degradation of the prediction, degraded target)   (also PSNR); the
  prediction is degraded with the target's seed, so it gets the same filter, dead pixels and
  strokes (the Poisson noise itself depends on the image and differs); LPIPS alex needs 31 px,
  so degraded targets smaller than that (upsampling at 64 px) report PSNR only
* realism: patch-FID of prediction crops vs ground-truth crops (needs Inception weights)

with the degraded input as a reference row, and seconds per image and peak memory. Numbers that
need absent weights say "absent". Ground truth: random crops (fixed by --seed) of the images in
--data at the generator's resolution.

    python benchmarks/robust_inversion.py --generator G.safetensors --data ../shared/data/photos/val
    python benchmarks/robust_inversion.py --tiny-random --steps 0.02 --tasks denoise --levels M   # smoke run
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from _common import VAL_PHOTOS
from genrestore import weights as ws
from genrestore._checks import InputError
from genrestore._random import generator_for
from genrestore.degrade import COMPOSITIONS, LEVELS, TASKS, get_task, resize
from genrestore.io import list_images, read_image
from genrestore.metrics import psnr, ssim
from genrestore.metrics.lpips import check_lpips_size
from genrestore.restore.stylegan_inversion import InversionConfig, adam_invert, perceptual_loss, robust_invert



def ground_truth(data: str, resolution: int, count: int, seed: int) -> torch.Tensor:
    """``count`` crops (round-robin over the images, positions from ``seed``), resized to ``resolution``."""
    paths = list_images([data])
    out = []
    for i in range(count):
        p = paths[i % len(paths)]
        x = read_image(p, "rgb")
        h, w = x.shape[-2:]
        side = min(h, w, 4 * resolution)
        g = generator_for(seed, f"{p.name}:{i}")
        y0 = int(torch.randint(h - side + 1, (1,), generator=g))
        x0 = int(torch.randint(w - side + 1, (1,), generator=g))
        out.append(resize(x[..., y0:y0 + side, x0:x0 + side], (resolution, resolution), "area").clamp(0, 1))
    return torch.cat(out)


def _lpips_metric():
    from genrestore.metrics.lpips import BACKBONE_WEIGHT, lpips

    if ws.find(BACKBONE_WEIGHT["alex"]) is None:
        return None
    return lambda a, b: lpips(a, b, "alex")


def _fidelity_lpips(lp, redegraded: torch.Tensor | None, y: torch.Tensor) -> str:
    """The fidelity LPIPS cell: "-" for the input's row, "absent" without the AlexNet weights, and
    "too small" where the degraded target fails LPIPS alex's own size check (upsampling at 64 px
    goes to 8 px)."""
    if redegraded is None:
        return "-"
    if lp is None:
        return "absent"
    try:
        check_lpips_size(*y.shape[-2:], "alex")
    except InputError:
        return f"too small ({y.shape[-1]} px)"
    return f"{lp(redegraded, y).mean().item():.4f}"


def _pfid(pred: torch.Tensor, gt: torch.Tensor, seed: int) -> str:
    if ws.find("inception-fid") is None:
        return "absent"
    from genrestore.metrics.fid import InceptionFeatures, SetFeatures, random_crops, set_metrics

    ext, a, b = InceptionFeatures(pred.device), SetFeatures(), SetFeatures()
    size = max(16, pred.shape[-1] // 2)
    a.add(*ext(random_crops(gt, size, 64, generator_for(seed, "gt"))))
    b.add(*ext(random_crops(pred, size, 64, generator_for(seed, "pred"))))
    return f"{set_metrics(a, b, ['pfid'])['pfid']:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--generator", help="StyleGAN2 .safetensors (+ .json)")
    ap.add_argument("--tiny-random", action="store_true", help="a tiny random generator (smoke test of the script)")
    ap.add_argument("--data", default=str(VAL_PHOTOS))
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--tasks", default="upsample,denoise,deartifact,inpaint,compositions")
    ap.add_argument("--levels", default=",".join(LEVELS))
    ap.add_argument("--steps", type=float, default=1.0, help="scale of 150 steps per phase (baselines: 450 x it)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if args.tiny_random:
        from genrestore.models.stylegan2 import StyleGAN2Generator

        torch.manual_seed(0)
        G = StyleGAN2Generator(z_dim=32, w_dim=32, resolution=32, channel_base=256, channel_max=32, n_mapping_layers=2)
        G.estimate_w_avg(1000, generator=torch.Generator().manual_seed(0))
        G = G.to(device).eval()
    else:
        from genrestore.models.stylegan2 import load_stylegan2

        G = load_stylegan2(args.generator, device)
    gt = ground_truth(args.data, G.resolution, args.images, args.seed).to(device)
    names = []
    for t in args.tasks.split(","):
        if t == "compositions":
            names += [(c, "M") for c in COMPOSITIONS]
        elif t in TASKS:
            names += [(t, lv) for lv in args.levels.split(",")]
        else:
            raise SystemExit(f"unknown task {t!r}")
    cfg = InversionConfig(step_scale=args.steps)
    total_steps = sum(cfg.phase_steps())
    distance = perceptual_loss("vgg", device)
    lp = _lpips_metric()
    print(f"generator {args.generator or 'tiny random'} ({G.resolution} px), {args.images} crops of {args.data}, "
          f"{total_steps} steps per method, loss {distance[1]}, device {device}")
    print("| task | level | method | accuracy LPIPS | PSNR | SSIM | fidelity LPIPS | fidelity PSNR | pFID | s/img |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    cells = 0
    wins = {"LPIPS": 0, "PSNR": 0, "SSIM": 0}  # cells where ours is the most accurate of the three inversions
    for name, level in names:
        task = get_task(name, level)
        g = generator_for(args.seed, f"{name}:{level}")
        y, params = task.degrade_with_params(gt, g)
        rows = {}
        runs = {"ours": lambda: robust_invert(G, y, task, params, cfg, distance, generator_for(args.seed, "o"),
                                              progress=False).final,
                "Adam W": lambda: adam_invert(G, y, task, params, "w", 450, config=cfg, distance=distance,
                                              generator=generator_for(args.seed, "w"), progress=False).final,
                "Adam W+": lambda: adam_invert(G, y, task, params, "w+", 450, config=cfg, distance=distance,
                                               generator=generator_for(args.seed, "wp"), progress=False).final}
        degraded_ref = resize(y, tuple(gt.shape[-2:]), "bicubic").clamp(0, 1) if y.shape != gt.shape else y
        rows["degraded input"] = (degraded_ref, 0.0)
        for method, run in runs.items():
            t0 = time.perf_counter()
            pred = run().clamp(0, 1)
            rows[method] = (pred, (time.perf_counter() - t0) / len(gt))
        accs = {}
        for method, (pred, secs) in rows.items():
            acc = lp(pred, gt).mean().item() if lp else None
            accs[method] = {"LPIPS": acc, "PSNR": psnr(pred, gt).mean().item(), "SSIM": ssim(pred, gt).mean().item()}
            redegraded = task.degrade(pred, generator_for(args.seed, f"{name}:{level}")) \
                if method != "degraded input" else None
            fid_psnr = f"{psnr(redegraded, y).mean().item():.2f}" if redegraded is not None else "-"
            print(f"| {name} | {level} | {method} | {f'{acc:.4f}' if acc is not None else 'absent'} | "
                  f"{accs[method]['PSNR']:.2f} | {accs[method]['SSIM']:.4f} | "
                  f"{_fidelity_lpips(lp, redegraded, y)} | "
                  f"{fid_psnr} | {_pfid(pred, gt, args.seed)} | {secs:.2f} |")
        cells += 1
        baselines = (accs["Adam W"], accs["Adam W+"])
        if lp:
            wins["LPIPS"] += accs["ours"]["LPIPS"] < min(b["LPIPS"] for b in baselines)
        wins["PSNR"] += accs["ours"]["PSNR"] > max(b["PSNR"] for b in baselines)
        wins["SSIM"] += accs["ours"]["SSIM"] > max(b["SSIM"] for b in baselines)
    print()
    for metric, n in wins.items():
        if metric == "LPIPS" and not lp:
            print("ours most accurate by LPIPS: absent (add alexnet-torchvision to the weight store: genrestore weights add)")
        else:
            print(f"ours most accurate by {metric} in {n} of {cells} task x level cells")
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory: {peak:.0f} MiB ({'CUDA allocated' if device.type == 'cuda' else 'process RSS'})")


if __name__ == "__main__":
    main()
