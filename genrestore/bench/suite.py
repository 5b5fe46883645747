"""Benchmark suites as data: which photos, crops, tasks, levels, methods and metrics a run has.

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
inference script does with ``--outscale 1``). Metrics: ``psnr``, ``ssim`` (RGB), ``lpips``
(AlexNet; a row records ``null`` and the run notes it when the backbone is absent), ``identity``
(cosine of face-api.js's face descriptor: meaningful on aligned face crops only, and not the
papers' ArcFace / iResNet ID), ``niqe`` (no-reference naturalness of the output, lower is better;
``null`` for crops with fewer than two 96 px blocks) and ``fidelity`` (robust StyleGAN §6.1: LPIPS
AlexNet between the output degraded again by the task's true degradation, from the target's seed,
and the degraded target; benchmark tasks and compositions only; ``null`` where the degraded images are under
LPIPS's 31 px, e.g. upsampling 256 px crops at L and XL). Set metrics, one value per task x
level x method: ``is``, ``fid``, ``kid`` and ``pfid`` (patch-FID, robust StyleGAN §6.1: ``pfid_crops``
random crops of ``pfid_size`` px of each output against as many of each ground truth; default 64
of half the crop side).

DeSRA's detection metrics (seed 001 §4) run its detection on each output against the MSE-SR
of the same low-resolution input (the suite's ``[detection]`` table: ``mse``, an SR model, default
``rdn-x4``; ``segmenter``, ``texture`` / ``none`` / ``segformer`` with ``segformer = DIR``; ``masks``,
a folder of hand-labelled artifact masks): ``detected`` (fraction of pixels) and ``regions``
(count) per image; ``iou`` per image (eq. 11) and the set metrics ``precision`` / ``recall`` (eqs.
12-13, regions pooled over the set) against the labelled masks; and the set metrics ``removal`` /
``addition`` (§4.3) of each method's detections against those of the suite's first ``sr:``
method (the original model). A labelled mask is a PNG named like the output it labels
(``OUT/images/NAME.png``: run once, label the outputs, run again with ``masks``); rows without
one record ``null``. Artifact tasks take the suite's ``[artifacts]`` table, the settings of
``genrestore artifacts`` that override a level's (``temperature`` and ``top_k`` of ar-resample,
``alpha`` of ddim-gauss, ``gamma`` and ``beta`` of ddim-scale; e.g. DiffGAR's FFHQ test pairs:
``alpha = 0.25``, ``gamma = 1.009``, ``beta = 0.005``). Everything in a suite is checked before
any work starts; the offending key is named.
"""

from __future__ import annotations

import os
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
# the [artifacts] table: option -> (the artifact task it sets, its lowest value, whether that is excluded,
# whether it is a whole number); the arguments of artifacts.synthesize
ARTIFACT_OPTIONS = {"temperature": ("ar-resample", 0.0, True, False), "top_k": ("ar-resample", 1, False, True),
                    "alpha": ("ddim-gauss", 0.0, False, False), "gamma": ("ddim-scale", 0.0, True, False),
                    "beta": ("ddim-scale", float("-inf"), True, False)}
_INPAINTING_ONLY = ("telea", "navier-stokes", "inpaint")
_DIFFGAR_MODES = {"diffgar": "guided", "diffgar-blind": "blind", "diffgar-nonblind": "non-blind"}
METRICS = {"psnr": True, "ssim": True, "lpips": False, "identity": True, "niqe": False,  # per image; higher is better?
           "fidelity": False, "detected": False, "regions": False, "iou": True}
SET_METRICS = {"is": True, "fid": False, "kid": False, "pfid": False,  # per (task, level, method) set of outputs
               "precision": True, "recall": True, "removal": True, "addition": False}
