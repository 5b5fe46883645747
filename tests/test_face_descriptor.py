"""The converted face-api descriptor against face-api itself (tfjs in node), and its TF.js reader."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from genrestore.models.face_descriptor import face_descriptor, identity_similarity, to_face_input
from genrestore.models.tfjs import dequantize_state, quantized_state, read_tfjs_quantized, read_tfjs_weights

DATA = Path(__file__).parent / "data" / "face_descriptor_reference.npz"


@pytest.fixture(scope="module")
def reference():
    with np.load(DATA) as f:
        faces = torch.from_numpy(f["faces"]).permute(0, 3, 1, 2).float() / 255
        return faces, torch.from_numpy(f["descriptors"])


def test_matches_face_api_in_node(reference):
    """Reference: tests/node/face_descriptor_reference.cjs (face-api 1.7.15, tfjs 4.22 CPU backend)."""
    faces, expected = reference
    got = face_descriptor(faces)
    cos = torch.nn.functional.cosine_similarity(got, expected, dim=1)
    assert got.shape == (4, 128) and cos.min() >= 0.999
    assert (got - expected).abs().max() < 1e-5  # in fact float32 rounding: ~3e-7


def test_identity_similarity():
    with np.load(DATA) as f:
        faces = torch.from_numpy(f["faces"]).permute(0, 3, 1, 2).float() / 255
    same = identity_similarity(faces, faces)
    assert torch.allclose(same, torch.ones(4), atol=1e-5)
    other = identity_similarity(faces, faces.roll(1, 0))
    assert (other < 0.95).all()
    # a non-square crop is padded to a centred square, like face-api
    assert to_face_input(torch.rand(2, 3, 100, 60)).shape == (2, 3, 150, 150)


def _write_manifest(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, 6, dtype=np.uint8)
    b = rng.normal(size=(2, 2)).astype(np.float32)
    c = rng.normal(size=3).astype(np.float16)
    (tmp_path / "w.bin").write_bytes(a.tobytes() + b.tobytes() + c.tobytes())
    manifest = [{"paths": ["w.bin"], "weights": [
        {"name": "a", "shape": [2, 3], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
        {"name": "b", "shape": [2, 2], "dtype": "float32"},
        {"name": "c", "shape": [3], "dtype": "float32", "quantization": {"dtype": "float16"}}]}]
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    return a, b, c


def test_tfjs_reader_hand_built_manifest(tmp_path):
    a, b, c = _write_manifest(tmp_path)
    w = read_tfjs_weights(tmp_path / "m.json")
    assert np.array_equal(w["a"], (a.astype(np.float64) * 0.5 - 1.0).astype(np.float32).reshape(2, 3))
    assert np.array_equal(w["b"], b) and np.array_equal(w["c"], c.astype(np.float32))
    state = quantized_state(read_tfjs_quantized(tmp_path / "m.json"))
    assert state["a"].dtype == torch.uint8 and torch.equal(dequantize_state(state)["a"], torch.from_numpy(w["a"]))
    (tmp_path / "w.bin").write_bytes(b"\x00" * 5)
    from genrestore._checks import InputError
    with pytest.raises(InputError, match="shards end"):
        read_tfjs_weights(tmp_path / "m.json")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_live_against_node_when_available(reference, tmp_path):
    root = Path(__file__).parent / "node"
    try:
        subprocess.run(["node", "-e", "require.resolve('@vladmandic/face-api'); require.resolve('@tensorflow/tfjs')"],
                       cwd=root, check=True, capture_output=True)
    except subprocess.CalledProcessError:
        pytest.skip("npm packages @vladmandic/face-api and @tensorflow/tfjs are not installed (see tests/node/README.md)")
    faces, _ = reference
    (tmp_path / "faces.u8").write_bytes((faces * 255).round().byte().permute(0, 2, 3, 1).numpy().tobytes())
    model_dir = subprocess.run(["node", "-e", "console.log(require('path').dirname(require.resolve("
                                "'@vladmandic/face-api/package.json')) + '/model')"],
                               cwd=root, check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run(["node", str(root / "face_descriptor_reference.cjs"), model_dir, str(tmp_path / "faces.u8"), "4",
                    str(tmp_path / "d.f32")], cwd=root, check=True, capture_output=True)
    live = torch.from_numpy(np.fromfile(tmp_path / "d.f32", np.float32).reshape(4, 128))
    assert (face_descriptor(faces) - live).abs().max() < 1e-5


def test_tfjs_shard_paths_stay_beside_the_manifest(tmp_path):
    """A manifest names its shards relative to itself; '..' or an absolute path would read any file."""
    from genrestore._checks import InputError

    (tmp_path / "secret").write_bytes(bytes(range(8)))
    (tmp_path / "m").mkdir()
    for bad in ["../secret", str(tmp_path / "secret")]:
        manifest = [{"paths": [bad], "weights": [{"name": "a", "shape": [8], "dtype": "float32",
                                                 "quantization": {"dtype": "uint8", "scale": 1.0, "min": 0.0}}]}]
        (tmp_path / "m" / "model.json").write_text(json.dumps(manifest))
        with pytest.raises(InputError, match="outside"):
            read_tfjs_quantized(tmp_path / "m" / "model.json")


@pytest.mark.parametrize("entry", [
    {"name": "a", "shape": [2], "dtype": "string"},  # a dtype we do not read
    {"name": "a", "dtype": "float32"},  # no shape
    {"shape": [2], "dtype": "float32"},  # no name
    {"name": "a", "shape": [2], "dtype": "float32", "quantization": {"dtype": "uint8", "min": 0.0}},  # no scale
    {"name": "a", "shape": [-2], "dtype": "float32"},
    {"name": "a", "shape": "2", "dtype": "float32"},
])
def test_tfjs_malformed_weight_entries_are_input_errors(tmp_path, entry):
    from genrestore._checks import InputError

    (tmp_path / "w.bin").write_bytes(bytes(8))
    (tmp_path / "m.json").write_text(json.dumps([{"paths": ["w.bin"], "weights": [entry]}]))
    with pytest.raises(InputError, match="m.json"):
        read_tfjs_quantized(tmp_path / "m.json")


def test_tfjs_reader_against_the_format_spec(tmp_path):
    """read_tfjs_weights against the TF.js weights format, values computed here with numpy: a group's
    shards are concatenated in the order listed (a weight may straddle two shards); uint8 and uint16
    codes give ``q * scale + min`` computed in float64 (JS numbers) and stored as float32, with a scale
    and min that float32 cannot hold; a scalar (shape []) is one value; a zero-size weight reads
    nothing; bytes left over after a group's last weight are an error."""
    from genrestore._checks import InputError

    rng = np.random.default_rng(1)
    q8 = rng.integers(0, 256, 7, dtype=np.uint8)
    q16 = rng.integers(0, 65536, 5, dtype=np.uint16)
    f32 = rng.normal(size=3).astype(np.float32)
    scalar = np.float32(-2.75)
    blob = q8.tobytes() + b"\0" + q16.tobytes() + b"\0" + f32.tobytes() + scalar.tobytes()  # 2-byte padding
    (tmp_path / "s1.bin").write_bytes(blob[:11])  # the uint16 codes straddle the two shards
    (tmp_path / "s2.bin").write_bytes(blob[11:])
    scale8, min8, scale16, min16 = 0.1, -0.3, 1 / 3000, 0.7
    weights = [
        {"name": "q8", "shape": [7], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": scale8, "min": min8}},
        {"name": "pad", "shape": [1], "dtype": "uint8"},
        {"name": "q16", "shape": [5, 1], "dtype": "float32",
         "quantization": {"dtype": "uint16", "scale": scale16, "min": min16}},
        {"name": "pad2", "shape": [1], "dtype": "uint8"},
        {"name": "empty", "shape": [2, 0], "dtype": "float32"},
        {"name": "f32", "shape": [3], "dtype": "float32"},
        {"name": "scalar", "shape": [], "dtype": "float32"}]
    (tmp_path / "m.json").write_text(json.dumps([{"paths": ["s1.bin", "s2.bin"], "weights": weights}]))
    w = read_tfjs_weights(tmp_path / "m.json")
    assert np.array_equal(w["q8"], (q8.astype(np.float64) * scale8 + min8).astype(np.float32))
    assert not np.array_equal(w["q8"], q8.astype(np.float32) * np.float32(scale8) + np.float32(min8))  # not float32 math
    assert np.array_equal(w["q16"], (q16.astype(np.float64) * scale16 + min16).astype(np.float32).reshape(5, 1))
    assert w["empty"].shape == (2, 0) and np.array_equal(w["f32"], f32)
    assert w["scalar"].shape == () and w["scalar"] == scalar
    # lossless round trip through the stored codes: min and scale kept in float64
    state = quantized_state(read_tfjs_quantized(tmp_path / "m.json"))
    assert state["q8::min"].item() == min8 and state["q16::scale"].item() == scale16
    deq = dequantize_state(state)
    assert all(torch.equal(deq[k], torch.from_numpy(np.asarray(w[k]))) for k in ("q8", "q16", "f32"))
    (tmp_path / "s2.bin").write_bytes(blob[11:] + bytes(4))  # one float32 too many
    with pytest.raises(InputError, match="4 bytes left over"):
        read_tfjs_weights(tmp_path / "m.json")
