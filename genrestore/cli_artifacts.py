"""CLI verb ``artifacts``: (clean, artifact) pairs of DiffGAR's four generative-artifact kinds (§3)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NamedTuple

import torch

from ._argtypes import DEVICE_HELP, float_in, nonneg_float, nonneg_int, positive_float, positive_int, unit_float
from ._checks import InputError

from .artifacts.synth import KINDS, NEEDS, generator_specs, load_generators


# the settings each kind reads besides its generators (NEEDS); an option of another kind given is refused
# (it was ignored, yet part of the resume settings)
_KIND_SETTINGS = {"ar-resample": {"temperature", "top_k", "region"}, "ddim-gauss": {"t0", "ddim_steps", "alpha"},
                  "ddim-scale": {"t0", "ddim_steps", "gamma", "beta"}}
_PERTURBATION = ("alpha", "gamma", "beta")  # recorded in the resume settings only when given (older records lack them)


def _kind_options(kind: str) -> set[str]:
    """The options of ``genrestore artifacts`` that ``--kind kind`` reads."""
    return set(NEEDS[kind]) | _KIND_SETTINGS.get(kind, set())


def cmd_artifacts(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ._random import generator_for
    from .artifacts import synthesize
    from .cli import _plan_outputs, _refuse_given, _shard, _validate_inputs, counted, resolve_device
    from .io import atomic_write_bytes, list_images, outputs_recorded, read_image, write_image_hashed
    from .weights import model_file, sha256_file

    others = sorted(set().union(*map(_kind_options, KINDS)) - _kind_options(args.kind))
    _refuse_given(args, others, f"does not apply to --kind {args.kind}")
    if args.t0 is not None and args.ddim_steps > args.t0 + 1:
        raise InputError(f"--ddim-steps {args.ddim_steps} is more than the {args.t0 + 1} timesteps from 0 to --t0 "
                         f"{args.t0}; give at most {args.t0 + 1} steps or a larger --t0")
    paths = list_images(args.inputs)
    sizes = _validate_inputs(paths, rgb_only="the artifact generators", progress=not args.quiet)
    all_items = crop_items(paths, sizes, args.crop, args.per_image, args.seed)
    items = _shard(all_items, args.shard)
    out_dir = Path(args.output)  # outputs are planned on all the items: shards together are one run
    _plan_outputs([it.name for it in all_items], out_dir, ["{stem}.png", "{stem}_clean.png", "{stem}.json"], paths)
    device = resolve_device(args.device)
    specs = generator_specs(args.kind, {k: getattr(args, k) for k in NEEDS[args.kind]}, flag="--")
    gens = load_generators(args.kind, specs, device)  # a missing or bad model file stops here, with its name
    if "ddpm" in gens:  # --t0 and --ddim-steps against the model's timesteps, before any work
        from .artifacts.synth import ddim_t0

        t0 = ddim_t0(gens["ddpm"], args.t0, "--t0")
        if args.ddim_steps > t0 + 1:
            raise InputError(f"--ddim-steps {args.ddim_steps} is more than the {t0 + 1} timesteps from 0 to --t0 {t0}"
                             f"{'' if args.t0 is not None else ' (the default)'}; give at most {t0 + 1} steps")
    if args.kind == "ar-resample":  # the transformer needs its whole token grid: refuse a small image up front
        from .artifacts.vq import check_ar_resample_size

        for it in all_items:
            try:
                check_ar_resample_size(gens["vq"], gens["transformer"], it.size)
            except InputError as e:
                raise InputError(f"{it.path}: {it.size[1]}x{it.size[0]} px{' crop' if it.box else ''}: {e}") from None
    # what a pair depends on besides its photo and crop: a resumed run reuses only pairs made with all of it
    settings = {"kind": args.kind, "level": args.level, "seed": args.seed, "models": specs,
                "models_sha256": {k: sha256_file(model_file(v)) for k, v in specs.items()},
                "options": {"temperature": args.temperature, "top_k": args.top_k, "region": args.region,
                            "t0": args.t0, "ddim_steps": args.ddim_steps,
                            **{k: getattr(args, k) for k in _PERTURBATION if getattr(args, k) is not None}}}
    total = len(items)
    if args.resume:
        items = [it for it in items if not outputs_recorded(
            out_dir / f"{it.name.stem}.json",
            {"input": str(it.path), "crop_xy_size": list(it.box) if it.box else None, "settings": settings},
            [out_dir / f"{it.name.stem}.png", out_dir / f"{it.name.stem}_clean.png"])]
    bar = tqdm(total=len(items), desc=f"artifacts {args.kind}", unit="img", file=sys.stderr, disable=args.quiet)
    last: tuple[Path | None, torch.Tensor | None] = (None, None)  # crops of one photo are consecutive

    def read(it: CropItem) -> torch.Tensor:
        nonlocal last
        if last[0] != it.path:
            last = (it.path, read_image(it.path, "rgb"))
        if it.box is None:
            return last[1]
        x0, y0, side = it.box
        return last[1][..., y0:y0 + side, x0:x0 + side]

    for batch in same_size_batches([it.size for it in items], args.batch_size):
        group = [items[i] for i in batch]
        x = torch.cat([read(it) for it in group]).to(device)
        y, params = synthesize(args.kind, gens, x, args.level, [generator_for(args.seed, it.name.name) for it in group],
                               temperature=args.temperature, top_k=args.top_k, region=args.region, t0=args.t0,
                               ddim_steps=args.ddim_steps, alpha=args.alpha, gamma=args.gamma, beta=args.beta)
        for i, it in enumerate(group):
            stem = it.name.stem
            hashes: dict[str, str] = {}
            write_image_hashed(out_dir / f"{stem}_clean.png", x[i:i + 1], hashes)
            write_image_hashed(out_dir / f"{stem}.png", y[i:i + 1], hashes)
            rec = {"input": str(it.path), "crop_xy_size": list(it.box) if it.box else None,
                   "clean": str(out_dir / f"{stem}_clean.png"),
                   "artifact": str(out_dir / f"{stem}.png"), "seed": args.seed,
                   "models": specs, **image_params(params, i), "settings": settings, "sha256": hashes}
            atomic_write_bytes(out_dir / f"{stem}.json", (json.dumps(rec, indent=1) + "\n").encode())
        bar.update(len(group))
    bar.close()
    print(f"{counted(len(items), args.kind + ' pair')} (level {args.level}), {total - len(items)} already done -> {out_dir}")
    return 0


class CropItem(NamedTuple):
    """One pair to synthesize: ``name`` (its outputs' stem, with the input's suffix), the photo
    it comes from, the crop ``(x0, y0, side)`` in px (None: the whole photo) and its ``(H, W)``."""

    name: Path
    path: Path
    box: tuple[int, int, int] | None
    size: tuple[int, int]


def crop_items(paths: list[Path], sizes: list[tuple[int, int]], crop: int | None, per_image: int, seed: int
               ) -> list[CropItem]:
    """The pairs a run makes: each whole photo, or with ``crop`` its ``per_image`` square crops
    named ``STEM-j``, at positions drawn from ``generator_for(seed, "crop-NAME-j")``.

    Raises:
        InputError: ``crop`` or ``per_image`` below 1, ``per_image`` other than 1 without ``crop``,
            a photo smaller than ``crop``, or ``per_image`` above its number of distinct crops.
    """
    from ._random import generator_for

    if crop is None:
        if per_image != 1:
            raise InputError(f"--per-image {per_image} needs --crop (a whole photo is one pair)")
        return [CropItem(p, p, None, hw) for p, hw in zip(paths, sizes)]
    if crop < 1 or per_image < 1:
        raise InputError(f"--crop and --per-image must be at least 1, got {crop} and {per_image}")
    items = []
    for p, (h, w) in zip(paths, sizes):
        if min(h, w) < crop:
            raise InputError(f"{p}: {w}x{h} px is smaller than --crop {crop}")
        positions = (h - crop + 1) * (w - crop + 1)
        if per_image > positions:  # more would repeat crops (and a huge count never ends)
            raise InputError(f"{p}: --per-image {per_image} is more than the {positions} distinct {crop} px crops of "
                             f"a {w}x{h} px photo")
        for j in range(per_image):
            g = generator_for(seed, f"crop-{p.name}-{j}")
            y0 = int(torch.randint(h - crop + 1, (1,), generator=g))
            x0 = int(torch.randint(w - crop + 1, (1,), generator=g))
            items.append(CropItem(p.with_name(f"{p.stem}-{j}{p.suffix}"), p, (x0, y0, crop), (crop, crop)))
    return items


def same_size_batches(sizes: list[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Indices of consecutive images of one size, at most ``batch_size`` a group, in input order.

    Example:
        >>> same_size_batches([(8, 8), (8, 8), (8, 8), (4, 8), (8, 8)], 2)
        [[0, 1], [2], [3], [4]]
    """
    groups: list[list[int]] = []
    for i, hw in enumerate(sizes):
        if groups and len(groups[-1]) < batch_size and sizes[groups[-1][0]] == hw:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def image_params(params: dict, i: int) -> dict:
    """Image ``i``'s record from a batch's parameters (``rects`` holds one entry per image)."""
    return {k: (v[i] if k == "rects" else v) for k, v in params.items()}


