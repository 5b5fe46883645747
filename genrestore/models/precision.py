"""How networks run at inference: channels-last memory and reduced precision (``--half``).

``half_dtype`` picks the 16-bit type a device computes natively, or none where 16-bit would
only be emulated (slower than float32); ``run_network`` calls a network under it, channels-last
(oneDNN's and cuDNN's fast convolution layout), and recomputes a non-finite result in float32.
The SR models (``genrestore upscale --half``) and the diffusion sampler (``restore --half``) use it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import lru_cache

import torch


#: What :func:`half_dtype` picks, in words (for the commands' ``--half`` help).
HALF_RULE = ("bf16 on CPUs with AVX512-BF16 or AMX and on recent GPUs, fp16 on older GPUs; float32 "
             "elsewhere")


@lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (x86 AVX512-BF16 or AMX), as oneDNN uses it.

    Elsewhere bf16 on the CPU is emulated through float32 and gains nothing. The two probes are
    private torch functions (torch >= 2.1); without them the answer is False."""
    probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(bool(p()) for p in probes if p is not None)


def half_dtype(device: torch.device | str) -> torch.dtype | None:
    """The 16-bit dtype ``--half`` runs in on ``device``, or ``None`` for float32.

    CUDA: bf16 where the GPU computes it natively (compute capability 8.0+, ROCm), else fp16 (not
    ``torch.cuda.is_bf16_supported()``: it also says True on T4 and V100, which only emulate it).
    CPU: bf16 with :func:`cpu_has_native_bf16`, else ``None``. Other devices: ``None``.
    """
    device = torch.device(device)
    if device.type == "cuda":
        if torch.version.hip or torch.cuda.get_device_capability(device)[0] >= 8:
            return torch.bfloat16
        return torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def half_name(device: torch.device | str, half: bool) -> str | None:
    """The 16-bit dtype ``--half`` runs in on ``device`` by name (``"bfloat16"``, ``"float16"``),
    or ``None`` when the network runs in float32; the commands record it as ``"half"``."""
    dtype = half_dtype(device) if half else None
    return None if dtype is None else str(dtype).removeprefix("torch.")


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` ``x`` in channels-last memory (same values; a copy unless it already is)."""
    return x.contiguous(memory_format=torch.channels_last)


def run_network(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor, half: bool = False,
                what: str = "network") -> torch.Tensor:
    """``fn(*inputs)``, its ``(N, C, H, W)`` inputs made channels-last.

    With ``half``, float32 inputs and a :func:`half_dtype` for their device, ``fn`` runs under
    autocast to that dtype and its output is returned as float32; a result with NaN or inf (fp16 overflow) is
    recomputed without autocast, with a warning naming ``what``. Without autocast the values are
    the plain call's up to float rounding, in ``fn``'s output dtype.
    """
    inputs = tuple(channels_last(t) if t.ndim == 4 else t for t in inputs)
    # autocast leaves float64 alone: a float64 network stays float64 (and is not rounded to float32)
    dtype = half_dtype(inputs[0].device) if half and inputs[0].dtype == torch.float32 else None
    if dtype is not None:
        with torch.autocast(inputs[0].device.type, dtype=dtype):
            out = fn(*inputs).float()
        if bool(torch.isfinite(out).all()):
            return out
        warnings.warn(f"non-finite values in the {dtype} {what} output; recomputed in float32")
    return fn(*inputs)
