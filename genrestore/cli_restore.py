"""CLI verb ``restore``: robust StyleGAN2 inversion of degraded images (seed 003)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from ._argtypes import DEVICE_HELP, float_in, nonneg_float, nonneg_int, positive_float, positive_int, unit_float
from ._checks import InputError
from .io import read_json_object
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
    """The RGB restoration ``x`` in the channels of the input ``y``: a grey input gives the luma of
    ``x`` (BT.601), an input with alpha gets its alpha back (bilinear when ``x`` has another size,
    e.g. DiffGAR's ``--upscale``)."""
    from .io import convert_channels

    if y.shape[1] == 1:
        return convert_channels(x, "gray").clamp(0, 1)
    if y.shape[1] == 4:
        alpha = y[:, 3:].to(x.device, x.dtype)
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
        raise InputError("inpainting needs --model: an inpainter from `genrestore train inpaint` (its .safetensors "
                         "with the .json beside it)")
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


def cmd_train_diffgar(args: argparse.Namespace) -> int:
    from .cli import resolve_device
    from .diffusion import ConditionalUNet
    from .diffusion.train import train_conditional
    from .diffusion.train import train_conditional_pairs
    from .io import check_output_folder
    from .restore.diffgar import ARTIFACT_CLASSES, DIFFGAR_CLASSES, diffgar_degrade, load_artifact_pairs

    check_output_folder(args.output)
    if bool(args.data) == bool(args.pairs):
        raise InputError("train diffgar takes either --data (clean photos, benchmark tasks as classes) or --pairs "
                         "(folders from `genrestore artifacts`, the artifact kinds as classes)")
    _refuse_pair_options(args, ["level"])
    source = f"--pairs {' '.join(args.pairs)}" if args.pairs else f"--data {args.data} --level {args.level}"
    recipe = (f"genrestore train diffgar {source} --size {args.size} --steps {args.steps} "
              f"--batch-size {args.batch_size} --lr {args.lr} --ema-decay {args.ema_decay} {_unet_recipe(args)} --seed {args.seed}"
              + (f" --prediction {args.prediction}" if args.prediction != "epsilon" else "")
              + (" --residual" if args.residual else ""))
    classes = ARTIFACT_CLASSES if args.pairs else DIFFGAR_CLASSES
    device = resolve_device(args.device)
    pairs = load_artifact_pairs(args.pairs) if args.pairs else None
    channels, extra, meta = 3, {}, {}
    if args.autoencoder:  # latent DiffGAR (§4): the UNet works on the frozen autoencoder's scaled z_e
        from . import weights as ws
        from .models.vq import VQAutoencoder
        from .restore.diffgar import latent_scale

        ae = VQAutoencoder.load(ws.model_file(args.autoencoder), device=device).eval().requires_grad_(False)
        if args.size % ae.factor:
            raise InputError(f"--size {args.size} must be a multiple of the autoencoder's factor {ae.factor}")
        photos = [p[0] for p in pairs] if pairs else args.data
        scale = latent_scale(ae, photos, args.batch_size, args.size, args.seed)
        channels = ae.config["embed_dim"]
        extra["encode"] = lambda x: ae.encode_latents(x) * scale
        if str(args.autoencoder) in ws.REGISTRY:
            where = str(args.autoencoder)
        else:  # relative to the model's folder, so that the run and the autoencoder can move together
            where = os.path.relpath(Path(args.autoencoder).resolve(), Path(args.output).resolve())
        meta = {"autoencoder": where, "latent_scale": scale}
        recipe += f" --autoencoder {args.autoencoder}"
        unet = _unet_config(args, factor=ae.factor)
    else:
        unet = _unet_config(args)
    torch.manual_seed(args.seed)  # the initial weights, so that the recipe reproduces the model
    model = ConditionalUNet(channels, cond_channels=channels, class_names=classes, prediction_type=args.prediction,
                            unet=unet, residual=args.residual)
    recipe += " --half" if args.half else ""
    common = (args.steps, args.batch_size, args.size, args.lr, args.ema_decay, args.output, args.save_every, args.seed,
              device, recipe, args.time_limit)
    if pairs:
        train_conditional_pairs(model, pairs, *common, meta=meta, progress=not args.quiet, half=args.half, **extra,
                                **_speed(args))
    else:
        train_conditional(model, args.data, diffgar_degrade(level=args.level), *common, meta=meta, **extra,
                          progress=not args.quiet, half=args.half, **_speed(args, workers=True))
    return report_training(args, "DiffGAR model")


def cmd_train_stylegan2(args: argparse.Namespace) -> int:
    from .cli import resolve_device
    from .io import check_output_folder
    from .models.stylegan2 import StyleGAN2Generator
    from .models.stylegan2_train import train_stylegan2

    check_output_folder(args.output)
    r = args.resolution
    if r < 8 or r & (r - 1):
        raise InputError(f"--resolution must be a power of two >= 8, got {r}")
    model = StyleGAN2Generator(z_dim=args.z_dim, w_dim=args.z_dim, resolution=r, channel_base=args.channel_base,
                               channel_max=args.channel_max, n_mapping_layers=args.mapping_layers,
                               generator=torch.Generator().manual_seed(args.seed))
    recipe = (f"genrestore train stylegan2 --data {args.data} --resolution {r} --size {args.size} --steps {args.steps} "
              f"--batch-size {args.batch_size} --lr {args.lr} --z-dim {args.z_dim} --mapping-layers "
              f"{args.mapping_layers} --channel-base {args.channel_base} --channel-max {args.channel_max} "
              f"--ada-kimg {args.ada_kimg} --ema-decay {args.ema_decay} --seed {args.seed}"
              + (f" --r1-gamma {args.r1_gamma}" if args.r1_gamma is not None else ""))
    train_stylegan2(model, args.data, args.steps, args.batch_size, args.size, args.lr, args.r1_gamma, args.ada_kimg,
                    ema_decay=args.ema_decay, out_dir=args.output, save_every=args.save_every, seed=args.seed,
                    device=resolve_device(args.device), recipe=recipe, time_limit=args.time_limit,
                    progress=not args.quiet, **_speed(args))
    return report_training(args, "StyleGAN2 generator")


def _refuse_pair_options(args: argparse.Namespace, data_only: Sequence[str] = ()) -> None:
    """With --pairs, refuse --workers (the pairs are read as they are: no batches are made ahead)
    and the ``data_only`` options of on-the-fly degradations."""
    if args.pairs:
        from .cli import _refuse_given

        _refuse_given(args, ["workers", *data_only], "only with --data (degradations made on the fly); --pairs are "
                      "read as they are")


def _speed(args: argparse.Namespace, workers: bool = False) -> dict:
    """The trainers' speed options from --channels-last / --compile, and with ``workers`` (trainers
    that degrade on the fly) --workers (none changes the recipe's result)."""
    speed = {"channels_last": args.channels_last, "compile": args.compile}
    if workers:
        speed["workers"] = default_workers(args.device) if args.workers is None else args.workers
    return speed


def default_workers(device: str) -> int:
    """Data worker processes by default: none on the CPU (the network uses every core), and on
    CUDA one per core but one, at most 8."""
    from .cli import resolve_device

    return 0 if resolve_device(device).type == "cpu" else max(0, min(8, (os.cpu_count() or 1) - 1))


def _unet_recipe(args: argparse.Namespace) -> str:
    """The UNet options of a training command, for the recipe in the model's JSON."""
    return f"--channels {' '.join(map(str, args.channels))} --layers-per-block {args.layers_per_block}"


def report_training(args: argparse.Namespace, what: str) -> int:
    """Print where a training call ended: the final model, or the step a --time-limit stopped at."""
    from .cli import counted

    out = Path(args.output)
    meta = read_json_object(out / "model.json", "a model sidecar (JSON object)") if (out / "model.json").is_file() else {}
    if meta.get("steps") == args.steps:
        print(f"{what} after {counted(args.steps, 'step')} -> {out / 'model.safetensors'}")
    else:
        from .diffusion.train import CHECKPOINT, checkpoint_run

        step = checkpoint_run(out / CHECKPOINT)["step"]
        print(f"{what}: stopped at step {step} of {args.steps} (--time-limit); run the same command to continue")
    return 0


def _unet_config(args: argparse.Namespace, attention: bool = True, factor: int = 1) -> dict:
    """UNet2DModel arguments from --channels, --layers-per-block and --size (over ``factor``: the UNet of
    a latent model sees the autoencoder's latents); with ``attention`` the deepest block attends.
    GroupNorm takes the most groups (<= 32) that divide every width."""
    multiple = 2 ** (len(args.channels) - 1) * factor
    if args.size % multiple or args.size // multiple < 2:
        why = "2^(blocks - 1)" + (f" x the autoencoder's factor {factor}" if factor > 1 else "")
        raise InputError(f"--size must be a multiple of {multiple} ({why}) and at least {2 * multiple}, "
                         f"got {args.size}")
    n = len(args.channels)
    if args.channels[-1] < 8:  # the middle block attends too, with or without attending down/up blocks
        raise InputError(f"--channels: the deepest blocks attend with diffusers' 8-channel heads, so the last width "
                         f"needs at least 8 channels, got {args.channels[-1]}")
    return {"sample_size": args.size // factor, "block_out_channels": list(args.channels), "layers_per_block": args.layers_per_block,
            "norm_num_groups": max(d for d in range(1, 33) if math.gcd(*args.channels) % d == 0),
            "down_block_types": ["DownBlock2D"] * (n - 1) + ["AttnDownBlock2D" if attention else "DownBlock2D"],
            "up_block_types": ["AttnUpBlock2D" if attention else "UpBlock2D"] + ["UpBlock2D"] * (n - 1)}


def cmd_train_inpaint(args: argparse.Namespace) -> int:
    from .cli import _refuse_given, resolve_device
    from .diffusion import ConditionalUNet
    from .diffusion.train import train_conditional
    from .io import check_output_folder
    from .restore.diffusion_gan import diffusion_gan_schedule, train_inpaint_gan
    from .restore.inpaint import COND_CHANNELS, inpaint_degrade

    check_output_folder(args.output)
    if args.kind != "ddgan":
        _refuse_given(args, ["timesteps"], "only for --kind ddgan")
    if args.kind == "diffusion":
        _refuse_given(args, ["lr_d", "r1_gamma", "l1_weight", "disc_width"], "only for --kind gan and ddgan")
    timesteps = {"gan": 1, "ddgan": args.timesteps, "diffusion": None}[args.kind]
    if args.kind == "ddgan" and timesteps < 2:
        raise InputError(f"--timesteps for a diffusion GAN is T >= 2 (2 or 4 in DDGAN); got {timesteps}; "
                         "--kind gan is the one-step case")
    unet = _unet_config(args, attention=False)
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)  # the initial weights (generator and discriminator), so the recipe reproduces them
    recipe = (f"genrestore train inpaint --kind {args.kind} --data {args.data} --size {args.size} --steps {args.steps} "
              f"--batch-size {args.batch_size} --lr {args.lr} --ema-decay {args.ema_decay} {_unet_recipe(args)} --seed {args.seed}")
    if args.kind == "diffusion":
        model = ConditionalUNet(3, cond_channels=COND_CHANNELS, prediction_type="sample", unet=unet)
        train_conditional(model, args.data, inpaint_degrade, args.steps, args.batch_size, args.size, args.lr,
                          args.ema_decay, args.output, args.save_every, args.seed, device, recipe, args.time_limit,
                          meta={"inpainter": "diffusion"}, progress=not args.quiet, **_speed(args, workers=True))
    else:
        recipe += (f" --lr-d {args.lr_d} --r1-gamma {args.r1_gamma} --l1-weight {args.l1_weight} "
                   f"--disc-width {args.disc_width}" + (f" --timesteps {timesteps}" if args.kind == "ddgan" else ""))
        model = ConditionalUNet(3, cond_channels=COND_CHANNELS, prediction_type="sample",
                                schedule=diffusion_gan_schedule(timesteps), unet=unet)
        train_inpaint_gan(model, args.data, args.steps, args.batch_size, args.size, args.lr, args.lr_d, args.r1_gamma,
                          args.l1_weight, args.ema_decay, args.disc_width, args.output, args.save_every, args.seed,
                          device, recipe, args.time_limit, progress=not args.quiet, **_speed(args, workers=True))
    return report_training(args, f"{args.kind} inpainter")


