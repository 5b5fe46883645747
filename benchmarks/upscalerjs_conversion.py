"""idealo's RDN/RRDN converted from ``@upscalerjs/models@0.9.0`` against tfjs running them in node.

What is measured
----------------
For each TF.js layers model of the package (RDN x2, x3, x4, the small RDN x2 "psnr-small" and
the RRDN x4 "gans"): ``genrestore.models.rdn.convert_tfjs_sr`` + ``load_sr_state`` in torch
(float32, CPU) against ``tests/node/upscalerjs_reference.cjs`` (@tensorflow/tfjs 4.22.0, pure-JS
CPU backend), both fed the same float32 RGB crops in [0, 1]. Columns: the largest and the mean
absolute difference of the raw (unclamped) outputs, times 255; the PSNR between the two outputs
(peak 1); torch's milliseconds per image (batch of all crops, one warm-up call, then the fastest
of repeated calls, at least 3 and 0.5 s) and tfjs's (one call, as the node script reports it); the footer gives
the load average, since other processes on the machine inflate both. Target: max abs
difference <= 2/255. ``params`` counts the network's parameters and ``stored MB`` is the size of
the safetensors file of the stored state (uint8 codes + per-tensor scale/min).

Crops: each photo is downscaled by 4 with Pillow's bicubic (``Image.resize((w // 4, h // 4),
Image.BICUBIC)``), then the ``--size`` square with the largest spatial standard deviation (mean of
the three channels') on a grid of step ``--size`` is taken (uint8, then / 255).

``--write-reference PATH`` writes instead the test reference ``tests/data/upscalerjs_reference.npz``:
24x24 crops of two photos (Bridge_by_Sander_Klootwijk.png, FallenLeaf.png) made as above,
``inputs`` (uint8, N x 24 x 24 x 3) and the node outputs of RDN x2/x3/x4 and RRDN x4 as float16
NHWC (``rdn_x2``, ``rdn_x3``, ``rdn_x4``, ``rrdn_x4``).

Needs node and ``npm install @tensorflow/tfjs@4.22.0`` in ``--tfjs-dir`` (default tests/node;
NODE_PATH works too) and the unpacked package (``--models``, default $GENRESTORE_UPSCALERJS_MODELS
or /tmp/sr/npm/package/models). Run::

    python benchmarks/upscalerjs_conversion.py --tfjs-dir /tmp/tfjsref          # about 2 minutes on 2 CPU cores
    python benchmarks/upscalerjs_conversion.py --tfjs-dir /tmp/tfjsref --write-reference tests/data/upscalerjs_reference.npz
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from genrestore.models.rdn import build_sr_net, convert_tfjs_sr, load_sr_state

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "photos" / "val"
SCRIPT = ROOT / "tests" / "node" / "upscalerjs_reference.cjs"
MODELS = {"rdn_x2": "div2k/005-2x", "rdn_x3": "div2k/019-3x", "rdn_x4": "div2k/017-4x",
          "rdn_small_x2": "idealo/psnr-small-quant-uint8", "rrdn_x4": "idealo/gans"}
REFERENCE_KEYS = ("rdn_x2", "rdn_x3", "rdn_x4", "rrdn_x4")
REFERENCE_PHOTOS = ("Bridge_by_Sander_Klootwijk.png", "FallenLeaf.png")
BENCH_PHOTOS = ("LadyBird.png", "Path.png", "Storm.png")


def lr_crop(path: Path, size: int) -> np.ndarray:
    """``size`` x ``size`` uint8 RGB crop of the photo downscaled by 4 (Pillow bicubic): the grid crop of largest std per channel."""
    from PIL import Image

    im = Image.open(path).convert("RGB")
    lr = np.asarray(im.resize((im.width // 4, im.height // 4), Image.BICUBIC))
    crops = [lr[y:y + size, x:x + size] for y in range(0, lr.shape[0] - size + 1, size)
             for x in range(0, lr.shape[1] - size + 1, size)]
    return max(crops, key=lambda c: c.astype(np.float64).std(axis=(0, 1)).mean())


def run_node(model_json: Path, x: np.ndarray, scale: int, tfjs_dir: Path) -> tuple[np.ndarray, float]:
    """tfjs output (N, sH, sW, 3) float32 for float32 NHWC input ``x``, and tfjs's milliseconds for the batch."""
    n, h, w, _ = x.shape
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "x.f32", Path(tmp) / "y.f32"
        x.astype(np.float32).tofile(src)
        done = subprocess.run(["node", str(SCRIPT), str(model_json), str(src), str(n), str(h), str(w), str(dst)],
                              cwd=tfjs_dir, check=True, capture_output=True, text=True)
        y = np.fromfile(dst, np.float32).reshape(n, h * scale, w * scale, 3)
    return y, float(re.search(r"in (\d+) ms", done.stdout).group(1))


