"""Training a conditional diffusion restorer (IDM) on clean photos degraded on the fly.

Each step draws a batch of random crops (with random horizontal flips) of the clean photos,
degrades them with ``degrade_fn`` and takes one AdamW step on :func:`.sampling.training_loss`
(IDM eq. 6-7) in model space ``[-1, 1]``; an exponential moving average (EMA) of the weights, with
a warm-up (:func:`ema_update`), is kept beside the trained ones.

Class-conditional models (DiffGAR) train the same way: ``degrade_fn`` then also returns each
image's class index, and :func:`.sampling.training_loss` replaces it by ``[MASK]`` with
probability 1/2 (DiffGAR Alg. 1).

Every random draw of step ``k`` comes from generators seeded by ``(seed, k)`` (crops and flips,
per-image degradations, loss noise, ``[MASK]`` dropout), so no random state needs saving: a run
resumed from ``out_dir/checkpoint.safetensors`` equals an uninterrupted one bit for bit on CPU.

Data: with ``workers > 0`` the batches of the coming steps (crops and degradations, which run on
the CPU image by image) are made ahead in that many worker processes (a ``DataLoader`` over the
step numbers), so a GPU does not wait for them; each batch depends on its step alone, so the
result is the same with any number of workers.

Several processes (GPUs or nodes): the same command under ``accelerate launch`` (or ``torchrun``),
no code change. :class:`TrainRun` then joins the process group through ``accelerate``; each
process draws its own crops and noise (process 0 draws what a single process would), gradients
are averaged over processes before every optimizer step (one flat all-reduce), so the weights
stay identical everywhere, and only process 0 writes checkpoints and the final model.
``batch_size`` is per process.
"""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from .._checks import InputError, check_image
from .._random import Generator, generator_for, rand, randint
from ..models.precision import half_dtype
from .model import ConditionalUNet
from .sampling import to_model_range, training_loss
from .schedulers import make_scheduler

CHECKPOINT = "checkpoint.safetensors"
FINAL = "model.safetensors"
# Run arguments that must match for a resume to continue the same run.
_RUN_KEYS = ("batch_size", "crop", "lr", "ema_decay", "seed", "n_images", "data_sha256", "config", "loss", "half",
             "init_sha256", "settings")
# run values that are left out of the record when they are the default (older checkpoints lack them)
_RUN_DEFAULTS = {"loss": "mse", "world_size": 1, "half": False, "init_sha256": None, "settings": None}
# run values that older checkpoints lack and that have no default: unknown there, so not compared
_RUN_UNKNOWN_IF_MISSING = ("data_sha256", "vq_weights")  # vq_weights: train_token_transformer's autoencoder


def load_images(images: Sequence[torch.Tensor] | str | os.PathLike, channels: int = 3) -> list[torch.Tensor]:
    """Clean photos as a list of ``(C, H, W)`` tensors in ``[0, 1]``, from tensors or a folder.

    ``channels = 6`` takes (clean, degraded) pairs stacked along channels, so one crop cuts both."""
    if isinstance(images, (str, os.PathLike)):
        from ..io import list_images, read_image

        images = [read_image(p, mode="rgb")[0] for p in list_images([images])]
    out = []
    for i, im in enumerate(images):
        im = im[None] if im.ndim == 3 else im
        check_image(im, f"images[{i}]", channels=(channels,))
        out.extend(im.float())
    if not out:
        raise InputError("expected at least one training image, got none")
    return out


def data_digest(images: Sequence[torch.Tensor], labels: torch.Tensor | None = None) -> str:
    """sha256 of the training data: each ``(C, H, W)`` image's shape and float32 values, in order
    (and the ``labels``, if given). It depends on the pixels alone, not on where the files lie or
    what they are called, and is the same in every process that holds the same data."""
    import hashlib

    h = hashlib.sha256()
    hash_tensors(h, ((f"{tuple(im.shape)}\n", im.float()) for im in images))
    if labels is not None:
        h.update(f"labels {torch.as_tensor(labels).tolist()}\n".encode())
    return h.hexdigest()


