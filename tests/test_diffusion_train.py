"""IDM training loop: crops, on-the-fly degradation, AdamW + EMA, checkpoints and exact resume.

A tiny UNet (16 px, 8/16 channels), 16 px crops and 3 steps; nothing is downloaded.
"""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("diffusers")

from genrestore._checks import InputError  # noqa: E402
from genrestore._random import generator_for  # noqa: E402
from genrestore.degrade import PIPELINES  # noqa: E402
from genrestore.diffusion import ConditionalUNet  # noqa: E402
from genrestore.diffusion.train import random_crops, train_conditional  # noqa: E402

TINY_UNET = dict(sample_size=16, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                 down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2)


def tiny_net() -> ConditionalUNet:
    torch.manual_seed(0)  # test-only: weight init
    return ConditionalUNet(3, prediction_type="sample", unet=TINY_UNET)


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    return [torch.rand(3, 24, 20, generator=g), torch.rand(1, 3, 20, 28, generator=g)]


def run(images, out_dir, steps, save_every=1, calls=None, **speed):
    def degrade(x, g):
        if calls is not None:
            calls.append(1)
        return PIPELINES["idm"].degrade(x, g)
    return train_conditional(tiny_net(), images, degrade, steps=steps, batch_size=2, crop=16,
                             lr=1e-3, ema_decay=0.5, out_dir=out_dir, save_every=save_every, seed=7, **speed)


def test_random_crops_are_seeded_crops_of_the_images(images):
    a = random_crops([images[0]], 4, 16, generator_for(0, "c"))
    b = random_crops([images[0]], 4, 16, generator_for(0, "c"))
    assert a.shape == (4, 3, 16, 16) and torch.equal(a, b)
    im = images[0]
    windows = [w for y in range(9) for x in range(5) for w in (im[:, y:y + 16, x:x + 16],
                                                              im[:, y:y + 16, x:x + 16].flip(-1))]
    assert all(any(torch.equal(c, w) for w in windows) for c in a)


def test_train_saves_ema_model_and_checkpoint(images, tmp_path):
    ema = run(images, tmp_path, steps=3, save_every=2)
    saved = ConditionalUNet.load(tmp_path / "model.safetensors")
    for k, v in ema.state_dict().items():
        assert torch.equal(saved.state_dict()[k], v)
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["config"] == tiny_net().config and meta["steps"] == 3 and meta["wall_time_s"] > 0
    assert json.loads(meta["recipe"])["seed"] == 7
    from safetensors import safe_open
    with safe_open(str(tmp_path / "checkpoint.safetensors"), "pt") as f:
        rec = json.loads(f.metadata()["run"])
        keys = set(f.keys())
    assert rec["step"] == 3
    assert any(k.startswith("adamw.0.exp_avg_sq") for k in keys) and "adamw.0.step" in keys
    # the EMA moved away from the initial weights
    w0 = dict(tiny_net().named_parameters())
    name = "unet.conv_in.weight"
    assert not torch.equal(ema.state_dict()[name], w0[name])


def test_resume_equals_uninterrupted_run(images, tmp_path):
    full = run(images, tmp_path / "full", steps=3)
    run(images, tmp_path / "cut", steps=2)  # "interrupted" after step 2 (checkpoint saved)
    calls = []
    resumed = run(images, tmp_path / "cut", steps=3, calls=calls)
    assert len(calls) == 1  # it did resume: only step 3 ran (with the restored AdamW moments)
    for k, v in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k
    from safetensors.torch import load_file
    ca, cb = load_file(str(tmp_path / "full" / "checkpoint.safetensors")), \
        load_file(str(tmp_path / "cut" / "checkpoint.safetensors"))
    assert ca.keys() == cb.keys() and all(torch.equal(ca[k], cb[k]) for k in ca)


def test_resume_refuses_another_run(images, tmp_path):
    run(images, tmp_path, steps=1)
    with pytest.raises(InputError, match="another run"):
        train_conditional(tiny_net(), images, PIPELINES["idm"].degrade, steps=2, batch_size=3, crop=16,
                          out_dir=tmp_path, seed=7)


def test_resume_refuses_another_loss(images, tmp_path):
    """An MSE checkpoint (which records no loss: the default) is not continued with L1, nor back."""
    kw = dict(steps=2, batch_size=2, crop=16, lr=1e-3, ema_decay=0.5, seed=7)
    run(images, tmp_path / "mse", steps=1)
    with pytest.raises(InputError, match="'loss': \\('mse', 'l1'\\)"):
        train_conditional(tiny_net(), images, PIPELINES["idm"].degrade, out_dir=tmp_path / "mse", loss="l1", **kw)
    train_conditional(tiny_net(), images, PIPELINES["idm"].degrade, out_dir=tmp_path / "l1", loss="l1",
                      **{**kw, "steps": 1})
    with pytest.raises(InputError, match="'loss': \\('l1', 'mse'\\)"):
        train_conditional(tiny_net(), images, PIPELINES["idm"].degrade, out_dir=tmp_path / "l1", **kw)
    run(images, tmp_path / "mse", steps=2)  # the same loss resumes


