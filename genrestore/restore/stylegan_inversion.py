"""Robust unsupervised restoration by StyleGAN2 inversion (``../shared/seeds/003``, §4, Alg. 1).

Given degraded images ``y`` and a differentiable surrogate ``f`` of their degradation (a
benchmark task or composition from :mod:`genrestore.degrade`), find latents whose image
``G(w)`` satisfies ``f(G(w)) ~ y``, in three phases, each started from the previous result:

* Phase I (W): one ``w`` shared by all layers, initialized to the generator's mean ``w``;
  150 steps at learning rate 0.08.
* Phase II (W+): one ``w`` per style input, 150 steps at 0.02.
* Phase III (W++, eq. 7): one latent per convolution filter (output channel) of every
  modulated layer, each modulating its own filter, 150 steps at 0.005.

The optimizer is normalized gradient descent (eq. 8): each latent row's gradient is divided
by its norm (0 where the norm is 0), no momentum. The loss (eq. 9) sums LPIPS (VGG) between
``f(G(w))`` and ``y`` over resolutions, both sides average-pooled by 2 while ``y`` is larger
than 16 px, equal weights (at most 6 levels), plus 0.1 x L1 at the coarsest level reached,
as the authors' ``MultiscaleLPIPS`` does; for inpainting, both sides get the same fresh noise in
the missing pixels at every level, as theirs do. Images are processed as a batch; each image's loss is
summed, so images do not interact (NGD normalizes per latent row).

When the VGG backbone of LPIPS is not in the weight store, the loss falls back to
``1 - SSIM`` per level (named in the result's ``loss`` field), never silently.

Baselines: :func:`adam_invert` in W or W+, Adam on the same loss for the same total number of
steps: the plain Adam inversions §3 argues against. They are not the paper's baselines (§6.2:
PULSE, with its spherical optimization and regularizer, and L-BRGM, each tuned per task and level
and given the true Bernoulli mask).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Callable, Literal

import torch
import torch.nn.functional as F

from .. import _random
from .._checks import InputError, check_image, check_not_empty
from ..degrade.tasks import inpainting_mask

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (N, 3, h, w) x2 in [0, 1] -> (N,)


MAX_STEP_SCALE = 1e6  # 150 million steps a phase: beyond any real run, and the step counts stay ints


@dataclass
class InversionConfig:
    """Alg. 1's hyperparameters, the same for every task."""

    steps: tuple[int, int, int] = (150, 150, 150)
    lrs: tuple[float, float, float] = (0.08, 0.02, 0.005)
    min_loss_res: int = 16
    levels: int = 6
    l1_weight: float = 0.1
    step_scale: float = 1.0  # multiplies every phase's step count (quick runs)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.step_scale) and 0 < self.step_scale <= MAX_STEP_SCALE):
            raise InputError(f"step_scale must be a positive number <= {MAX_STEP_SCALE:g}, got {self.step_scale}")

    def phase_steps(self) -> list[int]:
        return [max(1, round(s * self.step_scale)) for s in self.steps]


@dataclass
class InversionResult:
    """Restored images ``(N, 3, H, W)`` in [0, 1] after each phase, the final latents and loss curves."""

    images: dict[str, torch.Tensor]
    latents: object
    losses: dict[str, list[float]] = field(default_factory=dict)
    loss: str = "lpips-vgg"

    @property
    def final(self) -> torch.Tensor:
        return list(self.images.values())[-1]


def perceptual_loss(net: Literal["vgg", "alex"] = "vgg", device: torch.device | str = "cpu") -> tuple[LossFn, str]:
    """LPIPS from the weight store as a differentiable ``(x, y) -> (N,)``, or ``1 - SSIM`` when its
    backbone is absent. Returns the function and its name."""
    from .. import weights as ws
    from ..metrics.lpips import BACKBONE_WEIGHT, LPIPS

    if ws.find(BACKBONE_WEIGHT[net]) is not None:
        model = LPIPS.from_store(net).to(device).requires_grad_(False)
        return model, f"lpips-{net}"
    from ..metrics.full_reference import ssim_map

    def one_minus_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < 11:
            return (x - y).abs().mean(dim=(1, 2, 3))
        return 1 - ssim_map(x, y).mean(dim=(1, 2, 3))

    return one_minus_ssim, f"1-ssim (LPIPS backbone {BACKBONE_WEIGHT[net]!r} not in the weight store)"


