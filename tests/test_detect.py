"""DeSRA detection: the D map against a NumPy/OpenCV implementation of eq. 7, morphology against
OpenCV and SciPy, the adjustment fit against NumPy's quantile, and end-to-end on planted artifacts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrestore._checks import InputError
from genrestore.detect import (AdjustmentFit, NoSegmenter, TextureSegmenter, detect_artifacts, dilate, erode,
                               fill_holes, min_area_for_scale, pseudo_gt, refine_mask, regions, remove_small_regions,
                               variance_distance)
from genrestore.detect.semantic import ade20k_adjustment, make_segmenter

cv2 = pytest.importorskip("cv2")


def _blur_ref(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    return cv2.sepFilter2D(a, cv2.CV_64F, g, g)


def d_map_reference(gan: np.ndarray, mse: np.ndarray, numerator_constant: bool = True) -> np.ndarray:
    """Eq. 7 in float64 NumPy + OpenCV: ``(H, W, C)`` images on 0..255 -> ``(H, W)``.

    ``cv2.sepFilter2D`` with ``cv2.getGaussianKernel(11, 1.5)`` on both axes and OpenCV's default
    border (BORDER_REFLECT_101); per channel, then the channel mean. (``cv2.filter2D`` with the
    11x11 outer product would do, but OpenCV runs kernels this large through a DFT, ~1e-8 off.)
    """
    g = cv2.getGaussianKernel(11, 1.5)
    c = (0.03 * 255) ** 2
    maps = []
    for ch in range(gan.shape[2]):
        x, y = gan[..., ch].astype(np.float64), mse[..., ch].astype(np.float64)
        mx, my = _blur_ref(x, g), _blur_ref(y, g)
        vx = np.maximum(_blur_ref(x * x, g) - mx * mx, 0)
        vy = np.maximum(_blur_ref(y * y, g) - my * my, 0)
        num = 2 * np.sqrt(vx * vy) + (c if numerator_constant else 0)
        maps.append(num / (vx + vy + c))
    return np.mean(maps, axis=0)


def _hwc255(t: torch.Tensor) -> np.ndarray:
    return (t.permute(1, 2, 0).double() * 255).numpy()


# float32 moments lose ~1e-3 where one image is nearly flat (the square root of a tiny variance)
@pytest.mark.parametrize("precision,tol", [("float32", 3e-3), ("float64", 1e-7)])
def test_d_map_matches_numpy_opencv(photos, precision, tol):
    gan = photos[:4]
    mse = photos[4:8]  # different photos: every D value in (0, 1] occurs
    d = variance_distance(gan, mse, precision=precision)
    assert d.shape == (4, 1, 128, 128)
    for i in range(4):
        ref = d_map_reference(_hwc255(gan[i]), _hwc255(mse[i]))
        err = np.abs(d[i, 0].double().numpy() - ref).max()
        assert err < tol, err
    assert float(d.min()) < 0.3  # the test covers low D, not only D ~ 1


def test_d_map_printed_formula_and_smoothed_pair(photos):
    """Eq. 7 as printed (no constant in the numerator), against the same reference."""
    gan = photos[:2]
    mse = torch.nn.functional.avg_pool2d(gan, 5, 1, 2, count_include_pad=False)  # an over-smooth "MSE-SR"
    d = variance_distance(gan.double(), mse.double(), numerator_constant=False)
    for i in range(2):
        ref = d_map_reference(_hwc255(gan[i]), _hwc255(mse[i]), numerator_constant=False)
        assert np.abs(d[i, 0].numpy() - ref).max() < 1e-7


def test_d_map_identical_and_flat_images():
    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(variance_distance(x, x), torch.ones(2, 1, 24, 24), atol=1e-5)
    flat = torch.full((1, 3, 24, 24), 0.5)
    assert torch.allclose(variance_distance(flat, flat), torch.ones(1, 1, 24, 24))
    assert float(variance_distance(flat, flat, numerator_constant=False).max()) == 0.0  # why the code adds C


def test_d_map_batch_independent(photos):
    full = variance_distance(photos[:4], photos[4:])
    one = variance_distance(photos[2:3], photos[6:7])
    assert torch.allclose(full[2:3], one, atol=1e-6)


def test_d_map_bad_input():
    with pytest.raises(InputError, match="differ in shape"):
        variance_distance(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 20))
    with pytest.raises(InputError, match=r"in \[0, 1\]"):
        variance_distance(torch.rand(1, 3, 16, 16) * 255, torch.rand(1, 3, 16, 16))


class _Halves:
    """Hand-built segmenter: columns 0..19 class 0 (A = 1), the rest class 1 (A = 0.75)."""
    name = "halves"
    class_names = ["sensitive", "textured"]
    weights = torch.tensor([1.0, 0.75])

    def __call__(self, image):
        labels = torch.zeros(image.shape[0], *image.shape[-2:], dtype=torch.long)
        labels[..., 20:] = 1
        return labels


def _random_masks(seed: int, n: int = 3, size: int = 48) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, size // 4, size // 4, generator=g) > 0.6
    noise = torch.rand(n, 1, size, size, generator=g) > 0.97
    return torch.nn.functional.interpolate(coarse.float(), scale_factor=4.0) .bool() ^ noise


def test_erode_dilate_match_opencv():
    masks = _random_masks(1)
    k = np.ones((5, 5), np.uint8)
    for it in (1, 3):
        e, d = erode(masks, 5, it), dilate(masks, 5, it)
        for i, m in enumerate(masks[:, 0].numpy().astype(np.uint8)):
            assert np.array_equal(e[i, 0].numpy(), cv2.erode(m, k, iterations=it).astype(bool))
            assert np.array_equal(d[i, 0].numpy(), cv2.dilate(m, k, iterations=it).astype(bool))


def test_fill_holes_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    for m in _random_masks(2, n=4)[:, 0].numpy():
        ref = ndimage.binary_fill_holes(m, structure=np.ones((3, 3)))
        assert np.array_equal(fill_holes(m), ref)
    ring = np.zeros((9, 9), bool)
    ring[2:7, 2:7] = True
    ring[4, 4] = False
    assert fill_holes(ring)[4, 4]


def test_remove_small_regions_and_area_scale():
    m = np.zeros((20, 20), bool)
    m[0:2, 0:5] = True            # 10 px
    m[10:15, 10:16] = True        # 30 px
    m[5, 5] = m[6, 6] = True      # 2 px, diagonal: one 8-connected region
    kept = remove_small_regions(m, 10)
    assert kept[0:2, 0:5].all() and kept[10:15, 10:16].all() and not kept[5, 5]
    assert remove_small_regions(m, 11).sum() == 30
    assert remove_small_regions(m, 2)[6, 6]
    assert min_area_for_scale(4) == 4000 and min_area_for_scale(2) == 1000


def test_refine_mask_matches_authors_pipeline_in_opencv_scipy():
    """Erode 5x5 once, dilate 5x5 three times, fill holes (3x3), drop regions < min area."""
    ndimage = pytest.importorskip("scipy.ndimage")
    masks = _random_masks(3, n=2, size=64)
    out = refine_mask(masks, scale=0.5)  # min area 4000 / 64 = 62.5 px
    k = np.ones((5, 5), np.uint8)
    for i, m in enumerate(masks[:, 0].numpy().astype(np.uint8)):
        ref = cv2.dilate(cv2.erode(m, k, iterations=1), k, iterations=3)
        ref = ndimage.binary_fill_holes(ref, structure=np.ones((3, 3))).astype(np.uint8)
        n, lab, stats, _ = cv2.connectedComponentsWithStats(ref, connectivity=8)
        keep = np.isin(lab, [j for j in range(1, n) if stats[j, 4] >= 62.5])
        assert np.array_equal(out[i, 0].numpy(), keep)


def test_adjustment_fit_matches_numpy_quantile():
    g = torch.Generator().manual_seed(4)
    d = torch.rand(2, 1, 40, 40, generator=g) ** torch.tensor([0.5, 2.0]).view(2, 1, 1, 1)
    labels = (torch.rand(2, 40, 40, generator=g) > 0.5).long() + 2 * torch.arange(2).view(2, 1, 1)  # 4 classes
    fit = AdjustmentFit(num_classes=5, bins=1000)
    fit.update(d[:1], labels[:1])
    fit.update(d[1:], labels[1:])  # streaming
    a = fit.compute(missing=1.0)
    for k in range(4):
        vals = d[:, 0][labels == k].numpy()
        ref = np.quantile(vals, 0.15, method="inverted_cdf")  # 85 % of the values lie at or above A_k
        assert 0 < float(a[k]) - ref <= 1e-3 + 1e-7, (k, float(a[k]), ref)  # A_k is the upper edge of ref's bin
    assert float(a[4]) == 1.0


def test_texture_segmenter_classes():
    g = torch.Generator().manual_seed(5)
    h = w = 60
    img = torch.full((1, 3, h, w), 0.5)
    xs = torch.arange(w).float()
    img[..., 20:40] = 0.5 + 0.3 * torch.sin(xs[20:40] * 1.3)          # vertical stripes: regular
    img[..., 40:] = torch.rand(1, 1, h, 20, generator=g).expand(1, 3, h, 20)  # noise: complex
    labels = TextureSegmenter()(img)[0]
    centre = slice(10, 50)
    assert (labels[centre, 2:10] == 0).float().mean() > 0.95
    assert (labels[centre, 25:35] == 1).float().mean() > 0.9
    assert (labels[centre, 48:58] == 2).float().mean() > 0.9


def test_detect_artifacts_finds_planted_texture():
    """MSE-SR: a smooth ramp; GAN-SR: the same plus strong texture in one 24x24 square."""
    g = torch.Generator().manual_seed(6)
    ramp = torch.linspace(0.2, 0.8, 80).view(1, 1, 1, 80).expand(2, 3, 80, 80).clone()
    gan = ramp.clone()
    gan[0, :, 30:54, 20:44] += 0.2 * (torch.rand(3, 24, 24, generator=g) - 0.5)
    det = detect_artifacts(gan.clamp(0, 1), ramp, scale=1)  # min area 250 px
    truth = torch.zeros(80, 80, dtype=torch.bool)
    truth[26:58, 16:48] = True  # the square grown by 4 px: one 5x5 erosion, three 5x5 dilations
    m = det.mask[0, 0]
    assert (m & truth).sum() / (m | truth).sum() > 0.85
    assert not det.mask[1].any() and det.regions[1] == []
    assert len(det.regions[0]) == 1 and det.regions[0][0].mean_d < 0.8 < float(det.d_map[0, 0, :20].mean())
    assert det.segmenter == "texture"
    plain = detect_artifacts(gan.clamp(0, 1), ramp, segmenter=NoSegmenter(), scale=1)
    assert plain.segmenter == "none" and plain.mask[0, 0, 40, 30]


def test_regions_boxes_and_means():
    m = torch.zeros(10, 12, dtype=torch.bool)
    m[1:3, 2:6] = True
    d = torch.full((10, 12), 0.5)
    d[1, 2] = 0.1
    (r,) = regions(m, d)
    assert r.box == (2, 1, 4, 2) and r.area == 8 and abs(r.mean_d - (0.5 * 7 + 0.1) / 8) < 1e-7


def test_pseudo_gt_equation_10():
    g = torch.Generator().manual_seed(7)
    gan, mse = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g)
    mask = torch.rand(2, 1, 8, 8, generator=g) > 0.5
    out = pseudo_gt(gan, mse, mask)
    assert torch.equal(out, torch.where(mask, mse, gan))
    with pytest.raises(InputError, match="mask of shape"):
        pseudo_gt(gan, mse, mask[:, :, :4])


def test_ade20k_table_and_segmenter_factory():
    names, w = ade20k_adjustment()
    assert len(names) == 150 and w.shape == (150,)
    assert w[names.index("sky")] == 1.0 and w[names.index("tree")] == 0.75 and w[names.index("building")] == 0.8
    assert make_segmenter("none").name == "none"
    with pytest.raises(InputError, match="unknown segmenter"):
        make_segmenter("deeplab")
    with pytest.raises(InputError, match="needs a local model folder"):
        make_segmenter("segformer")
    with pytest.raises(InputError, match="used only with the segformer segmenter"):
        make_segmenter("texture", folder="models/segformer")  # a folder given to the wrong segmenter


def test_segformer_segmenter_tiny_random(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.SegformerConfig(num_channels=3, num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1],
                                       hidden_sizes=[8, 16], num_attention_heads=[1, 1], decoder_hidden_size=16,
                                       num_labels=150, patch_sizes=[7, 3], strides=[4, 2])
    torch.manual_seed(0)
    transformers.SegformerForSemanticSegmentation(cfg).save_pretrained(tmp_path)
    seg = make_segmenter("segformer", folder=tmp_path)
    seg.size = 32
    labels = seg(torch.rand(2, 3, 40, 48))
    assert labels.shape == (2, 40, 48) and labels.dtype == torch.long and int(labels.max()) < 150


def test_upsampled_argmax_in_bands_equals_full_interpolation():
    from genrestore.detect.semantic import upsampled_argmax

    logits = torch.randn(2, 150, 16, 20, generator=torch.Generator().manual_seed(0))
    ref = torch.nn.functional.interpolate(logits, size=(67, 83), mode="bilinear", align_corners=False).argmax(1)
    assert torch.equal(upsampled_argmax(logits, (67, 83), max_bytes=4 * 2 * 150 * 83 * 5), ref)  # 5-row bands


def test_eq9_divides_d_by_the_adjustment(monkeypatch):
    """Eq. 9 flags D / A_k < 0.7: D = 0.6 is flagged where A = 1 (0.6) and not where A = 0.75 (0.8);
    D * A (0.45) would flag both halves."""
    import genrestore.detect.pipeline as pipeline

    monkeypatch.setattr(pipeline, "variance_distance", lambda gan, mse, **kw: torch.full((1, 1, 40, 40), 0.6))
    x = torch.full((1, 3, 40, 40), 0.5)
    det = detect_artifacts(x, x, segmenter=_Halves(), scale=1)  # min area 250 px; each half is 800
    assert torch.allclose(det.adjusted[0, 0, :, :20], torch.tensor(0.6))
    assert torch.allclose(det.adjusted[0, 0, :, 20:], torch.tensor(0.8))
    assert det.candidates[0, 0, :, :20].all() and not det.candidates[0, 0, :, 20:].any()
    # one 5x5 erosion and three 5x5 dilations grow the left half by 4 columns, no further
    assert det.mask[0, 0, :, :24].all() and not det.mask[0, 0, :, 24:].any()


@pytest.mark.parametrize("kernel", [2, 3, 4, 6])
def test_erode_dilate_other_kernels_keep_size_and_match_opencv(kernel):
    """An even square keeps the image size and OpenCV's anchor (kernel // 2), as cv2.erode / cv2.dilate do."""
    masks = _random_masks(8, n=2, size=20)
    k = np.ones((kernel, kernel), np.uint8)
    for it in (1, 2, 3):
        e, d = erode(masks, kernel, it), dilate(masks, kernel, it)
        assert e.shape == d.shape == masks.shape, (e.shape, d.shape)
        for i, m in enumerate(masks[:, 0].numpy().astype(np.uint8)):
            assert np.array_equal(e[i, 0].numpy(), cv2.erode(m, k, iterations=it).astype(bool)), (kernel, it)
            assert np.array_equal(d[i, 0].numpy(), cv2.dilate(m, k, iterations=it).astype(bool)), (kernel, it)
    assert refine_mask(masks, scale=1, kernel=kernel).shape == masks.shape
    with pytest.raises(InputError, match="kernel"):
        erode(masks, 0)


