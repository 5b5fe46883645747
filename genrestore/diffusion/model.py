"""The conditional denoiser of image-to-image diffusion restorers (IDM, DiffGAR).

``ConditionalUNet`` wraps diffusers' ``UNet2DModel``. The degraded image ``y`` is concatenated
with the noisy target ``x_t`` along channels (SR3 / Palette style; IDM §3.2, DiffGAR §4), so the
UNet sees ``C + C_y`` input channels and predicts ``C`` (``C_y = C`` unless the condition carries
more, e.g. the inpainting mask as a fourth channel). Optional class labels (DiffGAR's artifact
types) are embedded and added to the timestep embedding; one extra class, the last index, is the
``[MASK]`` token that stands for "unknown class" (blind restoration, and the unconditional branch of
classifier-free guidance).

The network works in model space: ``x_t`` and ``y`` in ``[-1, 1]`` for pixel models (or
autoencoder latents). :func:`genrestore.diffusion.sampling.sample` converts from and to ``[0, 1]``.

Checkpoints are ``name.safetensors`` plus ``name.json`` holding ``{"config": model.config}``
(:class:`genrestore.models.checkpoint.SavedModel`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._checks import InputError
from ..models.checkpoint import SavedModel, config_errors
from .schedulers import PREDICTION_TYPES, PredictionType, check_schedule, require_diffusers

ARCH = "conditional-unet"
# UNet2DModel arguments that the wrapper derives itself.
_DERIVED = ("in_channels", "out_channels", "num_class_embeds", "class_embed_type")


def _jsonable(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def size_multiple(model: nn.Module) -> int:
    """The factor ``2 ** (len(block_out_channels) - 1)`` a diffusion UNet's input sides must be multiples of."""
    return 2 ** (len(model.unet.config.block_out_channels) - 1)


