"""CLI verb ``restore``: IDM (the default), DiffGAR, learned inpainting and robust StyleGAN2 inversion
of degraded images, one PNG and one JSON record per input."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from ._argtypes import DEVICE_HELP, nonneg_float, nonneg_int, positive_int, unit_float
from ._checks import InputError
from .models.precision import HALF_RULE

DEFAULT_IDM = "idm-default"  # the shipped IDM restorer (genrestore/weights/idm-default.*)


def _mask_for(path: Path, mask_dir: Path | None, size: tuple[int, int], binarize: bool = True) -> torch.Tensor:
    """NAME_mask.png from ``mask_dir`` as a ``(1, 1, H, W)`` keep-mask: thresholded at 1/2, or
    (``binarize=False``) as written, fractional on antialiased stroke edges."""
    from .io import read_image

    if mask_dir is None:
        raise InputError("inpainting needs the known masks: pass --masks DIR (genrestore degrade writes NAME_mask.png)")
    m = mask_dir / f"{path.stem}_mask.png"
    if not m.is_file():
        raise InputError(f"{path}: no mask {m}")
    mask = read_image(m, "gray")
    if tuple(mask.shape[-2:]) != size:
        raise InputError(f"{m}: mask is {mask.shape[-1]}x{mask.shape[-2]} px, image {size[1]}x{size[0]} px")
    return (mask > 0.5).float() if binarize else mask


def _diffusion_steps(args: argparse.Namespace, default: int, what: str) -> int:
    steps = default if args.steps is None else args.steps
    if not math.isfinite(steps) or steps != int(steps) or not 1 <= steps <= 1000:
        raise InputError(f"--steps for {what} is the number of sampling steps, 1..1000; got {steps:g}")
    return int(steps)


EXTRINSIC_TILE_PAD = 16  # px: train idm --extrinsic-from restores the data with restore's default --tile-pad


def check_restorer_tiling(restorer, tile: int, tile_pad: int, options: tuple[str, str] = ("--tile", "--tile-pad")) -> None:
    """Refuse a ``tile`` / ``tile_pad`` that ``restorer`` (IDM, DiffGAR) would refuse at its first
    image, right after it is loaded, naming the ``options`` that set them."""
    from .restore.idm import TILE_BLEND, check_tile

    try:
        check_tile(tile, tile_pad, TILE_BLEND, restorer.multiple)
    except InputError:
        overlap = 2 * tile_pad + TILE_BLEND
        raise InputError(f"{options[0]} {tile} must be 0 or a multiple of {restorer.multiple} (the model's size "
                         f"multiple) larger than 2 * {options[1]} + {TILE_BLEND} = {overlap} (tiles overlap by that "
                         f"much)") from None


def _like_input(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The RGB restoration ``x`` in the channels of the input ``y``: a grey (or grey+alpha) input
    gives the luma of ``x`` (BT.601), an input with alpha gets its alpha back (bilinear when ``x``
    has another size, e.g. DiffGAR's ``--upscale``)."""
    from .io import convert_channels

    if y.shape[1] in (1, 2):
        x = convert_channels(x, "gray").clamp(0, 1)
    if y.shape[1] in (2, 4):
        alpha = y[:, -1:].to(x.device, x.dtype)
        if alpha.shape[-2:] != x.shape[-2:]:
            alpha = torch.nn.functional.interpolate(alpha, size=x.shape[-2:], mode="bilinear").clamp(0, 1)
        return torch.cat([x, alpha], 1)
    return x


