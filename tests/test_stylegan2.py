"""StyleGAN2 generator: W / W+ / W++ styles, determinism, converters (rosinality, restricted ADA pickles)."""

from __future__ import annotations

import argparse
import collections
import math
import pickle
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TOL

from genrestore._checks import InputError
from genrestore.models.stylegan2 import StyleGAN2Generator, fir_kernel, load_stylegan2
from genrestore.models.stylegan2_convert import (Inert, PersistentObject, ada_to_stylegan2, convert_stylegan2,
                                                 read_ada_pickle, rosinality_to_stylegan2)

TINY = {"z_dim": 8, "w_dim": 8, "resolution": 16, "channel_base": 128, "channel_max": 16, "n_mapping_layers": 2}


def tiny(seed: int = 0, **kw) -> StyleGAN2Generator:
    g = StyleGAN2Generator(**{**TINY, **kw}, generator=torch.Generator().manual_seed(seed)).eval()
    with torch.no_grad():  # non-zero noise strengths and biases, so noise and bias paths are exercised
        gen = torch.Generator().manual_seed(seed + 1)
        for name, p in g.named_parameters():
            if name.endswith(("noise_strength", ".bias")) and "mapping" not in name and "affine" not in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
        g.mapping.w_avg.copy_(torch.randn(g.w_dim, generator=gen))
    return g


def test_layout_and_config():
    g = tiny()
    assert g.num_ws == 6 and g.resolution == 16 and g.config["arch"] == "stylegan2"
    assert g.style_names == ["b4.conv1", "b4.torgb", "b8.conv0", "b8.conv1", "b8.torgb", "b16.conv0", "b16.conv1",
                             "b16.torgb"]
    assert g.style_w_index == [0, 1, 1, 2, 3, 3, 4, 5]  # NVIDIA: torgb shares the next conv0's index
    assert g.style_channels == [16, 16, 16, 16, 16, 16, 8, 8]
    keys = set(g.state_dict())
    assert {"mapping.fc0.weight", "mapping.w_avg", "synthesis.b4.const", "synthesis.b8.conv0.affine.weight",
            "synthesis.b8.conv0.noise_const", "synthesis.b16.torgb.weight"} <= keys
    assert not any("resample_filter" in k for k in keys)
    import json

    assert json.loads(json.dumps(g.config)) == g.config


def test_w_wplus_wpp_identical():
    g = tiny()
    w = g.map(torch.randn(2, 8, generator=torch.Generator().manual_seed(3)))
    ws = g.w_to_wplus(w)
    with torch.no_grad():
        a = g.generate(w=w, clamp=False)
        b = g.generate(ws=ws, clamp=False)
        c = g.generate(wpp=g.wplus_to_wpp(ws), clamp=False)
    torch.testing.assert_close(a, b, **TOL[torch.float32])
    torch.testing.assert_close(a, c, **TOL[torch.float32])
    for s_w, s_pp, o in zip(g.styles_from_w(w), g.styles_from_wpp(g.wplus_to_wpp(ws)), g.filter_counts):
        assert s_pp.shape == (2, o, s_w.shape[1])  # one style vector per filter
        torch.testing.assert_close(s_pp, s_w.unsqueeze(1).expand(-1, o, -1), **TOL[torch.float32])


@pytest.mark.parametrize("layer_name", ["b8.conv0", "b8.conv1", "b16.torgb"])
def test_wpp_modulates_each_filter_by_its_own_latent(layer_name):
    """RobustStyleGAN eq. 7: output channel o of a W++ layer is what the ordinary (W) modulated
    layer gives for channel o when its style is A(w_o), for every o (checked filter by filter)."""
    g = tiny()
    layer = g.synthesis.layers[g.style_names.index(layer_name)]
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, layer.in_channels, 8, 8, generator=gen)
    latents = torch.randn(2, layer.out_channels, 8, generator=gen)  # one w per filter, all different
    with torch.no_grad():
        per_filter = layer(x, layer.affine(latents), noise_mode="none")
        for o in range(layer.out_channels):
            shared = layer(x, layer.affine(latents[:, o]), noise_mode="none")  # W: one style for all filters
            torch.testing.assert_close(per_filter[:, o], shared[:, o], **TOL[torch.float32])
        assert not torch.allclose(per_filter, layer(x, layer.affine(latents[:, 0]), noise_mode="none"))


