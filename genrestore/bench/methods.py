"""The methods and per-image metrics of a benchmark row: each method's restoration of a degraded
crop (classical ones from OpenCV, learned ones loaded once per run), DeSRA detection of outputs,
and the per-image metric functions."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from .._checks import InputError
from .suite import METRICS, diffgar_settings

def _opencv(y: torch.Tensor, fn) -> torch.Tensor:
    import numpy as np

    a = (y[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    out = fn(np.ascontiguousarray(a))
    return torch.from_numpy(out).permute(2, 0, 1)[None].float() / 255


def load_method(method: str, cache: dict):
    """A learned method's model, loaded from disk once per run into ``cache`` (``None`` for the
    classical methods). The harness calls it before timing a row, so seconds per image exclude it."""
    if method not in cache:
        kind, _, arg = method.partition(":")
        if kind == "inpaint":
            from ..restore.inpaint import Inpainter

            cache[method] = Inpainter.from_file(arg)
        elif kind == "idm":
            from ..restore.idm import IDMRestorer

            cache[method] = IDMRestorer.from_file(arg)
        elif kind.startswith("diffgar"):
            from ..restore.diffgar import DiffGARRestorer

            cache[method] = DiffGARRestorer.from_file(arg)
        elif kind == "stylegan-inversion":
            from ..models.stylegan2 import load_stylegan2

            cache[method] = load_stylegan2(arg)
        elif kind in ("sr", "sr-same-size"):
            from ..models.sr import load_sr

            cache[method] = load_sr(arg)
        else:
            cache[method] = None
    return cache[method]


def run_method(method: str, task_name: str, task, y: torch.Tensor, params, size: tuple[int, int], seed: int,
               key: str, cache: dict) -> torch.Tensor:
    """One method's restoration of the degraded ``y`` at the ground truth's ``size``."""
    import cv2

    from .._random import generator_for
    from ..degrade import resize

    kind = method.partition(":")[0]
    up = resize(y, size, "bicubic").clamp(0, 1) if tuple(y.shape[-2:]) != size else y
    if kind == "degraded":
        return up
    if kind in ("telea", "navier-stokes"):
        from ..degrade.tasks import inpainting_mask

        mask = inpainting_mask(task, params, up)
        hole = ((1 - mask[0, 0]) * 255).to(torch.uint8).numpy()
        flag = cv2.INPAINT_TELEA if kind == "telea" else cv2.INPAINT_NS
        return _opencv(up, lambda a: cv2.inpaint(a, hole, 3, flag))
    if kind == "nlmeans":
        return _opencv(up, lambda a: cv2.fastNlMeansDenoisingColored(a, None, 10, 10, 7, 21))
    if kind == "jpeg-deblock":
        from ..restore.baselines import jpeg_reapply_deblock

        return jpeg_reapply_deblock(up, task.quality)
    if kind == "inpaint":
        from ..degrade.tasks import inpainting_mask

        return load_method(method, cache).inpaint(up, inpainting_mask(task, params, up), [generator_for(seed, key)])
    if kind == "idm":
        return load_method(method, cache).restore(up, 10, [generator_for(seed, key)])
    if kind.startswith("diffgar"):
        r = load_method(method, cache)
        artifact = task_name if task_name in r.class_names else None
        mode, scale, steps = diffgar_settings(kind)
        if artifact is None:
            if mode == "non-blind":
                raise InputError(f"{method}: the model's classes {list(r.class_names)} do not include {task_name!r}")
            if mode == "guided":
                warnings.warn(f"{method}: {task_name!r} is not among the model's classes {list(r.class_names)}: "
                              "guided DiffGAR runs blind on it", stacklevel=2)
            mode = "blind"
        return r.restore(up, mode, None if mode == "blind" else artifact, scale, steps, [generator_for(seed, key)])
    if kind == "sr":
        return _super_resolve(load_method(method, cache), y, size, method)
    if kind == "sr-same-size":
        return sr_same_size(load_method(method, cache), up)
    if kind == "stylegan-inversion":
        from ..restore.stylegan_inversion import robust_invert

        G = load_method(method, cache)
        if G.resolution != size[0]:
            raise InputError(f"{method}: the generator makes {G.resolution} px images, the suite crops {size[0]} px")
        return robust_invert(G, y, task, params, generator=generator_for(seed, key), progress=False).final.clamp(0, 1)
    raise InputError(f"unknown method {method!r}")


def _super_resolve(net, y: torch.Tensor, size: tuple[int, int], what: str) -> torch.Tensor:
    """``net`` on the low-resolution ``y``, which must be ``size`` divided by the network's scale."""
    from ..models.sr import upscale

    _check_sr_size(int(net.scale), tuple(y.shape[-2:]), size, what)
    return upscale(net, y)


def _check_sr_size(scale: int, low: tuple[int, int], size: tuple[int, int], what: str) -> None:
    """Refuse a x``scale`` model whose output for the task's ``low`` ``(H, W)`` input is not ``size``."""
    if (low[0] * scale, low[1] * scale) != tuple(size):
        raise InputError(f"{what}: a x{scale} model turns the task's {low[1]}x{low[0]} px input into "
                         f"{low[1] * scale}x{low[0] * scale}, not the ground truth's {size[1]}x{size[0]}")


