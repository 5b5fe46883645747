import io
import math

import cv2
import numpy as np
import pytest
import scipy.ndimage
import scipy.special
import torch
from PIL import Image

from genrestore._checks import InputError
from genrestore.degrade import GFPGAN, IDM, PIPELINES, BlurDownNoiseJpeg, SecondOrder


def test_presets_follow_their_sources():
    # IDM §4.1: sigma in [0.2, 10], scale in [1, 8], noise in [0, 15], JPEG q in [50, 100]; kernel 41
    assert (IDM.kernel_size, IDM.sigma_range, IDM.scale_range, IDM.noise_range_255, IDM.jpeg_range) == (
        41, (0.2, 10.0), (1.0, 8.0), (0.0, 15.0), (50, 100))
    # GFPGAN's options: sigma [0.1, 10], scale [0.8, 8], noise [0, 20], JPEG [60, 100]; iso/aniso 50/50
    assert (GFPGAN.kernel_size, GFPGAN.sigma_range, GFPGAN.scale_range, GFPGAN.noise_range_255,
            GFPGAN.jpeg_range, GFPGAN.aniso_prob) == (41, (0.1, 10.0), (0.8, 8.0), (0.0, 20.0), (60, 100), 0.5)


@pytest.mark.parametrize("preset", [IDM, GFPGAN])
def test_face_pipeline_params_in_range_and_size_kept(preset, photos):
    g = [torch.Generator().manual_seed(i) for i in range(4)]
    y, params = preset.degrade_with_params(photos[:4], g)
    assert y.shape == photos[:4].shape
    assert torch.equal(y * 255, (y * 255).round())
    for p in params:
        assert preset.sigma_range[0] <= p["sigma_x"] <= preset.sigma_range[1]
        assert preset.scale_range[0] <= p["scale"] <= preset.scale_range[1]
        assert preset.noise_range_255[0] <= p["noise_sigma_255"] <= preset.noise_range_255[1]
        assert preset.jpeg_range[0] <= p["jpeg_quality"] <= preset.jpeg_range[1]
    # it degrades: blur + downsampling lose detail
    assert ((y - photos[:4]) ** 2).mean() > 1e-4


def test_face_pipeline_deterministic_per_image(photos):
    g = lambda: [torch.Generator().manual_seed(i) for i in range(3)]  # noqa: E731
    y = IDM.degrade(photos[:3], g())
    assert torch.equal(y, IDM.degrade(photos[:3], g()))
    assert torch.equal(y[1:2], IDM.degrade(photos[1:2], [torch.Generator().manual_seed(1)]))


