"""CLI verb ``restore``: robust StyleGAN2 inversion of degraded images (seed 003)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

from ._checks import InputError


def _mask_for(path: Path, mask_dir: Path | None, size: tuple[int, int]) -> torch.Tensor:
    from .io import read_image

    if mask_dir is None:
        raise InputError("inpainting needs the known masks: pass --masks DIR (genrestore degrade writes NAME_mask.png)")
    m = mask_dir / f"{path.stem}_mask.png"
    if not m.is_file():
        raise InputError(f"{path}: no mask {m}")
    mask = read_image(m, "gray")
    if tuple(mask.shape[-2:]) != size:
        raise InputError(f"{m}: mask is {mask.shape[-1]}x{mask.shape[-2]} px, image {size[1]}x{size[0]} px")
    return (mask > 0.5).float()


def cmd_restore(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ._random import generator_for
    from .cli import _plan_outputs, _validate_inputs, resolve_device
    from .cli_sr import _list_inputs
    from .degrade import get_task, resize
    from .io import atomic_write_bytes, read_image, write_image
    from .models.stylegan2 import load_stylegan2
    from .restore.stylegan_inversion import InversionConfig, perceptual_loss, robust_invert

    if args.method != "stylegan-inversion":
        raise InputError(f"unknown method {args.method!r}")
    paths = _list_inputs(args.inputs)
    sizes = _validate_inputs(paths)
    device = resolve_device(args.device)
    task = get_task(args.task, args.level)
    G = load_stylegan2(args.generator, device)
    expected = tuple(task.output_size((G.resolution, G.resolution)))
    out_dir = Path(args.output)
    _plan_outputs(paths, out_dir, ["{stem}.png", "{stem}.json"])
    distance = perceptual_loss("vgg", device)
    if not distance[1].startswith("lpips"):
        print(f"genrestore: note: loss {distance[1]}", file=sys.stderr)
    cfg = InversionConfig(step_scale=args.steps)
    from .degrade.tasks import Composition, Inpaint

    stages = task.tasks if isinstance(task, Composition) else (task,)
    inpaint = any(isinstance(t, Inpaint) for t in stages)  # last in a composition (order U, N, A, P)
    for path, hw in tqdm(list(zip(paths, sizes)), desc="restore", unit="img", file=sys.stderr, disable=args.quiet):
        if abs(hw[0] / hw[1] - expected[0] / expected[1]) > 1e-6:
            raise InputError(f"{path}: {hw[1]}x{hw[0]} px has another aspect than the {expected[1]}x{expected[0]} px "
                             f"that task {args.task} makes from the generator's {G.resolution} px images")
        y = read_image(path, "rgb").to(device)
        if tuple(y.shape[-2:]) != expected:
            warnings.warn(f"{path}: resized from {hw[1]}x{hw[0]} to {expected[1]}x{expected[0]} px for the generator")
            y = resize(y, expected, "area" if hw[0] > expected[0] else "bicubic").clamp(0, 1)
        params = None
        if inpaint:
            mask = _mask_for(path, Path(args.masks) if args.masks else None, tuple(hw))
            if tuple(mask.shape[-2:]) != expected:
                mask = (resize(mask, expected, "area") > 0.5).float()
            params = {"mask": mask.to(device)}
            if isinstance(task, Composition):
                params = {"stages": [None] * (len(stages) - 1) + [params]}
        gen = generator_for(args.seed, path.name)
        res = robust_invert(G, y, task, params, cfg, distance, gen, progress=not args.quiet)
        write_image(out_dir / f"{path.stem}.png", res.final.clamp(0, 1))
        record = {"input": str(path), "output": str(out_dir / f"{path.stem}.png"), "method": args.method,
                  "task": args.task, "level": args.level, "generator": str(args.generator), "loss": res.loss,
                  "steps": cfg.phase_steps(), "lrs": list(cfg.lrs), "seed": args.seed,
                  "final_loss": {k: v[-1] for k, v in res.losses.items()}}
        atomic_write_bytes(out_dir / f"{path.stem}.json", (json.dumps(record, indent=1) + "\n").encode())
        if args.json:
            print(json.dumps(record), flush=True)
    if not args.json:
        print(f"{len(paths)} restored by {args.method} ({args.task} {args.level}, loss {distance[1]}) -> {out_dir}")
    return 0


def add_parser(sub) -> None:
    r = sub.add_parser("restore", help="restore degraded images (robust StyleGAN2 inversion)",
                       description="Inverts the task's differentiable surrogate through a StyleGAN2 generator in 3 "
                                   "phases (W, W+, W++) with normalized gradient descent. Example: genrestore restore "
                                   "noisy/ -o out/ --method stylegan-inversion --task denoise --level M "
                                   "--generator G.safetensors")
    r.add_argument("inputs", nargs="+", metavar="INPUT", help="degraded RGB images, folders or globs")
    r.add_argument("-o", "--output", required=True, metavar="OUT")
    r.add_argument("--method", default="stylegan-inversion", choices=("stylegan-inversion",))
    r.add_argument("--task", required=True, help="the degradation to invert: a task (upsample, denoise, deartifact, "
                   "inpaint) or a composition (e.g. UNAP)")
    r.add_argument("--level", default="M", choices=("XS", "S", "M", "L", "XL"))
    r.add_argument("--generator", required=True, help="StyleGAN2 .safetensors (+ .json), e.g. from "
                   "`genrestore weights convert network-snapshot.pkl G.safetensors`")
    r.add_argument("--masks", metavar="DIR", help="inpainting: folder with NAME_mask.png (1 = kept)")
    r.add_argument("--steps", type=float, default=1.0, help="scale of the 150 steps per phase (0.1 for a quick run)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    r.add_argument("--json", action="store_true")
    r.add_argument("-q", "--quiet", action="store_true")
    r.set_defaults(func=cmd_restore)
