"""CPU inference speed of the shipped networks: tiling, channels-last and ``--half``.

What is measured
----------------
* ``restore``: the README's main command's work, ``IDMRestorer.restore`` of the bundled 512 px
  example (``idm-default``, 10 DDPM steps, 256 px tiles, pad 16, seed 0), in seconds per image,
  four ways: as until 2026-12-07 (every tile 256 px, the last ones shifted inward: 9 tiles of
  256 px a step; the network on planar tensors), the current tiles (the same count, each shrunk
  evenly: 9 of 208 px) on planar tensors, the current tiles channels-last (the default now), and
  that with ``half=True``. Each row gives the PSNR / SSIM of the
  restoration against the clean 512 px photo (scikit-image's astronaut, which the example was
  degraded from) and the PSNR against the first row's restoration (the same seed: how far the
  sample moved).
* ``upscale``: each SR model on a batch of one 128 px crop of a validation photo (LR), seconds
  per call, three ways: the plain float32 call on a planar tensor (as until 2026-12-07),
  ``run_network`` (channels-last, float32: the default now) and ``half=True``; the largest and
  mean absolute difference against the plain call on the 8-bit scale, and the PSNR between them.

``half=True`` runs bf16 only on a CPU with native bf16 (AVX512-BF16 or AMX; the header says
whether this one has it); elsewhere it is float32 and its rows repeat the float32 ones.

Timing: one warm-up call, then the best of ``--repeat`` calls (2; restore: 1, it is slow), with
torch's default threads. The footer says how busy the CPUs were with other processes.

Run::

    python benchmarks/inference_speed.py            # about 2 minutes on 2 CPU cores
    python benchmarks/inference_speed.py --quick    # restore on a 256 px crop, SR on 64 px; 20 s
"""

from __future__ import annotations

import argparse
import math
import time
from contextlib import nullcontext
from unittest import mock

import numpy as np
import torch

from _common import CpuUse, load_photos
from genrestore import io as gio
from genrestore.cli import example_path
from genrestore.io import read_image
from genrestore.models import precision
from genrestore.metrics.full_reference import psnr, ssim
from genrestore.models.precision import cpu_has_native_bf16, half_name, run_network
from genrestore.models.sr import load_sr
from genrestore.restore.idm import IDMRestorer
from genrestore.weights import find

SR_MODELS = ("realesrgan-x4plus", "rdn-x4", "rrdn-x4", "realesr-animevideov3-x4")


def equal_tiles(size: int, tile: int, overlap: int, multiple: int = 1) -> tuple[list[int], int]:
    """The tile grid before 2026-12-07: full-size tiles at stride ``tile - overlap``, the last
    one shifted inward to end at the border."""
    if size <= tile:
        return [0], size
    n = math.ceil((size - tile) / (tile - overlap)) + 1
    return sorted({min(i * (tile - overlap), size - tile) for i in range(n)}), tile


def best_time(fn, repeat: int):
    out = fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, min(times)


def restore_rows(size: int, repeat: int) -> list[str]:
    import skimage.data

    y = read_image(example_path(degraded=True))
    clean = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1)[None].float() / 255
    y, clean = y[..., :size, :size], clean[..., :size, :size]
    restorer = IDMRestorer.from_file("idm-default")

    def run(half: bool):
        return restorer.restore(y, 10, torch.Generator().manual_seed(0), tile=256, tile_pad=16, half=half)

    rows, first = [], None
    planar = mock.patch.object(precision, "channels_last", lambda t: t)
    for label, grid, layout, half in (("equal 256 px tiles, planar (before)", equal_tiles, planar, False),
                                      ("even tiles, planar", gio._tile_grid, planar, False),
                                      ("even tiles, channels-last (now)", gio._tile_grid, nullcontext(), False),
                                      ("even tiles, channels-last, --half", gio._tile_grid, nullcontext(), True)):
        with mock.patch.object(gio, "_tile_grid", grid), layout:
            n_tiles = len(grid(size, 256, 48, 8)[0]) ** 2
            side = grid(size, 256, 48, 8)[1]
            out, sec = best_time(lambda: run(half), repeat)
        first = out if first is None else first
        rows.append(f"| {label} | {n_tiles} x {side} px | {sec:.2f} | {float(psnr(out, clean)):.2f} | "
                    f"{float(ssim(out, clean)):.4f} | {float(psnr(out, first)):.2f} |")
    return rows


def sr_rows(size: int, repeat: int) -> list[str]:
    imgs, _ = load_photos()
    x = imgs[0][..., :size, :size].contiguous()
    rows = []
    for name in SR_MODELS:
        if find(name) is None:
            rows.append(f"| {name} | absent from the weight store (genrestore weights install {name}) | | | | |")
            continue
        net = load_sr(name)
        with torch.no_grad():
            plain, t_plain = best_time(lambda: net(x).float().clamp(0, 1), repeat)
            cl, t_cl = best_time(lambda: run_network(net, x).float().clamp(0, 1), repeat)
            half, t_half = best_time(lambda: run_network(net, x, half=True).float().clamp(0, 1), repeat)
        cells = [f"{t_plain:.3f}"]
        for out, t in ((cl, t_cl), (half, t_half)):
            d = (out - plain).abs() * 255
            p = float(psnr(out, plain))
            cells.append(f"{t:.3f} ({t_plain / t:.2f}x); diff max {float(d.max()):.2f} mean {float(d.mean()):.3f}"
                         f"; {'inf' if math.isinf(p) else f'{p:.1f}'} dB")
        rows.append(f"| {name} | {' | '.join(cells)} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="restore a 256 px crop and SR a 64 px one")
    ap.add_argument("--repeat", type=int, default=None, help="timed calls after the warm-up (restore 1, SR 2)")
    args = ap.parse_args()
    torch.manual_seed(0)
    np.random.seed(0)
    cpu = CpuUse()
    start = time.perf_counter()
    half = half_name("cpu", True) or "float32 (no native bf16 on this CPU)"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU native bf16: {cpu_has_native_bf16()}; "
          f"--half runs {half}\n")
    size = 256 if args.quick else 512
    print(f"IDM restore of the bundled example ({size} px, 10 DDPM steps, tile 256, pad 16, seed 0), seconds per image:\n")
    print("| tiles | tiles a step | s / image | PSNR vs clean | SSIM vs clean | PSNR vs first row |")
    print("|---|---|---:|---:|---:|---:|")
    for row in restore_rows(size, args.repeat or 1):
        print(row, flush=True)
    sr = 64 if args.quick else 128
    print(f"\nSR models on one {sr} px LR crop, seconds per call; differences against the plain float32 call "
          "(8-bit levels, PSNR):\n")
    print("| model | plain float32 (s) | channels-last float32 (now) | --half |")
    print("|---|---:|---|---|")
    for row in sr_rows(sr, args.repeat or 2):
        print(row, flush=True)
    others = cpu.others()
    busy = "unknown" if others is None else f"{others:.0%}"
    print(f"\n(total {time.perf_counter() - start:.0f} s; other processes used {busy} of the CPUs meanwhile)")


if __name__ == "__main__":
    main()
