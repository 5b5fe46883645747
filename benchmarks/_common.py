"""Helpers shared by the benchmark scripts (run as `python benchmarks/NAME.py`, so importable as `_common`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from genrestore.io import read_image

VAL_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos" / "val"


class CpuUse:
    """Fraction of all CPUs that *other* processes kept busy between ``__init__`` and ``others()``.

    Reads ``/proc/stat`` (Linux; ``None`` elsewhere). This process's CPU time, and that of its
    reaped children, counts as its own; above ~10 % from others, timings are noisy.
    """

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[int, int, float] | None:
        try:
            with open("/proc/stat") as f:
                v = [int(t) for t in f.readline().split()[1:]]
        except OSError:
            return None
        t = os.times()
        # idle + iowait ticks, total ticks, own CPU seconds (with reaped children)
        return v[3] + v[4], sum(v), t.user + t.system + t.children_user + t.children_system

    def others(self) -> float | None:
        end = self._sample()
        if self.start is None or end is None:
            return None
        idle, total = end[0] - self.start[0], max(1, end[1] - self.start[1])
        own = (end[2] - self.start[2]) * os.sysconf("SC_CLK_TCK")
        return max(0.0, (total - idle - own) / total)


def add_gpu_column_argument(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda``: where "ours" also runs, beside the CPU (a GPU column)."""
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where ours also runs: auto adds a GPU column when CUDA is available")


def gpu_column(parser: argparse.ArgumentParser, device: str) -> torch.device | None:
    """The CUDA device of the GPU column for ``--device`` (``None``: CPU only); ``cuda`` without
    CUDA is a usage error (one line, exit 2)."""
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    use_gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    return torch.device("cuda") if use_gpu else None


def load_photos(folder: Path = VAL_PHOTOS) -> tuple[list[torch.Tensor], str]:
    """The PNGs of ``folder`` as ``(1, 3, H, W)`` RGB in [0, 1], or, when it has none, four
    ``skimage.data`` photos (astronaut, chelsea, coffee, rocket); and a line naming the source."""
    files = sorted(folder.glob("*.png")) if folder.is_dir() else []
    if files:
        return [read_image(f, mode="rgb") for f in files], f"{len(files)} PNGs in {folder}"
    from skimage import data

    names = ("astronaut", "chelsea", "coffee", "rocket")
    imgs = [torch.from_numpy(getattr(data, n)()[:, :, :3].copy()).permute(2, 0, 1)[None].float() / 255
            for n in names]
    return imgs, "skimage.data " + ", ".join(names)
