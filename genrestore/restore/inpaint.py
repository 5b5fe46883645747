"""Learned inpainting: one condition, one mask sampler and one interface for three inpainters.

Seed 004 compares GAN, diffusion and diffusion-GAN inpainters. All three here are the same
:class:`~genrestore.diffusion.ConditionalUNet` conditioned on a four-channel image (the known
pixels, holes set to mid-grey, and the keep-mask), and they differ in how they are trained and
sampled:

* ``"diffusion"``: the IDM machinery (an ``x_0``-predicting conditional DDPM over 1000 steps,
  IDM eq. 7) trained by :func:`genrestore.diffusion.train.train_conditional` with
  :func:`inpaint_degrade`; sampled with ``steps`` DDPM steps (default 50);
* ``"ddgan"``: a denoising diffusion GAN (Xiao et al. 2022) with ``T`` = 2 or 4 large steps,
  trained by :func:`genrestore.restore.diffusion_gan.train_inpaint_gan`; ``T`` network calls
  (sampled by the same DDPM loop: each step draws from the posterior given the predicted ``x_0``);
* ``"gan"``: the one-step case ``T = 1``: the generator maps (noise, condition) to the image in one
  call, and its discriminator is a conditional PatchGAN on (image, condition), as in pix2pix.

Every inpainter returns the composite ``known * y + (1 - known) * prediction``, where a pixel is
*known* only where the mask is 1: an antialiased stroke's fractional edge pixels are refilled too,
because a degraded input has them already attenuated (``y = x * mask``, the inpainting task's
model), and keeping them would leave a dark rim. Training draws the fractional masks as the
benchmark does and binarizes them the same way (:func:`known`) before building the condition, so
the network is trained on the conditions it is run on: a fractional mask in the condition would
show it the clean pixel ``x m + (1 - m) / 2`` of a rim that inference always hides.

Masks are ``(N, 1, H, W)`` keep-masks, 1 = known, 0 = missing (as in :mod:`genrestore.degrade.masks`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import torch

from .._checks import InputError, check_image
from ..io import read_json_object
from .._random import Generator, rand, randint
from ..degrade.masks import random_box_mask, random_stroke_mask

InpainterKind = Literal["diffusion", "ddgan", "gan"]
KINDS: tuple[str, ...] = ("diffusion", "ddgan", "gan")
COND_CHANNELS = 4  # known pixels (3) + keep-mask (1)
DEFAULT_DIFFUSION_STEPS = 50


def known(mask: torch.Tensor) -> torch.Tensor:
    """The binary keep-mask of a (possibly antialiased) keep-mask: 1 only where ``mask`` is 1.

    Example:
        >>> known(torch.tensor([0.0, 0.5, 0.999, 1.0])).tolist()
        [0.0, 0.0, 0.0, 1.0]
    """
    return (mask >= 1 - 1e-6).to(mask.dtype)


def inpaint_condition(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The inpainters' condition: ``concat(mask * y + (1 - mask) / 2, mask)``.

    Args:
        y: ``(N, 3, H, W)`` images in ``[0, 1]`` (values in the holes are ignored).
        mask: ``(N, 1, H, W)`` keep-mask in ``[0, 1]``, 1 = known.

    Returns:
        ``(N, 4, H, W)`` in ``[0, 1]``; in model space (``2 c - 1``) the holes are 0 and the mask +-1.

    Example:
        >>> c = inpaint_condition(torch.ones(1, 3, 2, 2), torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]]))
        >>> c[0, :, 0, 1].tolist()
        [0.5, 0.5, 0.5, 0.0]
    """
    check_image(y, "y", channels=(3,))
    check_image(mask, "mask", channels=(1,))
    if mask.shape[0] != y.shape[0] or mask.shape[-2:] != y.shape[-2:]:
        raise InputError(f"expected a mask of shape {(y.shape[0], 1, *y.shape[-2:])}, got {tuple(mask.shape)}")
    mask = mask.to(y)
    return torch.cat([y * mask + 0.5 * (1 - mask), mask], dim=1)