def hash_tensors(h, items: Iterable[tuple[str, torch.Tensor]]) -> None:
    """Feed ``h`` (a :mod:`hashlib` object) each ``(header, tensor)``: the header's text, then the
    tensor's bytes, wherever it lies and whatever its layout."""
    for header, t in items:
        h.update(header.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())


def random_crops(images: Sequence[torch.Tensor], batch_size: int, crop: int, generator: Generator,
                 return_index: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``(batch_size, C, crop, crop)`` random crops, each flipped left-right with probability 1/2.

    The image index, crop offsets and flips are drawn from ``generator`` in that order. With
    ``return_index``, also the ``(batch_size,)`` index of each crop's image.
    """
    idx = randint(generator, batch_size, 0, len(images))
    u = rand(generator, (batch_size, 3), dtype=torch.float64)
    crops = []
    for i in range(batch_size):
        im = images[int(idx[i])]
        h, w = im.shape[-2:]
        y0, x0 = int(u[i, 0] * (h - crop + 1)), int(u[i, 1] * (w - crop + 1))
        c = im[:, y0:y0 + crop, x0:x0 + crop]
        crops.append(c.flip(-1) if u[i, 2] < 0.5 else c)
    return (torch.stack(crops), idx) if return_index else torch.stack(crops)


def state_tensors(modules: dict[str, torch.nn.Module], optimizers: dict[str, tuple[torch.optim.Optimizer, torch.nn.Module]]
                  ) -> dict[str, torch.Tensor]:
    """One flat tensor dict of a run's state: ``NAME.<param>`` for each module, and
    ``OPT.<param index>.{step,exp_avg,exp_avg_sq}`` for each optimizer over its module's parameters."""
    out = {f"{name}.{k}": v for name, m in modules.items() for k, v in m.state_dict().items()}
    for opt_name, (opt, module) in optimizers.items():
        for i, p in enumerate(module.parameters()):
            for k, v in opt.state.get(p, {}).items():
                out[f"{opt_name}.{i}.{k}"] = torch.as_tensor(v)
    return {k: v.detach().cpu().contiguous() for k, v in out.items()}


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], run: dict[str, Any]) -> None:
    """Write ``tensors`` with the JSON ``run`` as metadata to ``path``, atomically."""
    from safetensors.torch import save_file

    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"run": json.dumps(run)})
    os.replace(tmp, path)


def checkpoint_run(path: str | os.PathLike) -> dict[str, Any]:
    """The run record that :func:`save_checkpoint` put in ``path``'s metadata (``step``,
    ``wall_time_s`` and the run arguments); :class:`InputError` naming the file when it is damaged
    or has no such record."""
    from ..io import safetensors_record

    return safetensors_record(path, "run", ("step", "wall_time_s"), "a training checkpoint")


def load_checkpoint(path: Path, modules: dict[str, torch.nn.Module],
                    optimizers: dict[str, tuple[torch.optim.Optimizer, torch.nn.Module]], run: dict[str, Any],
                    keys: Sequence[str] = _RUN_KEYS) -> tuple[int, float]:
    """Load a :func:`state_tensors` checkpoint in place; return ``(step, wall_time_s)``.

    Raises:
        InputError: the checkpoint cannot be read, has no run record, or its run differs from
            ``run`` in one of ``keys``.
    """
    from ..io import load_safetensors

    meta = checkpoint_run(path)
    mismatch = {}
    for k in keys:
        if k in _RUN_UNKNOWN_IF_MISSING and (k not in meta or k not in run):
            continue
        mismatch.update(dict_differences(meta.get(k, _RUN_DEFAULTS.get(k)), run.get(k, _RUN_DEFAULTS.get(k)), k))
    if mismatch:
        data = "; other training images than the checkpoint's" if "data_sha256" in mismatch else ""
        raise InputError(f"{path}: checkpoint of another run (saved vs now: {mismatch}{data}); "
                         "use another output folder or delete the checkpoint")
    tensors = load_safetensors(path)
    for name, m in modules.items():
        m.load_state_dict({k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(f"{name}.")})
    for opt_name, (opt, module) in optimizers.items():
        state = opt.state_dict()
        for i, _ in enumerate(module.parameters()):
            found = [k for k in tensors if k.startswith(f"{opt_name}.{i}.")]
            if found:
                state["state"][i] = {k.split(".", 2)[2]: tensors[k] for k in found}
        opt.load_state_dict(state)
    return meta["step"], meta["wall_time_s"]


