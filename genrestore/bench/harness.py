"""The benchmark harness: suites as data, one result row per image x task x level x method.

A suite is a TOML file (see ``genrestore/bench/suites/``)::

    name = "inpainting"
    images = "../shared/data/photos/val"   # folder; relative paths are from the suite file, then the cwd
    count = 6                               # ground-truth crops (round-robin over the images)
    crop = 128                              # px
    seed = 0
    tasks = ["inpaint"]                     # benchmark tasks or compositions (genrestore.degrade)
    levels = ["S", "M", "L"]
    methods = ["degraded", "telea", "navier-stokes"]
    metrics = ["psnr", "ssim", "lpips"]

Methods: ``degraded`` (the input, resized bicubically to the ground truth's size), ``telea`` and
``navier-stokes`` (OpenCV inpainting, inpainting tasks only), ``nlmeans`` (OpenCV non-local
means), ``jpeg-deblock`` (re-application of JPEG at the task's quality, deartifact only),
``idm:MODEL`` (also a one-step regression UNet from ``train idm --regression``), ``diffgar:MODEL`` (guided with the task as its class), ``inpaint:MODEL``
(a GAN, diffusion or diffusion-GAN inpainter from ``genrestore train inpaint``; its default number
of network calls, recorded as ``nfe``), ``stylegan-inversion:GENERATOR`` and ``sr:MODEL`` (a
super-resolution network by weight name or file, e.g. ``sr:realesrgan-x4plus`` or a model from
``genrestore train desra``, on the task's low-resolution output), ``sr-same-size:MODEL`` (an SR
network used as a same-size restorer, as DiffGAR's Table 1 uses Real-ESRGAN without saying how:
the model on the degraded image, then OpenCV's Lanczos back to its size, what Real-ESRGAN's
inference script does with ``--outscale 1``). Metrics: ``psnr``, ``ssim`` (RGB), ``lpips`` (AlexNet; a row
records ``null`` and the run notes it when the backbone is absent), ``identity`` (face descriptor)
and ``niqe`` (no-reference naturalness of the output, lower is better; ``null`` for crops with
fewer than two 96 px blocks).

DeSRA's detection metrics (seed 001 §4) run its detection on each output against the MSE-SR
of the same low-resolution input (the suite's ``[detection]`` table: ``mse``, an SR model, default
``rdn-x4``; ``segmenter``, ``texture`` / ``none`` / ``segformer`` with ``segformer = DIR``; ``masks``,
a folder of hand-labelled artifact masks): ``detected`` (fraction of pixels) and ``regions``
(count) per image; ``iou`` per image (eq. 11) and the set metrics ``precision`` / ``recall`` (eqs.
12-13, regions pooled over the set) against the labelled masks; and the set metrics ``removal`` /
``addition`` (§4.3) of each method's detections against those of the suite's first ``sr:``
method (the original model). A labelled mask is a PNG named like the output it labels
(``OUT/images/NAME.png``: run once, label the outputs, run again with ``masks``); rows without
one record ``null``. Everything in a suite is checked before any work starts; the offending key
is named.

Rows go to ``OUT/results.jsonl`` (appended as they finish) and ``OUT/results.csv``; ground
truth, inputs and outputs to ``OUT/images/``. A rerun skips rows already there (resume) when they
were made with the same settings (a row's ``config``: a digest of its ground-truth crop, method
weights, generators, per-image metrics and detection settings; other rows run again) and their
image files are there unchanged (each row records their sha256; a missing or changed file runs
its row again), and
``shard=(i, n)`` runs every n-th row, so machines can split a suite. Shards may share one output
folder: every read, rewrite and append of ``results.jsonl`` holds an exclusive lock on
``OUT/.results.jsonl.lock`` (``fcntl.flock``; on systems without it, give each shard its own
folder), so a shard that starts while another appends cannot rewrite the file without the
other's newest row, and no reader sees half a line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .._checks import InputError, available_bytes

METHOD_KINDS = ("degraded", "telea", "navier-stokes", "nlmeans", "jpeg-deblock", "idm", "diffgar", "diffgar-blind", "diffgar-nonblind",
                "inpaint", "stylegan-inversion", "sr", "sr-same-size")
_LEARNED = ("idm", "diffgar", "diffgar-blind", "diffgar-nonblind", "inpaint", "stylegan-inversion", "sr",
            "sr-same-size")  # name their weights
ARTIFACT_TASKS = ("vq-replace", "ar-resample", "ddim-gauss", "ddim-scale")
ARTIFACT_LEVELS = {"XS": 0.1, "S": 0.3, "M": 0.5, "L": 0.7, "XL": 0.9}  # M = DiffGAR's settings
_INPAINTING_ONLY = ("telea", "navier-stokes", "inpaint")
_DIFFGAR_MODES = {"diffgar": "guided", "diffgar-blind": "blind", "diffgar-nonblind": "non-blind"}


def diffgar_settings(kind: str) -> tuple[str, float, int] | None:
    """``(mode, guidance scale, DDIM steps)`` of a DiffGAR method kind, ``None`` for other kinds.

    The kinds are ``diffgar`` (guided, s = 3), ``diffgar-blind`` and ``diffgar-nonblind``, each
    with DiffGAR's 30 steps; a suffix ``-sS`` (guided only) and/or ``-stepsN`` sets them, for the
    paper's ablations (Fig. 4).

    Example:
        >>> diffgar_settings("diffgar-s5-steps10"), diffgar_settings("diffgar-blind")
        (('guided', 5.0, 10), ('blind', 1.0, 30))

    Raises:
        InputError: a malformed suffix, a scale below 1 or a scale for a mode without guidance.
    """
    import re

    m = re.fullmatch(r"(diffgar(?:-blind|-nonblind)?)(?:-s([0-9]+(?:\.[0-9]+)?))?(?:-steps([0-9]+))?", kind)
    if m is None:
        if kind.startswith("diffgar"):
            raise InputError(f"unknown DiffGAR method {kind!r}: expected diffgar, diffgar-blind or diffgar-nonblind, "
                             "optionally with -sSCALE (guided) and -stepsN, e.g. diffgar-s5-steps10")
        return None
    mode = _DIFFGAR_MODES[m.group(1)]
    if m.group(2) is not None and mode != "guided":
        raise InputError(f"{kind}: only guided DiffGAR (diffgar-sSCALE) has a guidance scale")
    scale = 3.0 if mode == "guided" and m.group(2) is None else float(m.group(2) or 1.0)
    steps = 30 if m.group(3) is None else int(m.group(3))
    if scale < 1 or steps < 1:
        raise InputError(f"{kind}: the guidance scale must be >= 1 and the steps >= 1")
    return mode, scale, steps


def method_kind(method: str) -> str:
    """The kind of a method spec ``KIND[:ARG]``, with DiffGAR's settings suffixes folded into ``diffgar``
    (e.g. ``diffgar-s5:m.safetensors`` -> ``diffgar``)."""
    kind = method.partition(":")[0]
    return "diffgar" if kind not in METHOD_KINDS and diffgar_settings(kind) is not None else kind
METRICS = {"psnr": True, "ssim": True, "lpips": False, "identity": True, "niqe": False,  # per image; higher is better?
           "detected": False, "regions": False, "iou": True}
SET_METRICS = {"is": True, "fid": False, "kid": False,  # per (task, level, method) set of outputs
               "precision": True, "recall": True, "removal": True, "addition": False}
DETECTION_METRICS = ("detected", "regions", "iou", "precision", "recall", "removal", "addition")
_INCEPTION_METRICS = ("is", "fid", "kid")
_DETECTION_KEYS = {"mse", "segmenter", "segformer", "masks"}
SET_METRICS_FILE = "set_metrics.json"
SUITES_DIR = Path(__file__).with_name("suites")


@dataclass
class Suite:
    """A parsed, checked suite."""

    name: str
    images: Path
    tasks: list[str]
    levels: list[str]
    methods: list[str]
    metrics: list[str]
    count: int = 4
    crop: int = 128
    seed: int = 0
    path: Path | None = None
    extra: dict = field(default_factory=dict)
    generators: dict = field(default_factory=dict)  # artifact generators: vq, transformer, ddpm paths
    detection: dict = field(default_factory=dict)  # DeSRA detection: mse, segmenter, segformer, masks

    @property
    def baseline_sr(self) -> str | None:
        """The first ``sr:`` method: the original model that removal / addition compare with."""
        return next((m for m in self.methods if m.startswith("sr:")), None)


def _read_toml(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise InputError("suite files are TOML: Python >= 3.11, or `pip install tomli`") from None
    try:
        return tomllib.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable TOML suite ({e})") from None


def load_suite(spec: str | Path, methods: list[str] | None = None, images: str | Path | None = None,
               tasks: list[str] | None = None) -> Suite:
    """A suite by file path or by name (``genrestore/bench/suites/NAME.toml``), checked.

    Args:
        methods: replaces the suite's method list (``--methods``).
        tasks: replaces the suite's task list (``--tasks``); checked like the suite's own.
        images: replaces the suite's image folder (``--images``).
    """
    from ..degrade import COMPOSITIONS, LEVELS, PIPELINES, TASKS

    def in_list(key: str, origin: str) -> str:  # where in the suite file a bad entry stands
        return "" if origin.startswith("--") else f" in '{key}'"

    path = Path(spec)
    if not path.is_file():
        path = SUITES_DIR / f"{spec}.toml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in SUITES_DIR.glob("*.toml")))
            raise InputError(f"no suite file {spec!r} and no built-in suite of that name (built-in: {known})")
    data = _read_toml(path)
    allowed = {"name", "images", "tasks", "levels", "methods", "metrics", "count", "crop", "seed", "generators",
               "detection"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InputError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    for key, least in (("count", 1), ("crop", 1), ("seed", 0)):
        v = data.get(key, 0 if key == "seed" else least)
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise InputError(f"{path}: '{key}' must be an integer >= {least}, got {v!r}")
    for key in ("name", "images"):
        if key in data and not isinstance(data[key], str):
            raise InputError(f"{path}: '{key}' must be a string, got {data[key]!r}")
    if tasks:
        data["tasks"] = list(tasks)
    for key in ("tasks", "levels", "methods", "metrics"):
        if not isinstance(data.get(key), list) or not data[key] or not all(isinstance(v, str) for v in data[key]):
            raise InputError(f"{path}: '{key}' must be a non-empty list of strings")
    from .. import weights as ws
    from ..artifacts.synth import DEFAULTS, NEEDS

    generators = data.get("generators", {})
    if not isinstance(generators, dict):
        raise InputError(f"{path}: 'generators' must be a table of paths or weight names (vq, transformer, ddpm)")
    unknown = sorted(set(generators) - set(DEFAULTS))
    if unknown:
        raise InputError(f"{path}: unknown generator {unknown[0]!r} in 'generators'; known: {', '.join(DEFAULTS)}")
    for t in data["tasks"]:
        if t not in TASKS and t not in COMPOSITIONS and t not in PIPELINES and t not in ARTIFACT_TASKS:
            origin = "--tasks" if tasks else str(path)
            raise InputError(f"{origin}: unknown task {t!r}{in_list('tasks', origin)}; known: {', '.join([*TASKS, *COMPOSITIONS])}, "
                             f"a pipeline: {', '.join(PIPELINES)}, or an artifact: {', '.join(ARTIFACT_TASKS)}")
        for need in NEEDS.get(t, ()) if t in ARTIFACT_TASKS else ():
            where = generators.get(need) or (DEFAULTS[need] if DEFAULTS.get(need) in ws.REGISTRY else None)
            if str(where) in ws.REGISTRY:  # a shipped generator: resolved now (a missing file says how to get it)
                generators[need] = str(ws.model_file(str(where)))
                continue
            p = Path(str(where)) if where else None
            if p is not None and not p.is_absolute() and (path.parent / p).is_file():
                p = path.parent / p
            if p is None or not p.is_file():
                raise InputError(f"{path}: task {t!r} needs generators.{need} (an existing model file or a "
                                 f"weight name); got {where!r}")
            generators[need] = str(p)
    for lv in data["levels"]:
        if lv not in LEVELS:
            raise InputError(f"{path}: unknown level {lv!r} in 'levels'; known: {', '.join(LEVELS)}")
    if any(t in COMPOSITIONS or t in PIPELINES for t in data["tasks"]) and data["levels"] != ["M"]:
        raise InputError(f"{path}: compositions and pipelines have no levels (M only); use levels = [\"M\"]")
    origin = "--methods" if methods else str(path)  # where a bad method was written
    methods = methods or data["methods"]
    for m in methods:
        _, _, arg = m.partition(":")
        try:
            kind = method_kind(m)
        except InputError as e:
            raise InputError(f"{origin}: {e}") from None
        if kind not in METHOD_KINDS:
            raise InputError(f"{origin}: unknown method {m!r}{in_list('methods', origin)}; known: "
                             f"{', '.join(METHOD_KINDS)}")
        if kind not in _LEARNED and arg:
            raise InputError(f"{origin}: method {kind!r} takes no argument, got {m!r}")
        if kind in _LEARNED and not arg:
            raise InputError(f"{origin}: method {kind!r} needs its weights: '{kind}:PATH.safetensors'")
        if kind == "stylegan-inversion" and any(t in ARTIFACT_TASKS for t in data["tasks"]):
            raise InputError(f"{origin}: {m!r} inverts a known degradation; artifact tasks have none")
        if kind in _LEARNED:
            from ..weights import model_file

            found = Path(arg) if kind == "stylegan-inversion" else model_file(arg)
            if not found.is_file():
                raise InputError(f"{origin}: method {m!r}: no file {arg} (paths are relative to the working folder)")
        if kind in _INPAINTING_ONLY and any(t not in ("inpaint", "P") for t in data["tasks"]):
            raise InputError(f"{origin}: method {m!r} only restores inpainting; the suite also has "
                             f"{[t for t in data['tasks'] if t not in ('inpaint', 'P')]}")
        if kind == "jpeg-deblock" and any(t != "deartifact" for t in data["tasks"]):
            raise InputError(f"{origin}: method {m!r} needs the JPEG quality of the deartifact task; the suite also "
                             f"has {[t for t in data['tasks'] if t != 'deartifact']}")
    for name in data["metrics"]:
        if name not in METRICS and name not in SET_METRICS:
            raise InputError(f"{path}: unknown metric {name!r} in 'metrics'; known: "
                             f"{', '.join([*METRICS, *SET_METRICS])}")
    if "lpips" in data["metrics"]:
        from ..metrics.lpips import MIN_SIZE

        if int(data.get("crop", 128)) < MIN_SIZE["alex"]:
            raise InputError(f"{path}: metric 'lpips' (AlexNet) needs crops of at least {MIN_SIZE['alex']} px a "
                             f"side; the suite crops {data.get('crop')} px")
    detection = _check_detection(path, data, methods)
    if images is not None:  # --images: a folder, relative to the working folder
        if not Path(images).is_dir():
            raise InputError(f"--images: no folder {str(images)!r}")
        images = Path(images)
    else:
        if "images" not in data:
            raise InputError(f"{path}: no 'images' folder (give it in the suite, or --images)")
        images = Path(data["images"])
        for base in (path.parent, Path.cwd()):
            if (base / images).is_dir():
                images = base / images
                break
        else:
            raise InputError(f"{path}: 'images' folder {data.get('images')!r} not found")
    return Suite(data.get("name", path.stem), images, data["tasks"], data["levels"], methods, data["metrics"],
                 int(data.get("count", 4)), int(data.get("crop", 128)), int(data.get("seed", 0)), path,
                 generators=generators, detection=detection)


def _check_detection(path: Path, data: dict, methods: list[str]) -> dict:
    """The suite's ``[detection]`` table, checked, with defaults (``mse = "rdn-x4"``, ``segmenter = "texture"``)."""
    table = data.get("detection", {})
    if not isinstance(table, dict):
        raise InputError(f"{path}: 'detection' must be a table (mse, segmenter, segformer, masks)")
    unknown = sorted(set(table) - _DETECTION_KEYS)
    if unknown:
        raise InputError(f"{path}: unknown key(s) {', '.join(unknown)} in 'detection'; allowed: "
                         f"{', '.join(sorted(_DETECTION_KEYS))}")
    wanted = [n for n in data["metrics"] if n in DETECTION_METRICS]
    if not wanted:
        return {}
    from ..weights import model_file

    out = {"mse": str(table.get("mse", "rdn-x4")), "segmenter": str(table.get("segmenter", "texture"))}
    if not model_file(out["mse"]).is_file():
        raise InputError(f"{path}: detection.mse {out['mse']!r}: no such model file")
    from ..degrade import PIPELINES, get_task
    from ..models.sr import sr_scale

    scale = sr_scale(out["mse"])  # from the config: the weights load once, when detection runs
    for t in data["tasks"]:
        for lv in data["levels"]:
            task = PIPELINES.get(t) or (get_task(t, lv) if t == "upsample" else None)
            factor = getattr(task, "scale", None) or getattr(task, "factor", None)
            if factor != scale:
                raise InputError(f"{path}: detection compares outputs with the x{scale} MSE-SR "
                                 f"{out['mse']!r} of the task's input, so every task must downsample by {scale} "
                                 f"(realesrgan-x{scale}, or upsample at that factor); {t!r} at {lv} does not")
    if out["segmenter"] not in ("texture", "none", "segformer"):
        raise InputError(f"{path}: detection.segmenter must be texture, none or segformer, got {out['segmenter']!r}")
    for key in ("segformer", "masks"):
        if key in table:
            folder = Path(str(table[key]))
            folder = path.parent / folder if not folder.is_absolute() and (path.parent / folder).is_dir() else folder
            if not folder.is_dir():
                raise InputError(f"{path}: detection.{key} {table[key]!r}: no such folder")
            out[key] = str(folder)
    if out["segmenter"] == "segformer" and "segformer" not in out:
        raise InputError(f"{path}: detection.segmenter = 'segformer' needs detection.segformer = DIR (a local model)")
    if {"removal", "addition"} & set(wanted) and not any(m.startswith("sr:") for m in methods):
        raise InputError(f"{path}: removal / addition compare with the first 'sr:' method (the original "
                         "model); the suite has none")
    return out