def test_adjustment_fit_rejects_mismatched_shapes():
    """A D map without its channel axis, or labels of another batch or size, must not be silently broadcast:
    a (1, 4, 4) D map read as (N, 1, H, W) took row 0 for every row and fitted both classes to 0.001."""
    d = torch.zeros(1, 4, 4)
    d[:, 2:] = 1.0
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[:, 2:] = 1
    fit = AdjustmentFit(num_classes=2)
    for bad_d, bad_labels in [(d, labels), (d[:, None].expand(2, 1, 4, 4), labels), (d[:, None], labels[:, :3])]:
        with pytest.raises(InputError, match="shape"):
            fit.update(bad_d, bad_labels)
    assert fit.counts.sum() == 0
    fit.update(d[:, None], labels)
    assert torch.allclose(fit.compute(), torch.tensor([0.001, 1.0]))  # class 0: all D = 0 (first bin's upper edge); class 1: D = 1


def test_detect_artifacts_rejects_labels_of_another_shape():
    """A segmenter must give (N, H, W) labels; one (1, H, W) map for a batch of 2 was broadcast to both images
    (ArtifactDetection.labels then had 1 image for 2 masks)."""
    class OneMap:
        name = "one-map"
        class_names = ["a", "b"]
        weights = torch.tensor([1.0, 0.5])

        def __call__(self, image):
            return torch.zeros(1, *image.shape[-2:], dtype=torch.long)

    x = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(9))
    with pytest.raises(InputError, match="one-map"):
        detect_artifacts(x, x.flip(-1), OneMap(), scale=1)
    assert detect_artifacts(x[:1], x[:1].flip(-1), OneMap(), scale=1).labels.shape == (1, 40, 40)


