"""The GPU checks that the open issues ask for, in one short run on a lent CUDA machine.

Each check measures against float32 on the same device, or against the CPU, and writes its rows
to ``OUT/gpu_checks.md`` and ``OUT/gpu_checks.json``; both are rewritten (atomically) after every
check, so a run stopped at its time limit still returns what it had measured. A check that
fails is reported with its error and the next one runs.

* ``metrics`` (issue 4): PSNR and SSIM (RGB and Y, crop 4) on the GPU against the CPU values;
  LPIPS alex/vgg and the FID Inception's pool3 features, and FID between two sets from them,
  under bf16 and fp16 autocast against float32 (target: within 1e-3); images/s of each at
  256 px, batch 16. Backbones and Inception load from the weight store when present, else they
  have random weights (seeded; the report says which): those rows test the arithmetic only.
* ``sr`` (issue 5): every SR model of the registry that is in the store, on val crops of 256 px
  with ``--tile 256 --tile-pad 16``: ``half`` (bf16) against float32 in 1/255, megapixels/s of
  both; and the fp16 NaN guard (bf16 unavailable, a tile that overflows only in half precision).
* ``idm`` (issue 6): ``IDMRestorer.restore`` images/s at 256 px, batch 32, 10 steps, bf16
  autocast and float32 (target: >= 50 images/s on an H100), and one 512 px photo in seconds.
* ``train`` (planning issues 6-8): optimizer steps/s of the IDM recipe's UNet at 128 px, batch 32,
  bf16 autocast (after warm-up steps).
* ``inversion`` (issue 7): seconds per image of the robust 3-phase inversion and of Adam in W+
  (450 steps each) at batch 4, on a random generator with the CPU prior's shape (64 px,
  channel base 4096, channel max 64) or on ``--generator``.

Run (on the device machine; ``--tiny`` shrinks every size for a smoke run on a CPU)::

    python benchmarks/gpu_checks.py -o "$OUT" --data data/val
    python benchmarks/gpu_checks.py -o /tmp/gc --device cpu --tiny
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
import warnings
from pathlib import Path

import torch

from _common import VAL_PHOTOS
from genrestore import weights as ws
from genrestore.io import atomic_write, list_images, read_image



class Report:
    """Rows of results per check, rewritten as markdown and JSON after each :meth:`add`."""

    def __init__(self, out: Path, header: str) -> None:
        self.out, self.header, self.sections = out, header, {}
        out.mkdir(parents=True, exist_ok=True)

    def add(self, check: str, lines: list[str], data: dict) -> None:
        self.sections[check] = {"lines": lines, "data": data}
        self._write()

    def _write(self) -> None:
        md = [self.header, ""]
        for name, s in self.sections.items():
            md += [f"## {name}", "", *s["lines"], ""]
        text = "\n".join(md)
        atomic_write(self.out / "gpu_checks.md", lambda p: Path(p).write_text(text))
        blob = json.dumps({k: s["data"] for k, s in self.sections.items()}, indent=1, default=str)
        atomic_write(self.out / "gpu_checks.json", lambda p: Path(p).write_text(blob))


def timed(fn, device: torch.device, min_time: float, min_calls: int = 2) -> tuple[float, object]:
    """(seconds per call, last result) after one warm-up call; synchronizes CUDA around calls."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    out = fn()
    sync()
    calls, t0 = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - t0 < min_time:
        out = fn()
        calls += 1
    sync()
    return (time.perf_counter() - t0) / calls, out


def photo_crops(data: str, count: int, size: int, seed: int = 0) -> torch.Tensor:
    """``count`` crops of ``size`` px, round-robin over the photos, positions from ``seed``."""
    paths = list_images([data])
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(count):
        x = read_image(paths[i % len(paths)], "rgb")[0]
        h, w = x.shape[-2:]
        y0 = int(torch.randint(h - size + 1, (1,), generator=g))
        x0 = int(torch.randint(w - size + 1, (1,), generator=g))
        out.append(x[:, y0:y0 + size, x0:x0 + size])
    return torch.stack(out)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def _half_label(name: str, device: torch.device) -> str:
    return f"{name} autocast" if device.type == "cuda" else f"{name} (not on the CPU: float32)"


