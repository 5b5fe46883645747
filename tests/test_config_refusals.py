"""Bad configs and options that raised a bare TypeError, OverflowError, NotImplementedError or
AttributeError (exit 1), or were accepted and failed later: each is now one InputError line
(exit 2) that names what is wrong. Found by probing the CLI with malformed sidecars and values."""

import json
import math

import pytest
import torch

from genrestore._checks import InputError

TINY_UNET = {"block_out_channels": [8, 16], "layers_per_block": 1, "norm_num_groups": 4,
             "down_block_types": ["DownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "UpBlock2D"]}


def _sidecar_model(tmp_path, config):
    """A model file whose JSON sidecar holds ``config`` (the tensors do not matter: the config fails first)."""
    from safetensors.torch import save_file

    path = tmp_path / "m.safetensors"
    save_file({"w": torch.zeros(1)}, str(path))
    path.with_suffix(".json").write_text(json.dumps({"config": config}))
    return path


@pytest.mark.parametrize("config,match", [
    (5, "a 'config' of type int"), ([1], "a 'config' of type list"), (None, "a 'config' of type NoneType")])
def test_a_sidecar_config_that_is_not_an_object(tmp_path, config, match):
    from genrestore.diffusion.model import ConditionalUNet

    with pytest.raises(InputError, match=match):
        ConditionalUNet.load(_sidecar_model(tmp_path, config))


def test_a_sidecar_without_config_or_not_an_object(tmp_path):
    from genrestore.models.checkpoint import read_sidecar

    path = _sidecar_model(tmp_path, {})
    for text, match in (('{"recipe": "x"}', "no 'config'"), ("[1, 2]", "a JSON list")):
        path.with_suffix(".json").write_text(text)
        with pytest.raises(InputError, match=match):
            read_sidecar(path)


@pytest.mark.parametrize("config,match", [
    ({"arch": ["rdn"]}, "unknown SR architecture"),
    ({"arch": {"a": 1}}, "unknown SR architecture"),
    ({"arch": "rdn", "C": 1, "D": 1, "G": 2, "G0": 4, "scale": 1e400}, "RDN scale"),
    ({"arch": "rdn", "C": 1, "D": 1, "G": 2, "G0": 4, "scale": -2}, "RDN scale as an int >= 1"),
    ({"arch": "rdn", "C": 0, "D": 1, "G": 2, "G0": 4, "scale": 2}, "RDN C"),
    ({"arch": "rrdn", "C": 1, "D": 1, "T": 1, "G": 2, "G0": 4, "beta": math.nan, "scale": 2}, "RRDN beta"),
    ({"arch": "srvgg", "upscale": 1e400}, "SRVGGNetCompact upscale"),
    ({"arch": "srvgg", "upscale": 2, "out_scale": 0.5}, "SRVGGNetCompact out_scale"),
])
def test_bad_sr_configs(config, match):
    from genrestore.models.sr import build_sr

    with pytest.raises(InputError, match=match):
        build_sr(config)


def test_good_sr_configs_keep_their_ints():
    from genrestore.models.sr import build_sr

    net = build_sr({"arch": "rdn", "C": 1, "D": 1, "G": 2, "G0": 4.0, "scale": 3})
    assert net.config == {"arch": "rdn", "C": 1, "D": 1, "G": 2, "G0": 4, "scale": 3}
    assert net(torch.rand(1, 3, 4, 5)).shape == (1, 3, 12, 15)


def test_bad_diffusion_configs():
    from genrestore.diffusion.model import ConditionalUNet
    from genrestore.diffusion.schedulers import BETA_SCHEDULES, make_scheduler

    with pytest.raises(InputError, match="beta_schedule"):
        make_scheduler("ddpm", {"beta_schedule": "bogus"})
    for bad in (5, [], ""):  # a falsy non-mapping was taken for the default schedule
        with pytest.raises(InputError, match="schedule as a mapping"):
            make_scheduler("ddim", bad)
        with pytest.raises(InputError, match="schedule as a mapping"):
            ConditionalUNet(3, schedule=bad, unet=TINY_UNET)
    with pytest.raises(InputError, match="unet arguments as a mapping"):
        ConditionalUNet(3, unet=5)
    for name in BETA_SCHEDULES:  # every accepted schedule builds all three schedulers
        for kind in ("ddpm", "ddim", "ddim_inverse"):
            assert make_scheduler(kind, {"beta_schedule": name}).config.beta_schedule == name


def test_bad_stylegan_configs():
    from genrestore.models.stylegan2 import StyleGAN2Generator

    small = dict(z_dim=8, w_dim=8, resolution=8, channel_base=32, channel_max=8, n_mapping_layers=1)
    for kwargs, match in (({"conv_clamp": "x"}, "conv_clamp"), ({"conv_clamp": -1.0}, "conv_clamp"),
                          ({"lr_multiplier": math.inf}, "lr_multiplier")):
        with pytest.raises(InputError, match=match):
            StyleGAN2Generator(**small, **kwargs)
    assert StyleGAN2Generator(**small, conv_clamp=256).config["conv_clamp"] == 256  # kept as given


def test_inversion_step_scale_bounds():
    from genrestore.restore.stylegan_inversion import MAX_STEP_SCALE, InversionConfig

    assert InversionConfig(step_scale=MAX_STEP_SCALE).phase_steps() == [150_000_000] * 3
    for bad in (1e308, math.inf, 0.0, -1.0):
        with pytest.raises(InputError, match="step_scale"):
            InversionConfig(step_scale=bad)


def test_tfjs_manifest_groups_must_hold_lists(tmp_path):
    from genrestore.models.tfjs import read_tfjs_quantized

    for text in ("[1, 2]", '[{"paths": 1, "weights": []}]', '[{"paths": [], "weights": {}}]'):
        (tmp_path / "m.json").write_text(text)
        with pytest.raises(InputError, match="'paths' and 'weights' lists"):
            read_tfjs_quantized(tmp_path / "m.json")


def _one_image(tmp_path, name="a.png", size=16):
    from genrestore.io import write_image

    write_image(tmp_path / "in" / name, torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)))
    return tmp_path / "in"


