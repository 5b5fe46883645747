"""Throughput of the metrics (genrestore.metrics) against scikit-image, torchmetrics and SciPy.

What is measured
----------------
Images per second of each metric on a batch of RGB photos (float32 NCHW in [0, 1], 8-bit
levels) against a JPEG (quality 20, libjpeg through Pillow) of the same batch:

* ``PSNR`` and ``SSIM``, on RGB and on BT.601 luma Y with ``crop_border=4``: ours
  (``genrestore.metrics.psnr`` / ``ssim``, one call on the whole batch) against a
  scikit-image loop, one image at a time (``peak_signal_noise_ratio(data_range=1)`` and
  ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=1, channel_axis=2)``, on float32 HWC views of the batch, luma and crop done in
  numpy inside the loop) and against ``torchmetrics.functional.image`` on the batch
  (``peak_signal_noise_ratio(data_range=1.0, reduction="none", dim=(1, 2, 3))`` and
  ``structural_similarity_index_measure(gaussian_kernel=True, sigma=1.5, kernel_size=11,
  data_range=1.0, reduction="none")``, luma and crop done with torch before the call).
  The difference columns give the largest absolute per-image difference (dB for PSNR) of
  ours against scikit-image run on float64 copies of the batch (the exact reference) and
  against torchmetrics' float32 values. torchmetrics (1.9) averages the SSIM map over the
  whole reflect-padded image instead of cropping the 5 px border as scikit-image and ours
  do, so its SSIM differs by about 1e-4 to 1e-3 by convention, not by error.
  The target (from the issue): ours at least 3x the scikit-image loop and not slower than
  torchmetrics, on the CPU.
* ``both planar`` rows: PSNR with the JPEG batch made planar first (``.contiguous()``), as when
  a restored tensor batch is compared with its truth: both sides share one layout, which takes
  the library's same-layout path; the reference loops are timed again on the same pair.
* ``float64`` rows: the library with ``precision="float64"`` (exact to ~1e-14 against
  scikit-image), beside the default float32 arithmetic (~3e-7).
* ``LPIPS`` alex and vgg: ``genrestore.metrics.lpips.LPIPS`` forward on the batch under
  ``torch.inference_mode``. The ImageNet backbones are not in the weight store on a fresh
  machine, so the backbone weights are random unless the store has them (the header says
  which): the rows measure speed only. The ``lpips`` package is timed as a reference when it
  imports (it needs torchvision).
* ``Frechet distance`` (FID formula) between two sets of d = 2048 statistics (mean and
  covariance of 4096 random non-negative features each, accumulated with ``FeatureStats``):
  ours (``frechet_distance``, float64 symmetric eigen-decompositions in torch) against the
  pytorch-fid formula with ``scipy.linalg.sqrtm(sigma1 @ sigma2)``, seconds per call and the
  relative difference of the two values.

Sizes: 256x256, batch 16 (crops of the photos); 1024x1024, batch 4 (the photos are about
1024x640, so the central square of each is resized to 1024x1024 with
``genrestore.degrade.resize(..., "bicubic")``, clamped and quantized; batch 4 keeps the full run
within about 5 minutes on 2 CPU cores). LPIPS vgg runs batch 4 at 256 and only with ``--full``
at 1024 (batch 1); LPIPS alex runs batch 16 at 256 and batch 4 at 1024.

"ours" runs on the CPU; with a GPU (``--device auto`` finds one, or ``--device cuda``) an extra
column times ours on the GPU (inputs already on the device, synchronized after every call).

Timing: one warm-up call (its result feeds the difference columns), then repeated calls until
at least ``--min-time`` seconds (0.5 s, 0.2 s with ``--quick``) and 2 calls have elapsed;
images/s = batch x calls / elapsed. Torch uses its default thread count. The footer reports how
busy the CPUs were with other processes during the run: above ~10 % the timings are noisy.

Photos: crops of the PNGs in ``../shared/data/photos/val/`` (beside the checkout); if that
folder is missing, of ``skimage.data`` images (astronaut, chelsea, coffee, rocket).

Run::

    python benchmarks/metrics.py               # 256 and 1024, about 3 minutes on 2 idle CPU cores
    python benchmarks/metrics.py --quick       # 256 only, LPIPS alex, Frechet at d = 512; under a minute
    python benchmarks/metrics.py --full        # adds LPIPS vgg at 1024, batch 1 (about a minute more)
    python benchmarks/metrics.py --device cuda # add a GPU column for ours
"""

