"""Randomized classical degradation pipelines for making training pairs.

* :class:`BlurDownNoiseJpeg`: ``y = [(x conv k) downsampled by s + n]_JPEG``, then resized
  back to the input size (IDM eq. 11; the GFPGAN convention). Two presets:
  ``IDM`` with the ranges stated in IDM §4.1 (sigma in [0.2, 10], s in [1, 8], noise sigma in
  [0, 15]/255, q in [50, 100]) and ``GFPGAN`` with GFPGAN's training options (sigma in
  [0.1, 10], s in [0.8, 8], noise in [0, 20]/255, q in [60, 100], iso/aniso kernels 50/50).
* :class:`SecondOrder`: Real-ESRGAN's two-stage degradation (blur, resize, noise, JPEG,
  twice, then a final sinc + resize + JPEG in random order), producing x``scale`` LR inputs.

Each image draws from its own generator when a list is given (see :mod:`genrestore._random`),
so its result does not depend on the batch. Resizing inside these pipelines samples like
OpenCV / ``torch.nn.functional.interpolate`` (no antialiasing), as those projects do;
JPEG is libjpeg through Pillow. Outputs are quantized to 8 bits.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from .. import _random
from .._checks import InputError, check_image, real_number, whole_number
from ..io import quantize
from .jpeg import jpeg_pillow
from .kernels import blur, gaussian_kernel, odd_side, pad_kernel, random_mixed_kernels, sinc_kernel
from .noise import gaussian_noise, poisson_noise_scaled
from .resize import resize


def _u(g, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(_random.rand(g, (1,), dtype=torch.float64)[0])


def _choice(g, options, probs=None):
    if probs is None:
        probs = [1 / len(options)] * len(options)
    u = float(_random.rand(g, (1,), dtype=torch.float64)[0])
    acc = 0.0
    for o, p in zip(options, probs):
        acc += p
        if u < acc:
            return o
    return options[-1]


def _check_interval(owner: str, name: str, r, low: float, high: float = math.inf, low_open: bool = False) -> None:
    """``r`` is ``(lo, hi)`` with ``low <= lo <= hi <= high`` (``low < lo`` with ``low_open``), finite."""
    v = [real_number(e) for e in r] if hasattr(r, "__len__") and len(r) == 2 else [None]
    ok = (None not in v and all(math.isfinite(e) for e in v)
          and (v[0] > low if low_open else v[0] >= low) and v[0] <= v[1] <= high)
    if not ok:
        bound = f"{'>' if low_open else '>='} {low:g}" + ("" if math.isinf(high) else f", <= {high:g}")
        raise InputError(f"{owner}: expected {name} as (low, high), finite, low <= high, {bound}; got {r!r}")


def _check_probability(owner: str, name: str, p) -> None:
    v = real_number(p)
    if v is None or not 0 <= v <= 1:
        raise InputError(f"{owner}: expected {name} as a probability in [0, 1], got {p!r}")


@dataclass(frozen=True)
class BlurDownNoiseJpeg:
    """Blur, downsample, add Gaussian noise, JPEG, resize back (IDM eq. 11).

    Attributes:
        kernel_size: blur kernel side, px (41 in GFPGAN and IDM).
        sigma_range: blur sigma range, px.
        scale_range: downsampling factor range.
        noise_range_255: Gaussian noise sigma range on the 0..255 scale.
        jpeg_range: JPEG quality range (integers, inclusive).
        aniso_prob: probability of an anisotropic kernel (random sigmas and angle).
        resize_back: resize the result back to the input size (as training pairs need); if
            ``False``, to :meth:`output_size`, the smallest size ``scale_range`` allows, so that
            every image of a batch has the same size.
    """

    kernel_size: int = 41  # IDM says only "Gaussian blur"; its GFPGAN-based code mixes iso/aniso (see GFPGAN)
    sigma_range: tuple[float, float] = (0.2, 10.0)
    scale_range: tuple[float, float] = (1.0, 8.0)
    noise_range_255: tuple[float, float] = (0.0, 15.0)
    jpeg_range: tuple[int, int] = (50, 100)
    aniso_prob: float = 0.0
    resize_back: bool = True

    def __post_init__(self) -> None:
        me = type(self).__name__
        if odd_side(self.kernel_size) is None:
            raise InputError(f"{me}: expected kernel_size as an odd positive int, got {self.kernel_size!r}")
        _check_interval(me, "sigma_range", self.sigma_range, 0.0, low_open=True)
        _check_interval(me, "scale_range", self.scale_range, 0.0, low_open=True)
        _check_interval(me, "noise_range_255", self.noise_range_255, 0.0)
        _check_interval(me, "jpeg_range", self.jpeg_range, 1, 100)
        _check_probability(me, "aniso_prob", self.aniso_prob)

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """``(H, W)`` of the result: the input size (``resize_back``), else the size of a downsampling
        by ``scale_range[1]``, the largest factor."""
        if self.resize_back:
            return size
        return max(1, int(size[0] / self.scale_range[1])), max(1, int(size[1] / self.scale_range[1]))

    def describe(self) -> dict[str, Any]:
        return {"pipeline": type(self).__name__, **asdict(self)}

    def sample(self, generator: torch.Generator | None) -> dict[str, Any]:
        """Draw one image's parameters."""
        g = generator
        aniso = _u(g, 0, 1) < self.aniso_prob
        sx = _u(g, *self.sigma_range)
        sy = _u(g, *self.sigma_range) if aniso else sx
        theta = _u(g, -math.pi, math.pi) if aniso else 0.0
        return {"sigma_x": sx, "sigma_y": sy, "theta": theta, "scale": _u(g, *self.scale_range),
                "noise_sigma_255": _u(g, *self.noise_range_255),
                "jpeg_quality": int(math.floor(_u(g, self.jpeg_range[0], self.jpeg_range[1] + 1)))}

    def degrade_with_params(self, x: torch.Tensor, generator: _random.Generator = None
                            ) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        """Degrade ``(N, 3, H, W)`` images in [0, 1]; returns images and per-image parameters."""
        check_image(x)
        outs, params = [], []
        for xi, g in zip(x.split(1), _random.per_image(generator, x.shape[0])):
            p = self.sample(g)
            h, w = xi.shape[-2:]
            y = blur(xi, gaussian_kernel(self.kernel_size, p["sigma_x"], p["sigma_y"], p["theta"]))
            size = (max(1, int(h / p["scale"])), max(1, int(w / p["scale"])))
            y = resize(y, size, "bilinear", antialias=False)
            y = gaussian_noise(y, p["noise_sigma_255"] / 255.0, g).clamp(0, 1)
            y = jpeg_pillow(y, p["jpeg_quality"])
            y = resize(y, self.output_size((h, w)), "bilinear", antialias=False)
            outs.append(quantize(y))
            params.append(p)
        if not outs:  # an empty batch gives an empty batch of the output size
            return x.new_empty(x.shape[0], x.shape[1], *self.output_size(tuple(x.shape[-2:]))), params
        return torch.cat(outs), params

    def degrade(self, x: torch.Tensor, generator: _random.Generator = None) -> torch.Tensor:
        return self.degrade_with_params(x, generator)[0]


