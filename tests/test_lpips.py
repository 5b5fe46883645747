"""LPIPS against the ``lpips`` package (BSD-2), built from one random state dict.

The ImageNet backbones cannot be downloaded here, and torchvision has no CPU build on these
machines, so the test gives ``lpips`` a stand-in ``torchvision.models`` whose AlexNet and
VGG16 ``features`` are written out below from torchvision's published layer lists. Both
implementations then load the same random backbone and the real shipped heads, and must agree.
"""

import sys
import types

import pytest
import torch
from torch import nn

from genrestore.metrics.lpips import LPIPS, lpips
from genrestore.weights import WeightNotFound, load_state_dict


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