def training_masks(generators: list[torch.Generator | None], size: tuple[int, int], canvas: int = 128,
                   max_strokes: int = 17, box_prob: float = 0.5, device=None) -> torch.Tensor:
    """Random keep-masks for training: brush strokes of the benchmark's shape, or one rectangle.

    Image ``i`` draws everything from ``generators[i]``: with probability ``box_prob`` one
    rectangular hole of 5-25 % of the area (:func:`~genrestore.degrade.masks.random_box_mask`);
    otherwise ``k ~ U{1..max_strokes}`` strokes (the inpainting task's levels use 1 to 17) drawn
    on a ``canvas x canvas`` image (stroke width ``0.08 canvas``, as the benchmark task draws them
    on a ``canvas``-px crop) and cut to ``size`` at a random offset. Training on small crops thus
    sees holes of the width the benchmark uses at ``canvas`` px.

    Args:
        generators: one generator (or ``None``) per image.
        size: ``(H, W)`` of the masks; the canvas grows to ``max(H, W)`` if needed.

    Returns:
        ``(N, 1, H, W)`` float32 keep-masks.
    """
    h, w = size
    side = max(canvas, h, w)
    out = []
    for g in generators:  # a handful per batch: one vectorized mask each
        u = rand(g, (2,), dtype=torch.float64)
        if u[0] < box_prob:
            out.append(random_box_mask(g, 1, (h, w), device=device))
            continue
        strokes = int(randint(g, 1, 1, max_strokes + 1))
        m, _ = random_stroke_mask(g, 1, (side, side), strokes, device=device)
        off = randint(g, 2, 0, side - min(h, w) + 1)
        y0, x0 = min(int(off[0]), side - h), min(int(off[1]), side - w)
        out.append(m[..., y0:y0 + h, x0:x0 + w])
    return torch.cat(out)


def inpaint_degrade(x: torch.Tensor, generators: list[torch.Generator | None]) -> torch.Tensor:
    """``degrade_fn`` for :func:`~genrestore.diffusion.train.train_conditional`: the condition of ``x``
    under :func:`training_masks` binarized by :func:`known` (as :meth:`Inpainter.inpaint` binarizes
    the masks it is given), ``(N, 4, H, W)`` in ``[0, 1]``."""
    return inpaint_condition(x, known(training_masks(generators, tuple(x.shape[-2:]), device=x.device)))


