"""Training the generators whose artifacts DiffGAR synthesizes (§3): the VQ autoencoder, the token
transformer over its grid, and the unconditional DDPM. All three train on random crops of clean
photos with :class:`~genrestore.diffusion.train.TrainRun` (seeded by step, resumable, EMA, and a
final ``model.safetensors`` + JSON with recipe, wall time and a quality number). ``time_limit`` (seconds)
stops a call early with a checkpoint, to be continued by the same call; ``channels_last`` and
``compile`` are TrainRun's speed options.

* :func:`train_vq_autoencoder`: L1 + the VQ-VAE codebook/commitment loss, + LPIPS-VGG when
  ``vgg16-torchvision`` is in the weight store, + a non-saturating PatchGAN loss (weight
  ``adv_weight``) after ``disc_start`` steps, as VQGAN (Esser et al. 2021) adds them (their
  adaptive weight is replaced by a fixed one), with dead codes restarted from encoder outputs
  (:class:`CodeUsage`). Quality: reconstruction PSNR and codes in use on held-out crops.
* :func:`train_token_transformer`: next-token cross-entropy on the token grids of crops encoded
  by a trained autoencoder. Quality: bits per token on held-out crops.
* :func:`train_ddpm`: the epsilon objective (DDPM eq. 14).

The transformer and the DDPM also record FID and KID of their samples (:func:`sample_tokens`
decoded by the autoencoder; :func:`sample_ddpm`, deterministic DDIM from pure noise) against as
many random crops of held-out photos (:func:`sample_quality`), when the FID Inception
(``inception-fid``) is in the weight store.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from .._checks import InputError
from .._random import generator_for, randint, randn


class CodeUsage(torch.nn.Module):
    """Codebook usage over a window of steps, and the random restart of dead codes (Dhariwal et al.
    2020, Jukebox §2.4): at every ``every``-th step, each code that no token used since the last
    check is set to a random encoder output of the current batch (plus noise of 1 % of their
    standard deviation, so that duplicates separate). Step 0 thus initializes the codebook from
    data; without restarts the codes drawn near zero collapse to a handful in use.

    Its ``count`` buffer is part of the training checkpoint, so resumed runs restart identically.
    """

    def __init__(self, codebook_size: int, every: int = 50):
        super().__init__()
        self.every = every
        self.register_buffer("count", torch.zeros(codebook_size, dtype=torch.long))

    @torch.no_grad()
    def update(self, tokens: torch.Tensor, z_e: torch.Tensor, codebook: torch.Tensor, step: int,
               generator: torch.Generator, world: int = 1) -> int:
        """Count ``tokens`` ``(N, h, w)``; at a check step restart dead rows of ``codebook``
        ``(K, d)`` in place from ``z_e`` ``(N, d, h, w)``. Returns how many were restarted.

        With ``world > 1`` the counts are summed over the processes and process 0's codebook is
        broadcast, so every process keeps the same codes."""
        used = torch.bincount(tokens.flatten(), minlength=self.count.numel()).to(self.count)
        if world > 1:
            import torch.distributed as dist

            dist.all_reduce(used)
        self.count += used
        if step % self.every:
            return 0
        dead = self.count == 0
        n = int(dead.sum())
        if n:
            vecs = z_e.detach().permute(0, 2, 3, 1).reshape(-1, z_e.shape[1]).float()
            pick = randint(generator, n, 0, vecs.shape[0], device=vecs.device)
            noise = randn(generator, (n, vecs.shape[1]), device=vecs.device) * 0.01 * vecs.std()
            codebook[dead.to(codebook.device)] = (vecs[pick] + noise).to(codebook)
            if world > 1:
                import torch.distributed as dist

                dist.broadcast(codebook, 0)
        self.count.zero_()
        return n


def _held_out(images, crop: int, count: int, seed: int) -> torch.Tensor:
    from ..diffusion.train import load_images, random_crops

    return random_crops(load_images(images), count, crop, generator_for(seed, "held-out"))


def _eval_images(eval_images, crop: int) -> list[torch.Tensor] | None:
    """The held-out photos (a folder or tensors; None: none given) read and checked against the
    crop size before the training, so that a bad one does not stop the run at its end."""
    from ..diffusion.train import load_images

    if eval_images is None:
        return None
    out = load_images(eval_images)
    small = [i for i, im in enumerate(out) if min(im.shape[-2:]) < crop]
    if small:
        name = eval_images if isinstance(eval_images, (str, os.PathLike)) else "eval_images"
        raise InputError(f"{name}: {len(small)} of {len(out)} held-out images are smaller than the crop size {crop} "
                         f"(the first is {out[small[0]].shape[-1]}x{out[small[0]].shape[-2]} px)")
    return out


def _check_quality_samples(n: int) -> None:
    if n < 2:
        raise InputError(f"FID/KID of samples need at least 2 samples (0 for none), got {n}")


def sample_quality(samples: torch.Tensor, images, seed: int = 0, device: str | torch.device = "cpu") -> dict:
    """FID and KID of generated ``samples`` ``(N, 3, S, S)`` in ``[0, 1]`` against ``N`` random
    ``S x S`` crops of ``images`` (a folder or tensors; crops drawn from ``seed``), both resized to
    299 px by the Inception. With few samples FID is biased upwards (compare runs of equal ``N``
    only); KID is unbiased. Without ``inception-fid`` in the store, says so instead of a number.

    Returns:
        ``{"fid", "kid", "samples", "crop"}`` or ``{"fid": None, "note": ...}``.

    Raises:
        InputError: fewer than 2 samples.
    """
    from .. import weights as ws
    from ..metrics.fid import InceptionFeatures, SetFeatures, set_metrics

    n, side = samples.shape[0], samples.shape[-1]
    _check_quality_samples(n)
    if ws.find("inception-fid") is None:
        return {"fid": None, "kid": None, "samples": n, "crop": side,
                "note": "absent: inception-fid not in the weight store (genrestore weights install inception-fid)"}
    extractor = InceptionFeatures(device)
    real, fake = SetFeatures(), SetFeatures()
    real.add(*extractor(_held_out(images, side, n, seed + 1)))
    fake.add(*extractor(samples.clamp(0, 1)))
    m = set_metrics(real, fake, ("fid", "kid"), kid_subset=n, generator=generator_for(seed, "kid"))
    return {"fid": m["fid"], "kid": m["kid"],  # KID over the whole sets: no subset spread to report
            "samples": n, "crop": side, "reference": "random crops of held-out photos"}


def sample_tokens(gpt, count: int, generator=None, temperature: float = 1.0, top_k: int | None = None) -> torch.Tensor:
    """``(count, L)`` token sequences drawn from the transformer alone (ancestral sampling)."""
    dev = next(gpt.parameters()).device
    start = torch.zeros(count, gpt.length, dtype=torch.long, device=dev)
    return gpt.sample(start, torch.zeros(gpt.length, dtype=torch.bool), temperature, top_k, generator)


@torch.no_grad()
def sample_ddpm(net, count: int, size: int, steps: int = 50, generator=None, batch_size: int = 32) -> torch.Tensor:
    """``(count, C, size, size)`` samples in ``[0, 1]`` of an unconditional epsilon
    :class:`~genrestore.diffusion.DenoisingUNet`: deterministic DDIM (eta 0) with ``steps`` steps
    from pure noise at ``T - 1``."""
    from ..diffusion.sampling import ddim_decode

    dev = next(iter([*net.parameters(), *net.buffers()]), torch.empty(0)).device
    noise = randn(generator, (count, net.channels, size, size), device=dev)
    out = [ddim_decode(net, z, steps, schedule=net.config["schedule"]) for z in noise.split(batch_size)]
    return ((torch.cat(out) + 1) / 2).clamp(0, 1)


def vq_disc_start(steps: int, disc_start: int | None, out_dir: str | os.PathLike) -> int:
    """``disc_start``, or by default half of ``steps``, of the run's first call: a checkpoint in
    ``out_dir`` keeps its own, so that rerunning with a larger ``steps`` trains on."""
    from ..diffusion.train import CHECKPOINT, checkpoint_run

    if disc_start is not None:
        return disc_start
    checkpoint = Path(out_dir) / CHECKPOINT
    return checkpoint_run(checkpoint).get("disc_start", steps // 2) if checkpoint.is_file() else steps // 2


def train_vq_autoencoder(model, images: Sequence[torch.Tensor] | str | os.PathLike, steps: int, batch_size: int = 16,
                         crop: int = 64, lr: float = 2e-4, adv_weight: float = 0.1, disc_start: int | None = None,
                         ema_decay: float = 0.999, out_dir: str | os.PathLike = "runs/vq", save_every: int = 500,
                         seed: int = 0, device: str | torch.device = "cpu", recipe: str | None = None,
                         time_limit: float | None = None, channels_last: bool = False, compile: bool | str = False,
                         progress: bool = False, eval_images=None, restart_every: int = 50):
    """Train a :class:`~genrestore.models.vq.VQAutoencoder`; return the EMA model.

    Args:
        adv_weight: weight of the generator's GAN loss (0: none).
        disc_start: first step with the GAN loss (default: :func:`vq_disc_start`, half of ``steps``).
        eval_images: photos for the held-out PSNR (default: ``images``; 16 crops from a separate seed).
        restart_every: steps between restarts of dead codes (:class:`CodeUsage`; 0: none).

    Raises:
        InputError: crops under 24 px with the GAN loss (the discriminator would fail at ``disc_start``).
    """
    from ..diffusion.train import TrainRun
    from ..metrics import psnr
    from ..restore.diffusion_gan import PatchDiscriminator
    from .. import weights as ws

    disc_start = vq_disc_start(steps, disc_start, out_dir)
    eval_images = _eval_images(eval_images, crop)
    if adv_weight > 0 and disc_start < steps and crop < PatchDiscriminator.min_side():
        raise InputError(f"the GAN loss's PatchDiscriminator needs crops of at least {PatchDiscriminator.min_side()} "
                         f"px, got {crop} (use larger crops, --size, or no GAN loss, --adv-weight 0)")
    perceptual = None
    if ws.find("vgg16-torchvision") is not None:
        from ..metrics.lpips import LPIPS

        perceptual = LPIPS.from_store("vgg").requires_grad_(False)
    disc = PatchDiscriminator(3, 1, 32)
    tr = TrainRun(model, images, steps, batch_size, crop, ema_decay, out_dir, save_every, seed, device,
                  {"lr": lr, "adv_weight": adv_weight, "disc_start": disc_start, "config": model.config,
                   "perceptual": perceptual is not None, "restart_every": restart_every}, time_limit=time_limit,
                  channels_last=channels_last, compile=compile)
    dev = tr.device
    disc.to(dev)
    if perceptual is not None:
        perceptual.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.9))
    usage = CodeUsage(model.codebook_size, restart_every).to(dev)
    codebook = model.vq.quantize.embedding.weight
    tr.modules.update({"disc": disc, "usage": usage})
    tr.optimizers.update({"adam": (opt, model), "adam_d": (opt_d, disc)})
    tr.resume(list(tr.run))
    for step in tr.steps("train vq", progress):
        x = tr.crops(step).to(dev)
        recon, vq_loss, z_e, tokens = model.autoencode(x)
        loss = F.l1_loss(recon, x) + vq_loss.mean()
        if perceptual is not None:
            loss = loss + perceptual(recon.clamp(0, 1), x).mean()
        if adv_weight > 0 and step >= disc_start:
            disc.requires_grad_(False)
            loss = loss + adv_weight * F.softplus(-disc(recon * 2 - 1)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        tr.sync_gradients(model)
        opt.step()
        if adv_weight > 0 and step >= disc_start:
            disc.requires_grad_(True)
            loss_d = F.softplus(-disc(x * 2 - 1)).mean() + F.softplus(disc(recon.detach() * 2 - 1)).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            tr.sync_gradients(disc)
            opt_d.step()
        if restart_every:
            usage.update(tokens, z_e, codebook.data, step, tr.draw(f"restart-{step}"), tr.world)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"VQ loss is {loss.item()} at step {step}")
    if tr.stopped_at is not None:  # out of time: the checkpoint is saved, no final model yet
        return tr.finish()
    held = _held_out(eval_images if eval_images is not None else images, crop, 16, seed)
    with torch.no_grad():
        held_tokens = tr.ema.encode_tokens(held.to(dev))
        rec = tr.ema.decode_tokens(held_tokens).cpu()
    quality = {"reconstruction_psnr_db": round(float(psnr(rec, held).mean()), 3), "held_out_crops": 16,
               "codes_used_held_out": int(held_tokens.unique().numel()),
               "perceptual": "lpips-vgg" if perceptual is not None else "absent (vgg16-torchvision not in the store)"}
    return tr.finish(recipe, quality=quality)


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 of ``module``'s state dict (names, dtypes, shapes and values), wherever it lies."""
    import hashlib

    from ..diffusion.train import hash_tensors

    h = hashlib.sha256()
    hash_tensors(h, ((f"{k} {v.dtype} {tuple(v.shape)}\n", v) for k, v in module.state_dict().items()))
    return h.hexdigest()


