import math

import pytest
import torch
import torch.nn.functional as F

from genrestore._checks import InputError
from genrestore.degrade import (COMPOSITIONS, LEVELS, Composition, Deartifact, Denoise, Inpaint, Upsample,
                                get_task, jpeg_torch, sample_stroke_endpoints, stroke_mask)
from conftest import psnr

ALL = ["upsample", "denoise", "deartifact", "inpaint", *COMPOSITIONS]


def test_levels_are_the_papers():
    """Robust StyleGAN §5.1 (and the issue): XS..XL parameters of every task."""
    assert LEVELS == ("XS", "S", "M", "L", "XL")
    assert [Upsample(lv).factor for lv in LEVELS] == [2, 4, 8, 16, 32]
    assert [Inpaint(lv).strokes for lv in LEVELS] == [1, 5, 9, 13, 17]
    assert [(Denoise(lv).photons, Denoise(lv).dead_prob) for lv in LEVELS] == [
        (96, .04), (48, .08), (24, .16), (12, .32), (6, .64)]
    assert [Deartifact(lv).quality for lv in LEVELS] == [18, 15, 12, 9, 6]


def test_the_eleven_compositions():
    assert COMPOSITIONS == ("UN", "UA", "UP", "NA", "NP", "AP", "UNA", "UNP", "UAP", "NAP", "UNAP")
    c = get_task("UNAP")
    assert [type(t) for t in c.tasks] == [Upsample, Denoise, Deartifact, Inpaint]
    assert all(t.level == "M" for t in c.tasks)
    with pytest.raises(InputError):
        get_task("NU")
    with pytest.raises(InputError, match="level M"):
        get_task("UN", "XL")


@pytest.mark.parametrize("name", ALL)
def test_true_degradation_is_8bit_and_seeded(name, photos):
    task = get_task(name)
    x = photos[:3]
    gens = lambda: [torch.Generator().manual_seed(i) for i in range(3)]  # noqa: E731
    y = task.degrade(x, gens())
    assert y.shape[-2:] == task.output_size(tuple(x.shape[-2:]))
    assert torch.equal(y * 255, (y * 255).round()) and y.min() >= 0 and y.max() <= 1
    assert torch.equal(y, task.degrade(x, gens()))  # same seed, same bytes
    alone = task.degrade(x[2:3], [torch.Generator().manual_seed(2)])
    assert torch.equal(alone, y[2:3])  # an image alone matches itself inside a batch
    assert not torch.equal(y, task.degrade(x, [torch.Generator().manual_seed(i + 7) for i in range(3)])) \
        or name in ("deartifact",)  # JPEG has no randomness


@pytest.mark.parametrize("name", ALL)
def test_surrogate_gradients_finite_at_extremes_and_odd_sizes(name):
    g = torch.Generator().manual_seed(0)
    for hw in ((64, 64), (67, 73)):
        x = torch.rand(2, 3, *hw, generator=g)
        x[0, :, :8] = 0.0
        x[1, :, :8] = 1.0
        task = get_task(name)
        _, params = task.degrade_with_params(x, g)
        xr = x.clone().requires_grad_()
        y = task.surrogate(xr, params, g)
        y.sum().backward()
        assert torch.isfinite(y).all() and torch.isfinite(xr.grad).all() and xr.grad.abs().sum() > 0


def test_upsample_true_vs_pillow_and_surrogate(photos):
    for backend in ("torch", "pil"):
        t = Upsample("S", backend=backend)
        y, p = t.degrade_with_params(photos, torch.Generator().manual_seed(0))
        assert y.shape == (8, 3, 32, 32) and set(p["filter"]) <= {"bilinear", "bicubic", "lanczos"}
        if backend == "torch":
            y_torch = y
        else:
            # same seed, same filters: the batched path is at most a level from Pillow's bytes
            assert (y - y_torch).abs().max() <= 1.5 / 255
    s = Upsample("S").surrogate(photos)
    assert torch.allclose(s, F.avg_pool2d(photos, 4))
    assert psnr(s, y_torch).mean() > 30  # average pooling approximates the true filters


def test_upsample_floors_size_and_refuses_tiny_images():
    assert Upsample("XS").output_size((65, 33)) == (32, 16)
    with pytest.raises(InputError, match="smaller than 32"):
        Upsample("XL").degrade(torch.rand(1, 3, 31, 64))