def cmd_train_idm(args: argparse.Namespace) -> int:
    from . import weights as ws
    from .cli import resolve_device
    from .degrade import PIPELINES
    from .diffusion import ConditionalUNet
    from .diffusion.train import train_conditional, train_conditional_pairs
    from .io import check_output_folder
    from .restore.diffgar import load_artifact_pairs
    from .restore.idm import REGRESSION_SCHEDULE

    check_output_folder(args.output)
    if bool(args.data) == bool(args.pairs):
        raise InputError("train idm takes either --data (clean photos, the IDM degradation on the fly) or --pairs "
                         "(folders from `genrestore artifacts`)")
    _refuse_pair_options(args)
    if args.pairs and args.extrinsic_from:
        raise InputError("--extrinsic-from restores clean --data photos; it does not combine with --pairs")
    if args.extrinsic_from:
        ws.model_file(args.extrinsic_from)  # a bad name or a missing weight stops here, before any work
    if args.init and args.extrinsic_from:
        raise InputError("--extrinsic-from already starts from model k's weights; drop --init")
    unet = _unet_config(args)
    device = resolve_device(args.device)
    schedule = REGRESSION_SCHEDULE if args.regression else None
    torch.manual_seed(args.seed)  # the initial weights, so that the recipe reproduces the model
    model = ConditionalUNet(3, prediction_type="sample", schedule=schedule, unet=unet, residual=args.residual)
    source = f"--pairs {' '.join(args.pairs)}" if args.pairs else f"--data {args.data}"
    recipe = (f"genrestore train idm {source} --size {args.size} --steps {args.steps} "
              f"--batch-size {args.batch_size} --lr {args.lr} --ema-decay {args.ema_decay} {_unet_recipe(args)} --seed {args.seed}"
              + (" --regression" if args.regression else "") + (" --residual" if args.residual else "")
              + (" --half" if args.half else ""))
    init = {}
    if args.init:
        init["init_sha256"] = _init_model(model, args.init)
        recipe += f" --init {args.init}"
    meta = {"restorer": "regression" if args.regression else "idm"}
    common = (args.steps, args.batch_size, args.size, args.lr, args.ema_decay, args.output, args.save_every, args.seed,
              device, recipe, args.time_limit)
    loss = "l1" if args.regression else "mse"
    if args.pairs:  # every pair, identity ones included, trains the restorer (it has no classes)
        train_conditional_pairs(model, load_artifact_pairs(args.pairs), *common, meta=meta, loss=loss,
                                progress=not args.quiet, half=args.half, **init, **_speed(args))
        return report_training(args, "regression UNet" if args.regression else "IDM model")
    data = args.data
    if args.extrinsic_from:  # IDM §3.3: restore the training data with model k, train model k+1 on it, from k
        if args.regression:
            raise InputError("--extrinsic-from trains an IDM model k+1; it does not combine with --regression")
        source = ws.model_file(args.extrinsic_from)  # a file, or a store name such as idm-default
        from .diffusion.train import CHECKPOINT, checkpoint_run

        if (Path(args.output) / CHECKPOINT).is_file():  # a damaged one stops the run before the data is restored
            checkpoint_run(Path(args.output) / CHECKPOINT)
        data = _extrinsic_data(args, source, device)
        model = ConditionalUNet.load(source, device)
        recipe += (f" --extrinsic-from {args.extrinsic_from} --extrinsic-steps {args.extrinsic_steps} "
                   f"--extrinsic-tile {args.extrinsic_tile}")
        common = (*common[:9], recipe, common[10])
    train_conditional(model, data, PIPELINES["idm"].degrade, *common, meta=meta, loss=loss, progress=not args.quiet,
                      half=args.half, **init, **_speed(args, workers=True))
    return report_training(args, "regression UNet" if args.regression else "IDM model")