def add_parser(sub) -> None:
    a = sub.add_parser("artifacts", help="synthesize generative artifacts (DiffGAR §3): (clean, artifact) pairs",
                       description="Writes OUT/NAME.png (artifact), OUT/NAME_clean.png and OUT/NAME.json (exact "
                                   "parameters). Level 0.5 = DiffGAR's settings (4x4 token rectangle; 10 % of tokens "
                                   "resampled; alpha 0.3; gamma 1.015, beta 0.01). Example: genrestore artifacts "
                                   "photos/ -o pairs/ --kind vq-replace --level 0.5 --vq vq.safetensors")
    a.add_argument("inputs", nargs="+", metavar="INPUT", help="clean RGB images, folders or globs")
    a.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    a.add_argument("--kind", required=True, choices=KINDS, help="artifact kind: VQ token replacement, "
                   "autoregressive resampling, DDIM-latent noise or DDIM-latent scale/shift")
    a.add_argument("--level", type=unit_float, default=0.5, help="strength in [0, 1] (0.5: the paper's)")
    a.add_argument("--seed", type=int, default=0, help="base seed; each pair's seed derives from it and its file "
                   "name")
    a.add_argument("--vq", metavar="MODEL", help="vq-replace, ar-resample: the VQ autoencoder, a file or weight "
                   "name (default: the shipped vq-default)")
    a.add_argument("--transformer", metavar="MODEL", help="ar-resample: the token transformer over that autoencoder's "
                   "tokens (default: the shipped transformer-default, for images of at least 128 px a side)")
    a.add_argument("--ddpm", metavar="MODEL", help="ddim-gauss, ddim-scale: the unconditional DDPM (default: the "
                   "shipped ddpm-default)")
    a.add_argument("--temperature", type=positive_float, default=18.0, help="ar-resample: sampling temperature (18, "
                   "DiffGAR's FFHQ test pairs; its training pairs used 21, while the ddim kinds' level 0.5 gives "
                   "the training values)")
    a.add_argument("--top-k", type=positive_int, default=500, help="ar-resample: top-k (500)")
    a.add_argument("--region", default="suffix", choices=("suffix", "rectangle"), help="ar-resample: what to resample")
    a.add_argument("--t0", type=nonneg_int, default=None,
                   help="ddim kinds: the stopping step T0 (default 0.84 T: DiffGAR's 840 of 1000 timesteps)")
    a.add_argument("--ddim-steps", type=positive_int, default=48, help="ddim kinds: inversion and decoding steps (48)")
    a.add_argument("--alpha", type=nonneg_float, help="ddim-gauss: the latent noise's scale instead of the level's "
                   "0.6 x level (DiffGAR's test pairs: 0.25)")
    a.add_argument("--gamma", type=positive_float, help="ddim-scale: the latent's scale instead of the level's "
                   "1 + 0.03 x level (DiffGAR's test pairs: 1.009)")
    a.add_argument("--beta", type=float_in(), help="ddim-scale: the latent's shift instead of the level's "
                   "0.02 x level (DiffGAR's test pairs: 0.005)")
    a.add_argument("--crop", type=positive_int, metavar="SIDE", help="make pairs of square crops of this side (px) instead "
                   "of whole photos (a training set from large photos)")
    a.add_argument("--per-image", type=positive_int, default=1, help="with --crop: crops per photo, named STEM-0, STEM-1, ...; "
                   "positions from --seed (1)")
    a.add_argument("--resume", action="store_true", help="skip pairs whose PNGs and JSON are there, made with the "
                   "same settings and model files (checked by sha256)")
    a.add_argument("--shard", metavar="i/n", help="make only every n-th pair, starting at i")
    a.add_argument("--batch-size", type=positive_int, default=8,
                   help="images of the same size synthesized together (each keeps its own seed; 8)")
    a.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help=DEVICE_HELP)
    a.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    a.set_defaults(func=cmd_artifacts, _parser=a)