def dict_differences(saved: Any, now: Any, key: str = "") -> dict[str, tuple[Any, Any]]:
    """``{key: (saved, now)}`` where they differ; within dicts (a model's config), only the entries
    that differ, as ``key.entry`` (``entry`` for an empty ``key``), so that a message names what changed."""
    if isinstance(saved, dict) and isinstance(now, dict):
        out = {}
        for k in {**saved, **now}:
            out.update(dict_differences(saved.get(k), now.get(k), f"{key}.{k}" if key else k))
        return out
    return {} if saved == now else {key: (saved, now)}


def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float, step: int) -> None:
    """``ema = d ema + (1 - d) w`` with ``d = min(decay, (1 + step) / (10 + step))`` after optimizer
    step ``step`` (from 0); buffers are copied.

    The warm-up (diffusers' ``EMAModel`` default) lets short runs forget the random initial weights:
    with a constant ``d = 0.999``, 22 % of them would remain after 1500 steps.
    """
    d = min(decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), model.parameters()):
            pe.lerp_(p, 1 - d)
        for be, b in zip(ema.buffers(), model.buffers()):
            be.copy_(b)


def _check_labels(labels: torch.Tensor, n: int, num_classes: int) -> torch.Tensor:
    """``labels`` as ``(n,)`` int64 in ``[0, num_classes]`` (the last: ``[MASK]``), or :class:`InputError`."""
    if num_classes == 0:
        raise InputError("degrade_fn returned class labels, but the model has no classes")
    labels = torch.as_tensor(labels)
    if labels.shape != (n,) or labels.dtype != torch.long or ((labels < 0) | (labels > num_classes)).any():
        raise InputError(f"expected class labels as ({n},) int64 in [0, {num_classes}] ({num_classes}: [MASK]), got "
                         f"{tuple(labels.shape)} {labels.dtype} {labels.tolist()}")
    return labels


def cpu_bf16(half: bool, device: str | torch.device) -> bool:
    """Whether ``--half`` trains under bf16 autocast on ``device``: on a CPU that computes bf16
    natively. (On CUDA training is bf16 anyway; elsewhere it stays float32.) Runs record this,
    not the flag, so a checkpoint resumes only where the same arithmetic runs."""
    return half and torch.device(device).type == "cpu" and half_dtype("cpu") == torch.bfloat16


def _optional_run_args(loss: str, half: bool, device: str | torch.device, init_sha256: str | None,
                       settings: str | None = None) -> dict:
    """The run arguments that are recorded only when not their default (:data:`_RUN_DEFAULTS`), so
    that checkpoints made before they existed still resume."""
    return {**({"loss": loss} if loss != "mse" else {}), **({"half": True} if cpu_bf16(half, device) else {}),
            **({"init_sha256": init_sha256} if init_sha256 else {}), **({"settings": settings} if settings else {})}


