"""Trained networks on disk: ``NAME.safetensors`` (the state dict) + ``NAME.json`` (its config).

:class:`SavedModel` gives a network with a JSON-able ``config`` and a ``from_config`` classmethod
``save(path, **meta)`` and ``load(path)``. The sidecar is ``{"config": ..., **meta}`` (recipe,
wall time, quality numbers); shipped weights add their registry entry (license, sha256) to it.
Nothing is unpickled: tensors come from safetensors, the rest from JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch

from .._checks import InputError

M = TypeVar("M", bound="SavedModel")

# what a network's constructor raises for a config it cannot build (a width that GroupNorm or the
# attention heads do not divide, a negative size, lists of different lengths, an infinite size, ...)
BUILD_ERRORS = (TypeError, ValueError, AssertionError, ArithmeticError, RuntimeError, IndexError, KeyError)


@contextmanager
def config_errors(what: str) -> Iterator[None]:
    """Turn a constructor's error on a bad config into one :class:`InputError` line that begins
    with ``what`` (e.g. ``"FILE.json: bad rdn config {...}"``)."""
    try:
        yield
    except InputError:
        raise
    except BUILD_ERRORS as e:
        raise InputError(f"{what}: {build_error_summary(e)}") from None


def build_error_summary(e: BaseException, limit: int = 300) -> str:
    """``"TypeName: message"`` of a constructor's error, its whitespace folded onto one line and cut
    to ``limit`` characters (``"TypeName"`` alone for an error without a message)."""
    detail = " ".join(str(e).split())[:limit]
    return f"{type(e).__name__}: {detail}" if detail else type(e).__name__


def in_module_dtype(module: object, x: torch.Tensor) -> torch.Tensor:
    """``x`` in the floating dtype of ``module``'s weights (e.g. float64 images for a float32 network);
    ``x`` itself for a module without floating weights or a plain function."""
    weight = next(module.parameters(), None) if isinstance(module, torch.nn.Module) else None
    return x.to(weight.dtype) if weight is not None and weight.is_floating_point() else x


def state_dict_mismatch(e: RuntimeError, limit: int = 300) -> str:
    """One line from ``load_state_dict``'s error: its first line names only the class, and the
    missing, unexpected or mis-shaped keys follow on the next lines."""
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON beside ``path`` (``NAME.json`` for ``NAME.safetensors``), checked to have a ``config``."""
    path = Path(path)
    sidecar = path.with_suffix(".json")
    if path.suffix != ".safetensors" or not path.is_file():
        raise InputError(f"{path}: expected an existing .safetensors file")
    if not sidecar.is_file():
        raise InputError(f"{path}: no architecture config (expected {sidecar.name} beside it)")
    try:
        data = json.loads(sidecar.read_text())
    except (ValueError, OSError) as e:
        raise InputError(f"{sidecar}: not a model sidecar with a 'config' entry ({type(e).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        got = (f"a JSON {type(data).__name__}" if not isinstance(data, dict) else "no 'config'" if "config" not in data
               else f"a 'config' of type {type(data['config']).__name__}")
        raise InputError(f"{sidecar}: not a model sidecar with a 'config' object (got {got})")
    return data


class SavedModel:
    """Mixin for ``nn.Module`` classes whose ``self.config`` is ``{"arch": cls.arch, **init_kwargs}``."""

    arch: str
    config: dict[str, Any]

    @classmethod
    def from_config(cls: type[M], config: dict[str, Any]) -> M:
        """An untrained network from a stored config (its ``arch`` must be this class's)."""
        config = dict(config)
        arch = config.pop("arch", None)
        if arch != cls.arch:
            raise InputError(f"expected a config with arch {cls.arch!r}, got {arch!r}")
        with config_errors(f"bad {cls.arch} config {config}"):
            return cls(**config)

    def save(self, path: str | os.PathLike, half: bool = False, **meta: Any) -> None:
        """Write ``path`` (``.safetensors``) and ``path.json`` with ``{"config": ..., **meta}``, atomically.

        Args:
            half: store floating-point tensors as float16 (shipped weights); they load back into
                float32 modules.
        """
        from safetensors.torch import save_file

        from ..io import atomic_write, atomic_write_bytes

        path = Path(path)
        if path.suffix != ".safetensors":
            raise InputError(f"{path}: expected a .safetensors path")
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}  # type: ignore[attr-defined]
        if half:
            state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        atomic_write(path, lambda tmp: save_file(state, tmp))  # a unique temporary file, removed on failure
        atomic_write_bytes(path.with_suffix(".json"), (json.dumps({"config": self.config, **meta}, indent=2) + "\n")
                           .encode())

    @classmethod
    def load(cls: type[M], path: str | os.PathLike, device: str | torch.device = "cpu") -> M:
        """A saved network in ``eval()`` mode from ``path`` (``.safetensors`` with its ``.json``).

        Raises:
            InputError: a missing file or sidecar, a config of another arch, or weights that do not
                fit the config.
        """
        from ..io import load_safetensors

        try:
            net = cls.from_config(read_sidecar(path)["config"])
        except InputError as e:  # name the file whose config is of another arch or bad
            raise InputError(str(e) if str(e).startswith(f"{path}") else f"{path}: {e}") from None
        state = load_safetensors(path)
        try:
            net.load_state_dict(state, strict=True)  # type: ignore[attr-defined]
        except RuntimeError as e:
            raise InputError(f"{path}: weights do not fit {net.config}: {state_dict_mismatch(e)}") from None
        return net.to(device).eval()  # type: ignore[attr-defined]