def cmd_train_generator(args: argparse.Namespace) -> int:
    from .cli import resolve_device
    from .io import check_output_folder
    from .models.checkpoint import config_errors
    from .models.vq import TokenTransformer, VQAutoencoder

    check_output_folder(args.output)
    # the constructors' own words (torch's AssertionError, GroupNorm's num_groups) name no option
    if args.model == "transformer" and args.dim % args.heads:
        raise InputError(f"--dim {args.dim} is not divisible by --heads {args.heads}")
    if args.model == "vq" and any(c % args.groups for c in args.channels):
        raise InputError(f"--groups {args.groups} must divide every --channels width, got "
                         f"{' '.join(map(str, args.channels))}")
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)  # the initial weights (and the VQ's discriminator), so that the recipe reproduces the model
    base = (f"genrestore train {args.model} --data {args.data} --steps {args.steps} --batch-size {args.batch_size} "
            f"--lr {args.lr} --ema-decay {args.ema_decay} --seed {args.seed}")
    common = dict(ema_decay=args.ema_decay, out_dir=args.output, save_every=args.save_every, seed=args.seed,
                  device=device, progress=not args.quiet, time_limit=args.time_limit, channels_last=args.channels_last,
                  compile=args.compile)
    if args.model == "vq":
        from .artifacts.generators import train_vq_autoencoder, vq_disc_start

        with config_errors("--channels, --groups, ... do not build a VQ autoencoder"):
            model = VQAutoencoder(args.codebook_size, args.embed_dim, args.channels, args.layers_per_block,
                                  norm_num_groups=args.groups, mid_attention=not args.no_attention)
        disc_start = vq_disc_start(args.steps, args.disc_start, args.output)
        train_vq_autoencoder(model, args.data, args.steps, args.batch_size, args.size, args.lr, args.adv_weight,
                             disc_start, recipe=base + f" --size {args.size} --codebook-size {args.codebook_size} "
                             f"--embed-dim {args.embed_dim} --adv-weight {args.adv_weight} "
                             f"--channels {' '.join(map(str, args.channels))} --layers-per-block {args.layers_per_block} "
                             f"--groups {args.groups} "
                             f"--disc-start {disc_start} --restart-every {args.restart_every}"
                             f"{' --no-attention' if args.no_attention else ''}", eval_images=args.eval_data, restart_every=args.restart_every,
                             **common)
    elif args.model == "transformer":
        from .artifacts.generators import train_token_transformer

        from . import weights as ws

        vq = VQAutoencoder.load(ws.model_file(args.vq), device)
        side = args.size // vq.factor
        if side * vq.factor != args.size:
            raise InputError(f"--size must be a multiple of the autoencoder's factor {vq.factor}, got {args.size}")
        with config_errors("--dim, --depth, --heads do not build a transformer"):
            model = TokenTransformer(vq.codebook_size, side * side, args.dim, args.depth, args.heads)
        train_token_transformer(model, vq, args.data, args.steps, args.batch_size, args.lr,
                                recipe=base + f" --vq {args.vq} --size {args.size} --dim {args.dim} --depth "
                                f"{args.depth} --heads {args.heads}", eval_images=args.eval_data,
                                quality_samples=args.quality_samples, **common)
    else:
        from .artifacts.generators import train_ddpm
        from .cli_train import _unet_config
        from .diffusion import DenoisingUNet

        model = DenoisingUNet(3, unet=_unet_config(args))
        train_ddpm(model, args.data, args.steps, args.batch_size, args.size, args.lr,
                   recipe=base + f" --size {args.size} --channels " + " ".join(map(str, args.channels))
                   + f" --layers-per-block {args.layers_per_block}", eval_images=args.eval_data,
                   quality_samples=args.quality_samples, **common)
    from .cli_train import report_training

    return report_training(args, args.model)


