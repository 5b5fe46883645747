"""The robust StyleGAN benchmark tasks (§5), at levels XS..XL, and their compositions.

Each task is a frozen dataclass with

* ``degrade(x, generator)``: the true degradation, ending in 8-bit quantization as a saved
  file would; ``degrade_with_params`` also returns the random parameters it drew;
* ``surrogate(x, params, generator)``: the differentiable approximation used for inversion;
* ``level`` and ``describe()`` (the exact parameters, JSON-ready).

=================  ====  ==============================  ===========================================
task               code  XS / S / M / L / XL             surrogate
=================  ====  ==============================  ===========================================
upsample           U     factor 2 / 4 / 8 / 16 / 32      average pooling
denoise            N     (lambda, p) = (96, .04) ...     Gaussian approx. of Poisson, random mask
                         (48, .08) (24, .16) (12, .32)
                         (6, .64)
deartifact         A     JPEG q = 18 / 15 / 12 / 9 / 6   torch JPEG, cubic-lerp rounding gradient
inpaint            P     1 / 5 / 9 / 13 / 17 strokes     the same mask
=================  ====  ==============================  ===========================================

Compositions apply their tasks in the order U, N, A, P, all at level M, and are named by
initials: ``UN``, ``UNAP``, ... (11 of them).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from .. import _random
from .._checks import InputError, check_image, check_min_size
from ..io import quantize
from .jpeg import jpeg_pillow, jpeg_torch
from .masks import random_stroke_mask, stroke_mask
from .noise import bernoulli_mask, clamp_surrogate, poisson_noise
from .resize import resize_8bit

LEVELS: tuple[str, ...] = ("XS", "S", "M", "L", "XL")
Level = Literal["XS", "S", "M", "L", "XL"]
Params = dict[str, Any]


def _level_index(level: str) -> int:
    if level not in LEVELS:
        raise InputError(f"unknown level {level!r}; expected one of {', '.join(LEVELS)}")
    return LEVELS.index(level)


def _check_surrogate_input(x: torch.Tensor, task: str) -> None:
    """Shape and dtype only: a surrogate runs inside optimization loops, on images that may stray
    outside [0, 1] (its clamps handle them), so its range is not checked (that would sync the device)."""
    check_image(x, f"the {task} surrogate's input", channels=tuple(range(1, 65)), check_range=False)


@dataclass(frozen=True)
class _Task:
    level: str = "M"
    name: ClassVar[str]
    code: ClassVar[str]

    def __post_init__(self) -> None:
        _level_index(self.level)

    def degrade(self, x: torch.Tensor, generator: _random.Generator = None) -> torch.Tensor:
        """The true degradation of ``(N, C, H, W)`` images in [0, 1], on 8-bit levels."""
        return self.degrade_with_params(x, generator)[0]

    def degrade_with_params(self, x: torch.Tensor, generator: _random.Generator = None
                            ) -> tuple[torch.Tensor, Params]:
        raise NotImplementedError

    def surrogate(self, x: torch.Tensor, params: Params | None = None,
                  generator: _random.Generator = None) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"task": self.name, "code": self.code, "level": self.level}

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """``(H, W)`` of the degraded image for an input of ``size``."""
        return size


@dataclass(frozen=True)
class Upsample(_Task):
    """Downsample by an integer factor with a random Pillow filter (bilinear, bicubic or Lanczos).

    Output ``(H // f, W // f)``. Like the average-pooling surrogate, the true degradation first
    drops the last ``H % f`` rows and ``W % f`` columns, so both see the same pixels at exactly
    x1/f (a resize of the whole image to ``H // f`` would shrink by ``H / (H // f)`` instead).

    ``backend="pil"`` runs Pillow itself on 8-bit images, one by one; ``"torch"`` runs the same
    filters batched, with Pillow's rounding to 8 bits between the horizontal and vertical passes
    (:func:`~genrestore.degrade.resize.resize_8bit`): at most a level away from Pillow's bytes.
    """

    backend: Literal["pil", "torch"] = "pil"
    name: ClassVar[str] = "upsample"
    code: ClassVar[str] = "U"
    FACTORS: ClassVar[tuple[int, ...]] = (2, 4, 8, 16, 32)
    TRUE_FILTERS: ClassVar[tuple[str, ...]] = ("bilinear", "bicubic", "lanczos")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backend not in ("pil", "torch"):
            raise InputError(f"unknown upsampling backend {self.backend!r}; expected pil or torch")

    @property
    def factor(self) -> int:
        return self.FACTORS[_level_index(self.level)]

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        return size[0] // self.factor, size[1] // self.factor

    def describe(self) -> dict:
        return {**super().describe(), "factor": self.factor, "filters": list(self.TRUE_FILTERS),
                "backend": self.backend, "surrogate": "average pooling"}

    def degrade_with_params(self, x, generator=None):
        check_image(x)
        check_min_size(x, self.factor, f"x{self.factor} downsampling")
        n = x.shape[0]
        choice = _random.randint(generator, n, 0, len(self.TRUE_FILTERS))
        size = self.output_size(tuple(x.shape[-2:]))
        x = x[..., :size[0] * self.factor, :size[1] * self.factor]  # the pixels avg_pool2d sees
        out = torch.empty(n, x.shape[1], *size, dtype=x.dtype, device=x.device)
        for k, filt in enumerate(self.TRUE_FILTERS):
            idx = (choice == k).nonzero().flatten().to(x.device)
            if idx.numel():
                out[idx] = self._resize(x[idx], size, filt)
        return quantize(out), {"filter": [self.TRUE_FILTERS[int(c)] for c in choice]}

    def _resize(self, x: torch.Tensor, size: tuple[int, int], filt: str) -> torch.Tensor:
        if self.backend == "torch":
            return resize_8bit(x, size, filt)
        from PIL import Image
        import numpy as np

        pil = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}[filt]
        arrs = (x.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        outs = []
        for a in arrs:
            im = Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a).resize((size[1], size[0]), pil)
            outs.append(np.asarray(im).reshape(size[0], size[1], -1))
        return (torch.from_numpy(np.stack(outs)).permute(0, 3, 1, 2).to(x.dtype) / 255).to(x.device)

    def surrogate(self, x, params=None, generator=None):
        _check_surrogate_input(x, self.name)
        check_min_size(x, self.factor, f"the x{self.factor} average pooling of {self.name} at level {self.level}")
        return F.avg_pool2d(x, self.factor)


@dataclass(frozen=True)
class Denoise(_Task):
    """Clamped Poisson shot noise plus Bernoulli dead pixels (one mask for all channels).

    True (robust StyleGAN eq. 10): ``y = clamp(Poisson(lambda x) / lambda * B)`` with
    ``B ~ Bernoulli(1 - p)`` per pixel.
    Surrogate: a Gaussian approximation of the Poisson noise (§5.1),
    ``y = (lambda x - 1/2 + sqrt(lambda x + 1e-3) n) / lambda`` with ``n ~ N(0, 1)``, times a
    fresh random Bernoulli mask (the true one is unknown), with :func:`clamp_surrogate` (eq. 11,
    the clamp's surrogate gradient) before and after. The ``- 1/2`` shift and the ``1e-3`` are
    the authors' code's, not the paper's text: they lower the surrogate's mean by ``1 / (2 lambda)``
    against the true noise's (0.083 at level XL).
    """

    name: ClassVar[str] = "denoise"
    code: ClassVar[str] = "N"
    PARAMS: ClassVar[tuple[tuple[float, float], ...]] = ((96, .04), (48, .08), (24, .16), (12, .32), (6, .64))

    @property
    def photons(self) -> float:
        return float(self.PARAMS[_level_index(self.level)][0])

    @property
    def dead_prob(self) -> float:
        return float(self.PARAMS[_level_index(self.level)][1])

    def describe(self) -> dict:
        return {**super().describe(), "lambda": self.photons, "p": self.dead_prob}

    def degrade_with_params(self, x, generator=None):
        check_image(x)
        # the dead-pixel mask first and the Poisson draws on a fork of the generator (their count
        # depends on the image): a seed then gives the same mask, and leaves the generator in the
        # same state for later stages, whatever the image (the fidelity re-degradation needs that)
        alive = bernoulli_mask(tuple(x.shape), self.dead_prob, generator, x.device).to(x.dtype)
        y = poisson_noise(x, self.photons, _random.fork(generator)) * alive
        return quantize(y), {}

    def surrogate(self, x, params=None, generator=None):
        _check_surrogate_input(x, self.name)
        x = clamp_surrogate(x)
        lam = x * self.photons
        n = _random.randn(generator, tuple(x.shape), x.device, x.dtype)
        y = (lam - 0.5 + torch.sqrt(lam + 1e-3) * n) / self.photons
        y = y * bernoulli_mask(tuple(x.shape), self.dead_prob, generator, x.device).to(x.dtype)
        return clamp_surrogate(y)


@dataclass(frozen=True)
class Deartifact(_Task):
    """JPEG compression through libjpeg (Pillow, 4:2:0) at quality 18 / 15 / 12 / 9 / 6.

    The paper's text says 4:2:2, but its code saves with Pillow's default subsampling and
    asserts 4:2:0; we follow the code.

    Surrogate: :func:`jpeg_torch` with Pillow's tables and the cubic-lerp rounding gradient
    (k = 0.8), after :func:`clamp_surrogate` (the encoder sees clamped pixels).
    """

    name: ClassVar[str] = "deartifact"
    code: ClassVar[str] = "A"
    QUALITIES: ClassVar[tuple[int, ...]] = (18, 15, 12, 9, 6)

    @property
    def quality(self) -> int:
        return self.QUALITIES[_level_index(self.level)]

    def describe(self) -> dict:
        return {**super().describe(), "quality": self.quality, "subsampling": "4:2:0"}

    def degrade_with_params(self, x, generator=None):
        check_image(x)
        _random.check_generator(generator, x.shape[0])  # unused (JPEG draws nothing), but a seed here is a mistake
        return jpeg_pillow(x, self.quality), {}

    def surrogate(self, x, params=None, generator=None):
        _check_surrogate_input(x, self.name)
        return jpeg_torch(clamp_surrogate(x), self.quality, rounding="surrogate", k=0.8,
                          check_range=False)  # in [0, 1] by the clamp: no device sync on every inversion step


@dataclass(frozen=True)
class Inpaint(_Task):
    """Random brush strokes of width 0.08 x the shorter side, each joining two points in the
    outer thirds of the image, antialiased; the image is multiplied by the keep-mask.

    The surrogate multiplies by the same mask, which must be passed in ``params["mask"]``
    (the mask is known to the restorer).
    """

    width_frac: float = 0.08
    name: ClassVar[str] = "inpaint"
    code: ClassVar[str] = "P"
    STROKES: ClassVar[tuple[int, ...]] = (1, 5, 9, 13, 17)

    @property
    def strokes(self) -> int:
        return self.STROKES[_level_index(self.level)]

    def describe(self) -> dict:
        return {**super().describe(), "strokes": self.strokes, "width_frac": self.width_frac}

    def degrade_with_params(self, x, generator=None):
        check_image(x)
        mask, ends = random_stroke_mask(generator, x.shape[0], tuple(x.shape[-2:]), self.strokes,
                                        self.width_frac, x.device)
        return quantize(x * mask.to(x.dtype)), {"mask": mask, "endpoints": ends}

    def known_mask(self, params, x: torch.Tensor) -> torch.Tensor:
        """The keep-mask of ``params`` (from :meth:`degrade_with_params`) for the images ``x``:
        its ``"mask"``, else the strokes drawn from its ``"endpoints"`` at ``x``'s size;
        ``(N or 1, 1, H, W)``, 1 = kept."""
        if not isinstance(params, dict) or ("mask" not in params and "endpoints" not in params):
            raise InputError("the inpainting surrogate needs the known mask: pass params from degrade_with_params")
        mask = params.get("mask")
        if mask is None:
            mask = stroke_mask(tuple(x.shape[-2:]), params["endpoints"], self.width_frac, device=x.device)
        if not isinstance(mask, torch.Tensor) or mask.ndim != 4 or mask.shape[-2:] != x.shape[-2:] \
                or mask.shape[0] not in (1, x.shape[0]):
            got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise InputError(f"{self.name}: expected a mask of shape (N or 1, 1, {x.shape[-2]}, {x.shape[-1]}) for "
                             f"these images, got {got}")
        return mask

    def surrogate(self, x, params=None, generator=None):
        _check_surrogate_input(x, self.name)
        return x * self.known_mask(params, x).to(device=x.device, dtype=x.dtype)


TASKS: dict[str, type[_Task]] = {t.name: t for t in (Upsample, Denoise, Deartifact, Inpaint)}
ORDER: tuple[type[_Task], ...] = (Upsample, Denoise, Deartifact, Inpaint)  # robust StyleGAN eq. 16
_BY_CODE = {t.code: t for t in ORDER}


@dataclass(frozen=True)
class Composition:
    """Tasks applied in order (each true stage re-quantized to 8 bits), surrogates likewise."""

    tasks: tuple[_Task, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not all(isinstance(t, _Task) for t in self.tasks):  # e.g. ("U", "N"): get_task("UN") makes one
            raise InputError(f"a composition takes task objects (get_task('U'), ...); got {self.tasks!r:.80}; "
                             "get_task('UN') builds one by initials")
        codes = [t.code for t in self.tasks]
        canonical = [t.code for t in ORDER if t.code in codes]
        if len(self.tasks) < 2 or codes != canonical:
            raise InputError(f"a composition needs 2 to 4 distinct tasks in the order U, N, A, P; got {''.join(codes)!r}")

    @property
    def name(self) -> str:
        return "".join(t.code for t in self.tasks)

    code = name

    @property
    def level(self) -> str:
        levels = {t.level for t in self.tasks}
        return levels.pop() if len(levels) == 1 else "mixed"

    def describe(self) -> dict:
        return {"task": self.name, "level": self.level, "stages": [t.describe() for t in self.tasks]}

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        for t in self.tasks:
            size = t.output_size(size)
        return size

    def degrade(self, x, generator=None):
        return self.degrade_with_params(x, generator)[0]

    def degrade_with_params(self, x, generator=None):
        stages = []
        for t in self.tasks:
            x, p = t.degrade_with_params(x, generator)
            stages.append(p)
        return x, {"stages": stages}

    def surrogate(self, x, params=None, generator=None):
        stages = (params or {}).get("stages") or [None] * len(self.tasks)
        if not isinstance(stages, (list, tuple)) or len(stages) != len(self.tasks):  # zip skipped the rest
            raise InputError(f"{self.name}: expected params with one 'stages' entry per task ({len(self.tasks)}), "
                             f"as degrade_with_params gives them; got {stages!r:.80}")
        for t, p in zip(self.tasks, stages):
            x = t.surrogate(x, p, generator)
        return x


#: The 11 compositions of 2, 3 and 4 tasks, at level M, by name.
COMPOSITIONS: tuple[str, ...] = tuple(
    "".join(t.code for t in combo) for r in (2, 3, 4) for combo in itertools.combinations(ORDER, r))


def inpainting_mask(task, params, x: torch.Tensor) -> torch.Tensor | None:
    """The keep-mask ``(N or 1, 1, H, W)`` of ``task``'s inpainting stage for images of ``x``'s size
    (from ``params``, as :meth:`Inpaint.known_mask` reads them); None for a task without inpainting.

    Inpainting is the last stage of a composition, so its mask has the size of the degraded images.
    """
    if isinstance(task, Composition):
        stages = task.tasks
        stage_params = params.get("stages") if isinstance(params, dict) else None
        if not isinstance(stage_params, (list, tuple)):
            return None  # the composition's surrogate reports the missing params
    else:
        stages, stage_params = (task,), (params,)
    for stage, p in zip(stages, stage_params):
        if isinstance(stage, Inpaint):
            return stage.known_mask(p, x)
    return None


def get_task(name: str, level: str = "M", **options) -> _Task | Composition:
    """A task by name (``upsample``, ``denoise``, ``deartifact``, ``inpaint``), by code
    (``U``, ``N``, ``A``, ``P``) or a composition by initials (``UN`` ... ``UNAP``, level M).

    ``options`` (e.g. ``backend="torch"``) go to every task, or stage of a composition, that
    has a field of that name.

    Raises:
        InputError: an unknown name or level, or an option that no task or stage takes.

    Example:
        >>> get_task("denoise", "XL").describe()
        {'task': 'denoise', 'code': 'N', 'level': 'XL', 'lambda': 6.0, 'p': 0.64}
        >>> get_task("UNAP").name
        'UNAP'
    """
    _level_index(level)
    if name in TASKS or name in _BY_CODE:
        classes = [TASKS.get(name) or _BY_CODE[name]]
    elif name in COMPOSITIONS:
        if level != "M":
            raise InputError(f"compositions are defined at level M only, got {level}")
        classes = [_BY_CODE[c] for c in name]
    else:
        raise InputError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}, "
                         f"a code {', '.join(_BY_CODE)} or a composition {', '.join(COMPOSITIONS)}")
    takes = [{f.name for f in fields(cls)} for cls in classes]
    unused = [k for k in options if not any(k in t for t in takes)]
    if unused:
        raise InputError(f"task {name!r} takes no option {', '.join(map(repr, unused))}")
    tasks = [cls(level, **{k: v for k, v in options.items() if k in t}) for cls, t in zip(classes, takes)]
    return tasks[0] if len(tasks) == 1 else Composition(tuple(tasks))