def _scale_preserving_init(model: torch.nn.Module) -> torch.nn.Module:
    """He-normal convolutions and linear layers (ReLU gain), so that random weights keep the
    activations near unit scale through a deep network (PyTorch's default init shrinks them by
    about 3x per layer, to ~1e-7 at Inception's pool3, where rounding checks mean nothing)."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return model


HALVES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_metrics(ctx) -> tuple[list[str], dict]:
    from genrestore.degrade import jpeg_pillow
    from genrestore.metrics import psnr, ssim
    from genrestore.metrics.distribution import FeatureStats, fid_from_stats
    from genrestore.metrics.lpips import BACKBONE_WEIGHT, LPIPS
    from genrestore.models.inception import FIDInceptionV3

    dev, n, size = ctx.device, ctx.batch, ctx.size
    x = photo_crops(ctx.data, n, size)
    y = jpeg_pillow(x, 20)
    xg, yg = x.to(dev), y.to(dev)
    lines = [f"{n} crops of {size} px against their JPEG (q 20), device {dev}.", "",
             "| metric | value | max abs diff | target | images/s |", "|---|---|---|---|---|"]
    data = {}
    for name, fn in (("PSNR RGB", lambda a, b: psnr(a, b)), ("PSNR Y crop 4", lambda a, b: psnr(a, b, y_channel=True, crop_border=4)),
                     ("SSIM RGB", lambda a, b: ssim(a, b)), ("SSIM Y crop 4", lambda a, b: ssim(a, b, y_channel=True, crop_border=4))):
        ref = fn(x, y)
        secs, got = timed(lambda: fn(xg, yg), dev, ctx.min_time)
        diff = float((got.cpu().double() - ref.double()).abs().max())
        data[name] = {"vs_cpu_max_abs": diff, "images_per_s": n / secs}
        lines.append(f"| {name}, {dev} vs CPU | {float(ref.mean()):.4f} | {diff:.2e} | 1e-4 | {n / secs:,.0f} |")

    for net in ("alex", "vgg"):
        present = ws.find(BACKBONE_WEIGHT[net]) is not None
        torch.manual_seed(0)
        model = LPIPS.from_store(net) if present else LPIPS(net)
        if not present:
            _scale_preserving_init(model.backbone)
            model.load_heads(ws.load_state_dict(f"lpips-{net}-v0.1"))
        model = model.to(dev).eval()
        label = f"LPIPS {net} ({'store' if present else 'random backbone'})"
        with torch.inference_mode():
            secs, ref = timed(lambda: model(xg, yg), dev, ctx.min_time)
            data[label] = {"float32": {"images_per_s": n / secs, "mean": float(ref.mean())}}
            lines.append(f"| {label}, float32 | {float(ref.mean()):.4f} | - | - | {n / secs:,.0f} |")
            for h, dtype in HALVES.items():
                with _autocast(dev, dtype if dev.type == "cuda" else None):
                    secs, got = timed(lambda: model(xg, yg), dev, ctx.min_time)
                diff = float((got.float() - ref).abs().max())
                rel = diff / max(float(ref.abs().mean()), 1e-30)  # random backbones give small distances
                data[label][h] = {"max_abs": diff, "max_rel_to_mean": rel, "images_per_s": n / secs}
                lines.append(f"| {label}, {_half_label(h, dev)} | {float(got.float().mean()):.4f} | "
                             f"{diff:.2e} ({rel:.1e} of the mean) | 1e-3 | "
                             f"{n / secs:,.0f} |")

    present = ws.find("inception-fid") is not None
    torch.manual_seed(0)
    inc = FIDInceptionV3.from_store() if present else _scale_preserving_init(FIDInceptionV3())
    if ctx.tiny:
        inc.input_size = 75
    inc = inc.to(dev).eval()
    label = f"Inception pool3 ({'store' if present else 'random weights'})"
    feats = {}
    with torch.inference_mode():
        for h, dtype in (("float32", None), *HALVES.items()):
            with _autocast(dev, dtype if dev.type == "cuda" else None):
                secs, (fx, _) = timed(lambda: inc(xg), dev, ctx.min_time)
                fy = inc(yg)[0]
            feats[h] = (fx.float().double().cpu(), fy.float().double().cpu(), n / secs)
    fx32, fy32, rate32 = feats["float32"]
    scale = float(fx32.abs().max())
    data[label] = {"float32": {"images_per_s": rate32, "max_abs_feature": scale}}
    lines.append(f"| {label}, float32 | max feature {scale:.3g} | - | - | {rate32:,.0f} |")

    def fid(a, b):  # few images: singular covariances, which the formula handles (eigenvalues clipped at 0)
        sa, sb = FeatureStats(), FeatureStats()
        sa.update(a)
        sb.update(b)
        return float(fid_from_stats(sa, sb))

    fid32 = fid(fx32, fy32)
    data[label]["float32"]["fid"] = fid32
    for h in HALVES:
        fx, fy, rate = feats[h]
        rel = float((fx - fx32).abs().max()) / max(scale, 1e-30)
        f = fid(fx, fy)
        data[label][h] = {"max_rel_feature": rel, "fid": f, "fid_rel_diff": abs(f - fid32) / max(abs(fid32), 1e-30),
                          "images_per_s": rate}
        lines.append(f"| {label}, {_half_label(h, dev)}: features / FID ({fid32:.4g} in float32) | FID {f:.4g} | "
                     f"{rel:.2e} / {data[label][h]['fid_rel_diff']:.2e} rel. | 1e-3 | {rate:,.0f} |")
    return lines, data


def check_sr(ctx) -> tuple[list[str], dict]:
    from genrestore.models import sr as srm

    dev = ctx.device
    names = [k for k, s in ws._load_registry().items()
             if (s.config or {}).get("arch") in ("rrdbnet", "srvgg", "rdn", "rrdn") and ws.find(k) is not None]
    side = 64 if ctx.tiny else 256
    x = photo_crops(ctx.data, 2, side, seed=1).to(dev)
    lines = [f"2 val crops of {side} px, tile 256 pad 16, device {dev}.", "",
             "| model | float32 MPix/s (output) | half MPix/s | half vs float32 max abs (1/255) | target |",
             "|---|---|---|---|---|"]
    data = {"absent": [k for k, s in ws._load_registry().items()
                       if (s.config or {}).get("arch") in ("rrdbnet", "srvgg", "rdn", "rrdn") and k not in names]}
    for name in names:
        net = srm.load_sr(name, dev)
        mpix = x.shape[0] * x.shape[-1] * x.shape[-2] * net.scale ** 2 / 1e6
        s32, y32 = timed(lambda: srm.upscale(net, x, 256, 16), dev, ctx.min_time)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            s16, y16 = timed(lambda: srm.upscale(net, x, 256, 16, half=True), dev, ctx.min_time)
        diff = float((y16 - y32).abs().max()) * 255
        data[name] = {"float32_mpix_s": mpix / s32, "half_mpix_s": mpix / s16, "max_abs_255": diff,
                      "nan_retries": len(caught)}
        lines.append(f"| {name} | {mpix / s32:.1f} | {mpix / s16:.1f} | {diff:.2f} | 2 |")

    class OverflowsInHalf(torch.nn.Module):
        """0.5 everywhere in float32; under fp16 autocast its convolution (1e5 x the channel sum of
        an image in [0, 1]) passes fp16's largest value, 65504, and the output becomes NaN."""

        scale = 1

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 1, bias=False)
            torch.nn.init.constant_(self.conv.weight, 1e5)

        def forward(self, t):
            return self.conv(t).float() * 0 + 0.5

    if dev.type == "cuda":
        from unittest import mock

        from genrestore.models import precision

        # force the fp16 path (an H100 gets bf16, which does not overflow here)
        with mock.patch.object(precision, "half_dtype", lambda device: torch.float16), \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            net = OverflowsInHalf().to(dev)
            with torch.autocast("cuda", dtype=torch.float16):
                raw = net(x)
            y = srm.upscale(net, x, half=True)
        ok = bool(torch.isfinite(y).all()) and float(y.max()) == 0.5 and not bool(torch.isfinite(raw).all())
        data["nan_guard_fp16"] = {"raw_half_finite": bool(torch.isfinite(raw).all()), "retried": len(caught),
                                  "guarded_output_ok": ok}
        lines += ["", f"fp16 NaN guard: the net alone in fp16 gives finite values: {bool(torch.isfinite(raw).all())}; "
                  f"upscale(half=True) warned {len(caught)} time(s) and returned the float32 result: {ok}."]
    if data["absent"]:
        lines += ["", "not in the store (not measured): " + ", ".join(data["absent"])]
    return lines, data