def test_wplus_indices_are_used():
    g = tiny()
    ws = torch.randn(1, g.num_ws, 8)
    base = g.generate(ws=ws)
    for i in range(g.num_ws):
        ws2 = ws.clone()
        ws2[:, i] += 1
        assert not torch.equal(g.generate(ws=ws2), base), i


def test_batch_independence_and_shape():
    g = tiny()
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = g.generate(z, truncation_psi=0.7)
        assert full.shape == (3, 3, 16, 16) and full.dtype == torch.float32
        assert full.min() >= 0 and full.max() <= 1
        for i in range(3):
            torch.testing.assert_close(g.generate(z[i:i + 1], truncation_psi=0.7), full[i:i + 1],
                                       **TOL[torch.float32])
        assert not torch.allclose(full[0], full[1])
        raw = g.generate(z, clamp=False)
        torch.testing.assert_close(raw.clamp(0, 1), g(z))


def test_noise_modes():
    g = tiny()
    z = torch.randn(2, 8)
    with torch.no_grad():
        assert torch.equal(g.generate(z, noise_mode="const"), g.generate(z, noise_mode="const"))
        r1 = g.generate(z, noise_mode="random", generator=torch.Generator().manual_seed(5))
        r2 = g.generate(z, noise_mode="random", generator=torch.Generator().manual_seed(5))
        r3 = g.generate(z, noise_mode="random", generator=torch.Generator().manual_seed(6))
        none = g.generate(z, noise_mode="none")
    assert torch.equal(r1, r2) and not torch.equal(r1, r3) and not torch.allclose(none, r1)
    with pytest.raises(InputError, match="noise_mode"):
        g.generate(z, noise_mode="fixed")


