"""CLI verb ``train`` for the restorers: ``train idm`` (and its regression baseline), ``train
diffgar``, ``train inpaint`` and ``train stylegan2``, with the options they share."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from ._argtypes import DEVICE_HELP, float_in, nonneg_float, nonneg_int, positive_float, positive_int
from ._checks import InputError
from .cli_restore import EXTRINSIC_TILE_PAD, check_restorer_tiling
from .io import read_json_object

UNET_WIDTHS = "UNet block widths (the last block has attention)"


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
    # what the degradation and the latents depend on, so that a checkpoint resumes only with the same
    settings = [] if pairs or args.level == "M" else [f"--level {args.level}"]
    if args.autoencoder:  # latent DiffGAR (§4): the UNet works on the frozen autoencoder's scaled z_e
        from . import weights as ws
        from .models.vq import VQAutoencoder
        from .restore.diffgar import latent_scale

        ae_file = ws.model_file(args.autoencoder)
        ae = VQAutoencoder.load(ae_file, device=device).eval().requires_grad_(False)
        settings.append(f"--autoencoder sha256 {ws.sha256_file(ae_file)}")
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
    extra["settings"] = " ".join(settings) or None
    if pairs:
        train_conditional_pairs(model, pairs, *common, meta=meta, progress=not args.quiet, half=args.half, **extra,
                                **_speed(args))
    else:
        train_conditional(model, args.data, diffgar_degrade(level=args.level), *common, meta=meta, **extra,
                          progress=not args.quiet, half=args.half, **_speed(args, workers=True))
    return report_training(args, "DiffGAR model")


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
        from .diffusion.train import dict_differences

        diff = dict_differences(a, b)
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


def _common_train_args(t: argparse.ArgumentParser, data_required: bool = True, unet: bool = True,
                       workers: bool = False, half: bool = False, widths: str = UNET_WIDTHS) -> None:
    t.add_argument("--data", required=data_required, help="folder of clean photos")
    t.add_argument("-o", "--output", required=True, metavar="OUT", help="run folder: checkpoint.safetensors while "
                   "training, model.safetensors + .json at the end; rerunning the command resumes")
    t.add_argument("--size", type=positive_int, default=128, help="crop side, px (default %(default)s)")
    t.add_argument("--steps", type=positive_int, default=10000, help="training steps in all (default %(default)s); "
                   "a larger value on rerun trains on, one below the checkpoint's step is refused")
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