def check_idm(ctx) -> tuple[list[str], dict]:
    from genrestore.restore.idm import IDMRestorer

    dev = ctx.device
    r = IDMRestorer.from_file(ctx.idm_model, dev)
    batch, size = (2, 64) if ctx.tiny else (32, 256)
    y = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0), device="cpu").to(dev)
    lines = [f"`{ctx.idm_model}` ({sum(p.numel() for p in r.model.parameters()):,} parameters), "
             f"batch {batch} of {size} px, 10 DDPM steps, device {dev}.", "",
             "| precision | images/s | target |", "|---|---|---|"]
    data = {}
    with torch.inference_mode():
        for label, dtype in ((_half_label("bf16", dev), torch.bfloat16 if dev.type == "cuda" else None), ("float32", None)):
            with _autocast(dev, dtype):
                secs, _ = timed(lambda: r.restore(y, 10, torch.Generator(dev).manual_seed(1)), dev, ctx.min_time)
            data[label] = batch / secs
            lines.append(f"| {label} | {batch / secs:,.1f} | >= 50 (bf16, batch 32, 256 px) |")
        photo = photo_crops(ctx.data, 1, 128 if ctx.tiny else 512).to(dev)
        with _autocast(dev, torch.bfloat16 if dev.type == "cuda" else None):
            secs, _ = timed(lambda: r.restore(photo, 10, torch.Generator(dev).manual_seed(2)), dev, 0, min_calls=1)
    data["photo_seconds"] = secs
    lines += ["", f"one {photo.shape[-1]} px photo, 10 steps: {secs:.2f} s"]
    return lines, data


