"""Input checks shared by every public operator, and the error the CLI reports as one line."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch


class InputError(ValueError):
    """Bad input from the user: the CLI prints it as one line and exits with code 2."""


def check_image(x: torch.Tensor, name: str = "image", channels: tuple[int, ...] = (1, 3),
                check_range: bool = True) -> None:
    """Raise :class:`InputError` unless ``x`` is a float ``(N, C, H, W)`` tensor in ``[0, 1]``.

    Args:
        x: the tensor to check.
        name: how the message names it.
        channels: the channel counts accepted.
        check_range: also check that values lie in ``[0, 1]`` (one reduction and one device sync).

    Example:
        >>> check_image(torch.rand(2, 3, 8, 8))
        >>> check_image(torch.rand(3, 8, 8))
        Traceback (most recent call last):
        ...
        genrestore._checks.InputError: expected image of shape (N, C, H, W) with C in (1, 3), got (3, 8, 8)
    """
    if not isinstance(x, torch.Tensor):
        raise InputError(f"expected {name} as a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] not in channels:
        accepted = (f"{channels[0]}..{channels[-1]}" if len(channels) > 3 and list(channels) == list(
            range(channels[0], channels[-1] + 1)) else str(channels))
        raise InputError(
            f"expected {name} of shape (N, C, H, W) with C in {accepted}, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"expected {name} as a float tensor in [0, 1], got dtype {x.dtype}")
    if check_range and x.numel():
        lo, hi = torch.aminmax(x.detach())
        if not (lo >= 0 and hi <= 1):  # also false for NaN
            if torch.isnan(lo) or torch.isnan(hi):
                raise InputError(f"expected {name} in [0, 1], got NaN values")
            raise InputError(f"expected {name} in [0, 1], got values in [{lo.item():.4g}, {hi.item():.4g}]")


def check_float_tensor(x: torch.Tensor, name: str = "x") -> None:
    """Raise :class:`InputError` unless ``x`` is a float tensor (of any shape), for the elementwise
    operators; their values are not read (no device sync).

    Example:
        >>> check_float_tensor(torch.zeros(2, 2, dtype=torch.uint8))
        Traceback (most recent call last):
        ...
        genrestore._checks.InputError: expected x as a float tensor, got dtype torch.uint8
    """
    if not isinstance(x, torch.Tensor):
        raise InputError(f"expected {name} as a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise InputError(f"expected {name} as a float tensor, got dtype {x.dtype}")


def check_not_empty(x: torch.Tensor, name: str = "image") -> None:
    """Raise :class:`InputError` for a batch of no images (``N = 0``), for the samplers and
    optimizers that cannot give an empty result of the right shape."""
    if x.shape[0] == 0:
        raise InputError(f"expected at least one {name}, got an empty batch {tuple(x.shape)}")


def check_min_size(x: torch.Tensor, min_hw: int, why: str) -> None:
    """Raise :class:`InputError` when the image is smaller than ``min_hw`` on either side."""
    h, w = x.shape[-2:]
    if h < min_hw or w < min_hw:
        raise InputError(f"image of {w}x{h} px is smaller than {min_hw} px, the minimum for {why}")


def real_number(v) -> float | None:
    """``v`` as a float when it is a real number (Python, NumPy, or a one-element torch tensor),
    else ``None``. Bools are not numbers here."""
    import numbers

    if isinstance(v, bool):
        return None
    if isinstance(v, numbers.Real):
        return float(v)
    if isinstance(v, torch.Tensor) and v.numel() == 1 and v.dtype != torch.bool and not v.is_complex():
        return float(v)
    return None


def whole_number(v) -> int | None:
    """``v`` as an int when it is an integer (Python, NumPy, a one-element integer tensor, or a
    float with no fraction), else ``None``. Bools are not numbers here."""
    import operator

    if isinstance(v, bool):
        return None
    try:
        return operator.index(v)
    except TypeError:
        f = real_number(v)
        return int(f) if f is not None and math.isfinite(f) and f.is_integer() else None


def finite_number(v, name: str, low: float = -math.inf, *, low_open: bool = False) -> float:
    """``v`` as a float (see :func:`real_number`), checked finite and ``>= low`` (``> low`` with
    ``low_open``); :class:`InputError` naming ``name`` otherwise."""
    f = real_number(v)
    if f is None or not math.isfinite(f) or (f <= low if low_open else f < low):
        bound = "" if math.isinf(low) else f" {'>' if low_open else '>='} {low:g}"
        raise InputError(f"expected {name} as a finite number{bound}, got {v!r}")
    return f


def whole_number_at_least(v, name: str, low: int) -> int:
    """``v`` as an int (see :func:`whole_number`), checked ``>= low``; :class:`InputError` naming
    ``name`` otherwise."""
    k = whole_number(v)
    if k is None or k < low:
        raise InputError(f"expected {name} as an int >= {low}, got {v!r}")
    return k


def error_summary(e: BaseException, limit: int = 200) -> str:
    """``"TypeName: first line of the message"`` (cut to ``limit`` characters), or ``"TypeName"``
    for an exception without a message (``torch.load`` of an empty file raises ``EOFError('')``)."""
    lines = str(e).splitlines()
    return f"{type(e).__name__}: {lines[0][:limit]}" if lines and lines[0] else type(e).__name__


def available_bytes(device: torch.device) -> int:
    """Bytes free for tensors on ``device``: the GPU's free memory, else the host's available
    memory (``MemAvailable``, which counts reclaimable page cache; 8 GiB when it cannot be read)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:  # MemAvailable counts reclaimable page cache, unlike MemFree
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30
