"""``genrestore metrics``: full-reference, no-reference and distribution metrics of images paired
by file name across two folders, and IDM's authenticity test (``--authenticity``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from ._argtypes import DEVICE_HELP, nonneg_int, positive_int, unit_float
from ._checks import InputError
from .cli import _refuse_given, _validate_inputs, counted, resolve_device

METRICS_AVAILABLE = ("psnr", "ssim", "mse", "lpips", "lpips-vgg", "niqe", "identity", "fid", "kid", "is", "pfid")
SET_METRICS = ("fid", "kid", "is", "pfid")
_RGB_METRICS = ("lpips", "lpips-vgg", "identity", *SET_METRICS)  # networks of RGB images: no --y or --gray
# the options of a REF/DIST comparison, which --authenticity does not take
_PAIR_OPTIONS = ("metrics", "y", "gray", "crop_border", "ref_stats", "pfid_size", "pfid_crops", "batch_size",
                 "autocast", "niqe_model", "csv")


def ws_path(name: str) -> Path:
    from . import weights as ws

    return ws.resolve(name)


def _pair_by_name(ref: str, dist: str) -> list[tuple[Path, Path]]:
    """Pair images of two folders (or two files) by file stem; every distorted image needs a reference."""
    from .io import list_images

    refs, dists = list_images([ref]), list_images([dist])
    if Path(ref).is_file() and Path(dist).is_file():
        return [(refs[0], dists[0])]
    by_name, by_stem = {p.name: p for p in refs}, {}
    for p in refs:
        by_stem.setdefault(p.stem, []).append(p)
    missing = [p.name for p in dists if p.stem not in by_stem]
    if missing:
        raise InputError(f"{len(missing)} image(s) in {dist} have no reference of the same name in {ref}: "
                         f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    pairs = []
    for p in dists:  # the reference of the same file name, else the only one of the same stem
        if p.name not in by_name and len(by_stem[p.stem]) > 1:
            raise InputError(f"{p.name} in {dist}: several references in {ref} share its name "
                             f"({', '.join(q.name for q in by_stem[p.stem])}); keep one")
        pairs.append((by_name.get(p.name, by_stem[p.stem][0]), p))
    return pairs


def _check_pairs(pairs: list[tuple[Path, Path]], names: Sequence[str], set_names: Sequence[str],
                 args: argparse.Namespace) -> None:
    """Check every pair (headers: readable, sizes) against each metric before any is measured, so
    that a bad pair late in a folder stops the run up front, named by its distorted image (data
    cut short inside a file shows only when it is decoded, and is named then)."""
    from functools import partial

    from .metrics.full_reference import check_ssim_size
    from .metrics.lpips import check_lpips_size
    from .metrics.niqe import BLOCK as NIQE_BLOCK

    whole_set = [m.upper() for m in set_names if m in ("fid", "kid")]  # statistics over whole images
    if whole_set and len(pairs) < 2:
        verbs = "compare sets of images and need" if len(whole_set) > 1 else "compares sets of images and needs"
        raise InputError(f"{' and '.join(whole_set)} {verbs} at least 2 pairs, got {len(pairs)} (patch-FID, pfid, "
                         "takes many crops of one image)")
    size_checks = ([check_ssim_size] if "ssim" in names else []) + [  # the metrics' own checks, on the cropped size
        partial(check_lpips_size, net=net) for m, net in (("lpips", "alex"), ("lpips-vgg", "vgg")) if m in names]
    files = list(dict.fromkeys(p for pair in pairs for p in pair))
    size = dict(zip(files, _validate_inputs(files, decode=False, progress=not args.quiet)))  # decoding is most of the metrics' work
    cb = args.crop_border
    for ref, dist in pairs:
        (h, w), (rh, rw) = size[dist], size[ref]
        if (h, w) != (rh, rw):
            raise InputError(f"{dist}: size {w}x{h} differs from its reference {ref} ({rw}x{rh})")
        if cb and 2 * cb >= min(h, w):  # every metric crops
            raise InputError(f"{dist}: --crop-border {cb} leaves nothing of a {w}x{h} image")
        ch, cw = h - 2 * cb, w - 2 * cb  # what the per-pair metrics see
        after = f" after --crop-border {cb}" if cb else ""
        for check in size_checks:
            try:
                check(ch, cw)
            except InputError as e:
                raise InputError(f"{dist}: {e}{after}") from None
        if "niqe" in names and (ch // NIQE_BLOCK) * (cw // NIQE_BLOCK) < 2:
            raise InputError(f"{dist}: NIQE needs at least two {NIQE_BLOCK}x{NIQE_BLOCK} px blocks (e.g. "
                             f"{NIQE_BLOCK}x{2 * NIQE_BLOCK} px), got {cw}x{ch}{after}")
        if "pfid" in set_names and min(ch, cw) < args.pfid_size:
            raise InputError(f"{dist}: patch-FID crops of {args.pfid_size} px (--pfid-size) need images at least "
                             f"that large, got {cw}x{ch}{after}")


def _without_border(x: torch.Tensor, y: torch.Tensor, border: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` without ``border`` px on each side (views): what metrics --crop-border does to every
    metric (``_check_pairs`` has refused a border that leaves nothing)."""
    from .metrics.full_reference import _crop

    return _crop(x, border), _crop(y, border)


