"""Throughput of the benchmark degradations (genrestore.degrade.tasks) against the obvious alternatives.

What is measured
----------------
One batch of 16 RGB 256x256 crops of real photos (float32 NCHW in [0, 1], quantized to 8 bits
first) goes through each task at each level XS..XL, and the table reports images per second:

* ``upsample``: ``Upsample(level, backend="torch").degrade`` (batched torch resize, random Pillow filter) and
  ``Upsample(level, backend="pil")``, against a plain Pillow loop (tensor -> uint8 PIL image ->
  ``Image.resize(..., BICUBIC)`` -> tensor, one image at a time); and the surrogate (average pooling).
* ``denoise``: ``Denoise(level).degrade`` and ``.surrogate``, against a numpy loop
  (Poisson noise plus a Bernoulli dead-pixel mask, clamped and quantized, one image at a time).
* ``deartifact``: ``Deartifact(level).degrade`` (libjpeg through Pillow on a thread pool) against
  a single-threaded Pillow loop (save JPEG to ``BytesIO``, decode); and the differentiable codec
  ``jpeg_torch(x, q, rounding="surrogate")``, forward and forward+backward (gradient of the sum
  with respect to the input), against ``kornia.enhance.jpeg_codec_differentiable``.
  For the forward rows the note gives the mean per-image PSNR of each differentiable codec's
  output against the libjpeg decode of the same 8-bit input ("vs libjpeg": higher is closer),
  and the distortion PSNR of each against the clean input next to libjpeg's own, with the
  verdict whether each codec's distortion is within 1 dB of libjpeg's.
* ``inpaint``: ``Inpaint(level).degrade`` against an OpenCV loop drawing the same number of
  antialiased strokes per image with ``cv2.line`` (width 0.08 x 256 px) on a mask and applying it.

"ours" is always the library call on the whole batch; the alternative runs on the CPU. With a
GPU (``--device auto`` finds one, or ``--device cuda``) an extra column times ours on the GPU
(inputs already on the device, synchronized after every call).

Timing: one warm-up call, then repeated calls until at least ``--min-time`` seconds (0.5 s,
0.2 s with ``--quick``) and 2 calls have elapsed; images/s = 16 x calls / elapsed. Random
tasks draw from ``torch.Generator().manual_seed(0)`` (numpy alternatives from
``np.random.default_rng(0)``). Torch uses its default thread count.

Photos: 16 crops of 256x256 (centre, top-left and bottom-right, cycling through the files) of
the PNGs in ``../shared/data/photos/val/`` (beside the checkout); if that folder is missing, of
``skimage.data`` images (astronaut, chelsea, coffee, rocket).

Run::

    python benchmarks/degrade.py               # all levels, about 3-5 minutes on 2 CPU cores
    python benchmarks/degrade.py --quick       # level M only, well under a minute
    python benchmarks/degrade.py --device cuda # add a GPU column for ours
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image

from _common import add_gpu_column_argument, gpu_column, load_photos
from genrestore.degrade.jpeg import jpeg_pillow, jpeg_torch
from genrestore.degrade.tasks import LEVELS, Deartifact, Denoise, Inpaint, Upsample
from genrestore.io import quantize

BATCH = 16
SIZE = 256
CROPS = ("center", "top-left", "bottom-right")


# --------------------------------------------------------------------------------------------
# Data


def _crop(img: torch.Tensor, where: str) -> torch.Tensor:
    """A ``SIZE`` x ``SIZE`` crop of a ``(1, 3, H, W)`` image at a named position."""
    h, w = img.shape[-2:]
    top, left = {"top-left": (0, 0), "center": ((h - SIZE) // 2, (w - SIZE) // 2),
                 "bottom-right": (h - SIZE, w - SIZE)}[where]
    return img[:, :, top:top + SIZE, left:left + SIZE]


def photo_batch() -> tuple[torch.Tensor, str]:
    """``(16, 3, 256, 256)`` 8-bit-quantized crops, cycling through the photos, then the crop positions."""
    imgs, source = load_photos()
    crops = [_crop(imgs[i % len(imgs)], CROPS[(i // len(imgs)) % len(CROPS)]) for i in range(BATCH)]
    return quantize(torch.cat(crops).contiguous()), source


# --------------------------------------------------------------------------------------------
# The alternatives: what one would write without the library, one image at a time on the CPU


def _to_uint8_hwc(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _from_uint8_hwc(arrs: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float() / 255


def pillow_resize_loop(x: torch.Tensor, factor: int) -> torch.Tensor:
    h, w = x.shape[-2] // factor, x.shape[-1] // factor
    return _from_uint8_hwc([np.asarray(Image.fromarray(a).resize((w, h), Image.BICUBIC))
                            for a in _to_uint8_hwc(x)])


def numpy_denoise_loop(x: torch.Tensor, photons: float, dead_prob: float,
                       rng: np.random.Generator) -> torch.Tensor:
    outs = []
    for a in x.numpy():  # (3, H, W) float32
        y = rng.poisson(photons * a) / photons
        y = y * (rng.random(a.shape[1:]) >= dead_prob)  # one dead-pixel mask for all channels
        outs.append((np.round(np.clip(y, 0, 1) * 255) / 255).astype(np.float32))
    return torch.from_numpy(np.stack(outs))


def pillow_jpeg_loop(x: torch.Tensor, quality: int) -> torch.Tensor:
    outs = []
    for a in _to_uint8_hwc(x):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        with Image.open(buf) as im:
            outs.append(np.asarray(im.convert("RGB")))
    return _from_uint8_hwc(outs)


def kornia_jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    from kornia.enhance import jpeg_codec_differentiable

    # kornia pads to whole 16 px MCUs internally; 256 px needs no padding anyway.
    return jpeg_codec_differentiable(x, torch.full((x.shape[0],), float(quality), device=x.device))


def opencv_inpaint_loop(x: torch.Tensor, strokes: int, rng: np.random.Generator) -> torch.Tensor:
    h, w = x.shape[-2:]
    thickness = round(0.08 * min(h, w))
    outs = []
    for a in x.numpy():
        mask = np.ones((h, w), np.float32)
        # endpoints in the outer thirds of the image, as the library draws them
        u = rng.random((strokes, 2, 2, 2))
        pts = np.where(u[..., 0] < 0.5, u[..., 1] / 3, 2 / 3 + u[..., 1] / 3) * (w, h)
        for p0, p1 in pts.round().astype(int):
            cv2.line(mask, tuple(map(int, p0)), tuple(map(int, p1)), 0.0, thickness, cv2.LINE_AA)
        outs.append(np.round(a * mask * 255) / 255)
    return torch.from_numpy(np.stack(outs))


def backward_of(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], None]:
    """``fn``'s forward and the backward of its sum with respect to the input."""
    def run(x: torch.Tensor) -> None:
        leaf = x.detach().requires_grad_()
        fn(leaf).sum().backward()
    return run


