"""A new user's walk through the Python API (helper-75, 2026-12-08): calls that a user of
BasicSR, diffusers or pyiqa would write, which raised from deep inside torch or gave a tensor
that later broke their code. Each test failed before its fix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genrestore._checks import InputError

X = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
Y = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
TINY_UNET = dict(sample_size=8, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                 down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))


def _gens():
    return [torch.Generator().manual_seed(10), torch.Generator().manual_seed(11)]


def _restorer_outputs():
    """name -> a call giving that entry point's output on X (tiny networks, or a shipped one)."""
    from genrestore.diffusion import ConditionalUNet, ddim_decode, ddim_invert, sample
    from genrestore.restore.diffgar import DIFFGAR_CLASSES, DiffGARRestorer
    from genrestore.restore.idm import IDMRestorer
    from genrestore.restore.inpaint import Inpainter

    def net(**kw):
        torch.manual_seed(0)
        return ConditionalUNet(3, unet=TINY_UNET, **kw).eval()

    mask = torch.ones(2, 1, 16, 16)
    mask[..., 4:10, 4:10] = 0
    eps = lambda x, t: torch.zeros_like(x)  # noqa: E731
    return {
        "IDMRestorer.restore": lambda: IDMRestorer(net(prediction_type="sample")).restore(X, 2, _gens()),
        "DiffGARRestorer.restore": lambda: DiffGARRestorer(net(class_names=DIFFGAR_CLASSES)).restore(
            X, "guided", "denoise", steps=2, generator=_gens()),
        "Inpainter.inpaint": lambda: Inpainter.from_file("inpaint-gan").inpaint(X, mask, generator=_gens()),
        "diffusion.sample": lambda: sample(net(), X, steps=2, generator=_gens()),
        "diffusion.ddim_invert": lambda: ddim_invert(eps, X * 2 - 1, 2, t0=10),
        "diffusion.ddim_decode": lambda: ddim_decode(eps, X * 2 - 1, 2, t0=10),
    }


@pytest.mark.parametrize("name", sorted(_restorer_outputs()))
def test_restored_images_can_be_training_targets_and_edited_in_place(name):
    """They were inference tensors (``torch.inference_mode``): ``F.mse_loss(net(y), restored)``
    raised "Inference tensors cannot be saved for backward", and ``restored.clamp_()`` raised
    too, as ``upscale``'s outputs never did."""
    target = _restorer_outputs()[name]()
    assert not torch.is_inference(target) and not target.requires_grad
    pred = torch.zeros_like(target, requires_grad=True)
    F.mse_loss(pred, target).backward()
    torch.testing.assert_close(pred.grad, -2 * target / target.numel())  # d/dp mean((p - t)^2) at p = 0
    target.clamp_(0, 0.5)  # in place, as users post-process
    assert float(target.max()) <= 0.5


def test_feature_scores_can_be_summed_in_place():
    """InceptionFeatures gave inference tensors: ``feats += ...`` or ``feats.div_(norm)`` raised
    "Inplace update to inference tensor outside InferenceMode"."""
    from genrestore.metrics.fid import InceptionFeatures

    class MeanColour(torch.nn.Module):  # a stand-in network: features are each image's mean colour
        def forward(self, x):
            return x.mean(dim=(2, 3)), None

    feats, logits = InceptionFeatures(model=MeanColour())(X)
    assert logits is None and not torch.is_inference(feats)
    feats += 1
    torch.testing.assert_close(feats, X.mean(dim=(2, 3)) + 1)


@pytest.mark.real_weights
@pytest.mark.skipif(not __import__("genrestore.weights", fromlist=["find"]).find("alexnet-torchvision"),
                    reason="needs the AlexNet trunk: genrestore weights install alexnet-torchvision")
def test_lpips_scores_can_be_summed_in_place():
    from genrestore.metrics.lpips import lpips

    x, y = F.interpolate(X, size=32), F.interpolate(Y, size=32)  # AlexNet's taps need 31 px
    scores = lpips(x, y)
    total = scores.clone()
    scores += lpips(y, x)  # raised "Inplace update to inference tensor outside InferenceMode"
    torch.testing.assert_close(scores, 2 * total)  # LPIPS is symmetric