def _init_model(model, init: str) -> str:
    """Load into ``model`` (built from the command's options) the weights of the model file or
    store name ``init``, which must have the same configuration but for the crop size
    (``sample_size``, which no weight depends on); return their file's sha256 (``--init``
    fine-tunes; when OUT holds a checkpoint, its weights replace these: the run resumes, if it
    started from the same file)."""
    from . import weights as ws
    from .diffusion import ConditionalUNet

    path = ws.model_file(init)
    start = ConditionalUNet.load(path)

    def comparable(config: dict) -> dict:
        return {**config, "unet": {k: v for k, v in config.get("unet", {}).items() if k != "sample_size"}}

    a, b = comparable(start.config), comparable(model.config)
    if a != b:
        diff = {k: (a.get(k), b.get(k)) for k in {*a, *b} if a.get(k) != b.get(k)}
        raise InputError(f"--init {init} has another configuration than these options build "
                         f"(--init vs options: {diff}); give the options it was trained with (its JSON's recipe)")
    model.load_state_dict(start.state_dict())
    return ws.sha256_file(path)


def _extrinsic_data(args: argparse.Namespace, source: Path, device) -> Path:
    """Eq. 10: ``x' = f_k(x)`` for every training photo, written once to OUT/extrinsic_data (cached,
    with the model's hash and the settings in its params.json: another model or setting is refused)."""
    from tqdm import tqdm

    from ._random import generator_for
    from .io import atomic_write_bytes, list_images, read_image, write_image
    from .restore.idm import IDMRestorer

    from .weights import sha256_file

    restorer = IDMRestorer.from_file(source, device)
    check_restorer_tiling(restorer, args.extrinsic_tile, EXTRINSIC_TILE_PAD, ("--extrinsic-tile", f"its pad ({EXTRINSIC_TILE_PAD} px)"))
    out = Path(args.output) / "extrinsic_data"
    # the cache is reused (a resumed run) only when it was made by the same model and settings
    params = {"model_sha256": sha256_file(source), "data": str(Path(args.data).resolve()),
              "steps": args.extrinsic_steps, "tile": args.extrinsic_tile, "seed": args.seed}
    params_file = out / "params.json"
    if params_file.is_file():
        saved = read_json_object(params_file, "the settings of an extrinsic run (JSON object)")
        if saved != params:
            diff = {k: (saved.get(k), v) for k, v in params.items() if saved.get(k) != v}
            raise InputError(f"{out} was restored with other settings (saved vs now: {diff}); "
                             "delete it or use another -o")
    elif out.is_dir() and any(out.iterdir()):
        raise InputError(f"{out} holds images of an unknown extrinsic run (no params.json); delete it or use another -o")
    else:
        atomic_write_bytes(params_file, (json.dumps(params, indent=1) + "\n").encode())
    for p in tqdm(list_images([args.data]), desc="extrinsic: restore training data", unit="img", file=sys.stderr,
                  disable=args.quiet):
        target = out / f"{p.stem}.png"
        if not target.is_file():
            x = read_image(p, "rgb").to(device)
            write_image(target, restorer.restore(x, args.extrinsic_steps, generator_for(args.seed, p.name),
                                                 tile=args.extrinsic_tile, tile_pad=EXTRINSIC_TILE_PAD))
    return out