def check_train(ctx) -> tuple[list[str], dict]:
    from genrestore.degrade import PIPELINES
    from genrestore.diffusion import ConditionalUNet
    from genrestore.diffusion.train import _denoising_step

    dev = ctx.device
    size, batch, steps = (32, 4, 3) if ctx.tiny else (128, 32, 20)
    torch.manual_seed(0)
    unet = {"sample_size": size, "block_out_channels": [32, 64, 128, 128], "layers_per_block": 1, "norm_num_groups": 32,
            "down_block_types": ["DownBlock2D"] * 3 + ["AttnDownBlock2D"],
            "up_block_types": ["AttnUpBlock2D"] + ["UpBlock2D"] * 3}
    model = ConditionalUNet(3, prediction_type="sample", unet=unet, residual=True).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4)
    step = _denoising_step(model, opt, dev)
    x0 = photo_crops(ctx.data, batch, size, seed=3)
    y = PIPELINES["idm"].degrade(x0, [torch.Generator().manual_seed(i) for i in range(batch)])
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for k in range(3):  # warm-up (cuDNN autotuning)
        step(x0, y, None, torch.Generator().manual_seed(k), k)
    sync()
    t0 = time.perf_counter()
    for k in range(steps):
        step(x0, y, None, torch.Generator().manual_seed(100 + k), k)
    sync()
    rate = steps / (time.perf_counter() - t0)
    degrade_rate = 5 / sum(_timed_degrade(PIPELINES["idm"], x0) for _ in range(5))
    lines = [f"IDM recipe's UNet (32-64-128-128, {sum(p.numel() for p in model.parameters()):,} parameters), "
             f"{size} px, batch {batch}, {'bf16 autocast' if dev.type == 'cuda' else 'float32'}: "
             f"{rate:.2f} optimizer steps/s = {rate * batch:,.0f} crops/s (data on the CPU, copied each step)"]
    lines.append(f"the IDM degradation of the batch on the CPU: {degrade_rate:.1f} batches/s")
    return lines, {"steps_per_s": rate, "crops_per_s": rate * batch, "degrade_batches_per_s": degrade_rate}


def _timed_degrade(pipeline, x0) -> float:
    t0 = time.perf_counter()
    pipeline.degrade(x0, [torch.Generator().manual_seed(i) for i in range(x0.shape[0])])
    return time.perf_counter() - t0


