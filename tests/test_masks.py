"""Inpainting masks against hand-computed geometry and a numpy distance field."""

import math

import numpy as np
import pytest
import torch

from genrestore.degrade.masks import random_box_mask, sample_stroke_endpoints, stroke_mask


def _segment_distance(h, w, a, b, samples=4001):
    """Distance of every pixel centre of an ``h x w`` image to the segment ``a``-``b`` (pixels,
    (x, y)), as the minimum over densely sampled points of the segment (no projection formula)."""
    t = np.linspace(0, 1, samples)[:, None]
    pts = np.asarray(a, float) + t * (np.asarray(b, float) - np.asarray(a, float))  # (S, 2)
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    d2 = (xs[..., None] - pts[:, 0]) ** 2 + (ys[..., None] - pts[:, 1]) ** 2
    return np.sqrt(d2.min(-1))


def test_stroke_endpoints_pick_each_outer_third_half_the_time():
    """Each coordinate is uniform in [0, 1/3] or [2/3, 1] with probability 1/2 each: over 1600
    coordinates about half are low, and each third is filled evenly (mean 1/6 and 5/6)."""
    e = sample_stroke_endpoints(torch.Generator().manual_seed(0), 100, 4).flatten()
    low = e <= 1 / 3
    assert ((e >= 0) & (e <= 1) & (low | (e >= 2 / 3))).all()
    assert 0.45 < low.double().mean().item() < 0.55
    assert abs(e[low].mean().item() - 1 / 6) < 0.01 and abs(e[~low].mean().item() - 5 / 6) < 0.01


def test_stroke_coordinates_are_x_by_width_and_y_by_height():
    """Endpoints are (x, y) fractions of (W, H). On a 20x40 (HxW) image with a 4 px brush
    (0.2 x the shorter side) a horizontal stroke at y = 0.5 covers rows 8-11 (centres within
    1.5 px of y = 10 px; row 7's centre is 2.5 px away, no coverage) in every column, 35 included;
    a vertical one at x = 0.5 covers columns 18-21 in every row."""
    hor = stroke_mask((20, 40), torch.tensor([[[[0.0, 0.5], [1.0, 0.5]]]]), width_frac=0.2)[0, 0]
    expected = torch.ones(20)
    expected[8:12] = 0
    assert hor.shape == (20, 40)
    assert torch.equal(hor[:, 35], expected) and torch.equal(hor[:, 2], expected)
    ver = stroke_mask((20, 40), torch.tensor([[[[0.5, 0.0], [0.5, 1.0]]]]), width_frac=0.2)[0, 0]
    expected = torch.ones(40)
    expected[18:22] = 0
    assert torch.equal(ver[15], expected) and torch.equal(ver[1], expected)


@pytest.mark.parametrize("ends", [((0.1, 0.5), (0.3, 0.5)), ((0.05, 0.1), (0.7, 0.85)), ((0.9, 0.2), (0.6, 0.3))])
def test_stroke_mask_equals_the_coverage_of_the_distance_to_the_segment(ends):
    """A stroke is the round-capped segment between its endpoints, not the infinite line:
    the mask is 1 - clip(r + 1/2 - d, 0, 1) with d the distance to the segment (computed
    here from dense samples of it), so a short stroke leaves the far side of the image untouched."""
    h, w, frac = 20, 40, 0.2
    m = stroke_mask((h, w), torch.tensor([[ends]], dtype=torch.float64), width_frac=frac)[0, 0].numpy()
    (ax, ay), (bx, by) = ends
    d = _segment_distance(h, w, (ax * w, ay * h), (bx * w, by * h))
    r = 0.5 * frac * min(h, w)
    assert np.allclose(m, 1 - np.clip(r + 0.5 - d, 0, 1), atol=2e-3)
    if ends == ((0.1, 0.5), (0.3, 0.5)):  # segment x in [4, 12] px: column 32 (0.8 W) and beyond are kept
        assert (m[:, 16:] == 1).all() and (m[8:12, 4:12] == 0).all()


def _holes(m):
    """Bounding-box sides (rows, cols) of each mask's hole, checking the hole fills its box."""
    sides = []
    for hole in (m[:, 0] == 0):
        rows, cols = hole.any(1).nonzero()[:, 0], hole.any(0).nonzero()[:, 0]
        bh, bw = int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
        assert int(hole.sum()) == bh * bw  # one solid rectangle
        sides.append((bh, bw))
    return np.array(sides, dtype=float)