IDM = BlurDownNoiseJpeg()
GFPGAN = BlurDownNoiseJpeg(sigma_range=(0.1, 10.0), scale_range=(0.8, 8.0), noise_range_255=(0.0, 20.0),
                           jpeg_range=(60, 100), aniso_prob=0.5)


@dataclass(frozen=True)
class SecondOrder:
    """Real-ESRGAN's second-order degradation (Wang et al. 2021, options/train_realesrgan_x4plus.yml).

    Produces an LR image of size ``(H // scale, W // scale)``.
    """

    scale: int = 4
    kernel_range: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    sinc_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_range_255: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[int, int] = (30, 95)
    second_blur_prob: float = 0.8
    sinc_prob2: float = 0.1
    blur_sigma2: tuple[float, float] = (0.2, 1.5)
    resize_prob2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: tuple[float, float] = (0.3, 1.2)
    noise_range2_255: tuple[float, float] = (1.0, 25.0)
    poisson_scale_range2: tuple[float, float] = (0.05, 2.5)
    jpeg_range2: tuple[int, int] = (30, 95)
    final_sinc_prob: float = 0.8

    def __post_init__(self) -> None:
        me = type(self).__name__
        scale = whole_number(self.scale)
        if scale is None or scale < 1:
            raise InputError(f"{me}: expected scale as a positive int, got {self.scale!r}")
        if (not isinstance(self.kernel_range, (list, tuple)) or len(self.kernel_range) == 0
                or any(odd_side(k) is None for k in self.kernel_range)):
            raise InputError(f"{me}: expected kernel_range as odd positive ints, got {self.kernel_range!r}")
        for name in ("blur_sigma", "blur_sigma2"):
            _check_interval(me, name, getattr(self, name), 0.0, low_open=True)
        for name in ("resize_range", "resize_range2"):
            _check_interval(me, name, getattr(self, name), 0.0, low_open=True)
        for name in ("noise_range_255", "noise_range2_255", "poisson_scale_range", "poisson_scale_range2"):
            _check_interval(me, name, getattr(self, name), 0.0)
        for name in ("jpeg_range", "jpeg_range2"):
            _check_interval(me, name, getattr(self, name), 1, 100)
        for name in ("sinc_prob", "gaussian_noise_prob", "gray_noise_prob", "second_blur_prob", "sinc_prob2",
                     "final_sinc_prob"):
            _check_probability(me, name, getattr(self, name))
        for name in ("resize_prob", "resize_prob2"):
            p = getattr(self, name)
            v = [real_number(e) for e in p] if len(p) == 3 else [None]
            if None in v or any(e < 0 for e in v) or abs(sum(v) - 1) > 1e-6:
                raise InputError(f"{me}: expected {name} as three probabilities (up, down, keep) summing to 1, got {p!r}")

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """``(H // scale, W // scale)``."""
        return size[0] // self.scale, size[1] // self.scale

    def describe(self) -> dict[str, Any]:
        return {"pipeline": type(self).__name__, **asdict(self)}

    def _kernel(self, g, sinc_prob: float, sigma: tuple[float, float]) -> tuple[torch.Tensor, dict]:
        size = _choice(g, self.kernel_range)
        if _u(g, 0, 1) < sinc_prob:
            wc = _u(g, math.pi / 3, math.pi) if size < 13 else _u(g, math.pi / 5, math.pi)
            k, p = sinc_kernel(size, wc), {"type": "sinc", "size": size, "cutoff": wc}
        else:
            k, ps = random_mixed_kernels(g, 1, size, sigma_range=sigma)
            p = ps[0]
        return pad_kernel(k, 21), p

    def _stage(self, y, g, kernel_p, resize_probs, resize_range, size_fn, noise_range, poisson_range,
               jpeg_range, log):
        if kernel_p is not None:
            y = blur(y, kernel_p[0])
            log["kernel"] = kernel_p[1]
        kind = _choice(g, ("up", "down", "keep"), resize_probs)
        s = _u(g, 1, resize_range[1]) if kind == "up" else _u(g, resize_range[0], 1) if kind == "down" else 1.0
        mode = _choice(g, ("area", "bilinear", "bicubic"))
        y = resize(y, size_fn(s), mode, antialias=False)
        log["resize"] = {"scale": s, "mode": mode}
        gray = _u(g, 0, 1) < self.gray_noise_prob
        if _u(g, 0, 1) < self.gaussian_noise_prob:
            sigma = _u(g, *noise_range) / 255.0
            y = gaussian_noise(y, sigma, g, gray=gray)
            log["noise"] = {"type": "gaussian", "sigma_255": sigma * 255, "gray": gray}
        else:
            sc = _u(g, *poisson_range)
            y = poisson_noise_scaled(y.clamp(0, 1), sc, g, gray=gray)
            log["noise"] = {"type": "poisson", "scale": sc, "gray": gray}
        q = int(math.floor(_u(g, jpeg_range[0], jpeg_range[1] + 1)))
        y = jpeg_pillow(y.clamp(0, 1), q)
        log["jpeg_quality"] = q
        return y

    def degrade_with_params(self, x: torch.Tensor, generator: _random.Generator = None
                            ) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        """Degrade ``(N, 3, H, W)`` HR images in [0, 1] to ``(N, 3, H // scale, W // scale)`` LR."""
        check_image(x)
        h, w = x.shape[-2:]
        if h < self.scale or w < self.scale:
            raise InputError(f"image of {w}x{h} px is smaller than the x{self.scale} scale")
        lr = (h // self.scale, w // self.scale)
        outs, params = [], []
        for xi, g in zip(x.split(1), _random.per_image(generator, x.shape[0])):
            p: dict[str, Any] = {"stage1": {}, "stage2": {}, "final": {}}
            k1 = self._kernel(g, self.sinc_prob, self.blur_sigma)
            y = self._stage(xi, g, k1, self.resize_prob, self.resize_range,
                            lambda s: (max(1, int(h * s)), max(1, int(w * s))),
                            self.noise_range_255, self.poisson_scale_range, self.jpeg_range, p["stage1"])
            k2 = self._kernel(g, self.sinc_prob2, self.blur_sigma2) if _u(g, 0, 1) < self.second_blur_prob else None
            y = self._stage(y, g, k2, self.resize_prob2, self.resize_range2,
                            lambda s: (max(1, int(h / self.scale * s)), max(1, int(w / self.scale * s))),
                            self.noise_range2_255, self.poisson_scale_range2, self.jpeg_range2, p["stage2"])
            if _u(g, 0, 1) < self.final_sinc_prob:
                size = _choice(g, self.kernel_range)
                wc = _u(g, math.pi / 3, math.pi)
                sinc = pad_kernel(sinc_kernel(size, wc), 21)
                p["final"]["sinc"] = {"size": size, "cutoff": wc}
            else:
                sinc = None  # Real-ESRGAN's pulse tensor: the identity
            mode = _choice(g, ("area", "bilinear", "bicubic"))
            q = int(math.floor(_u(g, self.jpeg_range2[0], self.jpeg_range2[1] + 1)))
            jpeg_first = _u(g, 0, 1) < 0.5
            p["final"].update({"mode": mode, "jpeg_quality": q, "jpeg_first": jpeg_first})

            def resize_sinc(t):
                t = resize(t, lr, mode, antialias=False)
                return blur(t, sinc) if sinc is not None else t

            if jpeg_first:
                y = resize_sinc(jpeg_pillow(y.clamp(0, 1), q))
            else:
                y = jpeg_pillow(resize_sinc(y).clamp(0, 1), q)
            outs.append(quantize(y))
            params.append(p)
        if not outs:  # an empty batch gives an empty batch of the output size
            return x.new_empty(x.shape[0], x.shape[1], *lr), params
        return torch.cat(outs), params

    def degrade(self, x: torch.Tensor, generator: _random.Generator = None) -> torch.Tensor:
        return self.degrade_with_params(x, generator)[0]


REALESRGAN_X4 = SecondOrder(scale=4)

PIPELINES: dict[str, BlurDownNoiseJpeg | SecondOrder] = {
    "idm": IDM, "gfpgan": GFPGAN, "realesrgan-x4": REALESRGAN_X4, "realesrgan-x2": SecondOrder(scale=2)}
