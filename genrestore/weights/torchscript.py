"""Tensors of a TorchScript archive (``torch.jit.save``), read as data: no code from the file runs.

A TorchScript ``.pt`` is a zip of ``*/data.pkl`` (the module tree, pickled) and ``*/data/<key>``
(raw little-endian storages). :func:`read_torchscript_tensors` unpickles ``data.pkl`` with an
unpickler that resolves only plain records for ``__torch__.*`` module types, tensor rebuilding,
storages and lists, so converters (e.g. :func:`genrestore.models.inception.convert_fid_helper_inception`)
get the weights of a published TorchScript model without ``torch.jit.load``.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch

from .._checks import InputError

_STORAGE_DTYPES = {"FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
                   "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
                   "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
                   "BoolStorage": torch.bool}


class _ScriptRecord:
    """A TorchScript module of the archive as plain data: its attributes (tensors, ints, sub-records)."""

    _type = ""

    def __setstate__(self, state) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"unexpected state of {self._type}: {type(state).__name__}")
        self.__dict__.update(state)


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    return torch.as_strided(storage, tuple(size), tuple(stride), offset).clone()


class _TorchScriptDataUnpickler(pickle.Unpickler):
    """Reads a TorchScript archive's ``data.pkl`` without running code: the only globals resolved are
    plain records for ``__torch__.*`` module types, tensor rebuilding, storages and lists."""

    def __init__(self, file, storages) -> None:
        super().__init__(file)
        self._storages = storages
        self._types: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        if module.startswith("__torch__.") or module == "__torch__":
            key = f"{module}.{name}"
            if key not in self._types:
                self._types[key] = type(name, (_ScriptRecord,), {"_type": key})
            return self._types[key]
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch.jit._pickle" and name in ("build_intlist", "build_doublelist", "build_boollist"):
            return list
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"refusing {module}.{name} (only TorchScript module records and tensors are read)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], torch.dtype)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        _, dtype, key, _location, numel = pid
        return self._storages(str(key), dtype, int(numel))


def read_torchscript_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """Tensors and scalar attributes of a TorchScript archive's module tree, by dotted name, read from
    its ``data.pkl`` and ``data/*`` records without executing its code (see :class:`_TorchScriptDataUnpickler`).

    Returns ``(tensors, attributes)``; ``attributes`` holds the ints, floats, bools and int lists
    (``stride``, ``padding``, ...), and ``"__type__"`` suffixed names the TorchScript class of each module.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not a TorchScript archive (a zip file)")
    with zipfile.ZipFile(path) as z:
        pkl = [n for n in z.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise InputError(f"{path}: not a TorchScript archive (no top-level */data.pkl)")
        prefix = pkl[0][: -len("data.pkl")]
        order = z.read(prefix + "byteorder").decode().strip() if prefix + "byteorder" in z.namelist() else "little"
        if order != "little":
            raise InputError(f"{path}: {order}-endian tensors are not supported")

        def storage(key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
            raw = bytearray(z.read(f"{prefix}data/{key}"))
            t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            if t.numel() != numel:
                raise InputError(f"{path}: storage {key} has {t.numel()} elements, not {numel}")
            return t

        try:
            with z.open(pkl[0]) as f:
                root = _TorchScriptDataUnpickler(f, storage).load()
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, RuntimeError) as e:  # as_strided
            raise InputError(f"{path}: cannot read its module data ({type(e).__name__}: {str(e)[:200]})") from None
    tensors: dict[str, torch.Tensor] = {}
    attrs: dict[str, object] = {}
    open_records: set[int] = set()  # the records on the path from the root: a module tree has no cycles

    def walk(obj, prefix: str) -> None:
        if id(obj) in open_records:
            raise InputError(f"{path}: module record {prefix.rstrip('.')!r} contains itself")
        open_records.add(id(obj))
        attrs[prefix + "__type__"] = obj._type
        for k, v in vars(obj).items():
            if not isinstance(k, str):
                raise InputError(f"{path}: module record {prefix.rstrip('.') or '(root)'!r} has attribute name {k!r}")
            if isinstance(v, torch.Tensor):
                tensors[prefix + k] = v
            elif isinstance(v, _ScriptRecord):
                walk(v, f"{prefix}{k}.")
            elif isinstance(v, (bool, int, float, list)):
                attrs[prefix + k] = v
        open_records.discard(id(obj))

    if not isinstance(root, _ScriptRecord):
        raise InputError(f"{path}: its data.pkl holds a {type(root).__name__}, not a module")
    walk(root, "")
    return tensors, attrs


__all__ = ["read_torchscript_tensors"]