def _restore_each(args: argparse.Namespace, device, restore_one, record: dict, label: str,
                  select=None, check=None) -> int:
    """The loop shared by the diffusion restorers: check all inputs, plan outputs, restore each
    image with ``restore_one(y, generator, path)`` (per-image seed from the file name), write PNG + JSON.

    ``select(paths) -> paths`` picks the inputs among all listed files, before sharding (e.g. drops
    inpainting masks); ``check(paths, sizes)`` then checks what each image of this shard needs, by
    its ``(H, W)`` (e.g. its mask)."""
    from tqdm import tqdm

    from ._random import generator_for
    from .cli import _output_format, _plan_outputs, _read_input, _shard, _validate_inputs
    from .io import atomic_write_bytes, convert_channels, json_line, list_images, outputs_recorded, write_image_hashed
    from .models.precision import half_name
    from .weights import model_file, sha256_file

    all_paths = list_images(args.inputs)  # outputs are planned on all of them: shards together are one run
    if select is not None:
        all_paths = select(all_paths)
    paths = _shard(all_paths, args.shard)
    sizes = _validate_inputs(paths, progress=not args.quiet)
    if check is not None:
        check(paths, sizes)
    out_dir = Path(args.output)
    _plan_outputs(all_paths, out_dir, ["{stem}.png", "{stem}.json"])
    # the 16-bit dtype, or None (float32): records made before --half (no key) still match on --resume
    half = half_name(device, args.half)
    record = {**record, "model_sha256": sha256_file(model_file(record["model"])), "seed": args.seed, "half": half}
    label = f"{label} in {half}" if half else label
    skipped = 0
    for path in tqdm(paths, desc="restore", unit="img", file=sys.stderr, disable=args.quiet):
        out_png, out_json = out_dir / f"{path.stem}.png", out_dir / f"{path.stem}.json"
        y, bits = _read_input(path)  # read first: the resume check compares its channels and bits
        if args.resume and outputs_recorded(out_json, {"input": str(path), **record,
                                                       **_output_format(y.shape[1], bits)}, [out_png]):
            skipped += 1
            continue
        x = restore_one(convert_channels(y, "rgb").to(device), generator_for(args.seed, path.name), path)
        x = _like_input(x, y)
        hashes: dict[str, str] = {}
        write_image_hashed(out_png, x, hashes, bits)
        rec = {"input": str(path), "output": str(out_png), **record, "channels": y.shape[1], "bits": bits,
               "sha256": hashes}
        atomic_write_bytes(out_json, (json.dumps(rec, indent=1) + "\n").encode())
        if args.json:
            print(json_line(rec), flush=True)
    if not args.json:
        print(f"{len(paths) - skipped} restored by {label}, {skipped} already done -> {out_dir}")
    return 0


def cmd_restore_idm(args: argparse.Namespace) -> int:
    from .cli import counted, resolve_device
    from .restore.idm import IDMRestorer

    args.model = args.model or DEFAULT_IDM
    steps = _diffusion_steps(args, 10, "IDM (DDPM)")
    device = resolve_device(args.device)
    restorer = IDMRestorer.from_file(args.model, device)
    check_restorer_tiling(restorer, args.tile, args.tile_pad)
    ddim = {"eta": args.eta} if args.sampler == "ddim" else {}
    return _restore_each(args, device, lambda y, g, _: restorer.restore(y, steps, g, args.tile, args.tile_pad,
                                                                        half=args.half, sampler=args.sampler,
                                                                        eta=args.eta),
                         {"method": "idm", "model": str(args.model), "steps": steps, "sampler": args.sampler, **ddim,
                          "tile": args.tile, "tile_pad": args.tile_pad},
                         f"IDM ({counted(steps, 'DDIM step')}, eta {args.eta:g})" if ddim
                         else f"IDM ({counted(steps, 'step')})")


