"""Sampling, DDIM inversion and the training loss of conditional diffusion restorers.

Short loops over diffusers schedulers (built by :mod:`.schedulers` from the model's stored schedule):
the scheduler turns a model output and ``x_t`` into the next sample; this file only decides what
the model sees. Paper equations are noted beside the lines that implement them:

* DDPM: Ho et al. 2020; DDIM: Song et al. 2021 (eq. 12); v: Salimans & Ho 2022 (§4);
* IDM: conditional DDPM on ``concat(x_t, y)``, predicting ``x_0`` (eq. 7), 10 DDPM steps (§4);
* DiffGAR: class-conditional with a ``[MASK]`` class (Alg. 1), classifier-free guidance (eq. 9,
  ``s = 3``), DDIM sampling (30 steps) and DDIM inversion to ``x_{T0}`` (eq. 7-8).

Ranges: :func:`sample` takes and returns images in ``[0, 1]``; everything else works in model
space, ``[-1, 1]`` for pixel models (:func:`to_model_range`) or autoencoder latents.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Union

import torch
import torch.nn.functional as F

from .._checks import InputError, check_float_tensor, check_image, check_not_empty, finite_number
from .._random import Generator, rand, randint, randn
from .model import ConditionalUNet, size_multiple
from ..models.checkpoint import in_module_dtype
from ..models.precision import run_network
from .schedulers import DEFAULT_SCHEDULE, PREDICTION_TYPES, PredictionType, ddim_step, make_scheduler

# An eps/x0/v predictor: a ConditionalUNet, or any ``fn(x_t, t) -> output`` (e.g. an unconditional
# diffusers UNet wrapped as ``lambda x, t: unet(x, t).sample``).
Denoiser = Union[ConditionalUNet, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]


def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """Images in ``[0, 1]`` to the ``[-1, 1]`` range pixel diffusion models work in.

    Raises:
        InputError: ``x`` not a float tensor (a uint8 image would give 0..255 integers).
    """
    check_float_tensor(x, "x")
    return x * 2 - 1


def from_model_range(x: torch.Tensor) -> torch.Tensor:
    """Model-space ``[-1, 1]`` back to ``[0, 1]``, clamping the sampler's overshoot.

    Raises:
        InputError: ``x`` not a float tensor.
    """
    check_float_tensor(x, "x")
    return ((x + 1) / 2).clamp(0, 1)


def _diffusers_generator(generator: Generator):
    # diffusers' randn_tensor takes one generator or a *list* of per-image generators (all real ones: it
    # reads the first one's device); a None entry is torch's global generator, as in genrestore._random
    if isinstance(generator, Sequence):
        return [torch.default_generator if g is None else g for g in generator]
    return generator


def predict(model: ConditionalUNet, x_t: torch.Tensor, t: torch.Tensor | int, y: torch.Tensor,
            class_labels: torch.Tensor | None = None, guidance_scale: float = 1.0) -> torch.Tensor:
    """The model output at ``(x_t, t)``, with classifier-free guidance on the class label.

    ``out = out(.|[MASK]) + s (out(.|c) - out(.|[MASK]))`` (DiffGAR eq. 9; Ho & Salimans 2021
    eq. 6). It is applied to whatever the model predicts (``eps``, ``x_0`` or ``v``): for a fixed
    ``x_t`` each is an affine function of the others, so guiding any of them is the same update.
    The conditional and unconditional passes run as one batch of ``2 N``; with ``s = 1`` only the
    conditional pass runs, so the result is exactly ``model(x_t, t, y, class_labels)``.

    Args:
        model: the conditional denoiser.
        x_t: ``(N, C, H, W)`` noisy sample in model space.
        t: timestep, an int or a ``()`` / ``(N,)`` tensor.
        y: ``(N, C, H, W)`` condition in model space.
        class_labels: ``(N,)`` int64 labels; ``None`` is ``[MASK]`` (blind restoration).
        guidance_scale: ``s``; 1 disables guidance, DiffGAR uses 3.

    Returns:
        ``(N, C, H, W)`` guided prediction, of the model's ``prediction_type``.

    Raises:
        InputError: ``guidance_scale != 1`` without class labels or for a model without classes.
    """
    if guidance_scale == 1.0:
        return model(x_t, t, y, class_labels)
    if class_labels is None or model.num_classes == 0:
        raise InputError("classifier-free guidance (guidance_scale != 1) needs a class-conditional model "
                         "and class_labels")
    t = torch.as_tensor(t, device=x_t.device)
    uncond = torch.full_like(class_labels, model.mask_label)
    out = model(torch.cat([x_t, x_t]), torch.cat([t, t]) if t.ndim else t, torch.cat([y, y]),
                torch.cat([class_labels, uncond]))
    out_cond, out_uncond = out.chunk(2)
    return out_uncond + guidance_scale * (out_cond - out_uncond)  # DiffGAR eq. 9


@torch.no_grad()  # not inference_mode: restored images may become training targets, or be edited in place
def sample(model: ConditionalUNet, y: torch.Tensor, scheduler: Literal["ddpm", "ddim"] = "ddpm",
           steps: int = 10, class_labels: torch.Tensor | None = None, guidance_scale: float = 1.0,
           eta: float = 0.0, generator: Generator = None, tile: int = 0, tile_pad: int = 16,
           tile_blend: int = 16, latent: bool = False, half: bool = False) -> torch.Tensor:
    """Restore ``y`` by ancestral (DDPM) or DDIM sampling from ``x_T ~ N(0, I)``.

    The images are mapped to ``[-1, 1]`` for the model and back. Timesteps are spaced "trailing"
    (the first step is at ``t = T - 1``), so even 1 step starts from pure noise.

    Tiling (``tile > 0``) tiles only the *network call*: ``x_T`` and every step's noise are drawn
    once at full size, each step's prediction is computed on overlapping tiles of
    ``concat(x_t, y)`` and cross-faded (:func:`genrestore.io.tiled_apply`), and the scheduler
    steps the whole image, so the sample is one image throughout and has no seams.

    Args:
        model: the conditional denoiser, in ``eval()`` mode.
        y: ``(N, C_y, H, W)`` degraded images (the condition) in ``[0, 1]``; with ``latent``,
            latents in model space.
        scheduler: ``"ddpm"`` (IDM: 10 steps) or ``"ddim"`` (DiffGAR: 30 steps).
        steps: number of denoising steps, in ``[1, T]``.
        class_labels: ``(N,)`` int64 class labels; ``None`` for ``[MASK]`` / no classes.
        guidance_scale: classifier-free guidance scale ``s`` (see :func:`predict`).
        eta: DDIM noise ``eta`` (0: deterministic, 1: DDPM-like); only for ``"ddim"``.
        generator: a ``torch.Generator``, or one per image: then image ``i`` draws its initial
            noise and every step's noise from ``generator[i]`` only, and its result does not depend
            on the batch it is in (up to float rounding of batched convolutions).
        tile: 0 for one network call per step, else the tile side (a multiple of the UNet's size
            multiple, larger than ``2 tile_pad + tile_blend``), in the model's pixels.
        tile_pad, tile_blend: see :func:`genrestore.io.tiled_apply`.
        latent: ``y`` and the result are autoencoder latents (no range mapping, no clipping of
            the predicted ``x_0``).
        half: run the network in 16-bit (:func:`genrestore.models.precision.half_dtype`: bf16 on
            recent GPUs and on CPUs with native bf16, where it is about 1.6x faster; float32
            elsewhere); the scheduler's arithmetic stays float32, and a step whose prediction is
            not finite is recomputed in float32. The network always runs channels-last.

    Returns:
        ``(N, C, H, W)`` restored images in ``[0, 1]`` (with ``latent``: latents).

    Raises:
        InputError: bad ``y``, ``steps``, scheduler or ``eta``.
    """
    from ..io import tiled_apply

    if latent:
        if y.ndim != 4 or y.shape[1] != model.cond_channels:
            raise InputError(f"expected (N, {model.cond_channels}, H, W) latents, got {tuple(y.shape)}")
    else:
        check_image(y, "y", channels=(model.cond_channels,))
    if scheduler not in ("ddpm", "ddim"):
        raise InputError(f"expected scheduler 'ddpm' or 'ddim', got {scheduler!r}")
    if scheduler == "ddpm" and eta != 0.0:
        raise InputError(f"eta applies to the 'ddim' scheduler only, got eta={eta} with 'ddpm'")
    finite_number(eta, "eta", 0)
    finite_number(guidance_scale, "guidance_scale", 0)  # NaN made every pixel NaN
    check_not_empty(y, "degraded image")
    multiple = size_multiple(model)
    if y.shape[-2] % multiple or y.shape[-1] % multiple:  # the restorers pad; here the caller must
        raise InputError(f"the UNet takes sides that are multiples of {multiple}, got {y.shape[-1]}x{y.shape[-2]}; "
                         f"pad first (genrestore.restore.idm.pad_to_multiple)")
    _check_steps(steps, model.config["schedule"]["num_train_timesteps"])
    sched = make_scheduler(scheduler, model.config["schedule"], model.prediction_type, clip_sample=not latent)
    sched.set_timesteps(steps, device=y.device)
    noise_source = _diffusers_generator(generator)

    y = in_module_dtype(model, y)  # e.g. float64 images run in the network's dtype
    y = y if latent else to_model_range(y)
    c = model.channels

    def network(x_t: torch.Tensor, cond: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return run_network(lambda a, b: predict(model, a, t, b, class_labels, guidance_scale), x_t, cond,
                           half=half, what="diffusion")

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not tile:
            return network(x, y, t)
        return tiled_apply(lambda xy: network(xy[:, :c], xy[:, c:], t), torch.cat([x, y], dim=1), tile=tile,
                           pad=tile_pad, blend=tile_blend, multiple=multiple)

    x = randn(generator, (y.shape[0], c, *y.shape[-2:]), device=y.device, dtype=y.dtype) * sched.init_noise_sigma  # x_T ~ N(0, I)
    grid = sched.timesteps.tolist()
    for t, t_next in zip(grid, grid[1:] + [-1]):
        if scheduler == "ddim":  # DDIM eq. 12: x_t -> x at the grid's next timestep (-1: clean)
            x = ddim_step(sched, denoise(x, t), x, t, t_next, eta, noise_source)
        else:  # DDPM eq. 6-7; diffusers' DDPM step finds the grid's previous timestep itself
            x = sched.step(denoise(x, t), t, x, generator=noise_source).prev_sample
    return x if latent else from_model_range(x)


def _check_steps(steps: int, num_train_timesteps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= num_train_timesteps:
        raise InputError(f"expected steps as an int in [1, {num_train_timesteps}], got {steps!r}")


def _denoiser(model: Denoiser, y, class_labels, guidance_scale, schedule, prediction_type):
    """``(fn(x_t, t) -> output, schedule, prediction_type)`` for a ConditionalUNet or a callable."""
    if isinstance(model, ConditionalUNet):
        if schedule is not None or prediction_type is not None:
            raise InputError("schedule and prediction_type come from the ConditionalUNet's config; do not pass them")
        if y is None:
            raise InputError("a ConditionalUNet needs its condition y (model space)")
        return (lambda x, t: predict(model, x, t, y, class_labels, guidance_scale),
                model.config["schedule"], model.prediction_type)
    if y is not None or class_labels is not None or guidance_scale != 1.0:
        raise InputError("y, class_labels and guidance_scale apply to a ConditionalUNet, not to a plain callable")
    prediction_type = prediction_type or "epsilon"
    if prediction_type not in PREDICTION_TYPES:
        raise InputError(f"expected prediction_type in {PREDICTION_TYPES}, got {prediction_type!r}")
    return model, schedule, prediction_type


def _as_epsilon(fn, alphas_cumprod: torch.Tensor, prediction_type: PredictionType):
    """``fn`` turned into an ``eps`` predictor, read at the timestep ``t`` it was queried at.

    Inversion queries the model at ``(x_{t-1}, t)``; diffusers' inverse scheduler would read an
    ``x_0`` / ``v`` output with ``a_{t-1}``, which divides by ``sqrt(1 - a_{-1}) = 0`` at the first
    step for ``x_0``. Reading every output with ``a_t`` keeps inversion and decoding symmetric.
    """
    if prediction_type == "epsilon":
        return fn

    def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out, a = fn(x, t), alphas_cumprod[t].to(x.device, x.dtype)
        if prediction_type == "sample":
            return (x - a.sqrt() * out) / (1 - a).sqrt()  # DDPM eq. 4 solved for eps
        return a.sqrt() * out + (1 - a).sqrt() * x  # Salimans & Ho 2022 §4: eps = sqrt(a) v + sqrt(1 - a) x_t
    return eps_fn


def inversion_grid(steps: int, t0: int) -> list[int]:
    """The ascending timesteps of DDIM inversion to ``t0`` in ``steps`` steps: ``t_k =
    round(k (t0 + 1) / steps) - 1`` for ``k = 1..steps``, so the last is ``t0`` exactly and the
    spacing is as even as integers allow ("trailing" spacing over ``[0, t0]``).

    Example:
        >>> g = inversion_grid(48, 840)   # DiffGAR §3: 48 steps to T0 = 840
        >>> len(g), g[:3], g[-1]
        (48, [17, 34, 52], 840)
    """
    return [round(k * (t0 + 1) / steps) - 1 for k in range(1, steps + 1)]


def _inversion_scheduler(schedule, steps: int, t0: int | None):
    """``(scheduler, grid)``: the forward process and the ascending timesteps shared by
    ``ddim_invert`` and ``ddim_decode`` (:func:`inversion_grid`)."""
    n_train = (schedule or {}).get("num_train_timesteps", DEFAULT_SCHEDULE["num_train_timesteps"])
    t0 = n_train - 1 if t0 is None else t0
    if not isinstance(t0, int) or not 0 <= t0 < n_train:
        raise InputError(f"expected t0 as an int in [0, {n_train - 1}], got {t0!r}")
    if not isinstance(steps, int) or not 1 <= steps <= t0 + 1:
        raise InputError(f"expected steps as an int in [1, t0 + 1 = {t0 + 1}], got {steps!r}")
    return make_scheduler("ddim", schedule, "epsilon", clip_sample=False), inversion_grid(steps, t0)


@torch.no_grad()  # not inference_mode, as sample
def ddim_invert(model: Denoiser, x0: torch.Tensor, steps: int, t0: int | None = None,
                y: torch.Tensor | None = None, class_labels: torch.Tensor | None = None,
                guidance_scale: float = 1.0, schedule: dict[str, Any] | None = None,
                prediction_type: PredictionType | None = None) -> torch.Tensor:
    """Deterministic DDIM inversion of ``x0`` to the latent ``x_{T0}`` (DiffGAR eq. 7).

    Each step ``x_s -> x_t = sqrt(a_t) x0_hat + sqrt(1 - a_t) eps`` (``s`` the previous grid
    point, ``-1`` with ``a = 1`` for the first; ``x0_hat = (x_s - sqrt(1 - a_s) eps) / sqrt(a_s)``,
    no clipping) is :func:`~genrestore.diffusion.schedulers.ddim_step` run upwards. Like
    diffusers' ``DDIMInverseScheduler``, ``eps`` is the model at ``(x_s, t)``, the timestep
    :func:`ddim_decode` queries on its way back; DiffGAR eq. 7 writes ``eps(x_s, s)``. Both are
    first-order approximations: the round trip is exact only as ``steps`` grows. :func:`ddim_decode`
    with the same ``steps`` and ``t0`` walks back over the same timesteps.

    Args:
        model: a :class:`ConditionalUNet` (then pass ``y``), or ``fn(x_t, t) -> output`` of
            ``prediction_type`` (default ``"epsilon"``) for the forward process ``schedule``
            (default: :data:`~genrestore.diffusion.schedulers.DEFAULT_SCHEDULE`).
        x0: ``(N, C, H, W)`` clean sample in model space (``[-1, 1]`` pixels or latents).
        steps: DDIM steps from the clean end to ``t0``, in ``[1, t0 + 1]``. DiffGAR: 48 steps to
            ``t0 = 840``.
        t0: stopping timestep ``T0`` in ``[0, T)``; ``None`` for ``T - 1`` (full inversion).
        y, class_labels, guidance_scale: the condition of a :class:`ConditionalUNet` (model space).
        schedule, prediction_type: for a plain callable only.

    Returns:
        ``(N, C, H, W)`` latent ``x_{T0}``.

    Raises:
        InputError: ``x0`` not a float ``(N, C, H, W)`` tensor, bad ``steps`` / ``t0``, or arguments
            that do not fit the kind of ``model``.

    Note:
        The grid is :func:`inversion_grid`: exactly ``steps`` steps, the last at ``t0``.
    """
    check_image(x0, "x0", channels=tuple(range(1, 65)), check_range=False)  # model space: not [0, 1]
    fn, schedule, prediction_type = _denoiser(model, y, class_labels, guidance_scale, schedule, prediction_type)
    sched, grid = _inversion_scheduler(schedule, steps, t0)
    fn = _as_epsilon(fn, sched.alphas_cumprod, prediction_type)
    x = x0
    for s, t in zip([-1] + grid[:-1], grid):
        x = ddim_step(sched, fn(x, torch.tensor(t)), x, s, t)  # DiffGAR eq. 7: x_s -> x_t (noise level up)
    return x


@torch.no_grad()  # not inference_mode, as sample
def ddim_decode(model: Denoiser, x_t0: torch.Tensor, steps: int, t0: int | None = None,
                y: torch.Tensor | None = None, class_labels: torch.Tensor | None = None,
                guidance_scale: float = 1.0, schedule: dict[str, Any] | None = None,
                prediction_type: PredictionType | None = None) -> torch.Tensor:
    """Deterministic DDIM sampling (``eta = 0``) from a latent ``x_{T0}`` back to ``x_0`` (DiffGAR eq. 8).

    Arguments as in :func:`ddim_invert`; pass the same ``steps`` and ``t0`` to undo it.

    Returns:
        ``(N, C, H, W)`` sample in model space (not clipped).

    Raises:
        InputError: as :func:`ddim_invert`, for ``x_t0``.

    Example:
        >>> eps = lambda x, t: torch.zeros_like(x)   # a data set of one point, x0 = x_t / sqrt(a_t)
        >>> x0 = torch.rand(1, 3, 4, 4) * 2 - 1
        >>> torch.allclose(ddim_decode(eps, ddim_invert(eps, x0, 10, t0=500), 10, t0=500), x0, atol=1e-5)
        True
    """
    check_image(x_t0, "x_t0", channels=tuple(range(1, 65)), check_range=False)  # model space: not [0, 1]
    fn, schedule, prediction_type = _denoiser(model, y, class_labels, guidance_scale, schedule, prediction_type)
    sched, grid = _inversion_scheduler(schedule, steps, t0)
    fn = _as_epsilon(fn, sched.alphas_cumprod, prediction_type)
    x = x_t0
    down = grid[::-1]
    for t, s in zip(down, down[1:] + [-1]):
        x = ddim_step(sched, fn(x, torch.tensor(t)), x, t, s)  # DiffGAR eq. 8: DDIM eq. 12, sigma_t = 0
    return x


def training_target(scheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
                    prediction_type: PredictionType) -> torch.Tensor:
    """What the network learns to output at ``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) noise``.

    ``"epsilon"``: ``noise`` (IDM eq. 6, DiffGAR Alg. 1); ``"sample"``: ``x0`` (IDM eq. 7);
    ``"v_prediction"``: ``sqrt(a_t) noise - sqrt(1 - a_t) x0`` (Salimans & Ho 2022 §4, by the
    scheduler's ``get_velocity``).

    Example:
        >>> s = make_scheduler("ddpm")
        >>> x0, noise, t = torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.tensor([0])
        >>> v = training_target(s, x0, noise, t, "v_prediction")   # sqrt(a) 0 - sqrt(1 - a) 1
        >>> torch.equal(v, -(1 - s.alphas_cumprod[0]).sqrt().expand(1, 1, 2, 2))
        True
    """
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "sample":
        return x0
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    raise InputError(f"expected prediction_type in {PREDICTION_TYPES}, got {prediction_type!r}")


def mask_class_labels(class_labels: torch.Tensor, mask_label: int, mask_prob: float,
                      generator: Generator = None) -> torch.Tensor:
    """Replace each label by ``mask_label`` with probability ``mask_prob`` (DiffGAR §4: 50 %).

    Args:
        class_labels: ``(N,)`` int64.
        mask_label: the ``[MASK]`` index.
        mask_prob: in ``[0, 1]``.
        generator: one generator, or one per label.

    Returns:
        ``(N,)`` int64 labels.

    Raises:
        InputError: ``class_labels`` not an ``(N,)`` integer tensor, or ``mask_prob`` outside ``[0, 1]``.
    """
    if not isinstance(class_labels, torch.Tensor):
        raise InputError(f"expected class_labels as a torch.Tensor, got {type(class_labels).__name__}")
    if class_labels.ndim != 1 or class_labels.is_floating_point() or class_labels.is_complex() \
            or class_labels.dtype == torch.bool:
        raise InputError(f"expected class_labels as an (N,) integer tensor, got {tuple(class_labels.shape)} "
                         f"of dtype {class_labels.dtype}")
    if not 0.0 <= mask_prob <= 1.0:
        raise InputError(f"expected mask_prob in [0, 1], got {mask_prob}")
    class_labels = class_labels.long()
    drop = rand(generator, class_labels.shape[:1], device=class_labels.device) < mask_prob
    return torch.where(drop, torch.full_like(class_labels, mask_label), class_labels)


def training_loss(model: ConditionalUNet, x0: torch.Tensor, y: torch.Tensor,
                  class_labels: torch.Tensor | None = None, scheduler=None, generator: Generator = None,
                  mask_prob: float = 0.5, loss: str = "mse") -> torch.Tensor:
    """The denoising loss ``E || f(concat(x_t, y), t | c) - target ||^2`` (DiffGAR Alg. 1; IDM eq. 6-7).

    Per image: ``t ~ U{0, ..., T-1}``, ``noise ~ N(0, I)``, then the class label becomes ``[MASK]``
    with probability ``mask_prob``, in this order, from ``generator`` (per image when a list).

    Args:
        model: the conditional denoiser (in ``train()`` mode for training).
        x0: ``(N, C, H, W)`` clean targets in model space (``[-1, 1]`` pixels or latents), float
            (run in the model's dtype).
        y: ``(N, C_y, H, W)`` degraded conditions in model space.
        class_labels: ``(N,)`` int64, or ``None`` (no classes, or all ``[MASK]``).
        scheduler: a diffusers scheduler with ``add_noise`` / ``get_velocity`` for the model's
            schedule; ``None`` builds a ``DDPMScheduler`` from the model config.
        generator: a generator, or one per image.
        mask_prob: probability of replacing a label by ``[MASK]``; DiffGAR uses 0.5.
        loss: ``"mse"`` (the papers') or ``"l1"`` (mean absolute error; with the one-step
            :data:`genrestore.restore.idm.REGRESSION_SCHEDULE` this trains an L1 regression UNet).

    Returns:
        scalar loss (mean over all pixels).

    Raises:
        InputError: ``x0`` or ``y`` not a float tensor, mismatched shapes, or a scheduler with
            another prediction type.
    """
    if not 0 <= mask_prob <= 1:  # also refuses NaN
        raise InputError(f"expected mask_prob as a probability in [0, 1], got {mask_prob!r}")
    if scheduler is None:
        scheduler = make_scheduler("ddpm", model.config["schedule"], model.prediction_type)
    if scheduler.config.prediction_type != model.prediction_type:
        raise InputError(f"scheduler predicts {scheduler.config.prediction_type!r}, "
                         f"model predicts {model.prediction_type!r}")
    check_float_tensor(x0, "x0")
    check_float_tensor(y, "y")
    if x0.ndim != 4 or y.ndim != 4 or x0.shape[0] != y.shape[0] or x0.shape[-2:] != y.shape[-2:]:
        raise InputError(f"expected x0 and y with the same batch and size, got {tuple(x0.shape)} and {tuple(y.shape)}")
    if loss not in ("mse", "l1"):
        raise InputError(f"expected loss 'mse' or 'l1', got {loss!r}")
    x0, y = in_module_dtype(model, x0), in_module_dtype(model, y)  # e.g. float64 images, as sample does
    n = x0.shape[0]
    t = randint(generator, n, 0, scheduler.config.num_train_timesteps, device=x0.device)  # Alg. 1 line 4
    noise = randn(generator, x0.shape, device=x0.device, dtype=x0.dtype)  # Alg. 1 line 5
    if class_labels is not None and mask_prob > 0:
        class_labels = mask_class_labels(class_labels, model.mask_label, mask_prob, generator)
    x_t = scheduler.add_noise(x0, noise, t)  # DDPM eq. 4: sqrt(a_t) x0 + sqrt(1 - a_t) noise
    out = model(x_t, t, y, class_labels)
    target = training_target(scheduler, x0, noise, t, model.prediction_type)
    return F.mse_loss(out, target) if loss == "mse" else F.l1_loss(out, target)  # Alg. 1 line 6