def cmd_metrics(args: argparse.Namespace) -> int:
    import csv
    import io as _io

    from tqdm import tqdm

    from . import metrics as M
    from .io import atomic_write_bytes, check_output_file, json_line, read_image

    if args.authenticity:
        if args.sampler != "ddim":
            _refuse_given(args, ["eta"], "only with --sampler ddim")
        _refuse_given(args, _PAIR_OPTIONS, "only for a REF/DIST comparison; --authenticity reports PSNR and "
                      "LPIPS of f(f(x)) against f(x)")
        return cmd_authenticity(args)
    if not args.dist:
        raise InputError("metrics needs REF and DIST (or --authenticity MODEL with one folder)")
    if args.half:
        raise InputError("--half applies to --authenticity's restorations; the metrics run in float32")
    _refuse_given(args, ("steps", "sampler", "eta", "tile", "tile_pad"), "only for --authenticity's restorations")
    if args.gray and args.y:
        raise InputError("--y (compare the luma of RGB images) and --gray (compare grey images) exclude each other")

    names = [m.strip().lower() for m in args.metrics.split(",") if m.strip()]
    unknown = [m for m in names if m not in METRICS_AVAILABLE]
    if unknown or not names:
        raise InputError(f"unknown metric(s) {', '.join(unknown) or '(none given)'}; available: "
                         f"{', '.join(METRICS_AVAILABLE)}")
    for dests, needs in ((("ref_stats",), ("fid",)), (("pfid_size", "pfid_crops"), ("pfid",)),
                         (("niqe_model",), ("niqe",)), (("batch_size", "autocast"), SET_METRICS)):
        if not set(needs) & set(names):
            _refuse_given(args, dests, f"only with {needs[0] if len(needs) == 1 else 'one of ' + ', '.join(needs)} "
                          "in --metrics")
    funcs = {"psnr": M.psnr, "ssim": M.ssim, "mse": M.mse}
    pairs = _pair_by_name(args.ref, args.dist)
    inputs = [p for pair in pairs for p in pair]
    if args.csv:  # refused before any work, as an input never overwritten
        check_output_file(args.csv, inputs, "--csv")
    device = resolve_device(args.device)
    weights_used = []
    for m in names:
        if m.startswith("lpips"):
            from . import weights as ws
            from .metrics.lpips import BACKBONE_WEIGHT, HEADS_WEIGHT, lpips

            net = "vgg" if m == "lpips-vgg" else "alex"
            weights_used += [f"{w} ({ws.resolve(w)})" for w in (BACKBONE_WEIGHT[net], HEADS_WEIGHT[net])]
            funcs[m] = lambda x, y, y_channel, crop_border, net=net: lpips(*_without_border(x, y, crop_border), net=net)
        if m == "identity":  # cosine of 128-d face descriptors; the images are face crops
            from .models.face_descriptor import WEIGHT_NAME, identity_similarity

            weights_used.append(f"{WEIGHT_NAME} ({ws_path(WEIGHT_NAME)})")
            funcs[m] = lambda x, y, y_channel, crop_border: identity_similarity(*_without_border(x, y, crop_border))
        if m == "niqe":  # no-reference: scores the evaluated image alone
            from .metrics.niqe import load_pristine, niqe

            pristine = load_pristine(args.niqe_model)
            weights_used.append(f"NIQE pristine model ({args.niqe_model or ws_path('niqe-pristine-photos')})")
            funcs[m] = lambda x, y, y_channel, crop_border, p=pristine: niqe(y, p, crop_border)
    rgb_only = [m for m in names if m in _RGB_METRICS]
    if rgb_only and (args.y or args.gray):
        raise InputError(f"{', '.join(rgb_only)} compare{'s' if len(rgb_only) == 1 else ''} RGB images; drop "
                         f"{'--y' if args.y else '--gray'} or run {'it' if len(rgb_only) == 1 else 'them'} separately")
    set_names = [m for m in names if m in SET_METRICS]
    names = [m for m in names if m not in SET_METRICS]
    _check_pairs(pairs, names, set_names, args)
    if set_names:
        from ._random import generator_for
        from .metrics.distribution import FeatureStats, images_fingerprint
        from .metrics.fid import InceptionFeatures, SetFeatures, random_crops
        from .models.inception import WEIGHT_NAME as INCEPTION

        extractor = InceptionFeatures(device, batch_size=args.batch_size, autocast=args.autocast)
        if "is" in set_names:  # features-only inception-fid (weights install): say so before any work
            extractor.require_logits()
        weights_used.append(f"{INCEPTION} ({ws_path(INCEPTION)})")
        whole = [m for m in set_names if m != "pfid"]
        # features are kept only for KID, logits only for IS; FID and pFID need the running statistics
        keep = dict(keep_features="kid" in set_names, keep_logits="is" in set_names)
        feats = {"ref": SetFeatures(**keep), "dist": SetFeatures(**keep),
                 "ref_p": SetFeatures(keep_features=False, keep_logits=False),
                 "dist_p": SetFeatures(keep_features=False, keep_logits=False)}
        ref_stats = None
        # the statistics are of the references paired with DIST: saved with their fingerprint, checked on load
        reference = images_fingerprint(ref for ref, _ in pairs) if args.ref_stats and whole else None
        if args.ref_stats and Path(args.ref_stats).is_file():  # FID from them; KID and pFID still read REF
            ref_stats = FeatureStats.load_npz(args.ref_stats, crop_border=args.crop_border, reference=reference)
        elif args.ref_stats:  # saved there after the run
            check_output_file(args.ref_stats, inputs, "--ref-stats")
    rows = []
    for ref_path, dist_path in tqdm(pairs, desc="metrics", unit="img", file=sys.stderr, disable=args.quiet):
        x = read_image(ref_path, "rgb" if not args.gray else "gray").to(device)
        y = read_image(dist_path, "rgb" if not args.gray else "gray").to(device)
        row = {"name": dist_path.name, "reference": str(ref_path)}
        for m in names:
            try:
                row[m] = float(funcs[m](x, y, y_channel=args.y, crop_border=args.crop_border)[0])
            except InputError as e:  # e.g. an image too flat for NIQE: say which
                from .weights import WeightMismatch, WeightNotFound

                if isinstance(e, (WeightMismatch, WeightNotFound)):  # not the image's fault: the weight's file
                    raise
                raise InputError(f"{dist_path}: {e}") from None
        if set_names:
            x, y = _without_border(x, y, args.crop_border)
            if whole:
                if ref_stats is None or "kid" in set_names:  # KID needs the reference features themselves
                    feats["ref"].add(*extractor(x))
                feats["dist"].add(*extractor(y))
            if "pfid" in set_names:
                crop = (args.pfid_size, args.pfid_crops)
                feats["ref_p"].add(*extractor(random_crops(x, *crop, generator_for(args.seed, "ref:" + dist_path.name))))
                feats["dist_p"].add(*extractor(random_crops(y, *crop, generator_for(args.seed, "dist:" + dist_path.name))))
        rows.append(row)
        if args.json:
            print(json_line(row), flush=True)
    summary = {"images": len(rows), **{m: sum(r[m] for r in rows) / len(rows) for m in names},
               "y_channel": args.y, "crop_border": args.crop_border, "weights_used": weights_used}
    if set_names:
        from .metrics.distribution import frechet_distance, kid_subsets_are_whole_sets
        from .metrics.fid import set_metrics

        if whole:
            if ref_stats is not None:
                summary["fid"] = frechet_distance(*ref_stats, feats["dist"].stats.mean, feats["dist"].stats.cov)
                summary["ref_stats"] = f"loaded from {args.ref_stats}"
                if "kid" in whole:  # of the images read in this run, as the saving run computed it
                    summary.update(set_metrics(feats["ref"], feats["dist"], ["kid"],
                                               generator=generator_for(args.seed, "kid")))
                if "is" in whole:  # IS is of DIST alone (it was left out here)
                    summary.update(set_metrics(feats["dist"], feats["dist"], ["is"]))
            else:
                summary.update(set_metrics(feats["ref"], feats["dist"], whole, generator=generator_for(args.seed, "kid")))
                if args.ref_stats:
                    feats["ref"].stats.save(args.ref_stats, args.crop_border, reference)
                    summary["ref_stats"] = f"saved to {args.ref_stats}"
        if "kid" in summary and kid_subsets_are_whole_sets(len(rows), len(rows)):
            summary["kid_note"] = (f"kid_std is 0 by construction: every KID subset (1000 images) holds all "
                                   f"{len(rows)} pairs, so there is no spread to measure")
        if "pfid" in set_names:
            summary.update(set_metrics(feats["ref_p"], feats["dist_p"], ["pfid"]))
            summary["pfid_crops"] = {"size": args.pfid_size, "per_image": args.pfid_crops}
        names = names + [k for k in ("fid", "kid", "kid_std", "is", "is_std", "pfid") if k in summary]
    if args.csv:
        buf = _io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["name", "reference", *[m for m in names if m in rows[0]]])
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_bytes(args.csv, buf.getvalue().encode())
    if args.json:
        print(json_line({"summary": summary}))
    else:
        space = "Y" if args.y else "grey" if args.gray else "RGB"
        print(f"{'metric':<9} {'mean':>12}   ({counted(len(rows), 'image pair')}, {space}, "
              f"crop {args.crop_border} px; weights used: {', '.join(weights_used) or 'none'})")
        for m in names:
            print(f"{m:<9} {summary[m]:>12.6f}")
        if "ref_stats" in summary:
            print(f"fid reference statistics: {summary['ref_stats']}")
        if "kid_note" in summary:
            print(summary["kid_note"])
    return 0