def cmd_restore_diffgar(args: argparse.Namespace) -> int:
    from .cli import counted, resolve_device
    from .degrade import resize
    from .restore.diffgar import DiffGARRestorer

    if not args.model:
        raise InputError("no DiffGAR weights ship yet: train a model with `genrestore train diffgar --data DIR -o RUN` "
                         "and pass --model RUN/model.safetensors")
    steps = _diffusion_steps(args, 30, "DiffGAR (DDIM)")
    device = resolve_device(args.device)
    restorer = DiffGARRestorer.from_file(args.model, device, autoencoder=args.autoencoder)
    if args.mode == "blind" and args.artifact is not None:
        raise InputError(f"--mode blind restores without a class; drop --artifact {args.artifact}, or use --mode "
                         "non-blind or guided")
    if args.mode != "blind" and args.artifact is None:
        raise InputError(f"--mode {args.mode} needs --artifact, one of {restorer.class_names}")
    restorer.sampling_args(args.mode, args.artifact, args.guidance_scale, 1, device)  # checks the class up front
    check_restorer_tiling(restorer, args.tile, args.tile_pad)

    def restore_one(y, g, _path):
        if args.upscale > 1:  # DiffGAR conditions on images at the output size (upsampling: bicubic first)
            y = resize(y, (y.shape[-2] * args.upscale, y.shape[-1] * args.upscale), "bicubic").clamp(0, 1)
        return restorer.restore(y, args.mode, args.artifact, args.guidance_scale, steps, [g], args.tile, args.tile_pad,
                                half=args.half)

    def check(paths, sizes):  # the (upscaled) images fit in memory, before the first one is sampled
        from .cli_sr import available_bytes, check_output_memory

        avail = available_bytes(device)
        at = f"at --upscale {args.upscale}" if args.upscale > 1 else "of DiffGAR"
        advice = "use a smaller --upscale" if args.upscale > 1 else "restore crops of the image"
        for p, (h, w) in zip(paths, sizes):  # float32 condition, noise, sample, output and tile blending buffers
            check_output_memory(p, (h * args.upscale, w * args.upscale), 8, avail, at, advice)

    scale = args.guidance_scale if args.mode == "guided" else 1.0
    return _restore_each(args, device, restore_one, {"method": "diffgar", "model": str(args.model), "mode": args.mode,
                                             "artifact": args.artifact, "guidance_scale": scale, "steps": steps,
                                             "tile": args.tile, "tile_pad": args.tile_pad, "upscale": args.upscale,
                                             "autoencoder": args.autoencoder},
                         f"DiffGAR ({args.mode}, {counted(steps, 'DDIM step')})", check=check)


def cmd_restore_inpaint(args: argparse.Namespace) -> int:
    from .cli import counted, resolve_device
    from .restore.inpaint import Inpainter

    if not args.model:
        from .weights import REGISTRY

        shipped = ", ".join(n for n in REGISTRY if n.startswith("inpaint-"))
        raise InputError(f"inpainting needs --model: a shipped inpainter ({shipped}) or one from `genrestore train "
                         "inpaint` (its .safetensors with the .json beside it)")
    if not args.masks:
        raise InputError("inpainting needs the known masks: pass --masks DIR (genrestore degrade writes NAME_mask.png)")
    device = resolve_device(args.device)
    inpainter = Inpainter.from_file(args.model, device)
    if inpainter.kind == "diffusion":
        steps = _diffusion_steps(args, inpainter.default_steps, "the diffusion inpainter (DDPM)")
    elif args.steps not in (None, inpainter.default_steps):
        raise InputError(f"a {inpainter.kind} inpainter always runs its {inpainter.default_steps} step(s); "
                         f"drop --steps (got {args.steps:g})")
    else:
        steps = inpainter.default_steps

    def restore_one(y, g, path):
        # as written: the inpainter refills every pixel below 1 (an antialiased edge of y = x * m is attenuated)
        mask = _mask_for(path, Path(args.masks), tuple(y.shape[-2:]), binarize=False).to(device)
        return inpainter.inpaint(y, mask, [g], steps, half=args.half)

    def check(paths, sizes):  # every mask is there, decodes and has its image's size, before the first image
        _check_masks(paths, sizes, Path(args.masks))

    return _restore_each(args, device, restore_one, {"method": "inpaint", "model": str(args.model),
                                                     "inpainter": inpainter.kind, "steps": steps},
                         f"the {inpainter.kind} inpainter ({counted(steps, 'network call')} each)", _without_masks, check)


def _without_masks(paths: list[Path]) -> list[Path]:
    """``paths`` less the masks among them: `genrestore degrade` writes ``NAME_mask.png`` beside
    ``NAME.png``, and an inpainter reads the folder of the one as the masks of the other."""
    names = {p.name for p in paths}
    return [p for p in paths if not (p.stem.endswith("_mask") and f"{p.stem[:-5]}{p.suffix}" in names)]


