"""Inception features, patch crops and the set-level metrics path (random Inception weights:
the real 2015-12-05 weights cannot be downloaded here)."""

import json

import numpy as np
import pytest
import torch

from genrestore import _random
from genrestore.cli import main
from genrestore.io import read_image, write_image
from genrestore.metrics.fid import InceptionFeatures, SetFeatures, collect, random_crops, set_metrics
from genrestore.models.inception import FIDInceptionV3


@pytest.fixture(scope="module", autouse=True)
def small_inputs():
    """Run the same graph at 96 px instead of 299 (16x less work on CPU); real runs use 299."""
    FIDInceptionV3.input_size = 96
    yield
    FIDInceptionV3.input_size = 299


@pytest.fixture(scope="module")
def inception():
    """Random weights with ReLU-preserving scale, so that features differ between images."""
    torch.manual_seed(0)
    model = FIDInceptionV3()
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return model


def test_parameter_count_matches_torchvision(inception):
    """torchvision's InceptionV3 has 27,161,264 parameters (its weights' published metadata) with the
    auxiliary head (1x1 conv 768->128 + BN, 5x5 conv 128->768 + BN, fc 768->1000) and 1000 classes;
    the FID graph drops the head and has 1008 classes."""
    aux = (768 * 128 + 2 * 128) + (128 * 768 * 25 + 2 * 768) + (768 * 1000 + 1000)
    assert sum(p.numel() for p in inception.parameters()) == 27_161_264 - aux + 8 * 2049


