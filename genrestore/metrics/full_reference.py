"""Full-reference metrics: MSE, PSNR and SSIM, on RGB or on luma Y, batched in torch.

Conventions (those of BasicSR and the super-resolution papers):

* images are ``(N, C, H, W)`` in [0, 1]; ``data_range`` is 1;
* ``y_channel=True`` compares ITU-R BT.601 luma in studio range,
  ``Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255``;
* ``crop_border=k`` drops ``k`` pixels on each side first (SR papers crop the scale factor);
* SSIM (Wang et al. 2004) uses an 11x11 Gaussian window with sigma 1.5, ``K1 = 0.01``,
  ``K2 = 0.03``, population covariances, the mean of the SSIM map over the *valid* window
  positions, averaged over channels. This equals scikit-image's
  ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=1)`` (which filters with reflect padding, then crops the 5-pixel border) and
  BasicSR's ``calculate_ssim``.

Per-image values are float64; the arithmetic is float32 by default (agreeing with float64 and
scikit-image to ~1e-6; ``precision="float64"`` for exactness at ~20x the CPU time). The metric classes accumulate float64 sums in ``update`` and
finish in ``compute``; ``merge`` adds another instance's state (shards, ranks).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Literal

import torch
import torch.nn.functional as F

from .._checks import InputError, check_image, finite_number, whole_number
from .._tensor_cache import tensor_cache


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` RGB in [0, 1] -> ``(N, 1, H, W)`` BT.601 studio-range luma in [16/255, 235/255].

    Example:
        >>> rgb_to_y(torch.ones(1, 3, 1, 1)).mul(255).round().item()
        235.0
    """
    check_image(x, "image", channels=(3,), check_range=False)  # a uint8 image would meet uint8 weights (all 0)
    return _luma(x)


Precision = Literal["float32", "float64"]
_Y_WEIGHTS = (65.481 / 255, 128.553 / 255, 24.966 / 255)
_BLOCK = 1 << 19  # elements (luma: pixels) per row block of mse() on the CPU: its temporaries stay in cache
_SSIM_WINDOW = 11  # side of SSIM's Gaussian window, px
_SSIM_CHANNELS = 16  # ssim() groups small images so that each ssim_map call filters this many channels
_SSIM_ELEMENTS = 1 << 20  # ... and its maps hold at most this many elements
_SSIM_MIN_ROWS = 32  # output rows per strip of a large image, at least
_LUMA_EXACT_BELOW = 1e-6  # a mixed-layout luma MSE below this (PSNR > 60 dB) is recomputed from the difference
_THREADED_PIXELS = 1 << 18  # the MSE's OpenCV paths use threads from a batch of this many pixels (inside the crop or not)
_RANGE_GRID = 32  # psnr() checks its data_range on a grid of at most ~32 x 32 pixels an image
_LUMA_BLOCK = 1 << 16  # pixels per work unit of the mixed-layout luma MSE: both lumas stay in L2 for the norm