# --- boundaries and defaults that only hand-made cases pin (found by mutating the code, helper-43) ---


def test_float_mask_of_one_half_is_false():
    from genrestore.detect import dilate, erode

    m = torch.full((1, 1, 6, 6), 0.5)
    assert not dilate(m, 3, 1).any() and not erode(m, 1, 1).any()


def test_regions_come_largest_first():
    from genrestore.detect.mask import regions

    m = torch.zeros(10, 10, dtype=torch.bool)
    m[0, 0] = True
    m[5:8, 5:8] = True
    assert [r.area for r in regions(m, torch.ones(10, 10))] == [9, 1]


def test_eq9_threshold_is_strict_and_defaults_to_0_7(monkeypatch):
    """Candidates where D / A_k < threshold (eq. 9), 0.7 by default: with a constant D map and one
    class, D = threshold flags nothing, 0.72 nothing at the default, 0.68 everything."""
    import genrestore.detect.pipeline as pipeline
    from genrestore.detect import NoSegmenter, detect_artifacts

    x = torch.full((1, 3, 40, 40), 0.5)
    for d, kw, flagged in ((0.5, {"threshold": 0.5}, False), (0.72, {}, False), (0.68, {}, True)):
        monkeypatch.setattr(pipeline, "variance_distance", lambda gan, mse, d=d, **_: torch.full((1, 1, 40, 40), d))
        candidates = detect_artifacts(x, x, segmenter=NoSegmenter(), scale=1, **kw).candidates
        assert (candidates.all() if flagged else not candidates.any()), d