def test_detection_of_a_network_output_that_requires_grad():
    """A GAN-SR output from a network called without ``torch.no_grad()`` requires grad:
    ``detect_artifacts`` raised "Can't call numpy() on Tensor that requires grad"."""
    from genrestore.detect import detect_artifacts, regions

    gan = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    mse = torch.full((1, 3, 32, 32), 0.5)
    mse[..., :16, :] = gan[..., :16, :]  # same texture above, flat below: D drops below the threshold there
    found = detect_artifacts(gan.clone().requires_grad_(), mse.clone().requires_grad_(), scale=1, min_area_x4=16)
    plain = detect_artifacts(gan, mse, scale=1, min_area_x4=16)
    assert torch.equal(found.mask, plain.mask) and found.regions == plain.regions and plain.regions[0]
    # regions of a D map that requires grad: one 2x3 region, mean D by hand
    m = torch.zeros(4, 5, dtype=torch.bool)
    m[1:3, 1:4] = True
    d = torch.arange(20.0).view(4, 5).requires_grad_()
    (r,) = regions(m, d)
    assert (r.box, r.area) == ((1, 1, 3, 2), 6)
    assert r.mean_d == pytest.approx((6 + 7 + 8 + 11 + 12 + 13) / 6)


@pytest.mark.parametrize("call", [
    lambda g: __import__("genrestore.degrade", fromlist=["get_task"]).get_task("deartifact").degrade(X, g),
    lambda g: __import__("genrestore.artifacts", fromlist=["synthesize"]).synthesize("identity", {}, X, 0.5, g),
], ids=["deartifact task", "identity artifact"])
def test_operators_that_draw_nothing_still_check_the_generator(call):
    """They ignored it: a seed, a NumPy generator or a list of the wrong length passed, while the
    random tasks and kinds refused them."""
    for bad in (0, np.random.default_rng(0), [torch.Generator()]):
        with pytest.raises(InputError, match="generator"):
            call(bad)
    out = call(_gens())
    torch.testing.assert_close(out[0] if isinstance(out, tuple) else out,
                               (lambda o: o[0] if isinstance(o, tuple) else o)(call(None)))


def test_elementwise_operators_refuse_arrays_and_integer_tensors():
    """``quantize(uint8 image)`` clamped 0..255 integers to 0/1 without complaint; a NumPy array
    raised AttributeError / TypeError from inside the function."""
    from genrestore.degrade import clamp_surrogate, round_surrogate
    from genrestore.io import quantize

    u8 = (X * 255).round().to(torch.uint8)
    for fn in (quantize, round_surrogate, clamp_surrogate):
        for bad, words in ((X.numpy(), "torch.Tensor, got ndarray"), (u8, "float tensor, got dtype torch.uint8")):
            with pytest.raises(InputError, match=words):
                fn(bad)
    assert quantize(torch.tensor([0.2, 1.2])).mul(255).tolist() == [51.0, 255.0]  # 0.2 * 255 = 51; 1.2 clamped


def test_adjustment_map_takes_integer_labels_only():
    """Float labels raised IndexError; uint8 labels (a class map read from a PNG) were used as a
    boolean mask and raised IndexError too."""
    from genrestore.detect import adjustment_map

    weights = torch.tensor([1.0, 2.0, 3.0])
    labels = torch.tensor([[[0, 2], [1, 0]]])
    expected = [[[[1.0, 3.0], [2.0, 1.0]]]]
    assert adjustment_map(labels.to(torch.uint8), weights).tolist() == expected
    assert adjustment_map(labels.int(), weights).tolist() == expected
    for bad in (labels.float(), labels.bool(), labels[0], labels.numpy()):
        with pytest.raises(InputError, match="integer tensor of class indices"):
            adjustment_map(bad, weights)


def test_feature_stats_refuse_numpy_features():
    from genrestore.metrics import FeatureStats

    with pytest.raises(InputError, match="torch tensor, got ndarray"):
        FeatureStats().update(np.zeros((4, 3)))


def test_training_loss_of_float64_and_integer_images():
    """float64 targets raised "Input type (double) and bias type (float)" from a convolution and
    uint8 ones NotImplementedError; ``sample`` runs float64 images in the network's dtype."""
    from genrestore.diffusion import ConditionalUNet, training_loss

    torch.manual_seed(0)
    net = ConditionalUNet(3, class_names=("a", "b"), unet=TINY_UNET)
    x0, y, labels = X[..., :8, :8] * 2 - 1, Y[..., :8, :8] * 2 - 1, torch.tensor([0, 1])
    ref = training_loss(net, x0, y, labels, generator=_gens())
    torch.testing.assert_close(training_loss(net, x0.double(), y.double(), labels, generator=_gens()), ref)
    with pytest.raises(InputError, match="x0 as a float tensor"):
        training_loss(net, ((x0 + 1) * 127.5).to(torch.uint8), y, labels)


