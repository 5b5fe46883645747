"""JPEG: libjpeg through Pillow (the true codec), and a batched differentiable JPEG in torch.

The torch codec follows baseline libjpeg as Pillow drives it, step by step, so that its
output is close to Pillow's decode of Pillow's encode:

1. RGB -> YCbCr (JFIF, ITU-R BT.601 full range), on 0..255 intensities;
2. the image is padded to whole MCUs by replicating its last row and column (16 px for
   4:2:0, 8 px for grey), and Cb/Cr are averaged over 2x2 (libjpeg ``h2v2_downsample``);
   for 4:2:0, as libjpeg, the rows are first padded only to an even count and the averaged
   chroma is then padded to whole blocks by repeating its last row;
3. 8x8 orthonormal DCT-II of each block after a level shift of 128;
4. quantization ``round(F / Q)`` with the IJG tables (ITU-T T.81 Annex K) scaled by quality
   exactly as ``jpeg_set_quality(..., force_baseline=TRUE)`` does, then dequantization;
5. inverse DCT, and chroma upsampling with libjpeg's "fancy" triangle filter (weights 3/4,
   1/4 along each axis, edges replicated at the real chroma size);
6. YCbCr -> RGB and clamping to [0, 1]. libjpeg's range limits (decoded samples to 0..255
   after the inverse DCT, RGB to [0, 1]) are straight-through in the backward pass.

Rounding (step 4) is the only non-differentiable step. Its forward pass is always exact;
with ``rounding="surrogate"`` the backward pass uses the derivative of
``lerp(x, round(x) + (x - round(x))^3, k)`` (Shin & Song 2017, robust StyleGAN eqs. 14-15),
``k = 0.8`` by default.
"""

from __future__ import annotations

import io
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import InputError, check_float_tensor, check_image
from .._tensor_cache import tensor_cache

# ITU-T T.81 Annex K, tables K.1 (luminance) and K.2 (chrominance), natural (row-major) order.
LUMA_TABLE = (
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
)
CHROMA_TABLE = (
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
)

Quality = int | float | torch.Tensor


def _qualities(quality: Quality) -> torch.Tensor:
    q = torch.as_tensor(quality).reshape(-1)
    if q.is_floating_point():
        if not torch.equal(q, q.round()):
            raise InputError(f"JPEG quality must be a whole number, got {q.tolist()}")
    if ((q < 1) | (q > 100)).any():
        raise InputError(f"JPEG quality must lie in 1..100, got {q.tolist()}")
    return q.long()