def test_second_order_size_and_determinism(photos):
    g = lambda: [torch.Generator().manual_seed(i) for i in range(3)]  # noqa: E731
    for scale in (2, 4):
        y, params = SecondOrder(scale=scale).degrade_with_params(photos[:3], g())
        assert y.shape == (3, 3, 128 // scale, 128 // scale)
        assert torch.equal(y, SecondOrder(scale=scale).degrade(photos[:3], g()))
        for p in params:
            assert 30 <= p["stage1"]["jpeg_quality"] <= 95
            assert p["stage1"]["noise"]["type"] in ("gaussian", "poisson")
    with pytest.raises(InputError):
        SecondOrder(scale=4).degrade(torch.rand(1, 3, 3, 3))


def test_pipeline_registry():
    assert set(PIPELINES) == {"idm", "gfpgan", "realesrgan-x4", "realesrgan-x2"}


def test_no_resize_back_batches_at_the_documented_size(photos):
    from genrestore.degrade import BlurDownNoiseJpeg

    p = BlurDownNoiseJpeg(resize_back=False)
    g = lambda: [torch.Generator().manual_seed(i) for i in range(2)]  # noqa: E731
    y, params = p.degrade_with_params(photos[:2], g())
    assert y.shape == (2, 3, *p.output_size((128, 128))) == (2, 3, 16, 16)
    assert params[0]["scale"] != params[1]["scale"]
    assert torch.equal(y * 255, (y * 255).round())
    assert torch.equal(y[1:], p.degrade(photos[1:2], [torch.Generator().manual_seed(1)]))


def test_empty_batch_passes_through():
    """Like the benchmark tasks and jpeg_pillow, an empty batch gives an empty batch of the
    output size (torch.cat of no images raised)."""
    from genrestore.degrade import BlurDownNoiseJpeg

    x = torch.rand(0, 3, 32, 32)
    g = torch.Generator().manual_seed(0)
    assert IDM.degrade(x, g).shape == (0, 3, 32, 32)
    assert BlurDownNoiseJpeg(resize_back=False).degrade(x, []).shape == (0, 3, 4, 4)
    y, params = SecondOrder(scale=4).degrade_with_params(x, g)
    assert y.shape == (0, 3, 8, 8) and params == []


# ---- replays: the logged parameters, rebuilt with OpenCV, scipy and Pillow -------------------------


def _grid(k):
    r = np.arange(k) - k // 2
    return np.meshgrid(r, r, indexing="ij")  # yy, xx


def _ref_kernel(p):
    """Real-ESRGAN's kernels written out: Gaussian (OpenCV's separable one when isotropic),
    generalized Gaussian and plateau with Sigma = R diag(sx^2, sy^2) R^T, and the sinc J1 form."""
    size = p["size"]
    if p.get("type") == "sinc":
        yy, xx = _grid(size)
        r = np.hypot(xx, yy)
        wc = p["cutoff"]
        with np.errstate(invalid="ignore", divide="ignore"):
            k = wc * scipy.special.j1(wc * r) / (2 * np.pi * r)
        k[size // 2, size // 2] = wc ** 2 / (4 * np.pi)
        return k / k.sum()
    if p["sigma_x"] == p["sigma_y"] and p["theta"] == 0 and p.get("type", "iso") == "iso":
        g = cv2.getGaussianKernel(size, p["sigma_x"], cv2.CV_64F)
        return g @ g.T
    yy, xx = _grid(size)
    c, s = math.cos(p["theta"]), math.sin(p["theta"])
    rot = np.array([[c, -s], [s, c]])
    inv = np.linalg.inv(rot @ np.diag([p["sigma_x"] ** 2, p["sigma_y"] ** 2]) @ rot.T)
    pts = np.stack([xx, yy], -1)
    q = np.einsum("...i,ij,...j->...", pts, inv, pts)
    kind = p.get("type", "aniso")
    k = (np.exp(-0.5 * q ** p["beta"]) if kind.startswith("generalized") else
         1 / (1 + q ** p["beta"]) if kind.startswith("plateau") else np.exp(-0.5 * q))
    return k / k.sum()


def _ref_blur(img, k):
    """Correlation with a mirror border (edge not repeated), per channel of an HxWxC image."""
    return np.stack([scipy.ndimage.correlate(img[..., c], k, mode="mirror") for c in range(img.shape[-1])], -1)


def _ref_resize(img, size, mode):
    """OpenCV resizing without antialiasing; "area" only where OpenCV's equals torch's
    (whole factors and the identity)."""
    h, w = size
    if (h, w) == img.shape[:2]:
        return img
    if mode == "area":
        assert img.shape[0] % h == 0 and img.shape[1] % w == 0, "area reference only for whole factors"
    interp = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA}[mode]
    return cv2.resize(img.astype(np.float32), (w, h), interpolation=interp).astype(np.float64)


def _ref_jpeg(img, q):
    """Save as an 8-bit 4:2:0 JPEG at quality q with Pillow and decode."""
    buf = io.BytesIO()
    Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)).save(buf, "JPEG", quality=q,
                                                                                subsampling="4:2:0")
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.float64) / 255


def _assert_replayed(y, ref):
    """8-bit outputs agree up to float rounding (one level here, more where JPEG spreads it over a
    block); a skipped or misplaced step moves the mean by over half a level."""
    diff = np.abs(y.permute(1, 2, 0).double().numpy() - np.round(np.clip(ref, 0, 1) * 255) / 255) * 255
    assert diff.max() <= 2 and diff.mean() < 0.05, (diff.max(), diff.mean())


