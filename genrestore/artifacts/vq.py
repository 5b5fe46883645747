"""Token-level artifacts (DiffGAR §3.1-3.2): VQ token replacement and autoregressive resampling.

Both encode the clean image to a VQ token grid (:class:`~genrestore.models.vq.VQAutoencoder`),
change some tokens, and decode. DiffGAR's settings (§5 and appendix B, FFHQ at 256 px, on the
tokens of a Taming-Transformers VQGAN, §3.1-3.2 and appendix B; the paper gives no token grid
size for these, its VQ-f4 of appendix C.1 is the restorer's autoencoder): token replacement
swaps a random 4 x 4 token rectangle for uniformly random codebook entries; GPT sampling keeps 90 % of the tokens and resamples 10 % with top-k 500 at temperature
18 (test) or 21 (training). Here ``level`` in [0, 1] sets the amount linearly, with level 0.5 =
the paper's: rectangle side ``round(8 level)`` tokens; resampled fraction ``0.2 level``.

Images whose sides are not multiples of the autoencoder's factor are padded (reflect) and the
artifact image is cropped back. The artifact image is the decoder's output everywhere, so it also
carries the autoencoder's reconstruction error (the paper does not say whether its pairs do).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from .. import _random
from .._checks import InputError, check_image, finite_number, whole_number_at_least
from .ddim import _check_level

VQ_PAPER = {"rect_tokens": 4, "resample_fraction": 0.10, "top_k": 500, "temperature": 18.0}  # 18: test pairs (training: 21)


def _encode(vq, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    from ..restore.idm import pad_to_multiple

    check_image(x, "clean image", channels=(3,))
    padded, hw = pad_to_multiple(x, vq.factor)
    with torch.no_grad():
        return vq.encode_tokens(padded), hw


def check_ar_resample_size(vq, gpt, hw: tuple[int, int]) -> None:
    """Raise :class:`InputError` unless an image of ``hw = (H, W)`` px gives ``vq`` a token grid
    (padded to the factor) that ``gpt`` models: at least its grid a side, with the same codebook."""
    h, w = (-(-s // vq.factor) for s in hw)
    side = gpt.grid
    if h < side or w < side or gpt.vocab_size != vq.codebook_size:
        raise InputError(f"the transformer models {side}x{side} tokens of {gpt.vocab_size} codes; this image has "
                         f"{w}x{h} tokens of {vq.codebook_size} (it needs images of at least {side * vq.factor} px "
                         "a side, from the same autoencoder)")


def _decode(vq, tokens: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    with torch.no_grad():
        return vq.decode_tokens(tokens)[..., : hw[0], : hw[1]]


def replace_tokens(tokens: torch.Tensor, side: int, codebook_size: int, generator: _random.Generator = None
                   ) -> tuple[torch.Tensor, list[list[int]]]:
    """Replace a random ``side x side`` rectangle of each ``(h, w)`` token grid by uniform random codes.

    Image ``i`` draws its position (two uniforms), then its ``side^2`` codes, from its generator.

    Returns:
        ``(tokens (N, h, w), rects)``, ``rects[i] = [top, left, height, width]`` (clipped to the grid).
    """
    if not (isinstance(tokens, torch.Tensor) and tokens.ndim == 3 and not tokens.is_floating_point()):
        raise InputError(f"expected tokens as an integer (N, h, w) tensor, got "
                         f"{tuple(tokens.shape) + (tokens.dtype,) if isinstance(tokens, torch.Tensor) else type(tokens)}")
    side = whole_number_at_least(side, "side", 0)
    codebook_size = whole_number_at_least(codebook_size, "codebook_size", 1)
    n, h, w = tokens.shape
    rh, rw = max(0, min(side, h)), max(0, min(side, w))
    rects = []
    out = tokens.clone()
    for i, g in enumerate(_random.per_image(generator, n)):  # one rectangle per image
        u = _random.rand(g, (2,), dtype=torch.float64)
        top, left = int(u[0] * (h - rh + 1)), int(u[1] * (w - rw + 1))
        codes = _random.randint(g, rh * rw, 0, codebook_size).view(rh, rw)
        out[i, top:top + rh, left:left + rw] = codes.to(out.device)
        rects.append([top, left, rh, rw])
    return out, rects


def vq_replace(vq, x: torch.Tensor, level: float = 0.5, generator: _random.Generator = None,
               rect_tokens: int | None = None) -> tuple[torch.Tensor, dict]:
    """The ``replace_token`` artifact of ``x``.

    Per image: a ``r x r`` token rectangle at a uniform random position (``r = round(8 level)``
    unless ``rect_tokens`` is given, clipped to the grid), each token inside replaced by a uniform
    random codebook index; then decode.

    Args:
        vq: a :class:`~genrestore.models.vq.VQAutoencoder` in eval mode.
        x: ``(N, 3, H, W)`` clean images in ``[0, 1]``.
        level: in ``[0, 1]``; 0 replaces nothing (the decoder's reconstruction).
        generator: one generator, or one per image (position, then the new codes).

    Returns:
        ``(artifact (N, 3, H, W) in [0, 1], params)`` with ``params["rects"]``: per image
        ``[top, left, height, width]`` in tokens.
    """
    level = _check_level(level)
    r = round(8 * level) if rect_tokens is None else whole_number_at_least(rect_tokens, "rect_tokens", 0)
    tokens, hw = _encode(vq, x)
    out, rects = replace_tokens(tokens, r, vq.codebook_size, generator)
    params = {"kind": "vq-replace", "level": level, "rect_tokens": r, "rects": rects, "factor": vq.factor,
              "codebook_size": vq.codebook_size}
    return _decode(vq, out, hw), params


def ar_resample(vq, gpt, x: torch.Tensor, level: float = 0.5, generator: _random.Generator = None,
                temperature: float = 18.0, top_k: int | None = 500, region: Literal["suffix", "rectangle"] = "suffix",
                fraction: float | None = None) -> tuple[torch.Tensor, dict]:
    """The GPT-sampling artifact of ``x``: resample a fraction of its tokens with the transformer.

    ``region="suffix"`` keeps the tokens before a position (in raster order) and resamples the
    last ``round(fraction L)``; ``"rectangle"`` resamples a random square of about ``fraction L``
    tokens, each given every token before it. ``fraction = 0.2 level`` unless given.

    Args:
        vq: the autoencoder whose tokens ``gpt`` models.
        gpt: a :class:`~genrestore.models.vq.TokenTransformer` over ``vq``'s tokens; token grids
            larger than its own are sampled with a sliding window
            (:meth:`~genrestore.models.vq.TokenTransformer.sample_grid`).
        x: ``(N, 3, H, W)`` clean images in ``[0, 1]``.
        temperature, top_k: sampling settings (DiffGAR: 18 and 500 on FFHQ; top-k is clipped to
            the codebook size).
        generator: one generator, or one per image.

    Returns:
        ``(artifact, params)`` with the resampled token positions per image (``"first"`` for the
        suffix, ``"rects"`` for rectangles) and the sampling settings.
    """
    level = _check_level(level)
    frac = 0.2 * level if fraction is None else float(fraction)
    if not 0 <= frac <= 1:
        raise InputError(f"expected a fraction in [0, 1], got {frac}")
    temperature = finite_number(temperature, "temperature", 0, low_open=True)
    top_k = None if top_k is None else whole_number_at_least(top_k, "top_k (or None)", 1)
    if region not in ("suffix", "rectangle"):
        raise InputError(f"expected region 'suffix' or 'rectangle', got {region!r}")
    tokens, hw = _encode(vq, x)
    check_ar_resample_size(vq, gpt, hw)
    n, h, w = tokens.shape
    keep = torch.ones(n, h, w, dtype=torch.bool)
    gens = _random.per_image(generator, n)
    params: dict = {"kind": "ar-resample", "level": level, "fraction": frac, "region": region,
                    "temperature": temperature, "top_k": top_k}
    if region == "suffix":
        first = h * w - round(frac * h * w)
        keep.view(n, -1)[:, first:] = False
        params["first"] = first
    else:
        side = min(h, w, round(math.sqrt(frac * h * w)))
        rects = []
        for i, g in enumerate(gens):
            u = _random.rand(g, (2,), dtype=torch.float64)
            top, left = int(u[0] * (h - side + 1)), int(u[1] * (w - side + 1))
            keep[i, top:top + side, left:left + side] = False
            rects.append([top, left, side, side])
        params["rects"] = rects
    grid = gpt.sample_grid(tokens, keep.to(tokens.device), temperature, top_k, generator)
    params["tokens_resampled"] = int((~keep).sum()) // max(n, 1)
    return _decode(vq, grid, hw), params
