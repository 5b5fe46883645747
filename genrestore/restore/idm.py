"""IDM restoration: a conditional DDPM that predicts ``x_0`` from ``concat(x_t, y)`` (IDM §3.2, eq. 7).

:class:`IDMRestorer` runs a few DDPM steps (IDM §4: 10) of a :class:`ConditionalUNet` on a degraded
image, padding it to the UNet's size multiple and, for large images, tiling the *network call* only:

* the initial noise ``x_T`` and every step's noise are drawn once at full image size from one
  per-image generator, so overlapping tiles see exactly the same ``x_t``;
* at each step the network's output is computed tile by tile and cross-faded by
  :func:`genrestore.io.tiled_apply`, and the scheduler then steps the whole image.

The sample ``x_t`` is therefore one image throughout, never a patchwork: for a local network
whose receptive field fits in ``tile_pad`` the tiled result equals the untiled one; the UNet's
GroupNorm and attention see the whole tile, so its tiled output differs from the untiled one,
but the blended predictions leave no step at tile edges. The schedule arithmetic is
diffusers' (``DDPMScheduler`` via :func:`~genrestore.diffusion.schedulers.make_scheduler`).
"""

from __future__ import annotations

import os
from typing import Any, Literal

import torch
import torch.nn.functional as F

from .._checks import InputError, check_image, check_not_empty
from .._random import Generator
from ..diffusion.model import ConditionalUNet, size_multiple
from ..diffusion.sampling import _check_steps, sample


# The regression baseline (IDM benchmark, issue 6): one "diffusion" step whose x_1 is pure noise
# (alpha_bar_1 = 0), so the x0-predicting UNet is a plain regressor of y; trained with L1.
REGRESSION_SCHEDULE: dict[str, Any] = {"num_train_timesteps": 1, "trained_betas": [1.0]}


TILE_BLEND = 16  # px of cosine cross-fade between tiles: the restorers' default, which the CLI keeps