def _crops(photos, n):
    return photos[:n, :, 30:78, 20:84].contiguous()  # 48 x 64: rows and columns must not be confused


def test_blur_down_noise_jpeg_replays_from_its_logged_params(photos):
    """IDM eq. 11 step by step: blur with the logged Gaussian (iso or aniso), bilinear resize
    (OpenCV INTER_LINEAR) to (int(H / s), int(W / s)), noise (0 here), Pillow JPEG at the logged
    quality, bilinear resize back to H x W, 8 bits. A non-square image catches swapped sides."""
    pipe = BlurDownNoiseJpeg(kernel_size=21, sigma_range=(0.8, 3.0), scale_range=(1.5, 3.0),
                             noise_range_255=(0.0, 0.0), jpeg_range=(100, 100), aniso_prob=0.5)
    x = _crops(photos, 6)
    y, params = pipe.degrade_with_params(x, [torch.Generator().manual_seed(i) for i in range(6)])
    assert {p["sigma_x"] == p["sigma_y"] for p in params} == {True, False}  # both kinds replayed
    for xi, yi, p in zip(x, y, params):
        h, w = xi.shape[-2:]
        r = _ref_blur(xi.permute(1, 2, 0).double().numpy(), _ref_kernel({"size": 21, **p}))
        r = _ref_resize(r, (int(h / p["scale"]), int(w / p["scale"])), "bilinear")
        r = _ref_jpeg(r, p["jpeg_quality"])
        r = _ref_resize(r, (h, w), "bilinear")
        _assert_replayed(yi, r)


def test_blur_down_noise_jpeg_noise_sigma_is_on_the_255_scale():
    """noise_range_255 is in 8-bit levels: sigma 10 on a flat grey image with no blur effect,
    no resizing and JPEG q=100 leaves a standard deviation of about 7 levels (4:2:0 chroma
    averaging lowers it from 10), not tens of levels."""
    pipe = BlurDownNoiseJpeg(kernel_size=5, scale_range=(1.0, 1.0), noise_range_255=(10.0, 10.0),
                             jpeg_range=(100, 100))
    y = pipe.degrade(torch.full((2, 3, 32, 32), 0.5), [torch.Generator().manual_seed(i) for i in range(2)])
    std = y.std(dim=(1, 2, 3)) * 255
    assert ((std > 5) & (std < 11)).all(), std
    assert abs(y.mean().item() * 255 - 127.5) < 1


def test_second_order_noise_sigma_is_on_the_255_scale():
    """As above for Real-ESRGAN's Gaussian noise: sigma 10 levels at stage 1 only, on a flat grey
    image with scale 1, resizing kept, no second blur or final sinc and JPEG q=100, leaves about
    7 levels (colour noise, chroma averaged) to 10 (gray noise); the log reports 10."""
    pipe = SecondOrder(scale=1, resize_prob=(0.0, 0.0, 1.0), resize_prob2=(0.0, 0.0, 1.0), gaussian_noise_prob=1.0,
                       noise_range_255=(10.0, 10.0), noise_range2_255=(0.0, 0.0), jpeg_range=(100, 100),
                       jpeg_range2=(100, 100), second_blur_prob=0.0, final_sinc_prob=0.0)
    y, params = pipe.degrade_with_params(torch.full((4, 3, 32, 32), 0.5),
                                         [torch.Generator().manual_seed(i) for i in range(4)])
    std = y.std(dim=(1, 2, 3)) * 255
    assert ((std > 5) & (std < 11.5)).all(), std
    assert all(math.isclose(p["stage1"]["noise"]["sigma_255"], 10.0) for p in params)


