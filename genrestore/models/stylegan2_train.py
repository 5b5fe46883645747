"""Training a small StyleGAN2 prior on photo crops: the discriminator, ADA-style augmentation, the loop.

Follows StyleGAN2-ADA (Karras et al. 2020, "Training Generative Adversarial Networks with Limited
Data") at small scale, in plain PyTorch:

* :class:`StyleGAN2Discriminator`: the residual discriminator of StyleGAN2 (Fig. 7b): ``fromrgb``
  at full resolution, per resolution two 3x3 convs (the second downsampling) beside a 1x1
  downsampling skip, summed with gain ``sqrt(1/2)``; then minibatch standard deviation (group 4),
  a 3x3 conv, a fully connected layer and the output. Equalised learning rate throughout;
  downsampling blurs with the [1, 3, 3, 1] FIR first.
* :func:`augment`: differentiable augmentations applied to every image the discriminator sees,
  each with probability ``p`` per image (ADA §2.2-2.3: x-flip, 90 degree rotations, integer
  translation up to 1/8 of the side, brightness, contrast, saturation). ``p`` adapts (ADA §3):
  every 4 steps ``r_t = E[sign(D(real))]`` moves ``p`` towards keeping ``r_t`` at 0.6, by
  ``batch * 4 / (ada_kimg * 1000)`` per adjustment.
* :func:`train_stylegan2`: non-saturating logistic loss, lazy R1 on reals every 16 steps (weight
  ``gamma / 2 * 16``), style mixing with probability 0.9, Adam (lr 0.0025, betas (0, 0.99); D's
  lr and betas scaled by ``c = 16 / 17``, ``lr * c``, ``beta ** c``, StyleGAN2 App. B), an EMA
  generator, on crops of the photos resized to the generator's resolution (antialiased).
  The path-length regulariser is left out (ADA's small-data configs keep it; it matters for
  latent-space smoothness at large scale). Resumes and stops on a time limit like every
  :class:`~genrestore.diffusion.train.TrainRun`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._checks import InputError
from .._random import Generator, rand, randint, randn
from .stylegan2 import LRELU_GAIN, StyleGAN2Generator, bias_lrelu, fir_filter, fir_kernel

ADA_TARGET = 0.6  # ADA §3: the r_t target
ADA_INTERVAL = 4  # steps between p adjustments
R1_INTERVAL = 16  # lazy regularisation (StyleGAN2 §B)


class EqualConv2d(nn.Module):
    """Equalised-lr conv (weight gain ``1 / sqrt(fan_in)``), optional FIR blur + stride-2 downsampling,
    optional bias + leaky ReLU times ``sqrt(2)``."""

    def __init__(self, c_in: int, c_out: int, k: int, down: bool = False, bias: bool = True, lrelu: bool = True,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, k, k, generator=generator))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.gain, self.down, self.lrelu, self.k = 1 / math.sqrt(c_in * k * k), down, lrelu, k
        self.register_buffer("fir", fir_kernel(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.gain
        if self.down:  # blur (pads chosen so a stride-2 conv halves even sides), then strided conv
            p = (self.k - 1) // 2 + 1
            x = fir_filter(x, self.fir, (p, p, p, p))
            x = F.conv2d(x, w, stride=2)
        else:
            x = F.conv2d(x, w, padding=self.k // 2)
        if self.lrelu:
            return bias_lrelu(x, self.bias if self.bias is not None else torch.zeros(x.shape[1], device=x.device))
        return x if self.bias is None else x + self.bias.view(1, -1, 1, 1)


class StyleGAN2Discriminator(nn.Module):
    """The StyleGAN2 residual discriminator; ``(N, 3, R, R)`` images in ``[-1, 1]`` -> ``(N,)`` logits.

    Args:
        resolution: input side (power of two >= 8).
        channel_base, channel_max: channels ``min(channel_base // r, channel_max)`` at ``r`` px.
        mbstd_group: minibatch-std group size (4); a batch it does not divide uses the largest divisor
            below it (a batch of 6 groups by 3), not the constant feature of groups of 1.
        generator: random source for the initial weights.

    Example:
        >>> d = StyleGAN2Discriminator(16, channel_base=64, channel_max=8)
        >>> d(torch.zeros(4, 3, 16, 16)).shape
        torch.Size([4])
    """

    def __init__(self, resolution: int, channel_base: int = 32768, channel_max: int = 512, mbstd_group: int = 4,
                 generator: torch.Generator | None = None):
        super().__init__()
        if resolution < 8 or resolution & (resolution - 1):
            raise InputError(f"expected a power-of-two resolution >= 8, got {resolution}")
        ch = lambda r: min(channel_base // r, channel_max)  # noqa: E731
        self.config = {"resolution": resolution, "channel_base": channel_base, "channel_max": channel_max,
                       "mbstd_group": mbstd_group}
        g = generator
        self.fromrgb = EqualConv2d(3, ch(resolution), 1, generator=g)
        blocks = []
        r = resolution
        while r > 4:
            blocks.append(nn.ModuleDict({"conv0": EqualConv2d(ch(r), ch(r), 3, generator=g),
                                         "conv1": EqualConv2d(ch(r), ch(r // 2), 3, down=True, generator=g),
                                         "skip": EqualConv2d(ch(r), ch(r // 2), 1, down=True, bias=False,
                                                             lrelu=False, generator=g)}))
            r //= 2
        self.blocks = nn.ModuleList(blocks)
        self.mbstd_group = mbstd_group
        self.conv = EqualConv2d(ch(4) + 1, ch(4), 3, generator=g)
        self.fc = nn.Linear(ch(4) * 16, ch(4))
        self.out = nn.Linear(ch(4), 1)
        for lin in (self.fc, self.out):  # equalised lr: unit-variance weights, gain at run time
            nn.init.normal_(lin.weight, generator=g)
            nn.init.zeros_(lin.bias)

    def _linear(self, lin: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, lin.weight / math.sqrt(lin.in_features), lin.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fromrgb(x)
        for b in self.blocks:
            x = (b["skip"](x) + b["conv1"](b["conv0"](x))) * math.sqrt(0.5)
        n, c, h, w = x.shape
        g = max(d for d in range(1, min(self.mbstd_group, n) + 1) if n % d == 0)  # groups must tile the batch
        y = x.reshape(g, -1, c, h, w)  # minibatch std over groups of g images
        y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=[1, 2, 3])  # (N / g,)
        y = y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
        x = self.conv(torch.cat([x, y], dim=1))
        x = F.leaky_relu(self._linear(self.fc, x.flatten(1)), 0.2) * LRELU_GAIN
        return self._linear(self.out, x).squeeze(1)


def augment(x: torch.Tensor, p: float, generator: Generator = None) -> torch.Tensor:
    """ADA-style augmentation of ``(N, 3, H, W)`` images in ``[-1, 1]``, each op applied per image with probability ``p``.

    Ops in order: x-flip, rotation by a random multiple of 90 degrees (square images), integer
    translation by up to ``H / 8`` px (reflect padding), brightness ``+ N(0, 0.2)``, contrast
    ``* lognormal(0, 0.5 ln 2)``, saturation ``* lognormal(0, ln 2)`` around the per-pixel
    grey. All are differentiable in ``x``; ``p = 0`` returns ``x`` itself.

    Example:
        >>> x = torch.rand(2, 3, 8, 8) * 2 - 1
        >>> augment(x, 0.0) is x, augment(x, 1.0, torch.Generator().manual_seed(0)).shape
        (True, torch.Size([2, 3, 8, 8]))
    """
    if p <= 0:
        return x
    n, _, h, w = x.shape
    dev = x.device

    def on(shape=(1, 1, 1)):
        return (rand(generator, (n, *shape)) < p).to(dev)

    x = torch.where(on(), x.flip(-1), x)
    if h == w:
        k = randint(generator, n, 0, 4).to(dev)
        rot = on()
        for r in (1, 2, 3):
            x = torch.where(rot & (k == r).view(n, 1, 1, 1), x.rot90(r, dims=(2, 3)), x)
    s = max(1, h // 8)
    shift = randint(generator, 2 * n, -s, s + 1).view(n, 2)
    use = on((1,)).view(n).cpu()
    padded = F.pad(x, (s, s, s, s), mode="reflect")
    x = torch.stack([padded[i, :, s + dy:s + dy + h, s + dx:s + dx + w] if use[i] else x[i]
                     for i, (dy, dx) in enumerate(shift.tolist())])
    x = x + torch.where(on(), randn(generator, (n, 1, 1, 1)).to(dev) * 0.2, torch.zeros((), device=dev))
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    c = torch.exp2(randn(generator, (n, 1, 1, 1)).to(dev) * 0.5)
    x = torch.where(on(), (x - mean) * c + mean, x)
    grey = x.mean(dim=1, keepdim=True)
    sat = torch.exp2(randn(generator, (n, 1, 1, 1)).to(dev))
    return torch.where(on(), (x - grey) * sat + grey, x)


def r1_gamma_auto(resolution: int, batch_size: int) -> float:
    """ADA's ``auto`` config: ``gamma = 0.0002 * resolution^2 / batch_size``."""
    return 0.0002 * resolution**2 / batch_size


def train_stylegan2(generator: StyleGAN2Generator, images: Sequence[torch.Tensor] | str | os.PathLike, steps: int,
                    batch_size: int = 16, crop: int = 256, lr: float = 0.0025, r1_gamma: float | None = None,
                    ada_kimg: float = 100.0, mixing_prob: float = 0.9, ema_decay: float = 0.999,
                    disc_channel_base: int | None = None, disc_channel_max: int | None = None,
                    out_dir: str | os.PathLike = "runs/stylegan2", save_every: int = 500, seed: int = 0,
                    device: str | torch.device = "cpu", recipe: str | None = None,
                    time_limit: float | None = None, progress: bool = False, channels_last: bool = False,
                    compile: bool | str = False) -> StyleGAN2Generator:
    """Train ``generator`` (and a fresh discriminator) on crops of ``images``; return the EMA generator.

    The discriminator's initial weights come from ``generator_for(seed, "disc-init")``. Step
    ``k``: ``crop`` px crops (flips included) from ``generator_for(seed, "crop-k")`` resized
    to the generator's resolution (antialiased bilinear), latents, noise inputs and augmentations
    from ``"loss-k"``. One Adam step of D on ``softplus(D(aug(G(z)))) + softplus(-D(aug(x)))`` (plus
    ``gamma / 2 * E||grad_x D(aug(x))||^2 * 16`` every 16th step, the gradient taken with respect to
    the un-augmented reals as in ADA), then one of G on ``softplus(-D(aug(G(z))))``. The
    augmentation probability ``p`` and the current interval's sign statistics are in the
    checkpoint, so a resumed run equals an uninterrupted one; with several processes the signs
    are pooled over all of them and ``gamma``'s ``auto`` value takes the total batch.
    The final model's JSON has ``recipe``, ``wall_time_s``, ``steps`` and the final ``ada_p``;
    ``mapping.w_avg`` is set to the EMA generator's mean ``w`` over 10000 draws.

    Args:
        generator: a :class:`StyleGAN2Generator` (trained in place).
        images: clean photos (tensors in ``[0, 1]`` or a folder), at least ``crop`` px.
        crop: side of the crops before resizing to the resolution.
        r1_gamma: R1 weight; ``None``: :func:`r1_gamma_auto`.
        ada_kimg: thousands of images for ``p`` to go from 0 to 1 (ADA: 500; smaller adapts faster).
        mixing_prob: style-mixing probability (two latents, a random crossover layer).
        disc_channel_base, disc_channel_max: the discriminator's widths (default: the generator's).

    Raises:
        InputError: bad arguments, images smaller than ``crop``, or a checkpoint of another run.
    """
    from .._random import generator_for
    from ..degrade import resize
    from ..diffusion.train import TrainRun

    if not isinstance(generator, StyleGAN2Generator):
        raise InputError(f"expected a StyleGAN2Generator, got {type(generator).__name__}")
    res = generator.resolution
    if crop < res:
        raise InputError(f"crop {crop} px is smaller than the generator's {res} px")
    if not 0 <= mixing_prob <= 1 or ada_kimg <= 0:
        raise InputError(f"expected mixing_prob in [0, 1] and ada_kimg > 0, got {mixing_prob}, {ada_kimg}")
    world = int(os.environ.get("WORLD_SIZE", "1"))  # ADA's auto gamma takes the total batch
    gamma = r1_gamma_auto(res, batch_size * world) if r1_gamma is None else float(r1_gamma)
    cfg = generator.config
    disc = StyleGAN2Discriminator(res, disc_channel_base or cfg["channel_base"], disc_channel_max or cfg["channel_max"],
                                  generator=generator_for(seed, "disc-init"))
    tr = TrainRun(generator, images, steps, batch_size, crop, ema_decay, out_dir, save_every, seed, device,
                  {"lr": lr, "r1_gamma": gamma, "ada_kimg": ada_kimg, "mixing_prob": mixing_prob,
                   "config": cfg, "disc": disc.config}, time_limit=time_limit, channels_last=channels_last)
    dev = tr.device
    disc.to(dev)
    holder = nn.Module()  # ADA's state as buffers, so the checkpoint carries it (resume mid-interval)
    holder.register_buffer("p", torch.zeros((), dtype=torch.float64))
    holder.register_buffer("signs", torch.zeros(2, dtype=torch.float64))  # sum of sign D(real), count
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=(0.0, 0.99))
    # lazy regularisation (StyleGAN2 App. B, NVIDIA's training loop): D's Adam takes lr * c and
    # betas ** c, c = interval / (interval + 1); G has no regulariser here and keeps lr and betas
    mb_ratio = R1_INTERVAL / (R1_INTERVAL + 1)
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr * mb_ratio, betas=(0.0 ** mb_ratio, 0.99 ** mb_ratio))
    tr.modules.update({"disc": disc, "ada": holder})
    tr.optimizers.update({"adam_g": (opt_g, generator), "adam_d": (opt_d, disc)})
    tr.resume(list(tr.run))
    num_ws, z_dim = generator.num_ws, generator.z_dim
    if compile:  # the networks the loop calls (the generator's forward is not one of them)
        kw = {"backend": compile} if isinstance(compile, str) else {}
        for m in (generator.mapping, generator.synthesis, disc):
            m.compile(**kw)

    def fake_images(g):
        z = randn(g, (batch_size, z_dim)).to(dev)
        ws = generator.map(z).unsqueeze(1).repeat(1, num_ws, 1)
        if mixing_prob > 0:  # style mixing: a second latent from a random layer on
            z2 = randn(g, (batch_size, z_dim)).to(dev)
            cut = randint(g, batch_size, 1, num_ws).to(dev)
            mix = (rand(g, (batch_size,)) < mixing_prob).to(dev)
            cut = torch.where(mix, cut, torch.full_like(cut, num_ws))
            later = torch.arange(num_ws, device=dev).view(1, -1) >= cut.view(-1, 1)
            ws = torch.where(later.unsqueeze(-1), generator.map(z2).unsqueeze(1), ws)
        styles = generator.styles_from_wplus(ws)
        return generator.synthesis(styles, "random", g)  # [-1, 1]

    for step in tr.steps("train stylegan2", progress):
        g = tr.draw(f"loss-{step}")
        real = resize(tr.crops(step), (res, res), "bilinear", antialias=True).clamp(0, 1).to(dev) * 2 - 1
        p = float(holder.p)

        # discriminator
        disc.requires_grad_(True)
        generator.requires_grad_(False)
        with torch.no_grad():
            fake = fake_images(g)
        r1_step = gamma > 0 and step % R1_INTERVAL == 0
        real = real.detach().requires_grad_(r1_step)  # R1 on the un-augmented reals, as ADA's loss does
        d_real = disc(augment(real, p, g))
        loss_d = F.softplus(disc(augment(fake, p, g))).mean() + F.softplus(-d_real).mean()
        if r1_step:
            (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
            loss_d = loss_d + grad.square().sum(dim=[1, 2, 3]).mean() * (gamma / 2 * R1_INTERVAL)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        tr.sync_gradients(disc)
        opt_d.step()

        # generator
        disc.requires_grad_(False)
        generator.requires_grad_(True)
        loss_g = F.softplus(-disc(augment(fake_images(g), p, g))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        tr.sync_gradients(generator)
        opt_g.step()
        if not (torch.isfinite(loss_g) and torch.isfinite(loss_d)):
            raise FloatingPointError(f"losses G {loss_g.item()} D {loss_d.item()} at step {step}")

        # ADA: adjust p from the sign of D on (augmented) reals, pooled over the interval and processes
        holder.signs[0] += float(d_real.detach().sign().sum())
        holder.signs[1] += batch_size
        if (step + 1) % ADA_INTERVAL == 0:
            total = holder.signs.clone()
            if tr.world > 1:
                import torch.distributed as dist

                total = total.to(dev)
                dist.all_reduce(total)
            r_t = float(total[0] / total[1])
            holder.signs.zero_()
            adjust = batch_size * tr.world * ADA_INTERVAL / (ada_kimg * 1000) * float(np.sign(r_t - ADA_TARGET))
            holder.p.fill_(min(max(float(holder.p) + adjust, 0.0), 1.0))
    if tr.stopped_at is None:
        tr.ema.estimate_w_avg(10000, torch.Generator(device="cpu").manual_seed(seed))
    return tr.finish(recipe, ada_p=round(float(holder.p), 4))


__all__ = ["StyleGAN2Discriminator", "augment", "r1_gamma_auto", "train_stylegan2"]