def check_inversion(ctx) -> tuple[list[str], dict]:
    from genrestore.degrade import get_task
    from genrestore.models.stylegan2 import StyleGAN2Generator, load_stylegan2
    from genrestore.restore.stylegan_inversion import InversionConfig, adam_invert, perceptual_loss, robust_invert

    dev = ctx.device
    torch.manual_seed(0)
    if ctx.generator:
        G = load_stylegan2(ctx.generator, dev)
    else:
        cfg = (dict(z_dim=32, w_dim=32, resolution=32, channel_base=256, channel_max=32, n_mapping_layers=2)
               if ctx.tiny else dict(resolution=64, channel_base=4096, channel_max=64))
        G = StyleGAN2Generator(**cfg)
        G.estimate_w_avg(1000, generator=torch.Generator().manual_seed(0))
        G = G.to(dev).eval()
    scale = 0.02 if ctx.tiny else 1.0
    cfg = InversionConfig(step_scale=scale)
    gt = photo_crops(ctx.data, 4, G.resolution, seed=4).to(dev)
    task = get_task("denoise", "M")
    y, params = task.degrade_with_params(gt, torch.Generator().manual_seed(0))
    distance = perceptual_loss("vgg", dev)
    data, lines = {}, [f"generator {ctx.generator or 'random'} ({G.resolution} px, "
                       f"{sum(p.numel() for p in G.parameters()):,} parameters), denoise M, batch 4, "
                       f"loss {distance[1]}, device {dev}.", "", "| method | steps | s / image |", "|---|---|---|"]
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    steps = max(1, round(450 * scale))
    for name, run in (("robust 3-phase (ours)", lambda: robust_invert(G, y, task, params, cfg, distance,
                                                                       torch.Generator().manual_seed(1), progress=False)),
                      ("Adam W+", lambda: adam_invert(G, y, task, params, "w+", steps, config=cfg, distance=distance,
                                                      generator=torch.Generator().manual_seed(2), progress=False))):
        sync()
        t0 = time.perf_counter()
        run()
        sync()
        secs = (time.perf_counter() - t0) / gt.shape[0]
        data[name] = secs
        lines.append(f"| {name} | {sum(cfg.phase_steps()) if 'ours' in name else steps} | {secs:.3f} |")
    return lines, data


CHECKS = {"metrics": check_metrics, "sr": check_sr, "idm": check_idm, "train": check_train, "inversion": check_inversion}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", required=True, help="folder for gpu_checks.md and gpu_checks.json")
    ap.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    ap.add_argument("--data", default=str(Path("data/val") if Path("data/val").is_dir() else VAL_PHOTOS),
                    help="validation photos (default: data/val of the checkout, else ../shared/data/photos/val)")
    ap.add_argument("--checks", default=",".join(CHECKS), help=f"comma-separated subset of {','.join(CHECKS)}")
    ap.add_argument("--idm-model", default="idm-default")
    ap.add_argument("--generator", help="StyleGAN2 .safetensors for the inversion timing (default: random)")
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds of repeated calls per timing")
    ap.add_argument("--tiny", action="store_true", help="small sizes: a smoke run of the script on a CPU")
    args = ap.parse_args(argv)
    unknown = set(args.checks.split(",")) - set(CHECKS)
    if unknown:
        ap.error(f"unknown checks {sorted(unknown)}; expected a subset of {sorted(CHECKS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: CUDA is not available")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    args.device, args.batch, args.size = device, (4 if args.tiny else 16), (64 if args.tiny else 256)
    if args.tiny:
        args.min_time = min(args.min_time, 0.05)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report = Report(Path(args.out), f"# GPU checks: {name}, torch {torch.__version__}, "
                                    f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    failed = 0
    for check in args.checks.split(","):
        t0 = time.perf_counter()
        try:
            lines, data = CHECKS[check](args)
        except Exception as e:  # a report tool: record the failure, run the next check
            traceback.print_exc()
            lines, data, failed = [f"FAILED: {type(e).__name__}: {e}"], {"error": repr(e)}, failed + 1
        secs = time.perf_counter() - t0
        report.add(check, lines + ["", f"({secs:.1f} s)"], {**data, "seconds": secs})
        print(f"{check}: {'failed' if 'error' in data else 'done'} in {secs:.1f} s", file=sys.stderr, flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print((Path(args.out) / "gpu_checks.md").read_text())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
