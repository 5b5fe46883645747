"""idealo's RDN/RRDN (genrestore.models.rdn): tiny nets, the TF.js converter, and tfjs itself.

References: a NumPy interpreter of the Keras graph written here (for the converter), and
tests/node/upscalerjs_reference.cjs running @upscalerjs/models@0.9.0 on @tensorflow/tfjs 4.22.0's
pure-JS CPU backend (stored in tests/data/upscalerjs_reference.npz; made with
``python benchmarks/upscalerjs_conversion.py --write-reference ...``, see tests/node/README.md).
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TOL
from genrestore._checks import InputError
from genrestore.models.rdn import (RDN, RRDN, build_sr_net, convert_tfjs_sr, depth_to_space, load_sr_state,
                                   load_tfjs_sr)

DATA = Path(__file__).parent / "data" / "upscalerjs_reference.npz"
NODE_DIR = Path(__file__).parent / "node"
MODELS = Path(os.environ.get("GENRESTORE_UPSCALERJS_MODELS", "/tmp/sr/npm/package/models"))
# stored key -> model folder in @upscalerjs/models@0.9.0
REFERENCE = {"rdn_x2": "div2k/005-2x", "rdn_x3": "div2k/019-3x", "rdn_x4": "div2k/017-4x", "rrdn_x4": "idealo/gans"}
TINY = [{"arch": "rdn", "C": 2, "D": 2, "G": 3, "G0": 4, "scale": 2},
        {"arch": "rdn", "C": 1, "D": 3, "G": 2, "G0": 5, "scale": 3},
        {"arch": "rrdn", "C": 2, "D": 2, "T": 2, "G": 3, "G0": 4, "beta": 0.2, "scale": 3}]


def _has_models() -> bool:
    return all((MODELS / rel / "model.json").is_file() for rel in REFERENCE.values())


needs_models = pytest.mark.skipif(not _has_models(), reason=f"@upscalerjs/models@0.9.0 not unpacked at {MODELS} "
                                  "(set GENRESTORE_UPSCALERJS_MODELS to its models/ folder)")


def _tiny(config, seed=0):
    with torch.random.fork_rng():  # the modules' default init, seeded without touching the global RNG
        torch.manual_seed(seed)
        return build_sr_net(config).eval()


# ---- (a) tiny random nets --------------------------------------------------------------------------

@pytest.mark.parametrize("config", TINY, ids=lambda c: f"{c['arch']}-x{c['scale']}")
def test_tiny_shapes_scale_batch(config, gen):
    net = _tiny(config)
    x = torch.rand(3, 3, 7, 9, generator=gen(1))
    with torch.inference_mode():
        y = net(x)
        alone = net(x[1:2])
    s = config["scale"]
    assert isinstance(net, RDN if config["arch"] == "rdn" else RRDN)
    assert net.scale == s and net.config == config and y.shape == (3, 3, 7 * s, 9 * s) and y.dtype == torch.float32
    torch.testing.assert_close(alone, y[1:2], **TOL[torch.float32])
    assert json.loads(json.dumps(net.config)) == config
    assert set(build_sr_net(json.loads(json.dumps(net.config))).state_dict()) == set(net.state_dict())


def test_tiny_float64_gradcheck(gen):
    net = _tiny({"arch": "rrdn", "C": 1, "D": 1, "T": 1, "G": 2, "G0": 2, "beta": 0.2, "scale": 2}).double()
    x = torch.rand(1, 3, 3, 4, dtype=torch.float64, generator=gen(2), requires_grad=True)
    assert torch.autograd.gradcheck(net, (x,), eps=1e-6, atol=1e-6, fast_mode=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tiny_cuda_matches_cpu(gen):
    net = _tiny(TINY[2])
    x = torch.rand(2, 3, 8, 8, generator=gen(3))
    with torch.inference_mode():
        torch.testing.assert_close(net.cuda()(x.cuda()).cpu(), net.cpu()(x), atol=1e-3, rtol=1e-3)  # TF32 convolutions


def test_bad_inputs_raise():
    net = _tiny(TINY[0])
    with pytest.raises(InputError, match=r"\(N, C, H, W\)"):
        net(torch.rand(3, 8, 8))
    from genrestore.models.sr import upscale

    with pytest.raises(InputError, match=r"in \[0, 1\]"):  # the range is checked at the public boundary
        upscale(net, torch.rand(1, 3, 8, 8) * 255)
    with pytest.raises(InputError, match="arch"):
        build_sr_net({"arch": "edsr"})
    with pytest.raises(InputError, match="bad rdn config"):
        build_sr_net({"arch": "rdn", "T": 3})


def test_depth_to_space_is_tensorflows_order():
    s, c, h, w = 3, 2, 2, 4
    x = torch.randn(1, c * s * s, h, w)
    y = depth_to_space(x, s)
    ref = torch.empty(1, c, h * s, w * s)
    for i in range(s):
        for j in range(s):
            for k in range(c):  # tf.nn.depth_to_space, NHWC: channel (i*s + j)*C + k
                ref[0, k, i::s, j::s] = x[0, (i * s + j) * c + k]
    assert torch.equal(y, ref)
    # torch's pixel_shuffle reads channel k*s*s + i*s + j: the same after reordering the channels
    perm = [(i * s + j) * c + k for k in range(c) for i in range(s) for j in range(s)]
    assert torch.equal(torch.nn.functional.pixel_shuffle(x[:, perm], s), y)
    assert not torch.equal(torch.nn.functional.pixel_shuffle(x, s), y)
    with pytest.raises(InputError, match="divisible"):
        depth_to_space(torch.randn(1, 5, 2, 2), 2)


# ---- (b) the converter on a tiny model.json written here ---------------------------------------

class _KerasWriter:
    """Writes a Keras 2 functional topology the way ISR names its layers, and a quantized shard."""

    def __init__(self, rng):
        self.layers, self.specs, self.blobs, self.channels, self.rng, self.auto = [], [], [], {}, rng, 400

    def layer(self, cls, name, config, inputs, channels):
        nodes = [[[i, 0, 0, {}] for i in inputs]] if inputs else []
        self.layers.append({"class_name": cls, "name": name, "inbound_nodes": nodes,
                            "config": {"name": name, "trainable": True, "dtype": "float32", **config}})
        self.channels[name] = channels
        return name

    def conv(self, name, filters, k, inp, quantize=True):
        cin = self.channels[inp]
        self.layer("Conv2D", name, {"filters": filters, "kernel_size": [k, k], "strides": [1, 1],
                                    "padding": "valid" if k == 1 else "same", "data_format": "channels_last",
                                    "dilation_rate": [1, 1], "activation": "linear", "use_bias": True}, [inp], filters)
        for part, shape in (("kernel", [k, k, cin, filters]), ("bias", [filters])):
            v = self.rng.normal(0, 0.5 / np.sqrt(k * k * cin), shape) if part == "kernel" else self.rng.normal(0, 0.05, shape)
            spec = {"name": f"{name}/{part}", "shape": shape, "dtype": "float32"}
            if quantize:
                lo, scale = float(v.min()), float(v.max() - v.min()) / 255
                codes = np.round((v - lo) / scale).astype(np.uint8)
                spec["quantization"] = {"dtype": "uint8", "min": lo, "scale": scale, "original_dtype": "float32"}
                self.blobs.append(codes.tobytes())
            else:
                self.blobs.append(v.astype(np.float32).tobytes())
            self.specs.append(spec)
        return name

    def relu(self, inp):
        return self.layer("Activation", f"{inp}_Relu", {"activation": "relu"}, [inp], self.channels[inp])

    def concat(self, name, inputs):
        return self.layer("Concatenate", name, {"axis": 3}, inputs, sum(self.channels[i] for i in inputs))

    def add(self, name, inputs):
        return self.layer("Add", name, {}, inputs, self.channels[inputs[0]])

    def beta(self, inp, beta):
        self.auto += 1
        return self.layer("MultiplyBeta", f"multiply_beta_{self.auto}", {"beta": beta}, [inp], self.channels[inp])

    def rdb(self, tag, inp, C, G, G0, lff_k):
        feats = inp
        for c in range(1, C + 1):
            f = self.relu(self.conv(f"F_{tag}_{c}", G, 3, feats))
            feats = self.concat(f"RDB_Concat_{tag}_{c}", [feats, f])
        return self.conv(f"LFF_{tag}", G0, lff_k, feats)

    def save(self, folder, inp):
        model = {"format": "layers-model", "modelTopology": {"keras_version": "2.4.0", "backend": "tensorflow",
                 "model_config": {"class_name": "Model", "config": {
                     "name": "tiny", "layers": self.layers, "input_layers": [[inp, 0, 0]],
                     "output_layers": [["SR", 0, 0]]}}},
                 "weightsManifest": [{"paths": ["group1-shard1of1.bin"], "weights": self.specs}]}
        (folder / "group1-shard1of1.bin").write_bytes(b"".join(self.blobs))
        (folder / "model.json").write_text(json.dumps(model))
        return folder / "model.json"


def _write_tiny(folder, config, seed=0):
    k = _KerasWriter(np.random.default_rng(seed))
    C, D, G, G0, s = (config[n] for n in ("C", "D", "G", "G0", "scale"))
    if config["arch"] == "rdn":
        inp = k.layer("InputLayer", "LR", {"batch_input_shape": [None, None, None, 3]}, [], 3)
        k.conv("F_0", G0, 3, k.conv("F_m1", G0, 3, inp))
        h, lrls = "F_0", []
        for d in range(1, D + 1):
            h = k.add(f"LRL_{d}", [k.rdb(str(d), h, C, G, G0, 1), h])
            lrls.append(h)
        k.conv("GFF_2", G0, 3, k.conv("GFF_1", G0, 1, k.concat("LRLs_Concat", lrls)))
        k.add("FDF", ["GFF_2", "F_m1"])
        h = k.relu(k.conv("UPN2", 32, 3, k.relu(k.conv("UPN1", 64, 5, "FDF"))))
        k.layer("UpSampling2D", "UPsample", {"size": [s, s], "data_format": "channels_last", "interpolation": "nearest"},
                [k.conv("UPN3", 3 * s * s, 3, h)], 3 * s * s)
        k.conv("SR", 3, 3, "UPsample", quantize=False)
        return k.save(folder, inp)
    inp = k.layer("InputLayer", "LR_input", {"batch_input_shape": [None, None, None, 3]}, [], 3)
    h = k.conv("Pre_blocks_conv", G0, 3, inp)
    for t in range(1, config["T"] + 1):
        r = h
        for d in range(1, D + 1):
            r = k.add(f"LRL_{t}_{d}", [r, k.beta(k.rdb(f"{t}_{d}", r, C, G, G0, 3), config["beta"])])
        h = k.add(f"RRDB_{t}_out", [h, k.beta(r, config["beta"])])
    k.add("GRL", [k.conv("post_blocks_conv", G0, 3, h), "Pre_blocks_conv"])
    k.layer("PixelShuffle", "pixel_shuffle_3", {"scale": s}, [k.conv("PreShuffle", 3 * s * s, 3, "GRL")], 3)
    k.conv("SR", 3, 3, "pixel_shuffle_3", quantize=False)
    return k.save(folder, inp)


def _keras_forward(model_json: Path, x: np.ndarray) -> np.ndarray:
    """Runs a model.json by hand in NumPy float64, NHWC, layer after layer."""
    model = json.loads(model_json.read_text())
    blob = (model_json.parent / "group1-shard1of1.bin").read_bytes()
    weights, offset = {}, 0
    for spec in model["weightsManifest"][0]["weights"]:
        q, count = spec.get("quantization"), int(np.prod(spec["shape"]))
        if q:  # tfjs: q * scale + min, stored as float32
            codes = np.frombuffer(blob, np.uint8, count, offset)
            v, offset = (codes * q["scale"] + q["min"]).astype(np.float32), offset + count
        else:
            v, offset = np.frombuffer(blob, np.float32, count, offset), offset + 4 * count
        weights[spec["name"]] = v.reshape(spec["shape"]).astype(np.float64)
    out = {}
    for layer in model["modelTopology"]["model_config"]["config"]["layers"]:
        cls, name, cfg = layer["class_name"], layer["name"], layer["config"]
        ins = [out[n[0]] for n in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else [x]
        if cls == "Conv2D":
            kern, p = weights[f"{name}/kernel"], cfg["kernel_size"][0] // 2
            a = np.pad(ins[0], ((0, 0), (p, p), (p, p), (0, 0)))
            h, w = ins[0].shape[1:3]
            y = sum(a[:, i:i + h, j:j + w] @ kern[i, j] for i in range(kern.shape[0]) for j in range(kern.shape[1]))
            out[name] = y + weights[f"{name}/bias"]
        elif cls == "Activation":
            out[name] = np.maximum(ins[0], 0)
        elif cls == "Concatenate":
            out[name] = np.concatenate(ins, -1)
        elif cls == "Add":
            out[name] = sum(ins)
        elif cls == "MultiplyBeta":
            out[name] = ins[0] * cfg["beta"]
        elif cls == "UpSampling2D":
            out[name] = ins[0].repeat(cfg["size"][0], 1).repeat(cfg["size"][1], 2)
        elif cls == "PixelShuffle":  # tf.nn.depth_to_space, NHWC
            s, (n, h, w, cin) = cfg["scale"], ins[0].shape
            c = cin // (s * s)
            y = np.empty((n, h * s, w * s, c))
            for i in range(s):
                for j in range(s):
                    y[:, i::s, j::s] = ins[0][..., (i * s + j) * c:(i * s + j + 1) * c]
            out[name] = y
        else:
            out[name] = ins[0]
    return out["SR"]


@pytest.mark.parametrize("config", [TINY[0], TINY[2]], ids=["rdn", "rrdn"])
def test_converter_round_trip_against_hand_forward(config, tmp_path, gen):
    path = _write_tiny(tmp_path, config)
    state, derived = convert_tfjs_sr(path)
    assert derived == config
    w = state["rdbs.0.convs.0.weight" if config["arch"] == "rdn" else "rrdbs.0.0.convs.0.weight"]
    assert w.dtype == torch.uint8 and w.shape == (config["G"], config["G0"], 3, 3)
    assert state["sr.bias"].dtype == torch.float32 and "sr.bias::scale" not in state  # stored unquantized
    assert all(state[f"{k}::scale"].dtype == torch.float64 for k in state if f"{k}::scale" in state)
    net = load_sr_state(build_sr_net(derived), state).eval()
    x = torch.rand(2, 3, 5, 6, generator=gen(4))
    with torch.inference_mode():
        ours = net(x).double()
    ref = torch.from_numpy(_keras_forward(path, x.permute(0, 2, 3, 1).double().numpy())).permute(0, 3, 1, 2)
    torch.testing.assert_close(ours, ref, **TOL[torch.float32])
    # strict loading: a missing tensor is refused
    state.pop("sr.weight")
    with pytest.raises(InputError, match="missing"):
        load_sr_state(build_sr_net(derived), state)


def _edit(path: Path, fn) -> None:
    model = json.loads(path.read_text())
    fn(model)
    path.write_text(json.dumps(model))


def test_converter_refuses_what_it_does_not_understand(tmp_path):
    layers = lambda m: m["modelTopology"]["model_config"]["config"]["layers"]  # noqa: E731
    path = _write_tiny(tmp_path, TINY[2])

    def rename_class(m):
        layers(m)[3]["class_name"] = "LeakyReLU"
    _edit(path, rename_class)
    with pytest.raises(InputError, match="unknown layer class 'LeakyReLU'"):
        convert_tfjs_sr(path)

    path = _write_tiny(tmp_path, TINY[2])

    def rewire(m):  # a dense block conv reading the wrong tensor
        next(la for la in layers(m) if la["name"] == "F_1_1_2")["inbound_nodes"][0][0][0] = "Pre_blocks_conv"
    _edit(path, rewire)
    with pytest.raises(InputError, match="topology differs .* at layer 'F_1_1_2'"):
        convert_tfjs_sr(path)

    path = _write_tiny(tmp_path, TINY[0])

    def strided(m):
        next(la for la in layers(m) if la["name"] == "F_0")["config"]["strides"] = [2, 2]
    _edit(path, strided)
    with pytest.raises(InputError, match="unsupported Conv2D"):
        convert_tfjs_sr(path)

    path = _write_tiny(tmp_path, TINY[0])

    def transposed(m):  # same byte count, Keras shape (3, 3, 3, 4) written as (3, 3, 4, 3)
        m["weightsManifest"][0]["weights"][0]["shape"] = [3, 3, 4, 3]
    _edit(path, transposed)
    with pytest.raises(InputError, match=r"'F_m1/kernel' has shape \[3, 3, 4, 3\], expected \[3, 3, 3, 4\]"):
        convert_tfjs_sr(path)

    path = _write_tiny(tmp_path, TINY[0])
    _edit(path, lambda m: m["weightsManifest"][0]["weights"].pop())
    with pytest.raises(InputError):
        convert_tfjs_sr(path)
    _edit(path, lambda m: m["modelTopology"]["model_config"]["config"].pop("layers"))
    with pytest.raises(InputError, match="malformed Keras topology"):
        convert_tfjs_sr(path)
    (tmp_path / "model.json").write_text("{}")
    with pytest.raises(InputError, match="layers model.json"):
        convert_tfjs_sr(tmp_path / "model.json")


# ---- (c) the real models against tfjs's stored outputs ---------------------------------------

@pytest.fixture(scope="module")
def reference():
    with np.load(DATA) as f:
        return {k: f[k] for k in f.files}


def test_reference_file_is_complete(reference):
    assert reference["inputs"].dtype == np.uint8 and reference["inputs"].shape == (2, 24, 24, 3)
    for key in REFERENCE:
        s = int(key[-1])
        assert reference[key].shape == (2, 24 * s, 24 * s, 3) and reference[key].dtype == np.float16


@needs_models
@pytest.mark.parametrize("key", list(REFERENCE))
def test_real_model_matches_tfjs(key, reference):
    """Reference: upscalerjs_reference.cjs (tfjs 4.22 CPU) on 24x24 crops of two photos / 4 (Pillow bicubic)."""
    net = load_tfjs_sr(MODELS / REFERENCE[key] / "model.json")
    x = torch.from_numpy(reference["inputs"]).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        ours = net(x).permute(0, 2, 3, 1)
    diff = (ours - torch.from_numpy(reference[key]).float()).abs().max().item()
    assert diff <= 2 / 255
    assert diff < 1e-3  # in fact the float16 storage: at most 2.4e-4 (half a float16 step at 1)


@needs_models
def test_real_configs_derived_from_topology():
    assert convert_tfjs_sr(MODELS / "div2k/019-3x/model.json")[1] == {"arch": "rdn", "C": 3, "D": 10, "G": 64,
                                                                        "G0": 64, "scale": 3}
    assert convert_tfjs_sr(MODELS / "idealo/gans/model.json")[1] == {"arch": "rrdn", "C": 4, "D": 3, "T": 10,
                                                                       "G": 32, "G0": 32, "beta": 0.2, "scale": 4}


# ---- (d) live: tfjs in node, when installed ----------------------------------------------------

def _node_ready() -> bool:
    if shutil.which("node") is None:
        return False
    return subprocess.run(["node", "-e", "require.resolve('@tensorflow/tfjs')"], cwd=NODE_DIR,
                          capture_output=True).returncode == 0


@needs_models
@pytest.mark.skipif(not _node_ready(), reason="node or @tensorflow/tfjs@4.22.0 is missing (see tests/node/README.md)")
def test_live_against_tfjs_in_node(reference, tmp_path):
    """The RRDN (custom layers MultiplyBeta and PixelShuffle) on one 12x16 crop, float32 both sides."""
    x = (reference["inputs"][:1, 6:18, 4:20].astype(np.float32) / 255)
    (tmp_path / "x.f32").write_bytes(x.tobytes())
    subprocess.run(["node", str(NODE_DIR / "upscalerjs_reference.cjs"), str(MODELS / "idealo/gans/model.json"),
                    str(tmp_path / "x.f32"), "1", "12", "16", str(tmp_path / "y.f32")],
                   cwd=NODE_DIR, check=True, capture_output=True)
    live = torch.from_numpy(np.fromfile(tmp_path / "y.f32", np.float32).reshape(1, 48, 64, 3))
    net = load_tfjs_sr(MODELS / "idealo/gans/model.json")
    with torch.inference_mode():
        ours = net(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    assert (ours - live).abs().max() < 1e-5  # float32 rounding: ~5e-7


# ---- (c') the weights genrestore ships, by name, against the same node outputs ------------------

SHIPPED = {"rdn_x2": "rdn-x2", "rdn_x3": "rdn-x3", "rdn_x4": "rdn-x4", "rrdn_x4": "rrdn-x4"}


@pytest.mark.parametrize("key", list(SHIPPED))
def test_shipped_weights_match_tfjs(key, reference):
    """The shipped safetensors (uint8 codes as published), loaded by name, against tfjs 4.22 in node."""
    from genrestore.models.sr import load_sr

    net = load_sr(SHIPPED[key])
    x = torch.from_numpy(reference["inputs"]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        ours = net(x).permute(0, 2, 3, 1)
    assert net.scale == int(key[-1])
    assert (ours - torch.from_numpy(reference[key]).float()).abs().max().item() < 1e-3  # <= 2/255 asked