def test_denoise_surrogate_matches_true_distribution():
    """On a flat grey image: the same dead-pixel rate; mean within 1/lambda (the surrogate
    centres Poisson at lambda x - 1/2); std of live pixels within 10 %."""
    g = torch.Generator().manual_seed(0)
    for level in ("XS", "M", "XL"):
        t = Denoise(level)
        x = torch.full((1, 3, 256, 256), 0.5)
        y = t.degrade(x, g)
        s = t.surrogate(x, None, g)
        dead_y, dead_s = (y.sum(1) == 0).float().mean(), (s.sum(1) == 0).float().mean()
        assert abs(dead_y - t.dead_prob) < 0.01 and abs(dead_s - t.dead_prob) < 0.01
        live_y, live_s = y[(y.sum(1, keepdim=True) > 0).expand_as(y)], s[(s.sum(1, keepdim=True) > 0).expand_as(s)]
        assert abs(live_y.mean() - live_s.mean()) <= 1 / t.photons
        assert abs(live_y.std() / live_s.std() - 1) < 0.1


def test_deartifact_surrogate_is_the_torch_jpeg(photos):
    t = Deartifact("M")
    s = t.surrogate(photos)
    assert torch.allclose(s, jpeg_torch(photos, 12), atol=1e-6)
    assert psnr(s, t.degrade(photos)).mean() >= 38


def test_inpaint_mask_geometry():
    g = torch.Generator().manual_seed(0)
    ends = sample_stroke_endpoints(g, 50, 4)
    outer = (ends <= 1 / 3) | (ends >= 2 / 3)
    assert outer.all()  # every coordinate in the outer thirds
    # brush width 0.08 x resolution: a horizontal stroke across a 200 px image covers 16 rows
    m = stroke_mask((200, 200), torch.tensor([[[[0.0, 0.5], [1.0, 0.5]]]]))
    assert math.isclose((1 - m[0, 0, :, 100]).sum().item(), 16.0, abs_tol=0.5)
    # antialiased edges: some fractional values, all in [0, 1]
    d = stroke_mask((64, 64), torch.tensor([[[[0.1, 0.05], [0.9, 0.8]]]]))
    assert ((d > 0) & (d < 1)).any() and d.min() >= 0 and d.max() <= 1


def test_inpaint_coverage_grows_with_level_and_surrogate_uses_known_mask(photos):
    g = torch.Generator().manual_seed(1)
    cover = []
    for lv in LEVELS:
        y, p = Inpaint(lv).degrade_with_params(photos, g)
        cover.append((1 - p["mask"]).mean().item())
        s = Inpaint(lv).surrogate(photos, p)
        assert (s - y).abs().max() <= 0.5 / 255 + 1e-6  # the same mask; only 8-bit rounding differs
    assert cover == sorted(cover) and cover[0] > 0.02
    with pytest.raises(InputError, match="known mask"):
        Inpaint("M").surrogate(photos)


def test_composition_chains_stages(photos):
    c = get_task("UNAP")
    g = [torch.Generator().manual_seed(i) for i in range(8)]
    y, p = c.degrade_with_params(photos, g)
    assert y.shape == (8, 3, 16, 16) and len(p["stages"]) == 4
    assert p["stages"][3]["mask"].shape == (8, 1, 16, 16)  # the mask is drawn at the degraded size
    sg = torch.Generator().manual_seed(5)
    s = c.surrogate(photos, p, sg)
    sg = torch.Generator().manual_seed(5)
    x = photos
    for t, pt in zip(c.tasks, p["stages"]):
        x = t.surrogate(x, pt, sg)
    assert torch.equal(s, x)


def test_unknown_names_and_levels():
    with pytest.raises(InputError, match="unknown task"):
        get_task("blur")
    with pytest.raises(InputError, match="unknown level"):
        get_task("denoise", "XXL")
    with pytest.raises(InputError):
        Composition((Denoise(),))
    with pytest.raises(InputError, match=r"\(N, C, H, W\)"):
        Denoise().degrade(torch.rand(3, 8, 8))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        Denoise().degrade(torch.rand(1, 3, 8, 8) * 255)


def test_gradcheck_of_exactly_differentiable_surrogates():
    """Upsampling and inpainting surrogates are ordinary functions: check them numerically."""
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: Upsample("XS").surrogate(t), (x,))
    _, p = Inpaint("S").degrade_with_params(x.detach().float(), torch.Generator().manual_seed(0))
    assert torch.autograd.gradcheck(lambda t: Inpaint("S").surrogate(t, p), (x,))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["upsample", "denoise", "deartifact", "inpaint", "UNAP"])