def cmd_authenticity(args: argparse.Namespace) -> int:
    """IDM's authenticity score: ``f(f(x))`` against ``f(x)`` for restored images ``f(x)``."""
    from tqdm import tqdm

    from . import weights as ws
    from ._random import generator_for
    from .cli_restore import check_restorer_tiling
    from .io import json_line, list_images, read_image
    from .models.precision import half_name
    from .restore.idm import IDMRestorer, authenticity

    if args.dist:
        raise InputError("--authenticity takes one folder of restored images f(x), not a REF/DIST pair")
    device = resolve_device(args.device)
    restorer = IDMRestorer.from_file(args.authenticity, device)
    check_restorer_tiling(restorer, args.tile, args.tile_pad)
    dist, note = None, "LPIPS: absent (alexnet-torchvision not in the weight store)"
    if ws.find("alexnet-torchvision") is not None:
        from .metrics.lpips import lpips

        dist, note = (lambda a, b: lpips(a, b, "alex")), "LPIPS (alex)"
    paths = list_images([args.ref])
    _validate_inputs(paths, progress=not args.quiet)  # a bad image late in the folder stops the run before the first restoration
    rows, small = [], []
    for p in tqdm(paths, desc="authenticity", unit="img", file=sys.stderr, disable=args.quiet):
        fx = read_image(p, "rgb").to(device)
        fits = dist is not None and min(fx.shape[-2:]) >= 31  # AlexNet's features need 31 px a side
        if dist is not None and not fits:
            small.append(p.name)
        r = authenticity(restorer, fx, args.steps, generator_for(args.seed, p.name), args.tile, args.tile_pad,
                         distance=dist if fits else None, half=args.half, sampler=args.sampler, eta=args.eta)
        row = {"name": p.name, "psnr": float(r["psnr"][0]), **({"lpips": float(r["lpips"][0])} if fits else {})}
        rows.append(row)
        if args.json:
            print(json_line(row), flush=True)
    with_lpips = [r["lpips"] for r in rows if "lpips" in r]
    if small:
        note += (f" over {len(with_lpips)} of {len(rows)} images ({len(small)} smaller than 31 px a side, "
                 f"e.g. {small[0]})")
    summary = {"images": len(rows), "psnr": sum(r["psnr"] for r in rows) / len(rows), "model": args.authenticity,
               "steps": args.steps, "sampler": args.sampler, **({"eta": args.eta} if args.sampler == "ddim" else {}),
               "tile": args.tile, "tile_pad": args.tile_pad, "half": half_name(device, args.half),
               "lpips_note": note}
    if with_lpips:
        summary["lpips"] = sum(with_lpips) / len(with_lpips)
    if args.json:
        print(json_line({"summary": summary}))
    else:
        print(f"authenticity of {args.authenticity} on {counted(len(rows), 'image')}: PSNR(f(f(x)), f(x)) {summary['psnr']:.3f} dB"
              + (f", LPIPS {summary['lpips']:.4f} ({note})" if with_lpips else f"; {note}"))
    return 0


