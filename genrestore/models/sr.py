"""Super-resolution networks by name: build, load from the weight store, and run (tiled, half).

Converted models (see ``genrestore weights list``):

========================= ======= ======== ============================================
name                      arch    scale    what it is
========================= ======= ======== ============================================
realesrgan-x4plus         rrdbnet 4        Real-ESRGAN x4plus, GAN-trained (DeSRA's GAN-SR)
realesr-animevideov3-x{2,3,4} srvgg 2/3/4  Real-ESRGAN's compact anime-video model
rdn-x{2,3,4}              rdn     2/3/4    idealo RDN trained on DIV2K with L1 (an MSE-SR)
rrdn-x4                   rrdn    4        idealo RRDN, GAN-trained
========================= ======= ======== ============================================

Every network maps ``(N, 3, H, W)`` RGB in [0, 1] to ``(N, 3, sH, sW)`` (not clamped);
:func:`upscale` clamps to [0, 1].
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import InputError, check_image, whole_number
from ..io import read_json_object
from .checkpoint import config_errors, in_module_dtype, state_dict_mismatch
from .precision import run_network

# arch name -> (module, class)
ARCHS = {
    "rrdbnet": ("genrestore.models.rrdbnet", "RRDBNet"),
    "srvgg": ("genrestore.models.srvgg", "SRVGGNetCompact"),
    "rdn": ("genrestore.models.rdn", "RDN"),
    "rrdn": ("genrestore.models.rdn", "RRDN"),
}


def build_sr(config: dict) -> nn.Module:
    """An untrained network from its JSON config (``{"arch": ..., **constructor kwargs}``)."""
    config = dict(config)
    arch = config.pop("arch", None)
    if not isinstance(arch, str) or arch not in ARCHS:
        raise InputError(f"unknown SR architecture {arch!r}; known: {', '.join(ARCHS)}")
    module, name = ARCHS[arch]
    cls = getattr(importlib.import_module(module), name)  # outside: an import error is ours, not the config's
    with config_errors(f"bad {arch} config {config}"):
        return cls(**config)


def _stored_config(path: Path, fallback: dict) -> dict:
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        config = read_json_object(sidecar, "a model sidecar (JSON object)").get("config")
        if isinstance(config, dict) and config.get("arch"):
            return config
    if fallback.get("arch"):
        return fallback
    raise InputError(f"{path}: no architecture config (expected {sidecar.name} with a 'config' entry)")


def _locate(name: str | os.PathLike) -> tuple[Path, dict]:
    """The weight file and architecture config of an SR model, by weight name or ``.safetensors`` path."""
    from .. import weights as ws

    if str(name).lower().endswith(".safetensors"):  # M.SAFETENSORS too
        path, fallback = Path(name), {}
        if not path.is_file():
            raise InputError(f"{path}: no such file")
    elif Path(name).suffix in (".pth", ".pt", ".ckpt", ".bin", ".param", ".json") or Path(name).is_file():
        raise InputError(f"{name}: SR models load from .safetensors (+ .json); convert it first with "
                         f"`genrestore weights add/convert`")
    else:
        path, fallback = ws.resolve(str(name)), ws.spec(str(name)).config
    return path, _stored_config(path, fallback)


def sr_scale(name: str | os.PathLike) -> int:
    """The upscaling factor of an SR model, from its config alone (no weights are read).

    Raises the errors of :func:`load_sr` for missing or unknown models.
    """
    with torch.device("meta"):
        return int(build_sr(_locate(name)[1]).scale)


def load_sr(name: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """A converted SR network in ``eval()`` mode, by weight name or by ``.safetensors`` path.

    Quantized weights (uint8 codes with ``NAME::scale`` / ``NAME::min``) are dequantized as tfjs
    does; float16 weights are promoted to float32.

    Args:
        name: a weight name (e.g. ``"rdn-small-x2"``, see ``genrestore weights list``) or the path
            of a ``.safetensors`` file with a ``.json`` sidecar that holds its ``config``.
        device: where the network goes.

    Returns:
        The float32 network in ``eval()`` mode, with an integer ``scale`` attribute; it maps
        ``(N, 3, H, W)`` in [0, 1] to ``(N, 3, scale H, scale W)`` (run it with :func:`upscale`).

    Raises:
        WeightNotFound: when a named weight is absent (the message says how to install it).
        InputError: unknown name, a missing file, a non-safetensors checkpoint, a file without
            an architecture config, or weights that do not fit the config.

    Example:
        >>> net = load_sr("rdn-small-x2")  # shipped with the package
        >>> type(net).__name__, net.scale, net.training
        ('RDN', 2, False)
    """
    from ..io import load_safetensors
    from .tfjs import dequantize_state

    path, config = _locate(name)
    state = load_safetensors(path)
    if any("::scale" in k for k in state):
        state = dequantize_state(state)
    try:
        net = build_sr(config)
    except InputError as e:  # name the file whose config it is
        raise InputError(f"{path}: {e}") from None
    try:
        net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as e:
        raise InputError(f"{path}: weights do not fit a {config['arch']} with {config}: {state_dict_mismatch(e)}") from None
    return net.to(device).eval()


def _run(net: nn.Module, x: torch.Tensor, half: bool) -> torch.Tensor:
    return run_network(net, x, half=half, what="SR").float()


def peak_activation_bytes(net: nn.Module, hw: tuple[int, int], probe: int = 32) -> float:
    """Peak bytes of the tensors alive at once in a forward pass of ``net`` on one ``(1, 3, H, W)``
    image (the input included, the weights not), in the network's dtype.

    Measured on a ``probe`` px square input (one forward pass on the network's device, every
    tensor an operator returns counted until it is freed) and scaled by the pixel count, as a
    convolutional network's feature maps are. ``benchmarks/sr_memory.py`` sets it beside the
    resident memory that whole images take."""
    import weakref

    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class LiveBytes(TorchDispatchMode):
        live = peak = 0

        def free(self, n: int) -> None:
            self.live -= n

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            given = {id(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
            for t in tree_leaves(out):  # new storages only: in-place results and views share one
                if isinstance(t, torch.Tensor) and id(t) not in given and not t._is_view():
                    n = t.untyped_storage().nbytes()
                    self.live += n
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(t, self.free, n)
            return out

    p = next(net.parameters())
    x = torch.rand(1, 3, probe, probe, device=p.device, dtype=p.dtype)
    with torch.no_grad(), LiveBytes() as track:
        net(x)
    return (track.peak + x.nbytes) * hw[0] * hw[1] / probe ** 2


TILE_BLEND = 8  # input px of cosine cross-fade between tiles, beyond the discarded pads


def input_multiple(net: nn.Module) -> int:
    """The multiple the network's input sides must be (RRDBNet x2 / x1 pixel-unshuffle by 2 / 4; else 1)."""
    return int(getattr(net, "unshuffle", 1))