def encode_crops(vq, crops: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` crops -> ``(B, L)`` raster-order tokens."""
    with torch.no_grad():
        return vq.encode_tokens(crops).flatten(1)


def train_token_transformer(model, vq, images: Sequence[torch.Tensor] | str | os.PathLike, steps: int,
                            batch_size: int = 16, lr: float = 3e-4, ema_decay: float = 0.999,
                            out_dir: str | os.PathLike = "runs/gpt", save_every: int = 500, seed: int = 0,
                            device: str | torch.device = "cpu", recipe: str | None = None,
                            time_limit: float | None = None, channels_last: bool = False, compile: bool | str = False,
                            progress: bool = False,
                            eval_images=None, quality_samples: int = 64):
    """Train a :class:`~genrestore.models.vq.TokenTransformer` on ``vq``'s tokens of random crops.

    The crop side is ``sqrt(model.length) * vq.factor`` (square token grids); a checkpoint resumes
    only with the same ``vq`` weights (:func:`weights_digest`). Quality: bits per
    token on held-out crops, and FID/KID of ``quality_samples`` decoded samples at temperature 1
    (:func:`sample_quality`; 0: none). Returns the EMA model.
    """
    from ..diffusion.train import TrainRun, load_images

    if quality_samples:
        _check_quality_samples(quality_samples)
    side = math.isqrt(model.length)
    if side * side != model.length or model.vocab_size != vq.codebook_size:
        raise InputError(f"expected a square token grid and {vq.codebook_size} codes; the transformer has "
                         f"{model.length} positions and {model.vocab_size} codes")
    crop = side * vq.factor
    eval_images = _eval_images(eval_images, crop)
    tr = TrainRun(model, images, steps, batch_size, crop, ema_decay, out_dir, save_every, seed, device,
                  {"lr": lr, "config": model.config, "vq": vq.config, "vq_weights": weights_digest(vq)},
                  time_limit=time_limit, channels_last=channels_last, compile=compile)
    dev = tr.device
    vq.to(dev).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95))
    tr.optimizers["adamw"] = (opt, model)
    tr.resume(list(tr.run))
    for step in tr.steps("train transformer", progress):
        tokens = encode_crops(vq, tr.crops(step).to(dev))
        loss = F.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        tr.sync_gradients(model)
        opt.step()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"transformer loss is {loss.item()} at step {step}")
    if tr.stopped_at is not None:
        return tr.finish()
    eval_images = load_images(images if eval_images is None else eval_images)  # read once for both numbers
    held = encode_crops(vq, _held_out(eval_images, crop, 16, seed).to(dev))
    with torch.no_grad():
        nll = F.cross_entropy(tr.ema(held).flatten(0, 1), held.flatten())
    quality = {"bits_per_token": round(float(nll) / math.log(2), 4),
               "uniform_bits_per_token": round(math.log2(model.vocab_size), 4), "held_out_crops": 16}
    if quality_samples:
        tokens = sample_tokens(tr.ema, quality_samples, generator_for(seed, "quality-samples"))
        with torch.no_grad():
            decoded = vq.decode_tokens(tokens.view(-1, side, side)).cpu()
        quality["samples_temperature_1"] = sample_quality(decoded, eval_images, seed, dev)
    return tr.finish(recipe, quality=quality)


def train_ddpm(model, images: Sequence[torch.Tensor] | str | os.PathLike, steps: int, batch_size: int = 16,
               crop: int = 64, lr: float = 2e-4, ema_decay: float = 0.999, out_dir: str | os.PathLike = "runs/ddpm",
               save_every: int = 500, seed: int = 0, device: str | torch.device = "cpu", recipe: str | None = None,
               time_limit: float | None = None, channels_last: bool = False, compile: bool | str = False,
               progress: bool = False, eval_images=None, quality_samples: int = 64, quality_steps: int = 50):
    """Train a :class:`~genrestore.diffusion.DenoisingUNet` with ``E ||eps - eps_theta(x_t, t)||^2``; return the EMA.

    Quality: FID/KID of ``quality_samples`` DDIM samples (``quality_steps`` steps) of ``crop`` px
    against held-out crops (:func:`sample_quality`; 0: none).
    """
    from ..diffusion.schedulers import make_scheduler
    from ..diffusion.train import TrainRun

    if quality_samples:
        _check_quality_samples(quality_samples)
    eval_images = _eval_images(eval_images, crop)
    tr = TrainRun(model, images, steps, batch_size, crop, ema_decay, out_dir, save_every, seed, device,
                  {"lr": lr, "config": model.config}, time_limit=time_limit,
                  channels_last=channels_last, compile=compile)
    dev = tr.device
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    tr.optimizers["adamw"] = (opt, model)
    tr.resume(list(tr.run))
    sched = make_scheduler("ddpm", model.config["schedule"], "epsilon")
    autocast = dev.type == "cuda"
    for step in tr.steps("train ddpm", progress):
        x0 = tr.crops(step).to(dev) * 2 - 1
        g = tr.draw(f"loss-{step}")
        t = randint(g, batch_size, 0, sched.config.num_train_timesteps, device=dev)
        noise = randn(g, x0.shape, device=dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
            loss = F.mse_loss(model(sched.add_noise(x0, noise, t), t).float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        tr.sync_gradients(model)
        opt.step()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"DDPM loss is {loss.item()} at step {step}")
    if tr.stopped_at is not None or not quality_samples:
        return tr.finish(recipe)
    samples = sample_ddpm(tr.ema, quality_samples, crop, quality_steps, generator_for(seed, "quality-samples")).cpu()
    eval_images = images if eval_images is None else eval_images
    quality = {f"samples_ddim_{quality_steps}": sample_quality(samples, eval_images, seed, dev)}
    return tr.finish(recipe, quality=quality)