def test_cuda_gives_the_cpu_result(name, photos):
    """Randomness is drawn on the generator's device, so the same seed gives the same images."""
    task = get_task(name)
    cpu = task.degrade(photos, torch.Generator().manual_seed(0))
    gpu = task.degrade(photos.cuda(), torch.Generator().manual_seed(0))
    assert gpu.is_cuda and (gpu.cpu() - cpu).abs().max() <= 1 / 255
    _, p = task.degrade_with_params(photos, torch.Generator().manual_seed(0))
    s_cpu = task.surrogate(photos, p, torch.Generator().manual_seed(1))
    p_gpu = {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in p.items()}
    s_gpu = task.surrogate(photos.cuda(), p_gpu, torch.Generator().manual_seed(1))
    assert (s_gpu.cpu() - s_cpu).abs().max() <= 1e-4


def test_random_box_mask_area_and_determinism():
    from genrestore.degrade import random_box_mask

    m = random_box_mask(torch.Generator().manual_seed(0), 64, (60, 80), area_range=(0.1, 0.2))
    hole = (1 - m).flatten(1).mean(1)
    assert m.shape == (64, 1, 60, 80) and set(m.unique().tolist()) <= {0.0, 1.0}
    assert hole.min() > 0.07 and hole.max() < 0.24  # rounding of the box sides moves the area a little
    assert torch.equal(m, random_box_mask(torch.Generator().manual_seed(0), 64, (60, 80), area_range=(0.1, 0.2)))


