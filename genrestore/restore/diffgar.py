"""DiffGAR restoration: a class-conditional diffusion model over degradation types (DiffGAR §4).

The network is a :class:`~genrestore.diffusion.ConditionalUNet` on ``concat(x_t, y)`` whose
class embedding covers the degradation classes plus ``[MASK]`` (index ``len(class_names)``). In
training half of the labels are replaced by ``[MASK]`` (Alg. 1), so one network restores

* ``"blind"``: without knowing the degradation (``[MASK]``, guidance scale 1);
* ``"non-blind"``: with the true class (guidance scale 1);
* ``"guided"``: with the class and classifier-free guidance (eq. 9, ``s = 3``).

Sampling is DDIM, 30 steps, ``eta = 0`` (appendix); the schedule arithmetic lives in
:func:`genrestore.diffusion.sample`. The model runs in pixel space, or, as the paper's does, in the
latent space of a VQ autoencoder (:class:`~genrestore.models.vq.VQAutoencoder`; the paper: VQ-f4):
then both the degraded image and the sample are encoder outputs ``z_e`` times a fixed
``latent_scale`` (LDM's unit-variance scaling), and the result is quantized and decoded. :func:`diffgar_degrade` makes the training degradations from
the four benchmark tasks of :mod:`genrestore.degrade.tasks`, each resized back to the clean size.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Callable, Literal

import torch

from .. import _random
from .._checks import InputError, check_image, check_not_empty, real_number
from .._random import Generator
from ..diffusion.model import ConditionalUNet
from ..diffusion.sampling import sample
from .idm import TILE_BLEND, check_tile, pad_to_multiple, size_multiple

DIFFGAR_CLASSES: tuple[str, ...] = ("upsample", "denoise", "deartifact", "inpaint")
# DiffGAR's own classes (§3): the artifact kinds of `genrestore artifacts`; "identity" pairs train [MASK].
ARTIFACT_CLASSES: tuple[str, ...] = ("vq-replace", "ar-resample", "ddim-gauss", "ddim-scale")
Mode = Literal["blind", "non-blind", "guided"]
MODES: tuple[str, ...] = ("blind", "non-blind", "guided")
# classifier-free guidance scales in use are 1 to about 20 (DiffGAR: 3); far larger ones overflow
# the guided prediction (s * (cond - uncond)) into NaN
MAX_GUIDANCE_SCALE = 100.0


def load_artifact_pairs(folders: Sequence[str | os.PathLike], class_names: Sequence[str] = ARTIFACT_CLASSES
                        ) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """``(clean, artifact, label)`` triples from folders written by ``genrestore artifacts``.

    Each ``NAME.json`` names its ``kind``; the images are ``NAME.png`` (artifact) and
    ``NAME_clean.png`` beside it. ``identity`` pairs get the ``[MASK]`` label ``len(class_names)``.

    Raises:
        InputError: no pairs, a kind that is not in ``class_names``, a missing image, or a pair
            of two sizes.
    """
    import json

    from ..io import read_image

    out = []
    for folder in folders:
        for meta_path in sorted(Path(folder).glob("*.json")):
            try:
                kind = json.loads(meta_path.read_text())["kind"]
            except (ValueError, KeyError, TypeError):
                continue  # not a pair record
            if kind == "identity":
                label = len(class_names)
            elif kind in class_names:
                label = list(class_names).index(kind)
            else:
                raise InputError(f"{meta_path}: artifact kind {kind!r} is not one of the classes {list(class_names)}")
            art, clean = meta_path.with_suffix(".png"), meta_path.with_name(f"{meta_path.stem}_clean.png")
            for p in (art, clean):
                if not p.is_file():
                    raise InputError(f"{meta_path}: missing {p.name}")
            x, y = read_image(clean, "rgb")[0], read_image(art, "rgb")[0]
            if x.shape != y.shape:
                raise InputError(f"{art}: {y.shape[-1]}x{y.shape[-2]} px, but {clean.name} beside it is "
                                 f"{x.shape[-1]}x{x.shape[-2]} px; a pair needs one size")
            out.append((x, y, label))
    if not out:
        raise InputError(f"no artifact pairs (NAME.json + NAME.png + NAME_clean.png) in {[str(f) for f in folders]}")
    return out


def diffgar_degrade(class_names: Sequence[str] = DIFFGAR_CLASSES, level: str = "M"
                    ) -> Callable[[torch.Tensor, Generator], tuple[torch.Tensor, torch.Tensor]]:
    """A ``degrade_fn`` for :func:`~genrestore.diffusion.train.train_conditional` with class labels.

    Image ``i`` draws its class uniformly from ``generator[i]``, then is degraded by that task
    (:func:`~genrestore.degrade.get_task` at ``level``) with the same generator; a degraded image
    of another size (``upsample``) is resized back with bicubic interpolation and clamped to
    ``[0, 1]``, since DiffGAR conditions on a pixel-aligned ``y``.

    Args:
        class_names: benchmark task names, in the order of the model's ``class_names``.
        level: the task level, ``XS`` ... ``XL``.

    Returns:
        ``fn(x, generator) -> (y, class_labels)``: ``x`` and ``y`` ``(N, 3, H, W)`` in ``[0, 1]``,
        ``class_labels`` ``(N,)`` int64.

    Raises:
        InputError: an unknown task name or level.

    Example:
        >>> fn = diffgar_degrade()
        >>> y, c = fn(torch.rand(2, 3, 16, 16), [torch.Generator().manual_seed(i) for i in range(2)])
        >>> y.shape, c.shape, c.dtype
        (torch.Size([2, 3, 16, 16]), torch.Size([2]), torch.int64)
    """
    from ..degrade import get_task, resize

    names = [str(c) for c in class_names]
    unknown = [c for c in names if c not in DIFFGAR_CLASSES]
    if unknown or not names:
        raise InputError(f"expected class names among {list(DIFFGAR_CLASSES)}, got {names}")
    tasks = [get_task(c, level) for c in names]

    def degrade(x: torch.Tensor, generator: Generator = None) -> tuple[torch.Tensor, torch.Tensor]:
        check_image(x, "x", channels=(3,))
        gens = _random.per_image(generator, x.shape[0])
        labels = torch.cat([_random.randint(g, 1, 0, len(tasks)) for g in gens])
        ys = []
        for i, g in enumerate(gens):
            y = tasks[int(labels[i])].degrade(x[i:i + 1], [g])
            if y.shape[-2:] != x.shape[-2:]:
                y = resize(y, tuple(x.shape[-2:]), "bicubic").clamp(0, 1)
            ys.append(y)
        return torch.cat(ys), labels
    return degrade


def latent_scale(autoencoder, images, batch_size: int, crop: int, seed: int = 0) -> float:
    """LDM's latent scaling: ``1 / std(z_e)`` over one batch of crops of ``images``.

    The crops are those of training step 0 (``generator_for(seed, "crop-0")``), so the number is
    reproducible from the run's arguments.

    Args:
        autoencoder: a :class:`~genrestore.models.vq.VQAutoencoder`.
        images: clean photos (tensors in ``[0, 1]``) or a folder.
    """
    from .._random import generator_for
    from ..diffusion.train import load_images, random_crops

    crops = random_crops(load_images(images), batch_size, crop, generator_for(seed, "crop-0"))
    device = next(autoencoder.parameters()).device
    with torch.no_grad():
        z = autoencoder.encode_latents(crops.to(device))
    return float(1 / z.float().std().clamp(min=1e-6))


def autoencoder_file(model: str | os.PathLike, spec: str) -> Path | None:
    """The VQ autoencoder file that a latent model's sidecar names as ``spec``: a weight name (its
    file in the store), or a path relative to the model's folder (as ``train diffgar`` writes it,
    so the two folders can move together), then as given; ``None`` when no such file is found."""
    from .. import weights as ws

    if str(spec) in ws.REGISTRY:
        return ws.find(str(spec))
    return next((c for c in (Path(model).parent / spec, Path(spec)) if c.is_file()), None)


class DiffGARRestorer:
    """Restore degraded images with a class-conditional :class:`ConditionalUNet` (DiffGAR).

    Args:
        model: a trained :class:`ConditionalUNet` with ``class_names`` (its degradation classes).
        autoencoder: for a latent model, its :class:`~genrestore.models.vq.VQAutoencoder`.
        latent_scale: the factor the encoder outputs were multiplied by in training.

    Raises:
        InputError: not a ConditionalUNet, one without classes, or latent channels that do not
            match the autoencoder's.

    Example:
        >>> from genrestore.diffusion import ConditionalUNet
        >>> net = ConditionalUNet(3, class_names=DIFFGAR_CLASSES, unet=dict(
        ...     sample_size=8, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        ...     down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D")))
        >>> DiffGARRestorer(net).restore(torch.rand(1, 3, 7, 9), "guided", "denoise", steps=2).shape
        torch.Size([1, 3, 7, 9])
    """

    def __init__(self, model: ConditionalUNet, autoencoder=None, latent_scale: float = 1.0):
        if not isinstance(model, ConditionalUNet):
            raise InputError(f"expected a ConditionalUNet, got {type(model).__name__}")
        if not model.num_classes:
            raise InputError("DiffGAR needs a class-conditional model (config class_names), this one has none; "
                             "train one with class_names, e.g. genrestore.restore.diffgar.DIFFGAR_CLASSES")
        if autoencoder is not None and (model.channels, model.cond_channels) != (autoencoder.config["embed_dim"],) * 2:
            raise InputError(f"a latent model needs {autoencoder.config['embed_dim']} channels (the autoencoder's "
                             f"embed_dim); this one has {model.channels} (condition {model.cond_channels})")
        self.model = model.eval()
        self.autoencoder = None if autoencoder is None else autoencoder.eval()
        self.latent_scale = float(latent_scale)
        self.class_names: list[str] = list(model.config["class_names"])
        self.factor = 1 if autoencoder is None else autoencoder.factor
        self.multiple = size_multiple(model) * self.factor

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str | torch.device = "cpu",
                  autoencoder: str | os.PathLike | None = None) -> DiffGARRestorer:
        """A restorer from a ``.safetensors`` checkpoint with its ``.json`` sidecar (see
        ``ConditionalUNet.save``), or from a weight name. A latent model's sidecar names its
        ``autoencoder``: a weight name, or a path relative to the model's folder (as ``train
        diffgar`` writes it, so the two folders can move together; an absolute path, or one
        relative to the working folder, is tried next) and ``latent_scale``; ``autoencoder`` (a file
        or weight name, as given) overrides it.

        Raises:
            InputError: the model or its autoencoder cannot be found, or the autoencoder is the
                model file itself.
        """
        from .. import weights as ws
        from ..models.checkpoint import read_sidecar
        from ..models.vq import VQAutoencoder

        path = ws.model_file(path)
        meta = read_sidecar(path)
        spec = autoencoder or meta.get("autoencoder")
        ae = None
        if spec:
            if autoencoder is not None or str(spec) in ws.REGISTRY:  # the caller's file or name, as given
                ae_path = ws.model_file(spec)
            else:
                ae_path = autoencoder_file(path, spec)
                if ae_path is None:
                    raise InputError(f"{path}: its autoencoder {str(spec)!r} is neither beside it nor at that path; "
                                     "pass the VQ autoencoder's file (restore --autoencoder FILE)")
            if Path(ae_path).resolve() == Path(path).resolve():
                raise InputError(f"{path}: the autoencoder it names is the model file itself; pass the VQ "
                                 "autoencoder's file (restore --autoencoder FILE)")
            ae = VQAutoencoder.load(ae_path, device=device)
        return cls(ConditionalUNet.load(path, device=device), ae, meta.get("latent_scale", 1.0))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(N, 3, H, W)`` in ``[0, 1]`` -> the model's space: scaled latents, or ``x`` itself."""
        if self.autoencoder is None:
            return x
        return self.autoencoder.encode_latents(x) * self.latent_scale

    def class_label(self, artifact: str) -> int:
        """The class index of ``artifact``; :class:`InputError` listing the classes if unknown."""
        if artifact not in self.class_names:
            raise InputError(f"unknown artifact {artifact!r}; this model's classes are {self.class_names}")
        return self.class_names.index(artifact)

    def sampling_args(self, mode: Mode, artifact: str | None, guidance_scale: float, n: int,
                      device: torch.device | str = "cpu") -> tuple[torch.Tensor | None, float]:
        """``(class_labels, guidance_scale)`` that ``mode`` hands to :func:`~genrestore.diffusion.sample`.

        ``"blind"``: ``(None, 1.0)`` (``None`` is ``[MASK]``); ``"non-blind"``: ``(c, 1.0)``;
        ``"guided"``: ``(c, guidance_scale)``, with ``c`` the ``(n,)`` int64 label of ``artifact``.

        Raises:
            InputError: an unknown mode or artifact, an artifact in blind mode, none otherwise, or a
                guidance scale outside ``[0, MAX_GUIDANCE_SCALE]``.
        """
        if mode not in MODES:
            raise InputError(f"expected mode in {list(MODES)}, got {mode!r}")
        if mode == "blind":
            if artifact is not None:
                raise InputError(f"blind mode restores without a class; got artifact={artifact!r} "
                                 "(use mode 'non-blind' or 'guided')")
            return None, 1.0
        if artifact is None:
            raise InputError(f"mode {mode!r} needs the artifact class, one of {self.class_names}")
        labels = torch.full((n,), self.class_label(artifact), dtype=torch.long, device=device)
        if mode != "guided":
            return labels, 1.0
        s = real_number(guidance_scale)
        if s is None or not 0 <= s <= MAX_GUIDANCE_SCALE:
            raise InputError(f"expected guidance_scale in [0, {MAX_GUIDANCE_SCALE:g}], got {guidance_scale!r}")
        return labels, s

    @torch.no_grad()  # not inference_mode: see diffusion.sample
    def restore(self, y: torch.Tensor, mode: Mode = "guided", artifact: str | None = None,
                guidance_scale: float = 3.0, steps: int = 30, generator: Generator = None, tile: int = 0,
                tile_pad: int = 16, tile_blend: int = TILE_BLEND, half: bool = False) -> torch.Tensor:
        """Restore ``y`` by ``steps`` DDIM steps (``eta = 0``) from ``x_T ~ N(0, I)`` (DiffGAR §4).

        Images are padded (bottom/right, reflect) to the UNet's size multiple and cropped back;
        :func:`~genrestore.diffusion.sample` maps them to ``[-1, 1]`` for the model and back.

        Args:
            y: ``(N, C, H, W)`` degraded images in ``[0, 1]``, any ``H, W >= 1`` (for ``upsample``:
                the low-resolution image resized to the output size, bicubic, as in training).
            mode: ``"blind"`` (``[MASK]``, ``s = 1``), ``"non-blind"`` (the class, ``s = 1``) or
                ``"guided"`` (the class with classifier-free guidance ``s``, eq. 9).
            artifact: the degradation class of every image, one of ``self.class_names``; ``None``
                for blind mode.
            guidance_scale: ``s`` for guided mode (DiffGAR: 3); ignored by the other modes.
            steps: DDIM steps (DiffGAR: 30).
            generator: a ``torch.Generator`` or one per image (then image ``i`` draws its noise,
                at its padded size, from ``generator[i]`` only).
            tile, tile_pad, tile_blend: tile the network call (see :func:`~genrestore.diffusion.sample`),
                in image pixels (for a latent model, divided by the autoencoder's factor).
            half: the diffusion network in 16-bit where the device computes it natively (see
                :func:`~genrestore.diffusion.sample`); the autoencoder stays float32.

        Returns:
            ``(N, C, H, W)`` restored images in ``[0, 1]``.

        Raises:
            InputError: bad ``y``, ``steps``, mode or artifact (the message lists the classes).
        """
        model = self.model
        check_image(y, "y", channels=(3,))
        check_not_empty(y, "degraded image")
        check_tile(tile, tile_pad, tile_blend, self.multiple)
        device = next(model.parameters()).device
        labels, s = self.sampling_args(mode, artifact, guidance_scale, y.shape[0], device)
        y_pad, (h, w) = pad_to_multiple(y, self.multiple)
        f = self.factor
        x = sample(model, self.encode(y_pad.to(device)), scheduler="ddim", steps=steps, class_labels=labels,
                   guidance_scale=s, eta=0.0, generator=generator, tile=tile // f, tile_pad=tile_pad // f,
                   tile_blend=max(1, tile_blend // f), latent=self.autoencoder is not None, half=half)
        if self.autoencoder is not None:
            x = self.autoencoder.decode_latents(x / self.latent_scale)
        return x[..., :h, :w].to(y.device)
