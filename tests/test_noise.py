import torch

from genrestore.degrade import (bernoulli_mask, clamp_surrogate, dead_pixels, gaussian_noise, poisson_noise,
                                poisson_noise_scaled)


def test_poisson_mean_and_variance_within_3_percent():
    """Poisson(lambda x) / lambda has mean x and variance x / lambda (1e6 samples)."""
    g = torch.Generator().manual_seed(0)
    for lam, v in ((6.0, 0.3), (96.0, 0.7)):
        x = torch.full((4, 1, 500, 500), v)
        y = poisson_noise(x, lam, g)
        assert abs(y.mean().item() / v - 1) < 0.03
        assert abs(y.var().item() / (v / lam) - 1) < 0.03
        assert torch.equal(y * lam, (y * lam).round())  # integer photon counts


def test_poisson_per_image_lambda():
    x = torch.full((2, 1, 300, 300), 0.5)
    y = poisson_noise(x, torch.tensor([4.0, 64.0]), torch.Generator().manual_seed(1))
    v = y.flatten(1).var(1)
    assert abs(v[0].item() / (0.5 / 4) - 1) < 0.05 and abs(v[1].item() / (0.5 / 64) - 1) < 0.05


def test_gaussian_noise_std_and_gray():
    g = torch.Generator().manual_seed(2)
    x = torch.zeros(2, 3, 200, 200)
    y = gaussian_noise(x, torch.tensor([0.1, 0.02]), g, gray=torch.tensor([False, True]))
    assert abs(y[0].std().item() / 0.1 - 1) < 0.02
    assert torch.equal(y[1, 0], y[1, 2]) and not torch.equal(y[0, 0], y[0, 2])


def test_bernoulli_mask_probability_and_shared_channels():
    g = torch.Generator().manual_seed(3)
    m = bernoulli_mask((2, 3, 300, 300), torch.tensor([0.04, 0.64]), g)
    assert m.shape == (2, 1, 300, 300)
    assert abs((1 - m[0]).mean().item() - 0.04) < 0.005 and abs((1 - m[1]).mean().item() - 0.64) < 0.01
    y = dead_pixels(torch.ones(1, 3, 50, 50), 0.3, torch.Generator().manual_seed(4))
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])  # one mask for all channels


def test_poisson_scaled_zero_scale_is_identity():
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(poisson_noise_scaled(x, 0.0, torch.Generator().manual_seed(0)), x)


def test_clamp_surrogate_forward_exact_gradient_sigmoid():
    x = torch.linspace(-1, 2, 31, dtype=torch.float64, requires_grad=True)
    y = clamp_surrogate(x)
    assert torch.equal(y, x.detach().clamp(0, 1))
    y.sum().backward()
    xr = x.detach().clone().requires_grad_()
    torch.sigmoid(2 * (xr - 0.5)).sum().backward()
    assert torch.allclose(x.grad, xr.grad)
    assert (x.grad > 0).all()


def test_same_seed_same_bytes_and_batch_independence():
    x = torch.rand(3, 3, 16, 16)
    gens = lambda: [torch.Generator().manual_seed(10 + i) for i in range(3)]  # noqa: E731
    a = poisson_noise(x, 12.0, gens())
    assert torch.equal(a, poisson_noise(x, 12.0, gens()))
    alone = poisson_noise(x[1:2], 12.0, [torch.Generator().manual_seed(11)])
    assert torch.equal(alone, a[1:2])


def test_poisson_scaled_gray_is_one_field_on_every_channel():
    """Real-ESRGAN's gray Poisson noise (generate_poisson_noise_pt, gray_noise): one field,
    Poisson(levels * luma) / levels - luma, expanded to the three channels; colour noise
    is drawn per channel. Reference variance of the gray field: luma / levels."""
    x = torch.rand(2, 3, 200, 200, generator=torch.Generator().manual_seed(0))
    y = poisson_noise_scaled(x, 1.0, torch.Generator().manual_seed(1), gray=torch.tensor([True, False]))
    n = y - x
    assert torch.allclose(n[0, 0], n[0, 1], atol=1e-6) and torch.allclose(n[0, 1], n[0, 2], atol=1e-6)
    assert not torch.allclose(n[1, 0], n[1, 1], atol=1e-6)  # colour noise: independent channels
    luma = 0.299 * x[0, 0] + 0.587 * x[0, 1] + 0.114 * x[0, 2]
    assert abs(n[0, 0].var().item() / (luma.mean().item() / 256) - 1) < 0.05