def ground_truth(suite: Suite) -> list[tuple[str, torch.Tensor]]:
    """``count`` crops ``(1, 3, crop, crop)``: round-robin over the images, positions from the seed."""
    from .._random import generator_for
    from ..io import list_images, read_image

    paths = list_images([suite.images])
    need, available = suite.count * suite.crop ** 2 * 3 * 4, available_bytes(torch.device("cpu"))
    if need > 0.8 * available:  # the crops are held in memory: refuse a count that cannot fit, before any work
        raise InputError(f"{suite.path or suite.name}: count {suite.count} crops of {suite.crop} px need about "
                         f"{need / 2**30:.1f} GiB, more than the {available / 2**30:.1f} GiB available; "
                         "lower 'count' or 'crop'")
    out: list = [None] * suite.count  # crop i is of photo i % len(paths)
    for j, p in enumerate(paths[:suite.count]):  # each photo is read once and freed: only its crops are kept
        x = read_image(p, "rgb")
        h, w = x.shape[-2:]
        if min(h, w) < suite.crop:
            raise InputError(f"{p}: {w}x{h} px is smaller than the suite's {suite.crop} px crops")
        for i in range(j, suite.count, len(paths)):
            g = generator_for(suite.seed, f"{p.name}:{i}")
            y0 = int(torch.randint(h - suite.crop + 1, (1,), generator=g))
            x0 = int(torch.randint(w - suite.crop + 1, (1,), generator=g))
            out[i] = (f"{p.stem}-{i}", x[..., y0:y0 + suite.crop, x0:x0 + suite.crop].clone())
    return out