def add_parser(sub) -> None:
    """The ``metrics`` verb."""
    m = sub.add_parser("metrics", help="compare images with their references",
                       description="Pair images by file name across two folders and report metrics. "
                                   "Example: genrestore metrics clean/ restored/ --metrics psnr,ssim --y --crop-border 4")
    m.add_argument("ref", metavar="REF", help="reference image or folder")
    m.add_argument("dist", metavar="DIST", nargs="?", help="image or folder to evaluate (each needs a reference of the "
                   "same name)")
    m.add_argument("--authenticity", metavar="MODEL", help="IDM's authenticity test: REF is a folder of restored "
                   "images f(x); MODEL (an IDM .safetensors) restores them again; reports PSNR (and LPIPS) of "
                   "f(f(x)) against f(x)")
    m.add_argument("--steps", type=positive_int, default=10, help="--authenticity: sampling steps (default 10)")
    m.add_argument("--sampler", default="ddpm", choices=("ddpm", "ddim"), help="--authenticity: as restore --sampler "
                   "(default ddpm)")
    m.add_argument("--eta", type=unit_float, default=0.0, help="--authenticity --sampler ddim: as restore --eta")
    m.add_argument("--tile", type=nonneg_int, default=256, metavar="PX", help="--authenticity: tile side of the "
                   "network call, as `genrestore restore --tile` (default 256, restore's; 0: whole image), so that "
                   "f(f(x)) is made by the same f as f(x)")
    m.add_argument("--tile-pad", type=nonneg_int, default=16, metavar="PX", help="--authenticity: as restore --tile-pad")
    m.add_argument("--half", action="store_true", help="--authenticity: as restore --half (give it when f(x) was "
                   "made with it, so that both passes are the same f)")
    m.add_argument("--metrics", default="psnr,ssim", help=f"comma-separated, from {', '.join(METRICS_AVAILABLE)} "
                   "(default psnr,ssim)")
    m.add_argument("--y", action="store_true", help="compare BT.601 luma (Y), as the SR papers do")
    m.add_argument("--gray", action="store_true", help="compare as grey images (for grey inputs)")
    m.add_argument("--crop-border", type=nonneg_int, default=0, metavar="N", help="drop N pixels on each side first")
    m.add_argument("--ref-stats", metavar="FILE.npz", help="FID: load the reference statistics from FILE if it "
                   "exists, else compute them and save them there")
    m.add_argument("--pfid-size", type=positive_int, default=128,
                   help="patch-FID crop size, px (default 128, as robust StyleGAN)")
    m.add_argument("--pfid-crops", type=positive_int, default=1000,
                   help="patch-FID crops per image (default 1000, as robust StyleGAN; about 2.5 min a pair on 2 CPU "
                        "cores: fewer for a first look)")
    m.add_argument("--batch-size", type=positive_int, default=32, help="Inception batch size")
    m.add_argument("--autocast", action="store_true", help="Inception in bfloat16 on GPU")
    m.add_argument("--seed", type=int, default=0, help="seed of the patch-FID crops and KID subsets, and of "
                   "--authenticity's sampling (default 0)")
    m.add_argument("--niqe-model", metavar="FILE", help="NIQE pristine model (.npz with mu_pris_param/cov_pris_param, "
                   "or .safetensors); default: the shipped niqe-pristine-photos")
    m.add_argument("--csv", metavar="FILE", help="write the per-image values as CSV")
    m.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help=DEVICE_HELP)
    m.add_argument("--json", action="store_true", help="one JSON object per image, then a summary object")
    m.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    m.set_defaults(func=cmd_metrics, _parser=m)
