"""Edge cases of the public Python API found by a review as a library user (helper-56): each test
states what the docstring or README promises."""

import os
import shutil

import numpy as np
import pytest
import torch

from genrestore import weights as ws
from genrestore._checks import InputError


def G(s):
    return torch.Generator().manual_seed(s)


def test_a_none_in_a_list_of_generators_is_the_global_one():
    """check_generator and per_image accept None entries ("one generator (or None) per image"), but
    the draws called g.device on them (AttributeError). A None entry draws from torch's global
    generator; the other images keep their own draws."""
    from genrestore.degrade import gaussian_noise, get_task

    x = torch.rand(2, 3, 8, 8, generator=G(7))
    assert torch.equal(gaussian_noise(x, 0.1, [None, G(0)])[1], gaussian_noise(x, 0.1, [G(9), G(0)])[1])
    for name in ("upsample", "denoise", "inpaint"):
        task = get_task(name)
        assert torch.equal(task.degrade(x, [None, G(0)])[1], task.degrade(x, [G(9), G(0)])[1]), name


def test_an_empty_batch_is_refused_by_the_samplers():
    """IDMRestorer.restore (so Inpainter.inpaint), DiffGAR and synthesize failed deep in torch
    ("cannot reshape tensor of 0 elements") on a batch of no images."""
    from genrestore.artifacts import load_generators, synthesize
    from genrestore.restore.idm import IDMRestorer

    with pytest.raises(InputError, match=r"expected at least one degraded image, got an empty batch \(0, 3, 8, 8\)"):
        IDMRestorer.from_file("idm-default").restore(torch.rand(0, 3, 8, 8), steps=1, generator=G(0))
    with pytest.raises(InputError, match="empty batch"):
        synthesize("ddim-gauss", load_generators("ddim-gauss", {}), torch.rand(0, 3, 16, 16), 0.5, G(0), ddim_steps=2)


def test_ssim_empty_batch_like_psnr():
    from genrestore.metrics import psnr, ssim
    x = torch.rand(0, 3, 16, 16)
    assert psnr(x, x).shape == (0,)
    assert ssim(x, x).shape == (0,)


def test_robust_invert_images_in_unit_range():
    from genrestore.degrade import get_task
    from genrestore.models.stylegan2 import StyleGAN2Generator
    from genrestore.restore.stylegan_inversion import InversionConfig, perceptual_loss, robust_invert
    g = StyleGAN2Generator(z_dim=8, w_dim=8, resolution=32, channel_base=64, channel_max=16,
                           n_mapping_layers=2, generator=G(0)).eval()
    with torch.no_grad():
        x = g.generate(torch.randn(2, 8, generator=G(1))).clamp(0, 1)
    task = get_task("denoise")
    y = task.degrade(x, [G(3), G(4)])
    r = robust_invert(g, y, task, config=InversionConfig(step_scale=0.01), generator=[G(5), G(6)],
                      progress=False, distance=perceptual_loss("alex"))
    for k, im in r.images.items():  # InversionResult: "Restored images (N, 3, H, W) in [0, 1]"
        assert im.min() >= 0 and im.max() <= 1, (k, im.min().item(), im.max().item())


def test_inception_score_nan_logits_refused():
    from genrestore.metrics import inception_score
    with pytest.raises(InputError):
        inception_score(torch.full((20, 10), float("nan")), splits=2)


def test_kid_seed_instead_of_generator_refused_clearly():
    from genrestore.metrics import kid
    a, b = torch.randn(30, 4), torch.randn(30, 4)
    with pytest.raises(InputError):
        kid(a, b, subsets=2, subset_size=10, generator=0)


def test_inpainter_steps_zero_refused():
    from genrestore.restore.inpaint import Inpainter
    ip = Inpainter.from_file("inpaint-diffusion")
    y, m = torch.rand(1, 3, 8, 8), torch.ones(1, 1, 8, 8)
    with pytest.raises(InputError):  # IDMRestorer refuses steps=0; here it silently runs 50 steps
        ip.inpaint(y, m, G(0), steps=0)


def test_jpeg_pillow_subsampling_checked():
    """Pillow's own values pass (4:2:2 and its codes included); anything else gave a Pillow TypeError."""
    from genrestore.degrade import jpeg_pillow

    x = torch.rand(1, 3, 16, 16)
    for ok in ("4:2:0", "4:2:2", "4:4:4", 0, 1, 2):
        jpeg_pillow(x, 50, subsampling=ok)
    for bad in ("foo", "4:1:1", 3, True):
        with pytest.raises(InputError, match="unknown chroma subsampling"):
            jpeg_pillow(x, 50, subsampling=bad)


def test_synthesize_ddim_grey_refused_clearly():
    from genrestore.artifacts import load_generators, synthesize
    gens = load_generators("ddim-gauss", {})
    with pytest.raises(InputError):
        synthesize("ddim-gauss", gens, torch.rand(1, 1, 16, 16), 0.5, G(0), ddim_steps=2)


def test_blur_empty_batch_and_4d_kernel():
    from genrestore.degrade import blur, gaussian_kernel
    k = gaussian_kernel(5, 1.0)
    assert blur(torch.rand(0, 3, 16, 16), k).shape == (0, 3, 16, 16)
    with pytest.raises(InputError):
        blur(torch.rand(2, 3, 16, 16), k[None])  # (1, 1, 5, 5)


def test_psnr_crop_border_float():
    from genrestore.metrics import psnr
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(InputError):
        psnr(x, x, crop_border=2.5)


