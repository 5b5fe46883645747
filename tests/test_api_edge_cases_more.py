"""More edge cases of the public Python API (io, diffusion sampling, compositions, StyleGAN2, the
face descriptor, the bench report), from a third review as a library user (helper-58)."""

import json

import pytest
import torch

from genrestore._checks import InputError

def _tiny_unet():
    from genrestore.diffusion import ConditionalUNet
    return ConditionalUNet(3, class_names=["a", "b"], unet=dict(
        sample_size=8, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))).eval()


def _run_dir(tmp_path):
    row = dict(task="denoise", level="M", method="a", image="x.png", seed=0, seconds=1.0,
               metrics={"psnr": 20.0}, higher_is_better={"psnr": True},
               images={"input": None, "output": None, "truth": None})
    (tmp_path / "results.jsonl").write_text(json.dumps(row) + "\n")
    return tmp_path


def test_write_report_refuses_to_overwrite_results(tmp_path):
    from genrestore.bench.report import write_report
    d = _run_dir(tmp_path)
    before = (d / "results.jsonl").read_text()
    with pytest.raises(InputError):
        write_report(d, out_md=d / "results.jsonl")
    assert (d / "results.jsonl").read_text() == before


def test_write_report_refuses_same_html_and_md(tmp_path):
    from genrestore.bench.report import write_report
    d = _run_dir(tmp_path)
    with pytest.raises(InputError):
        write_report(d, out_html=d / "r", out_md=d / "r")


def test_check_output_file_inputs_as_one_string(tmp_path):
    from genrestore.io import check_output_file
    f = tmp_path / "in.png"
    f.write_bytes(b"x")
    with pytest.raises(InputError):
        check_output_file(f, str(f))


def test_list_images_single_string_is_a_path(tmp_path):
    from genrestore.io import encode_image, list_images
    (tmp_path / "a.png").write_bytes(encode_image(torch.rand(1, 3, 8, 8)))
    assert list_images(str(tmp_path)) == [tmp_path / "a.png"]


def test_composition_surrogate_short_stages_does_not_skip_stages():
    from genrestore.degrade import get_task
    t = get_task("UNAP")
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(InputError):
        t.surrogate(x, {"stages": [{}]})  # today: only U is applied, N, A, P silently skipped


def test_tiled_apply_fn_changing_batch_is_an_error():
    from genrestore.io import tiled_apply
    x = torch.rand(2, 3, 37, 29)
    with pytest.raises(ValueError):
        tiled_apply(lambda t: t[:1], x, tile=12, pad=1, blend=2)  # today: image 0 broadcast to both


def test_tiled_apply_integer_identity_exact():
    from genrestore.io import tiled_apply
    x = torch.randint(0, 256, (1, 3, 30, 30), dtype=torch.uint8)
    assert torch.equal(tiled_apply(lambda t: t, x, tile=12, pad=1, blend=2), x)


def test_sample_empty_batch():
    from genrestore.diffusion import sample
    try:
        out = sample(_tiny_unet(), torch.rand(0, 3, 8, 8), steps=2)
    except InputError:
        return
    assert out.shape == (0, 3, 8, 8)


def test_sample_guidance_nan_rejected():
    from genrestore.diffusion import sample
    with pytest.raises(InputError):
        sample(_tiny_unet(), torch.rand(1, 3, 8, 8), steps=2, class_labels=torch.tensor([0]),
               guidance_scale=float("nan"))


def _gen():
    from genrestore.models.stylegan2 import StyleGAN2Generator
    return StyleGAN2Generator(z_dim=8, w_dim=8, resolution=8, channel_base=64, channel_max=8,
                              n_mapping_layers=2, generator=torch.Generator().manual_seed(0)).eval()


@pytest.mark.parametrize("kw", [dict(z=torch.randn(2, 8).double()), dict(z=torch.randn(0, 8)),
                                dict(z=torch.randn(2, 8), noise_mode="random", generator=5)])
def test_stylegan2_generate_bad_input_is_input_error(kw):
    g = _gen()
    try:
        g.generate(**kw)
    except InputError:
        pass
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"{type(e).__name__}: {e}")


