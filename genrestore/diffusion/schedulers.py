"""Noise schedules: diffusers schedulers built from a model's stored schedule.

A trained denoiser belongs to one forward process ``q(x_t | x_0) = N(sqrt(a_t) x_0, (1 - a_t) I)``
with ``a_t = prod_{s <= t} (1 - beta_s)`` (DDPM eq. 4; IDM eq. 5). That process is stored with the
model as a small ``schedule`` dict (the diffusers ``num_train_timesteps`` / ``beta_*`` arguments), and
every sampler is built from it here, so samplers can be swapped without touching the network.

Schedules, ``add_noise``, ``get_velocity`` and DDPM steps are diffusers' own (``DDPMScheduler``).
One DDIM step (eq. 12) is written here, :func:`ddim_step`: diffusers' ``DDIMScheduler.step``
moves from ``t`` to ``t - T // n`` rather than to the next timestep of its grid, which for "trailing"
grids with ``n`` not dividing ``T`` reads the wrong ``a`` and ends at ``t = 0`` instead of the
clean sample; :func:`ddim_step` takes both ends explicitly, so every grid (sampling, inversion to
any ``T0``) steps exactly between its own timesteps.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from .._checks import InputError, real_number, whole_number

PredictionType = Literal["epsilon", "sample", "v_prediction"]
SchedulerKind = Literal["ddpm", "ddim", "ddim_inverse"]

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")

# DDPM (Ho et al. 2020) section 4: T = 1000, betas linear from 1e-4 to 0.02.
DEFAULT_SCHEDULE: dict[str, Any] = {
    "num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02}

# the beta schedules that diffusers' DDPM, DDIM and inverse DDIM schedulers all build
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")

_SCHEDULE_KEYS = ("num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "rescale_betas_zero_snr",
                  "trained_betas")


def require_diffusers():
    """Import and return the ``diffusers`` module, or raise with an install hint."""
    try:
        import diffusers
    except ImportError:
        raise ImportError("genrestore.diffusion needs diffusers: pip install 'diffusers>=0.30'") from None
    return diffusers


def check_schedule(schedule: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schedule`` with defaults filled in; raise :class:`InputError` on unknown keys."""
    if not isinstance(schedule, dict):
        raise InputError(f"expected the schedule as a mapping, got {type(schedule).__name__}")
    unknown = set(schedule) - set(_SCHEDULE_KEYS)
    if unknown:
        raise InputError(f"expected schedule keys in {_SCHEDULE_KEYS}, got unknown {sorted(unknown)}")
    out = {**DEFAULT_SCHEDULE, **schedule}
    if out["beta_schedule"] not in BETA_SCHEDULES:
        raise InputError(f"expected beta_schedule in {BETA_SCHEDULES}, got {out['beta_schedule']!r}")
    t = whole_number(out["num_train_timesteps"])
    if t is None or t < 1:
        raise InputError(f"expected num_train_timesteps as a positive int, got {out['num_train_timesteps']!r}")
    betas = out.get("trained_betas")
    if betas is not None and not hasattr(betas, "__len__"):
        raise InputError(f"expected trained_betas as a sequence of {t} numbers, got {betas!r}")
    ends = [out[k] for k in ("beta_start", "beta_end")] if betas is None else list(betas)
    if betas is not None and len(ends) != t:
        raise InputError(f"expected {t} trained_betas (one per timestep), got {len(ends)}")
    values = [real_number(b) for b in ends]  # Python, NumPy or tensor numbers
    if None in values or not all(0 < b <= 1 for b in values):  # 1: pure noise (the regression UNet's T = 1)
        shown = ends if len(ends) <= 4 else f"{len(ends)} values"
        raise InputError(f"expected betas as numbers in (0, 1], got {shown}")
    return out