@pytest.mark.parametrize("preset", [BlurDownNoiseJpeg(jpeg_range=(99, 100), aniso_prob=0.5), GFPGAN])
def test_face_pipeline_sampling_frequencies(preset):
    """Over 300 draws: JPEG quality is uniform over the inclusive integer range (the top value
    occurs); anisotropic kernels occur with aniso_prob, drawing sigma_y apart from sigma_x and
    theta in (-pi, pi); isotropic ones have sigma_y = sigma_x, theta = 0."""
    ps = [preset.sample(torch.Generator().manual_seed(i)) for i in range(300)]
    lo, hi = preset.jpeg_range
    q = np.array([p["jpeg_quality"] for p in ps])
    assert q.min() == lo and q.max() == hi
    assert abs((q == hi).mean() - 1 / (hi - lo + 1)) < 0.1
    aniso = np.array([p["sigma_y"] != p["sigma_x"] for p in ps])
    assert abs(aniso.mean() - preset.aniso_prob) < 0.1
    theta = np.array([p["theta"] for p in ps])
    assert (theta[~aniso] == 0).all() and theta[aniso].min() < -2 and theta[aniso].max() > 2
    sy = np.array([p["sigma_y"] for p in ps])[aniso]
    assert sy.min() >= preset.sigma_range[0] and sy.max() <= preset.sigma_range[1]