def test_identity_similarity_float64():
    from genrestore.models.face_descriptor import identity_similarity
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    try:
        identity_similarity(x, x)
    except InputError:
        pass


@pytest.mark.parametrize("kw", [dict(max_images=2.5), dict(max_images=-1), dict(zoom=None), dict(zoom=0)])
def test_write_report_checks_max_images_and_zoom(tmp_path, kw):
    """max_images=2.5 raised TypeError from a slice, zoom=None a TypeError from a comparison."""
    from genrestore.bench.report import write_report

    with pytest.raises(InputError, match="expected max_images as an int >= 0 and zoom as an int >= 1"):
        write_report(_run_dir(tmp_path), **kw)
    assert not (tmp_path / "report.html").exists()


def test_load_sr_takes_an_upper_case_safetensors_suffix(tmp_path):
    """load_sr("x/M.SAFETENSORS") was refused as 'not .safetensors', the file being there."""
    import shutil

    from genrestore import weights as ws
    from genrestore.models.sr import load_sr, upscale

    for suffix, to in ((".safetensors", "M.SAFETENSORS"), (".json", "M.json")):
        shutil.copy(ws.PACKAGE_DIR / f"rdn-small-x2{suffix}", tmp_path / to)
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(upscale(load_sr(tmp_path / "M.SAFETENSORS"), x), upscale(load_sr("rdn-small-x2"), x))


def test_raw_errors_of_small_constructors_and_writers_are_one_line(tmp_path):
    """Each of these failed with a raw TypeError, AttributeError or shape RuntimeError."""
    from genrestore.degrade import get_task
    from genrestore.degrade.pipelines import SecondOrder
    from genrestore.degrade.tasks import Composition
    from genrestore.io import atomic_write_bytes

    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    task = get_task("inpaint")
    _, params = task.degrade_with_params(x, torch.Generator().manual_seed(1))
    assert torch.equal(task.surrogate(x, params), x * params["mask"])  # the right mask still works
    with pytest.raises(InputError, match=r"expected a mask of shape \(N or 1, 1, 16, 16\)"):
        task.surrogate(x, {"mask": torch.ones(1, 1, 8, 8)})
    with pytest.raises(InputError, match="a composition takes task objects"):
        Composition(("U", "N"))
    with pytest.raises(InputError, match="expected kernel_range as odd positive ints, got 7"):
        SecondOrder(kernel_range=7)
    with pytest.raises(InputError, match="expected bytes"):
        atomic_write_bytes(tmp_path / "a.txt", "text")
    assert not (tmp_path / "a.txt").exists()


def test_cached_constant_tensors_first_built_in_inference_mode_still_take_gradients():
    """The filter taps, resampling and DCT matrices are cached; built first under
    torch.inference_mode() they were inference tensors, and a later loss through SSIM, resize or the
    JPEG surrogate in the same process failed in backward ("Inference tensors cannot be saved")."""
    from genrestore._tensor_cache import tensor_cache
    from genrestore.degrade import jpeg_torch, resize
    from genrestore.metrics import ssim
    import sys

    from genrestore.metrics import full_reference

    resize_module, jpeg_module = sys.modules["genrestore.degrade.resize"], sys.modules["genrestore.degrade.jpeg"]
    for f in (full_reference._gaussian_window, resize_module._weights, jpeg_module._dct2_matrix):
        f.cache_clear()
    x = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ssim(x, x.flip(-1)), resize(x, (12, 12), "bicubic"), jpeg_torch(x, 50)
    leaf = x.clone().requires_grad_()
    (ssim(leaf, x.flip(-1)).sum() + resize(leaf, (12, 12), "bicubic").sum()
     + jpeg_torch(leaf, 50, rounding="surrogate").sum()).backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0
    calls = []

    @tensor_cache(2)
    def built(n):
        calls.append(n)
        return torch.ones(n)

    with torch.inference_mode():
        assert not built(3).is_inference()
    assert built(3) is built(3) and calls == [3]