def test_resume_refusal_names_the_config_entries_that_differ(images, tmp_path):
    """Not the two whole configs (a screenful for a UNet): the entry that changed, by its path."""
    run(images, tmp_path, steps=1)
    torch.manual_seed(0)  # test-only: weight init
    wider = ConditionalUNet(3, prediction_type="sample", unet={**TINY_UNET, "block_out_channels": (8, 24)})
    with pytest.raises(InputError) as e:
        train_conditional(wider, images, PIPELINES["idm"].degrade, steps=2, batch_size=2, crop=16, lr=1e-3,
                          ema_decay=0.5, out_dir=tmp_path, seed=7)
    assert "(saved vs now: {'config.unet.block_out_channels': ([8, 16], [8, 24])})" in str(e.value)


def test_rerun_with_fewer_steps_than_the_checkpoint_is_refused(images, tmp_path):
    """A checkpoint at step 3 rerun with steps=2 would save the 3-step model as "steps": 2."""
    run(images, tmp_path, steps=3)
    before = (tmp_path / "model.safetensors").read_bytes(), (tmp_path / "model.json").read_text()
    with pytest.raises(InputError, match="at step 3, past --steps 2; give --steps 3 or more"):
        run(images, tmp_path, steps=2)
    assert ((tmp_path / "model.safetensors").read_bytes(), (tmp_path / "model.json").read_text()) == before
    run(images, tmp_path, steps=3)  # the checkpoint's own step still writes the final model