def multiscale_loss(pred: torch.Tensor, target: torch.Tensor, distance: LossFn, mask: torch.Tensor | None = None,
                    min_res: int = 16, levels: int = 6, l1_weight: float = 0.1,
                    generator: _random.Generator = None) -> torch.Tensor:
    """Eq. 9 per image, ``(N,)``: ``distance`` at each resolution while ``target`` is larger than
    ``min_res`` px (average-pooled by 2 between levels), plus ``l1_weight`` x L1 at the last one.

    Args:
        pred: ``f(G(w))``, the degraded prediction, same shape as ``target``.
        target: the degraded images ``y``.
        distance: per-image distance, e.g. LPIPS.
        mask: ``(N, 1, H, W)`` keep-mask of an inpainting task (1 = known). At each level, before
            ``distance``, both sides get the same fresh noise ``(randn + 0.5) / 2`` weighted by the
            missing fraction ``1 - m`` (``m``: the mask area-resized to the level), so the distance
            does not reward any particular colour in the holes; the L1 term takes no noise.
        generator: the source of that noise (drawn on the generator's device): one
            ``torch.Generator``, or one per image so that an image's noise does not depend on its batch.
    """
    if pred.shape != target.shape:
        raise InputError(f"degraded prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    x, y = pred, target
    m = None if mask is None else F.interpolate(mask.to(x.dtype), size=tuple(y.shape[-2:]), mode="area")
    total = x.new_zeros(x.shape[0])
    for _ in range(levels):
        if y.shape[-1] <= min_res or y.shape[-2] <= min_res:
            break
        if m is None:
            total = total + distance(x, y)
        else:
            hole_noise = (_random.randn(generator, tuple(y.shape)).to(y) + 0.5) / 2 * (1 - m)
            total = total + distance(x + hole_noise, y + hole_noise)
            m = F.avg_pool2d(m, 2)
        x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return total + l1_weight * (x - y).abs().mean(dim=(1, 2, 3))


@torch.no_grad()
def ngd_step(params: list[torch.Tensor], lr: float) -> None:
    """Normalized gradient descent (eq. 8): ``p -= lr * g / ||g||`` per latent row (last dim), 0 where ``||g|| = 0``."""
    for p in params:
        if p.grad is None:
            continue
        norm = p.grad.norm(dim=-1, keepdim=True)
        p -= lr * torch.where(norm > 0, p.grad / norm.clamp_min(1e-30), torch.zeros_like(p.grad))


def _image_loss(task, params, target: torch.Tensor, distance: LossFn, config: InversionConfig,
                generator) -> Callable[[torch.Tensor], torch.Tensor]:
    """``G(w) -> (N,)``: eq. 9 between the task's surrogate of the image and the target."""
    mask = inpainting_mask(task, params, target)  # the loss puts noise under its holes (§5.1)
    return lambda img: multiscale_loss(task.surrogate(img, params, generator), target, distance, mask,
                                       config.min_loss_res, config.levels, config.l1_weight, generator)


def _optimize(render: Callable[[], torch.Tensor], latents: list[torch.Tensor], steps: int, step_fn,
              loss_fn: Callable[[torch.Tensor], torch.Tensor], label: str, progress: bool) -> list[float]:
    from tqdm import tqdm

    history = []
    for _ in tqdm(range(steps), desc=label, unit="step", disable=not progress, leave=False):
        for p in latents:
            p.grad = None
        loss = loss_fn(render())
        loss.sum().backward()
        step_fn()
        history.append(float(loss.detach().mean()))
    return history


@contextlib.contextmanager
def _frozen(G):
    """``G``'s parameters without gradients for the block, each flag restored afterwards (the
    caller's generator may be in training)."""
    flags = [p.requires_grad for p in G.parameters()]
    G.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(G.parameters(), flags):
            p.requires_grad_(flag)


def robust_invert(G, target: torch.Tensor, task, params=None, config: InversionConfig | None = None,
                  distance: tuple[LossFn, str] | None = None, generator: _random.Generator = None,
                  progress: bool = True) -> InversionResult:
    """Restore ``target`` by the 3-phase robust inversion of ``G`` (see the module docstring).

    Args:
        G: a :class:`~genrestore.models.stylegan2.StyleGAN2Generator` (or anything with its
            ``mapping.w_avg``, ``num_ws``, ``styles_from_w/wplus/wpp``, ``wplus_to_wpp`` and
            ``synthesis_from_styles``, which returns unclamped images around [0, 1]).
        target: ``(N, 3, h, w)`` degraded images in [0, 1], as ``task.degrade`` makes them from
            images of the generator's resolution.
        task: a benchmark task or composition; its ``surrogate`` is inverted.
        params: the task parameters the surrogate needs (inpainting: the known mask).
        config: step counts and learning rates (Alg. 1).
        distance: per-image perceptual distance and its name (default :func:`perceptual_loss`).
        generator: randomness of stochastic surrogates and of the inpainting noise; a list of
            one generator per image makes each image's result independent of its batch.

    Returns:
        :class:`InversionResult` with the image after each phase ("W", "W+", "W++").
    """
    check_image(target, "degraded image", channels=(3,))
    check_not_empty(target, "degraded image")
    config = config or InversionConfig()
    dist, dist_name = distance or perceptual_loss("vgg", target.device)
    loss_fn = _image_loss(task, params, target, dist, config, generator)
    with _frozen(G):
        return _robust_invert(G, target, config, loss_fn, dist_name, progress)


def _robust_invert(G, target: torch.Tensor, config: InversionConfig, loss_fn, dist_name: str,
                   progress: bool) -> InversionResult:
    n = target.shape[0]
    images, losses = {}, {}
    s1, s2, s3 = config.phase_steps()
    lr1, lr2, lr3 = config.lrs
    # Phase I: one w for all layers, from the mean w
    w = G.mapping.w_avg.detach().to(target.device).reshape(1, -1).repeat(n, 1).requires_grad_(True)
    render = lambda: G.synthesis_from_styles(G.styles_from_w(w))  # noqa: E731
    losses["W"] = _optimize(render, [w], s1, lambda: ngd_step([w], lr1), loss_fn, "phase I (W)", progress)
    images["W"] = render().detach().clamp(0, 1)
    # Phase II: one w per style input
    ws = w.detach().unsqueeze(1).repeat(1, G.num_ws, 1).requires_grad_(True)
    render = lambda: G.synthesis_from_styles(G.styles_from_wplus(ws))  # noqa: E731
    losses["W+"] = _optimize(render, [ws], s2, lambda: ngd_step([ws], lr2), loss_fn, "phase II (W+)", progress)
    images["W+"] = render().detach().clamp(0, 1)
    # Phase III: one latent per convolution filter (output channel) of every modulated layer (eq. 7)
    wpp = [t.detach().clone().requires_grad_(True) for t in G.wplus_to_wpp(ws.detach())]
    render = lambda: G.synthesis_from_styles(G.styles_from_wpp(wpp))  # noqa: E731
    losses["W++"] = _optimize(render, wpp, s3, lambda: ngd_step(wpp, lr3), loss_fn, "phase III (W++)", progress)
    images["W++"] = render().detach().clamp(0, 1)  # the generator may overshoot [0, 1]
    return InversionResult(images, [t.detach() for t in wpp], losses, dist_name)


def adam_invert(G, target: torch.Tensor, task, params=None, space: Literal["w", "w+"] = "w", steps: int = 450,
                lr: float = 0.1, config: InversionConfig | None = None, distance: tuple[LossFn, str] | None = None,
                generator: _random.Generator = None, progress: bool = True) -> InversionResult:
    """Baselines: Adam in W (PULSE-style, one latent for all layers) or in W+ (the inversion the
    paper criticizes), on the same loss, from the mean w, for ``steps`` steps."""
    check_image(target, "degraded image", channels=(3,))
    config = config or InversionConfig()
    dist, dist_name = distance or perceptual_loss("vgg", target.device)
    loss_fn = _image_loss(task, params, target, dist, config, generator)
    n = target.shape[0]
    w = G.mapping.w_avg.detach().to(target.device).reshape(1, -1).repeat(n, 1)
    if space == "w+":
        w = w.unsqueeze(1).repeat(1, G.num_ws, 1)
    w.requires_grad_(True)
    styles = G.styles_from_w if space == "w" else G.styles_from_wplus
    render = lambda: G.synthesis_from_styles(styles(w))  # noqa: E731
    opt = torch.optim.Adam([w], lr=lr)
    steps = max(1, round(steps * config.step_scale))
    with _frozen(G):
        hist = _optimize(render, [w], steps, opt.step, loss_fn, f"Adam ({space})", progress)
        final = render().detach().clamp(0, 1)
    return InversionResult({space.upper(): final}, w.detach(), {space.upper(): hist}, dist_name)


def check_generator_size(G, image_hw: tuple[int, int]) -> tuple[int, int]:
    """The generator's ``(H, W)``; raise when the image's aspect ratio differs (it is then not a resize)."""
    r = int(G.resolution)
    h, w = image_hw
    if not math.isclose(h / w, 1.0, rel_tol=1e-6):
        raise InputError(f"image of {w}x{h} px does not have the generator's square aspect ({r}x{r}); crop it first")
    return r, r