def _prepare(x: torch.Tensor, y: torch.Tensor, crop_border: int, y_channel: bool = False,
             dtype: torch.dtype | None = None, data_range: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked, cropped pair in ``dtype``; with ``y_channel``, their luma (taken before the crop:
    the two commute, and the whole images are contiguous, which makes the luma one matrix product),
    whose offset 16/255 of the range is ``16 data_range / 255`` (16 for images in 0..255)."""
    x, y = _checked(x, y, crop_border, dtype)
    if y_channel:
        if x.shape[1] != 3:
            raise InputError("y_channel=True needs RGB images")
        if data_range == 1.0:
            x, y = _luma(x), _luma(y)
        else:
            offset = 16.0 / 255.0 * data_range
            x, y = _luma(x, offset=False) + offset, _luma(y, offset=False) + offset
    return _crop(x, crop_border), _crop(y, crop_border)


def _check_precision(precision: str) -> torch.dtype:
    if precision not in ("float32", "float64"):
        raise InputError(f"expected precision 'float32' or 'float64', got {precision!r}")
    return torch.float64 if precision == "float64" else torch.float32


def _check_data_range(data_range: float) -> float:
    """``data_range`` as a float (Python, NumPy or one-element tensor numbers), checked finite and > 0."""
    return finite_number(data_range, "data_range (1 for images in [0, 1])", 0, low_open=True)


def _checked(x: torch.Tensor, y: torch.Tensor, crop_border: int,
             dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The pair, checked (images of one shape that ``crop_border``, an int the caller checked with
    :func:`_check_crop_border`, leaves something of), in ``dtype``."""
    check_image(x, "first image", channels=(1, 3), check_range=False)
    check_image(y, "second image", channels=(1, 3), check_range=False)
    if x.shape != y.shape:
        raise InputError(f"images differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    if crop_border and 2 * crop_border >= min(x.shape[-2:]):
        raise InputError(f"crop_border={crop_border} leaves nothing of a {x.shape[-1]}x{x.shape[-2]} image")
    return (x.to(dtype), y.to(dtype)) if dtype is not None else (x, y)


def _check_crop_border(crop_border) -> int:
    """``crop_border`` as a Python int (from Python, NumPy or one-element torch integers: a NumPy
    unsigned one would wrap when negated for the slice), checked >= 0."""
    k = whole_number(crop_border)
    if k is None or k < 0:
        raise InputError(f"expected crop_border as a non-negative int (pixels), got {crop_border!r}")
    return k


def _crop(t: torch.Tensor, border: int) -> torch.Tensor:
    """``t`` without ``border`` pixels on each side (a view)."""
    return t[..., border:-border, border:-border] if border else t


def _check_finite(values: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """NaN/inf in an input always reach the result: check it there (no extra pass over the images)."""
    if not torch.isfinite(values).all():
        bad = "first" if not torch.isfinite(x).all() else "second" if not torch.isfinite(y).all() else None
        if bad:
            raise InputError(f"{bad} image has NaN or infinite values")
    return values


def _luma(t: torch.Tensor, offset: bool = True) -> torch.Tensor:
    """``(N, 3, H, W)`` -> ``(N, 1, H, W)`` BT.601 luma: one batched matrix-vector product, over
    the channel planes (NCHW) or over each pixel's channels (channels-last, e.g. decoded images)."""
    n, _, h, w = t.shape
    weights = torch.tensor(_Y_WEIGHTS, dtype=t.dtype, device=t.device)
    if t.is_contiguous():
        y = (weights @ t.reshape(n, 3, h * w)).view(n, 1, h, w)
    elif t.permute(0, 2, 3, 1).is_contiguous():
        y = (t.permute(0, 2, 3, 1) @ weights).unsqueeze(1)
    else:
        y = (t * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)
    return y + 16.0 / 255.0 if offset else y


def mse(x: torch.Tensor, y: torch.Tensor, y_channel: bool = False, crop_border: int = 0,
        precision: Precision = "float32") -> torch.Tensor:
    """Mean squared error per image, ``(N,)`` float64.

    ``precision="float32"`` forms the difference in float32 and sums its squares per image
    (for Y, the luma of the difference: the 16/255 offset cancels), then divides in float64;
    ``"float64"`` does everything in float64 (several times slower on CPU; the two agree to ~1e-7
    relative, ~1e-6 for the luma of a pair in two memory layouts, which takes each side's luma).

    Args:
        x: first images, ``(N, C, H, W)`` float with ``C`` in (1, 3), normally in [0, 1]
            (the range is not checked: images in 0..255 give an MSE in 0..255^2).
        y: second images, same shape as ``x``.
        y_channel: compare BT.601 studio-range luma (needs ``C == 3``) instead of all channels.
        crop_border: pixels dropped on each side before comparing, >= 0.
        precision: ``"float32"`` or ``"float64"`` arithmetic (see above).

    Returns:
        ``(N,)`` float64 tensor, the mean of the squared differences of each image pair, in
        squared units of the input values.

    Raises:
        InputError: if an input is not a float ``(N, C, H, W)`` tensor with ``C`` in (1, 3), the
            shapes differ, ``crop_border`` is negative or leaves nothing, ``y_channel`` is set for
            one-channel images, ``precision`` is unknown, or an input holds NaN or inf.

    Example:
        >>> x = torch.zeros(2, 3, 8, 8); y = torch.full((2, 3, 8, 8), 0.1)
        >>> [round(v, 6) for v in mse(x, y).tolist()]
        [0.01, 0.01]
        >>> round(mse(x, y, y_channel=True)[0].item(), 6)  # luma of the difference: 0.1 * 219 / 255
        0.007376
    """
    dtype = _check_precision(precision)
    x0, y0 = x, y
    crop_border = _check_crop_border(crop_border)
    whole_x, whole_y = _checked(x, y, crop_border, dtype)  # the OpenCV luma path below crops its own luma
    x, y = _crop(whole_x, crop_border), _crop(whole_y, crop_border)
    n, c, h, w = x.shape
    if y_channel and c != 3:
        raise InputError("y_channel=True needs RGB images")
    if torch.is_grad_enabled() and (x.requires_grad or y.requires_grad):  # as a loss: plain, differentiable ops
        d = x - y
        d = _luma(d, offset=False) if y_channel else d  # the luma of the difference: the offsets cancel
        return _check_finite(d.square().flatten(1).sum(1, dtype=torch.float64) / d[0].numel(), x0, y0)
    cpu32 = dtype == torch.float32 and x.device.type == "cpu"
    layout = _image_layout(whole_x) if cpu32 else None
    if layout is not None and layout == _image_layout(whole_y):
        total = _sum_squared_difference_opencv(x, y, y_channel, layout)
    elif y_channel and cpu32 and _opencv_layout(whole_x) and _opencv_layout(whole_y):
        total = _sum_squared_luma_difference_opencv(whole_x, whole_y, crop_border)
    else:
        total = _sum_squared_difference_blocks(x, y, y_channel)
    return _check_finite(total / (h * w * (1 if y_channel else c)), x0, y0)


def _image_layout(t: torch.Tensor) -> str | None:
    """``"planar"`` when each image of ``(N, C, H, W)`` is C-contiguous (CHW), ``"channels_last"``
    when it is HWC-contiguous (decoded images, ``channels_last`` tensors), else ``None``."""
    _, c, h, w = t.shape
    if t.stride()[1:] == (h * w, w, 1):
        return "planar"
    if t.stride()[1:] == (1, w * c, c):
        return "channels_last"
    return None


def _sum_squared_difference_opencv(x: torch.Tensor, y: torch.Tensor, y_channel: bool, layout: str) -> torch.Tensor:
    """``(N,)`` float64 sums of squared differences (of the luma difference with ``y_channel``) of
    float32 CPU images whose uncropped images share one ``_image_layout``; ``x``, ``y`` are the
    (cropped) views. OpenCV's fused squared-difference norm (float64 accumulation) reads each
    image pair once per channel plane (RGB); for Y the difference, its luma and its norm run
    per row block of about ``_BLOCK`` elements, so the temporaries stay in cache. Work units
    (image, row block) are spread over up to ``torch.get_num_threads()`` threads when the batch
    holds at least ``_THREADED_PIXELS`` pixels (OpenCV releases the GIL); each unit's sum does
    not depend on the thread count.
    """
    import cv2

    n, c, h, w = x.shape
    planar = layout == "planar"
    xn, yn = _numpy_images(x, planar), _numpy_images(y, planar)
    rows = h if not y_channel else max(1, min(h, _BLOCK // (c * w)))
    units = [(i, r) for i in range(n) for r in range(0, h, rows)]

    def unit_sum(unit: tuple[int, int]) -> float:
        i, r = unit
        a, b = (xn[i][:, r:r + rows], yn[i][:, r:r + rows]) if planar else (xn[i][r:r + rows], yn[i][r:r + rows])
        if not y_channel:
            if planar:
                return sum(cv2.norm(a[k], b[k], cv2.NORM_L2SQR) for k in range(c))
            return cv2.norm(a, b, cv2.NORM_L2SQR)
        # the luma of the difference: the 16/255 offsets cancel
        d = [cv2.subtract(a[k], b[k]) for k in range(3)] if planar else cv2.subtract(a, b)
        return cv2.norm(_luma_opencv(d, planar), cv2.NORM_L2SQR)

    return _sum_units(unit_sum, units, n, threaded=n * h * w >= _THREADED_PIXELS)


def _opencv_layout(t: torch.Tensor) -> bool:
    """Whether each image of ``(N, 3, H, W)`` is an OpenCV matrix: rows of adjacent pixels, with
    each pixel's channels adjacent (channels-last, as decoded images are) or in separate planes."""
    return t.stride(3) == 1 or (t.stride(1) == 1 and t.stride(3) == 3)


def _numpy_images(t: torch.Tensor, planar: bool):
    """Numpy view of ``(N, 3, H, W)`` float32 CPU images as ``(N, 3, H, W)`` (``planar``: the
    channel planes) or ``(N, H, W, 3)`` (each pixel's channels adjacent); no copy."""
    return t.numpy() if planar else t.permute(0, 2, 3, 1).numpy()


def _luma_opencv(a, planar: bool):
    """BT.601 luma without the offset of one image's rows, float32 ``(3, k, W)`` (``planar``:
    the three planes, an array view or a list) or ``(k, W, 3)`` (each pixel's channels adjacent)
    -> ``(k, W)``: ``addWeighted`` and ``scaleAdd`` over the planes, or one ``transform`` over
    the pixels."""
    import cv2

    if planar:
        wr, wg, wb = _Y_WEIGHTS
        luma = cv2.addWeighted(a[0], wr, a[1], wg, 0.0)
        return cv2.scaleAdd(a[2], wb, luma, dst=luma)
    return cv2.transform(a, _luma_matrix())


@lru_cache(maxsize=1)
def _luma_matrix():
    import numpy as np

    return np.array([_Y_WEIGHTS], dtype=np.float32)


def _sum_squared_luma_difference_opencv(x: torch.Tensor, y: torch.Tensor, crop_border: int = 0) -> torch.Tensor:
    """``(N,)`` float64 sums of squared luma differences inside ``crop_border``, for float32 CPU
    images in an ``_opencv_layout``: the luma of each side in its own memory layout (a decoded
    JPEG is channels-last, a tensor planar: their difference would read one of them transposed),
    then OpenCV's fused squared-difference norm of the crop, accumulated in float64. The work
    units are blocks of about ``_LUMA_BLOCK`` pixels of one image (whole rows), so each block's
    luma is still in cache for the norm; a batch of at least ``_THREADED_PIXELS`` pixels has its
    units summed on up to ``torch.get_num_threads()`` threads (OpenCV releases the GIL). An
    image's sum depends neither on the thread count nor on the rest of the batch.

    The luma of each side carries float32 rounding (~3e-8 per pixel) that the luma of the
    difference does not, and its share of the sum grows as the images get closer (1.4e-5 relative
    at MSE 3e-10): images closer than ``_LUMA_EXACT_BELOW`` in MSE (PSNR > 60 dB, rare outside
    tests) are recomputed from their difference, which keeps every image within ~1e-6 relative of
    float64 and makes equal images give exactly 0.
    """
    import cv2

    n, _, h, w = x.shape
    top, bottom, cols = crop_border, h - crop_border, slice(crop_border, w - crop_border)
    planar_x, planar_y = x.stride(3) == 1, y.stride(3) == 1
    xn, yn = _numpy_images(x, planar_x), _numpy_images(y, planar_y)
    rows = max(1, _LUMA_BLOCK // w)
    units = [(i, r) for i in range(n) for r in range(top, bottom, rows)]

    def unit_sum(unit: tuple[int, int]) -> float:
        i, r = unit
        block = slice(r, min(r + rows, bottom))
        lx = _luma_opencv(xn[i][:, block] if planar_x else xn[i][block], planar_x)
        ly = _luma_opencv(yn[i][:, block] if planar_y else yn[i][block], planar_y)
        return cv2.norm(lx[:, cols], ly[:, cols], cv2.NORM_L2SQR)  # whole rows: ~4 % faster than cropped lumas

    total = _sum_units(unit_sum, units, n, threaded=n * h * w >= _THREADED_PIXELS)
    area = (bottom - top) * (w - 2 * crop_border)
    for i in (total < _LUMA_EXACT_BELOW * area).nonzero().flatten().tolist():
        inside = (slice(i, i + 1), slice(None), slice(top, bottom), cols)
        total[i] = _sum_squared_difference_blocks(x[inside], y[inside], True)[0]
    return total


def _sum_units(unit_sum, units: list[tuple[int, int]], n: int, threaded: bool) -> torch.Tensor:
    """``(n,)`` float64: ``unit_sum(unit)`` added up per image over ``units`` ``(image, first row)``,
    the units split into one contiguous chunk per thread (up to ``torch.get_num_threads()``) when
    ``threaded``; each unit's value does not depend on the split."""
    threads = min(torch.get_num_threads(), len(units)) if threaded else 1
    if threads > 1:
        per = -(-len(units) // threads)
        chunks = [units[k:k + per] for k in range(0, len(units), per)]
        sums = [v for part in _thread_pool(threads).map(lambda ch: [unit_sum(u) for u in ch], chunks) for v in part]
    else:
        sums = [unit_sum(u) for u in units]
    total = torch.zeros(n, dtype=torch.float64)
    total.index_add_(0, torch.tensor([i for i, _ in units], dtype=torch.long), torch.tensor(sums, dtype=torch.float64))
    return total


@lru_cache(maxsize=4)
def _thread_pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="genrestore-metrics")


def _sum_squared_difference_blocks(x: torch.Tensor, y: torch.Tensor, y_channel: bool) -> torch.Tensor:
    """``(N,)`` float64 sums of squared differences (of the luma difference with ``y_channel``), in torch.

    On the CPU the images are taken in row blocks of about ``_BLOCK`` elements: the difference is
    written into one reused buffer, squared in place and summed, so no full-size temporary is ever
    allocated and each block's passes run from cache. Sums within a block are float32 (pairwise);
    the blocks are added in float64. On a GPU the whole batch is one block.
    """
    n, c, h, w = x.shape
    rows = h if x.device.type != "cpu" else max(1, min(h, _BLOCK // (n * c * w)))
    diff = torch.empty(n * c * rows * w, dtype=x.dtype, device=x.device)
    if y_channel:
        luma = torch.empty(n * rows * w, dtype=x.dtype, device=x.device)
        weights = torch.tensor(_Y_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 1, 3).expand(n, 1, 3)
    total = torch.zeros(n, dtype=torch.float64, device=x.device)
    for r in range(0, h, rows):  # row blocks of the (possibly cropped, strided) views: no full copy
        k = min(rows, h - r)
        d = torch.sub(x[:, :, r:r + k], y[:, :, r:r + k], out=diff[:n * c * k * w].view(n, c, k, w))
        if y_channel:  # the luma of the difference (the 16/255 offsets cancel): one batched product
            d = torch.bmm(weights, d.view(n, c, k * w), out=luma[:n * k * w].view(n, 1, k * w))
        total += d.square_().view(n, -1).sum(1).double()
    return total


def psnr(x: torch.Tensor, y: torch.Tensor, y_channel: bool = False, crop_border: int = 0,
         data_range: float = 1.0, precision: Precision = "float32") -> torch.Tensor:
    """Peak signal-to-noise ratio per image in dB, ``10 log10(data_range^2 / MSE)``; ``inf`` when equal.

    Args:
        x: first images, ``(N, C, H, W)`` float with ``C`` in (1, 3), in ``[0, data_range]``.
        y: second images, same shape as ``x``, in ``[0, data_range]``.
        y_channel: compare BT.601 studio-range luma (needs ``C == 3``) instead of all channels.
        crop_border: pixels dropped on each side before comparing, >= 0 (SR papers use the scale).
        data_range: the images' peak value, > 0: 1 for images in [0, 1], 255 for 0..255.
        precision: ``"float32"`` or ``"float64"`` arithmetic of the MSE (see :func:`mse`).

    Returns:
        ``(N,)`` float64 tensor of PSNR in dB; ``inf`` for identical images.

    Raises:
        InputError: for the bad inputs :func:`mse` rejects, a ``data_range`` that is not a finite
            number > 0, or images whose values (an MSE above ``data_range^2``, or a sampled span
            wider than ``data_range``) show that they are not in ``[0, data_range]``.

    Example:
        >>> x = torch.zeros(1, 3, 4, 4); y = torch.full((1, 3, 4, 4), 0.1)
        >>> round(psnr(x, y).item(), 5)
        20.0
        >>> round(psnr(255 * x, 255 * y, data_range=255).item(), 5)
        20.0
        >>> psnr(x, x).tolist()
        [inf]
    """
    data_range = _check_data_range(data_range)
    m = mse(x, y, y_channel, crop_border, precision)
    # no extra pass over the images: two in [0, data_range] cannot differ by more (the slack: float32
    # block sums of squares of a black-white pair at data_range 255 round a little above it)
    if bool((m > data_range ** 2 * (1 + 1e-4)).any()):
        raise InputError(f"an image pair has MSE {float(m.max()):.4g}, above data_range^2 = {data_range ** 2:g}: the "
                         f"images are not in [0, {data_range:g}] (for images in 0..255 pass data_range=255)")
    # ... which misses two close images in 0..255 with the default data_range 1 (MSE < 1): the span of
    # a sparse grid of pixels catches them, at ~2 % of the MSE's time; with SSIM's 1 % slack for unclamped outputs
    for t, name in ((x, "first"), (y, "second")):
        _check_span(t[..., ::max(1, t.shape[-2] // _RANGE_GRID), ::max(1, t.shape[-1] // _RANGE_GRID)], name,
                    data_range, "span at least")
    return 10.0 * torch.log10(data_range ** 2 / m)


def _check_span(t: torch.Tensor, name: str, data_range: float, spans: str = "span", what: str = "") -> None:
    """Raise :class:`InputError` naming the ``name`` image (and ``what`` it is) when the values of
    ``t`` span more than ``data_range`` (with 1 % slack, for unclamped outputs that overshoot a
    little; [-1, 1] images with data_range=2 pass, as in scikit-image)."""
    if not t.numel():
        return
    lo, hi = torch.aminmax(t.detach())  # one pass (amax and amin of a strided view take 15x as long)
    if float(hi - lo) > 1.01 * data_range:
        raise InputError(f"the {name} image's values {spans} [{float(lo):.4g}, {float(hi):.4g}]{what}, wider than "
                         f"data_range = {data_range:g} (for images in 0..255 pass data_range=255)")


@tensor_cache(maxsize=8)
def _gaussian_window(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r ** 2) / (2 * sigma ** 2))
    return (g / g.sum()).to(device=device, dtype=dtype)


def check_ssim_size(h: int, w: int, win_size: int = _SSIM_WINDOW) -> None:
    """Raise :class:`InputError` unless an ``h`` x ``w`` image holds one SSIM window."""
    if min(h, w) < win_size:
        raise InputError(f"SSIM needs images of at least {win_size}x{win_size} px, got {w}x{h}")


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, win_size: int = _SSIM_WINDOW,
             sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03, *,
             shift: torch.Tensor | None = None) -> torch.Tensor:
    """SSIM map over the valid window positions, ``(N, C, H - win + 1, W - win + 1)``, in ``x``'s dtype.

    Local moments are computed on images shifted by their per-channel mean (variances and the
    covariance do not change, and float32 keeps ~1e-7 accuracy); the four filtered maps
    (x, y, x^2 + y^2, xy) go through one depthwise separable convolution. ``shift``, ``(N, C, 1, 1)``,
    replaces that mean (strips of one image share their image's, so that they equal the whole map).
    """
    for t, name in ((x, "first"), (y, "second")):  # any channel count: ssim() folds images into channels
        if not (isinstance(t, torch.Tensor) and t.ndim == 4 and t.is_floating_point()):
            raise InputError(f"expected the {name} image as a float (N, C, H, W) tensor, got "
                             f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}"
                             f"{f' of {t.dtype}' if isinstance(t, torch.Tensor) else ''}")
    if x.shape != y.shape:
        raise InputError(f"images differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    if not (isinstance(win_size, int) and win_size >= 3 and win_size % 2) or not sigma > 0:
        raise InputError(f"expected an odd win_size >= 3 and sigma > 0, got {win_size!r} and {sigma!r}")
    data_range = _check_data_range(data_range)
    n, c, h, w = x.shape
    check_ssim_size(h, w, win_size)
    shift = x.mean(dim=(2, 3), keepdim=True) if shift is None else shift
    layout = torch.channels_last if x.device.type == "cpu" and x.dtype == torch.float32 else torch.contiguous_format
    # without gradients the maps go straight into one buffer and the formula runs in place (fewer
    # full-size temporaries); as a loss (gradients wanted) the same formula runs out of place
    inplace = not (torch.is_grad_enabled() and (x.requires_grad or y.requires_grad))
    if inplace:
        maps = torch.empty(n, 4 * c, h, w, dtype=x.dtype, device=x.device, memory_format=layout)
        xc, yc = maps[:, :c], maps[:, c:2 * c]
        xc.copy_(x).sub_(shift)
        yc.copy_(y).sub_(shift)
        torch.mul(xc, xc, out=maps[:, 2 * c:3 * c]).addcmul_(yc, yc)
        torch.mul(xc, yc, out=maps[:, 3 * c:])
    else:
        xc, yc = x - shift, y - shift
        maps = torch.cat([xc, yc, xc * xc + yc * yc, xc * yc], 1).contiguous(memory_format=layout)
    T = torch.Tensor
    add, sub, mul, div = (T.add_, T.sub_, T.mul_, T.div_) if inplace else (torch.add, torch.sub, torch.mul, torch.div)
    g = _gaussian_window(win_size, sigma, x.device, x.dtype)
    k = 4 * c
    f = F.conv2d(F.conv2d(maps, g.view(1, 1, 1, -1).expand(k, 1, 1, -1), groups=k), g.view(1, 1, -1, 1).expand(k, 1, -1, 1),
                 groups=k)
    mu_x, mu_y, sq, xy = f[:, :c], f[:, c:2 * c], f[:, 2 * c:3 * c], f[:, 3 * c:]
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    # both terms are written so that for x == y, numerator and denominator round alike (SSIM = 1 exactly)
    contrast_den = add(sub(sq, add(mu_x * mu_x, mu_y * mu_y)), c2)    # sigma_x^2 + sigma_y^2 + c2
    contrast_num = add(mul(xy - mu_x * mu_y, 2), c2)                  # 2 sigma_xy + c2
    mu_x, mu_y = mu_x + shift, mu_y + shift                          # absolute means for the luminance term
    luminance_num = add(mul(mu_x * mu_y, 2), c1)
    luminance_den = add(add(mu_x * mu_x, mu_y * mu_y), c1)
    return div(mul(luminance_num, contrast_num), mul(luminance_den, contrast_den))


def ssim(x: torch.Tensor, y: torch.Tensor, y_channel: bool = False, crop_border: int = 0,
         data_range: float = 1.0, precision: Precision = "float32") -> torch.Tensor:
    """Structural similarity per image, ``(N,)`` float64 (see the module docstring for the convention).

    ``precision="float32"`` (default) agrees with float64 to ~1e-6. Small images go through
    :func:`ssim_map` a few at a time, folded into the channel axis (every channel is filtered
    alone), so that a call has ``_SSIM_CHANNELS`` channels for the vectorized depthwise
    convolution; large ones in strips of rows. Either way the maps of a call stay in cache.

    Example:
        >>> x = torch.rand(2, 3, 16, 16)
        >>> [round(v, 6) for v in ssim(x, x).tolist()]
        [1.0, 1.0]
    """
    dtype = _check_precision(precision)
    data_range = _check_data_range(data_range)
    x0, y0 = x, y
    x, y = _prepare(x, y, _check_crop_border(crop_border), y_channel, dtype, data_range)
    # SSIM's constants assume values that span at most data_range: one pass beside its filtering, over
    # what it filters (with y_channel the luma, a third of the RGB, in cache). Only the span is checked
    # (with 1 % slack), so unclamped outputs that overshoot a little and [-1, 1] images with
    # data_range=2 pass, as in scikit-image; NaN is reported below, from the result
    for t, name in ((x, "first"), (y, "second")):
        _check_span(t, name, data_range, what=" (luma)" if y_channel else "")
    n, c, h, w = x.shape
    win = _SSIM_WINDOW
    check_ssim_size(h, w, win)  # before the strips: with none, the sum below would be silently 0
    if n == 0:  # an empty batch, as psnr gives it
        return torch.zeros(0, dtype=torch.float64, device=x.device)
    # images per call: enough for _SSIM_CHANNELS filtered channels (4 maps x c each) while the
    # maps of one call stay within _SSIM_ELEMENTS; larger images go one at a time, in strips of
    # output rows (each strip reads win - 1 rows more) with the same budget
    group = max(1, min(-(-_SSIM_CHANNELS // (4 * c)), _SSIM_ELEMENTS // (4 * c * h * w)))
    rows = max(_SSIM_MIN_ROWS, _SSIM_ELEMENTS // (4 * c * group * w) - (win - 1))
    out = []
    for xi, yi in zip(x.split(group), y.split(group)):
        g, xi, yi = len(xi), xi.reshape(1, -1, h, w), yi.reshape(1, -1, h, w)
        shift = xi.mean(dim=(2, 3), keepdim=True)
        total = sum(ssim_map(xi[:, :, r:r + rows + win - 1], yi[:, :, r:r + rows + win - 1], data_range, win,
                             shift=shift).sum(dim=(2, 3), dtype=torch.float64)
                    for r in range(0, h - win + 1, rows))
        out.append((total / ((h - win + 1) * (w - win + 1))).view(g, c).mean(1))
    return _check_finite(torch.cat(out), x0, y0)


class _MeanOverImages:
    """Accumulates the per-image values of a functional metric; ``compute`` gives their mean."""

    higher_is_better: bool = True

    def __init__(self, y_channel: bool = False, crop_border: int = 0) -> None:
        self.y_channel, self.crop_border = y_channel, _check_crop_border(crop_border)  # at construction
        self.reset()

    def reset(self) -> None:
        self.total = torch.zeros((), dtype=torch.float64)
        self.count = 0

    def _values(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def update(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Fold a batch in; returns its per-image values."""
        v = self._values(x, y)
        self.total = self.total + v.sum().cpu()
        self.count += v.numel()
        return v

    def merge(self, other: _MeanOverImages) -> None:
        """Add another instance's state (another shard or process)."""
        self.total = self.total + other.total
        self.count += other.count

    def compute(self) -> float:
        if self.count == 0:
            raise InputError(f"{type(self).__name__}.compute() called before any update")
        return float(self.total / self.count)


class MSE(_MeanOverImages):
    """Mean over images of the per-image MSE.

    ``update(x, y)`` folds in a batch of image pairs (as for :func:`mse`) and returns its ``(N,)``
    float64 values; ``compute()`` gives the mean over every image so far as a Python float;
    ``merge(other)`` adds another instance's state; ``reset()`` clears it.

    Args:
        y_channel: compare BT.601 luma instead of all channels (see :func:`mse`).
        crop_border: pixels dropped on each side, >= 0.

    Raises:
        InputError: at construction for a bad ``crop_border``; from ``update`` for bad images;
            from ``compute`` before any ``update``.

    Example:
        >>> metric = MSE()
        >>> [round(v, 6) for v in metric.update(torch.zeros(2, 3, 8, 8), torch.full((2, 3, 8, 8), 0.1)).tolist()]
        [0.01, 0.01]
        >>> _ = metric.update(torch.zeros(1, 3, 8, 8), torch.full((1, 3, 8, 8), 0.4))
        >>> round(metric.compute(), 6)  # (0.01 + 0.01 + 0.16) / 3
        0.06
    """

    higher_is_better = False

    def _values(self, x, y):
        return mse(x, y, self.y_channel, self.crop_border)


class PSNR(_MeanOverImages):
    """Mean over images of the per-image PSNR in dB (the SR papers' convention, not PSNR of the mean MSE).

    ``update(x, y)`` folds in a batch of image pairs in [0, 1] (as for :func:`psnr` with
    ``data_range=1``) and returns its ``(N,)`` float64 values in dB; ``compute()`` gives the mean
    over every image so far as a Python float; ``merge(other)`` adds another instance's state
    (another shard or process); ``reset()`` clears it.

    Args:
        y_channel: compare BT.601 luma instead of all channels (see :func:`psnr`).
        crop_border: pixels dropped on each side, >= 0.

    Raises:
        InputError: at construction for a bad ``crop_border``; from ``update`` for bad images;
            from ``compute`` before any ``update``.

    Example:
        >>> a, b = PSNR(), PSNR()
        >>> x = torch.zeros(2, 3, 8, 8)
        >>> [round(v, 4) for v in a.update(x, x + 0.1).tolist()]
        [20.0, 20.0]
        >>> _ = b.update(x[:1], x[:1] + 0.01)  # 40 dB, on another shard
        >>> a.merge(b)
        >>> round(a.compute(), 4)  # (20 + 20 + 40) / 3
        26.6667
    """

    def _values(self, x, y):
        return psnr(x, y, self.y_channel, self.crop_border)


class SSIM(_MeanOverImages):
    """Mean over images of the per-image SSIM.

    ``update(x, y)`` folds in a batch of image pairs in [0, 1], at least 11 x 11 after the crop
    (as for :func:`ssim` with ``data_range=1``), and returns its ``(N,)`` float64 values;
    ``compute()`` gives the mean over every image so far as a Python float; ``merge(other)`` adds
    another instance's state; ``reset()`` clears it.

    Args:
        y_channel: compare BT.601 luma instead of all channels (see :func:`ssim`).
        crop_border: pixels dropped on each side, >= 0.

    Raises:
        InputError: at construction for a bad ``crop_border``; from ``update`` for bad images;
            from ``compute`` before any ``update``.

    Example:
        >>> metric = SSIM()
        >>> x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> [round(v, 6) for v in metric.update(x, x).tolist()]
        [1.0, 1.0]
        >>> metric.update(x[:1], 1 - x[:1]).item() < 0  # the negative: anti-correlated
        True
        >>> metric.compute() < 1
        True
    """

    def _values(self, x, y):
        return ssim(x, y, self.y_channel, self.crop_border)