def composite(y: torch.Tensor, mask: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """``mask * y + (1 - mask) * pred``: the known pixels of ``y``, the prediction in the holes.

    ``y`` and ``pred`` ``(N, C, H, W)``, ``mask`` ``(N, 1, H, W)`` (shapes only are checked: a range
    check would read the images back from the device)."""
    check_image(y, "y", channels=(1, 3), check_range=False)
    check_image(pred, "pred", channels=(y.shape[1],), check_range=False)
    if not isinstance(mask, torch.Tensor) or y.shape != pred.shape or mask.shape != (y.shape[0], 1, *y.shape[-2:]):
        raise InputError(f"expected y and pred of one shape and a mask (N, 1, H, W) of their size, got "
                         f"{tuple(y.shape)}, {tuple(pred.shape)} and "
                         f"{tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__}")
    mask = mask.to(pred)
    return mask * y.to(pred) + (1 - mask) * pred


@dataclass
class Inpainter:
    """A trained inpainter: ``inpaint(y, mask)`` fills the holes of ``y``.

    Attributes:
        kind: ``"diffusion"``, ``"ddgan"`` or ``"gan"``.
        model: the :class:`~genrestore.diffusion.ConditionalUNet` (``cond_channels = 4``).
        default_steps: network calls per image by default (DDPM steps; ``T`` for the GANs).

    Load a trained one with :meth:`from_file` (e.g. ``Inpainter.from_file("inpaint-gan")``, a
    shipped weight); the example below builds a tiny untrained network instead, to run fast.

    Example:
        >>> from genrestore.diffusion import ConditionalUNet
        >>> net = ConditionalUNet(3, cond_channels=4, prediction_type="sample", unet=dict(
        ...     sample_size=8, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        ...     down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D")))
        >>> inpainter = Inpainter("diffusion", net, default_steps=50)
        >>> y = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        >>> mask = torch.ones(1, 1, 8, 8); mask[..., 2:6, 2:6] = 0  # a 4x4 hole
        >>> out = inpainter.inpaint(y, mask, generator=torch.Generator().manual_seed(0), steps=2)
        >>> out.shape, bool(torch.equal(out * mask, y * mask))  # known pixels kept
        (torch.Size([1, 3, 8, 8]), True)
    """

    kind: str
    model: torch.nn.Module
    default_steps: int

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> Inpainter:
        """An inpainter from ``path`` (``.safetensors``) and its JSON sidecar, whose ``"inpainter"``
        entry names the kind; or from a shipped weight's name (``inpaint-gan``, ``inpaint-ddgan``,
        ``inpaint-diffusion``; see ``genrestore weights list``).

        Raises:
            InputError: a missing or unreadable file, a sidecar without an ``inpainter`` kind, or a
                model whose condition is not the 4-channel inpainting one.
        """
        from .. import weights as ws
        from ..diffusion import ConditionalUNet

        path = ws.model_file(path)
        sidecar = path.with_suffix(".json")
        net = ConditionalUNet.load(path, device)
        kind = read_json_object(sidecar, "an inpainter sidecar (JSON object)").get("inpainter")
        if kind not in KINDS:
            raise InputError(f"{sidecar}: expected 'inpainter' in {KINDS} (a model from `genrestore train "
                             f"inpaint`), got {kind!r}")
        if net.cond_channels != COND_CHANNELS or net.channels != 3:
            raise InputError(f"{path}: an inpainter takes a 4-channel condition and makes RGB; this model takes "
                             f"{net.cond_channels} and makes {net.channels}")
        if kind != "diffusion" and net.prediction_type != "sample":
            raise InputError(f"{path}: a {kind} generator predicts x0 ('sample'), this one {net.prediction_type!r}")
        steps = DEFAULT_DIFFUSION_STEPS if kind == "diffusion" else net.config["schedule"]["num_train_timesteps"]
        return cls(kind, net, steps)

    @torch.no_grad()  # not inference_mode: see diffusion.sample
    def inpaint(self, y: torch.Tensor, mask: torch.Tensor, generator: Generator = None,
                steps: int | None = None, half: bool = False) -> torch.Tensor:
        """Fill the holes of ``y``.

        Args:
            y: ``(N, 3, H, W)`` in ``[0, 1]``.
            mask: ``(N, 1, H, W)`` keep-mask (1 = known); pixels below 1 are filled.
            generator: a generator or one per image (the initial noise and each step's noise).
            steps: DDPM steps for ``"diffusion"`` (default 50); the GANs always run their ``T`` steps.
            half: the network in 16-bit where the device computes it natively (see
                :func:`~genrestore.diffusion.sample`).

        Returns:
            ``(N, 3, H, W)`` in ``[0, 1]``, equal to ``y`` where ``mask`` is 1.
        """
        check_image(y, "y", channels=(3,))
        check_image(mask, "mask", channels=(1,))
        mask = known(mask).to(y.dtype)  # known = exactly 1 (see the module docstring)
        if self.kind != "diffusion" and steps not in (None, self.default_steps):
            raise InputError(f"a {self.kind} inpainter always runs its {self.default_steps} steps, got steps={steps}")
        from .idm import IDMRestorer

        # one sampler for the three kinds: DDPM steps of an x0-predicting model (for the GANs, its T
        # steps are the diffusion GAN's posterior sampling; T = 1 is one call from pure noise)
        steps = self.default_steps if steps is None else steps  # 0 is refused by the sampler, not taken as None
        pred = IDMRestorer(self.model).restore(inpaint_condition(y, mask), steps, generator, half=half)
        return composite(y, mask, pred).clamp(0, 1)
