"""Classical restoration baselines that the learned restorers are compared with.

* :func:`jpeg_reapply_deblock`: JPEG deblocking by re-application of JPEG (Nosratinia, "Enhancement
  of JPEG-compressed images by re-application of JPEG", J. VLSI Signal Processing 27, 2001):
  average of the image re-compressed at the same quality on every shift of the 8x8 block grid.
  Each shifted re-compression is a projection onto images that the quantizer leaves almost
  unchanged on that grid; averaging over shifts removes the block edges that only the original
  grid has. Non-blind: it needs the quality the image was compressed with.

The OpenCV baselines (non-local means denoising, Telea / Navier-Stokes inpainting) are called
directly where they are used (:mod:`genrestore.bench.methods`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import InputError, check_image, whole_number
from ..degrade.jpeg import jpeg_pillow


def jpeg_reapply_deblock(y: torch.Tensor, quality: int, shifts: int = 8) -> torch.Tensor:
    """Deblock JPEG-compressed images by averaging re-compressions over grid shifts (Nosratinia 2001).

    For each shift ``(dy, dx)`` in ``{0..shifts-1}^2`` the image (reflect-padded by 16 px, one
    4:2:0 MCU) is cropped so its block grid moves by ``(dy, dx)``, compressed and decompressed with
    libjpeg (Pillow, 4:2:0) at ``quality``, and moved back; the result is the mean over the shifts,
    quantized to 8 bits. Shift ``(0, 0)`` keeps the original grid.

    Args:
        y: ``(N, 3, H, W)`` JPEG-decoded images in ``[0, 1]``.
        quality: the JPEG quality ``y`` was compressed with, 1..100.
        shifts: shifts per axis, 1..16 (8: every offset of the luma grid; 1: a single re-compression).

    Returns:
        ``(N, 3, H, W)`` in ``[0, 1]``, multiples of 1/255.

    Example:
        >>> y = jpeg_pillow(torch.rand(1, 3, 16, 16), 20)
        >>> jpeg_reapply_deblock(y, 20, shifts=2).shape
        torch.Size([1, 3, 16, 16])
    """
    check_image(y, "y", channels=(3,))
    q, k = whole_number(quality), whole_number(shifts)
    if q is None or not 1 <= q <= 100:
        raise InputError(f"expected a JPEG quality as an int in 1..100, got {quality!r}")
    if k is None or not 1 <= k <= 16:
        raise InputError(f"expected shifts as an int in 1..16, got {shifts!r}")
    quality, shifts = q, k
    h, w = y.shape[-2:]
    pad = 16  # a multiple of the MCU, so that shift 0 is the original grid
    mode = "reflect" if pad < min(h, w) else "replicate"
    padded = F.pad(y, (pad, pad, pad, pad), mode=mode)
    acc = torch.zeros_like(y, dtype=torch.float64)
    for dy in range(shifts):
        for dx in range(shifts):
            r = jpeg_pillow(padded[..., pad - dy:, pad - dx:].contiguous(), quality)  # y's (0, 0) at (dy, dx)
            acc += r[..., dy:dy + h, dx:dx + w].double()
    return (acc / shifts**2 * 255).round().div(255).float()


__all__ = ["jpeg_reapply_deblock"]