def test_box_hole_sides_are_the_rounded_sides_of_the_requested_area():
    """With a fixed area fraction a, the hole's true sides satisfy bh * bw = a H W and
    (bh / H) / (bw / W) in [1/2, 2]; the drawn sides are those rounded, so each drawn box
    (mh, mw) must allow it: (mh - 1/2)(mw - 1/2) <= a H W <= (mh + 1/2)(mw + 1/2), and
    the aspect bounds hold with half a pixel of slack."""
    h, w, a = 60, 100, 0.1
    s = _holes(random_box_mask(torch.Generator().manual_seed(1), 200, (h, w), area_range=(a, a)))
    mh, mw = s[:, 0], s[:, 1]
    area = a * h * w
    assert ((mh - 0.5) * (mw - 0.5) <= area + 1e-9).all() and (area <= (mh + 0.5) * (mw + 0.5)).all()
    assert (((mh - 0.5) / h) / ((mw + 0.5) / w) <= 2).all() and (((mh + 0.5) / h) / ((mw - 0.5) / w) >= 0.5).all()


def test_box_hole_area_and_aspect_distributions():
    """Aspect log-uniform in [1/2, 2]: over 300 holes of a fixed area the mean drawn area is
    within 1% of the requested one (rounding the sides averages out; a box one row or column
    too big is 2-4% larger), the mean log2 aspect is near 0 (E|U(-1, 1)| = 1/2) and the
    aspects reach close to both 1/2 and 2 but not beyond."""
    h, w, a = 64, 96, 0.15
    s = _holes(random_box_mask(torch.Generator().manual_seed(2), 300, (h, w), area_range=(a, a)))
    frac = s[:, 0] * s[:, 1] / (h * w)
    assert abs(frac.mean() / a - 1) < 0.01
    log_aspect = np.log2((s[:, 0] / h) / (s[:, 1] / w))
    assert abs(log_aspect.mean()) < 0.1
    assert log_aspect.max() > 0.85 and log_aspect.min() < -0.85 and np.abs(log_aspect).max() < 1.1
    assert math.isclose(np.abs(log_aspect).mean(), 0.5, abs_tol=0.07)


# --- found by mutating the code (helper-72) ---


@pytest.mark.parametrize("y_px", [10.5, 10.0])
def test_sub_pixel_stroke_covers_its_width_in_every_column(y_px):
    """A horizontal stroke 0.5 px wide (radius 1/4): the coverage of each column sums to the width, whether
    the stroke runs through pixel centres (one pixel covered by 0.5: both edges cut its box) or along the
    border between two rows (two pixels covered by 0.25)."""
    h = w = 20
    ends = torch.tensor([[[[0.0, y_px / h], [1.0, y_px / h]]]])
    m = stroke_mask((h, w), ends, width_frac=0.5 / 20)
    coverage = 1 - m[0, 0].double()
    assert torch.allclose(coverage.sum(0), torch.full((w,), 0.5, dtype=torch.float64), atol=1e-6)
    if y_px == 10.5:
        assert coverage[10, 5].item() == pytest.approx(0.5) and coverage[9, 5] == 0 == coverage[11, 5]


def test_box_hole_default_area_is_5_to_25_percent():
    """Default area_range (0.05, 0.25): over 300 holes the drawn areas (sides rounded) stay within it, up to
    the rounding of the sides, and reach near both ends."""
    h, w = 64, 96
    s = _holes(random_box_mask(torch.Generator().manual_seed(3), 300, (h, w)))
    frac = s[:, 0] * s[:, 1] / (h * w)
    assert frac.min() > 0.04 and frac.max() < 0.27
    assert frac.min() < 0.06 and frac.max() > 0.23


def test_box_holes_are_centred_on_average():
    """The hole's corner is rounded from a uniform position in [0, H - bh], so over many draws the hole's
    centre averages the image centre ((H - 1) / 2 in pixel indices) in both axes; flooring the corner would
    shift it half a pixel up or left (1000 draws: standard error ~0.07 px)."""
    h = w = 16
    m = random_box_mask(torch.Generator().manual_seed(4), 1000, (h, w), area_range=(0.25, 0.25))
    hole = (m[:, 0] == 0).double()
    idx = torch.arange(h, dtype=torch.float64)
    centre_y = (hole.sum(2) * idx).sum(1) / hole.sum((1, 2))
    centre_x = (hole.sum(1) * idx).sum(1) / hole.sum((1, 2))
    assert abs(centre_y.mean().item() - (h - 1) / 2) < 0.25 and abs(centre_x.mean().item() - (w - 1) / 2) < 0.25