def _denoising_step(model: ConditionalUNet, opt: torch.optim.Optimizer, device: torch.device, loss: str = "mse",
                    encode: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    sync: Callable[[torch.nn.Module], None] | None = None, half: bool = False):
    """``fn(x0, y, labels, generator, step)``: one optimizer step on :func:`.sampling.training_loss`
    (inputs in ``[0, 1]`` on any device; bf16 autocast on CUDA, and with ``half`` on a CPU that
    computes bf16 natively, :func:`cpu_bf16`). ``encode`` maps images to the model's latent space
    (default: pixels in ``[-1, 1]``)."""
    sched = make_scheduler("ddpm", model.config["schedule"], model.prediction_type)
    autocast = device.type == "cuda" or cpu_bf16(half, device)

    def step_fn(x0, y, labels, generator, step):
        if labels is not None:
            labels = _check_labels(labels, x0.shape[0], model.num_classes).to(device)
        if encode is None:
            x0, y = to_model_range(x0.to(device)), to_model_range(y.to(device))
        else:
            with torch.no_grad():
                x0, y = encode(x0.to(device)), encode(y.to(device))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            value = training_loss(model, x0, y, labels, scheduler=sched,  # [MASK] dropout 0.5 (DiffGAR Alg. 1)
                                  generator=generator, loss=loss)
        if not torch.isfinite(value):
            raise FloatingPointError(f"training loss is {value.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        value.backward()
        if sync is not None:
            sync(model)
        opt.step()

    return step_fn


class TrainRun:
    """What every trainer here shares: checked arguments, the photos, seeded crops, resume from
    ``out_dir/checkpoint.safetensors``, the EMA copy, periodic checkpoints and the final EMA model.

    Usage: build it with the model (an EMA copy ``self.ema`` is made), add further modules and
    optimizers, call :meth:`resume`, then ``for step in run.steps(): ...`` (one optimizer step
    each; EMA and checkpoints follow automatically), or ``for step, batch in run.batches(fn): ...``
    when each step's data is made by ``fn(step)``, and :meth:`finish`.

    Args:
        run: JSON-able run arguments; a checkpoint resumes only if they match (``keys``), and
            only on the same data (``data_sha256``, :func:`data_digest` of the photos, unless
            ``run`` gives it; a checkpoint without one, from before it was recorded, resumes).
        channels_last: store the model's weights (and so its convolutions' layout) channels-last,
            which tensor cores prefer under bf16 autocast; the checkpoints are the same.
        compile: compile the model's forward with ``torch.compile`` (``True``: the default
            inductor backend; a string: that backend). State dict keys are unchanged, so
            checkpoints load with or without it. The EMA copy is not compiled.
        workers: processes that make :meth:`batches`' data ahead (0: in this process).
    """

    def __init__(self, model: torch.nn.Module, images: Sequence[torch.Tensor] | str | os.PathLike, steps: int,
                 batch_size: int, crop: int, ema_decay: float, out_dir: str | os.PathLike, save_every: int,
                 seed: int, device: str | torch.device, run: dict[str, Any], channels: int = 3,
                 time_limit: float | None = None, channels_last: bool = False, compile: bool | str = False,
                 workers: int = 0):
        if not isinstance(steps, int) or steps < 1 or batch_size < 1 or save_every < 1:
            raise InputError(f"expected positive steps, batch_size and save_every, got {steps}, {batch_size}, "
                             f"{save_every}")
        if not isinstance(workers, int) or workers < 0:
            raise InputError(f"expected workers >= 0, got {workers}")
        self.workers = workers
        if not 0 <= ema_decay < 1:
            raise InputError(f"expected ema_decay in [0, 1), got {ema_decay}")
        self.images = load_images(images, channels)
        small = [i for i, im in enumerate(self.images) if min(im.shape[-2:]) < crop]
        if small:
            if isinstance(images, (str, os.PathLike)):  # name the files (in load_images' order)
                from ..io import list_images

                paths = list_images([images])
                names = [f"{paths[i]} ({self.images[i].shape[-1]}x{self.images[i].shape[-2]} px)" for i in small]
                raise InputError(f"images {', '.join(names[:5])}{' ...' if len(names) > 5 else ''} "
                                 f"are smaller than the crop size {crop}")
            raise InputError(f"images {small[:5]} are smaller than the crop size {crop}")
        self.device = torch.device(device)
        self.world, self.rank = 1, 0
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # started by `accelerate launch` or torchrun
            try:
                from accelerate import PartialState
            except ImportError:
                raise ImportError("multi-process training needs accelerate: pip install accelerate") from None
            state = PartialState(cpu=self.device.type == "cpu")
            self.world, self.rank, self.device = state.num_processes, state.process_index, state.device
            run = {**run, "world_size": self.world}
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.total, self.batch_size, self.crop, self.seed = steps, batch_size, crop, seed
        self.ema_decay, self.save_every = ema_decay, save_every
        self.run = {"batch_size": batch_size, "crop": crop, "ema_decay": ema_decay, "seed": seed,
                    "n_images": len(self.images), **run}
        if "data_sha256" not in self.run:  # a caller may digest more (labels): not digested twice then
            self.run["data_sha256"] = data_digest(self.images)
        self.model = model.to(self.device).train()
        self.share_weights(self.model)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(model).eval().requires_grad_(False)
        if compile:  # after the EMA copy: nn.Module.compile keeps the module (and its state dict keys)
            self.model.compile(**({"backend": compile} if isinstance(compile, str) else {}))
        self.modules: dict[str, torch.nn.Module] = {"model": self.model, "ema": self.ema}
        self.optimizers: dict[str, tuple[torch.optim.Optimizer, torch.nn.Module]] = {}
        self.start, self.wall = 0, 0.0
        self.time_limit = time_limit  # seconds of this call; then checkpoint and stop (resume later)
        self.stopped_at: int | None = None

    @property
    def checkpoint(self) -> Path:
        return self.out_dir / CHECKPOINT

    def resume(self, keys: Sequence[str]) -> None:
        """Load the checkpoint if there is one (after every module and optimizer is registered)."""
        if self.checkpoint.is_file():
            # the process count sets the per-process batch and random streams: a resume must keep it,
            # and the data (every trainer's, whatever its keys)
            keys = [*keys, *(k for k in ("world_size", "data_sha256") if k not in keys)]
            self.start, self.wall = load_checkpoint(self.checkpoint, self.modules, self.optimizers, self.run, keys)
            if self.start > self.total:  # else the final model would record fewer steps than it trained
                raise InputError(f"{self.checkpoint} is at step {self.start}, past --steps {self.total}; give "
                                 f"--steps {self.start} or more to finish that run, or use another output folder")

    def draw(self, tag: str) -> torch.Generator:
        """``generator_for(seed, tag)`` on process 0 (and in a single process); another stream on each other process."""
        return generator_for(self.seed, tag if self.rank == 0 else f"{tag}@{self.rank}")

    def crops(self, step: int, return_index: bool = False):
        """Step ``step``'s ``(B, C, crop, crop)`` crops from ``draw("crop-step")``, on the CPU
        (with their image indices if ``return_index``)."""
        return random_crops(self.images, self.batch_size, self.crop, self.draw(f"crop-{step}"), return_index)

    def generators(self, step: int, tag: str = "degrade") -> list[torch.Generator]:
        """One generator per image of step ``step``: ``draw("tag-step-i")``."""
        return [self.draw(f"{tag}-{step}-{i}") for i in range(self.batch_size)]

    def share_weights(self, module: torch.nn.Module) -> None:
        """Give every process process 0's weights of ``module`` (before training; a checkpoint, if any, loads later)."""
        if self.world == 1:
            return
        import torch.distributed as dist

        for t in module.state_dict().values():
            dist.broadcast(t, 0)

    def sync_gradients(self, module: torch.nn.Module) -> None:
        """Average ``module``'s gradients over the processes (call between backward and the optimizer step)."""
        if self.world == 1:
            return
        import torch.distributed as dist

        grads = [p.grad for p in module.parameters() if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def _any(self, flag: bool) -> bool:
        """``flag`` or-ed over the processes (so that all stop at the same step)."""
        if self.world == 1:
            return flag
        import torch.distributed as dist

        t = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def steps(self, desc: str = "train", progress: bool = False):
        """Yield the steps still to do; after each, update the EMA and save a checkpoint when due."""
        from tqdm import tqdm

        self._t0 = time.perf_counter()
        for step in tqdm(range(self.start, self.total), desc=desc, unit="step", disable=not progress or self.rank > 0):
            yield step
            ema_update(self.ema, self.model, self.ema_decay, step)
            out_of_time = self._any(self.time_limit is not None and time.perf_counter() - self._t0 > self.time_limit)
            if ((step + 1) % self.save_every == 0 or step + 1 == self.total or out_of_time) and self.rank == 0:
                save_checkpoint(self.checkpoint, state_tensors(self.modules, self.optimizers),
                                {**self.run, "step": step + 1, "wall_time_s": self.elapsed()})
            if out_of_time and step + 1 < self.total:
                self.stopped_at = step + 1
                return

    def batches(self, make_batch: Callable[[int], Any], desc: str = "train", progress: bool = False):
        """Like :meth:`steps`, yielding ``(step, make_batch(step))``; with ``self.workers > 0`` the
        batches are made ahead in worker processes (forked, so ``make_batch`` may be a closure over
        the photos; it must depend on ``step`` alone and run on the CPU)."""
        todo = range(self.start, self.total)
        workers = self.workers
        if workers and "fork" not in multiprocessing.get_all_start_methods():
            warnings.warn("no fork start method on this platform: batches are made in the training process")
            workers = 0
        if workers == 0:
            made = map(make_batch, todo)
        else:
            from torch.utils.data import DataLoader

            made = iter(DataLoader(_StepBatches(make_batch, todo), batch_size=None, num_workers=workers,
                                   multiprocessing_context="fork", prefetch_factor=4,
                                   pin_memory=self.device.type == "cuda"))
        for step, batch in zip(self.steps(desc, progress), made):
            yield step, batch

    def elapsed(self) -> float:
        return self.wall + time.perf_counter() - getattr(self, "_t0", time.perf_counter())

    def finish(self, recipe: str | None = None, **meta: Any):
        """Save the EMA model as ``out_dir/model.safetensors`` (+ JSON with recipe, wall time, steps); return it.

        After a stop on ``time_limit`` nothing is saved but the checkpoint, and the EMA model is
        returned as it stands (rerun the same command to continue)."""
        if self.stopped_at is not None:
            return self.ema
        if self.start >= self.total:  # nothing was left to do: the wall time is the checkpoint's
            self._t0 = time.perf_counter()
        recipe = recipe or json.dumps({k: v for k, v in self.run.items() if k != "config"})
        if self.world > 1:
            meta = {"world_size": self.world, **meta}
        if self.rank == 0:
            self.ema.save(self.out_dir / FINAL, recipe=recipe, wall_time_s=round(self.elapsed(), 3),
                          steps=self.total, **meta)
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()  # the others return once the final model is on disk
        return self.ema


class _StepBatches(Dataset):
    """Item ``i``: ``make_batch(steps[i])``, for a ``DataLoader`` over the steps still to do."""

    def __init__(self, make_batch: Callable[[int], Any], steps: range) -> None:
        self.make_batch, self.step_numbers = make_batch, steps

    def __len__(self) -> int:
        return len(self.step_numbers)

    def __getitem__(self, i: int) -> Any:
        return self.make_batch(self.step_numbers[i])


def train_conditional(model: ConditionalUNet, images: Sequence[torch.Tensor] | str | os.PathLike,
                      degrade_fn: Callable[[torch.Tensor, Generator], torch.Tensor | tuple[torch.Tensor, torch.Tensor]],
                      steps: int,
                      batch_size: int = 8, crop: int = 128, lr: float = 1e-4, ema_decay: float = 0.999,
                      out_dir: str | os.PathLike = "runs/idm", save_every: int = 1000, seed: int = 0,
                      device: str | torch.device = "cpu", recipe: str | None = None, time_limit: float | None = None,
                      meta: dict[str, Any] | None = None, loss: str = "mse", channels_last: bool = False,
                      compile: bool | str = False, encode: Callable[[torch.Tensor], torch.Tensor] | None = None,
                      progress: bool = False, workers: int = 0, half: bool = False,
                      init_sha256: str | None = None, settings: str | None = None) -> ConditionalUNet:
    """Train ``model`` to restore ``degrade_fn(x)`` to ``x``; return the EMA model.

    Step ``k`` (from 0): crops and flips from ``generator_for(seed, "crop-k")``, image ``i``'s
    degradation from ``generator_for(seed, "degrade-k-i")``, timesteps and noise from
    ``generator_for(seed, "loss-k")``. Then AdamW, and ``ema = d ema + (1 - d) w`` (``d`` warmed
    up, see :func:`ema_update`). On CUDA the forward pass runs under bf16 autocast; on the CPU in
    float32, or with ``half`` in bf16 where the CPU computes it natively (about 1.5x faster there;
    part of the run's arguments, as it changes the result).

    Files in ``out_dir``: ``checkpoint.safetensors`` (tensors ``model.*``, ``ema.*``, AdamW's
    ``adamw.<param index>.{step,exp_avg,exp_avg_sq}``; metadata ``run``: JSON of the step, wall
    time, config and arguments) every ``save_every`` steps and at the end; when it exists, training
    resumes from it. At the end, ``model.safetensors`` + ``model.json``: the EMA weights saved
    with ``ConditionalUNet.save(..., recipe=..., wall_time_s=..., steps=...)``.

    Args:
        model: the network to train (modified in place; it ends with the trained, non-EMA weights).
        images: clean photos, ``(3, H, W)`` or ``(N, 3, H, W)`` tensors in ``[0, 1]``, or a folder.
        degrade_fn: ``fn(x, generator) -> y`` on ``(N, 3, crop, crop)`` in ``[0, 1]`` with a list of
            per-image generators, returning the same shape (e.g. ``PIPELINES["idm"].degrade``); for a
            model with classes it may return ``(y, class_labels)`` with ``(N,)`` int64 indices into
            ``model.config["class_names"]`` (e.g. :func:`genrestore.restore.diffgar.diffgar_degrade`),
            each replaced by ``[MASK]`` with probability 0.5 in the loss (DiffGAR Alg. 1).
        steps: total optimizer steps of the run (a resumed run continues up to it).
        batch_size: crops per step.
        crop: crop side in pixels (a multiple of the UNet's size multiple).
        lr: AdamW learning rate (weight decay: AdamW's default 0.01).
        ema_decay: ``d`` in ``[0, 1)``.
        out_dir: where checkpoints and the final model go.
        save_every: checkpoint period in steps.
        seed: base seed of every random draw.
        device: where to train.
        recipe: free text for the final model's JSON (default: the run arguments).
        meta: further JSON entries for the final model's sidecar (e.g. ``{"inpainter": "diffusion"}``).
        loss: ``"mse"`` or ``"l1"`` (see :func:`.sampling.training_loss`).
        channels_last, compile: speed options (see :class:`TrainRun`); results agree up to float rounding.
        workers: processes that make the next batches (crops, ``degrade_fn``) ahead; 0: in this
            process. The result does not depend on it.
        encode: for a latent model, ``fn(images in [0, 1]) -> latents`` (a frozen encoder, e.g.
            scaled ``VQAutoencoder.encode_latents``); crops must then be multiples of its factor.
        time_limit: seconds this call may train; then it saves the checkpoint and returns the EMA
            model without writing the final one (rerun to continue; for machines lent by the hour).
        progress: show a progress bar (tqdm, on stderr).
        half: bf16 autocast on a CPU with native bf16 (:func:`cpu_bf16`); elsewhere no change.
            The run's arguments record ``half`` only where it changed the arithmetic.
        init_sha256: the sha256 of the weights ``model`` starts from, when they are a trained
            model's (fine-tuning): part of the run's arguments, so a checkpoint resumes only
            from the same start.
        settings: the caller's settings that ``degrade_fn`` or ``encode`` depend on and the
            model's config does not show (e.g. ``"--level L"``): part of the run's arguments.

    Returns:
        the EMA :class:`ConditionalUNet`, in ``eval()`` mode.

    Raises:
        InputError: bad arguments, images smaller than ``crop``, a degradation that changes the
            size or returns class labels out of range (or for a model without classes), or a
            checkpoint in ``out_dir`` from a run with other arguments.
    """
    tr = TrainRun(model, images, steps, batch_size, crop, ema_decay, out_dir, save_every, seed, device,
                  {"lr": lr, "config": model.config, **_optional_run_args(loss, half, device, init_sha256, settings)},
                  time_limit=time_limit, channels_last=channels_last, compile=compile, workers=workers)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    tr.optimizers["adamw"] = (opt, model)
    tr.resume(_RUN_KEYS)
    step_fn = _denoising_step(model, opt, tr.device, loss, encode, tr.sync_gradients, half)
    expected = (batch_size, model.cond_channels if encode is None else 3, crop, crop)

    def make_batch(step: int):
        x0 = tr.crops(step)
        y = degrade_fn(x0, tr.generators(step))
        y, labels = y if isinstance(y, tuple) else (y, None)
        if tuple(y.shape) != expected:
            raise InputError(f"degrade_fn turned {tuple(x0.shape)} into {tuple(y.shape)}; expected {expected} "
                             "(resized back to the input size)")
        return x0, y, labels

    for step, (x0, y, labels) in tr.batches(make_batch, progress=progress):
        step_fn(x0, y, labels, tr.draw(f"loss-{step}"), step)
    return tr.finish(recipe, **(meta or {}))


def train_conditional_pairs(model: ConditionalUNet, pairs: Sequence[tuple[torch.Tensor, torch.Tensor, int]],
                            steps: int, batch_size: int = 8, crop: int = 128, lr: float = 1e-4,
                            ema_decay: float = 0.999, out_dir: str | os.PathLike = "runs/diffgar",
                            save_every: int = 1000, seed: int = 0, device: str | torch.device = "cpu",
                            recipe: str | None = None,
                            time_limit: float | None = None, meta: dict[str, Any] | None = None,
                            channels_last: bool = False, compile: bool | str = False,
                            encode: Callable[[torch.Tensor], torch.Tensor] | None = None,
                            progress: bool = False, loss: str = "mse", half: bool = False,
                            init_sha256: str | None = None, settings: str | None = None) -> ConditionalUNet:
    """:func:`train_conditional` on precomputed ``(clean, degraded, label)`` pairs (DiffGAR's
    synthetic artifact dataset): the same crop window and flip cut both images of a pair.

    Args:
        pairs: ``(3, H, W)`` clean and degraded images in ``[0, 1]`` of the same size, and the class
            index in ``[0, num_classes]`` (``num_classes`` = ``[MASK]``, e.g. identity pairs); a
            model without classes (IDM, the regression UNet) ignores it.
        loss, half, init_sha256, settings: as in :func:`train_conditional`.

    Returns:
        the EMA model (also saved as ``out_dir/model.safetensors``).
    """
    stacked, labels = [], []
    for i, (clean, degraded, label) in enumerate(pairs):
        if clean.shape != degraded.shape:
            raise InputError(f"pair {i}: clean {tuple(clean.shape)} and degraded {tuple(degraded.shape)} differ in size")
        stacked.append(torch.cat([clean, degraded], 0))
        labels.append(int(label))
    label_of = torch.tensor(labels, dtype=torch.long)
    args = {"lr": lr, "config": model.config, "pairs": len(stacked),
            "data_sha256": data_digest(stacked, label_of if model.num_classes else None),
            **_optional_run_args(loss, half, device, init_sha256, settings)}
    tr = TrainRun(model, stacked, steps, batch_size, crop, ema_decay, out_dir, save_every, seed, device, args,
                  channels=6, time_limit=time_limit, channels_last=channels_last, compile=compile)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    tr.optimizers["adamw"] = (opt, model)
    tr.resume([*_RUN_KEYS, "pairs"])
    step_fn = _denoising_step(model, opt, tr.device, loss, encode=encode, sync=tr.sync_gradients, half=half)
    for step in tr.steps(progress=progress):
        crops, idx = tr.crops(step, return_index=True)
        lab = label_of[idx] if model.num_classes else None
        step_fn(crops[:, :3], crops[:, 3:], lab, tr.draw(f"loss-{step}"), step)
    return tr.finish(recipe, **(meta or {}))