def torch_ms_per_image(net: torch.nn.Module, x: torch.Tensor, min_time: float = 0.5) -> float:
    """Fastest of repeated batch calls (at least 3 and ``min_time`` s), per image: robust to other processes."""
    with torch.inference_mode():
        net(x)
        times, start = [], time.perf_counter()
        while len(times) < 3 or time.perf_counter() - start < min_time:
            t = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t)
        return min(times) / x.shape[0] * 1e3


def write_reference(out: Path, models: Path, tfjs_dir: Path) -> None:
    inputs = np.stack([lr_crop(PHOTOS / p, 24) for p in REFERENCE_PHOTOS])
    x = inputs.astype(np.float32) / 255
    arrays = {"inputs": inputs}
    for key in REFERENCE_KEYS:
        _, config = convert_tfjs_sr(models / MODELS[key] / "model.json")
        y, _ = run_node(models / MODELS[key] / "model.json", x, config["scale"], tfjs_dir)
        arrays[key] = y.astype(np.float16)
        print(f"{key}: {MODELS[key]} -> {y.shape}, range [{y.min():.3f}, {y.max():.3f}]")
    np.savez_compressed(out, **arrays)
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=Path, default=Path(os.environ.get("GENRESTORE_UPSCALERJS_MODELS",
                                                                           "/tmp/sr/npm/package/models")))
    parser.add_argument("--tfjs-dir", type=Path, default=ROOT / "tests" / "node")
    parser.add_argument("--size", type=int, default=32, help="LR crop size (px)")
    parser.add_argument("--photos", nargs="*", default=list(BENCH_PHOTOS))
    parser.add_argument("--write-reference", type=Path)
    args = parser.parse_args()
    if args.write_reference:
        write_reference(args.write_reference, args.models, args.tfjs_dir)
        return
    from safetensors.torch import save

    inputs = np.stack([lr_crop(PHOTOS / p, args.size) for p in args.photos])
    x_np = inputs.astype(np.float32) / 255
    x = torch.from_numpy(x_np).permute(0, 3, 1, 2).contiguous()
    print(f"{len(inputs)} crops of {args.size}x{args.size} (photos / 4, bicubic): {', '.join(args.photos)}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    head = (f"| {'model':<13} | {'source':<29} | {'params':>9} | {'stored MB':>9} | {'max abs d x255':>14} | "
            f"{'mean abs d x255':>15} | {'PSNR dB':>7} | {'torch ms/img':>12} | {'tfjs ms/img':>11} |")
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for key, rel in MODELS.items():
        state, config = convert_tfjs_sr(args.models / rel / "model.json")
        net = load_sr_state(build_sr_net(config), state).eval()
        params = sum(p.numel() for p in net.parameters())
        stored_mb = len(save(state)) / 1e6
        with torch.inference_mode():
            ours = net(x).permute(0, 2, 3, 1).numpy()
        ref, node_ms = run_node(args.models / rel / "model.json", x_np, config["scale"], args.tfjs_dir)
        d = np.abs(ours.astype(np.float64) - ref)
        mse = (d ** 2).mean()
        psnr = 10 * np.log10(1 / mse) if mse > 0 else float("inf")
        ms = torch_ms_per_image(net, x)
        print(f"| {key:<13} | {rel:<29} | {params:>9,} | {stored_mb:>9.2f} | {d.max() * 255:>14.2e} | "
              f"{d.mean() * 255:>15.2e} | {psnr:>7.1f} | {ms:>12.1f} | {node_ms / len(inputs):>11.0f} |")
    print(f"1-minute load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs "
          "(above the CPU count, other processes slowed the timings)")


if __name__ == "__main__":
    main()