# --- boundaries and defaults that only hand-made cases pin (found by mutating the code, helper-43) ---


def test_poisson_scaled_gray_uses_bt601_luma():
    """Grey Poisson noise of pure red at scale 1 draws Poisson(0.299 * 256) counts: every value of
    (y - x) * 256 + 0.299 * 256 is a whole number (other luma weights would not give one)."""
    from genrestore.degrade import poisson_noise_scaled

    x = torch.zeros(1, 3, 32, 32)
    x[:, 0] = 1.0
    y = poisson_noise_scaled(x, 1.0, torch.Generator().manual_seed(0), gray=True)
    counts = (y - x)[:, 0] * 256 + 0.299 * 256
    assert torch.allclose(counts, counts.round(), atol=1e-3)


def test_poisson_scaled_levels_and_colour_source():
    """Colour Poisson noise is drawn per channel from that channel on 256 levels: a black channel
    gets none (Poisson(0) = 0), the others whole counts around 128."""
    from genrestore.degrade import poisson_noise_scaled

    x = torch.full((1, 3, 32, 32), 0.5)
    x[:, 0] = 0.0
    n = poisson_noise_scaled(x, 1.0, torch.Generator().manual_seed(0)) - x
    assert torch.equal(n[:, 0], torch.zeros_like(n[:, 0]))
    k = n[:, 1:] * 256 + 128
    assert torch.allclose(k, k.round(), atol=1e-3) and n[:, 1:].abs().sum() > 0


def test_poisson_non_integer_photons():
    """Photon counts need not be whole: y * photons is a Poisson count for photons = 2.5 too."""
    from genrestore.degrade import poisson_noise

    y = poisson_noise(torch.full((1, 1, 64, 64), 0.4), 2.5, torch.Generator().manual_seed(0))
    assert torch.allclose(y * 2.5, (y * 2.5).round(), atol=1e-4)


# --- found by mutating the code (helper-72) ---


def test_poisson_noise_refuses_zero_photons():
    """lambda must be > 0 (the division by lambda would give NaN at 0); a tiny positive lambda is fine."""
    import pytest

    from genrestore._checks import InputError

    x = torch.full((1, 1, 4, 4), 0.5)
    for bad in (0.0, torch.tensor([1.0, 0.0]).expand(2)):
        with pytest.raises(InputError, match="photons"):
            poisson_noise(x.expand(2, 1, 4, 4), bad, torch.Generator().manual_seed(0))
    assert torch.isfinite(poisson_noise(x, 1e-3, torch.Generator().manual_seed(0))).all()


def test_dead_pixel_masks_follow_the_seed():
    """The same seed gives the same dead pixels (and another seed others), per image as in a batch."""
    x = torch.ones(2, 3, 16, 16)
    gens = lambda: [torch.Generator().manual_seed(20 + i) for i in range(2)]  # noqa: E731
    with torch.random.fork_rng():  # the global RNG must not matter
        torch.manual_seed(1)
        a = dead_pixels(x, 0.5, gens())
        m = bernoulli_mask((1, 3, 16, 16), 0.5, torch.Generator().manual_seed(5))
        torch.manual_seed(2)
        b = dead_pixels(x, 0.5, gens())
        assert torch.equal(m, bernoulli_mask((1, 3, 16, 16), 0.5, torch.Generator().manual_seed(5)))
    assert torch.equal(a, b) and not torch.equal(a[0], a[1])
    assert torch.equal(dead_pixels(x[1:], 0.5, [torch.Generator().manual_seed(21)]), a[1:])