def check_tile(tile: int, tile_pad: int, tile_blend: int, multiple: int) -> None:
    """Raise :class:`InputError` unless ``tile`` is 0 or a multiple of ``multiple`` larger than ``2 tile_pad + tile_blend``."""
    if not isinstance(tile, int) or tile and (tile < 0 or tile % multiple or tile <= 2 * tile_pad + tile_blend):
        raise InputError(f"expected tile = 0 or a multiple of {multiple} larger than "
                         f"2 * tile_pad + tile_blend = {2 * tile_pad + tile_blend}, got {tile}")


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``x`` on the bottom and right up to sides that are multiples of ``multiple``.

    Reflect padding where the side allows it (pad smaller than the side), replicate padding
    otherwise (images smaller than the multiple, e.g. 1 px wide).

    Args:
        x: ``(N, C, H, W)``.
        multiple: positive int.

    Returns:
        ``(padded, (H, W))``: the padded ``(N, C, H', W')`` tensor and the original size to crop back to.

    Example:
        >>> y, hw = pad_to_multiple(torch.rand(1, 3, 5, 9), 4)
        >>> y.shape, hw
        (torch.Size([1, 3, 8, 12]), (5, 9))
    """
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


class IDMRestorer:
    """Restore degraded images with an ``x_0``-predicting conditional UNet (IDM).

    Args:
        model: the trained :class:`ConditionalUNet` (any ``prediction_type``; IDM's is ``"sample"``).

    Example:
        >>> from genrestore.diffusion import ConditionalUNet
        >>> net = ConditionalUNet(3, prediction_type="sample", unet=dict(
        ...     sample_size=8, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        ...     down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D")))
        >>> IDMRestorer(net).restore(torch.rand(1, 3, 7, 9), steps=2).shape
        torch.Size([1, 3, 7, 9])
    """

    def __init__(self, model: ConditionalUNet):
        if not isinstance(model, ConditionalUNet):
            raise InputError(f"expected a ConditionalUNet, got {type(model).__name__}")
        if model.num_classes:
            raise InputError(f"IDM models have no classes; this one has {model.config['class_names']}")
        self.model = model.eval()
        self.multiple = size_multiple(model)

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> IDMRestorer:
        """A restorer from a ``.safetensors`` checkpoint with its ``.json`` sidecar (see
        ``ConditionalUNet.save``), or from a weight name such as ``idm-default``."""
        from .. import weights as ws

        return cls(ConditionalUNet.load(ws.model_file(path), device=device))

    @torch.no_grad()  # not inference_mode: see diffusion.sample
    def restore(self, y: torch.Tensor, steps: int = 10, generator: Generator = None, tile: int = 0,
                tile_pad: int = 16, tile_blend: int = TILE_BLEND, half: bool = False,
                sampler: Literal["ddpm", "ddim"] = "ddpm", eta: float = 0.0) -> torch.Tensor:
        """Restore ``y`` by ``steps`` DDPM steps from ``x_T ~ N(0, I)`` (IDM §4), or DDIM steps.

        Images are mapped to ``[-1, 1]`` for the model and back, padded (bottom/right) to the
        UNet's size multiple and cropped back.

        Args:
            y: ``(N, C_y, H, W)`` degraded images (the model's condition) in ``[0, 1]``, any ``H, W >= 1``.
            steps: DDPM steps in ``[1, T]`` (IDM: 10); a one-step model (``T = 1``, e.g. the
                regression baseline or a GAN generator) always takes its one step.
            generator: a ``torch.Generator`` or one per image (then image ``i`` draws all its noise,
                at its full padded size, from ``generator[i]``, whatever the batch or tiling).
            tile: 0 for one network call per step; otherwise the network runs on ``tile x tile``
                tiles (a multiple of the size multiple, larger than ``2 tile_pad + tile_blend``).
            tile_pad: pixels dropped at interior tile edges (see :func:`~genrestore.io.tiled_apply`).
            tile_blend: width of the cosine cross-fade between tiles, in pixels.
            half: the network in 16-bit where the device computes it natively (see
                :func:`~genrestore.diffusion.sample`).
            sampler: ``"ddpm"`` (IDM's ancestral sampling) or ``"ddim"`` (the same trained model,
                DDIM's update with noise ``eta``; on our idm-default no better, see the README).
            eta: DDIM's noise scale, ``>= 0`` (0: deterministic); only with ``sampler="ddim"``.

        Returns:
            ``(N, C, H, W)`` restored images in ``[0, 1]`` (``C``: the model's output channels).

        Raises:
            InputError: bad ``y``, ``steps``, ``sampler``, ``eta`` or tiling arguments.
        """
        model = self.model
        check_image(y, "y", channels=(model.cond_channels,))
        check_not_empty(y, "degraded image")
        num_t = model.config["schedule"]["num_train_timesteps"]
        steps = 1 if num_t == 1 else steps
        _check_steps(steps, num_t)
        check_tile(tile, tile_pad, tile_blend, self.multiple)
        y_pad, (h, w) = pad_to_multiple(y, self.multiple)
        device = next(model.parameters()).device
        x = sample(model, y_pad.to(device), sampler, steps, eta=eta, generator=generator, tile=tile, tile_pad=tile_pad,
                   tile_blend=tile_blend, half=half)  # DDPM eq. 6-7 (or DDIM) with x0 from IDM eq. 7
        return x[..., :h, :w].to(y.device)


def authenticity(restorer: IDMRestorer, restored: torch.Tensor, steps: int = 10, generator: Generator = None,
                 tile: int = 0, tile_pad: int = 16, distance=None, half: bool = False,
                 sampler: Literal["ddpm", "ddim"] = "ddpm", eta: float = 0.0) -> dict[str, torch.Tensor]:
    """IDM's authenticity test (eq. 2): restore the restored images again and compare, ``f(f(x)) ~ f(x)``.

    Args:
        restorer: the model ``f``.
        restored: ``(N, 3, H, W)`` images ``f(x)`` in [0, 1].
        steps, generator, tile, tile_pad, half, sampler, eta: as :meth:`IDMRestorer.restore`; give the values
            that made ``f(x)``, so that both passes are the same function.
        distance: optional extra per-image distance ``(a, b) -> (N,)`` (e.g. LPIPS), reported as ``"lpips"``.

    Returns:
        ``{"psnr": (N,), ["lpips": (N,)], "twice": f(f(x))}``; a higher PSNR is more authentic.
    """
    from ..metrics import psnr

    twice = restorer.restore(restored, steps, generator, tile, tile_pad, half=half, sampler=sampler, eta=eta)
    out = {"psnr": psnr(twice, restored), "twice": twice}
    if distance is not None:
        out["lpips"] = distance(twice, restored)
    return out
