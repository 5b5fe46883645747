"""DeSRA's comparison detectors (Table 1): LDL* and the sliding-window NIQE map."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrestore._checks import InputError
from genrestore.detect.baselines import (ldl_artifact_map, ldl_detect, niqe_detect, niqe_map, niqe_window_scores)
from genrestore.metrics.niqe import _block_features, _luma_255, load_pristine, mscn


def ldl_reference(gan: torch.Tensor, mse: torch.Tensor, ksize: int = 7) -> torch.Tensor:
    """LDL's published formula, written the way its code computes it: unfold the reflect-padded
    residual and take ``torch.var`` (unbiased) of each window; the patch weight is the unbiased
    variance of the whole residual to the power 1/5."""
    res = (mse.double() - gan.double()).abs().sum(1, keepdim=True)
    pad = (ksize - 1) // 2
    windows = torch.nn.functional.pad(res, [pad] * 4, mode="reflect").unfold(2, ksize, 1).unfold(3, ksize, 1)
    pixel = windows.var(dim=(-1, -2))
    patch = res.var(dim=(-1, -2, -3), keepdim=True) ** (1 / 5)
    return patch * pixel


def test_ldl_map_matches_the_formula_on_photos(photos):
    g = torch.Generator().manual_seed(0)
    gan = (photos[:3] + 0.05 * torch.randn(photos[:3].shape, generator=g)).clamp(0, 1)
    ours = ldl_artifact_map(gan, photos[:3])
    ref = ldl_reference(gan, photos[:3])
    assert ours.shape == (3, 1, 128, 128) and ours.dtype == torch.float64
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-15)
    # per image: the same answer alone as in the batch
    torch.testing.assert_close(ldl_artifact_map(gan[1:2], photos[1:2]), ours[1:2], rtol=1e-13, atol=0)


def test_ldl_map_hand_computed_single_pixel():
    """A residual of v at the centre of a 17x17 image, 0 elsewhere: every 7x7 window around the
    centre holds it once, so its unbiased variance is (v^2 - v^2 / 49) / 48 = v^2 / 49; the
    whole image's is v^2 / 289; windows that miss the centre have variance 0."""
    v = float(torch.tensor(0.6))  # the float32 value the image holds
    mse = torch.zeros(1, 3, 17, 17)
    gan = mse.clone()
    gan[0, 1, 8, 8] = v
    m = ldl_artifact_map(gan, mse)[0, 0]
    expect = (v * v / 289) ** 0.2 * (v * v / 49)
    assert m[8, 8].item() == pytest.approx(expect, rel=1e-12)
    assert m[5, 11].item() == pytest.approx(expect, rel=1e-12)  # still within 3 px
    assert m[4, 8].item() < 1e-18 and m[0, 0].item() < 1e-18  # 0 up to the rounding of the box sums
    # the thresholds of DeSRA's Table 1 on it: expect is about 0.0019
    assert ldl_detect(gan, mse, 0.001)[0, 0, 8, 8] and not ldl_detect(gan, mse, 0.005).any()


def test_ldl_finds_planted_texture_and_nothing_on_equal_images(photos):
    mse = photos[4:5]
    gan = mse.clone()
    g = torch.Generator().manual_seed(1)
    gan[..., 40:88, 40:88] = (gan[..., 40:88, 40:88] + 0.2 * torch.randn(1, 3, 48, 48, generator=g)).clamp(0, 1)
    det = ldl_detect(gan, mse, 0.005)[0, 0]
    assert det[44:84, 44:84].float().mean() > 0.95
    outside = torch.ones_like(det)
    outside[34:94, 34:94] = False
    assert not det[outside].any()
    assert not ldl_detect(mse, mse, 0.001).any()


def test_ldl_bad_input():
    a = torch.rand(1, 3, 16, 16)
    with pytest.raises(InputError, match="differ in shape"):
        ldl_artifact_map(a, torch.rand(1, 3, 16, 12))
    with pytest.raises(InputError, match="odd size"):
        ldl_artifact_map(a, a, window=6)
    with pytest.raises(InputError, match="threshold"):
        ldl_detect(a, a, threshold=0)