def make_scheduler(kind: SchedulerKind, schedule: dict[str, Any] | None = None,
                   prediction_type: PredictionType = "epsilon", *, clip_sample: bool = True,
                   timestep_spacing: Literal["leading", "trailing"] = "trailing", steps_offset: int = 0):
    """A fresh diffusers scheduler for the forward process ``schedule``.

    Args:
        kind: ``"ddpm"`` (ancestral sampling, DDPM eq. 6-7), ``"ddim"`` (DDIM eq. 12) or
            ``"ddim_inverse"`` (DDIM eq. 12 run from ``t`` to ``t + 1``; DiffGAR eq. 7).
        schedule: the forward process (``num_train_timesteps``, ``beta_schedule``, ``beta_start``,
            ``beta_end``, or explicit ``trained_betas``); ``None`` for :data:`DEFAULT_SCHEDULE`.
        prediction_type: what the network predicts: noise ``eps``, the clean ``x_0``
            (``"sample"``; IDM eq. 7) or ``v = sqrt(a_t) eps - sqrt(1 - a_t) x_0``.
        clip_sample: clip the predicted ``x_0`` to ``[-1, 1]`` at each step (pixel models);
            off for latents and for inversion, where clipping would break invertibility.
        timestep_spacing: ``"trailing"`` starts few-step sampling at ``t = T - 1`` (pure noise), as
            Lin et al. 2024 (Table 2) recommend; ``"leading"`` is diffusers' older default.
        steps_offset: added to the ``"leading"`` timesteps (diffusers' ``steps_offset``).

    Raises:
        InputError: unknown ``kind`` or ``prediction_type``.

    Example:
        >>> s = make_scheduler("ddim", prediction_type="sample")
        >>> s.set_timesteps(4)
        >>> s.timesteps.tolist()
        [999, 749, 499, 249]
    """
    if prediction_type not in PREDICTION_TYPES:
        raise InputError(f"expected prediction_type in {PREDICTION_TYPES}, got {prediction_type!r}")
    d = require_diffusers()
    schedule = check_schedule({} if schedule is None else schedule)
    kwargs = dict(schedule, prediction_type=prediction_type, clip_sample=clip_sample,
                  timestep_spacing=timestep_spacing, steps_offset=steps_offset)
    if kind == "ddpm":
        return d.DDPMScheduler(**kwargs)
    if kind == "ddim":
        return d.DDIMScheduler(**kwargs, set_alpha_to_one=True)
    if kind == "ddim_inverse":
        return d.DDIMInverseScheduler(**kwargs, set_alpha_to_one=True)
    raise InputError(f"expected scheduler kind in ('ddpm', 'ddim', 'ddim_inverse'), got {kind!r}")


def ddim_step(scheduler, model_output: torch.Tensor, sample: torch.Tensor, timestep: int | torch.Tensor,
              to_timestep: int | torch.Tensor, eta: float = 0.0, generator=None) -> torch.Tensor:
    """Move ``sample`` from the noise level of ``timestep`` to that of ``to_timestep`` (DDIM eq. 12).

    ``x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)`` (or the ``x_0`` / ``v`` the network predicts,
    ``scheduler.config.prediction_type``), clipped to ``clip_sample_range`` when ``clip_sample``;
    then ``x' = sqrt(a') x0 + sqrt(1 - a' - sigma^2) eps + sigma z`` with DDIM eq. 16's
    ``sigma = eta sqrt((1 - a') / (1 - a_t)) sqrt(1 - a_t / a')``. Timestep ``-1`` is the clean end,
    ``a = 1``. Going up (``to_timestep > timestep``, DDIM inversion) needs ``eta = 0``.

    Args:
        scheduler: a diffusers DDPM/DDIM scheduler (its ``alphas_cumprod`` and config are read).
        model_output: the network's output at ``(sample, timestep)``, ``sample``'s shape.
        sample: ``x_t`` in model space.
        timestep, to_timestep: ints in ``[-1, T)``.
        eta: DDIM's noise scale, 0 (deterministic) to 1 (DDPM-like).
        generator: a ``torch.Generator`` or one per image, for ``eta > 0``.

    Returns:
        The sample at ``to_timestep``'s noise level, ``sample``'s shape and dtype.
    """
    from diffusers.utils.torch_utils import randn_tensor

    t, t_to = int(timestep), int(to_timestep)
    cum = scheduler.alphas_cumprod
    a_t = cum[t].to(sample.device, torch.float64) if t >= 0 else torch.ones((), dtype=torch.float64)
    a_to = cum[t_to].to(sample.device, torch.float64) if t_to >= 0 else torch.ones((), dtype=torch.float64)
    if eta and t_to > t:
        raise InputError(f"eta > 0 applies to steps towards the clean end, not from t={t} up to t={t_to}")
    a_t, a_to = a_t.to(sample.dtype), a_to.to(sample.dtype)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        x0, eps = (sample - (1 - a_t).sqrt() * model_output) / a_t.sqrt(), model_output
    elif kind == "sample":
        x0, eps = model_output, (sample - a_t.sqrt() * model_output) / (1 - a_t).sqrt()
    elif kind == "v_prediction":  # Salimans & Ho 2022 §4
        x0 = a_t.sqrt() * sample - (1 - a_t).sqrt() * model_output
        eps = a_t.sqrt() * model_output + (1 - a_t).sqrt() * sample
    else:
        raise InputError(f"expected prediction_type in {PREDICTION_TYPES}, got {kind!r}")
    if scheduler.config.clip_sample:
        limit = scheduler.config.clip_sample_range
        x0 = x0.clamp(-limit, limit)
    sigma = eta * ((1 - a_to) / (1 - a_t) * (1 - a_t / a_to)).sqrt() if eta else torch.zeros_like(a_t)
    out = a_to.sqrt() * x0 + (1 - a_to - sigma**2).clamp_min(0).sqrt() * eps
    if eta:
        out = out + sigma * randn_tensor(model_output.shape, generator=generator, device=model_output.device,
                                         dtype=model_output.dtype)
    return out