@pytest.mark.parametrize("extra,words", [
    (["--metrics", "psnr", "--ref-stats", "s.npz"], "--ref-stats: only with fid in --metrics"),
    (["--metrics", "fid", "--pfid-size", "64"], "--pfid-size: only with pfid in --metrics"),
    (["--metrics", "psnr", "--niqe-model", "m.npz"], "--niqe-model: only with niqe in --metrics"),
    (["--metrics", "psnr,ssim", "--batch-size", "4", "--autocast"], "--batch-size, --autocast: only with one of fid, kid, is, pfid in --metrics"),
    (["--steps", "3", "--tile", "0"], "--steps, --tile: only for --authenticity's restorations"),
])
def test_metrics_refuses_options_it_would_ignore(tmp_path, capsys, extra, words):
    """They were accepted and did nothing (no .npz written, no CSV, ...)."""
    from genrestore.cli import main

    d = _one_image(tmp_path)
    assert main(["metrics", str(d), str(d), *extra, "-q"]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1, err


def test_authenticity_refuses_the_comparison_options(tmp_path, capsys):
    from genrestore.cli import main

    d = _one_image(tmp_path)
    for extra in (["--csv", str(tmp_path / "a.csv")], ["--y"], ["--metrics", "fid"], ["--crop-border", "2"]):
        assert main(["metrics", str(d), "--authenticity", "idm-default", *extra, "-q"]) == 2
        assert f"{extra[0]}: only for a REF/DIST comparison" in capsys.readouterr().err
    assert not (tmp_path / "a.csv").exists()


@pytest.mark.parametrize("extra,words", [
    (["--method", "idm", "--task", "denoise"], "--task: does not apply to --method idm"),
    (["--method", "idm", "--mode", "blind", "--artifact", "x"], "--artifact, --mode: does not apply to --method idm"),
    (["--method", "inpaint", "--tile", "0"], "--tile: does not apply to --method inpaint"),
    (["--method", "stylegan-inversion", "--model", "idm-default"], "--model: does not apply"),
    (["--method", "diffgar", "--mode", "blind", "--guidance-scale", "5"], "--guidance-scale: only in --mode guided"),
    (["--method", "stylegan-inversion", "--tile", "256"], "--tile: does not apply"),  # named, at its default
    (["--method", "stylegan-inversion", "--tile-pad=16"], "--tile-pad: does not apply"),
    (["--method", "idm", "--lev", "M"], "--level: does not apply"),  # an abbreviation, as argparse takes it
    (["--method", "stylegan-inversion", "--tile-p=16"], "--tile-pad: does not apply"),  # abbreviated, at its default
])
def test_restore_refuses_options_of_other_methods(tmp_path, capsys, extra, words):
    """They were silently ignored (e.g. --task with the IDM restorer)."""
    from genrestore.cli import main

    assert main(["restore", str(_one_image(tmp_path)), "-o", str(tmp_path / "o"), *extra, "-q"]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_guidance_scale_is_bounded(tmp_path, capsys):
    """A scale of 1e308 overflowed s * (cond - uncond) into NaN and failed after sampling, at the
    write, with a message that named neither the option nor the file."""
    from genrestore.cli import main
    from genrestore.restore.diffgar import MAX_GUIDANCE_SCALE, DiffGARRestorer

    from genrestore.diffusion.model import ConditionalUNet

    model = tmp_path / "m.safetensors"
    ConditionalUNet(3, class_names=["denoise"], unet=TINY_UNET).save(model)
    assert main(["restore", str(_one_image(tmp_path)), "-o", str(tmp_path / "o"), "--method", "diffgar",
                 "--model", str(model), "--artifact", "denoise", "--guidance-scale", "1e308"]) == 2
    assert "expected guidance_scale in [0, 100], got 1e+308" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    r = DiffGARRestorer(ConditionalUNet(3, class_names=["denoise"], unet=TINY_UNET))
    assert r.sampling_args("guided", "denoise", MAX_GUIDANCE_SCALE, 1)[1] == MAX_GUIDANCE_SCALE
    assert r.sampling_args("non-blind", "denoise", 1e308, 1)[1] == 1.0  # not used there
    for bad in (1e308, -1.0, math.nan, "3"):
        with pytest.raises(InputError, match="guidance_scale"):
            r.sampling_args("guided", "denoise", bad, 1)


def test_diffgar_upscale_checks_memory_before_sampling(tmp_path, capsys, monkeypatch):
    """--upscale 1000000 tried to allocate 3 PB inside the first restoration (exit 1); like
    upscale --outscale, the output's memory is now checked up front, naming the file."""
    from genrestore import cli_sr
    from genrestore.cli import main
    from genrestore.diffusion.model import ConditionalUNet

    model = tmp_path / "m.safetensors"
    ConditionalUNet(3, class_names=["denoise"], unet=TINY_UNET).save(model)
    d = _one_image(tmp_path, size=8)
    base = ["restore", str(d), "-o", str(tmp_path / "o"), "--method", "diffgar", "--model", str(model),
            "--mode", "blind", "--steps", "1", "-q"]
    assert main([*base, "--upscale", "1000000"]) == 2
    err = capsys.readouterr().err
    assert f"{d / 'a.png'}: a 8000000x8000000 px output at --upscale 1000000 needs about 5722045.9 GiB" in err, err
    monkeypatch.setattr(cli_sr, "available_bytes", lambda device: 16 * 16 * 3 * 4 * 8 / 0.8 + 1)
    assert main([*base, "--upscale", "3"]) == 2  # 24 px: over the faked memory
    assert "output at --upscale 3 needs about" in capsys.readouterr().err
    assert main([*base, "--upscale", "2"]) == 0  # 16 px: fits
    from genrestore.io import read_image

    assert read_image(tmp_path / "o" / "a.png").shape == (1, 3, 16, 16)


@pytest.mark.parametrize("argv,words", [
    (["train", "inpaint", "--kind", "gan", "--timesteps", "4"], "--timesteps: only for --kind ddgan"),
    (["train", "inpaint", "--kind", "diffusion", "--r1-gamma", "1"], "--r1-gamma: only for --kind gan and ddgan"),
    (["train", "idm", "--pairs", "IN", "--workers", "0"], "--workers: only with --data"),
    (["train", "diffgar", "--pairs", "IN", "--level", "M"], "--level: only with --data"),  # named at its default
    (["artifacts", "IN", "--kind", "identity", "--t0", "2"], "--t0: does not apply to --kind identity"),
    (["artifacts", "IN", "--kind", "vq-replace", "--temperature", "2", "--ddpm", "x"],
     "--ddpm, --temperature: does not apply to --kind vq-replace"),
])
def test_options_a_command_would_ignore_are_refused(tmp_path, capsys, argv, words):
    """They were accepted and ignored (helper-41's review); artifacts even recorded them in the
    resume settings. Refused before anything is written."""
    from genrestore.cli import main

    d = _one_image(tmp_path)
    argv = [str(d) if a == "IN" else a for a in argv]
    if argv[0] == "train" and "--pairs" not in argv:
        argv += ["--data", str(d)]
    assert main([*argv, "-o", str(tmp_path / "o"), "-q"]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_train_transformer_has_no_unet_options(tmp_path, capsys):
    """It took --channels and --layers-per-block and ignored them; a bare --channels must not be
    read as an abbreviation of --channels-last either."""
    from genrestore.cli import main

    for extra in (["--layers-per-block", "2"], ["--channels", "64", "128"], ["--channels"]):
        with pytest.raises(SystemExit):
            main(["train", "transformer", "--data", "d", "--vq", "v", "-o", str(tmp_path / "o"), *extra])
        assert f"unrecognized arguments: {' '.join(extra)}" in capsys.readouterr().err


def test_saved_model_round_trip_and_refusals(tmp_path):
    """SavedModel on a tiny network defined here: load gives the saved weights in eval() mode; a
    config of another arch, weights with a missing or an extra key, and a long load_state_dict error
    (cut to the limit) are checked by hand; in_module_dtype casts to the module's float dtype."""
    from safetensors.torch import load_file, save_file
    from torch import nn

    from genrestore.models.checkpoint import SavedModel, in_module_dtype, state_dict_mismatch

    class Tiny(nn.Module, SavedModel):
        arch = "tiny"

        def __init__(self, width: int = 2) -> None:
            super().__init__()
            self.config = {"arch": "tiny", "width": width}
            self.lin = nn.Linear(width, 1)

    torch.manual_seed(0)
    net = Tiny(3)
    net.save(tmp_path / "t.safetensors", note="x")
    got = Tiny.load(tmp_path / "t.safetensors")
    assert not got.training and got.config == net.config and torch.equal(got.lin.weight, net.lin.weight)
    with pytest.raises(InputError, match="expected a config with arch 'tiny', got 'other'"):
        Tiny.from_config({"arch": "other", "width": 3})
    state = load_file(tmp_path / "t.safetensors")
    for bad in ({"lin.weight": state["lin.weight"]}, {**state, "extra": torch.zeros(1)}):
        save_file(bad, tmp_path / "t.safetensors")
        with pytest.raises(InputError, match="weights do not fit"):
            Tiny.load(tmp_path / "t.safetensors")
    msg = state_dict_mismatch(RuntimeError("x" * 500), limit=40)
    assert len(msg) == 40 and msg.endswith("...")
    assert in_module_dtype(net, torch.zeros(2, dtype=torch.float64)).dtype == torch.float32