def resize_output(y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """SR outputs ``(N, C, H, W)`` in [0, 1] resized to ``size = (h, w)`` with OpenCV's Lanczos
    (``INTER_LANCZOS4``) and clamped, as Real-ESRGAN's ``inference_realesrgan.py --outscale`` does
    (on float32 here, not 8 bits). Returns ``y`` itself when it already has that size."""
    import cv2
    import numpy as np

    check_image(y, "SR output", channels=(1, 2, 3, 4), check_range=False)
    hw = [whole_number(v) for v in size] if len(size) == 2 else [None]
    if None in hw or min(hw) < 1:
        raise InputError(f"expected the output size as (height, width) in whole pixels >= 1, got {size!r}")
    h, w = hw
    if y.shape[0] == 0:
        return y.new_empty(0, y.shape[1], h, w)
    if tuple(y.shape[-2:]) == (h, w):
        return y
    out = []
    for img in y.detach().float().cpu().permute(0, 2, 3, 1).numpy():
        r = cv2.resize(np.ascontiguousarray(img), (w, h), interpolation=cv2.INTER_LANCZOS4)
        out.append(torch.from_numpy(r.reshape(h, w, -1)).permute(2, 0, 1))
    return torch.stack(out).clamp_(0, 1).to(device=y.device, dtype=y.dtype)


def upscale(net: nn.Module, x: torch.Tensor, tile: int = 0, tile_pad: int = 16, half: bool = False) -> torch.Tensor:
    """Super-resolve a batch.

    Args:
        net: an SR network with an integer ``scale`` attribute.
        x: ``(N, 3, H, W)`` RGB in [0, 1], on the network's device.
        tile: tile side in input pixels (0: whole image). Tiles overlap by at least ``2 * tile_pad + 8``.
        tile_pad: input pixels discarded at interior tile edges; when it covers the network's
            receptive field the tiled output equals the untiled one.
        half: autocast to :func:`~genrestore.models.precision.half_dtype` (bf16 on GPUs and on
            CPUs that compute it natively, fp16 on older GPUs; float32 where neither), with a
            float32 retry of any tile that has NaN/inf.

    Returns:
        ``(N, 3, H * scale, W * scale)`` float32 in [0, 1]. Sides that a network cannot take
        (RRDBNet x2 / x1: multiples of 2 / 4) are reflect-padded, and the output cropped back.

    Raises:
        InputError: if ``x`` is not a float ``(N, 3, H, W)`` tensor in [0, 1], or a nonzero
            ``tile`` is not larger than ``2 * tile_pad + 8`` while the image needs tiling.

    Example:
        >>> net = load_sr("rdn-small-x2")  # shipped with the package
        >>> x = torch.rand(2, 3, 8, 12, generator=torch.Generator().manual_seed(0))
        >>> y = upscale(net, x)
        >>> y.shape, y.dtype, bool(y.min() >= 0 and y.max() <= 1)
        (torch.Size([2, 3, 16, 24]), torch.float32, True)
    """
    from ..io import tiled_apply

    check_image(x, "low-resolution image", channels=(3,))
    x = in_module_dtype(net, x)
    scale = int(net.scale)
    h, w = x.shape[-2:]
    m = input_multiple(net)
    if h % m or w % m:  # reflect-pad the bottom and right to the multiple, crop the output back (as Real-ESRGAN)
        x = F.pad(x, (0, -w % m, 0, -h % m), mode="reflect" if min(h, w) > m else "replicate")
    tile -= tile % m  # every tile, like the padded image, a multiple of m
    with torch.no_grad():  # not inference_mode: outputs may become training targets (DeSRA pseudo-GT)
        if tile and (x.shape[-1] > tile or x.shape[-2] > tile):
            y = tiled_apply(lambda t: _run(net, t, half), x, tile=tile, pad=tile_pad, blend=TILE_BLEND, scale=scale,
                            multiple=m)
        else:
            y = _run(net, x, half)
    return y[..., :h * scale, :w * scale].clamp_(0, 1)


ALPHA_UPSAMPLERS = ("model", "linear")


def upscale_image(net: nn.Module, x: torch.Tensor, tile: int = 0, tile_pad: int = 16, half: bool = False,
                  alpha_upsampler: str = "model") -> torch.Tensor:
    """Super-resolve grey, RGB and RGBA images, as Real-ESRGAN's ``RealESRGANer.enhance`` does.

    Grey runs through the network as RGB with three equal channels and comes back as the luma
    of its output (BT.601, OpenCV's ``RGB2GRAY``). An alpha channel is upscaled apart from the
    colour: by the network as a grey image (``alpha_upsampler="model"``, Real-ESRGAN's default;
    one more pass) or bilinearly (``"linear"``: OpenCV's ``INTER_LINEAR`` with half-pixel
    centres, Real-ESRGAN's other choice), and clamped to [0, 1] like the colour.

    Args:
        net, tile, tile_pad, half: as :func:`upscale`.
        x: ``(N, C, H, W)`` in [0, 1], C = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA).
        alpha_upsampler: ``"model"`` or ``"linear"``.

    Returns:
        ``(N, C, H * scale, W * scale)`` float32 in [0, 1], the channels of ``x``.
    """
    check_image(x, "low-resolution image", channels=(1, 2, 3, 4))
    if alpha_upsampler not in ALPHA_UPSAMPLERS:
        raise InputError(f"alpha_upsampler must be one of {', '.join(ALPHA_UPSAMPLERS)}, got {alpha_upsampler!r}")
    c = x.shape[1]
    if c == 3:
        return upscale(net, x, tile, tile_pad, half)
    colour, alpha = (x[:, :c - 1], x[:, c - 1:]) if c in (2, 4) else (x, None)

    def grey_through_net(g: torch.Tensor) -> torch.Tensor:  # (N, 1, H, W) -> (N, 1, sH, sW)
        from ..io import convert_channels

        return convert_channels(upscale(net, g.expand(-1, 3, -1, -1), tile, tile_pad, half), "gray").clamp_(0, 1)

    out = grey_through_net(colour) if colour.shape[1] == 1 else upscale(net, colour, tile, tile_pad, half)
    if alpha is None:
        return out
    if alpha_upsampler == "model":
        a = grey_through_net(alpha)
    else:
        a = F.interpolate(alpha.float(), scale_factor=int(net.scale), mode="bilinear", align_corners=False)
        a = a.clamp_(0, 1).to(out.device)
    return torch.cat([out, a], 1)