def test_outputs_and_batch_independence(inception):
    x = torch.rand(3, 3, 48, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        f, logits = inception(x)
        f1, _ = inception(x[1:2])
    assert f.shape == (3, 2048) and logits.shape == (3, 1008)
    assert (f[1:2] - f1).abs().max() < 1e-4 and (f >= 0).all()  # pool3 follows a ReLU


def test_state_dict_loading(inception):
    sd = {k: v for k, v in inception.state_dict().items() if not k.endswith("num_batches_tracked")}
    other = FIDInceptionV3()
    other.load_pytorch_fid(sd)
    assert torch.equal(other.fc.weight, inception.fc.weight)
    with pytest.raises(KeyError, match="pytorch-fid"):
        other.load_pytorch_fid({**sd, "AuxLogits.fc.weight": torch.zeros(1)})


def test_random_crops_are_slices():
    x = torch.rand(2, 3, 20, 30)
    crops = random_crops(x, 8, 3, torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    ys, xs = _random.randint(g, 6, 0, 13), _random.randint(g, 6, 0, 23)
    for k in range(6):
        assert torch.equal(crops[k], x[k // 3, :, ys[k]:ys[k] + 8, xs[k]:xs[k] + 8])


def test_random_crops_do_not_copy_the_images_count_times():
    """Patch-FID's 1000 crops per image: memory is the crops', not count copies of the image (0.8 MB x 100)."""
    x = torch.rand(1, 3, 256, 256)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        crops = random_crops(x, 16, 100, torch.Generator().manual_seed(0))
    peak = max(e.cpu_memory_usage for e in prof.key_averages())
    assert crops.shape == (100, 3, 16, 16) and peak < 4 * crops.numel() * 4 + 2**20, peak


def test_set_metrics_on_features(inception):
    ext = InceptionFeatures("cpu", batch_size=4, model=inception)
    g = torch.Generator().manual_seed(2)
    a = [torch.rand(1, 3, 40, 40, generator=g) for _ in range(4)]
    same = set_metrics(collect(ext, a), collect(ext, a), ["fid", "kid", "is"])
    assert abs(same["fid"]) < 1e-3 and abs(same["kid"]) < 1e-3 + 3 * same["kid_std"] and same["is"] >= 1.0
    b = [torch.zeros(1, 3, 40, 40)] * 4
    assert set_metrics(collect(ext, a), collect(ext, b), ["fid"])["fid"] > same["fid"] + 1e-3


def test_set_metrics_inception_score_of_a_small_set_is_not_always_one():
    """4 confident, distinct images score 4 in one split (splits of one image each scored exactly 1
    whatever the images); 200 images of 200 classes get 4 splits of 50, each scoring 50."""
    ref, dist = SetFeatures(), SetFeatures()
    ref.add(torch.rand(4, 8, generator=torch.Generator().manual_seed(0)), None)
    dist.add(torch.rand(4, 8, generator=torch.Generator().manual_seed(1)), torch.eye(4, 1008) * 100)
    out = set_metrics(ref, dist, ["is"])
    assert out["is"] == pytest.approx(4.0, rel=1e-9) and out["is_std"] == pytest.approx(0.0, abs=1e-9)
    ref, dist = SetFeatures(), SetFeatures()
    dist.add(torch.rand(200, 8), torch.eye(200, 1008) * 100)
    out = set_metrics(ref, dist, ["is"])
    assert out["is"] == pytest.approx(50.0, rel=1e-9) and out["is_std"] == pytest.approx(0.0, abs=1e-9)


def test_set_features_for_fid_only_keep_no_features_and_give_the_same_fid():
    """FID needs only the running statistics: a set that keeps no features or logits gives the
    same FID, holds nothing per image, and says so when KID or IS asks for them."""
    g = torch.Generator().manual_seed(5)
    feats = [torch.randn(6, 8, generator=g) for _ in range(4)]
    kept, lean = (SetFeatures(), SetFeatures()), (SetFeatures(keep_features=False, keep_logits=False),
                                                   SetFeatures(keep_features=False, keep_logits=False))
    for i, f in enumerate(feats):
        for pair in (kept, lean):
            pair[i % 2].add(f, torch.randn(6, 10, generator=torch.Generator().manual_seed(i)))
    assert lean[0].features == [] and lean[0].logits == [] and len(kept[0].features) == 2
    assert set_metrics(*lean, ["fid"])["fid"] == pytest.approx(set_metrics(*kept, ["fid"])["fid"], rel=1e-12)
    with pytest.raises(ValueError, match="keep_features=False"):
        set_metrics(*lean, ["kid"])
    with pytest.raises(ValueError, match="keep_logits=False"):
        set_metrics(*lean, ["is"])


def test_cli_fid_kid_is_pfid_and_ref_stats(inception, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GENRESTORE_WEIGHTS", str(tmp_path / "store"))
    torch.save(inception.state_dict(), tmp_path / "incep.pth")
    assert main(["weights", "add", "inception-fid", str(tmp_path / "incep.pth"), "--force"]) == 0
    g = torch.Generator().manual_seed(3)
    for name in ("a", "b", "c"):
        x = torch.rand(1, 3, 48, 48, generator=g)
        write_image(tmp_path / "ref" / f"{name}.png", x)
        write_image(tmp_path / "same" / f"{name}.png", x)
        write_image(tmp_path / "flat" / f"{name}.png", torch.full_like(x, 0.5))
    capsys.readouterr()
    args = ["--metrics", "fid,kid,is,pfid", "--pfid-size", "32", "--pfid-crops", "2", "--json", "-q"]
    assert main(["metrics", str(tmp_path / "ref"), str(tmp_path / "same")] + args) == 0
    same = json.loads(capsys.readouterr().out.splitlines()[-1])["summary"]
    assert abs(same["fid"]) < 1e-3 and "is" in same and "kid" in same
    assert same["kid_std"] == 0.0 and "holds all 3 pairs" in same["kid_note"]  # no spread among 3 images
    # patch-FID crops each set independently (as the paper), so identical folders do not give 0
    assert 0 <= same["pfid"] < float("inf") and same["pfid_crops"] == {"size": 32, "per_image": 2}
    assert any(w.startswith("inception-fid") for w in same["weights_used"])
    stats = tmp_path / "ref.npz"
    assert main(["metrics", str(tmp_path / "ref"), str(tmp_path / "flat"), "--metrics", "fid",
                 "--ref-stats", str(stats), "--json", "-q"]) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[-1])["summary"]
    assert stats.is_file() and first["fid"] > 1e-3
    assert main(["metrics", str(tmp_path / "ref"), str(tmp_path / "flat"), "--metrics", "fid",
                 "--ref-stats", str(stats), "--json", "-q"]) == 0
    second = json.loads(capsys.readouterr().out.splitlines()[-1])["summary"]
    assert second["ref_stats"].startswith("loaded") and abs(second["fid"] - first["fid"]) < 1e-6 * max(1, first["fid"])
    assert main(["metrics", str(tmp_path / "ref"), str(tmp_path / "flat"), "--metrics", "fid",
                 "--ref-stats", str(stats)]) == 0  # the table says where the reference came from
    assert f"fid reference statistics: loaded from {stats}" in capsys.readouterr().out
    # the statistics of ref/ were used for any REF (FID 243 for two equal folders): now refused
    assert main(["metrics", str(tmp_path / "flat"), str(tmp_path / "flat"), "--metrics", "fid",
                 "--ref-stats", str(stats)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genrestore: error: {stats}: statistics of other reference images") and err.count("\n") == 1
    with np.load(stats) as f:  # pytorch-fid's layout (mu, sigma only) records no images: loaded unchecked
        np.savez(tmp_path / "foreign.npz", mu=f["mu"], sigma=f["sigma"])
    assert main(["metrics", str(tmp_path / "flat"), str(tmp_path / "flat"), "--metrics", "fid",
                 "--ref-stats", str(tmp_path / "foreign.npz"), "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["summary"]["fid"] == pytest.approx(first["fid"])
    # --crop-border applies to the set metrics too: images equal but for an 8 px frame have FID 0 without it
    for name in ("a", "b", "c"):
        x = read_image(tmp_path / "ref" / f"{name}.png", "rgb")
        x[..., :8, :] = x[..., -8:, :] = x[..., :, :8] = x[..., :, -8:] = 0
        write_image(tmp_path / "framed" / f"{name}.png", x)
    fids = []
    for crop in ("0", "8"):
        assert main(["metrics", str(tmp_path / "ref"), str(tmp_path / "framed"), "--metrics", "fid",
                     "--crop-border", crop, "--json", "-q"]) == 0
        fids.append(json.loads(capsys.readouterr().out.splitlines()[-1])["summary"]["fid"])
    assert fids[0] > 1e-3 and abs(fids[1]) < 1e-3, fids
    # reference statistics remember their crop: another --crop-border is refused, the same one reused
    assert main(["metrics", str(tmp_path / "ref"), str(tmp_path / "framed"), "--metrics", "fid",
                 "--ref-stats", str(stats), "--crop-border", "8"]) == 2
    assert "cropped by 0 px, asked for --crop-border 8" in capsys.readouterr().err
    cropped = tmp_path / "ref8.npz"
    for _ in range(2):  # saved, then loaded
        assert main(["metrics", str(tmp_path / "ref"), str(tmp_path / "same"), "--metrics", "fid", "--crop-border",
                     "8", "--ref-stats", str(cropped), "--json", "-q"]) == 0
        assert abs(json.loads(capsys.readouterr().out.splitlines()[-1])["summary"]["fid"]) < 1e-3
    for option in ("--y", "--gray"):  # Inception takes RGB: refused, not ignored
        assert main(["metrics", str(tmp_path / "ref"), str(tmp_path / "same"), "--metrics", "psnr,fid", option]) == 2
        assert f"fid compares RGB images; drop {option}" in capsys.readouterr().err


def test_cli_fid_without_weights_names_them(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GENRESTORE_WEIGHTS", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name in ("a.png", "b.png"):
        write_image(tmp_path / "r" / name, torch.rand(1, 3, 16, 16))
        write_image(tmp_path / "d" / name, torch.rand(1, 3, 16, 16))
    assert main(["metrics", str(tmp_path / "r"), str(tmp_path / "d"), "--metrics", "fid"]) == 2
    assert "inception-fid" in capsys.readouterr().err


def test_cli_fid_and_kid_of_one_pair_are_refused_before_inception_runs(tmp_path, capsys, monkeypatch):
    """One pair failed only after Inception had read it ("feature statistics need at least 2
    samples"); it is refused up front now, also without the weights. Patch-FID takes one image."""
    monkeypatch.setenv("GENRESTORE_WEIGHTS", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_image(tmp_path / "r" / "a.png", torch.rand(1, 3, 16, 16))
    write_image(tmp_path / "d" / "a.png", torch.rand(1, 3, 16, 16))
    for metrics, words in (("fid", "FID compares sets of images and needs"),
                           ("psnr,kid,fid", "KID and FID compare sets of images and need")):
        assert main(["metrics", str(tmp_path / "r"), str(tmp_path / "d"), "--metrics", metrics]) == 2
        assert f"{words} at least 2 pairs, got 1" in capsys.readouterr().err
    assert main(["metrics", str(tmp_path / "r"), str(tmp_path / "d"), "--metrics", "pfid", "--pfid-size", "8"]) == 2
    assert "inception-fid" in capsys.readouterr().err  # past the count check, at the weights
    # the crop is checked before the weights too: 8 px patches of a 16 px image cropped by 5 px do not fit
    assert main(["metrics", str(tmp_path / "r"), str(tmp_path / "d"), "--metrics", "pfid", "--pfid-size", "8",
                 "--crop-border", "5"]) == 2
    assert "a.png: patch-FID crops of 8 px (--pfid-size) need images at least that large, got 6x6 after " \
           "--crop-border 5" in capsys.readouterr().err
    for metrics in ("pfid", "identity"):
        assert main(["metrics", str(tmp_path / "r"), str(tmp_path / "d"), "--metrics", metrics, "--crop-border",
                     "8"]) == 2
        assert "a.png: --crop-border 8 leaves nothing of a 16x16 image" in capsys.readouterr().err


def _store_inception_and_three_pairs(inception, tmp_path, monkeypatch, seed: int) -> None:
    """The test Inception in a fresh weight store, and three random 48 px pairs in ref/ and dist/."""
    monkeypatch.setenv("GENRESTORE_WEIGHTS", str(tmp_path / "store"))
    torch.save(inception.state_dict(), tmp_path / "incep.pth")
    assert main(["weights", "add", "inception-fid", str(tmp_path / "incep.pth"), "--force"]) == 0
    g = torch.Generator().manual_seed(seed)
    for name in ("a", "b", "c"):
        write_image(tmp_path / "ref" / f"{name}.png", torch.rand(1, 3, 48, 48, generator=g))
        write_image(tmp_path / "dist" / f"{name}.png", torch.rand(1, 3, 48, 48, generator=g))


def test_ref_stats_loaded_with_is_still_reports_is(inception, tmp_path, capsys, monkeypatch):
    """Review reproduction (pre-existing): --metrics fid,is with a --ref-stats file that exists
    reports FID only; IS (of DIST alone, which needs no reference) is silently missing."""
    _store_inception_and_three_pairs(inception, tmp_path, monkeypatch, seed=3)
    args = ["--metrics", "fid,is", "--ref-stats", str(tmp_path / "r.npz"), "--json", "-q"]
    capsys.readouterr()
    assert main(["metrics", str(tmp_path / "ref"), str(tmp_path / "dist")] + args) == 0
    assert "is" in json.loads(capsys.readouterr().out.splitlines()[-1])["summary"]
    assert main(["metrics", str(tmp_path / "ref"), str(tmp_path / "dist")] + args) == 0
    assert "is" in json.loads(capsys.readouterr().out.splitlines()[-1])["summary"]


def test_ref_stats_saved_before_fingerprints_are_not_trusted_for_any_reference(tmp_path):
    """Review reproduction: statistics saved by genrestore before the fingerprint (mu, sigma, count,
    crop_border; no 'reference') load for any reference images, as pytorch-fid's do, so the
    'FID 243 for two equal folders' of an existing --ref-stats file is not caught."""
    from genrestore._checks import InputError
    from genrestore.metrics.distribution import FeatureStats

    s = FeatureStats()
    s.update(torch.randn(10, 4, generator=torch.Generator().manual_seed(0)))
    s.save(tmp_path / "old.npz")  # the layout written before this change
    with pytest.raises(InputError):
        FeatureStats.load_npz(tmp_path / "old.npz", crop_border=0, reference="f" * 64)


def test_ref_stats_with_kid_and_pfid_is_loaded_on_the_second_run(inception, tmp_path, capsys, monkeypatch):
    """Run as a user: `--metrics fid,kid,pfid --ref-stats FILE` saved FILE on the first run and the
    same command was refused on the second ("KID and pFID need the images"); now FID comes from
    FILE, KID and pFID from the images read as before, with the first run's values."""
    _store_inception_and_three_pairs(inception, tmp_path, monkeypatch, seed=4)
    args = ["metrics", str(tmp_path / "ref"), str(tmp_path / "dist"), "--metrics", "fid,kid,pfid", "--pfid-size",
            "32", "--pfid-crops", "2", "--ref-stats", str(tmp_path / "r.npz"), "--json", "-q"]
    capsys.readouterr()
    runs = []
    for _ in range(2):
        assert main(args) == 0, capsys.readouterr().err
        runs.append(json.loads(capsys.readouterr().out.splitlines()[-1])["summary"])
    assert runs[0]["ref_stats"].startswith("saved") and runs[1]["ref_stats"].startswith("loaded")
    for key in ("fid", "kid", "pfid"):
        assert runs[1][key] == pytest.approx(runs[0][key], rel=1e-6, abs=1e-9), key