def test_second_order_replays_from_its_logged_params(photos):
    """Real-ESRGAN's two stages and final step rebuilt from the log with noise at 0 and JPEG q=100:
    each stage blurs with its logged kernel (closed forms, mirror border), resizes (kept at
    stage 1; stage 2 to H/scale x W/scale: OpenCV, whole factor so "area" agrees) and JPEGs
    (Pillow); the final step applies the logged sinc after resizing, JPEG before or after."""
    pipe = SecondOrder(scale=2, sinc_prob=0.3, sinc_prob2=0.3, resize_prob=(0.0, 0.0, 1.0),
                       resize_prob2=(0.0, 0.0, 1.0), gaussian_noise_prob=1.0, noise_range_255=(0.0, 0.0),
                       noise_range2_255=(0.0, 0.0), jpeg_range=(100, 100), jpeg_range2=(100, 100),
                       second_blur_prob=1.0, final_sinc_prob=1.0)
    x = _crops(photos, 6)
    h, w = x.shape[-2:]
    y, params = pipe.degrade_with_params(x, [torch.Generator().manual_seed(i) for i in range(6)])
    assert y.shape == (6, 3, h // 2, w // 2)
    for xi, yi, p in zip(x, y, params):
        r = xi.permute(1, 2, 0).double().numpy()
        for stage, size in (("stage1", (h, w)), ("stage2", (h // 2, w // 2))):
            s = p[stage]
            assert s["resize"]["scale"] == 1.0 and s["noise"]["sigma_255"] == 0.0
            r = _ref_blur(r, _ref_kernel(s["kernel"]))
            r = _ref_jpeg(_ref_resize(r, size, s["resize"]["mode"]), s["jpeg_quality"])
        f = p["final"]
        sinc = _ref_kernel({"type": "sinc", **f["sinc"]})
        if f["jpeg_first"]:
            r = _ref_blur(_ref_resize(_ref_jpeg(r, f["jpeg_quality"]), (h // 2, w // 2), f["mode"]), sinc)
        else:
            r = _ref_jpeg(_ref_blur(_ref_resize(r, (h // 2, w // 2), f["mode"]), sinc), f["jpeg_quality"])
        _assert_replayed(yi, r)


def test_second_order_sampling_frequencies():
    """Real-ESRGAN's choices over 200 tiny images (defaults except JPEG ranges of two values and
    sinc kernels always): stage-1 resize up/down/keep 20/70/10%, stage 2 30/40/30%; gray noise
    40%; the top JPEG quality occurs; sinc cutoffs in [pi/3, pi] for kernels under 13 px, [pi/5, pi]
    otherwise (some below pi/3); the final sinc 80% of the time, cutoff in [pi/3, pi]."""
    pipe = SecondOrder(scale=4, sinc_prob=1.0, sinc_prob2=1.0, second_blur_prob=1.0,
                       jpeg_range=(94, 95), jpeg_range2=(94, 95))
    x = torch.rand(200, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    threads = torch.get_num_threads()
    try:  # 600 convolutions of a few pixels: handing each to other threads costs 20x the work on a busy machine
        torch.set_num_threads(1)
        _, params = pipe.degrade_with_params(x, [torch.Generator().manual_seed(i) for i in range(200)])
    finally:
        torch.set_num_threads(threads)

    def kinds(stage):
        s = np.array([p[stage]["resize"]["scale"] for p in params])
        return (s > 1).mean(), (s < 1).mean(), (s == 1).mean()

    for got, want in ((kinds("stage1"), (0.2, 0.7, 0.1)), (kinds("stage2"), (0.3, 0.4, 0.3))):
        assert np.allclose(got, want, atol=0.08), (got, want)
    gray = [p[st]["noise"]["gray"] for p in params for st in ("stage1", "stage2")]
    for st, rng in (("stage1", (1.0, 30.0)), ("stage2", (1.0, 25.0))):  # Real-ESRGAN's noise_range(2)
        sig = [p[st]["noise"]["sigma_255"] for p in params if p[st]["noise"]["type"] == "gaussian"]
        assert rng[0] <= min(sig) and max(sig) <= rng[1] and len(sig) > 50
    assert abs(np.mean(gray) - 0.4) < 0.08
    for q in ([p["stage1"]["jpeg_quality"] for p in params], [p["stage2"]["jpeg_quality"] for p in params],
              [p["final"]["jpeg_quality"] for p in params]):
        assert abs(np.mean(np.array(q) == 95) - 0.5) < 0.1 and set(q) == {94, 95}
    ks = [p[st]["kernel"] for p in params for st in ("stage1", "stage2")]
    assert {k["type"] for k in ks} == {"sinc"}
    small = np.array([k["cutoff"] for k in ks if k["size"] < 13])
    large = np.array([k["cutoff"] for k in ks if k["size"] >= 13])
    assert small.min() >= math.pi / 3 and small.max() <= math.pi
    assert large.min() >= math.pi / 5 and large.min() < math.pi / 3 - 0.1 and large.max() <= math.pi
    final = [p["final"]["sinc"]["cutoff"] for p in params if "sinc" in p["final"]]
    assert abs(len(final) / len(params) - 0.8) < 0.12 and min(final) >= math.pi / 3


# --- found by mutating the code (helper-72) ---


def test_second_order_sinc_cutoff_range_widens_from_13_px():
    """Real-ESRGAN: ``omega_c ~ U(pi/3, pi)`` if kernel_size < 13 else ``U(pi/5, pi)``; 13 px is already the
    wide range, 11 px is not."""
    for size, lo in ((13, math.pi / 5), (11, math.pi / 3)):
        g = torch.Generator().manual_seed(size)
        pipe = SecondOrder(kernel_range=(size,))
        cut = np.array([pipe._kernel(g, 1.0, (0.2, 3.0))[1]["cutoff"] for _ in range(100)])
        assert cut.min() >= lo and cut.max() <= math.pi and cut.min() < lo + 0.1, size


def test_second_order_gray_noise_is_one_field_on_every_channel():
    """With gray noise (gray_noise_prob 1), Gaussian noise of 10 levels on flat grey leaves R = G = B up to
    JPEG q = 100's rounding; colour noise (gray_noise_prob 0) leaves the channels about 2 levels apart."""
    spread = {}
    for gray in (1.0, 0.0):
        pipe = SecondOrder(scale=1, resize_prob=(0.0, 0.0, 1.0), resize_prob2=(0.0, 0.0, 1.0), gaussian_noise_prob=1.0,
                           gray_noise_prob=gray, noise_range_255=(10.0, 10.0), noise_range2_255=(0.0, 0.0),
                           jpeg_range=(100, 100), jpeg_range2=(100, 100), second_blur_prob=0.0, final_sinc_prob=0.0)
        y, params = pipe.degrade_with_params(torch.full((2, 3, 32, 32), 0.5),
                                             [torch.Generator().manual_seed(i) for i in range(2)])
        assert all(p["stage1"]["noise"]["gray"] == bool(gray) for p in params)
        spread[gray] = float((y[:, 0] - y[:, 1]).abs().mean() * 255)
    assert spread[1.0] < 0.5 and spread[0.0] > 1, spread  # colour: ~2 levels after 4:2:0 chroma averaging
