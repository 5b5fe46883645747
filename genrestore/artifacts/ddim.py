"""DDIM-latent artifacts (DiffGAR §3.3): invert a clean image to its DDIM latent ``x_{T0}``,
perturb the latent, and decode it again with deterministic DDIM.

* Gaussian: ``x~_{T0} = x_{T0} + alpha * n``, ``n ~ N(0, I)``.
* Scale/shift: ``x~_{T0} = gamma * x_{T0} + beta``.

DiffGAR's settings (appendix, FFHQ at 256 px): ``T0 = 840``, 48 inversion and 48 decoding
steps; training pairs ``alpha = 0.3``, ``gamma = 1.015``, ``beta = 0.01``; test pairs
``alpha = 0.25``, ``gamma = 1.009``, ``beta = 0.005``. Here a ``level`` in [0, 1] sets the
strength linearly so that level 0.5 gives the training values and level 0 the clean image:
``alpha = 0.6 level``, ``gamma = 1 + 0.03 level``, ``beta = 0.02 level``; explicit values override it.

``model`` is the unconditional denoiser that defines the latent space: ``fn(x_t, t) -> eps``
on images in ``[-1, 1]`` (a diffusers ``UNet2DModel`` works through ``as_eps_fn``), with the
noise schedule it was trained with: ``schedule``, else the one a
:class:`~genrestore.diffusion.DenoisingUNet` stores in its ``config``, else the default (linear
1e-4..0.02 over 1000 steps). ``t0=None`` is DiffGAR's 840 of ``T = 1000`` scaled to that
schedule's ``T``, ``round(0.84 T)``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from .. import _random
from .._checks import InputError, check_image, finite_number, real_number
from ..diffusion.sampling import ddim_decode, ddim_invert
from ..models.checkpoint import in_module_dtype

DDIM_PAPER = {"t0": 840, "steps": 48, "alpha": 0.3, "gamma": 1.015, "beta": 0.01}
EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def as_eps_fn(unet) -> EpsFn:
    """Wrap a diffusers ``UNet2DModel`` (epsilon-predicting) as ``fn(x_t, t) -> eps``."""
    return lambda x, t: unet(x, t).sample


def _check_level(level: float) -> float:
    v = real_number(level)
    if v is None or not 0.0 <= v <= 1.0:  # also refuses NaN
        raise InputError(f"expected a level in [0, 1], got {level!r}")
    return v


def _check_finite(**values: float | None) -> None:
    for name, v in values.items():
        if v is not None:
            finite_number(v, name)


def _model_schedule(model: EpsFn, schedule: dict[str, Any] | None) -> dict[str, Any] | None:
    """``schedule``, else the noise schedule stored with ``model`` (a ``DenoisingUNet``), else ``None``."""
    if schedule is not None:
        return schedule
    config = getattr(model, "config", None)
    return config.get("schedule") if isinstance(config, dict) else None


def paper_t0(schedule: dict[str, Any] | None) -> int:
    """DiffGAR's stopping step, 840 of ``T = 1000``, scaled to the schedule's ``T`` (1000 without
    one): ``round(0.84 T)``, at most ``T - 1``."""
    num_t = int((schedule or {}).get("num_train_timesteps", 1000))
    return min(round(DDIM_PAPER["t0"] / 1000 * num_t), num_t - 1)


def _roundtrip(model: EpsFn, x: torch.Tensor, perturb: Callable[[torch.Tensor], torch.Tensor], t0: int, steps: int,
               schedule: dict[str, Any] | None) -> torch.Tensor:
    """``x`` (checked by the caller) inverted to ``t0``, perturbed and decoded."""
    x = in_module_dtype(model, x)
    with torch.no_grad():
        z = ddim_invert(model, x * 2 - 1, steps, t0=t0, schedule=schedule)      # DiffGAR eq. 7
        out = ddim_decode(model, perturb(z), steps, t0=t0, schedule=schedule)    # DiffGAR eq. 8
    return ((out + 1) / 2).clamp(0, 1)


def ddim_gaussian(model: EpsFn, x: torch.Tensor, level: float = 0.5, generator: _random.Generator = None,
                  alpha: float | None = None, t0: int | None = None, steps: int = 48,
                  schedule: dict[str, Any] | None = None) -> tuple[torch.Tensor, dict]:
    """The ``ddim_gaussian`` artifact of ``x``: ``(N, C, H, W)`` in [0, 1] -> same, plus its parameters.

    Args:
        model: ``fn(x_t, t) -> eps`` (see the module docstring).
        x: clean images in [0, 1].
        level: strength in [0, 1]; ``alpha = 0.6 level`` unless ``alpha`` is given.
        generator: a generator, or one per image, for ``n``.
        t0, steps: stopping step and DDIM steps (DiffGAR: 840 of 1000, 48); ``t0=None`` scales
            840 to the schedule's ``T``.
        schedule: the model's noise schedule; ``None`` for the one a ``DenoisingUNet`` stores
            (else the default).

    Example:
        >>> eps = lambda x, t: torch.zeros_like(x)
        >>> y, p = ddim_gaussian(eps, torch.full((1, 3, 8, 8), 0.5), level=0.0)
        >>> bool((y - 0.5).abs().max() < 1e-5), p["alpha"]
        (True, 0.0)
    """
    check_image(x, "clean image", channels=(1, 3))  # before the noise is drawn in its dtype
    x = in_module_dtype(model, x)
    _check_finite(alpha=alpha)
    a = 0.6 * _check_level(level) if alpha is None else float(alpha)
    schedule = _model_schedule(model, schedule)
    t0 = paper_t0(schedule) if t0 is None else t0
    noise = _random.randn(generator, tuple(x.shape), x.device, x.dtype)
    y = _roundtrip(model, x, lambda z: z + a * noise, t0, steps, schedule)
    return y, {"kind": "ddim-gauss", "level": level, "alpha": a, "t0": t0, "steps": steps}


def ddim_scale_shift(model: EpsFn, x: torch.Tensor, level: float = 0.5, gamma: float | None = None,
                     beta: float | None = None, t0: int | None = None, steps: int = 48,
                     schedule: dict[str, Any] | None = None) -> tuple[torch.Tensor, dict]:
    """The ``ddim_scale`` artifact of ``x``: ``x~_{T0} = gamma x_{T0} + beta`` (deterministic).

    ``gamma = 1 + 0.03 level`` and ``beta = 0.02 level`` unless given; ``t0``, ``steps`` and
    ``schedule`` as in :func:`ddim_gaussian`.
    """
    check_image(x, "clean image", channels=(1, 3))
    lv = _check_level(level)
    _check_finite(gamma=gamma, beta=beta)
    g = 1.0 + 0.03 * lv if gamma is None else float(gamma)
    b = 0.02 * lv if beta is None else float(beta)
    schedule = _model_schedule(model, schedule)
    t0 = paper_t0(schedule) if t0 is None else t0
    y = _roundtrip(model, x, lambda z: g * z + b, t0, steps, schedule)
    return y, {"kind": "ddim-scale", "level": level, "gamma": g, "beta": b, "t0": t0, "steps": steps}


def identity_pair(x: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """A (clean, clean) pair, labelled ``[MASK]`` by training. Our addition: DiffGAR (§4) trains
    ``[MASK]`` only by relabelling 50 % of its artifact pairs, and has no clean/clean pairs."""
    check_image(x, "clean image", channels=(1, 3))
    return x.clone(), {"kind": "identity"}