def test_d_map_uniform_window_is_eq3_as_printed():
    """sigma=None: eq. 3's plain standard deviation of the 11x11 patch (population sd), then eq. 7,
    against a per-pixel NumPy loop over reflect-101 padded patches."""
    rng = np.random.default_rng(59)
    gan = torch.from_numpy(rng.random((1, 3, 14, 15)))
    mse = torch.from_numpy(rng.random((1, 3, 14, 15)) * 0.3 + 0.2)
    c = (0.03 * 255) ** 2
    ref = np.zeros((14, 15))
    for ch in range(3):
        gx = np.pad(gan[0, ch].numpy() * 255, 5, mode="reflect")
        gy = np.pad(mse[0, ch].numpy() * 255, 5, mode="reflect")
        for i in range(14):
            for j in range(15):
                sx, sy = gx[i:i + 11, j:j + 11].std(), gy[i:i + 11, j:j + 11].std()
                ref[i, j] += (2 * sx * sy + c) / (sx * sx + sy * sy + c) / 3
    d = variance_distance(gan, mse, sigma=None)
    assert np.abs(d[0, 0].numpy() - ref).max() < 1e-9
    # the default Gaussian window is another map (it is not eq. 3's sd)
    assert np.abs(variance_distance(gan, mse)[0, 0].numpy() - ref).max() > 1e-3
    det = detect_artifacts(gan.float(), mse.float(), NoSegmenter(), sigma=None)
    assert torch.allclose(det.d_map, d.float(), atol=1e-6)