UNET_WIDTHS = "UNet block widths (the last block has attention)"


def _common_train_args(t: argparse.ArgumentParser, data_required: bool = True, unet: bool = True,
                       workers: bool = False, half: bool = False, widths: str = UNET_WIDTHS) -> None:
    t.add_argument("--data", required=data_required, help="folder of clean photos")
    t.add_argument("-o", "--output", required=True, metavar="OUT", help="run folder: checkpoint.safetensors while "
                   "training, model.safetensors + .json at the end; rerunning the command resumes")
    t.add_argument("--size", type=positive_int, default=128, help="crop side, px (default %(default)s)")
    t.add_argument("--steps", type=positive_int, default=10000, help="training steps in all (default %(default)s); "
                   "a larger value on rerun trains on")
    t.add_argument("--batch-size", type=positive_int, default=8, help="crops per step (default %(default)s)")
    t.add_argument("--lr", type=positive_float, default=1e-4, help="learning rate (default %(default)s)")
    t.add_argument("--ema-decay", type=float_in(0, 1, high_open=True), default=0.999,
                   help="decay of the weights' exponential moving average, in [0, 1) (default %(default)s)")
    if unet:
        t.add_argument("--channels", type=positive_int, nargs="+", default=[64, 128, 256, 256], help=widths)
        t.add_argument("--layers-per-block", type=positive_int, default=2, help="ResNet layers per block")
    t.add_argument("--save-every", type=positive_int, default=1000, help="checkpoint interval, steps "
                   "(default %(default)s)")
    t.add_argument("--seed", type=int, default=0, help="seed of the initialization, crops and noise (default 0)")
    t.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help=DEVICE_HELP)
    t.add_argument("--channels-last", action="store_true", help="channels-last weights (faster convolutions "
                   "under bf16 on recent GPUs)")
    t.add_argument("--compile", action="store_true", help="torch.compile the network's forward (GPU; the first "
                   "steps are slow while it compiles)")
    if half:
        t.add_argument("--half", action="store_true", help="bf16 autocast on a CPU that computes bf16 natively "
                       "(AVX512-BF16 or AMX; about 1.5x faster; part of the recipe); on CUDA training is always "
                       "bf16; elsewhere float32")
    if workers:
        t.add_argument("--workers", type=nonneg_int, help="processes that make the next batches (crops, "
                       "degradations) while the network trains; default 0 on the CPU, min(8, cores - 1) on "
                       "CUDA; the result does not depend on it")
    t.add_argument("--time-limit", type=nonneg_float, metavar="SECONDS", help="train at most this long in this call, "
                   "then save the checkpoint and stop; the same command continues")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    t.set_defaults(_parser=t)  # for _refuse_given