def sr_same_size(net, x: torch.Tensor) -> torch.Tensor:
    """An SR network as a restorer of ``(1, 3, H, W)`` images in [0, 1]: its output resized back to
    ``H x W`` with OpenCV's Lanczos (``INTER_LANCZOS4``) and clamped, as Real-ESRGAN's
    ``inference_realesrgan.py --outscale 1`` does (on float32 here, not 8 bits)."""
    from ..models.sr import resize_output, upscale

    return resize_output(upscale(net, x), tuple(x.shape[-2:]))


def _read_mask(path: Path) -> torch.Tensor:
    """A mask PNG as ``(H, W)`` bool (white = artifact)."""
    from ..io import read_image

    return read_image(path, "gray")[0, 0] > 0.5


class _Detector:
    """DeSRA detection of outputs against the MSE-SR of their input (the last input's MSE-SR is kept:
    the methods of one input run one after another)."""

    def __init__(self, config: dict):
        from ..detect import make_segmenter
        from ..models.sr import load_sr

        self.mse = load_sr(config["mse"])
        self.name = config["mse"]
        self.segmenter = make_segmenter(config["segmenter"], config.get("segformer"))
        self.masks = Path(config["masks"]) if "masks" in config else None
        self._last: tuple[str, torch.Tensor] | None = None  # (input key, its MSE-SR)

    def __call__(self, pred: torch.Tensor, y: torch.Tensor, key: str):
        from ..detect import detect_artifacts

        if self._last is None or self._last[0] != key:
            self._last = key, _super_resolve(self.mse, y, tuple(pred.shape[-2:]), f"detection.mse {self.name}")
        return detect_artifacts(pred.clamp(0, 1), self._last[1], self.segmenter, scale=int(self.mse.scale))

    def truth(self, output_name: str) -> torch.Tensor | None:
        """The labelled artifact mask for an output file name, ``(H, W)`` bool, or ``None``."""
        if self.masks is None or not (self.masks / output_name).is_file():
            return None
        return _read_mask(self.masks / output_name)


def _network_calls(method: str, cache: dict, task: str = "") -> int | None:
    """Network evaluations per image of a learned method on ``task`` (after its first run), else ``None``."""
    kind = method.partition(":")[0]
    if kind == "inpaint":
        return cache[method].default_steps
    if kind == "idm":  # IDM: 10 DDPM steps; a one-step model (the regression baseline): 1
        return min(10, cache[method].model.config["schedule"]["num_train_timesteps"])
    if kind.startswith("diffgar"):  # DDIM steps (30); guided: a conditional and an unconditional pass each
        mode, scale, steps = diffgar_settings(kind)
        guided = mode == "guided" and scale != 1 and task in cache[method].class_names  # else blind (run_method)
        return 2 * steps if guided else steps
    return None


def metric_functions(names: list[str]) -> tuple[dict, list[str]]:
    """Per-image metrics by name, ``{name: f(prediction, truth) -> float | None}`` on ``(1, 3, H, W)``
    images in [0, 1], and a note for each one whose weight is absent (its ``f`` returns ``None``)."""
    from .. import weights as ws
    from ..metrics import psnr, ssim

    fns, notes = {}, []
    for n in (n for n in names if n in METRICS):
        if n == "psnr":
            fns[n] = lambda a, b: float(psnr(a, b)[0])
        elif n == "ssim":
            fns[n] = lambda a, b: float(ssim(a, b)[0])
        elif n == "identity":
            from ..models.face_descriptor import WEIGHT_NAME, identity_similarity

            if ws.find(WEIGHT_NAME) is None:
                fns[n] = lambda a, b: None
                notes.append(f"identity: absent ({WEIGHT_NAME} not in the weight store)")
            else:
                fns[n] = lambda a, b: float(identity_similarity(a, b)[0])
        elif n == "niqe":  # no-reference: the output alone, against the shipped pristine model
            from ..metrics.niqe import niqe

            def niqe_or_none(a, b):
                try:
                    return float(niqe(a)[0])
                except InputError:  # fewer than 2 whole 96 px blocks (crops under 192 px)
                    return None

            fns[n] = niqe_or_none
        elif n == "lpips":
            if ws.find("alexnet-torchvision") is None:
                fns[n] = lambda a, b: None
                notes.append("lpips: absent (alexnet-torchvision not in the weight store)")
            else:
                from ..metrics.lpips import lpips

                fns[n] = lambda a, b: float(lpips(a, b, "alex")[0])
    return fns, notes


def fidelity_function() -> tuple[Callable | None, list[str]]:
    """Robust StyleGAN's fidelity (§6.1), ``f(prediction, degraded target, task, generator) -> float
    | None``: LPIPS AlexNet between the prediction degraded again by the task's true degradation,
    drawn from ``generator`` (the target's seed, so the same blur, dead pixels, strokes and JPEG
    grid; the Poisson noise follows the image), and the target; ``None`` where the degraded images
    are smaller than LPIPS takes. Returns ``(None, [note])`` when the backbone is absent."""
    from .. import weights as ws
    from ..metrics.lpips import MIN_SIZE, lpips

    if ws.find("alexnet-torchvision") is None:
        return None, ["fidelity: absent (alexnet-torchvision not in the weight store)"]

    def fidelity(pred: torch.Tensor, y: torch.Tensor, task, generator) -> float | None:
        if min(y.shape[-2:]) < MIN_SIZE["alex"]:
            return None
        again = task.degrade_with_params(pred, generator)[0]
        return float(lpips(again, y, "alex")[0])

    return fidelity, []