DETECTION_METRICS = ("detected", "regions", "iou", "precision", "recall", "removal", "addition")
_INCEPTION_METRICS = ("is", "fid", "kid", "pfid")
PFID_CROPS = 64  # patch-FID crops per image by default (robust StyleGAN's code: 1000 of 128 px at 1024 px)
_DETECTION_KEYS = {"mse", "segmenter", "segformer", "masks"}
SUITES_DIR = Path(__file__).with_name("suites")


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
    pfid_size: int | None = None  # patch-FID crop side, px (None: crop // 2)
    pfid_crops: int = PFID_CROPS  # patch-FID crops per image
    artifacts: dict = field(default_factory=dict)  # the [artifacts] table: synthesis options (ARTIFACT_OPTIONS)

    def artifact_options(self, task: str) -> dict:
        """The ``[artifacts]`` options that artifact task ``task``'s synthesis takes (``{}`` for others)."""
        return {k: v for k, v in self.artifacts.items() if ARTIFACT_OPTIONS[k][0] == task}

    @property
    def pfid(self) -> tuple[int, int]:
        """``(size, count)`` of the patch-FID crops of each image."""
        return (self.pfid_size or max(1, self.crop // 2), self.pfid_crops)

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
        spec: a suite ``.toml`` file, or the name of a built-in suite (e.g. ``"denoise"``).
        methods: replaces the suite's method list (``--methods``).
        images: replaces the suite's image folder (``--images``); an existing folder, relative
            to the working folder. Without it the suite's ``images`` must exist beside the suite
            file or in the working folder.
        tasks: replaces the suite's task list (``--tasks``); checked like the suite's own.

    Returns:
        The checked :class:`Suite` (no image is read).

    Raises:
        InputError: no such suite, a malformed one, ``methods`` / ``tasks`` not a list of names
            (or naming unknown ones), or an image folder that does not exist.

    Example:
        >>> from pathlib import Path
        >>> import genrestore
        >>> assets = Path(genrestore.__file__).parent / "assets"  # any existing folder
        >>> suite = load_suite("denoise", methods=["degraded"], images=assets)
        >>> suite.name, suite.tasks, suite.methods, suite.images == assets
        ('denoise', ['denoise'], ['degraded'], True)
    """
    from ..degrade import COMPOSITIONS, LEVELS, PIPELINES, TASKS

    for key, v in (("methods", methods), ("tasks", tasks)):
        if isinstance(v, (str, bytes)):  # a str would be iterated letter by letter: "unknown method 'i'"
            raise InputError(f"expected {key} as a list of names, got the string {v!r} (write [{v!r}])")

    def in_list(key: str, origin: str) -> str:  # where in the suite file a bad entry stands
        return "" if origin.startswith("--") else f" in '{key}'"

    if not isinstance(spec, (str, os.PathLike)):
        raise InputError(f"expected suite as a file path or a built-in suite name, got {type(spec).__name__} {spec!r}")
    path = Path(spec)
    if not path.is_file():
        path = SUITES_DIR / f"{spec}.toml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in SUITES_DIR.glob("*.toml")))
            raise InputError(f"no suite file {spec!r} and no built-in suite of that name (built-in: {known})")
    data = _read_toml(path)
    allowed = {"name", "images", "tasks", "levels", "methods", "metrics", "count", "crop", "seed", "generators",
               "detection", "pfid_size", "pfid_crops", "artifacts"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InputError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    for key, least in (("count", 1), ("crop", 1), ("seed", 0), ("pfid_size", 1), ("pfid_crops", 1)):
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
    fixed = [t for t in data["tasks"] if t in COMPOSITIONS or t in PIPELINES]
    if fixed and data["levels"] != ["M"]:
        given = f"--tasks {','.join(tasks)}" if tasks else str(path)
        raise InputError(f"{given}: {fixed} have no levels (M only), and the suite's levels are {data['levels']}; "
                         f"set levels = [\"M\"] in {'a copy of ' + str(path) if tasks else 'the suite'}")
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
    if "pfid" not in data["metrics"] and ({"pfid_size", "pfid_crops"} & set(data)):
        raise InputError(f"{path}: 'pfid_size' and 'pfid_crops' set the crops of metric 'pfid', which 'metrics' lacks")
    if int(data.get("pfid_size", 1)) > int(data.get("crop", 128)):
        raise InputError(f"{path}: 'pfid_size' {data['pfid_size']} is larger than the suite's {data.get('crop', 128)} px crops")
    if "fidelity" in data["metrics"]:
        others = [t for t in data["tasks"] if t not in TASKS and t not in COMPOSITIONS]
        if others:
            given = f"--tasks {','.join(tasks)} with {path}" if tasks else str(path)
            raise InputError(f"{given}: metric 'fidelity' degrades the outputs again with the task's true degradation, "
                             f"which only the benchmark tasks and their compositions have; the suite also has {others}")
    if "lpips" in data["metrics"]:
        from ..metrics.lpips import MIN_SIZE

        if int(data.get("crop", 128)) < MIN_SIZE["alex"]:
            raise InputError(f"{path}: metric 'lpips' (AlexNet) needs crops of at least {MIN_SIZE['alex']} px a "
                             f"side; the suite crops {data.get('crop')} px")
    detection = _check_detection(path, data, methods)
    artifacts = _check_artifact_options(path, data)
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
            raise InputError(f"{path}: 'images' folder {data.get('images')!r} not found beside the suite file or in "
                             "the working folder; give the photos with --images DIR")
    return Suite(data.get("name", path.stem), images, data["tasks"], data["levels"], methods, data["metrics"],
                 int(data.get("count", 4)), int(data.get("crop", 128)), int(data.get("seed", 0)), path,
                 generators=generators, detection=detection, pfid_size=data.get("pfid_size"),
                 pfid_crops=int(data.get("pfid_crops", PFID_CROPS)), artifacts=artifacts)


def _check_artifact_options(path: Path, data: dict) -> dict:
    """The suite's ``[artifacts]`` table, checked: known options, each of a task in ``tasks``, in range."""
    import math

    table = data.get("artifacts", {})
    if not isinstance(table, dict):
        raise InputError(f"{path}: 'artifacts' must be a table ({', '.join(ARTIFACT_OPTIONS)})")
    for key, v in table.items():
        if key not in ARTIFACT_OPTIONS:
            raise InputError(f"{path}: unknown key {key!r} in 'artifacts'; allowed: {', '.join(ARTIFACT_OPTIONS)}")
        task, low, open_low, whole = ARTIFACT_OPTIONS[key]
        if task not in data["tasks"]:
            raise InputError(f"{path}: artifacts.{key} sets task {task!r}, which 'tasks' lacks")
        number = isinstance(v, int) if whole else isinstance(v, (int, float))
        if isinstance(v, bool) or not number or not math.isfinite(v) or (v <= low if open_low else v < low):
            what = "an integer" if whole else "a finite number"
            bound = "" if math.isinf(low) else f" {'>' if open_low else '>='} {low:g}"
            raise InputError(f"{path}: artifacts.{key} must be {what}{bound}, got {v!r}")
    return {k: (int(v) if ARTIFACT_OPTIONS[k][3] else float(v)) for k, v in table.items()}


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
