"""Read TensorFlow.js weights: a ``*weights_manifest.json`` (or a layers ``model.json``) and its shards.

The manifest lists weight groups; each group names its binary shard files and its weights in
order (name, shape, dtype, optional quantization). A group's shards are concatenated and
the weights are read back to back. Quantized weights store ``uint8`` or ``uint16`` codes
``q`` with a per-tensor ``scale`` and ``min`` (``value = q * scale + min``), or ``float16``.

:func:`read_tfjs_weights` returns float32 arrays, dequantized as tfjs does.
:func:`read_tfjs_quantized` keeps the codes, so a converted file can store them losslessly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from .._checks import InputError

_DTYPES = {"float32": np.float32, "int32": np.int32, "uint8": np.uint8, "uint16": np.uint16,
           "float16": np.float16, "bool": np.bool_}


@dataclass(frozen=True)
class TfjsWeight:
    """One weight as stored: ``codes`` (raw array in the stored dtype) and its dequantization."""

    name: str
    shape: tuple[int, ...]
    codes: np.ndarray
    scale: float | None = None
    min: float | None = None

    def value(self) -> np.ndarray:
        """Float32 value, as tfjs's ``decodeWeights`` computes it."""
        if self.scale is not None:
            return (self.codes.astype(np.float64) * self.scale + self.min).astype(np.float32).reshape(self.shape)
        return self.codes.astype(np.float32).reshape(self.shape)


def _manifest(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a TF.js weights manifest ({e})") from None
    if isinstance(data, dict) and "weightsManifest" in data:  # a layers/graph model.json
        data = data["weightsManifest"]
    if not isinstance(data, list) or not all(isinstance(g, dict) and isinstance(g.get("paths"), list)
                                             and isinstance(g.get("weights"), list) for g in data):
        raise InputError(f"{path}: expected a list of weight groups with 'paths' and 'weights' lists")
    return data


def read_tfjs_quantized(manifest: str | os.PathLike) -> dict[str, TfjsWeight]:
    """All weights of a TF.js manifest, with their stored codes and quantization parameters."""
    path = Path(manifest)
    out: dict[str, TfjsWeight] = {}
    for group in _manifest(path):
        for p in group["paths"]:  # tfjs fetches shards relative to the manifest: stay in its folder
            if not isinstance(p, str) or PurePosixPath(p).is_absolute() or Path(p).is_absolute() \
                    or ".." in PurePosixPath(p.replace("\\", "/")).parts:
                raise InputError(f"{path}: shard path {p!r} points outside the manifest's folder")
        try:
            blob = b"".join((path.parent / p).read_bytes() for p in group["paths"])
        except OSError as e:
            raise InputError(f"{path}: missing weight shard ({e})") from None
        offset = 0
        for spec in group["weights"]:
            try:
                name, shape, q = str(spec["name"]), tuple(int(d) for d in spec["shape"]), spec.get("quantization")
                dtype = _DTYPES[q["dtype"] if q else spec["dtype"]]
                quant = (float(q["scale"]), float(q["min"])) if q and q["dtype"] in ("uint8", "uint16") else (None, None)
                if not isinstance(spec["shape"], list) or min(shape, default=0) < 0:
                    raise ValueError(f"shape {spec['shape']!r}")
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise InputError(f"{path}: malformed weight entry {json.dumps(spec)[:120]} "
                                 f"({type(e).__name__}: {e})") from None
            count = int(np.prod(shape)) if shape else 1
            nbytes = count * np.dtype(dtype).itemsize
            if offset + nbytes > len(blob):
                raise InputError(f"{path}: shards end before weight {name!r}")
            codes = np.frombuffer(blob, dtype=dtype, count=count, offset=offset).copy()
            offset += nbytes
            out[name] = TfjsWeight(name, shape, codes, *quant)
        if offset != len(blob):
            raise InputError(f"{path}: {len(blob) - offset} bytes left over in a weight group")
    return out


def read_tfjs_weights(manifest: str | os.PathLike) -> dict[str, np.ndarray]:
    """All weights of a TF.js manifest as float32 arrays (dequantized), by name."""
    return {name: w.value() for name, w in read_tfjs_quantized(manifest).items()}


def quantized_state(weights: dict[str, TfjsWeight]) -> dict:
    """A safetensors-ready dict of torch tensors from :func:`read_tfjs_quantized`, lossless:
    ``NAME`` holds the codes (shaped), and quantized weights add ``NAME::scale`` and ``NAME::min``
    (float64, one element each)."""
    import torch

    out = {}
    for name, w in weights.items():
        out[name] = torch.from_numpy(np.ascontiguousarray(w.codes.reshape(w.shape)))
        if w.scale is not None:
            out[f"{name}::scale"] = torch.tensor([w.scale], dtype=torch.float64)
            out[f"{name}::min"] = torch.tensor([w.min], dtype=torch.float64)
    return out


def dequantize_state(state: dict) -> dict:
    """Float32 tensors from :func:`quantized_state`: ``q * scale + min`` in float64, then float32, as tfjs."""
    out = {}
    for name, t in state.items():
        if "::" in name:
            continue
        if f"{name}::scale" in state:
            t = (t.double() * state[f"{name}::scale"] + state[f"{name}::min"]).float()
        out[name] = t.float()
    return out
