"""Convert StyleGAN2 checkpoints to :class:`~genrestore.models.stylegan2.StyleGAN2Generator`.

Two sources:

- **rosinality** ``stylegan2-pytorch`` state dicts (``g_ema`` of a checkpoint, optionally with
  ``latent_avg``). Keys and their meaning:

  ========================================  ==========================================
  rosinality                                ours (NVIDIA StyleGAN2-ADA names)
  ========================================  ==========================================
  ``style.{i+1}.weight`` / ``.bias``        ``mapping.fc{i}.weight`` / ``.bias``
  ``latent_avg``                            ``mapping.w_avg``
  ``input.input`` (1, C, 4, 4)              ``synthesis.b4.const`` (C, 4, 4)
  ``conv1.*``, ``to_rgb1.*``                ``synthesis.b4.conv1.*``, ``synthesis.b4.torgb.*``
  ``convs.{2j}.*``, ``convs.{2j+1}.*``      ``synthesis.b{r}.conv0.*``, ``.conv1.*`` (r = 8 * 2^j)
  ``to_rgbs.{j}.*``                         ``synthesis.b{r}.torgb.*``
  ``*.conv.weight`` (1, O, I, k, k)         ``*.weight`` (O, I, k, k)
  ``*.conv.modulation.weight`` / ``.bias``  ``*.affine.weight`` / ``.bias``
  ``*.noise.weight`` (1,)                   ``*.noise_strength`` ()
  ``*.activate.bias`` (O,)                  ``*.bias`` (O,)
  ``to_rgb*.bias`` (1, 3, 1, 1)             ``*.torgb.bias`` (3,)
  ``noises.noise_{k}`` (1, 1, r, r)         the k-th conv's ``noise_const`` (r, r)
  ========================================  ==========================================

  Both codebases store the same parametrisation, so tensors are copied, only reshaped:
  rosinality's ``EqualLinear`` stores ``randn / lr_mul`` and applies ``lr_mul / sqrt(fan_in)``
  at run time, as NVIDIA's ``FullyConnectedLayer``; its ``ModulatedConv2d`` multiplies the
  weight by ``1 / sqrt(fan_in)`` before demodulation (which cancels it; for toRGB, without
  demodulation, NVIDIA applies the same factor to the styles). For the upsampling convs both
  run ``conv_transpose2d`` with the stored weight unflipped and then the [1,3,3,1] blur with
  gain 4 padded (1, 1); both flipped the original TensorFlow kernels when converting, so no
  flip is needed between them. ``*.kernel`` FIR buffers are checked and dropped.

- **NVIDIA StyleGAN2-ADA** pickles (``network-snapshot-*.pkl``). They hold objects of
  ``torch_utils.persistence`` classes whose reconstruction executes Python source stored in the
  file. :func:`read_ada_pickle` never imports or runs any of it: a restricted unpickler
  rebuilds only tensors, storages, ``OrderedDict``/``set`` and numeric numpy scalars, and
  every other global becomes an inert stand-in that records its arguments and state. The
  ``G_ema`` module tree is then walked through the stand-ins' ``_parameters``, ``_buffers``
  and ``_modules``; parameter names are ours already.
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
from pathlib import Path
from typing import Any, BinaryIO, Mapping

import torch

from .._checks import InputError, error_summary
from .stylegan2 import StyleGAN2Generator, build_stylegan2, fir_kernel


# ---------------------------------------------------------------------------------------------
# Shared
# ---------------------------------------------------------------------------------------------
def _channels_to_base_max(channels: dict[int, int]) -> tuple[int, int]:
    """``channel_base`` and ``channel_max`` with ``min(base // r, max) == channels[r]`` for every r."""
    top = max(channels)
    base, cmax = channels[top] * top, max(channels.values())
    if any(min(base // r, cmax) != c for r, c in channels.items()):
        raise InputError(f"channels per resolution {channels} do not follow min(channel_base // r, channel_max)")
    return base, cmax


def _check_fir(name: str, t: torch.Tensor, gain: float) -> None:
    k = fir_kernel() * gain
    if t.shape != k.shape or not torch.allclose(t.float(), k, atol=1e-6):
        raise InputError(f"{name}: expected the [1,3,3,1] FIR kernel (times {gain}), got {t.flatten()[:6].tolist()}")


def _finish(state: dict[str, torch.Tensor], config: dict, w_avg_samples: int) -> tuple[dict, dict, dict]:
    """Load ``state`` into a model built from ``config`` (strict: checks every shape), estimate
    ``w_avg`` when absent; returns (state dict, config, notes)."""
    net = build_stylegan2(config)
    notes: dict[str, Any] = {}
    missing = "mapping.w_avg" not in state
    try:
        res = net.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise InputError(f"checkpoint does not fit the inferred config {config}: {str(e)[:400]}") from None
    left = [k for k in res.missing_keys if k != "mapping.w_avg"]
    if left or res.unexpected_keys:
        raise InputError(f"checkpoint does not fit the inferred config: missing {left[:8]}, "
                         f"unexpected {res.unexpected_keys[:8]}")
    if missing:
        net.estimate_w_avg(w_avg_samples, torch.Generator().manual_seed(0))
        notes["w_avg"] = f"not in the checkpoint: mean of {w_avg_samples} mapped z (seed 0)"
    return {k: v.detach().contiguous() for k, v in net.state_dict().items()}, config, notes


# ---------------------------------------------------------------------------------------------
# rosinality stylegan2-pytorch
# ---------------------------------------------------------------------------------------------
def _ros_layer(src: Mapping[str, torch.Tensor], s: str, d: str, out: dict, used: set) -> None:
    """One StyledConv (``s``) -> SynthesisLayer (``d``), or one ToRGB."""
    def take(key: str) -> torch.Tensor:
        used.add(key)
        return src[key]

    w = take(f"{s}.conv.weight")
    if w.ndim != 5 or w.shape[0] != 1:
        raise InputError(f"{s}.conv.weight: expected (1, O, I, k, k), got {tuple(w.shape)}")
    out[f"{d}.weight"] = w[0]
    out[f"{d}.affine.weight"] = take(f"{s}.conv.modulation.weight")
    out[f"{d}.affine.bias"] = take(f"{s}.conv.modulation.bias")
    if f"{s}.activate.bias" in src:  # StyledConv
        out[f"{d}.bias"] = take(f"{s}.activate.bias")
        out[f"{d}.noise_strength"] = take(f"{s}.noise.weight").reshape(())
    else:  # ToRGB
        out[f"{d}.bias"] = take(f"{s}.bias").reshape(-1)
    for key in list(src):
        if key.startswith(f"{s}.") and key.endswith(".kernel"):
            used.add(key)
            _check_fir(key, src[key], 4.0)


class _RosinalityKeys(dict):
    """The source state dict; a missing key is an :class:`InputError` naming it, not a ``KeyError``."""

    def __missing__(self, key: str) -> Any:
        raise InputError(f"the rosinality stylegan2-pytorch state dict lacks {key!r}")


def rosinality_to_stylegan2(state: Mapping[str, Any], lr_multiplier: float = 0.01,
                            w_avg_samples: int = 10000) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """Map a rosinality ``stylegan2-pytorch`` generator state dict to ours (table in the module doc).

    Args:
        state: the ``g_ema`` state dict, or a checkpoint dict holding ``g_ema`` (and optionally
            ``latent_avg``).
        lr_multiplier: the mapping's ``lr_mlp`` (not stored in the weights; 0.01 by default).
        w_avg_samples: when there is no ``latent_avg``, ``w_avg`` is the mean of this many mapped z.

    Returns:
        (state dict in our layout, config, notes).

    Raises:
        InputError: missing, unexpected or mis-shaped keys.
    """
    if not isinstance(state, Mapping):
        raise InputError(f"expected a rosinality stylegan2-pytorch checkpoint (a dict), got {type(state).__name__}")
    latent_avg = state.get("latent_avg")
    src = _RosinalityKeys(state["g_ema"] if isinstance(state.get("g_ema"), Mapping) else state)
    if odd := [k for k, v in src.items() if not isinstance(v, torch.Tensor)]:
        raise InputError(f"expected a rosinality stylegan2-pytorch state dict of tensors, got {odd[:3]} that are not")
    if "input.input" not in src or "style.1.weight" not in src:
        raise InputError("expected a rosinality stylegan2-pytorch generator (keys input.input, style.1.weight, ...), "
                         f"got keys {sorted(src)[:8]}")
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    n_mlp = 0
    while f"style.{n_mlp + 1}.weight" in src:
        out[f"mapping.fc{n_mlp}.weight"] = src[f"style.{n_mlp + 1}.weight"]
        out[f"mapping.fc{n_mlp}.bias"] = src[f"style.{n_mlp + 1}.bias"]
        used |= {f"style.{n_mlp + 1}.weight", f"style.{n_mlp + 1}.bias"}
        n_mlp += 1
    n_up = 0
    while f"to_rgbs.{n_up}.conv.weight" in src:
        n_up += 1
    resolution = 4 * 2 ** n_up
    const = src["input.input"]
    used.add("input.input")
    out["synthesis.b4.const"] = const[0]
    channels = {4: const.shape[1]}
    _ros_layer(src, "conv1", "synthesis.b4.conv1", out, used)
    _ros_layer(src, "to_rgb1", "synthesis.b4.torgb", out, used)
    noise_targets = ["synthesis.b4.conv1"]
    for j in range(n_up):
        r = 8 * 2 ** j
        _ros_layer(src, f"convs.{2 * j}", f"synthesis.b{r}.conv0", out, used)
        _ros_layer(src, f"convs.{2 * j + 1}", f"synthesis.b{r}.conv1", out, used)
        _ros_layer(src, f"to_rgbs.{j}", f"synthesis.b{r}.torgb", out, used)
        channels[r] = out[f"synthesis.b{r}.conv0.weight"].shape[0]
        noise_targets += [f"synthesis.b{r}.conv0", f"synthesis.b{r}.conv1"]
    for k, target in enumerate(noise_targets):
        key = f"noises.noise_{k}"
        if key in src:
            used.add(key)
            out[f"{target}.noise_const"] = src[key].reshape(src[key].shape[-2:])
    left = sorted(set(src) - used)
    if left:
        raise InputError(f"unexpected keys in the rosinality state dict: {left[:8]}")
    if latent_avg is not None:
        out["mapping.w_avg"] = torch.as_tensor(latent_avg).reshape(-1)
    base, cmax = _channels_to_base_max(channels)
    w_dim = out["mapping.fc0.weight"].shape[0]
    config = {"arch": "stylegan2", "z_dim": int(out["mapping.fc0.weight"].shape[1]), "w_dim": int(w_dim),
              "resolution": resolution, "img_channels": int(out["synthesis.b4.torgb.weight"].shape[0]),
              "channel_base": base, "channel_max": cmax, "n_mapping_layers": n_mlp,
              "lr_multiplier": lr_multiplier, "conv_clamp": None}
    return _finish(out, config, w_avg_samples)


# ---------------------------------------------------------------------------------------------
# NVIDIA StyleGAN2-ADA pickles, restricted
# ---------------------------------------------------------------------------------------------
class Inert(dict):
    """Stand-in for any global outside the allowlist: records what pickle gives it, runs nothing."""

    _stub_of = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: D107 - never calls dict.__init__
        self._args, self._kwargs, self._state, self._list = args, kwargs, None, []

    def __setstate__(self, state: Any) -> None:
        self._state = state

    def append(self, item: Any) -> None:
        self._list.append(item)

    def extend(self, items: Any) -> None:
        self._list.extend(items)

    def __repr__(self) -> str:
        return f"<inert {self._stub_of}>"


class PersistentObject:
    """What ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` stands for: the class
    name and the object's ``__dict__`` state; the module source in ``meta`` is ignored."""

    def __init__(self, class_name: str, state: dict) -> None:
        self.class_name, self.state = class_name, state

    def __repr__(self) -> str:
        return f"<persistent {self.class_name}>"


def _fail(msg: str) -> None:
    raise pickle.UnpicklingError(msg)


def _reconstruct_persistent(meta: Any) -> PersistentObject:
    if not isinstance(meta, dict) or not isinstance(meta.get("state"), dict):
        _fail("persistent object without a state dict")
    return PersistentObject(str(meta.get("class_name", "?")), meta["state"])


def _load_from_bytes(data: Any) -> Any:
    if not isinstance(data, (bytes, bytearray)):
        _fail("storage bytes expected")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *rest: Any) -> torch.Tensor:
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        _fail(f"tensor from a non-storage {type(storage).__name__}")
    if not (isinstance(offset, int) and all(isinstance(v, int) for v in (*size, *stride))):
        _fail("tensor with non-integer geometry")
    return torch._utils._rebuild_tensor_v2(storage, offset, tuple(size), tuple(stride), False,
                                           collections.OrderedDict())


def _rebuild_parameter(data: Any, *rest: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        _fail("parameter without a tensor")
    return data


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding != "latin1":
        _fail("only _codecs.encode(str, 'latin1') is allowed")
    return text.encode("latin1")


def _np_dtype(name: Any, *rest: Any) -> Any:
    import numpy as np

    dt = np.dtype(name) if isinstance(name, str) else None
    if dt is None or dt.kind not in "biufc":
        _fail(f"numpy dtype {name!r} is not numeric")
    return dt


def _np_scalar(dtype: Any, data: Any = b"") -> Any:
    import numpy as np

    if not isinstance(dtype, np.dtype) or dtype.kind not in "biufc" or not isinstance(data, bytes):
        _fail("only numeric numpy scalars are allowed")
    return np.frombuffer(data, dtype=dtype)[0].item()


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch", "Size"): torch.Size,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("_codecs", "encode"): _codecs_encode,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent,
    ("numpy", "dtype"): _np_dtype,
    ("numpy.core.multiarray", "scalar"): _np_scalar,
    ("numpy._core.multiarray", "scalar"): _np_scalar,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`_ALLOWED` globals (reimplemented with argument checks);
    every other global is an :class:`Inert` subclass named after it. Nothing from the file is
    imported or executed; persistent ids are refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        return type(name, (Inert,), {"_stub_of": f"{module}.{name}", "__module__": "inert." + module})

    def persistent_load(self, pid: Any) -> Any:
        _fail("persistent ids are not allowed")


def read_ada_pickle(file: str | os.PathLike | BinaryIO) -> Any:
    """Unpickle a StyleGAN2-ADA ``.pkl`` with :class:`RestrictedUnpickler` (no code runs).

    Returns:
        The top-level object (for snapshots a dict with ``G``, ``D``, ``G_ema``, ...), with
        :class:`PersistentObject` for persistence-wrapped modules and :class:`Inert` elsewhere.
    """
    if isinstance(file, (str, os.PathLike)):
        with open(file, "rb") as f:
            return RestrictedUnpickler(f).load()
    return RestrictedUnpickler(file).load()


def module_tensors(obj: PersistentObject, prefix: str = "") -> dict[str, torch.Tensor]:
    """Parameters and buffers of a pickled module tree, by their dotted names (as ``state_dict``)."""
    state = obj.state if isinstance(obj, PersistentObject) else getattr(obj, "_state", None)
    if not isinstance(state, dict):
        raise InputError(f"{prefix or 'module'}: expected a pickled torch module, got {obj!r}")
    out: dict[str, torch.Tensor] = {}
    for group in ("_parameters", "_buffers"):
        for name, t in (state.get(group) or {}).items():
            if t is not None:
                if not isinstance(t, torch.Tensor):
                    raise InputError(f"{prefix}{name}: expected a tensor, got {t!r}")
                out[prefix + name] = t
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            out.update(module_tensors(child, f"{prefix}{name}."))
    return out


def ada_to_stylegan2(snapshot: Any, key: str = "G_ema",
                     w_avg_samples: int = 10000) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """Our state dict, config and notes from an unpickled ADA snapshot's ``key`` generator.

    Raises:
        InputError: no such generator, a conditional (``c_dim > 0``) or non-skip generator, or
            tensors that do not fit.
    """
    g = snapshot.get(key) if isinstance(snapshot, dict) else None
    if not isinstance(g, PersistentObject):
        raise InputError(f"expected a StyleGAN2-ADA snapshot with {key!r}, got {type(snapshot).__name__} "
                         f"with keys {sorted(snapshot)[:8] if isinstance(snapshot, dict) else '-'}")
    st = g.state
    kwargs = st.get("_init_kwargs") or {}
    syn_kw, map_kw = dict(kwargs.get("synthesis_kwargs") or {}), dict(kwargs.get("mapping_kwargs") or {})
    if g.class_name != "Generator" or int(st.get("c_dim", 0)) != 0:
        raise InputError(f"{key}: expected an unconditional StyleGAN2 Generator, got {g.class_name} "
                         f"with c_dim={st.get('c_dim')}")
    if syn_kw.get("architecture", "skip") != "skip":
        raise InputError(f"{key}: only the 'skip' synthesis architecture is supported, got {syn_kw['architecture']!r}")
    tensors = module_tensors(g)
    out = {}
    for name, t in tensors.items():
        if name.endswith("resample_filter"):
            _check_fir(name, t, 1.0)
        else:
            out[name] = t.float()
    resolution = int(st["img_resolution"])
    channels = {4: out["synthesis.b4.const"].shape[0]}
    r = 8
    while f"synthesis.b{r}.conv0.weight" in out:
        channels[r] = out[f"synthesis.b{r}.conv0.weight"].shape[0]
        r *= 2
    base, cmax = _channels_to_base_max(channels)
    n_map = sum(1 for k in out if k.startswith("mapping.fc") and k.endswith(".weight"))
    config = {"arch": "stylegan2", "z_dim": int(st["z_dim"]), "w_dim": int(st["w_dim"]), "resolution": resolution,
              "img_channels": int(st["img_channels"]), "channel_base": base, "channel_max": cmax,
              "n_mapping_layers": n_map, "lr_multiplier": float(map_kw.get("lr_multiplier", 0.01)),
              "conv_clamp": None if syn_kw.get("conv_clamp") is None else float(syn_kw["conv_clamp"])}
    return _finish(out, config, w_avg_samples)


# ---------------------------------------------------------------------------------------------
# One entry point
# ---------------------------------------------------------------------------------------------
def convert_stylegan2(source: str | os.PathLike, dest: str | os.PathLike, name: str | None = None,
                      fmt: str = "auto", w_avg_samples: int = 10000) -> Path:
    """Convert a StyleGAN2 checkpoint to ``DEST`` (``.safetensors``) plus its ``.json`` sidecar.

    Args:
        source: an ADA ``.pkl`` (restricted unpickling) or a rosinality ``.pt`` checkpoint
            (``torch.load(weights_only=True)``, with ``argparse.Namespace`` allowed for ``args``).
        dest: the output ``.safetensors`` path.
        name: the weight name recorded in the sidecar (default: the file stem).
        fmt: ``"ada"``, ``"rosinality"`` or ``"auto"`` (by suffix: ``.pkl`` is ADA).
        w_avg_samples: z samples for ``w_avg`` when the checkpoint has none.

    Returns:
        The written safetensors path. Its sidecar has ``config`` (for :func:`load_stylegan2`),
        the source's sha256 and notes.
    """
    import argparse

    from safetensors.torch import save_file

    from ..io import atomic_write, atomic_write_bytes, check_output_file
    from ..weights import sha256_file

    src, out = Path(source), Path(dest)
    if not src.is_file():
        raise InputError(f"{src}: no such file")
    if out.suffix != ".safetensors":
        raise InputError(f"expected a .safetensors destination, got {out}")
    for path in (out, out.with_suffix(".json")):  # before the conversion
        check_output_file(path, [src])
    kind = fmt if fmt != "auto" else ("ada" if src.suffix == ".pkl" else "rosinality")
    if kind == "ada":
        try:
            state, config, notes = ada_to_stylegan2(read_ada_pickle(src), w_avg_samples=w_avg_samples)
        except InputError:
            raise
        except Exception as e:  # truncated or crafted pickles fail in many ways; none of them runs code
            raise InputError(f"{src}: not a StyleGAN2-ADA pickle ({type(e).__name__}: {str(e)[:120]})") from None
    elif kind == "rosinality":
        try:
            with torch.serialization.safe_globals([argparse.Namespace]):
                ckpt = torch.load(src, map_location="cpu", weights_only=True)
        except Exception as e:
            raise InputError(f"{src}: not loadable with weights_only=True ({error_summary(e)})") from None
        try:
            state, config, notes = rosinality_to_stylegan2(ckpt, w_avg_samples=w_avg_samples)
        except InputError as e:
            raise InputError(f"{src}: {e}") from None
        except (RuntimeError, IndexError, ValueError, TypeError, AttributeError) as e:  # mis-shaped tensors
            raise InputError(f"{src}: not a rosinality stylegan2-pytorch checkpoint ({error_summary(e)})") from None
    else:
        raise InputError(f"expected fmt in ('auto', 'ada', 'rosinality'), got {fmt!r}")
    atomic_write(out, lambda tmp: save_file(state, tmp, metadata={"genrestore_weight": name or out.stem}))
    meta = {"name": name or out.stem, "file": out.name, "format": "safetensors", "config": config,
            "source_path": str(src), "source_sha256": sha256_file(src), "source_format": kind,
            "sha256": sha256_file(out), "parameters": int(sum(t.numel() for t in state.values())), **notes}
    atomic_write_bytes(out.with_suffix(".json"), (json.dumps(meta, indent=1) + "\n").encode())
    return out


__all__ = ["RestrictedUnpickler", "Inert", "PersistentObject", "read_ada_pickle", "module_tensors",
           "ada_to_stylegan2", "rosinality_to_stylegan2", "convert_stylegan2", "StyleGAN2Generator"]