@pytest.mark.parametrize("sigma", [1.5, None])
def test_float64_cpu_blur_by_opencv_equals_depthwise_conv(sigma):
    """The float64 CPU local moments go through OpenCV's sepFilter2D (reflect-101); they equal torch's
    depthwise conv2d on reflect-padded maps to float64 rounding, and maps that need a gradient still
    take conv2d (and get one)."""
    import torch.nn.functional as F

    from genrestore.detect import distance

    maps = torch.rand(2, 3, 45, 31, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 255
    g = (torch.full((11,), 1 / 11, dtype=torch.float64) if sigma is None
         else distance._gaussian_window(11, sigma, maps.device, maps.dtype))
    padded = F.pad(maps, (5, 5, 5, 5), mode="reflect")
    ref = F.conv2d(F.conv2d(padded, g.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3),
                   g.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
    out = distance._blur(maps, 11, sigma)
    assert out.dtype == torch.float64 and torch.allclose(out, ref, rtol=1e-13, atol=0)
    leaf = maps.clone().requires_grad_()
    out = distance._blur(leaf, 11, sigma)
    out.sum().backward()
    assert torch.allclose(out.detach(), ref, rtol=1e-13, atol=0) and leaf.grad is not None


# --- found by mutating the code (helper-72) ---


def test_local_variance_smallest_image_matches_opencv_and_one_px_less_is_refused():
    """An 11x11 window needs sides > 5 px (reflect-101 padding by 5): a 6 px image is the smallest, and its
    variance equals OpenCV's sepFilter2D moments (getGaussianKernel(11, 1.5), BORDER_REFLECT_101);
    a 5 px side is refused, not filtered by OpenCV's repeated reflection."""
    from genrestore.detect.distance import local_variance

    rng = np.random.default_rng(72)
    x = rng.random((6, 7)) * 255
    g = cv2.getGaussianKernel(11, 1.5)
    m = _blur_ref(x, g)
    ref = np.maximum(_blur_ref(x * x, g) - m * m, 0)
    v = local_variance(torch.from_numpy(x)[None, None])
    assert np.abs(v[0, 0].numpy() - ref).max() < 1e-8
    for shape in ((1, 1, 5, 7), (1, 1, 7, 5)):
        with pytest.raises(InputError, match="too small"):
            local_variance(torch.rand(*shape, dtype=torch.float64))
        with pytest.raises(InputError, match="too small"):
            variance_distance(torch.rand(*shape).expand(1, 3, *shape[2:]), torch.rand(*shape).expand(1, 3, *shape[2:]))


def test_detect_artifacts_passes_numerator_constant_to_eq7():
    """Two identical flat images: D = 1 with the authors' ``+ C`` in the numerator (nothing flagged), D = 0
    with eq. 7 as printed (0 / C), so every pixel is flagged and the mask is the whole image."""
    from genrestore.detect import NoSegmenter

    flat = torch.full((1, 3, 40, 40), 0.5)
    default = detect_artifacts(flat, flat, NoSegmenter(), scale=1)
    assert torch.equal(default.d_map, torch.ones(1, 1, 40, 40)) and not default.mask.any()
    printed = detect_artifacts(flat, flat, NoSegmenter(), scale=1, numerator_constant=False)
    assert torch.equal(printed.d_map, torch.zeros(1, 1, 40, 40)) and printed.mask.all()


def test_artifact_detection_fraction_is_the_share_of_pixels():
    from genrestore.detect import ArtifactDetection

    mask = torch.zeros(2, 1, 4, 5, dtype=torch.bool)
    mask[0, 0, 1, 1:4] = True  # 3 of 20 px
    z = torch.zeros(2, 1, 4, 5)
    det = ArtifactDetection(z, z, torch.zeros(2, 4, 5, dtype=torch.long), mask, mask, "none")
    assert det.fraction().tolist() == pytest.approx([3 / 20, 0.0])


def test_regions_report_the_mean_of_d_not_of_d_over_a(monkeypatch):
    """Region.mean_d is the mean of eq. 7's D over the region. With D = 0.6 everywhere and A = 0.75 on the right
    half, the region (columns 0..23) holds D / A = 0.8 on its last 4 columns but D = 0.6 throughout."""
    import genrestore.detect.pipeline as pipeline

    monkeypatch.setattr(pipeline, "variance_distance", lambda gan, mse, **kw: torch.full((1, 1, 40, 40), 0.6))
    x = torch.full((1, 3, 40, 40), 0.5)
    det = detect_artifacts(x, x, segmenter=_Halves(), scale=1)
    (r,) = det.regions[0]
    assert r.box == (0, 0, 24, 40) and r.area == 960
    assert r.mean_d == pytest.approx(0.6, abs=1e-6)