# --------------------------------------------------------------------------------------------
# Timing and the table


@dataclass
class Timer:
    min_time: float
    min_reps: int = 2

    def rate(self, fn: Callable[[torch.Tensor], object], x: torch.Tensor) -> float:
        """Images per second of ``fn(x)``: one warm-up, then at least ``min_reps`` calls and ``min_time`` s."""
        sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
        fn(x)
        sync()
        reps, start = 0, time.perf_counter()
        while True:
            fn(x)
            sync()
            reps += 1
            elapsed = time.perf_counter() - start
            if reps >= self.min_reps and elapsed >= self.min_time:
                return x.shape[0] * reps / elapsed


@dataclass
class Row:
    task: str
    level: str
    ours: float
    ours_gpu: float | None
    alt: float | None
    alt_name: str
    note: str


class Bench:
    def __init__(self, x: torch.Tensor, timer: Timer, gpu: torch.device | None):
        self.x, self.timer = x, timer
        self.x_gpu = x.to(gpu) if gpu is not None else None
        self.rows: list[Row] = []

    def row(self, task: str, level: str, ours: Callable, alt: Callable | float | None = None,
            alt_name: str = "", note: str = "") -> float | None:
        """Time ``ours`` (CPU, and GPU when there is one) and ``alt`` (CPU, or an already measured rate)."""
        r_ours = self.timer.rate(ours, self.x)
        r_gpu = self.timer.rate(ours, self.x_gpu) if self.x_gpu is not None else None
        r_alt = self.timer.rate(alt, self.x) if callable(alt) else alt
        self.rows.append(Row(task, level, r_ours, r_gpu, r_alt, alt_name if alt is not None else "", note))
        print(f"  {task:<28} {level:<3} done", file=sys.stderr, flush=True)
        return r_alt

    def markdown(self) -> str:
        gpu = self.x_gpu is not None
        head = ["task", "level", "ours CPU (img/s)"] + (["ours GPU (img/s)"] if gpu else []) + \
               ["alternative (img/s)", "alternative name", "note"]
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
        for r in self.rows:
            cells = [r.task, r.level, _fmt(r.ours)] + ([_fmt(r.ours_gpu)] if gpu else []) + \
                    [_fmt(r.alt), r.alt_name or "–", r.note]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _fmt(rate: float | None) -> str:
    if rate is None:
        return "–"
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}"


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over images of ``10 log10(1 / MSE)``, for images in [0, 1]."""
    mse = (a.double() - b.double()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(1 / mse.clamp(min=1e-20))).mean().item()


def jpeg_fidelity(x: torch.Tensor, quality: int) -> str:
    """The note for the differentiable JPEG rows: PSNR against libjpeg and distortion against the clean input."""
    ref = jpeg_pillow(x, quality)
    with torch.no_grad():
        outs = {"ours": jpeg_torch(x, quality, rounding="surrogate"), "kornia": kornia_jpeg(x, quality)}
    ref_distortion = psnr(ref, x)
    parts = [f"PSNR vs libjpeg: ours {psnr(outs['ours'], ref):.1f} dB, kornia {psnr(outs['kornia'], ref):.1f} dB"]
    verdicts = []
    for name, y in outs.items():
        d = psnr(y, x) - ref_distortion
        verdicts.append(f"{name} {d:+.2f} dB ({'within' if abs(d) <= 1 else 'NOT within'} 1 dB)")
    parts.append(f"vs clean: libjpeg {ref_distortion:.2f} dB; " + ", ".join(verdicts))
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------
# The measurements


def run(bench: Bench, levels: tuple[str, ...]) -> None:
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731  a fresh seeded generator per row
    rng = lambda: np.random.default_rng(0)  # noqa: E731

    for level in levels:
        t = Upsample(level, backend="torch")
        f = t.factor
        g = gen()
        pil_rate = bench.row("upsample degrade (torch)", level, lambda x: t.degrade(x, g),
                             lambda x: pillow_resize_loop(x, f), "Pillow loop, bicubic",
                             f"x{f}; ours picks bilinear/bicubic/lanczos at random")
        tp, gp = Upsample(level, backend="pil"), gen()
        bench.row("upsample degrade (pil)", level, lambda x: tp.degrade(x, gp), pil_rate,
                  "Pillow loop, bicubic", f"x{f}; Pillow per image inside ours too")
        bench.row("upsample surrogate", level, lambda x: t.surrogate(x), note=f"x{f} average pooling")

    for level in levels:
        t = Denoise(level)
        g, r = gen(), rng()
        note = f"lambda={t.photons:g}, p={t.dead_prob:g}"
        bench.row("denoise degrade", level, lambda x: t.degrade(x, g),
                  lambda x: numpy_denoise_loop(x, t.photons, t.dead_prob, r),
                  "numpy loop (rng.poisson + Bernoulli)", note)
        g2 = gen()
        bench.row("denoise surrogate", level, lambda x: t.surrogate(x, None, g2),
                  note=note + "; Gaussian approx. + random mask")

    for level in levels:
        t = Deartifact(level)
        q = t.quality
        bench.row("deartifact degrade", level, lambda x: t.degrade(x), lambda x: pillow_jpeg_loop(x, q),
                  "Pillow loop, 1 thread", f"q={q}; ours: libjpeg on a thread pool ({os.cpu_count()} workers)")
        ours_fwd = lambda x: jpeg_torch(x, q, rounding="surrogate")  # noqa: E731
        kornia_fwd = lambda x: kornia_jpeg(x, q)  # noqa: E731
        bench.row("jpeg_torch forward", level, ours_fwd, kornia_fwd, "kornia jpeg_codec_differentiable",
                  f"q={q}; " + jpeg_fidelity(bench.x, q))
        bench.row("jpeg_torch forward+backward", level, backward_of(ours_fwd), backward_of(kornia_fwd),
                  "kornia jpeg_codec_differentiable", f"q={q}; gradient of the sum w.r.t. the input")

    for level in levels:
        t = Inpaint(level)
        g, r = gen(), rng()
        bench.row("inpaint degrade", level, lambda x: t.degrade(x, g),
                  lambda x: opencv_inpaint_loop(x, t.strokes, r), "OpenCV cv2.line loop",
                  f"{t.strokes} stroke{'s' if t.strokes > 1 else ''}, width {round(t.width_frac * SIZE)} px; ours antialiased from the distance field")


def other_cpu_use(seconds: float = 0.5) -> float | None:
    """Fraction of all CPUs busy over ``seconds`` while this process sleeps (Linux only)."""
    def ticks() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return values[3] + values[4], sum(values)  # idle + iowait, total
    try:
        idle0, total0 = ticks()
        time.sleep(seconds)
        idle1, total1 = ticks()
    except OSError:
        return None
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_gpu_column_argument(parser)
    parser.add_argument("--quick", action="store_true", help="level M only, shorter timing")
    parser.add_argument("--min-time", type=float, default=None,
                        help="seconds of timed calls per measurement (default 0.5, 0.2 with --quick)")
    args = parser.parse_args(argv)

    gpu = gpu_column(parser, args.device)
    min_time = args.min_time if args.min_time is not None else (0.2 if args.quick else 0.5)
    levels = ("M",) if args.quick else LEVELS

    import kornia

    x, source = photo_batch()
    device = "cpu" + (f" + cuda ({torch.cuda.get_device_name(gpu)})" if gpu is not None else "")
    print(f"torch {torch.__version__}, kornia {kornia.__version__}, threads {torch.get_num_threads()}, "
          f"device {device}")
    busy = other_cpu_use()
    if busy is not None:
        print(f"CPU in use by other processes just before the run: {busy:.0%} of {os.cpu_count()} CPUs"
              + (" -- the timings will be noisy" if busy > 0.1 else ""))
    print(f"batch {tuple(x.shape)} float32, 8-bit crops of {source}; levels {', '.join(levels)}; "
          f"timing >= {min_time:g} s and >= 2 calls after 1 warm-up\n", flush=True)
    start = time.perf_counter()
    bench = Bench(x, Timer(min_time), gpu)
    run(bench, levels)
    print(bench.markdown())
    print(f"\n(total {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
