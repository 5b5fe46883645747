"""Denoising diffusion GAN inpainting (Xiao, Kreis & Vahdat 2022, "Tackling the generative
learning trilemma"; seed 004's ref. 14, in its §2.1 on diffusion-GAN inpainting and its Table 1), and
the plain conditional GAN as its one-step case.

The forward process has ``T`` large steps (2 or 4). Each reverse step is *not* Gaussian, so a
generator predicts the clean image ``x_0' = G(x_t, t, c)`` from the noisy one and the condition
``c`` (known pixels + mask, see :func:`genrestore.restore.inpaint.inpaint_condition`), and
``x_{t-1}`` is drawn from the Gaussian posterior ``q(x_{t-1} | x_t, x_0')``. A time-conditioned
discriminator ``D(x_{t-1}, x_t, t, c)`` tells real pairs from ``q(x_{t-1}, x_t | x_0)`` from
generated ones. Losses: non-saturating GAN loss, R1 penalty on the real ``x_{t-1}`` (gamma / 2
``||grad_{x_{t-1}} D||^2``, as DDGAN; not on ``x_t`` or ``c``, which real and fake pairs share), and an L1 term on ``x_0'`` inside the holes (weight ``l1_weight``; pix2pix's
reconstruction term, which conditional inpainting needs).

Timestep indices follow diffusers: ``t = 0 .. T-1`` are the noisy states (``alphas_cumprod[t]``)
and ``x_{-1}`` is the clean image, so sampling makes ``T`` network calls and the last one returns
``x_0'`` itself. Sampling is therefore ancestral DDPM sampling of an x0-predicting model with
``T`` steps, which :class:`genrestore.restore.idm.IDMRestorer` already does (diffusers'
``DDPMScheduler.step`` draws from the posterior; :func:`posterior_sample` is its batched,
differentiable form for training). DDGAN bounds ``x_0'`` by a tanh on its generator's output;
ours is unbounded: training feeds the raw ``x_0'`` to the posterior, while sampling clips it to
``[-1, 1]`` first (the scheduler's ``clip_sample``, as for every pixel-space restorer here).
``T = 1`` is a conditional GAN: one call from pure noise, and the discriminator
sees (image, condition) only: a PatchGAN as in pix2pix.

The variance schedule is DDGAN's discretised VP SDE (their appendix): ``beta(s) = beta_min +
s (beta_max - beta_min)`` on ``s in [eps, 1]``, ``alpha_bar(s) = exp(-beta_min s - (beta_max -
beta_min) s^2 / 2)``, with ``beta_min = 0.1``, ``beta_max = 20``, ``eps = 1e-3``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import InputError
from .._random import randint, randn

_RUN_KEYS = ("batch_size", "crop", "lr_g", "lr_d", "r1_gamma", "l1_weight", "ema_decay", "seed", "n_images",
             "data_sha256", "config", "disc")  # a checkpoint resumes only when these match


def diffusion_gan_schedule(num_steps: int, beta_min: float = 0.1, beta_max: float = 20.0, eps: float = 1e-3
                           ) -> dict[str, Any]:
    """The ``schedule`` dict (diffusers ``trained_betas``) of DDGAN's ``num_steps``-step forward process.

    ``alpha_bar_k = exp(-beta_min s_k - (beta_max - beta_min) s_k^2 / 2)`` at
    ``s_k = eps + (1 - eps) k / num_steps``, ``k = 0..num_steps``; ``beta_k = 1 - alpha_bar_k / alpha_bar_{k-1}``.

    Example:
        >>> s = diffusion_gan_schedule(4)
        >>> [round(b, 3) for b in s["trained_betas"]]
        [0.478, 0.849, 0.956, 0.987]
    """
    if not isinstance(num_steps, int) or num_steps < 1:
        raise InputError(f"expected num_steps as a positive int, got {num_steps!r}")
    s = eps + (1 - eps) * torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    alpha_bar = torch.exp(-beta_min * s - 0.5 * (beta_max - beta_min) * s**2)
    betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
    return {"num_train_timesteps": num_steps, "trained_betas": betas.tolist()}


def _gather(a: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return a.to(x.device, x.dtype)[t].view(-1, *([1] * (x.ndim - 1)))


def _alpha_bars(alphas_cumprod: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(alpha_bar_t, alpha_bar_{t-1})`` with ``alpha_bar_{-1} = 1``, as float64."""
    a = alphas_cumprod.double()
    prev = torch.cat([a.new_ones(1), a[:-1]])
    return a, prev