from __future__ import annotations

import argparse
from functools import partial
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from _common import CpuUse, add_gpu_column_argument, gpu_column, load_photos
from genrestore.degrade import jpeg_pillow, resize
from genrestore.io import quantize
from genrestore.metrics.distribution import FeatureStats, frechet_distance
from genrestore.metrics.full_reference import psnr, rgb_to_y, ssim
from genrestore.metrics.lpips import BACKBONE_WEIGHT, HEADS_WEIGHT, LPIPS

CROPS = ("center", "top-left", "bottom-right")
BATCH = {256: 16, 1024: 4}
JPEG_QUALITY = 20
CROP_BORDER = 4
BT601 = (65.481, 128.553, 24.966)  # studio-range luma weights (x 1/255), as genrestore.metrics.rgb_to_y
SSIM_KW = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)


# --------------------------------------------------------------------------------------------
# Data


def _crop(img: torch.Tensor, size: int, where: str) -> torch.Tensor:
    h, w = img.shape[-2:]
    top, left = {"top-left": (0, 0), "center": ((h - size) // 2, (w - size) // 2),
                 "bottom-right": (h - size, w - size)}[where]
    return img[:, :, top:top + size, left:left + size]


def photo_batch(imgs: list[torch.Tensor], size: int) -> torch.Tensor:
    """``(BATCH[size], 3, size, size)`` 8-bit photos: crops when the photos are large enough, else
    the central square of each resized (bicubic) to ``size``."""
    n = BATCH[size]
    if all(min(im.shape[-2:]) >= size for im in imgs):
        crops = [_crop(imgs[i % len(imgs)], size, CROPS[(i // len(imgs)) % len(CROPS)]) for i in range(n)]
    else:
        crops = []
        for i in range(n):
            im = imgs[i % len(imgs)]
            side = min(im.shape[-2:])
            crops.append(resize(_crop(im, side, "center"), (size, size), "bicubic").clamp(0, 1))
    return quantize(torch.cat(crops).contiguous())


# --------------------------------------------------------------------------------------------
# The references


def _sk_pairs(x: torch.Tensor, y: torch.Tensor, y_channel: bool, crop: int):
    """Per-image HWC numpy views of a batch, luma and border crop done in numpy (as a user would)."""
    xs, ys = x.permute(0, 2, 3, 1).numpy(), y.permute(0, 2, 3, 1).numpy()
    w = np.array(BT601, dtype=xs.dtype)
    for a, b in zip(xs, ys):
        if y_channel:
            a, b = (16 + a @ w) / 255, (16 + b @ w) / 255
        if crop:
            a, b = a[crop:-crop, crop:-crop], b[crop:-crop, crop:-crop]
        yield a, b


def skimage_psnr_loop(x: torch.Tensor, y: torch.Tensor, y_channel: bool = False, crop: int = 0) -> np.ndarray:
    from skimage.metrics import peak_signal_noise_ratio

    return np.array([peak_signal_noise_ratio(a, b, data_range=1) for a, b in _sk_pairs(x, y, y_channel, crop)])


def skimage_ssim_loop(x: torch.Tensor, y: torch.Tensor, y_channel: bool = False, crop: int = 0) -> np.ndarray:
    from skimage.metrics import structural_similarity

    axis = None if y_channel else 2
    return np.array([structural_similarity(a, b, channel_axis=axis, **SSIM_KW)
                     for a, b in _sk_pairs(x, y, y_channel, crop)])


def _torch_prepare(x: torch.Tensor, y: torch.Tensor, y_channel: bool, crop: int):
    if crop:
        x, y = x[..., crop:-crop, crop:-crop], y[..., crop:-crop, crop:-crop]
    if y_channel:
        x, y = rgb_to_y(x), rgb_to_y(y)
    return x, y


def torchmetrics_psnr(x: torch.Tensor, y: torch.Tensor, y_channel: bool = False, crop: int = 0) -> torch.Tensor:
    from torchmetrics.functional.image import peak_signal_noise_ratio

    x, y = _torch_prepare(x, y, y_channel, crop)
    return peak_signal_noise_ratio(x, y, data_range=1.0, reduction="none", dim=(1, 2, 3))


def torchmetrics_ssim(x: torch.Tensor, y: torch.Tensor, y_channel: bool = False, crop: int = 0) -> torch.Tensor:
    from torchmetrics.functional.image import structural_similarity_index_measure

    x, y = _torch_prepare(x, y, y_channel, crop)
    return structural_similarity_index_measure(x, y, gaussian_kernel=True, sigma=1.5, kernel_size=11,
                                               data_range=1.0, reduction="none")


def frechet_scipy(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray, eps: float = 1e-6) -> float:
    """pytorch-fid's ``calculate_frechet_distance`` (``disp`` dropped: deprecated in SciPy 1.16)."""
    from scipy import linalg

    diff = mu1 - mu2
    covmean = linalg.sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


# --------------------------------------------------------------------------------------------
# Timing and the tables


@dataclass
class Timer:
    min_time: float
    min_reps: int = 2

    def rate(self, fn: Callable[[], object], items: int, cuda: bool = False) -> tuple[float, object]:
        """``items`` per second of ``fn()`` and the warm-up call's result."""
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        first = fn()
        sync()
        reps, start = 0, time.perf_counter()
        while True:
            fn()
            sync()
            reps += 1
            elapsed = time.perf_counter() - start
            if reps >= self.min_reps and elapsed >= self.min_time:
                return items * reps / elapsed, first


@dataclass
class Row:
    metric: str
    size: int
    batch: int
    ours: float
    ours_gpu: float | None = None
    sk: float | None = None
    tm: float | None = None
    d_sk: float | None = None
    d_tm: float | None = None
    target: bool = False
    note: str = ""


def _fmt(rate: float | None) -> str:
    if rate is None:
        return "–"
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}" if rate >= 1 else f"{rate:.2f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "–" if a is None or b is None else f"{a / b:.2f}x"


def _diff(d: float | None) -> str:
    return "–" if d is None else f"{d:.1e}"


def _maxdiff(a, b) -> float:
    a = a.double().cpu().numpy() if torch.is_tensor(a) else np.asarray(a, dtype=np.float64)
    b = b.double().cpu().numpy() if torch.is_tensor(b) else np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)))


def markdown(rows: list[Row], gpu: bool) -> str:
    head = ["metric", "size", "batch", "ours (img/s)"] + (["ours GPU (img/s)"] if gpu else []) + \
           ["scikit-image loop (img/s)", "torchmetrics (img/s)", "ours / skimage", "ours / torchmetrics",
            "max abs diff vs skimage", "max abs diff vs torchmetrics", "target met", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r in rows:
        if r.target:
            ok_sk = r.sk is not None and r.ours >= 3 * r.sk
            ok_tm = r.tm is None or r.ours >= r.tm
            verdict = ("yes" if ok_sk and ok_tm else "**no**") + \
                f" (3x skimage: {'yes' if ok_sk else 'no'}; >= torchmetrics: {'yes' if ok_tm else 'no'})"
        else:
            verdict = "–"
        cells = [r.metric, f"{r.size}", f"{r.batch}", _fmt(r.ours)] + ([_fmt(r.ours_gpu)] if gpu else []) + \
                [_fmt(r.sk), _fmt(r.tm), _ratio(r.ours, r.sk), _ratio(r.ours, r.tm), _diff(r.d_sk), _diff(r.d_tm),
                 verdict, r.note]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The measurements


def full_reference_rows(x: torch.Tensor, y: torch.Tensor, timer: Timer, gpu: torch.device | None,
                        has_tm: bool, size: int) -> list[Row]:
    rows = []
    n = x.shape[0]
    xg, yg = (x.to(gpu), y.to(gpu)) if gpu is not None else (None, None)
    xd, yd = x.double(), y.double()
    cases = (("PSNR", psnr, skimage_psnr_loop, torchmetrics_psnr, partial(psnr, precision="float64"), "dB"),
             ("SSIM", ssim, skimage_ssim_loop, torchmetrics_ssim, partial(ssim, precision="float64"), ""))
    refs = {}  # float64 scikit-image per (metric, y_channel): the exact reference
    for name, ours_fn, sk_fn, tm_fn, exp_fn, unit in cases:
        for y_channel, crop in ((False, 0), (True, CROP_BORDER)):
            label = f"{name} {'Y, crop 4' if y_channel else 'RGB'}"
            ref = refs[name, y_channel] = sk_fn(xd, yd, y_channel, crop)
            r_ours, v_ours = timer.rate(lambda: ours_fn(x, y, y_channel, crop), n)
            r_gpu = timer.rate(lambda: ours_fn(xg, yg, y_channel, crop), n, cuda=True)[0] if xg is not None else None
            r_sk, _ = timer.rate(lambda: sk_fn(x, y, y_channel, crop), n)
            r_tm, v_tm = timer.rate(lambda: tm_fn(x, y, y_channel, crop), n) if has_tm else (None, None)
            tm_note = ("; torchmetrics averages the whole reflect-padded map (no 5 px border crop)"
                       if name == "SSIM" and has_tm else "")
            rows.append(Row(label, size, n, r_ours, r_gpu, r_sk, r_tm, _maxdiff(v_ours, ref),
                            _maxdiff(v_ours, v_tm) if has_tm else None, True,
                            f"library, float32 arithmetic{'; diffs in ' + unit if unit else ''}{tm_note}"))
            print(f"  {label:<18} {size:>4} done", file=sys.stderr, flush=True)
            r_exp, v_exp = timer.rate(lambda: exp_fn(x, y, y_channel, crop), n)
            r_exp_gpu = (timer.rate(lambda: exp_fn(xg, yg, y_channel, crop), n, cuda=True)[0]
                         if xg is not None else None)
            rows.append(Row(f"{label}, float64", size, n, r_exp, r_exp_gpu, r_sk, r_tm,
                            _maxdiff(v_exp, ref), _maxdiff(v_exp, v_tm) if has_tm else None, True,
                            "library, precision='float64'; reference rates repeated"))
    # The same PSNR when both sides are planar tensors (e.g. a restored batch against its truth):
    # the same-layout OpenCV path; scikit-image timed again on the same (planar) pair.
    y_planar = y.contiguous()
    for y_channel, crop in ((False, 0), (True, CROP_BORDER)):
        label = f"PSNR {'Y, crop 4' if y_channel else 'RGB'}, both planar"
        ref = refs["PSNR", y_channel]
        r_ours, v_ours = timer.rate(lambda: psnr(x, y_planar, y_channel, crop), n)
        r_sk, _ = timer.rate(lambda: skimage_psnr_loop(x, y_planar, y_channel, crop), n)
        r_tm, v_tm = timer.rate(lambda: torchmetrics_psnr(x, y_planar, y_channel, crop), n) if has_tm else (None, None)
        rows.append(Row(label, size, n, r_ours, None, r_sk, r_tm, _maxdiff(v_ours, ref),
                        _maxdiff(v_ours, v_tm) if has_tm else None, True,
                        "library, float32; the JPEG batch made planar (.contiguous()) first; diffs in dB"))
        print(f"  {label:<18} {size:>4} done", file=sys.stderr, flush=True)
    return rows


def lpips_model(net: str) -> tuple[LPIPS, str]:
    """LPIPS with the store's heads and backbone where present, random weights otherwise."""
    from genrestore.weights import WeightNotFound, load_state_dict

    model = LPIPS(net)
    parts = []
    try:
        model.load_heads(load_state_dict(HEADS_WEIGHT[net]))
        parts.append("shipped heads")
    except (WeightNotFound, KeyError, OSError):
        parts.append("random heads")
    try:
        model.backbone.load_torchvision(load_state_dict(BACKBONE_WEIGHT[net]))
        parts.append("store backbone")
    except (WeightNotFound, KeyError, OSError):
        parts.append("RANDOM backbone (speed only)")
    return model.eval(), ", ".join(parts)


def lpips_package(net: str):
    """The ``lpips`` package's model with a random backbone, or why it is unavailable."""
    try:
        import lpips
    except Exception as e:  # ImportError, or torchvision missing inside it
        return None, f"{type(e).__name__}: {e}"
    return lpips.LPIPS(net=net, pnet_rand=True, verbose=False).eval(), ""


def lpips_rows(batches: dict[int, tuple[torch.Tensor, torch.Tensor]], timer: Timer, gpu: torch.device | None,
               configs: list[tuple[str, int, int]]) -> list[Row]:
    rows = []
    for net, size, n in configs:
        model, weights = lpips_model(net)
        x, y = (t[:n].contiguous() for t in batches[size])
        with torch.inference_mode():
            r_ours, _ = timer.rate(lambda: model(x, y), n)
            r_gpu = None
            if gpu is not None:
                mg, xg, yg = model.to(gpu), x.to(gpu), y.to(gpu)
                r_gpu = timer.rate(lambda: mg(xg, yg), n, cuda=True)[0]
                model.cpu()
            ref, why = lpips_package(net)
            if ref is not None:
                r_ref = timer.rate(lambda: ref(x, y, normalize=True), n)[0]
                ref_note = f"; lpips package (random backbone): {_fmt(r_ref)} img/s"
            else:
                ref_note = f"; lpips package not timed ({why})"
        rows.append(Row(f"LPIPS {net}", size, n, r_ours, r_gpu, note=f"{weights}{ref_note}"))
        print(f"  LPIPS {net:<12} {size:>4} done", file=sys.stderr, flush=True)
    return rows


def frechet_table(d: int, timer: Timer, gpu: torch.device | None) -> str:
    g = torch.Generator().manual_seed(0)
    stats = []
    for shift in (0.0, 0.1):
        s = FeatureStats()
        scale = torch.rand(d, generator=g) * 2 + 0.1 + shift  # per-feature scales, like pooled CNN features
        s.update((torch.randn(4096, d, generator=g) + shift).relu() * scale)
        stats.append((s.mean, s.cov))
    (mu1, s1), (mu2, s2) = stats
    r_ours, v_ours = timer.rate(lambda: frechet_distance(mu1, s1, mu2, s2), 1)
    r_gpu = None
    if gpu is not None:
        args = [t.to(gpu) for t in (mu1, s1, mu2, s2)]
        r_gpu = timer.rate(lambda: frechet_distance(*args), 1, cuda=True)[0]
    np_args = [t.numpy() for t in (mu1, s1, mu2, s2)]
    r_ref, v_ref = timer.rate(lambda: frechet_scipy(*np_args), 1)
    print("  Frechet distance done", file=sys.stderr, flush=True)
    head = ["d", "ours (s/call)"] + (["ours GPU (s/call)"] if gpu is not None else []) + \
           ["scipy.linalg.sqrtm, pytorch-fid formula (s/call)", "ours speed-up", "FD ours", "FD scipy",
            "relative difference"]
    cells = [f"{d}", f"{1 / r_ours:.2f}"] + ([f"{1 / r_gpu:.3f}"] if r_gpu is not None else []) + \
            [f"{1 / r_ref:.2f}", f"{r_ours / r_ref:.1f}x", f"{v_ours:.6f}", f"{v_ref:.6f}",
             f"{abs(v_ours - v_ref) / abs(v_ref):.1e}"]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|",
                      "| " + " | ".join(cells) + " |"])


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_gpu_column_argument(parser)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--quick", action="store_true",
                       help="256 only, LPIPS alex only, Frechet at d = 512, shorter timing")
    scope.add_argument("--full", action="store_true", help="also LPIPS vgg at 1024 (batch 1)")
    parser.add_argument("--min-time", type=float, default=None,
                        help="seconds of timed calls per measurement (default 0.5, 0.2 with --quick)")
    args = parser.parse_args(argv)

    gpu = gpu_column(parser, args.device)
    min_time = args.min_time if args.min_time is not None else (0.2 if args.quick else 0.5)
    sizes = (256,) if args.quick else (256, 1024)
    fd_dim = 512 if args.quick else 2048
    lpips_configs = [("alex", 256, 16)] if args.quick else [("alex", 256, 16), ("vgg", 256, 4), ("alex", 1024, 4)]
    if args.full:
        lpips_configs.append(("vgg", 1024, 1))

    import scipy
    import skimage

    try:
        import torchmetrics
        tm_version, has_tm = torchmetrics.__version__, True
    except ImportError:
        tm_version, has_tm = "not installed", False

    imgs, source = load_photos()
    batches = {}
    for size in sizes:
        x = photo_batch(imgs, size)
        batches[size] = (x, jpeg_pillow(x, JPEG_QUALITY))
    how = {s: ("crops" if all(min(im.shape[-2:]) >= s for im in imgs) else "central squares resized (bicubic)")
           for s in sizes}

    device = "cpu" + (f" + cuda ({torch.cuda.get_device_name(gpu)})" if gpu is not None else "")
    print(f"torch {torch.__version__}, torchmetrics {tm_version}, scikit-image {skimage.__version__}, "
          f"scipy {scipy.__version__}, numpy {np.__version__}; threads {torch.get_num_threads()}, device {device}")
    busy = CpuUse()
    time.sleep(0.5)
    before = busy.others()
    if before is not None:
        print(f"CPU in use by other processes just before the run: {before:.0%} of {os.cpu_count()} CPUs"
              + (" -- the timings will be noisy" if before > 0.1 else ""))
    print("images: " + "; ".join(f"{s}x{s} batch {BATCH[s]} ({how[s]})" for s in sizes)
          + f", 8-bit float32, of {source}; distorted = JPEG q{JPEG_QUALITY} (Pillow)")
    print(f"timing >= {min_time:g} s and >= 2 calls after 1 warm-up\n", flush=True)

    start = time.perf_counter()
    during = CpuUse()
    rows: list[Row] = []
    for size in sizes:
        x, y = batches[size]
        rows += full_reference_rows(x, y, Timer(min_time), gpu, has_tm, size)
    rows += lpips_rows(batches, Timer(min_time), gpu, lpips_configs)
    fd = frechet_table(fd_dim, Timer(min_time), gpu)
    print(markdown(rows, gpu is not None))
    print(f"\nFrechet distance, d = {fd_dim} (two sets of 4096 random non-negative features):\n")
    print(fd)
    others = during.others()
    print(f"\n(total {time.perf_counter() - start:.0f} s"
          + (f"; other processes used {others:.0%} of the CPUs meanwhile"
             + (" -- timings noisy" if others > 0.1 else "") if others is not None else "") + ")")


if __name__ == "__main__":
    main()