def test_truncation_psi0_gives_w_avg():
    g = tiny()
    w = g.map(torch.randn(4, 8), truncation_psi=0.0)
    torch.testing.assert_close(w, g.mapping.w_avg.expand(4, -1))
    g.estimate_w_avg(500, torch.Generator().manual_seed(0))
    z = torch.randn(500, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(g.mapping.w_avg, g.mapping(z).mean(0), atol=1e-5, rtol=1e-4)


def test_gradients_reach_wpp():
    g = tiny()
    wpp = [t.detach().requires_grad_() for t in g.wplus_to_wpp(g.w_to_wplus(g.mapping.w_avg[None]))]
    g.synthesis_from_styles(g.styles_from_wpp(wpp)).square().mean().backward()
    for t, name in zip(wpp, g.style_names):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0, name
    # each channel's latent gets its own gradient (not the repeated one)
    assert not torch.allclose(wpp[0].grad[0, 0], wpp[0].grad[0, 1])


def test_bad_inputs():
    g = tiny()
    with pytest.raises(InputError, match="exactly one"):
        g.generate(torch.randn(1, 8), w=torch.randn(1, 8))
    with pytest.raises(InputError, match=r"\(N, 6, 8\)"):
        g.generate(ws=torch.randn(1, 5, 8))
    with pytest.raises(InputError, match="W\\+\\+ latent of b4.conv1"):
        g.styles_from_wpp([torch.randn(1, 3, 8)] * 8)
    with pytest.raises(InputError, match="power of two"):
        StyleGAN2Generator(resolution=24)


def test_upsampling_conv_matches_rosinality_semantics():
    """rosinality ModulatedConv2d(upsample=True) written out: scale * weight * style, demodulate,
    conv_transpose2d (weight transposed, not flipped), Blur with kernel * 4 padded (1, 1)."""
    g = tiny()
    layer = g.synthesis.b8.conv0
    x, s = torch.randn(2, 16, 4, 4), torch.randn(2, 16)
    out = []
    for n in range(2):
        w = layer.weight / math.sqrt(16 * 9) * s[n].reshape(1, -1, 1, 1)
        w = w * (w.square().sum([1, 2, 3], keepdim=True) + 1e-8).rsqrt()
        y = F.conv_transpose2d(x[n:n + 1], w.transpose(0, 1), stride=2)
        k = (fir_kernel() * 4).expand(y.shape[1], 1, 4, 4)
        y = F.conv2d(F.pad(y, [1, 1, 1, 1]), k, groups=y.shape[1])
        out.append(F.leaky_relu(y + layer.bias.reshape(1, -1, 1, 1), 0.2) * math.sqrt(2))
    torch.testing.assert_close(layer(x, s, noise_mode="none"), torch.cat(out), atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# rosinality
# ---------------------------------------------------------------------------------------------
def to_rosinality(g: StyleGAN2Generator) -> dict[str, torch.Tensor]:
    """Our weights in rosinality's stylegan2-pytorch layout, written out independently of the loader."""
    sd = {k: v.clone() for k, v in g.state_dict().items()}
    r = {f"style.{i + 1}.{p}": sd[f"mapping.fc{i}.{p}"]
         for i in range(TINY["n_mapping_layers"]) for p in ("weight", "bias")}
    r["input.input"] = sd["synthesis.b4.const"][None]

    def conv(src: str, dst: str, up: bool) -> None:
        r[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        r[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        r[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        r[f"{dst}.noise.weight"] = sd[f"{src}.noise_strength"].reshape(1)
        r[f"{dst}.activate.bias"] = sd[f"{src}.bias"]
        if up:
            r[f"{dst}.conv.blur.kernel"] = fir_kernel() * 4

    def rgb(src: str, dst: str, up: bool) -> None:
        r[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        r[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        r[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        r[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(1, -1, 1, 1)
        if up:
            r[f"{dst}.upsample.kernel"] = fir_kernel() * 4

    conv("synthesis.b4.conv1", "conv1", False)
    rgb("synthesis.b4.torgb", "to_rgb1", False)
    r["noises.noise_0"] = sd["synthesis.b4.conv1.noise_const"][None, None]
    for j, res in enumerate((8, 16)):
        conv(f"synthesis.b{res}.conv0", f"convs.{2 * j}", True)
        conv(f"synthesis.b{res}.conv1", f"convs.{2 * j + 1}", False)
        rgb(f"synthesis.b{res}.torgb", f"to_rgbs.{j}", True)
        r[f"noises.noise_{2 * j + 1}"] = sd[f"synthesis.b{res}.conv0.noise_const"][None, None]
        r[f"noises.noise_{2 * j + 2}"] = sd[f"synthesis.b{res}.conv1.noise_const"][None, None]
    return r


def test_rosinality_round_trip(tmp_path):
    g = tiny()
    ckpt = {"g_ema": to_rosinality(g), "latent_avg": g.mapping.w_avg.clone(), "args": argparse.Namespace(size=16)}
    state, config, notes = rosinality_to_stylegan2(ckpt)
    assert config == g.config and notes == {}
    ref = g.state_dict()
    assert state.keys() == ref.keys() and all(torch.equal(state[k], ref[k]) for k in ref)
    # through a file, with argparse.Namespace in it as in train.py checkpoints
    torch.save(ckpt, tmp_path / "550000.pt")
    out = convert_stylegan2(tmp_path / "550000.pt", tmp_path / "ffhq-tiny.safetensors")
    g2 = load_stylegan2(out)
    z = torch.randn(2, 8)
    with torch.no_grad():
        torch.testing.assert_close(g2.generate(z, truncation_psi=0.5), g.generate(z, truncation_psi=0.5),
                                   rtol=0, atol=0)


@pytest.mark.parametrize("sidecar, says", [
    ("[1, 2]", "got a JSON list"),
    ('{"config": "stylegan2"}', "a 'config' of type str"),
    ("{not json", "with a 'config' entry (JSONDecodeError)"),
    ('{"config": {"z_dim": -8}}', "not a generator sidecar with a valid 'config'"),
])
def test_load_stylegan2_damaged_sidecar(tmp_path, sidecar, says):
    g = tiny()
    torch.save({"g_ema": to_rosinality(g), "latent_avg": g.mapping.w_avg.clone()}, tmp_path / "g.pt")
    out = convert_stylegan2(tmp_path / "g.pt", tmp_path / "g.safetensors")
    out.with_suffix(".json").write_text(sidecar)
    with pytest.raises(InputError, match="g.json") as e:
        load_stylegan2(out)
    assert says in str(e.value) and "\n" not in str(e.value)
    out.with_suffix(".json").unlink()
    # the CLI's way to make one, as well as the function's
    with pytest.raises(InputError, match="no g.json beside it .*`genrestore weights convert G.pkl G.safetensors`"
                                         " .*convert_stylegan2"):
        load_stylegan2(out)


def test_rosinality_without_latent_avg_and_bad_keys():
    g = tiny()
    r = to_rosinality(g)
    state, _, notes = rosinality_to_stylegan2(r, w_avg_samples=64)
    assert "w_avg" in notes and torch.isfinite(state["mapping.w_avg"]).all()
    with pytest.raises(InputError, match="unexpected keys"):
        rosinality_to_stylegan2({**r, "extra.weight": torch.zeros(1)})
    bad = dict(r)
    bad["convs.1.conv.weight"] = bad["convs.1.conv.weight"][:, :, :4]
    with pytest.raises(InputError, match="does not fit|channels"):
        rosinality_to_stylegan2(bad)


def test_rosinality_malformed_checkpoints_are_input_errors(tmp_path, capsys):
    """A missing key or a file that holds no dict is bad input: one line, exit 2 (not a KeyError)."""
    from genrestore.cli import main

    r = to_rosinality(tiny())
    cases = {"no_bias": {k: v for k, v in r.items() if k != "style.1.bias"},
             "no_modulation": {k: v for k, v in r.items() if k != "conv1.conv.modulation.weight"},
             "no_noise_weight": {k: v for k, v in r.items() if k != "convs.0.noise.weight"},
             "a_tensor": torch.zeros(3), "a_list": [1, 2]}
    for name, payload in cases.items():
        torch.save(payload, tmp_path / f"{name}.pt")
        with pytest.raises(InputError, match="rosinality"):
            convert_stylegan2(tmp_path / f"{name}.pt", tmp_path / f"{name}.safetensors")
        assert main(["weights", "convert", str(tmp_path / f"{name}.pt"), str(tmp_path / "o.safetensors")]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("genrestore: error: ") and err.count("\n") == 1, err
        assert not (tmp_path / "o.safetensors").exists()


# ---------------------------------------------------------------------------------------------
# NVIDIA StyleGAN2-ADA pickles, written here with stand-ins of NVIDIA's classes
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def fake_nvidia(monkeypatch, tmp_path):
    """Modules ``torch_utils.persistence`` and ``dnnlib.util`` with the names NVIDIA's pickles refer
    to. Their reconstruct function would create a file: the converter must never call it."""
    canary = tmp_path / "executed"
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # what NVIDIA's would do: run meta["module_src"]
        canary.write_text("ran")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util = types.ModuleType("dnnlib.util")
    EasyDict = type("EasyDict", (dict,), {"__module__": "dnnlib.util"})
    util.EasyDict = EasyDict
    for name, mod in (("torch_utils", types.ModuleType("torch_utils")), ("torch_utils.persistence", persistence),
                      ("dnnlib", types.ModuleType("dnnlib")), ("dnnlib.util", util)):
        monkeypatch.setitem(sys.modules, name, mod)

    class Persistent:
        """Pickles as torch_utils.persistence's Decorator.__reduce__ does."""

        def __init__(self, class_name, state):
            self.class_name, self.state = class_name, state

        def __reduce__(self):
            src = f"open({str(canary)!r}, 'w').write('ran')"
            meta = dict(type="class", version=6, module_src=src, class_name=self.class_name, state=self.state)
            return _reconstruct_persistent_obj, (meta,)

    return types.SimpleNamespace(Persistent=Persistent, EasyDict=EasyDict, canary=canary)


def _ada_tree(m: torch.nn.Module, nv, class_name: str, extra: dict | None = None):
    names = {"mapping": "MappingNetwork", "synthesis": "SynthesisNetwork", "affine": "FullyConnectedLayer",
             "torgb": "ToRGBLayer"}
    kids = collections.OrderedDict()
    for name, child in m.named_children():
        cls = names.get(name, "SynthesisBlock" if name.startswith("b") else "SynthesisLayer"
                        if name.startswith("conv") else "FullyConnectedLayer")
        kids[name] = _ada_tree(child, nv, cls)
    state = {"training": False, "_parameters": collections.OrderedDict(m._parameters),
             "_buffers": collections.OrderedDict(m._buffers),  # resample_filter buffers are persistent in ADA
             "_non_persistent_buffers_set": set(), "_modules": kids, "_forward_hooks": collections.OrderedDict(),
             **(extra or {})}
    return nv.Persistent(class_name, state)


def test_ada_pickle_converter(fake_nvidia, tmp_path):
    nv = fake_nvidia
    g = tiny(conv_clamp=256.0)
    kwargs = {"z_dim": 8, "c_dim": 0, "w_dim": 8, "img_resolution": 16, "img_channels": 3,
              "mapping_kwargs": nv.EasyDict(num_layers=2),
              "synthesis_kwargs": nv.EasyDict(channel_base=128, channel_max=16, num_fp16_res=0, conv_clamp=256)}
    attrs = {k: v for k, v in kwargs.items() if not k.endswith("kwargs")}
    g_ema = _ada_tree(g, nv, "Generator", {**attrs, "num_ws": 6, "_init_args": (), "_init_kwargs": kwargs})
    snap = {"G": g_ema, "D": nv.Persistent("Discriminator", {"_parameters": {}}), "G_ema": g_ema,
            "augment_pipe": None, "training_set_kwargs": nv.EasyDict(resolution=16), "cur_nimg": np.int64(4000),
            "p": np.float32(0.25)}
    path = tmp_path / "network-snapshot-000004.pkl"
    path.write_bytes(pickle.dumps(snap, protocol=4))
    data = read_ada_pickle(path)
    assert not nv.canary.exists()
    assert isinstance(data["G_ema"], PersistentObject) and data["G_ema"].class_name == "Generator"
    assert data["cur_nimg"] == 4000 and data["p"] == 0.25
    state, config, _ = ada_to_stylegan2(data)
    assert config == g.config
    ref = g.state_dict()
    assert state.keys() == ref.keys() and all(torch.equal(state[k], ref[k]) for k in ref)
    out = convert_stylegan2(path, tmp_path / "ada.safetensors")
    g2 = load_stylegan2(out)
    z = torch.randn(2, 8)
    with torch.no_grad():
        torch.testing.assert_close(g2(z), g(z), rtol=0, atol=0)
    assert not nv.canary.exists()
    # protocol 2 (bytes through _codecs.encode) reads too
    assert isinstance(read_ada_pickle(__import__("io").BytesIO(pickle.dumps(snap, protocol=2)))["G_ema"],
                      PersistentObject)


class _Evil:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return self.fn, (self.arg,)


def test_restricted_unpickler_runs_nothing(tmp_path):
    import os

    canary = tmp_path / "pwned"
    for fn, arg in ((os.system, f"touch {canary}"), (eval, f"open({str(canary)!r}, 'w')"),
                    (exec, f"open({str(canary)!r}, 'w')")):
        obj = read_ada_pickle(__import__("io").BytesIO(pickle.dumps({"G_ema": _Evil(fn, arg)})))
        assert not canary.exists()
        assert isinstance(obj["G_ema"], Inert) and obj["G_ema"]._args == (arg,)
        with pytest.raises(InputError, match="G_ema"):
            ada_to_stylegan2(obj)
    # a numpy object array would run arbitrary reduce calls: refused
    with pytest.raises(pickle.UnpicklingError):
        read_ada_pickle(__import__("io").BytesIO(pickle.dumps(np.dtype("O"))))


@pytest.mark.parametrize("up", [False, True])
def test_modulated_conv2d_gradcheck(up):
    from genrestore.models.stylegan2 import modulated_conv2d

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(2, 3, 3, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    s = torch.randn(2, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    k = fir_kernel().double()
    assert torch.autograd.gradcheck(lambda x, w, s: modulated_conv2d(x, w, s, up=up, kernel=k), (x, w, s))


def test_converting_an_empty_checkpoint_is_one_input_error(tmp_path):
    """torch.load of an empty file raises EOFError('') without a message; the converter read its
    first line and failed with an IndexError before the fix."""
    from genrestore._checks import InputError
    from genrestore.models.stylegan2_convert import convert_stylegan2

    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.pt: not loadable with weights_only=True \(EOFError\)"):
        convert_stylegan2(tmp_path / "empty.pt", tmp_path / "g.safetensors", fmt="rosinality")