def add_train_parser(tsub) -> None:
    """Register ``train idm``, ``train diffgar``, ``train inpaint`` and ``train stylegan2``."""
    t = tsub.add_parser("idm", help="train an IDM restorer (x0-predicting conditional DDPM) on clean photos",
                        description="Random crops and flips of the photos, degraded on the fly by the IDM pipeline; "
                                    "AdamW, EMA, bf16 on CUDA; resumes from OUT/checkpoint.safetensors. Example: "
                                    "genrestore train idm --data photos/train --size 64 --steps 2000 -o runs/idm")
    _common_train_args(t, data_required=False, workers=True, half=True)
    t.add_argument("--pairs", nargs="+", metavar="DIR", help="instead of --data: (clean, degraded) pair folders from "
                   "`genrestore artifacts` (e.g. the generative artifacts, for DiffGAR's baselines)")
    t.add_argument("--init", metavar="MODEL", help="start from this model's weights (a file or a store name such as "
                   "idm-default; the same options it was trained with): fine-tuning")
    t.add_argument("--extrinsic-from", metavar="MODEL", help="extrinsic iteration (IDM §3.3): restore --data with "
                   "this model k, then train model k+1 on the restored photos, starting from model k's weights")
    t.add_argument("--extrinsic-steps", type=positive_int, default=10, help="DDPM steps when restoring the data (default 10)")
    t.add_argument("--extrinsic-tile", type=nonneg_int, default=256,
                   help="tile side when restoring the data (default 256, as restore --tile; 0: whole)")
    t.add_argument("--residual", action="store_true", help="x0 = y + UNet(...): the network learns the "
                   "correction, so short (CPU) trainings start from the degraded image")
    t.add_argument("--regression", action="store_true", help="train the baseline instead: the same UNet as a "
                   "one-step regressor (T = 1, its noise input carries no signal) with an L1 loss to the clean crop")
    t.set_defaults(func=cmd_train_idm)

    d = tsub.add_parser("diffgar", help="train a DiffGAR restorer (class-conditional, [MASK] for 50 %% of samples)",
                        description="Each crop gets one of the four benchmark tasks at --level as its class (upsampled "
                                    "back to the crop size); the epsilon objective unless --prediction; resumes like train idm. Example: "
                                    "genrestore train diffgar --data photos/train --size 64 --steps 2000 -o runs/dg")
    _common_train_args(d, data_required=False, workers=True, half=True)
    d.add_argument("--level", default="M", choices=("XS", "S", "M", "L", "XL"), help="level of the tasks")
    d.add_argument("--prediction", default="epsilon", choices=("epsilon", "sample", "v_prediction"),
                   help="the network's output: noise (DiffGAR, LDM), x0 (IDM) or v")
    d.add_argument("--residual", action="store_true", help="with --prediction sample: x0 = y + UNet(...)")
    d.add_argument("--autoencoder", metavar="FILE|NAME", help="train in the latent space of this VQ autoencoder "
                   "(`genrestore train vq`; DiffGAR's VQ-f4), as the paper does; default: pixel space")
    d.add_argument("--pairs", nargs="+", metavar="DIR", help="instead of --data: (clean, artifact) pair folders from "
                   "`genrestore artifacts` (classes: the four artifact kinds; identity pairs train [MASK])")
    d.set_defaults(func=cmd_train_diffgar)

    p = tsub.add_parser("inpaint", help="train an inpainter: conditional diffusion, denoising diffusion GAN or GAN",
                        description="Crops of the photos with random stroke masks (the benchmark's brush, drawn on a "
                                    "128 px canvas) or rectangular holes. diffusion: the IDM objective with the mask "
                                    "as a 4th condition channel; ddgan: T large steps, x0 generator, posterior "
                                    "sampling, time-conditioned PatchGAN, non-saturating loss + R1 + L1 in the holes; "
                                    "gan: the T = 1 case (pix2pix-style). Resumes from OUT/checkpoint.safetensors. "
                                    "Example: genrestore train inpaint --kind ddgan --data photos/train --size 64 "
                                    "--steps 2000 -o runs/ddgan")
    _common_train_args(p, workers=True, widths="UNet block widths (no attention)")
    p.set_defaults(size=64, channels=[32, 64, 64, 128], layers_per_block=1, batch_size=16, save_every=250, lr=2e-4,
                   func=cmd_train_inpaint)
    p.add_argument("--kind", required=True, choices=("diffusion", "ddgan", "gan"), help="conditional diffusion, "
                   "denoising diffusion GAN or one-step GAN")
    p.add_argument("--timesteps", type=positive_int, default=4, help="ddgan: T, the number of large denoising steps (4)")
    p.add_argument("--lr-d", type=positive_float, default=2e-4, help="gan/ddgan: discriminator learning rate")
    p.add_argument("--r1-gamma", type=nonneg_float, default=0.1, help="gan/ddgan: R1 penalty weight gamma")
    p.add_argument("--l1-weight", type=nonneg_float, default=100.0, help="gan/ddgan: weight of L1 in the holes")
    p.add_argument("--disc-width", type=positive_int, default=32, help="gan/ddgan: PatchGAN first-layer width")

    sg = tsub.add_parser("stylegan2", help="train a small StyleGAN2 prior (R1, ADA-style augmentation) on photo crops",
                         description="Crops of --size px resized to --resolution; non-saturating loss, lazy R1, "
                                     "style mixing, adaptive augmentation (ADA), EMA generator; resumes from "
                                     "OUT/checkpoint.safetensors. The result is a generator for `restore --method "
                                     "stylegan-inversion --generator`. Example: genrestore train stylegan2 --data "
                                     "photos/train --resolution 64 --steps 20000 -o runs/sg2")
    _common_train_args(sg, unet=False)
    sg.set_defaults(size=256, batch_size=16, lr=0.0025, save_every=500, func=cmd_train_stylegan2)
    sg.add_argument("--resolution", type=positive_int, default=64, help="generator output side, px (power of 2)")
    sg.add_argument("--z-dim", type=positive_int, default=256, help="z and w size")
    sg.add_argument("--mapping-layers", type=positive_int, default=2, help="mapping depth (ADA's small-data: 2)")
    sg.add_argument("--channel-base", type=positive_int, default=8192, help="channels min(base / r, max) at r px")
    sg.add_argument("--channel-max", type=positive_int, default=256, help="largest channel count (default 256)")
    sg.add_argument("--r1-gamma", type=nonneg_float, help="R1 weight (default: ADA's 0.0002 resolution^2 / batch)")
    sg.add_argument("--ada-kimg", type=positive_float, default=100.0, help="thousands of images for the augmentation "
                    "probability to move from 0 to 1 (ADA: 500)")


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