def test_upsample_true_and_surrogate_align_on_odd_sizes(photos):
    """35x37 at x4: the true resize, like average pooling, drops the last H % 4 rows and
    W % 4 columns, so both see the same 32x36 pixels (the bar of the even-size test)."""
    x = photos[:4, :, 40:75, 30:67]
    for backend in ("pil", "torch"):
        t = Upsample("S", backend=backend)
        y = t.degrade(x, torch.Generator().manual_seed(0))
        s = t.surrogate(x)
        assert y.shape == s.shape == (4, 3, *t.output_size((35, 37))) == (4, 3, 8, 9)
        assert psnr(s, y).mean() > 30
        # Pillow on the 32x36 crop, with the same filters
        assert torch.equal(y, t.degrade(x[..., :32, :36].contiguous(), torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("name", ["upsample", "denoise", "deartifact", "inpaint", "UNAP"])
def test_float64_images_stay_float64(name, photos):
    """8-bit levels computed in float64: k / 255 to float64 precision, not a float32 value cast up."""
    x = photos[:2, :, :64, :64].double()
    task = get_task(name)
    y, p = task.degrade_with_params(x, [torch.Generator().manual_seed(i) for i in range(2)])
    assert y.dtype == torch.float64 and (y * 255 - (y * 255).round()).abs().max() < 1e-9
    s = task.surrogate(x, p, torch.Generator().manual_seed(0))
    assert s.dtype == torch.float64 and s.shape == y.shape


def test_upsample_bfloat16_keeps_dtype(photos):
    x = photos[:2, :, :32, :32]
    y = Upsample("XS").degrade(x.bfloat16(), torch.Generator().manual_seed(0))
    assert y.dtype == torch.bfloat16
    ref = Upsample("XS").degrade(x, torch.Generator().manual_seed(0))
    assert (y.float() - ref).abs().max() <= 2 / 255  # bfloat16 keeps 8 significant bits


def test_backend_reaches_the_upsampling_stage_of_compositions(photos):
    for name in ("UN", "UAP", "UNAP"):
        c = get_task(name, backend="torch")
        assert c.tasks[0] == Upsample("M", backend="torch")
        assert c.describe()["stages"][0]["backend"] == "torch"
        assert get_task(name).tasks[0].backend == "pil"
    # the composition's true degradation runs the torch resizer: its first stage is Upsample(backend="torch")
    g = lambda: [torch.Generator().manual_seed(i) for i in range(2)]  # noqa: E731
    c = get_task("UN", backend="torch")
    y = c.degrade(photos[:2], g())
    gens = g()
    expect = Denoise("M").degrade(Upsample("M", backend="torch").degrade(photos[:2], gens), gens)
    assert torch.equal(y, expect)
    with pytest.raises(InputError, match="backend"):
        get_task("NA", backend="torch")  # no stage resizes
    with pytest.raises(InputError, match="backend"):
        get_task("denoise", backend="torch")


def test_unknown_upsample_backend_is_refused():
    """Only "pil" and "torch" exist; a misspelt backend used to run Pillow silently."""
    with pytest.raises(InputError, match="backend"):
        Upsample("M", backend="Torch")
    with pytest.raises(InputError, match="backend"):
        get_task("UNAP", backend="cuda")


def test_thin_stroke_coverage_sums_to_its_width():
    """A stroke narrower than a pixel (0.05 x 10 px = 0.5 px) through pixel centres: the
    pixel on the line is half covered (box area 0.5 by hand), its neighbours not at all."""
    m = stroke_mask((10, 10), torch.tensor([[[[0.0, 0.55], [1.0, 0.55]]]]), width_frac=0.05)
    col = (1 - m[0, 0, :, 5])
    assert math.isclose(col[5].item(), 0.5, abs_tol=1e-6) and math.isclose(col.sum().item(), 0.5, abs_tol=1e-6)
    # off-centre by 0.3 px: the 0.5 px band [0.05, 0.55] around the centre lies in pixel 5 except 0.05 px
    m = stroke_mask((10, 10), torch.tensor([[[[0.0, 0.58], [1.0, 0.58]]]]), width_frac=0.05)
    col = (1 - m[0, 0, :, 5])
    assert math.isclose(col[5].item(), 0.45, abs_tol=1e-5) and math.isclose(col[6].item(), 0.05, abs_tol=1e-5)


@pytest.mark.parametrize("batch_generator", [False, True])
def test_a_seed_gives_the_same_dead_pixels_and_strokes_whatever_the_image(batch_generator):
    """Re-degrading a different image (a restorer's prediction) with the target's seed must
    reuse the dead pixels and, in NP, the strokes drawn after the noise: fidelity (robust
    StyleGAN §6.1) compares like with like. At lambda = 96 a live pixel of x >= 0.25 is never 0."""
    def seeded():
        return [torch.Generator().manual_seed(i) for i in range(2)] if batch_generator \
            else torch.Generator().manual_seed(3)

    a = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 0.75 + 0.25
    b = torch.full_like(a, 0.9)
    task = Denoise("XS")
    ya, yb = task.degrade(a, seeded()), task.degrade(b, seeded())
    dead_a, dead_b = ya.amax(1) == 0, yb.amax(1) == 0
    assert 0.02 < dead_a.float().mean() < 0.06  # p = 0.04
    assert torch.equal(dead_a, dead_b)
    _, pa = get_task("NP").degrade_with_params(a, seeded())
    _, pb = get_task("NP").degrade_with_params(b, seeded())
    assert torch.equal(pa["stages"][1]["mask"], pb["stages"][1]["mask"])


def test_denoise_surrogate_centres_poisson_at_lambda_x_minus_half():
    """Robust StyleGAN eq. 11: the surrogate's mean is (lambda x - 1/2) / lambda. On flat 0.5 at
    XS (lambda = 96; clamps 7 sigma away) the live pixels average 0.5 - 0.5 / 96 = 0.49479
    (standard error 2e-4); a bias of +1/2 would give 0.5052, inside the 1/lambda bar above."""
    t = Denoise("XS")
    x = torch.full((1, 3, 256, 256), 0.5)
    s = t.surrogate(x, None, torch.Generator().manual_seed(0))
    live = s[(s.sum(1, keepdim=True) > 0).expand_as(s)]
    assert abs(live.mean().item() - (0.5 - 0.5 / 96)) < 0.002


def test_denoise_surrogate_clamps_its_input_first():
    """The surrogate sees clamp(x): an input that strays outside [0, 1] (as inversion's may) gives
    the output of the clamped input with the same seed, finite (sqrt(lambda x) of x < 0 is NaN)."""
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.3  # [-0.3, 1.3]
    x[..., :4, :] = -0.3
    for level in ("XS", "XL"):
        t = Denoise(level)
        s = t.surrogate(x, None, torch.Generator().manual_seed(1))
        assert torch.isfinite(s).all()
        assert torch.equal(s, t.surrogate(x.clamp(0, 1), None, torch.Generator().manual_seed(1)))
        assert torch.equal(t.surrogate(torch.full((1, 3, 8, 8), -0.3), None, torch.Generator().manual_seed(2)),
                           t.surrogate(torch.zeros(1, 3, 8, 8), None, torch.Generator().manual_seed(2)))


def test_deartifact_surrogate_gradient_is_the_k08_cubic_lerp(photos):
    """The docstring's surrogate: jpeg_torch(clamp_surrogate(x), q, rounding="surrogate", k=0.8).
    The forward pass does not depend on k; the gradient does (k = 0.5 gives another one)."""
    from genrestore.degrade.noise import clamp_surrogate

    x = photos[:2, :, :32, :32].clone()

    def grad(f):
        xr = x.clone().requires_grad_()
        f(xr).mul(torch.linspace(-1, 1, 3 * 32 * 32).view(1, 3, 32, 32)).sum().backward()
        return xr.grad

    got = grad(lambda t: Deartifact("M").surrogate(t))
    ref = grad(lambda t: jpeg_torch(clamp_surrogate(t), 12, rounding="surrogate", k=0.8))
    other = grad(lambda t: jpeg_torch(clamp_surrogate(t), 12, rounding="surrogate", k=0.5))
    assert torch.allclose(got, ref, atol=1e-6, rtol=1e-5)
    assert (other - ref).abs().max() > 1e-3  # k matters: the check above can fail


def test_inpaint_surrogate_draws_endpoints_at_its_own_width():
    """Given only the endpoints, the surrogate draws the mask at the task's width_frac."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 40, 50, generator=g)
    ends = sample_stroke_endpoints(g, 2, 3)
    s = Inpaint("S", width_frac=0.2).surrogate(x, {"endpoints": ends})
    assert torch.equal(s, x * stroke_mask((40, 50), ends, 0.2))
    assert not torch.equal(s, x * stroke_mask((40, 50), ends, 0.08))  # the width matters here


def test_composition_refuses_stages_out_of_order_or_repeated_and_reports_mixed_levels():
    """Robust StyleGAN eq. 16 applies U, N, A, P in that order, each at most once."""
    for stages in ((Denoise(), Upsample()), (Inpaint(), Deartifact()), (Denoise(), Denoise()),
                   (Upsample(), Denoise(), Upsample())):
        with pytest.raises(InputError, match="in the order U, N, A, P"):
            Composition(stages)
    assert Composition((Upsample("S"), Denoise("S"))).level == "S"
    assert Composition((Upsample("S"), Denoise("M"))).level == "mixed"


def test_one_known_mask_serves_a_whole_batch():
    """known_mask takes a mask of the batch's size or a single (1, 1, H, W) one for every image; the
    surrogate then multiplies each image by it."""
    x = torch.rand(3, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    m = torch.zeros(1, 1, 4, 5)
    m[..., :2, :] = 1
    assert Inpaint().known_mask({"mask": m}, x) is m
    torch.testing.assert_close(Inpaint().surrogate(x, {"mask": m}), x * m)
    with pytest.raises(InputError, match="expected a mask of shape"):
        Inpaint().known_mask({"mask": torch.ones(2, 1, 4, 5)}, x)


def test_inpainting_mask_of_a_composition_without_stage_params_is_none():
    """Without a 'stages' list there is no mask to read (the composition's surrogate reports it): None,
    not an error about the whole parameters, nor the first stage's entry read as the inpainting one."""
    from genrestore.degrade.tasks import inpainting_mask

    x = torch.zeros(1, 3, 4, 4)
    for params in ({}, None, {"stages": None}, {"mask": torch.ones(1, 1, 4, 4)}):
        assert inpainting_mask(get_task("NP"), params, x) is None
    m = torch.ones(1, 1, 4, 4)
    assert inpainting_mask(get_task("UNAP"), {"stages": [{"filter": ["bicubic"]}, {}, {}, {"mask": m}]}, x) is m


def test_composition_surrogate_refuses_params_of_too_few_stages():
    """Params with fewer 'stages' entries than tasks (another composition's) are refused, not zipped
    short so that the last stages (here the inpainting mask) are silently skipped."""
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with pytest.raises(InputError, match="one 'stages' entry per task \\(2\\)"):
        get_task("NP").surrogate(x, {"stages": [{}]})
    with pytest.raises(InputError, match="one 'stages' entry per task \\(2\\)"):
        get_task("AP").surrogate(x, {"stages": [{}, {"mask": torch.ones(1, 1, 8, 8)}, {}]})


# --- found by mutating the code (helper-72) ---


def test_denoise_surrogate_output_is_clamped_with_the_surrogate_gradient():
    """Robust StyleGAN eq. 10-11: the true degradation ends in a clamp to [0, 1], so the surrogate does too,
    with the clamp's sigmoid surrogate gradient: at XL (lambda = 6) near-white pixels overshoot 1 before the
    clamp, and after it they are exactly 1 and still pass a gradient (2 s (1 - s) > 0, not the clamp's 0)."""
    t = Denoise("XL")
    x = torch.full((1, 3, 32, 32), 0.95, dtype=torch.float64, requires_grad=True)
    s = t.surrogate(x, None, torch.Generator().manual_seed(3))
    assert s.min() >= 0 and s.max() == 1
    saturated = s.detach() == 1
    assert saturated.float().mean() > 0.1
    s.sum().backward()
    assert (x.grad[saturated] > 0).all()