def test_bench_entry_points_name_what_they_expect(tmp_path):
    """``load_suite(..., methods="idm")`` said "unknown method 'i'" (the string was iterated) and
    ``run_suite("denoise", ...)`` raised AttributeError."""
    from genrestore.bench.harness import run_suite
    from genrestore.bench.suite import load_suite

    with pytest.raises(InputError, match=r"methods as a list of names.*\['idm'\]"):
        load_suite("denoise", methods="idm")
    with pytest.raises(InputError, match="tasks as a list of names"):
        load_suite("denoise", tasks="denoise")
    with pytest.raises(InputError, match="load_suite"):
        run_suite("denoise", tmp_path / "out")
    with pytest.raises(InputError) as e:  # a tensor's repr spans lines: the message did too
        run_suite(torch.zeros(3, 3), tmp_path / "out")
    assert str(e.value).startswith("expected suite as a Suite, got Tensor tensor([[0., 0., 0.], [0.,")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_sampled_tokens_can_be_edited_in_place():
    """TokenTransformer.sample / sample_grid ran under inference_mode (as the restorers did):
    ``tokens[0, 0] = k`` on their output raised "Inplace update to inference tensor"."""
    from genrestore.models.vq import TokenTransformer

    torch.manual_seed(0)
    net = TokenTransformer(8, 4, dim=16, depth=1, heads=2).eval()
    tokens = torch.tensor([[1, 2, 3, 4]])
    keep = torch.ones(1, 4, dtype=torch.bool)  # nothing resampled: the tokens come back
    for out in (net.sample(tokens, keep), net.sample_grid(tokens.view(1, 2, 2), keep.view(1, 2, 2)).view(1, 4)):
        assert not torch.is_inference(out) and out.tolist() == [[1, 2, 3, 4]]
        out[0, 0] = 7
        assert out.tolist() == [[7, 2, 3, 4]]


def test_face_descriptors_and_segmenter_labels_can_be_edited_in_place(monkeypatch):
    """face_descriptor and SegFormerSegmenter ran under inference_mode: ``d /= d.norm()`` or
    ``labels[labels == a] = b`` on their outputs raised "Inplace update to inference tensor"."""
    from types import SimpleNamespace

    from genrestore.detect.semantic import SegFormerSegmenter
    from genrestore.models import face_descriptor as fd

    class MeanColour(torch.nn.Module):  # stand-in networks (the weights are not what is tested)
        def forward(self, x=None, pixel_values=None):
            if pixel_values is not None:  # SegFormer: 2 classes, class 1 where red > green
                return SimpleNamespace(logits=torch.stack([pixel_values[:, 1], pixel_values[:, 0]], 1))
            return x.mean(dim=(2, 3))

    monkeypatch.setattr(fd, "_model", lambda device, key: MeanColour())  # (the weight file ships, for its key)
    d = fd.face_descriptor(X)
    assert not torch.is_inference(d)
    d /= 2
    torch.testing.assert_close(d, fd.to_face_input(X).mean(dim=(2, 3)) / 2)

    seg = SegFormerSegmenter.__new__(SegFormerSegmenter)
    seg.model, seg.size, seg.device = MeanColour(), 16, torch.device("cpu")
    labels = seg(X)
    assert not torch.is_inference(labels)
    red, green = (X[:, 0] - 0.485) / 0.229, (X[:, 1] - 0.456) / 0.224  # ImageNet normalisation
    assert torch.equal(labels, (red > green).long())  # at the network's size: no resize
    labels[labels == 1] = 0  # merge the classes
    assert labels.shape == (2, 16, 16) and not labels.any()


def test_weight_and_suite_lookups_refuse_non_names():
    """``weights.find(None)``, ``find(3)`` and ``verify(None)`` raised TypeError from ``"/" in name``;
    ``load_suite(3)`` raised TypeError from ``Path(3)``."""
    from genrestore import weights
    from genrestore.bench.suite import load_suite

    for call in (weights.find, weights.verify, weights.spec):
        for bad in (None, 3):
            with pytest.raises(InputError, match=f"weight name as a string, got {type(bad).__name__}"):
                call(bad)
    for bad in (3, None):
        with pytest.raises(InputError, match=f"built-in suite name, got {type(bad).__name__}"):
            load_suite(bad)


def test_model_range_conversions_refuse_arrays_and_integer_tensors():
    """``to_model_range(uint8)`` gave 0..255 integers times 2 minus 1 (uint8 arithmetic) and passed
    NumPy arrays through; ``from_model_range(array)`` raised AttributeError (``.clamp``)."""
    from genrestore.diffusion import from_model_range, to_model_range

    u8 = (X * 255).round().to(torch.uint8)
    for fn in (to_model_range, from_model_range):
        for bad, words in ((X.numpy(), "torch.Tensor, got ndarray"), (u8, "float tensor, got dtype torch.uint8")):
            with pytest.raises(InputError, match=words):
                fn(bad)
    assert to_model_range(torch.tensor([0.0, 0.5, 1.0])).tolist() == [-1.0, 0.0, 1.0]
    assert from_model_range(torch.tensor([-2.0, 0.0, 1.0])).tolist() == [0.0, 0.5, 1.0]  # -2 clamped