class ConditionalUNet(nn.Module, SavedModel):
    """A diffusers ``UNet2DModel`` conditioned on a degraded image and, optionally, a class.

    Args:
        channels: image (or latent) channels ``C``; the UNet takes ``C + cond_channels`` and returns ``C``.
        cond_channels: channels of the condition ``y``; ``None`` for ``channels``.
        class_names: the condition classes (e.g. DiffGAR's artifact types); empty for none. Index
            ``len(class_names)`` is the ``[MASK]`` class (unknown / unconditional).
        prediction_type: the network output: ``"epsilon"`` (noise), ``"sample"`` (``x_0``, IDM
            eq. 7) or ``"v_prediction"``.
        schedule: the forward process it is trained for (see
            :func:`~genrestore.diffusion.schedulers.make_scheduler`); ``None`` for the default.
        unet: further ``UNet2DModel`` keyword arguments (``sample_size``, ``block_out_channels``,
            ``layers_per_block``, ``down_block_types``, ``norm_num_groups``, ...), JSON values only.
        residual: an ``x_0``-predicting network whose UNet output is added to the condition's
            first ``C`` channels, ``x_0 = y + UNet(...)``: the same objective, but the identity
            is free, so short trainings start from the degraded image instead of from zero
            (DnCNN / VDSR's residual learning). Stored in the config only when set.

    Attributes:
        config: JSON-serialisable ``{"arch": "conditional-unet", "channels", "cond_channels",
            "class_names", "prediction_type", "schedule", "unet"}``; ``ConditionalUNet.from_config(config)``
            rebuilds the (untrained) network.
        mask_label: the ``[MASK]`` class index (``len(class_names)``).

    Raises:
        InputError: a bad ``prediction_type``, ``channels``, or a derived UNet argument in ``unet``.
        ImportError: diffusers is missing.

    Example:
        >>> net = ConditionalUNet(3, class_names=["a", "b"], unet=dict(
        ...     sample_size=8, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        ...     down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D")))
        >>> x_t, y = torch.randn(2, 3, 8, 8), torch.rand(2, 3, 8, 8) * 2 - 1
        >>> net(x_t, torch.tensor([999, 10]), y, torch.tensor([0, net.mask_label])).shape
        torch.Size([2, 3, 8, 8])
    """

    arch = ARCH

    def __init__(self, channels: int = 3, *, cond_channels: int | None = None, class_names: Sequence[str] = (),
                 prediction_type: PredictionType = "epsilon", schedule: dict[str, Any] | None = None,
                 unet: dict[str, Any] | None = None, residual: bool = False):
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise InputError(f"expected prediction_type in {PREDICTION_TYPES}, got {prediction_type!r}")
        cond_channels = channels if cond_channels is None else cond_channels
        if residual and (prediction_type != "sample" or cond_channels < channels):
            raise InputError("residual=True needs an x0-predicting model ('sample') whose condition has at least "
                             f"{channels} channels; got {prediction_type!r} and {cond_channels}")
        for name, v in (("channels", channels), ("cond_channels", cond_channels)):
            if not isinstance(v, int) or v < 1:
                raise InputError(f"expected {name} as a positive int, got {v!r}")
        if unet is not None and not isinstance(unet, dict):
            raise InputError(f"expected the unet arguments as a mapping, got {type(unet).__name__}")
        unet = {k: _jsonable(v) for k, v in (unet or {}).items()}
        derived = sorted(set(unet) & set(_DERIVED))
        if derived:
            raise InputError(f"unet arguments {derived} are set by ConditionalUNet (from channels and class_names)")
        class_names = [str(c) for c in class_names]
        self.config: dict[str, Any] = {
            "arch": ARCH, "channels": channels, "cond_channels": cond_channels, "class_names": class_names,
            "prediction_type": prediction_type, "schedule": check_schedule({} if schedule is None else schedule),
            "unet": unet}
        if residual:
            self.config["residual"] = True
        self.residual = bool(residual)
        self.channels = channels
        self.cond_channels = cond_channels
        self.num_classes = len(class_names)
        self.mask_label = self.num_classes
        self.prediction_type = prediction_type
        d = require_diffusers()
        with config_errors(f"the unet arguments {unet} do not build a diffusers UNet2DModel"):
            self.unet = d.UNet2DModel(
                in_channels=channels + cond_channels, out_channels=channels,
                # class_embed_type None + num_class_embeds: an nn.Embedding added to the time embedding
                # (DiffGAR appendix: "these two embeddings will be added together")
                class_embed_type=None, num_class_embeds=self.num_classes + 1 if self.num_classes else None,
                **unet)


    def forward(self, x_t: torch.Tensor, t: torch.Tensor | int, y: torch.Tensor,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """The network output (``eps``, ``x_0`` or ``v`` as :attr:`prediction_type` says).

        Args:
            x_t: ``(N, C, H, W)`` noisy target in model space.
            t: timestep(s) in ``[0, T)``, an int or a ``(N,)`` / ``()`` tensor.
            y: ``(N, C_y, H, W)`` degraded condition in model space (``[-1, 1]`` for pixels).
            class_labels: ``(N,)`` int64 in ``[0, num_classes]`` (the last is ``[MASK]``);
                ``None`` means ``[MASK]`` for a class-conditional model.

        Returns:
            ``(N, C, H, W)`` tensor.

        Raises:
            InputError: mismatched shapes, or class labels out of range or given to a model
                without classes.
        """
        n = x_t.shape[0]
        if (x_t.ndim != 4 or y.ndim != 4 or x_t.shape[1] != self.channels or y.shape[1] != self.cond_channels
                or y.shape[0] != n or y.shape[-2:] != x_t.shape[-2:]):
            raise InputError(f"expected x_t as (N, {self.channels}, H, W) and y as (N, {self.cond_channels}, H, W), "
                             f"got {tuple(x_t.shape)} and {tuple(y.shape)}")
        if self.num_classes == 0 and class_labels is not None:
            raise InputError("this model has no classes; expected class_labels=None")
        if self.num_classes and class_labels is None:
            class_labels = torch.full((n,), self.mask_label, dtype=torch.long, device=x_t.device)
        if class_labels is not None:
            if class_labels.shape != (n,) or class_labels.dtype != torch.long:
                raise InputError(f"expected class_labels as ({n},) int64, got {tuple(class_labels.shape)} "
                                 f"{class_labels.dtype}")
            if ((class_labels < 0) | (class_labels > self.mask_label)).any():
                raise InputError(f"expected class_labels in [0, {self.mask_label}] ({self.mask_label} = [MASK]), "
                                 f"got {class_labels.tolist()}")
        t = torch.as_tensor(t, device=x_t.device)
        t = t.expand(n) if t.ndim == 0 else t
        out = self.unet(torch.cat([x_t, y], dim=1), t, class_labels=class_labels).sample
        return out + y[:, :self.channels] if self.residual else out


UNCOND_ARCH = "denoising-unet"


class DenoisingUNet(nn.Module, SavedModel):
    """An unconditional epsilon-predicting DDPM denoiser, ``fn(x_t, t) -> eps`` on ``[-1, 1]`` images.

    The generator whose DDIM latent space DiffGAR perturbs (§3.3; see
    :mod:`genrestore.artifacts.ddim`), stored with its noise ``schedule`` like :class:`ConditionalUNet`.

    Example:
        >>> net = DenoisingUNet(3, unet=dict(sample_size=8, block_out_channels=(8, 16), layers_per_block=1,
        ...     norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
        ...     up_block_types=("UpBlock2D", "UpBlock2D")))
        >>> net(torch.randn(2, 3, 8, 8), torch.tensor([5, 900])).shape
        torch.Size([2, 3, 8, 8])
    """

    arch = UNCOND_ARCH

    def __init__(self, channels: int = 3, *, schedule: dict[str, Any] | None = None,
                 unet: dict[str, Any] | None = None):
        super().__init__()
        if unet is not None and not isinstance(unet, dict):
            raise InputError(f"expected the unet arguments as a mapping, got {type(unet).__name__}")
        unet = {k: _jsonable(v) for k, v in (unet or {}).items()}
        derived = sorted(set(unet) & set(_DERIVED))
        if derived:
            raise InputError(f"unet arguments {derived} are set by DenoisingUNet (from channels)")
        schedule = check_schedule({} if schedule is None else schedule)
        self.config: dict[str, Any] = {"arch": UNCOND_ARCH, "channels": channels, "schedule": schedule, "unet": unet}
        self.channels = channels
        with config_errors(f"the unet arguments {unet} do not build a diffusers UNet2DModel"):
            self.unet = require_diffusers().UNet2DModel(in_channels=channels, out_channels=channels, **unet)


    def forward(self, x_t: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """``eps`` predicted for ``(N, C, H, W)`` noisy images at timestep(s) ``t``."""
        t = torch.as_tensor(t, device=x_t.device)
        return self.unet(x_t, t.expand(x_t.shape[0]) if t.ndim == 0 else t).sample
