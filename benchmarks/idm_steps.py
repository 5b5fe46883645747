"""IDM's sampling-steps ablation (seed 002, Table 6) on the ``idm`` suite's validation crops.

For each number of DDPM steps, restores the suite's ground-truth crops degraded by the IDM
pipeline (the same crops, degradations and per-image seeds as ``genrestore bench idm``) and
prints PSNR, SSIM (RGB) and LPIPS (AlexNet, when ``alexnet-torchvision`` is in the weight store)
against the truth, NIQE (no-reference, shipped pristine model; lower is
more natural; crops of at least 192 px) and seconds per image on this machine. The degraded input
and, when given, a regression UNet (``train idm --regression``: one network call) are reference
rows. The paper finds 10 steps enough (no gain from 15 or 20).

    python benchmarks/idm_steps.py --model idm-default --regression runs/regression-cpu/model.safetensors
    python benchmarks/idm_steps.py --model idm-default --steps 1,5,10,20 --crop 256
    python benchmarks/idm_steps.py --model idm-default --steps 5,10,20 --crop 256 --sampler ddim --eta 0

``--sampler ddim`` samples the IDM rows with DDIM (``IDMRestorer.restore(..., sampler="ddim",
eta=ETA)``) instead of IDM's DDPM, from the same noise seeds.
"""

from __future__ import annotations

import argparse
import time

import torch

from genrestore._checks import InputError
from genrestore._random import generator_for
from genrestore.bench.methods import metric_functions
from genrestore.bench.suite import ground_truth, load_suite
from genrestore.degrade import PIPELINES
from genrestore.restore.idm import IDMRestorer

METRICS = ["psnr", "ssim", "lpips", "niqe"]


def evaluate(restore, pairs, fns: dict) -> dict[str, float | None]:
    """Mean of each metric in ``fns`` (``None`` when it gave ``None`` for any crop: an absent
    weight, NIQE on crops under 192 px) and mean ``seconds`` of ``restore(y, key)``."""
    sums, missing, seconds = dict.fromkeys(fns, 0.0), set(), 0.0
    for key, x, y in pairs:
        t0 = time.perf_counter()
        out = restore(y, key)
        seconds += time.perf_counter() - t0
        for name, f in fns.items():
            v = f(out, x)
            if v is None:
                missing.add(name)
            else:
                sums[name] += v
    k = len(pairs)
    means = {name: None if name in missing else total / k for name, total in sums.items()}
    return {**means, "seconds": seconds / k}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="idm-default", help="IDM model: a file or weight name")
    ap.add_argument("--regression", help="a regression UNet for a reference row")
    ap.add_argument("--steps", default="1,5,10,20", help="comma-separated DDPM step counts")
    ap.add_argument("--images", help="folder of photos (default: the idm suite's)")
    ap.add_argument("--count", type=int, help="crops (default: the suite's 6)")
    ap.add_argument("--crop", type=int, help="crop side, px (default: the suite's 128)")
    ap.add_argument("--sampler", default="ddpm", choices=("ddpm", "ddim"), help="the IDM rows' sampler (IDM: ddpm)")
    ap.add_argument("--eta", type=float, default=0.0, help="--sampler ddim: eta (0: deterministic)")
    args = ap.parse_args()
    try:
        steps = [int(s) for s in args.steps.split(",") if s]
        suite = load_suite("idm", images=args.images)
        suite.count, suite.crop = args.count or suite.count, args.crop or suite.crop
        pairs = []
        for img, x in ground_truth(suite):
            key = f"{img}:idm:M"  # the harness's key: the same degradation and sampling seed
            y, _ = PIPELINES["idm"].degrade_with_params(x, generator_for(suite.seed, key))
            pairs.append((key, x, y))
        model = IDMRestorer.from_file(args.model)
        fns, notes = metric_functions(METRICS)
        rows = [("degraded input", None, evaluate(lambda y, key: y, pairs, fns))]
        if args.regression:
            reg = IDMRestorer.from_file(args.regression)
            rows.append(("regression UNet", 1, evaluate(lambda y, key: reg.restore(y, 1, [generator_for(suite.seed, key)]),
                                                        pairs, fns)))
        how = "" if args.sampler == "ddpm" else f" (DDIM, eta {args.eta:g})"
        for n in steps:
            restore = lambda y, key, n=n: model.restore(y, n, [generator_for(suite.seed, key)], sampler=args.sampler,
                                                        eta=args.eta)
            rows.append((f"IDM{how}, {n} step{'s' if n > 1 else ''}", n, evaluate(restore, pairs, fns)))
    except (InputError, ValueError) as e:
        raise SystemExit(f"idm_steps: error: {e}") from None
    print(f"{suite.count} crops of {suite.crop} px from {suite.images.resolve()} (seed {suite.seed}), IDM degradation; "
          f"model {args.model}; {torch.get_num_threads()} CPU threads")
    for note in notes:
        print("note:", note)
    print("| method | network calls | PSNR | SSIM | LPIPS | NIQE | s / image |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, nfe, r in rows:
        lpips_cell = "-" if r["lpips"] is None else f"{r['lpips']:.4f}"
        niqe_cell = "-" if r["niqe"] is None else f"{r['niqe']:.2f}"
        print(f"| {name} | {nfe or '-'} | {r['psnr']:.2f} | {r['ssim']:.4f} | {lpips_cell} | {niqe_cell} "
              f"| {r['seconds']:.3f} |")


if __name__ == "__main__":
    main()