def real_pair(alphas_cumprod: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, noise_prev: torch.Tensor,
              noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A draw of ``(x_{t-1}, x_t)`` from ``q(x_{t-1} | x_0) q(x_t | x_{t-1})``.

    Args:
        alphas_cumprod: ``(T,)``.
        x0: ``(N, C, H, W)`` clean images in model space.
        t: ``(N,)`` int64 in ``[0, T)``; ``t = 0`` gives ``x_{-1} = x_0``.
        noise_prev, noise: ``(N, C, H, W)`` standard normal.
    """
    a, a_prev = _alpha_bars(alphas_cumprod)
    ap = _gather(a_prev, t, x0)
    prev = ap.sqrt() * x0 + (1 - ap).sqrt() * noise_prev
    alpha_t = _gather(a / a_prev, t, x0)
    return prev, alpha_t.sqrt() * prev + (1 - alpha_t).sqrt() * noise


def posterior_sample(alphas_cumprod: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                     noise: torch.Tensor) -> torch.Tensor:
    """A draw of ``x_{t-1} ~ q(x_{t-1} | x_t, x_0)`` (DDPM eq. 6-7), per image ``t``; differentiable in ``x0``.

    ``mean = sqrt(ab_{t-1}) beta_t / (1 - ab_t) x_0 + sqrt(alpha_t) (1 - ab_{t-1}) / (1 - ab_t) x_t``,
    ``var = (1 - ab_{t-1}) / (1 - ab_t) beta_t`` (0 at ``t = 0``, where ``x_{-1} = x_0``). This is
    diffusers' ``DDPMScheduler.step`` with ``variance_type="fixed_small"`` for a batch of different ``t``.
    """
    a, a_prev = _alpha_bars(alphas_cumprod)
    beta = 1 - a / a_prev
    c0 = _gather(a_prev.sqrt() * beta / (1 - a), t, x0)
    ct = _gather((1 - beta).sqrt() * (1 - a_prev) / (1 - a), t, x0)
    std = _gather(((1 - a_prev) / (1 - a) * beta).clamp(min=0).sqrt(), t, x0)
    return c0 * x0 + ct * x_t + std * noise


class PatchDiscriminator(nn.Module):
    """A time-conditioned PatchGAN: ``D(x_{t-1}, [x_t], c, t) -> (N, 1, H/8 - 2, W/8 - 2)`` logits.

    Five 4x4 convolutions (strides 2, 2, 2, 1, 1; widths ``w, 2w, 4w, 8w, 1``; LeakyReLU 0.2; no
    normalisation, since R1 regularises it): for ``layers = 3`` each logit sees 70 x 70 px, pix2pix's
    70x70 PatchGAN. A learned embedding of ``t`` is added after
    the first layer when ``num_timesteps > 1``.

    Args:
        in_channels: channels of ``concat(x_{t-1}, [x_t], c)``.
        num_timesteps: ``T``; 1 for a plain conditional GAN (no time input).
        width: channels of the first layer.
        layers: stride-2 layers.
    """

    def __init__(self, in_channels: int, num_timesteps: int = 1, width: int = 32, layers: int = 3):
        super().__init__()
        self.config = {"in_channels": in_channels, "num_timesteps": num_timesteps, "width": width, "layers": layers}
        self.first = nn.Conv2d(in_channels, width, 4, 2, 1)
        self.time = nn.Embedding(num_timesteps, width) if num_timesteps > 1 else None
        blocks: list[nn.Module] = []
        ch = width
        for i in range(1, layers + 1):
            out = width * 2 ** min(i, 3)
            blocks += [nn.Conv2d(ch, out, 4, 2 if i < layers else 1, 1), nn.LeakyReLU(0.2)]
            ch = out
        blocks.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.body = nn.Sequential(*blocks)

    @staticmethod
    def min_side(layers: int = 3) -> int:
        """The smallest input side, px, that leaves at least one logit (24 for ``layers = 3``)."""
        def logits(side: int) -> int:  # the 4x4 convolutions' output side: strides 2 (layers of them), then 1, 1
            for stride in (2,) * layers + (1, 1):
                side = (side + 2 - 4) // stride + 1
            return side

        side = 1
        while logits(side) < 1:
            side += 1
        return side

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        h = self.first(x)
        if self.time is not None:
            h = h + self.time(t)[:, :, None, None]
        return self.body(F.leaky_relu(h, 0.2))


def _discriminator_input(prev: torch.Tensor, x_t: torch.Tensor | None, cond: torch.Tensor) -> torch.Tensor:
    """``concat(x_{t-1}, x_t, c)`` on channels, or ``concat(x_{t-1}, c)`` when ``x_t`` is ``None`` (one-step GAN)."""
    return torch.cat([prev, cond] if x_t is None else [prev, x_t, cond], dim=1)


def discriminator_loss(disc: nn.Module, real_prev: torch.Tensor, fake_prev: torch.Tensor, x_t: torch.Tensor | None,
                       cond: torch.Tensor, t: torch.Tensor, r1_gamma: float) -> torch.Tensor:
    """``softplus(-D(real)) + softplus(D(fake)) + r1_gamma / 2 E||grad_{x_{t-1}} D(real)||^2``.

    ``D`` sees ``concat(x_{t-1}, x_t, c)`` (``concat(x_{t-1}, c)`` when ``x_t`` is ``None``: the
    one-step GAN). The R1 gradient is taken with respect to the judged sample ``x_{t-1}`` only, as
    in DDGAN (Xiao et al. 2022, their R1 on ``x_{t-1}``) and StyleGAN's R1 on the image: ``x_t`` and
    the condition are the same in real and fake pairs, and penalising ``D``'s slope along them would
    push ``D`` to ignore whether a sample fits its condition.

    Args:
        disc: ``D(input, t) -> logits``.
        real_prev, fake_prev: ``(N, C, H, W)`` real and generated ``x_{t-1}`` (``fake_prev`` is detached here).
        x_t: ``(N, C, H, W)`` or ``None``.
        cond: ``(N, C_c, H, W)`` condition.
        t: ``(N,)`` timesteps.
        r1_gamma: ``gamma >= 0``.

    Returns:
        scalar loss.
    """
    real_prev = real_prev.detach().requires_grad_(r1_gamma > 0)
    d_real = disc(_discriminator_input(real_prev, x_t, cond), t)
    d_fake = disc(_discriminator_input(fake_prev.detach(), x_t, cond), t)
    loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
    if r1_gamma > 0:
        (grad,) = torch.autograd.grad(d_real.sum(), real_prev, create_graph=True)
        loss = loss + 0.5 * r1_gamma * grad.square().flatten(1).sum(1).mean()
    return loss


def _model_schedule(model) -> torch.Tensor:
    from ..diffusion.schedulers import make_scheduler

    return make_scheduler("ddpm", model.config["schedule"], "sample").alphas_cumprod


def train_inpaint_gan(model, images: Sequence[torch.Tensor] | str | os.PathLike, steps: int, batch_size: int = 16,
                      crop: int = 64, lr_g: float = 2e-4, lr_d: float = 2e-4, r1_gamma: float = 0.1,
                      l1_weight: float = 100.0, ema_decay: float = 0.999, disc_width: int = 32,
                      out_dir: str | os.PathLike = "runs/ddgan", save_every: int = 500, seed: int = 0,
                      device: str | torch.device = "cpu", recipe: str | None = None,
                      time_limit: float | None = None, progress: bool = False, channels_last: bool = False,
                      compile: bool | str = False, workers: int = 0):
    """Train a diffusion-GAN (``T > 1``) or conditional GAN (``T = 1``) inpainter; return the EMA generator.

    Step ``k``: crops from ``generator_for(seed, "crop-k")``, masks from ``"degrade-k-i"`` (image
    ``i``; :func:`~genrestore.restore.inpaint.training_masks`), then ``t``, the forward noises and
    the posterior noise from ``"loss-k"``. One Adam step (betas 0.5, 0.9) of the discriminator on
    ``softplus(-D(real)) + softplus(D(fake)) + r1_gamma / 2 E||grad D||^2`` (the gradient with respect to
    the real ``x_{t-1}``; :func:`discriminator_loss`), then one of the
    generator on ``softplus(-D(fake)) + l1_weight * L1(x_0', x_0 | holes)``. ``T`` is the model's
    ``schedule["num_train_timesteps"]`` (see :func:`diffusion_gan_schedule`).

    Checkpoints (``out_dir/checkpoint.safetensors``: generator, EMA, discriminator, both Adam
    states) every ``save_every`` steps; an existing one is resumed, and every draw is seeded by
    the step, so a resumed run equals an uninterrupted one on CPU. At the end
    ``model.safetensors`` + ``.json`` hold the EMA generator with ``inpainter`` (``"gan"`` or
    ``"ddgan"``), ``recipe``, ``wall_time_s`` and ``steps``.

    Args:
        model: a :class:`~genrestore.diffusion.ConditionalUNet` with ``channels=3``,
            ``cond_channels=4``, ``prediction_type="sample"`` and a :func:`diffusion_gan_schedule`.
        images: clean photos (tensors in ``[0, 1]`` or a folder).
        crop: crop side (a multiple of the UNet's size multiple and of 8).
        workers: processes that make the next batches (crops and masks) ahead; the result does not
            depend on it (see :meth:`~genrestore.diffusion.train.TrainRun.batches`).

    Raises:
        InputError: bad arguments or model, images smaller than ``crop``, or a checkpoint of another run.
    """
    from ..diffusion.sampling import to_model_range
    from ..diffusion.train import TrainRun
    from .inpaint import COND_CHANNELS, inpaint_degrade

    if model.prediction_type != "sample" or model.cond_channels != COND_CHANNELS or model.channels != 3:
        raise InputError("expected a ConditionalUNet(3, cond_channels=4, prediction_type='sample')")
    if r1_gamma < 0 or l1_weight < 0:
        raise InputError(f"expected non-negative r1_gamma and l1_weight, got {r1_gamma}, {l1_weight}")
    if crop < PatchDiscriminator.min_side():
        raise InputError(f"the PatchGAN discriminator needs crops of at least {PatchDiscriminator.min_side()} px, "
                         f"got {crop} (crop, --size)")
    num_t = model.config["schedule"]["num_train_timesteps"]
    disc = PatchDiscriminator(3 + COND_CHANNELS + (3 if num_t > 1 else 0), num_t, disc_width)
    tr = TrainRun(model, images, steps, batch_size, crop, ema_decay, out_dir, save_every, seed, device,
                  {"lr_g": lr_g, "lr_d": lr_d, "r1_gamma": r1_gamma, "l1_weight": l1_weight, "config": model.config,
                   "disc": disc.config}, time_limit=time_limit, channels_last=channels_last, compile=compile,
                  workers=workers)
    device = tr.device
    disc.to(device)
    tr.share_weights(disc)  # the generator is shared by the trainer; the discriminator starts alike everywhere too
    opt_g = torch.optim.Adam(model.parameters(), lr=lr_g, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr_d, betas=(0.5, 0.9))
    tr.modules["disc"] = disc
    tr.optimizers.update({"adam_g": (opt_g, model), "adam_d": (opt_d, disc)})
    tr.resume(_RUN_KEYS)
    abar = _model_schedule(model).to(device)
    autocast = device.type == "cuda"

    kind = "gan" if num_t == 1 else "ddgan"

    def make_batch(step: int):
        x0 = tr.crops(step)
        return x0, inpaint_degrade(x0, tr.generators(step))

    for step, (x0, cond) in tr.batches(make_batch, f"train {kind}", progress):
        hole = (1 - cond[:, 3:]).to(device)
        x0, cond = to_model_range(x0.to(device)), to_model_range(cond.to(device))
        g = tr.draw(f"loss-{step}")
        t = randint(g, batch_size, 0, num_t, device=device)
        n_prev, n_t, n_post = (randn(g, x0.shape, device=device) for _ in range(3))
        real_prev, x_t = real_pair(abar, x0, t, n_prev, n_t)

        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            fake_x0 = model(x_t, t, cond)
        fake_prev = posterior_sample(abar, fake_x0.float(), x_t, t, n_post)

        # discriminator: non-saturating loss + R1 on the real x_{t-1}
        disc.requires_grad_(True)
        loss_d = discriminator_loss(disc, real_prev, fake_prev, x_t if num_t > 1 else None, cond, t, r1_gamma)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        tr.sync_gradients(disc)
        opt_d.step()

        # generator: fool the updated discriminator, and L1 to the truth in the holes
        disc.requires_grad_(False)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss_adv = F.softplus(-disc(_discriminator_input(fake_prev, x_t if num_t > 1 else None, cond), t)).mean()
        l1 = ((fake_x0.float() - x0).abs() * hole).sum() / (hole.sum() * 3).clamp(min=1)
        loss_g = loss_adv + l1_weight * l1
        if not (torch.isfinite(loss_g) and torch.isfinite(loss_d)):
            raise FloatingPointError(f"losses G {loss_g.item()} D {loss_d.item()} at step {step}")
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        tr.sync_gradients(model)
        opt_g.step()
    return tr.finish(recipe, inpainter=kind)


__all__ = ["PatchDiscriminator", "diffusion_gan_schedule", "discriminator_loss", "posterior_sample", "real_pair",
           "train_inpaint_gan"]
