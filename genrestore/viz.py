"""Contact sheets: labelled grids of images for the CLI and reports."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .degrade.resize import resize


def _fit(x: torch.Tensor, cell: int) -> torch.Tensor:
    """Fit one ``(1, C, h, w)`` image into a ``cell x cell`` RGB square (nearest when enlarging,
    so that pixelation stays visible; area when shrinking), centred on mid-grey."""
    x = x[:, :3] if x.shape[1] >= 3 else x.expand(-1, 3, -1, -1)
    h, w = x.shape[-2:]
    s = cell / max(h, w)
    size = (max(1, round(h * s)), max(1, round(w * s)))
    x = resize(x, size, "nearest" if s >= 1 else "area").clamp(0, 1)
    out = torch.full((1, 3, cell, cell), 0.5)
    y0, x0 = (cell - size[0]) // 2, (cell - size[1]) // 2
    out[:, :, y0:y0 + size[0], x0:x0 + size[1]] = x
    return out


def contact_sheet(rows: Sequence[Sequence[torch.Tensor | None]], row_labels: Sequence[str],
                  col_labels: Sequence[str], cell: int = 160, margin: int = 4, label_px: int = 18
                  ) -> torch.Tensor:
    """Lay images out in a labelled grid.

    Args:
        rows: rows of ``(1, C, h, w)`` images in [0, 1] (``None`` leaves a cell empty).
        row_labels: one label per row, drawn at the left.
        col_labels: one label per column, drawn on top.
        cell: side of each square cell, px.

    Returns:
        ``(1, 3, H, W)`` image in [0, 1].
    """
    import numpy as np
    from PIL import Image, ImageDraw

    ncols = max(len(r) for r in rows)
    left = 8 * max((len(s) for s in row_labels), default=0) + 2 * margin
    width = left + ncols * (cell + margin) + margin
    height = label_px + len(rows) * (cell + margin) + margin
    canvas = torch.ones(1, 3, height, width)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            if img is None:
                continue
            y0 = label_px + i * (cell + margin)
            x0 = left + j * (cell + margin)
            canvas[:, :, y0:y0 + cell, x0:x0 + cell] = _fit(img.detach().float().cpu(), cell)
    pil = Image.fromarray((canvas[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for j, label in enumerate(col_labels):
        draw.text((left + j * (cell + margin) + 2, 3), label, fill=(0, 0, 0))
    for i, label in enumerate(row_labels):
        draw.text((margin, label_px + i * (cell + margin) + cell // 2 - 6), label, fill=(0, 0, 0))
    return torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1)[None].float() / 255