def _opencv(y: torch.Tensor, fn) -> torch.Tensor:
    import numpy as np

    a = (y[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    out = fn(np.ascontiguousarray(a))
    return torch.from_numpy(out).permute(2, 0, 1)[None].float() / 255


def load_method(method: str, cache: dict):
    """A learned method's model, loaded from disk once per run into ``cache`` (``None`` for the
    classical methods). The harness calls it before timing a row, so seconds per image exclude it."""
    if method not in cache:
        kind, _, arg = method.partition(":")
        if kind == "inpaint":
            from ..restore.inpaint import Inpainter

            cache[method] = Inpainter.from_file(arg)
        elif kind == "idm":
            from ..restore.idm import IDMRestorer

            cache[method] = IDMRestorer.from_file(arg)
        elif kind.startswith("diffgar"):
            from ..restore.diffgar import DiffGARRestorer

            cache[method] = DiffGARRestorer.from_file(arg)
        elif kind == "stylegan-inversion":
            from ..models.stylegan2 import load_stylegan2

            cache[method] = load_stylegan2(arg)
        elif kind in ("sr", "sr-same-size"):
            from ..models.sr import load_sr

            cache[method] = load_sr(arg)
        else:
            cache[method] = None
    return cache[method]


def run_method(method: str, task_name: str, task, y: torch.Tensor, params, size: tuple[int, int], seed: int,
               key: str, cache: dict) -> torch.Tensor:
    """One method's restoration of the degraded ``y`` at the ground truth's ``size``."""
    import cv2

    from .._random import generator_for
    from ..degrade import resize

    kind = method.partition(":")[0]
    up = resize(y, size, "bicubic").clamp(0, 1) if tuple(y.shape[-2:]) != size else y
    if kind == "degraded":
        return up
    if kind in ("telea", "navier-stokes"):
        from ..restore.stylegan_inversion import _task_params_mask

        mask = _task_params_mask(params)
        hole = ((1 - mask[0, 0]) * 255).to(torch.uint8).numpy()
        flag = cv2.INPAINT_TELEA if kind == "telea" else cv2.INPAINT_NS
        return _opencv(up, lambda a: cv2.inpaint(a, hole, 3, flag))
    if kind == "nlmeans":
        return _opencv(up, lambda a: cv2.fastNlMeansDenoisingColored(a, None, 10, 10, 7, 21))
    if kind == "jpeg-deblock":
        from ..restore.baselines import jpeg_reapply_deblock

        return jpeg_reapply_deblock(up, task.quality)
    if kind == "inpaint":
        from ..restore.stylegan_inversion import _task_params_mask

        return load_method(method, cache).inpaint(up, _task_params_mask(params), [generator_for(seed, key)])
    if kind == "idm":
        return load_method(method, cache).restore(up, 10, [generator_for(seed, key)])
    if kind.startswith("diffgar"):
        r = load_method(method, cache)
        artifact = task_name if task_name in r.class_names else None
        mode, scale, steps = diffgar_settings(kind)
        if artifact is None:
            if mode == "non-blind":
                raise InputError(f"{method}: the model's classes {list(r.class_names)} do not include {task_name!r}")
            if mode == "guided":
                warnings.warn(f"{method}: {task_name!r} is not among the model's classes {list(r.class_names)}: "
                              "guided DiffGAR runs blind on it", stacklevel=2)
            mode = "blind"
        return r.restore(up, mode, None if mode == "blind" else artifact, scale, steps, [generator_for(seed, key)])
    if kind == "sr":
        return _super_resolve(load_method(method, cache), y, size, method)
    if kind == "sr-same-size":
        return sr_same_size(load_method(method, cache), up)
    if kind == "stylegan-inversion":
        from ..restore.stylegan_inversion import robust_invert

        G = load_method(method, cache)
        if G.resolution != size[0]:
            raise InputError(f"{method}: the generator makes {G.resolution} px images, the suite crops {size[0]} px")
        return robust_invert(G, y, task, params, generator=generator_for(seed, key), progress=False).final.clamp(0, 1)
    raise InputError(f"unknown method {method!r}")


def _super_resolve(net, y: torch.Tensor, size: tuple[int, int], what: str) -> torch.Tensor:
    """``net`` on the low-resolution ``y``, which must be ``size`` divided by the network's scale."""
    from ..models.sr import upscale

    _check_sr_size(int(net.scale), tuple(y.shape[-2:]), size, what)
    return upscale(net, y)


def _check_sr_size(scale: int, low: tuple[int, int], size: tuple[int, int], what: str) -> None:
    """Refuse a x``scale`` model whose output for the task's ``low`` ``(H, W)`` input is not ``size``."""
    if (low[0] * scale, low[1] * scale) != tuple(size):
        raise InputError(f"{what}: a x{scale} model turns the task's {low[1]}x{low[0]} px input into "
                         f"{low[1] * scale}x{low[0] * scale}, not the ground truth's {size[1]}x{size[0]}")


def sr_same_size(net, x: torch.Tensor) -> torch.Tensor:
    """An SR network as a restorer of ``(1, 3, H, W)`` images in [0, 1]: its output resized back to
    ``H x W`` with OpenCV's Lanczos (``INTER_LANCZOS4``) and clamped, as Real-ESRGAN's
    ``inference_realesrgan.py --outscale 1`` does (on float32 here, not 8 bits)."""
    from ..models.sr import resize_output, upscale

    return resize_output(upscale(net, x), tuple(x.shape[-2:]))


def _read_mask(path: Path) -> torch.Tensor:
    """A mask PNG as ``(H, W)`` bool (white = artifact)."""
    from ..io import read_image

    return read_image(path, "gray")[0, 0] > 0.5


class _Detector:
    """DeSRA detection of outputs against the MSE-SR of their input (the last input's MSE-SR is kept:
    the methods of one input run one after another)."""

    def __init__(self, config: dict):
        from ..detect import make_segmenter
        from ..models.sr import load_sr

        self.mse = load_sr(config["mse"])
        self.name = config["mse"]
        self.segmenter = make_segmenter(config["segmenter"], config.get("segformer"))
        self.masks = Path(config["masks"]) if "masks" in config else None
        self._last: tuple[str, torch.Tensor] | None = None  # (input key, its MSE-SR)

    def __call__(self, pred: torch.Tensor, y: torch.Tensor, key: str):
        from ..detect import detect_artifacts

        if self._last is None or self._last[0] != key:
            self._last = key, _super_resolve(self.mse, y, tuple(pred.shape[-2:]), f"detection.mse {self.name}")
        return detect_artifacts(pred.clamp(0, 1), self._last[1], self.segmenter, scale=int(self.mse.scale))

    def truth(self, output_name: str) -> torch.Tensor | None:
        """The labelled artifact mask for an output file name, ``(H, W)`` bool, or ``None``."""
        if self.masks is None or not (self.masks / output_name).is_file():
            return None
        return _read_mask(self.masks / output_name)


def _network_calls(method: str, cache: dict, task: str = "") -> int | None:
    """Network evaluations per image of a learned method on ``task`` (after its first run), else ``None``."""
    kind = method.partition(":")[0]
    if kind == "inpaint":
        return cache[method].default_steps
    if kind == "idm":  # IDM: 10 DDPM steps; a one-step model (the regression baseline): 1
        return min(10, cache[method].model.config["schedule"]["num_train_timesteps"])
    if kind.startswith("diffgar"):  # DDIM steps (30); guided: a conditional and an unconditional pass each
        mode, scale, steps = diffgar_settings(kind)
        guided = mode == "guided" and scale != 1 and task in cache[method].class_names  # else blind (run_method)
        return 2 * steps if guided else steps
    return None


def metric_functions(names: list[str]) -> tuple[dict, list[str]]:
    """Per-image metrics by name, ``{name: f(prediction, truth) -> float | None}`` on ``(1, 3, H, W)``
    images in [0, 1], and a note for each one whose weight is absent (its ``f`` returns ``None``)."""
    from .. import weights as ws
    from ..metrics import psnr, ssim

    fns, notes = {}, []
    for n in (n for n in names if n in METRICS):
        if n == "psnr":
            fns[n] = lambda a, b: float(psnr(a, b)[0])
        elif n == "ssim":
            fns[n] = lambda a, b: float(ssim(a, b)[0])
        elif n == "identity":
            from ..models.face_descriptor import WEIGHT_NAME, identity_similarity

            if ws.find(WEIGHT_NAME) is None:
                fns[n] = lambda a, b: None
                notes.append(f"identity: absent ({WEIGHT_NAME} not in the weight store)")
            else:
                fns[n] = lambda a, b: float(identity_similarity(a, b)[0])
        elif n == "niqe":  # no-reference: the output alone, against the shipped pristine model
            from ..metrics.niqe import niqe

            def niqe_or_none(a, b):
                try:
                    return float(niqe(a)[0])
                except InputError:  # fewer than 2 whole 96 px blocks (crops under 192 px)
                    return None

            fns[n] = niqe_or_none
        elif n == "lpips":
            if ws.find("alexnet-torchvision") is None:
                fns[n] = lambda a, b: None
                notes.append("lpips: absent (alexnet-torchvision not in the weight store)")
            else:
                from ..metrics.lpips import lpips

                fns[n] = lambda a, b: float(lpips(a, b, "alex")[0])
    return fns, notes


def _row_key(row: dict) -> tuple:
    return (row["image"], row["task"], row["level"], row["method"], row["seed"])


def _row_files(img: str, t: str, lv: str, m: str, seed: int, truth: str = "", inputs: str = "") -> dict:
    """The image files of a row, relative to the output folder. A method given by a path
    (``sr:runs/x/model.safetensors``) is named by its file name and a digest of the whole method,
    so that two paths never share a file (``a/b`` vs ``a_b``) and names stay short.

    ``truth`` (the ground-truth crop's digest) and ``inputs`` (one of what else makes the degraded
    input: the artifact generators) go into the names of the files that rows share, so that a run
    with another crop size, other photos or other generators never rewrites the truth or input of
    rows it keeps from an earlier run (e.g. of other methods). The output is one row's own."""
    if "/" in m or "\\" in m:
        kind, _, arg = m.partition(":")
        safe = f"{kind}_{Path(arg).name}-{hashlib.sha256(m.encode()).hexdigest()[:8]}"
    else:
        safe = m.replace(":", "_")
    stem = f"images/{img}_s{seed}"  # crops and degradations differ by seed: one file set each
    crop = stem + (f"_{truth[:8]}" if truth else "")  # and the shared files one per crop
    made = f"_{inputs[:8]}" if inputs else ""
    return {"truth": f"{crop}_truth.png", "input": f"{crop}_{t}_{lv}{made}_input.png",
            "output": f"{stem}_{t}_{lv}_{safe}.png"}  # one row's own (labelled masks are named like it)


def _file_digest(path: str | Path | None, digests: dict) -> str | None:
    """sha256 of a file and of its ``.json`` config beside it (once per run), ``None`` for no file."""
    if path is None or not Path(path).is_file():
        return None
    path = Path(path)
    if path not in digests:
        from ..weights import sha256_file

        config = path.with_suffix(".json")
        digests[path] = sha256_file(path) + (sha256_file(config) if config.is_file() else "")
    return digests[path]


def _generator_digests(suite: Suite, t: str, digests: dict) -> dict[str, str | None]:
    """Digests of the artifact generators that make task ``t``'s inputs (none for other tasks)."""
    if t not in ARTIFACT_TASKS:
        return {}
    from ..artifacts.synth import NEEDS

    return {k: _file_digest(suite.generators.get(k), digests) for k in NEEDS.get(t, ())}


def _row_config(suite: Suite, truth_digest: str, t: str, m: str, output_name: str, digests: dict,
                absent: tuple[str, ...] | list[str] = ()) -> str:
    """A digest of everything besides the row's key that its values depend on: the ground-truth crop
    (images, crop size, seed), the method's weights, the artifact generators, the per-image metrics
    and the detection settings (the MSE-SR, and the labelled mask of this output), and which metric
    weights were ``absent`` (a row scored without LPIPS runs again once its weights are added). A
    resume trusts a finished row only when it matches."""
    from ..weights import model_file

    kind, _, arg = m.partition(":")
    weights = None
    if method_kind(m) in _LEARNED:
        weights = _file_digest(Path(arg) if kind == "stylegan-inversion" else model_file(arg), digests)
        if method_kind(m).startswith("diffgar"):  # a latent model's autoencoder is another file
            from ..models.checkpoint import read_sidecar
            from ..restore.diffgar import autoencoder_file

            spec = read_sidecar(model_file(arg)).get("autoencoder")
            if spec:
                weights = f"{weights}+{_file_digest(autoencoder_file(model_file(arg), spec), digests)}"
    gens = _generator_digests(suite, t, digests)
    det = dict(suite.detection)
    if det:
        det["mse"] = _file_digest(model_file(det["mse"]), digests)
        det["masks"] = _file_digest(Path(det["masks"]) / output_name, digests) if "masks" in det else None
    record = {"truth": truth_digest, "method": m, "weights": weights, "generators": gens, "detection": det,
              "metrics": sorted(n for n in suite.metrics if n in METRICS), "absent": sorted(absent)}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def run_suite(suite: Suite, out_dir: str | Path, shard: tuple[int, int] = (0, 1), progress: bool = True) -> dict:
    """Run (or resume) ``suite`` into ``out_dir``; return a summary (rows done, skipped, notes)."""
    from tqdm import tqdm

    from ..io import check_output_file, check_output_folder, json_line

    out = Path(out_dir)
    check_output_folder(out)  # the folder is made once the images and models have loaded
    for name in ("results.jsonl", "results.csv"):  # e.g. a folder in their place: refused before any row runs
        check_output_file(out / name)
    if suite.images.resolve() in (out.resolve(), (out / "images").resolve()):
        raise InputError(f"{out}: the results or the row images (OUT/images/) would be written among the suite's "
                         f"photos in {suite.images}; choose another output folder")
    results = out / "results.jsonl"
    truths = ground_truth(suite)
    fns, notes = metric_functions(suite.metrics)
    if suite.count < 2 and {"fid", "kid"} & set(suite.metrics):
        raise InputError(f"{', '.join(n for n in ('fid', 'kid') if n in suite.metrics)} compare sets of images: "
                         f"the suite needs count >= 2 crops (got {suite.count})")
    every = [(img, t, lv, m) for img, _ in truths for t in suite.tasks for lv in suite.levels for m in suite.methods]
    jobs = every[shard[0]::shard[1]]
    digests: dict = {}
    truth_digest = {img: hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest() for img, x in truths}
    gen_digest = {t: hashlib.sha256(json.dumps(_generator_digests(suite, t, digests), sort_keys=True).encode()).hexdigest()
                  for t in suite.tasks if t in ARTIFACT_TASKS}

    def files(img: str, t: str, lv: str, m: str) -> dict:
        return _row_files(img, t, lv, m, suite.seed, truth_digest[img], gen_digest.get(t, ""))

    # every shard's rows are checked (a shard run drops the other shards' stale rows too)
    config = {(img, t, lv, m, suite.seed): _row_config(suite, truth_digest[img], t, m,
                                                       Path(files(img, t, lv, m)["output"]).name, digests, notes)
              for img, t, lv, m in every}
    combos = {key[1:] for key in config}  # (task, level, method, seed) of this suite
    done = set()
    file_sha: dict[str, str | None] = {}  # sha256 of the files under OUT, by relative path, once a run
    kept_files: set[str] = set()  # the files of the rows kept: found intact, they are not rewritten
    if results.is_file():
        with _results_lock(out):  # a shard beside this one may be appending
            notes += _keep_finished_rows(results, config, combos, done, file_sha, kept_files)
    detector = _Detector(suite.detection) if suite.detection else None
    if detector is not None and {"iou", "precision", "recall"} & set(suite.metrics) and detector.masks is None:
        notes.append("iou, precision, recall: null (no detection.masks folder of labelled artifact masks)")
    truth_of = dict(truths)
    written: set[str] = set()
    cache: dict = {}
    pending = [(img, t, lv, m) for img, t, lv, m in jobs if (img, t, lv, m, suite.seed) not in done]
    for m in dict.fromkeys(m for _, _, _, m in pending):  # a bad model stops the run before any row is written
        load_method(m, cache)
    _check_sr_sizes(pending, suite, cache)
    for t in dict.fromkeys(t for _, t, _, _ in pending if t in ARTIFACT_TASKS):
        _generators(t, suite, cache)
    out.mkdir(parents=True, exist_ok=True)
    last_input: tuple = (None,)  # (key, task, degraded image, its parameters)
    ran = skipped = 0
    for img, t, lv, m in tqdm(jobs, desc=f"bench {suite.name}", unit="row", disable=not progress):
        row_key = (img, t, lv, m, suite.seed)
        if row_key in done:
            skipped += 1
            continue
        x = truth_of[img]
        key = f"{img}:{t}:{lv}"
        if last_input[0] != key:  # the methods of one input are consecutive rows: degrade it once
            last_input = (key, *_degrade(t, lv, x, key, suite, cache))
        _, task, y, params = last_input
        load_method(m, cache)  # outside the timing
        start = time.perf_counter()
        pred = run_method(m, t, task, y, params, tuple(x.shape[-2:]), suite.seed, key, cache)
        seconds = time.perf_counter() - start
        rel = files(img, t, lv, m)
        for name, image in (("truth", x), ("input", y)):  # once a run: a file there may be another setting's,
            if rel[name] not in written and rel[name] not in kept_files:  # but not one a kept row found intact
                _write_hashed(out, rel[name], image, file_sha)
                written.add(rel[name])
        _write_hashed(out, rel["output"], pred, file_sha)
        metrics = {n: f(pred, x) for n, f in fns.items()}
        higher = {n: METRICS[n] for n in fns}
        if detector is not None:
            rel["mask"] = rel["output"][:-4] + "_mask.png"
            metrics.update(_detection_metrics(detector, pred, y, key, out, rel, suite.metrics))
            higher.update({n: METRICS[n] for n in ("detected", "regions", "iou") if n in metrics})
        file_sha.pop(rel.get("mask"), None)  # written just now (hashed below)
        row = {"suite": suite.name, "image": img, "task": t, "level": lv, "method": m, "seed": suite.seed,
               "seconds": round(seconds, 4), "nfe": _network_calls(m, cache, t), "metrics": metrics,
               "higher_is_better": higher, "images": rel, "config": config[row_key],
               "sha256": {name: _cached_sha256(out / path, path, file_sha) for name, path in rel.items()}}
        with _results_lock(out), results.open("a") as log:  # opened a row at a time: another shard may rewrite it
            log.write(json_line(row) + "\n")
        ran += 1
    write_csv(out)
    if any(n in SET_METRICS for n in suite.metrics):
        notes += write_set_metrics(out, [n for n in suite.metrics if n in SET_METRICS], baseline=suite.baseline_sr,
                                   truth_masks=detector.masks if detector else None)
    elif (out / SET_METRICS_FILE).is_file():  # an earlier run's, of rows that may have changed since
        (out / SET_METRICS_FILE).unlink()
    return {"rows_run": ran, "rows_skipped": skipped, "notes": notes, "results": str(results)}


def _keep_finished_rows(results: Path, config: dict, combos: set, done: set, file_sha: dict,
                        kept_files: set) -> list[str]:
    """Keep the rows of ``results`` that are finished, made with this suite's ``config`` and
    whose files are intact (their keys go to ``done``); rewrite the file without the others.
    Lines that are not rows move to ``results.jsonl.dropped``. Returns notes. Call it holding
    :func:`_results_lock`."""
    from ..io import atomic_write_bytes

    out = results.parent
    notes = []
    text = results.read_text()
    lines = text.splitlines()
    kept, foreign = [], []
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
            key = _row_key(row)
        except (ValueError, KeyError, TypeError):
            cut = i == len(lines) - 1 and not text.endswith("\n")  # an interrupted append: no newline yet
            if line.strip() and not cut:
                foreign.append(line)  # not a row cut by an interruption: keep it
            continue  # a line cut by an interruption: its row runs again
        if key in config and (row.get("config") != config[key] or key in done):
            continue  # made with other settings, weights or images (or a duplicate): it runs again
        if key not in config and key[1:] in combos:
            continue  # a crop this suite no longer has (other photos, a smaller count): dropped
        if key in config and not _files_intact(out, row, file_sha, kept_files):
            continue  # an image of the row is missing, truncated or replaced: it runs again
        done.add(key)
        kept.append(line)
    if len(kept) != len(lines) or (text and not text.endswith("\n")):
        # drop the cut line and the stale rows, so that new rows do not go onto the one or sit beside
        # the others (every reader parses each line, and the report averages every row)
        if foreign:  # e.g. a line edited by hand, or two shards' lines run together when one was killed
            dropped = out / "results.jsonl.dropped"
            previous = dropped.read_bytes() if dropped.is_file() else b""
            atomic_write_bytes(dropped, previous + "".join(line + "\n" for line in foreign).encode())
            notes.append(f"{len(foreign)} line(s) of {results} were not result rows; they are moved to {dropped} "
                         f"and their rows, if any, run again")
        atomic_write_bytes(results, "".join(line + "\n" for line in kept).encode())
    return notes


@contextlib.contextmanager
def _results_lock(out: Path, create: bool = True):
    """Hold an exclusive lock on ``out/.results.jsonl.lock`` while the block runs (shards sharing
    ``out`` take turns reading, rewriting and appending ``results.jsonl``). ``create=False``
    (a reader such as the report, which writes nothing there) locks only when the file exists:
    every append creates it first, so without it no row is being written. Without ``fcntl``
    (Windows) it does nothing."""
    lock = out / ".results.jsonl.lock"
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        fcntl = None
    if fcntl is None or not (create or lock.is_file()):
        yield
        return
    with open(lock, "a" if create else "r") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_results(out_dir: str | Path) -> list[dict]:
    """The rows of ``out_dir/results.jsonl`` (blank lines skipped), read under the shards' lock."""
    out_dir = Path(out_dir)
    with _results_lock(out_dir):
        text = (out_dir / "results.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _cached_sha256(path: Path, rel: str, cache: dict) -> str | None:
    """sha256 of the file ``path`` (``rel`` under the output folder), ``None`` when it is missing;
    computed once per run and kept in ``cache`` by ``rel``."""
    if rel not in cache:
        from ..weights import sha256_file

        cache[rel] = sha256_file(path) if path.is_file() else None
    return cache[rel]


def _write_hashed(out: Path, rel: str, image: torch.Tensor, file_sha: dict) -> None:
    """Write ``image`` as the PNG ``out / rel`` atomically; note its sha256 in ``file_sha[rel]``."""
    from ..io import write_image_hashed

    hashes: dict[str, str] = {}
    write_image_hashed(out / rel, image, hashes)
    file_sha[rel] = hashes[Path(rel).name]


def _files_intact(out: Path, row: dict, cache: dict, intact: set) -> bool:
    """Whether every image file of a finished ``row`` is under ``out`` with the sha256 the row
    recorded (rows written before 2026-12-06 record none: they run once more); if so, its files
    are added to ``intact``."""
    recorded = row.get("sha256")
    if not isinstance(recorded, dict) or set(recorded) != set(row.get("images", {})):
        return False
    if not all(_cached_sha256(out / row["images"][name], row["images"][name], cache) == digest
               for name, digest in recorded.items()):
        return False
    intact.update(row["images"].values())
    return True


def _generators(t: str, suite: Suite, cache: dict) -> dict:
    """The artifact generators of kind ``t``, loaded from the suite's files once per run into ``cache``."""
    if f"generators:{t}" not in cache:
        from ..artifacts import load_generators

        cache[f"generators:{t}"] = load_generators(t, suite.generators, flag="generators.")
    return cache[f"generators:{t}"]


def _check_sr_sizes(jobs: list[tuple[str, str, str, str]], suite: Suite, cache: dict) -> None:
    """Before any row runs: each ``sr:`` method's scale turns its tasks' inputs (a crop degraded
    once, on zeros; artifact kinds keep the crop's size) back into the crop's size."""
    from .._random import generator_for
    from ..degrade import PIPELINES, get_task

    crop = (suite.crop, suite.crop)
    low: dict[tuple[str, str], tuple[int, int]] = {}  # each task's input size, found once
    for t, lv, m in dict.fromkeys((t, lv, m) for _, t, lv, m in jobs if method_kind(m) == "sr"):
        if (t, lv) not in low:
            task = None if t in ARTIFACT_TASKS else PIPELINES[t] if t in PIPELINES else get_task(t, lv)
            low[t, lv] = crop if task is None else tuple(
                task.degrade_with_params(torch.zeros(1, 3, *crop), generator_for(0, "size"))[0].shape[-2:])
        _check_sr_size(int(load_method(m, cache).scale), low[t, lv], crop, f"{m} on {t} {lv}")


def _degrade(t: str, lv: str, x: torch.Tensor, key: str, suite: Suite, cache: dict):
    """``(task, y, params)``: the ground truth ``x`` degraded by task or artifact kind ``t`` at level
    ``lv``, from ``generator_for(suite.seed, key)`` (``task`` is ``None`` for artifact kinds)."""
    from .._random import generator_for
    from ..degrade import PIPELINES, get_task

    if t in ARTIFACT_TASKS:
        from ..artifacts import synthesize

        y, params = synthesize(t, _generators(t, suite, cache), x, ARTIFACT_LEVELS[lv], [generator_for(suite.seed, key)])
        return None, y, params
    task = PIPELINES[t] if t in PIPELINES else get_task(t, lv)
    return (task, *task.degrade_with_params(x, generator_for(suite.seed, key)))


def _detection_metrics(detector: _Detector, pred: torch.Tensor, y: torch.Tensor, key: str, out: Path, rel: dict,
                       names: list[str]) -> dict:
    """Detect artifacts in ``pred``, write the mask to ``rel["mask"]``; the per-image detection metrics."""
    from ..io import write_image
    from ..metrics.detection import iou

    det = detector(pred, y, key)
    mask = det.mask[0, 0]
    write_image(out / rel["mask"], mask[None, None].float())
    values = {"detected": float(det.fraction()[0]), "regions": len(det.regions[0])}
    if "iou" in names:
        truth = detector.truth(Path(rel["output"]).name)
        values["iou"] = None if truth is None else iou(mask.cpu(), truth)
    return {n: v for n, v in values.items() if n in names}


def write_set_metrics(out_dir: Path, names: list[str], extractor=None, baseline: str | None = None,
                      truth_masks: Path | None = None) -> list[str]:
    """Set metrics of every (task, level, method) group into ``OUT/set_metrics.json``; return notes.

    IS of the group's outputs, FID and KID of its outputs against its ground-truth crops, all from the
    standard FID Inception (``inception-fid`` in the weight store). Without that weight every value
    is ``null`` and the note says so. With a handful of crops these are only indicative: FID needs
    thousands of images to be stable. DeSRA's region metrics pool the regions of the group's
    detection masks (``images.mask`` of each row): ``precision`` / ``recall`` against the labelled
    masks in ``truth_masks`` (rows without one are left out), ``removal`` / ``addition`` against the
    masks of the ``baseline`` method on the same images (for the other ``sr:`` methods only).

    Args:
        names: set metrics (``"is"``, ``"fid"``, ``"kid"``, KID over one subset of the whole group;
            ``"precision"``, ``"recall"``, ``"removal"``, ``"addition"``).
        extractor: ``x -> (features, logits)``; default :class:`~genrestore.metrics.fid.InceptionFeatures`.
        baseline: the method whose detections removal / addition compare with.
        truth_masks: folder of labelled artifact masks named like the outputs.
    """
    from .. import weights as ws
    from ..io import atomic_write_bytes, json_safe, read_image
    from ..metrics.distribution import FeatureStats, fid_from_stats, inception_score, inception_score_splits, kid

    rows = read_results(out_dir)
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["level"], r["method"]), []).append(r)
    notes = []
    inception = [n for n in names if n in _INCEPTION_METRICS]
    if inception and extractor is None and ws.find("inception-fid") is None:
        notes.append(f"{', '.join(inception)}: absent (inception-fid not in the weight store)")
    elif inception and extractor is None:
        from ..metrics.fid import InceptionFeatures

        extractor = InceptionFeatures()
    from .report import rows_digest

    out, singles = [], []
    for (task, level, method), grows in groups.items():
        entry: dict = {"task": task, "level": level, "method": method, "count": len(grows), "rows": rows_digest(grows)}
        entry.update({n: None for n in names})
        entry.update(_region_set_metrics(out_dir, grows, groups.get((task, level, baseline), []), names,
                                         method.startswith("sr:") and method != baseline, truth_masks))
        if extractor is not None and inception:
            load = lambda rel: read_image(out_dir / rel, "rgb")  # noqa: E731
            f_out, logits = extractor(torch.cat([load(r["images"]["output"]) for r in grows]))
            no_is = "is: absent (the stored inception-fid has no 1008-logit layer)"
            if "is" in names and logits is not None:
                entry["is"] = inception_score(logits, splits=inception_score_splits(logits.shape[0]))[0]
            elif "is" in names and no_is not in notes:
                notes.append(no_is)
            compared = [n for n in ("fid", "kid") if n in names]  # outputs against their truths
            if compared and len(grows) < 2:  # e.g. a shard's folder: no set to compare
                singles.append(f"{task} {level} {method}")
                compared = []
            if compared:
                f_ref, _ = extractor(torch.cat([load(r["images"]["truth"]) for r in grows]))
            if "fid" in compared:
                a, b = FeatureStats(), FeatureStats()
                a.update(f_ref)
                b.update(f_out)
                entry["fid"] = fid_from_stats(a, b)
            if "kid" in compared:
                entry["kid"] = kid(f_ref, f_out, subsets=1, subset_size=len(grows))[0]
        out.append(entry)
    if singles:
        notes.append(f"fid, kid: null for groups of one crop ({'; '.join(singles)}): they compare sets of images")
    record = {"metrics": names, "higher_is_better": {n: SET_METRICS[n] for n in names}, "notes": notes,
              "groups": out}
    text = json.dumps(json_safe(record), indent=1, allow_nan=False)
    atomic_write_bytes(out_dir / SET_METRICS_FILE, (text + "\n").encode())
    return notes


def _region_set_metrics(out_dir: Path, rows: list[dict], baseline_rows: list[dict], names: list[str],
                        compare: bool, truth_masks: Path | None) -> dict:
    """Pooled DeSRA region metrics of one group (see :func:`write_set_metrics`); ``None`` where undefined.
    ``compare``: the group is an ``sr:`` method other than the baseline (removal / addition apply)."""
    from ..metrics.detection import ChangeCounts, DetectionCounts, change_counts, region_counts

    wanted = [n for n in ("precision", "recall", "removal", "addition") if n in names]
    if not wanted or any("mask" not in r["images"] for r in rows):
        return {}
    out: dict = {}
    if {"precision", "recall"} & set(wanted) and truth_masks is not None:
        counts, labelled = DetectionCounts(), 0
        for r in rows:
            truth = truth_masks / Path(r["images"]["output"]).name
            if truth.is_file():
                counts = counts + region_counts(_read_mask(out_dir / r["images"]["mask"]), _read_mask(truth))
                labelled += 1
        if labelled:
            out.update(precision=None if counts.detected == 0 else counts.precision,
                       recall=None if counts.truth == 0 else counts.recall)
    if {"removal", "addition"} & set(wanted) and compare:
        old_of = {r["image"]: r for r in baseline_rows if "mask" in r["images"]}
        changes = ChangeCounts()
        for r in rows:
            if r["image"] in old_of:
                changes = changes + change_counts(_read_mask(out_dir / old_of[r["image"]]["images"]["mask"]),
                                                  _read_mask(out_dir / r["images"]["mask"]))
        if changes.old:
            out.update(removal=changes.removal_rate, addition=changes.addition_rate)
    return {n: v for n, v in out.items() if n in wanted}


def write_csv(out_dir: Path) -> Path:
    """``results.csv`` from ``results.jsonl`` (one column per metric), written atomically."""
    import csv
    import io as _io

    from ..io import atomic_write_bytes

    rows = read_results(out_dir)
    metrics = sorted({k for r in rows for k in r["metrics"]})
    buf = _io.StringIO()
    w = csv.writer(buf)
    w.writerow(["suite", "image", "task", "level", "method", "seed", "seconds", *metrics])
    for r in rows:
        w.writerow([r["suite"], r["image"], r["task"], r["level"], r["method"], r["seed"], r["seconds"],
                    *("" if r["metrics"].get(m) is None else r["metrics"][m] for m in metrics)])
    atomic_write_bytes(out_dir / "results.csv", buf.getvalue().encode())
    return out_dir / "results.csv"