def add_train_parser(tsub) -> None:
    """Register ``train vq``, ``train transformer`` and ``train ddpm`` (the artifact generators)."""
    from .cli_train import _common_train_args

    help_ = {"vq": "train a VQ autoencoder (VQGAN-style) for token artifacts",
             "transformer": "train an autoregressive transformer over a VQ autoencoder's tokens",
             "ddpm": "train an unconditional DDPM for the DDIM-latent artifacts"}
    for name, text in help_.items():
        # the transformer has no --channels: without abbreviations that is not read as --channels-last
        p = tsub.add_parser(name, help=text, allow_abbrev=name != "transformer",
                            description=f"{text}; resumes from OUT/checkpoint.safetensors. "
                            f"Example: genrestore train {name} --data photos/train -o runs/{name}"
                            + (" --vq runs/vq/model.safetensors" if name == "transformer" else ""))
        widths = "encoder block widths, the decoder's mirrored; 2^(blocks - 1) is the latent's factor"
        _common_train_args(p, unet=name != "transformer", **({"widths": widths} if name == "vq" else {}))
        unet = {"vq": {"channels": [64, 128, 128, 256], "layers_per_block": 1},
                "ddpm": {"channels": [64, 128, 256, 256]}}.get(name, {})
        p.set_defaults(size=64, batch_size=16, lr=2e-4, save_every=500, func=cmd_train_generator, model=name, **unet)
        p.add_argument("--eval-data", help="photos for the quality number (default: --data)")
        if name != "vq":
            p.add_argument("--quality-samples", type=nonneg_int, default=64,
                           help="samples for the FID/KID in the model's JSON (0: none)")
        if name == "vq":
            p.add_argument("--codebook-size", type=positive_int, default=512, help="codes in the codebook (default 512)")
            p.add_argument("--embed-dim", type=positive_int, default=4, help="channels of the latent and of each "
                           "code (default 4)")
            p.add_argument("--groups", type=positive_int, default=32, help="GroupNorm groups")
            p.add_argument("--adv-weight", type=nonneg_float, default=0.1, help="GAN loss weight")
            p.add_argument("--disc-start", type=nonneg_int, help="first step with the GAN loss (default: half of --steps; "
                           "a run trained on with more --steps keeps its own)")
            p.add_argument("--no-attention", action="store_true",
                           help="no self-attention in the middle blocks: fully convolutional, for training on "
                                "small crops and use on large images")
            p.add_argument("--restart-every", type=nonneg_int, default=50,
                           help="steps between restarts of unused codes from encoder outputs (0: none)")
        if name == "transformer":
            p.add_argument("--vq", required=True, help="the trained VQ autoencoder (.safetensors + .json) or a weight "
                           "name (vq-default) whose tokens the transformer models")
            p.add_argument("--dim", type=positive_int, default=256, help="token embedding width (default 256)")
            p.add_argument("--depth", type=positive_int, default=6, help="transformer blocks (default 6)")
            p.add_argument("--heads", type=positive_int, default=8, help="attention heads; must divide --dim (default 8)")