def _window_scores_by_loop(x: torch.Tensor, window: int, stride: int) -> np.ndarray:
    """Each window on its own: NIQE features of the whole image's MSCN coefficients cropped to the
    window (full scale) and to its half (half scale), then the distance in numpy."""
    from genrestore.degrade.resize import resize

    mu, cov = (t.numpy() for t in load_pristine())
    inv = np.linalg.pinv(cov / 2)
    img = _luma_255(x, 0)
    h, w = img.shape[-2:]
    coef, _ = mscn(img)
    coef2, _ = mscn(resize(img / 255, (h // 2, w // 2), "bicubic") * 255)
    rows, cols = (h - window) // stride + 1, (w - window) // stride + 1
    out = np.empty((rows, cols))
    for i in range(rows):
        for j in range(cols):
            y, x0 = i * stride, j * stride
            f = torch.cat([_block_features(coef[..., y:y + window, x0:x0 + window], window),
                           _block_features(coef2[..., y // 2:(y + window) // 2, x0 // 2:(x0 + window) // 2],
                                           window // 2)], 1)[0].numpy()
            d = mu - f
            out[i, j] = np.sqrt(d @ inv @ d) if np.isfinite(f).all() else np.nan
    return out


def test_niqe_window_scores_match_a_loop_over_windows(photos):
    x = photos[5:6, :, :72, :88]
    ref = _window_scores_by_loop(x, 32, 8)
    for chunk in (1, 3, 100):
        ours = niqe_window_scores(x, window=32, stride=8, rows_per_chunk=chunk)[0].numpy()
        assert ours.shape == ref.shape == (6, 8)
        np.testing.assert_allclose(ours, ref, rtol=1e-10)


def test_niqe_map_is_the_mean_of_the_covering_windows(photos):
    x = photos[6:7, :, :75, :90]
    window, stride = 32, 8
    scores = niqe_window_scores(x, window, stride)[0].numpy()
    scores[1, 2] = np.nan  # and one window left out, as a flat one would be
    total, count = np.zeros((75, 90)), np.zeros((75, 90))
    for i in range(scores.shape[0]):
        for j in range(scores.shape[1]):
            if np.isfinite(scores[i, j]):
                total[i * stride:i * stride + window, j * stride:j * stride + window] += scores[i, j]
                count[i * stride:i * stride + window, j * stride:j * stride + window] += 1
    covered_h, covered_w = (scores.shape[0] - 1) * stride + window, (scores.shape[1] - 1) * stride + window
    ref = total[:covered_h, :covered_w] / count[:covered_h, :covered_w]
    ref = np.pad(ref, ((0, 75 - covered_h), (0, 90 - covered_w)), mode="edge")

    import genrestore.detect.baselines as b

    real = b.niqe_window_scores
    try:
        b.niqe_window_scores = lambda *a, **k: torch.from_numpy(scores)[None]
        ours = niqe_map(x, window, stride)[0, 0].numpy()
    finally:
        b.niqe_window_scores = real
    assert (75 - covered_h, 90 - covered_w) == (3, 2)
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


def test_niqe_map_flat_image_is_zero_and_noise_scores_high(photos):
    flat = torch.full((1, 3, 96, 96), 0.4)
    assert torch.isnan(niqe_window_scores(flat, 32, 16)).all()
    assert (niqe_map(flat, 32, 16) == 0).all()
    clean = photos[1:2]
    noisy = clean.clone()
    g = torch.Generator().manual_seed(2)
    noisy[..., 32:96, 32:96] = (noisy[..., 32:96, 32:96] + 0.2 * torch.randn(1, 3, 64, 64, generator=g)).clamp(0, 1)
    m = niqe_map(noisy, 32, 8)[0, 0]
    inside, before = m[48:80, 48:80].mean(), niqe_map(clean, 32, 8)[0, 0, 48:80, 48:80].mean()
    assert inside > 1.5 * before
    threshold = float(m.max()) * 0.9
    det = niqe_detect(noisy, threshold, 32, 8)[0, 0]
    assert det.any() and det[32:96, 32:96].sum() == det.sum()


def test_niqe_map_bad_input():
    x = torch.rand(1, 3, 64, 64)
    for window, stride in ((33, 8), (32, 6), (32, 3), (6, 2)):
        with pytest.raises(InputError, match="even window"):
            niqe_window_scores(x, window, stride)
    with pytest.raises(InputError, match="at least 96x96"):
        niqe_map(x)
    with pytest.raises(InputError, match="threshold"):
        niqe_detect(x, 0, 32, 16)


# --- found by mutating the code (helper-72) ---


def test_ldl_and_niqe_detect_flag_values_strictly_above_the_threshold(monkeypatch):
    """A pixel is an artifact where the map *exceeds* the threshold: at the map's maximum nothing is flagged,
    just below it the maximum is."""
    import genrestore.detect.baselines as baselines

    mse = torch.zeros(1, 3, 17, 17)
    gan = mse.clone()
    gan[0, 1, 8, 8] = 0.6
    top = float(ldl_artifact_map(gan, mse).max())
    assert not ldl_detect(gan, mse, top).any()
    assert ldl_detect(gan, mse, float(np.nextafter(top, 0))).any()
    fake = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    fake[..., 2, 3] = 4.0
    monkeypatch.setattr(baselines, "niqe_map", lambda image, *a, **k: fake)
    assert not niqe_detect(torch.zeros(1, 3, 8, 8), 4.0).any()
    assert niqe_detect(torch.zeros(1, 3, 8, 8), 3.999).sum() == 1


def test_ldl_detect_default_threshold_is_the_middle_of_table_1():
    """Default 0.005 (DeSRA Table 1 reports 0.01, 0.005, 0.001). A residual of 1 at the centre of a 17x17
    image maps to (1 / 289)^(1/5) / 49 = 0.00657 there: above 0.005, below 0.01."""
    mse = torch.zeros(1, 3, 17, 17)
    gan = mse.clone()
    gan[0, 0, 8, 8] = 1.0
    expect = (1 / 289) ** 0.2 / 49
    assert 0.005 < expect < 0.01
    assert ldl_artifact_map(gan, mse)[0, 0, 8, 8].item() == pytest.approx(expect, rel=1e-12)
    assert torch.equal(ldl_detect(gan, mse), ldl_detect(gan, mse, 0.005)) and ldl_detect(gan, mse)[0, 0, 8, 8]
    assert not ldl_detect(gan, mse, 0.01).any()