def quantization_tables(quality: Quality) -> torch.Tensor:
    """IJG quantization tables at ``quality``, as libjpeg writes them with force_baseline.

    ``scale = 5000 // q`` for ``q < 50`` else ``200 - 2 q``;
    ``table = clip((base * scale + 50) // 100, 1, 255)`` (libjpeg ``jpeg_add_quant_table``).

    Args:
        quality: integer 1..100, or ``(N,)`` integers.

    Returns:
        ``(N, 2, 8, 8)`` float32: ``[:, 0]`` luminance, ``[:, 1]`` chrominance.

    Example:
        >>> quantization_tables(50)[0, 0, 0].tolist()
        [16.0, 11.0, 10.0, 16.0, 24.0, 40.0, 51.0, 61.0]
    """
    q = _qualities(quality)
    scale = torch.where(q < 50, 5000 // q, 200 - 2 * q)
    base = torch.tensor([LUMA_TABLE, CHROMA_TABLE], dtype=torch.long, device=q.device).view(1, 2, 8, 8)
    table = (base * scale.view(-1, 1, 1, 1) + 50) // 100
    return table.clamp(1, 255).float()


def _dct_matrix() -> torch.Tensor:
    """8x8 orthonormal DCT-II in float64: ``D[u, x] = c(u) cos((2x + 1) u pi / 16)``."""
    u = torch.arange(8, dtype=torch.float64)[:, None]
    x = torch.arange(8, dtype=torch.float64)[None, :]
    d = torch.cos((2 * x + 1) * u * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d


@tensor_cache(maxsize=8)
def _dct2_matrix(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """64x64 2-D DCT on row-major flattened 8x8 blocks: ``vec(D B D^T) = (D kron D) vec(B)``."""
    d = _dct_matrix()
    return torch.kron(d, d).to(device=device, dtype=dtype)


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.floor(x.abs() + 0.5)  # libjpeg's quantizer rounds halves away from 0


class _RoundSurrogate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, k: float) -> torch.Tensor:
        r = _round_half_away(x)
        ctx.save_for_backward(x - r)
        ctx.k = k
        return r

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (d,) = ctx.saved_tensors
        # d/dx lerp(x, round(x) + (x - round(x))^3, k) with round(x) held constant
        return grad * ((1 - ctx.k) + 3 * ctx.k * d * d), None


def round_surrogate(x: torch.Tensor, k: float = 0.8) -> torch.Tensor:
    """Exact rounding (halves away from zero) with the cubic-lerp surrogate gradient.

    Example:
        >>> x = torch.tensor([0.2, 0.5, -1.5], requires_grad=True)
        >>> y = round_surrogate(x); y.sum().backward()
        >>> y.tolist(), [round(g, 4) for g in x.grad.tolist()]
        ([0.0, 1.0, -2.0], [0.296, 0.8, 0.8])
    """
    check_float_tensor(x)
    return _RoundSurrogate.apply(x, k)


_RGB_TO_YCC = torch.tensor([[0.299, 0.587, 0.114],
                            [-0.168735892, -0.331264108, 0.5],
                            [0.5, -0.418687589, -0.081312411]], dtype=torch.float64)
_YCC_OFFSET = torch.tensor([0.0, 128.0, 128.0], dtype=torch.float64)


def _color_convert(x: torch.Tensor, matrix: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Per-pixel affine colour transform ``matrix @ rgb + bias`` (a matmul over the channel axis:
    on CPU it is ~80x faster than the equivalent 1x1 convolution)."""
    n, _, h, w = x.shape
    out = torch.baddbmm(bias.to(x).view(1, 3, 1).expand(n, 3, 1), matrix.to(x).expand(n, 3, 3), x.reshape(n, 3, h * w))
    return out.view(n, 3, h, w)


def _blocks_codec(x: torch.Tensor, table: torch.Tensor, rounding: str, k: float) -> torch.Tensor:
    """Quantize ``(N, c, H, W)`` level-shifted samples (H, W multiples of 8) in the DCT domain.

    ``table`` is ``(N or 1, 8, 8)``.
    """
    n, c, h, w = x.shape
    dct2 = _dct2_matrix(x.device, x.dtype)
    blocks = x.reshape(n, c, h // 8, 8, w // 8, 8).transpose(3, 4).reshape(n, c, h // 8, w // 8, 64)
    coef = blocks @ dct2.T  # one GEMM over all blocks
    q = table.to(x).reshape(-1, 1, 1, 1, 64)
    scaled = coef / q
    quant = round_surrogate(scaled, k) if rounding == "surrogate" else _round_half_away(scaled)
    rec = (quant * q) @ dct2
    return rec.reshape(n, c, h // 8, w // 8, 8, 8).transpose(3, 4).reshape(n, c, h, w)


def _fancy_upsample(x: torch.Tensor) -> torch.Tensor:
    """libjpeg h2v2 'fancy' upsampling: each output sample is 3/4 nearest + 1/4 next input sample per axis."""
    def along(t: torch.Tensor, dim: int) -> torch.Tensor:
        size = t.shape[dim]
        prev = torch.cat([t.narrow(dim, 0, 1), t.narrow(dim, 0, size - 1)], dim)
        nxt = torch.cat([t.narrow(dim, 1, size - 1), t.narrow(dim, size - 1, 1)], dim)
        even, odd = 0.75 * t + 0.25 * prev, 0.75 * t + 0.25 * nxt
        return torch.stack([even, odd], dim + 1).flatten(dim, dim + 1)

    return along(along(x, 2), 3)


def _range_limit(v: torch.Tensor, top: float = 255.0) -> torch.Tensor:
    """libjpeg's range limit to ``0..top`` in the forward pass: of decoded samples (0..255, after
    the inverse DCT, before colour conversion) and of the RGB output (0..1). The gradient passes
    through unchanged (straight-through), as in the unclamped DiffJPEG that the robust StyleGAN
    authors invert, so saturated samples and pixels do not cut the surrogate's gradient."""
    return v + (v.clamp(0.0, top) - v).detach()


def jpeg_torch(x: torch.Tensor, quality: Quality, rounding: Literal["surrogate", "exact"] = "surrogate",
               k: float = 0.8, subsampling: Literal["4:2:0", "4:4:4"] = "4:2:0",
               check_range: bool = True) -> torch.Tensor:
    """Differentiable JPEG compression and decompression of a batch, in torch.

    Args:
        x: ``(N, C, H, W)`` images in [0, 1], C = 3 (RGB) or 1 (grey, luminance table only);
            any size (padded internally to whole MCUs and cropped back).
        quality: IJG quality 1..100; int or ``(N,)`` per image.
        rounding: ``surrogate`` (exact forward, cubic-lerp gradient) or ``exact`` (zero gradient).
        k: surrogate interpolation weight; 0 is a straight-through estimator.
        subsampling: chroma subsampling; ``4:2:0`` is Pillow's default.
        check_range: check that ``x`` lies in [0, 1] (a device sync); ``False`` for callers whose
            input is in range by construction and that run in loops (the deartifact surrogate).

    Returns:
        ``(N, C, H, W)`` decoded images in [0, 1] (float, not quantized to 8 bits).

    Example:
        >>> x = torch.rand(2, 3, 20, 30)
        >>> jpeg_torch(x, torch.tensor([10, 90])).shape
        torch.Size([2, 3, 20, 30])
    """
    check_image(x, check_range=check_range)
    if rounding not in ("surrogate", "exact"):
        raise InputError(f"unknown rounding {rounding!r}; expected surrogate or exact")
    if subsampling not in ("4:2:0", "4:4:4"):
        raise InputError(f"unknown chroma subsampling {subsampling!r}; expected 4:2:0 or 4:4:4")
    tables = quantization_tables(quality).to(x.device)
    if tables.shape[0] not in (1, x.shape[0]):
        raise InputError(f"expected 1 or {x.shape[0]} qualities, got {tables.shape[0]}")
    n, c, h, w = x.shape
    v = x * 255.0
    if c == 1:
        pad_h, pad_w = -h % 8, -w % 8
        y = F.pad(v, (0, pad_w, 0, pad_h), mode="replicate")
        y = _blocks_codec(y - 128.0, tables[:, 0], rounding, k) + 128.0
        return _range_limit(y[:, :, :h, :w] / 255.0, 1.0)

    ycc = _color_convert(v, _RGB_TO_YCC, _YCC_OFFSET)
    mcu = 16 if subsampling == "4:2:0" else 8
    luma = F.pad(ycc[:, :1], (0, -w % mcu, 0, -h % mcu), mode="replicate")
    luma = _range_limit(_blocks_codec(luma - 128.0, tables[:, 0], rounding, k) + 128.0)
    if subsampling == "4:2:0":
        # libjpeg (jcprepct.c, h2v2_downsample): full-size rows are replicated only to an even
        # count and columns to the MCU width, then 2x2-averaged; the subsampled chroma is then
        # padded to whole blocks by replicating its own last row
        chroma = F.avg_pool2d(F.pad(ycc[:, 1:], (0, -w % mcu, 0, h % 2), mode="replicate"), 2)
        chroma = F.pad(chroma, (0, 0, 0, -chroma.shape[-2] % 8), mode="replicate")
        chroma = _range_limit(_blocks_codec(chroma - 128.0, tables[:, 1], rounding, k) + 128.0)
        chroma = _fancy_upsample(chroma[:, :, :math.ceil(h / 2), :math.ceil(w / 2)])
    else:
        chroma = F.pad(ycc[:, 1:], (0, -w % mcu, 0, -h % mcu), mode="replicate")
        chroma = _range_limit(_blocks_codec(chroma - 128.0, tables[:, 1], rounding, k) + 128.0)
    ycc = torch.cat([luma[:, :, :h, :w], chroma[:, :, :h, :w]], 1)
    inverse = torch.linalg.inv(_RGB_TO_YCC)
    rgb = _color_convert(ycc, inverse / 255.0, -(inverse @ _YCC_OFFSET) / 255.0)
    return _range_limit(rgb, 1.0)


def _pillow_roundtrip(arr: np.ndarray, quality: int, subsampling: str) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=int(quality), subsampling=subsampling)
    buf.seek(0)
    with Image.open(buf) as dec:
        out = np.asarray(dec.convert("L" if arr.shape[2] == 1 else "RGB"))
    return out[:, :, None] if out.ndim == 2 else out


def jpeg_pillow(x: torch.Tensor, quality: Quality, subsampling: Literal["4:2:0", "4:2:2", "4:4:4"] = "4:2:0",
                workers: int | None = None) -> torch.Tensor:
    """JPEG-compress and decode each image with libjpeg through Pillow (the true degradation).

    Images are first quantized to 8 bits, as a saved file would be. Pillow's codec releases
    the GIL, so a batch runs on a thread pool with one thread per core.

    Args:
        x: ``(N, C, H, W)`` images in [0, 1], C = 1 or 3.
        quality: 1..100; int or ``(N,)``.
        subsampling: ``4:2:0`` (Pillow's default), ``4:2:2`` or ``4:4:4`` (or Pillow's codes 2, 1, 0).
        workers: threads (default: the number of CPU cores; 1 runs a plain loop).

    Returns:
        ``(N, C, H, W)`` images on 8-bit levels (multiples of 1/255 in [0, 1]), of ``x``'s dtype
        and device; detached (not differentiable: see :func:`jpeg_torch` for a surrogate).

    Raises:
        InputError: if ``x`` is not a float ``(N, C, H, W)`` tensor in [0, 1] with C = 1 or 3,
            a quality is not a whole number in 1..100, the number of qualities is neither 1 nor
            N, or ``subsampling`` is unknown.

    Example:
        >>> x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> y = jpeg_pillow(x, torch.tensor([10, 95]))  # one quality per image
        >>> y.shape, bool(torch.equal(y * 255, (y * 255).round()))
        (torch.Size([2, 3, 16, 16]), True)
        >>> err = (y - x).abs().mean(dim=(1, 2, 3))
        >>> bool(err[0] > err[1])  # quality 10 loses more than 95
        True
    """
    check_image(x)
    if isinstance(subsampling, bool) or subsampling not in ("4:2:0", "4:2:2", "4:4:4", 0, 1, 2):
        raise InputError(f"unknown chroma subsampling {subsampling!r}; expected 4:2:0, 4:2:2 or 4:4:4 (or 2, 1, 0)")
    q = _qualities(quality)
    if q.numel() == 1:
        q = q.expand(x.shape[0])
    if q.numel() != x.shape[0]:
        raise InputError(f"expected 1 or {x.shape[0]} qualities, got {q.numel()}")
    if x.shape[0] == 0:
        return x.detach().clone()
    arrs = (x.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    workers = min(workers or os.cpu_count() or 1, len(arrs))
    if workers <= 1:
        outs = [_pillow_roundtrip(a, qi, subsampling) for a, qi in zip(arrs, q.tolist())]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            outs = list(pool.map(_pillow_roundtrip, arrs, q.tolist(), [subsampling] * len(arrs)))
    y = torch.from_numpy(np.stack(outs)).permute(0, 3, 1, 2).to(x.dtype) / 255.0
    return y.to(x.device)