def test_resume_refuses_another_process_count(images, tmp_path):
    """A checkpoint of a two-process run (its metadata records world_size 2) does not resume in one
    process: the per-process batch and the random streams would change."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    run(images, tmp_path, steps=1)
    ckpt = tmp_path / "checkpoint.safetensors"
    with safe_open(str(ckpt), "pt") as f:
        meta = json.loads(f.metadata()["run"])
    save_file(load_file(str(ckpt)), str(ckpt), metadata={"run": json.dumps({**meta, "world_size": 2})})
    with pytest.raises(InputError, match="'world_size': \\(2, 1\\)"):
        run(images, tmp_path, steps=2)


def _checkpoint_record(ckpt):
    from safetensors import safe_open
    with safe_open(str(ckpt), "pt") as f:
        return json.loads(f.metadata()["run"])


def test_resume_refuses_other_images_of_the_same_count(images, tmp_path):
    """The same number of photos, of the same sizes, is not the same data."""
    run(images, tmp_path, steps=1)
    with pytest.raises(InputError, match="'data_sha256': .*other training images than the checkpoint's"):
        run([im.flip(-1) for im in images], tmp_path, steps=2)
    assert _checkpoint_record(tmp_path / "checkpoint.safetensors")["step"] == 1


def test_resume_follows_the_data_not_its_folder(images, tmp_path):
    """A moved folder resumes, and so do its decoded images passed as tensors; a folder of other
    images with the same names, count and sizes does not."""
    import hashlib

    from genrestore.io import read_image, write_image
    for i, im in enumerate(images):
        write_image(tmp_path / "a" / f"{i}.png", im[None] if im.ndim == 3 else im)
        write_image(tmp_path / "c" / f"{i}.png", (im[None] if im.ndim == 3 else im).flip(-2))
    run(tmp_path / "a", tmp_path / "run", steps=1)
    decoded = [read_image(tmp_path / "a" / f"{i}.png")[0] for i in range(len(images))]
    h = hashlib.sha256()  # the recorded digest: each image's shape and float32 values, in order
    for im in decoded:
        h.update(f"{tuple(im.shape)}\n".encode())
        h.update(im.numpy().astype("<f4").tobytes())
    assert _checkpoint_record(tmp_path / "run" / "checkpoint.safetensors")["data_sha256"] == h.hexdigest()
    (tmp_path / "a").rename(tmp_path / "b")
    calls = []
    run(tmp_path / "b", tmp_path / "run", steps=2, calls=calls)
    run(decoded, tmp_path / "run", steps=3, calls=calls)
    assert len(calls) == 2  # both resumed: one step each
    with pytest.raises(InputError, match="other training images"):
        run(tmp_path / "c", tmp_path / "run", steps=4)


def test_checkpoint_without_a_data_digest_still_resumes(images, tmp_path):
    """Checkpoints written before the data was recorded lack data_sha256: unknown, not another run."""
    from safetensors.torch import load_file, save_file
    full = run(images, tmp_path / "full", steps=2)
    run(images, tmp_path / "old", steps=1)
    ckpt = tmp_path / "old" / "checkpoint.safetensors"
    meta = _checkpoint_record(ckpt)
    digest = meta.pop("data_sha256")
    save_file(load_file(str(ckpt)), str(ckpt), metadata={"run": json.dumps(meta)})
    calls = []
    resumed = run(images, tmp_path / "old", steps=2, calls=calls)
    assert len(calls) == 1 and all(torch.equal(v, full.state_dict()[k]) for k, v in resumed.state_dict().items())
    assert _checkpoint_record(ckpt)["data_sha256"] == digest  # recorded from now on


def test_pairs_resume_refuses_other_labels(tmp_path):
    """Pairs are data with their class labels: the same images under other classes are another run."""
    from genrestore.diffusion.train import train_conditional_pairs

    g = torch.Generator().manual_seed(1)
    clean = [torch.rand(3, 16, 16, generator=g) for _ in range(2)]
    torch.manual_seed(0)  # test-only: weight init
    net = ConditionalUNet(3, class_names=["a", "b"], prediction_type="sample", unet=TINY_UNET)
    kw = dict(batch_size=2, crop=16, out_dir=tmp_path, seed=0)
    train_conditional_pairs(net, [(c, 1 - c, i) for i, c in enumerate(clean)], 1, **kw)
    with pytest.raises(InputError, match="other training images"):
        train_conditional_pairs(net, [(c, 1 - c, 1 - i) for i, c in enumerate(clean)], 2, **kw)
    train_conditional_pairs(net, [(c, 1 - c, i) for i, c in enumerate(clean)], 2, **kw)


def test_bad_inputs(images, tmp_path):
    with pytest.raises(InputError, match="smaller than the crop"):
        train_conditional(tiny_net(), images, PIPELINES["idm"].degrade, steps=1, crop=32, out_dir=tmp_path)
    with pytest.raises(InputError, match="resized back"):
        train_conditional(tiny_net(), images, lambda x, g: x[..., :8, :8], steps=1, crop=16, out_dir=tmp_path)


def test_folder_of_images(tmp_path, images):
    from genrestore.io import write_image
    for i, im in enumerate(images):
        write_image(tmp_path / f"{i}.png", im[None] if im.ndim == 3 else im)
    ema = train_conditional(tiny_net(), tmp_path, PIPELINES["idm"].degrade, steps=1, batch_size=1, crop=16,
                            out_dir=tmp_path / "run", seed=0)
    assert (tmp_path / "run" / "model.safetensors").is_file() and not ema.training


def test_ema_warm_up_follows_the_formula():
    from genrestore.diffusion.train import ema_update

    ema, model = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        ema.weight.fill_(0.0)
        model.weight.fill_(1.0)
    ema_update(ema, model, 0.9, 0)
    assert abs(ema.weight.item() - 0.9) < 1e-7  # d = 1/10 at step 0: mostly the trained weights
    ema.weight.data.fill_(0.0)
    expected = 0.0
    for step in range(30):
        d = min(0.9, (1 + step) / (10 + step))  # 0.1, 0.18, ... then capped at 0.9
        expected = d * expected + (1 - d) * 1.0
        ema_update(ema, model, 0.9, step)
        assert abs(ema.weight.item() - expected) < 1e-6


def test_worker_processes_make_the_same_batches(images, tmp_path):
    """Batches made ahead in 2 forked workers train the same weights as batches made in this
    process, bit for bit, also across a resume; the degradations did run in the workers."""
    import os

    ref = run(images, tmp_path / "ref", steps=3).state_dict()

    def degrade(x, g):
        (tmp_path / f"pid-{os.getpid()}").touch()
        return PIPELINES["idm"].degrade(x, g)

    kw = dict(batch_size=2, crop=16, lr=1e-3, ema_decay=0.5, save_every=1, seed=7, workers=2)
    train_conditional(tiny_net(), images, degrade, steps=2, out_dir=tmp_path / "w", **kw)
    got = train_conditional(tiny_net(), images, degrade, steps=3, out_dir=tmp_path / "w", **kw).state_dict()
    assert all(torch.equal(got[k], ref[k]) for k in ref)
    pids = {int(f.name.split("-")[1]) for f in tmp_path.glob("pid-*")}
    assert pids and os.getpid() not in pids
    with pytest.raises(InputError, match="workers"):
        train_conditional(tiny_net(), images, degrade, steps=1, out_dir=tmp_path / "bad", **{**kw, "workers": -1})


@pytest.mark.parametrize("speed", [{"channels_last": True}, {"compile": "eager"}])
def test_speed_options_train_the_same_model(images, tmp_path, speed):
    """channels-last weights and a compiled forward (dynamo, eager backend here) change neither the
    checkpoint's keys nor, beyond float rounding, the trained weights."""
    ref = run(images, tmp_path / "ref", steps=2).state_dict()
    got = run(images, tmp_path / "fast", steps=2, **speed).state_dict()
    assert list(got) == list(ref)
    # Adam turns gradient rounding into steps of up to lr = 1e-3 where a gradient is ~0 (attention biases)
    assert all(torch.allclose(got[k], ref[k], atol=1e-4) for k in ref)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "fast" / "checkpoint.safetensors"), "pt") as f:
        assert not any("_orig_mod" in k for k in f.keys())