@pytest.mark.parametrize("which", ["ddim_invert", "ddim_decode"])
def test_ddim_inversion_with_a_plain_function_checks_its_input(which):
    """With ``fn(x_t, t)`` as the model nothing checked the sample: a 3-D tensor ran through
    (a batch of one image's channels) and a NumPy array raised TypeError in the scheduler step."""
    import genrestore.diffusion as diffusion

    fn = getattr(diffusion, which)
    eps = lambda x, t: torch.zeros_like(x)  # noqa: E731
    for bad, words in ((X[0] * 2 - 1, r"of shape \(N, C, H, W\).*got \(3, 16, 16\)"),
                       ((X * 2 - 1).numpy(), "torch.Tensor, got ndarray"),
                       ((X * 255).to(torch.uint8), "float tensor")):
        with pytest.raises(InputError, match=words):
            fn(eps, bad, 2, t0=10)
    assert fn(eps, X * 2 - 1, 2, t0=10).shape == X.shape


def test_mask_class_labels_takes_integer_label_tensors_only():
    """Float labels came back as float labels (an embedding then raised); a NumPy array raised
    TypeError from ``full_like``; int32 labels came back int32, not the documented int64."""
    from genrestore.diffusion import mask_class_labels

    for bad, words in ((torch.tensor([0.0, 1.0]), r"\(N,\) integer tensor, got \(2,\) of dtype torch.float32"),
                       (torch.tensor([[0, 1]]), r"\(N,\) integer tensor, got \(1, 2\)"),
                       (torch.tensor([True, False]), "integer tensor"),
                       (np.array([0, 1]), "torch.Tensor, got ndarray")):
        with pytest.raises(InputError, match=words):
            mask_class_labels(bad, 2, 0.5)
    out = mask_class_labels(torch.tensor([0, 1], dtype=torch.int32), 2, 1.0)
    assert out.dtype == torch.int64 and out.tolist() == [2, 2]


def test_no_segmenter_checks_its_image():
    """``make_segmenter("none")`` gave labels for a NumPy array and for a 3-D tensor (one label map
    per channel), while the texture and SegFormer segmenters refused both."""
    from genrestore.detect.semantic import make_segmenter

    seg = make_segmenter("none")
    for bad, words in ((X.numpy(), "torch.Tensor, got ndarray"), (X[0], r"got \(3, 16, 16\)"),
                       (X * 255, r"in \[0, 1\]")):
        with pytest.raises(InputError, match=words):
            seg(bad)
    assert torch.equal(seg(X), torch.zeros(2, 16, 16, dtype=torch.long))


def test_morphology_takes_one_channel_masks_and_whole_iterations():
    """``dilate`` / ``erode`` took a 3-channel tensor (an image passed as the mask) and returned 3
    channels; ``iterations=None`` raised TypeError from ``None <= 0``."""
    from genrestore.detect import dilate, erode

    m = torch.zeros(1, 1, 5, 5, dtype=torch.bool)
    m[..., 2, 2] = True
    for fn in (dilate, erode):
        with pytest.raises(InputError, match=r"\(N, 1, H, W\) mask tensor, got \(2, 3, 16, 16\)"):
            fn(X, 3)
        for bad in (None, -1, 1.5):
            with pytest.raises(InputError, match="iterations as an int >= 0"):
                fn(m, 3, bad)
    assert dilate(m, 3).sum() == 9 and dilate(m[:, 0], 3).shape == (1, 5, 5)  # (N, H, W) masks as documented
    assert not erode(m, 3).any()


def test_adjustment_map_is_in_the_weights_dtype_and_checks_them():
    """Its docstring promised float32 whatever the weights (float64 ones gave float64, which the
    detector casts to D's dtype anyway); list or integer weights raised AttributeError or gave
    integer A_k."""
    from genrestore.detect import adjustment_map

    labels = torch.tensor([[[0, 1]]])
    for dtype in (torch.float32, torch.float64):
        out = adjustment_map(labels, torch.tensor([0.5, 1.0], dtype=dtype))
        assert out.dtype == dtype and out.tolist() == [[[[0.5, 1.0]]]]
    for bad, words in (([0.5, 1.0], "weights as a torch.Tensor, got list"),
                       (torch.tensor([1, 2]), "weights as a float tensor"),
                       (torch.ones(2, 1), r"weights of shape \(K,\)")):
        with pytest.raises(InputError, match=words):
            adjustment_map(labels, bad)