def test_write_image_unknown_suffix():
    from genrestore.io import encode_image
    with pytest.raises(InputError):
        encode_image(torch.rand(1, 3, 4, 4), ".xyz")


# A second review of those fixes (helper-57): what they refused or missed.

@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("GENRESTORE_WEIGHTS", str(tmp_path / "store"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "store").mkdir()
    return tmp_path / "store"


def test_none_first_in_a_generator_list_reaches_the_diffusers_step():
    """_draw/fork handle None entries, but sample() hands the list to diffusers' randn_tensor,
    which reads generator[0].device: AttributeError (DDPM, DDIM eta>0, Inpainter ddgan/diffusion)."""
    from genrestore.restore.idm import IDMRestorer

    r = IDMRestorer.from_file("idm-default")
    y = torch.rand(2, 3, 16, 16, generator=G(1))
    out = r.restore(y, steps=2, generator=[None, G(0)])
    assert out.shape == (2, 3, 16, 16)
    assert torch.equal(out[1], r.restore(y, steps=2, generator=[G(9), G(0)])[1])


def test_an_atomically_replaced_same_size_file_with_its_mtime_kept_is_checked_again(store):
    """_INTACT is keyed by (path, size, mtime_ns): a damaged copy put in place with os.replace and
    its mtime preserved (cp -p, rsync -a, tar x) is a new inode but a cache hit, so it loads."""
    name = "rdn-small-x2"
    for suffix in (".safetensors", ".json"):
        shutil.copy(ws.PACKAGE_DIR / f"{name}{suffix}", store / f"{name}{suffix}")
    stored = store / f"{name}.safetensors"
    ws.resolve(name)  # checked and remembered
    st = stored.stat()
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    tmp = store / "tmp"
    tmp.write_bytes(bytes(data))
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, stored)
    assert stored.stat().st_ino != st.st_ino
    with pytest.raises(InputError, match="sha256"):
        ws.resolve(name)


def test_load_and_verify_agree_on_which_recorded_hash_counts(store):
    """_check_intact prefers the sidecar's sha256, verify() the registry's: a registry-pinned weight
    stored with --force (sidecar = its own hash) loads but `weights verify` calls it a mismatch;
    the pinned file under a stale sidecar is refused on load while verify says ok."""
    name = "niqe-pristine-photos"
    src = ws.PACKAGE_DIR / f"{name}.safetensors"
    from safetensors.torch import load_file, save_file

    sd = load_file(src)
    sd["mu"] = sd["mu"] + 1
    custom = store.parent / "custom.safetensors"
    save_file(sd, custom)
    ws.add(name, custom, force=True)
    ws.resolve(name)  # passes: the sidecar's hash
    assert ws.verify(name)[0], ws.verify(name)  # fails: "sha256 mismatch" against the registry


def test_crop_border_as_a_torch_int_is_still_taken():
    """psnr/ssim/PSNR took crop_border=torch.tensor(2) before 8b870fc..f107b91; now refused."""
    from genrestore.metrics import PSNR, psnr, ssim

    x, y = torch.rand(1, 3, 16, 16, generator=G(0)), torch.rand(1, 3, 16, 16, generator=G(1))
    assert psnr(x, y, crop_border=torch.tensor(2)).item() == psnr(x, y, crop_border=2).item()
    assert ssim(x, y, crop_border=torch.tensor(2)).item() == ssim(x, y, crop_border=2).item()
    PSNR(crop_border=torch.tensor(2))


def test_crop_border_as_a_numpy_unsigned_int_crops_the_right_pixels():
    """_check_crop_border accepts np.uint8 (numbers.Integral), then _crop slices [b:-b] and -np.uint8(2)
    wraps to 254: a 16 px image keeps 14 px instead of 12, a different PSNR with no error."""
    from genrestore.metrics import psnr, ssim

    x, y = torch.rand(1, 3, 16, 16, generator=G(0)), torch.rand(1, 3, 16, 16, generator=G(1))
    assert psnr(x, y, crop_border=np.uint8(2)).item() == psnr(x, y, crop_border=2).item()
    assert ssim(x, y, crop_border=np.uint8(2)).item() == ssim(x, y, crop_border=2).item()


def test_jpeg_pillow_keeps_pillows_4_2_2():
    """jpeg_pillow ("the true degradation", libjpeg via Pillow) encoded 4:2:2 before f107b91."""
    from genrestore.degrade import jpeg_pillow

    x = torch.rand(1, 3, 16, 16, generator=G(0))
    jpeg_pillow(x, 50, subsampling="4:2:2")


def test_write_image_keeps_the_formats_opencv_wrote(tmp_path):
    """write_image(a.ppm / a.jpe / a.pbm) worked before f107b91 (format from the suffix)."""
    from genrestore.io import write_image

    write_image(tmp_path / "a.ppm", torch.rand(1, 3, 4, 4))
    write_image(tmp_path / "a.jpe", torch.rand(1, 3, 4, 4))


def test_identity_and_vq_replace_of_an_empty_batch_still_give_an_empty_batch():
    """synthesize("identity" / "vq-replace") returned (0, 3, H, W) before f107b91; only the DDIM kinds failed."""
    from genrestore.artifacts import load_generators, synthesize

    for kind in ("identity", "vq-replace"):
        y, _ = synthesize(kind, load_generators(kind, {}), torch.rand(0, 3, 16, 16), 0.5, G(0))
        assert y.shape == (0, 3, 16, 16)