def _check_masks(paths: list[Path], sizes: list, masks: Path | None) -> None:
    """Every image's mask ``masks/STEM_mask.png`` is there (all missing ones counted in one
    message), decodes and has its image's size."""
    if masks is not None:
        if not masks.is_dir():
            raise InputError(f"--masks {masks}: no such folder (it holds NAME_mask.png for each image)")
        missing = [p for p in paths if not (masks / f"{p.stem}_mask.png").is_file()]
        if missing:
            raise InputError(f"{missing[0]}: no mask {masks / (missing[0].stem + '_mask.png')}"
                             + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    for p, hw in zip(paths, sizes):
        _mask_for(p, masks, tuple(hw))  # without --masks: the message that asks for it


# the options only some restore methods take (the others: every method)
_METHOD_OPTIONS = {
    "idm": {"model", "sampler", "eta", "tile", "tile_pad", "half"},
    "diffgar": {"model", "mode", "artifact", "guidance_scale", "autoencoder", "upscale", "tile", "tile_pad", "half"},
    "inpaint": {"model", "masks", "half"},
    "stylegan-inversion": {"task", "level", "generator", "masks"},
}


def cmd_restore(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ._random import generator_for
    from .cli import (_makes_mask, _one_line, _output_format, _plan_outputs, _read_input, _refuse_given, _shard,
                      _validate_inputs, resolve_device)
    from .degrade import get_task, resize
    from .io import atomic_write_bytes, convert_channels, json_line, list_images, outputs_recorded, write_image_hashed
    from .models.stylegan2 import load_stylegan2
    from .restore.stylegan_inversion import InversionConfig, perceptual_loss, robust_invert
    from .weights import model_file, sha256_file

    if args.example:
        from .cli import example_path

        args.inputs = [*args.inputs, str(example_path(degraded=True))]
    if not args.inputs:
        raise InputError("no input images: give files, folders or globs, or --example")
    others = sorted(set().union(*_METHOD_OPTIONS.values()) - _METHOD_OPTIONS[args.method])
    _refuse_given(args, others, f"does not apply to --method {args.method}")
    if args.method == "diffgar" and args.mode != "guided":
        _refuse_given(args, ["guidance_scale"], f"only in --mode guided (got --mode {args.mode})")
    if args.method == "idm":
        if args.sampler != "ddim":
            _refuse_given(args, ["eta"], "only with --sampler ddim")
        return cmd_restore_idm(args)
    if args.method == "diffgar":
        return cmd_restore_diffgar(args)
    if args.method == "inpaint":
        return cmd_restore_inpaint(args)
    if not args.task or not args.generator:
        raise InputError("stylegan-inversion needs --task and --generator")
    from .restore.stylegan_inversion import MAX_STEP_SCALE

    scale = 1.0 if args.steps is None else args.steps
    if not math.isfinite(scale) or not 0 < scale <= MAX_STEP_SCALE:
        raise InputError(f"--steps for stylegan-inversion scales the 150 steps per phase; expected a number in "
                         f"(0, {MAX_STEP_SCALE:g}], got {scale}")
    from .degrade.tasks import Composition

    task = get_task(args.task, args.level)
    stages = task.tasks if isinstance(task, Composition) else (task,)
    inpaint = _makes_mask(task)  # inpainting, last in a composition (order U, N, A, P)
    all_paths = list_images(args.inputs)  # outputs are planned on all of them: shards together are one run
    if inpaint:
        all_paths = _without_masks(all_paths)
    paths = _shard(all_paths, args.shard)
    sizes = _validate_inputs(paths, progress=not args.quiet)
    device = resolve_device(args.device)
    G = load_stylegan2(args.generator, device)
    expected = tuple(task.output_size((G.resolution, G.resolution)))
    for path, hw in zip(paths, sizes):  # every image and mask before the first inversion
        if abs(hw[0] / hw[1] - expected[0] / expected[1]) > 1e-6:
            raise InputError(f"{path}: {hw[1]}x{hw[0]} px has another aspect than the {expected[1]}x{expected[0]} px "
                             f"that task {args.task} makes from the generator's {G.resolution} px images")
    if inpaint:
        _check_masks(paths, sizes, Path(args.masks) if args.masks else None)
    out_dir = Path(args.output)
    _plan_outputs(all_paths, out_dir, ["{stem}.png", "{stem}.json"])
    distance = perceptual_loss("vgg", device)
    if not distance[1].startswith("lpips"):
        print(f"genrestore: note: loss {distance[1]}", file=sys.stderr)
    cfg = InversionConfig(step_scale=scale)
    settings = {"method": args.method, "task": args.task, "level": args.level, "generator": str(args.generator),
                "generator_sha256": sha256_file(model_file(args.generator)), "loss": distance[1],
                "steps": cfg.phase_steps(), "lrs": list(cfg.lrs), "seed": args.seed}
    skipped = 0
    for path, hw in tqdm(list(zip(paths, sizes)), desc="restore", unit="img", file=sys.stderr, disable=args.quiet):
        out_png, out_json = out_dir / f"{path.stem}.png", out_dir / f"{path.stem}.json"
        y_in, bits = _read_input(path)  # read first: the resume check compares its channels and bits
        if args.resume and outputs_recorded(out_json, {"input": str(path), **settings,
                                                       **_output_format(y_in.shape[1], bits)}, [out_png]):
            skipped += 1
            continue
        y = convert_channels(y_in, "rgb").to(device)
        if tuple(y.shape[-2:]) != expected:
            print(f"genrestore: note: {_one_line(path)}: resized from {hw[1]}x{hw[0]} to {expected[1]}x{expected[0]} "
                  "px for the generator", file=sys.stderr)
            y = resize(y, expected, "area" if hw[0] > expected[0] else "bicubic").clamp(0, 1)
        params = None
        if inpaint:
            # as written (fractional on antialiased edges): the surrogate is the true y = x * m (f_hat = f)
            mask = _mask_for(path, Path(args.masks) if args.masks else None, tuple(hw), binarize=False)
            if tuple(mask.shape[-2:]) != expected:
                mask = resize(mask, expected, "area").clamp(0, 1)
            params = {"mask": mask.to(device)}
            if isinstance(task, Composition):
                params = {"stages": [None] * (len(stages) - 1) + [params]}
        gen = generator_for(args.seed, path.name)
        res = robust_invert(G, y, task, params, cfg, distance, gen, progress=not args.quiet)
        hashes: dict[str, str] = {}
        write_image_hashed(out_png, _like_input(res.final.clamp(0, 1), y_in), hashes, bits)
        record = {"input": str(path), "output": str(out_png), **settings, "channels": y_in.shape[1], "bits": bits,
                  "loss": res.loss,
                  "final_loss": {k: v[-1] for k, v in res.losses.items()}, "sha256": hashes}
        atomic_write_bytes(out_json, (json.dumps(record, indent=1) + "\n").encode())
        if args.json:
            print(json_line(record), flush=True)
    if not args.json:
        print(f"{len(paths) - skipped} restored by {args.method} ({args.task} {args.level}, loss {distance[1]}), "
              f"{skipped} already done -> {out_dir}")
    return 0


def add_parser(sub) -> None:
    r = sub.add_parser("restore", help="restore degraded images (IDM, DiffGAR, inpainting, robust StyleGAN2 inversion)",
                       description="idm: a conditional x0-predicting DDPM (--model, --steps 10, --tile). diffgar: a "
                                   "class-conditional DDIM restorer (--mode, --artifact, --guidance-scale). inpaint: "
                                   "a learned inpainter with --masks. "
                                   "stylegan-inversion: inverts the task's differentiable surrogate through a StyleGAN2 "
                                   "generator in 3 phases (W, W+, W++) with normalized gradient descent. Example: "
                                   "genrestore restore noisy/ -o out/ --method stylegan-inversion --task denoise "
                                   "--level M --generator G.safetensors")
    r.add_argument("inputs", nargs="*", metavar="INPUT", help="degraded images, folders or globs (grey ones "
                   "are restored as RGB and written as grey; an alpha channel is kept)")
    r.add_argument("--example", action="store_true", help="add the bundled degraded example (512x512, IDM "
                   "degradation) to the inputs")
    r.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder (OUT/NAME.png + NAME.json)")
    r.add_argument("--method", default="idm", choices=("idm", "diffgar", "inpaint", "stylegan-inversion"),
                   help="restorer (default idm)")
    r.add_argument("--model", metavar="FILE|NAME", help="idm / diffgar / inpaint: a ConditionalUNet .safetensors "
                   "(+ .json) from `train idm` / `train diffgar` / `train inpaint`, or a shipped weight's name (idm: "
                   f"default {DEFAULT_IDM}; inpaint: inpaint-gan, inpaint-ddgan, inpaint-diffusion)")
    r.add_argument("--mode", default="guided", choices=("blind", "non-blind", "guided"), help="diffgar: [MASK] class, "
                   "the given class, or the class with classifier-free guidance")
    r.add_argument("--artifact", help="diffgar: the degradation class (non-blind and guided modes)")
    r.add_argument("--guidance-scale", type=nonneg_float, default=3.0, help="diffgar guided mode: CFG scale (3)")
    r.add_argument("--autoencoder", metavar="FILE|NAME", help="latent diffgar: the VQ autoencoder (default: the "
                   "one the model's JSON names, relative to the model's folder)")
    r.add_argument("--upscale", type=positive_int, default=1, help="diffgar: bicubic upscale of the input first (for "
                   "upsampling, so the condition has the output size)")
    r.add_argument("--tile", type=nonneg_int, default=256, metavar="PX", help="idm / diffgar: tile side of the network "
                   "call (default 256; 0: the whole image at once, which needs memory for attention over all of "
                   "it); the noise is drawn at full size, so tiles leave no seams")
    r.add_argument("--tile-pad", type=nonneg_int, default=16, metavar="PX", help="idm / diffgar: pixels dropped at "
                   "interior tile edges before the cross-fade (default 16)")
    r.add_argument("--half", action="store_true", help="idm / diffgar / inpaint: the network in 16-bit where the "
                   f"device computes it natively ({HALF_RULE}), with a float32 retry of a non-finite step; the "
                   "JSON records the precision")
    r.add_argument("--resume", action="store_true", help="skip images whose output and JSON are there, made with the "
                   "same settings and model file (checked by sha256)")
    r.add_argument("--shard", metavar="i/n", help="process only every n-th image, starting at i")
    r.add_argument("--task", help="stylegan-inversion: the degradation to invert: a task (upsample, denoise, "
                   "deartifact, inpaint) or a composition (e.g. UNAP)")
    r.add_argument("--level", default="M", choices=("XS", "S", "M", "L", "XL"), help="stylegan-inversion: the "
                   "task's level (default M)")
    r.add_argument("--generator", help="stylegan-inversion: StyleGAN2 .safetensors (+ .json), e.g. from "
                   "`genrestore weights convert network-snapshot.pkl G.safetensors`")
    r.add_argument("--masks", metavar="DIR", help="inpainting: folder with NAME_mask.png (1 = kept)")
    r.add_argument("--sampler", default="ddpm", choices=("ddpm", "ddim"), help="idm: the sampler of the same model: "
                   "ddpm (IDM's ancestral steps, default) or ddim (DDIM's update, noise --eta)")
    r.add_argument("--eta", type=unit_float, default=0.0, help="idm --sampler ddim: DDIM's noise scale (default 0: "
                   "deterministic; 1: DDPM-like)")
    r.add_argument("--steps", type=float, default=None, help="idm: sampling steps (default 10); diffgar: DDIM steps "
                   "(default 30); inpaint: DDPM steps of a diffusion inpainter (default 50); stylegan-inversion: "
                   "scale of the 150 steps per phase (default 1; 0.1 for a quick run)")
    r.add_argument("--seed", type=int, default=0, help="base seed; each image's seed derives from it and its "
                   "file name")
    r.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help=DEVICE_HELP)
    r.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_restore, _parser=r)
