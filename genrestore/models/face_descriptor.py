"""The 128-d face descriptor of face-api.js (a dlib-style ResNet-34), converted from TF.js.

Architecture (``@vladmandic/face-api`` ``src/faceRecognitionNet``, MIT): input 150x150 RGB,
minus the mean RGB (122.782, 117.001, 104.298) on 0..255, divided by 255; a 7x7/2 valid
convolution (32 ch) and a 3x3/2 max-pool; residual blocks of two 3x3 convolutions at 32, 64,
128 and 256 channels, where "down" blocks stride their first convolution (valid padding) and
add a 2x2/2 average-pooled shortcut, zero-padded in channels (and by one row and column when
the sizes differ); a global mean and a 256x128 matrix. Every convolution adds its bias and
then a per-channel scale and shift.

The weights ship as ``face-descriptor-faceapi``: the original uint8 codes with their
per-tensor ``scale`` and ``min`` (lossless), dequantized at load as tfjs does.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import InputError, check_image
from .tfjs import dequantize_state

WEIGHT_NAME = "face-descriptor-faceapi"
MEAN_RGB = (122.782, 117.001, 104.298)
INPUT_SIZE = 150
# (block name, is a down block), in order
BLOCKS = (("conv32_1", False), ("conv32_2", False), ("conv32_3", False),
          ("conv64_down", True), ("conv64_1", False), ("conv64_2", False), ("conv64_3", False),
          ("conv128_down", True), ("conv128_1", False), ("conv128_2", False),
          ("conv256_down", True), ("conv256_1", False), ("conv256_2", False), ("conv256_down_out", True))


class FaceDescriptorNet(nn.Module):
    """face-api.js's face recognition network. Input ``(N, 3, 150, 150)`` in [0, 1]; output ``(N, 128)``."""

    def __init__(self, weights: dict[str, torch.Tensor]) -> None:
        super().__init__()
        missing = [f"{b}/conv1/conv/filters" for b, _ in BLOCKS if f"{b}/conv1/conv/filters" not in weights]
        if "fc" not in weights or "conv32_down/conv/filters" not in weights or missing:
            raise KeyError(f"not face-api face recognition weights (missing {missing[:2] or ['fc']})")
        for name, t in weights.items():
            if name.endswith("/filters"):
                t = t.permute(3, 2, 0, 1)  # TF HWIO -> torch OIHW
            self.register_buffer(name.replace("/", "__"), t.contiguous().float())
        self.register_buffer("mean", torch.tensor(MEAN_RGB).view(1, 3, 1, 1) / 255.0)

    def _p(self, name: str) -> torch.Tensor:
        return getattr(self, name.replace("/", "__"))

    def _conv(self, x: torch.Tensor, prefix: str, stride: int, relu: bool, padding: int) -> torch.Tensor:
        x = F.conv2d(x, self._p(f"{prefix}/conv/filters"), self._p(f"{prefix}/conv/bias"), stride, padding)
        x = x * self._p(f"{prefix}/scale/weights").view(1, -1, 1, 1) + self._p(f"{prefix}/scale/biases").view(1, -1, 1, 1)
        return F.relu(x) if relu else x

    def _residual(self, x: torch.Tensor, name: str, down: bool) -> torch.Tensor:
        out = self._conv(x, f"{name}/conv1", 2 if down else 1, True, 0 if down else 1)  # valid when striding
        out = self._conv(out, f"{name}/conv2", 1, False, 1)
        if not down:
            return F.relu(out + x)
        shortcut = F.avg_pool2d(x, 2, 2)
        if shortcut.shape[-2:] != out.shape[-2:]:
            out = F.pad(out, (0, 1, 0, 1))  # one zero row at the bottom and one column at the right
        if shortcut.shape[1] != out.shape[1]:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, out.shape[1] - shortcut.shape[1]))
        return F.relu(shortcut + out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - self.mean  # (255 x - mean) / 255
        x = self._conv(x, "conv32_down", 2, True, 0)
        x = F.max_pool2d(x, 3, 2)
        for name, down in BLOCKS:
            x = self._residual(x, name, down)
        return x.mean(dim=(2, 3)) @ self._p("fc")


def to_face_input(x: torch.Tensor) -> torch.Tensor:
    """Pad ``(N, 3, H, W)`` crops to a centred square with zeros and resize to 150x150 (bilinear).

    face-api pads the same way; for its resize it uses TensorFlow's legacy bilinear sampling,
    so results equal face-api's exactly only for 150x150 inputs.
    """
    h, w = x.shape[-2:]
    if h != w:
        d = abs(h - w)
        pad = (d // 2, d - d // 2, 0, 0) if h > w else (0, 0, d // 2, d - d // 2)
        x = F.pad(x, pad)
    if x.shape[-1] != INPUT_SIZE:
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return x


@lru_cache(maxsize=2)
def _model(device: str, key: tuple[str, int]) -> FaceDescriptorNet:
    from .. import weights as ws

    return FaceDescriptorNet(dequantize_state(ws.load_state_dict(WEIGHT_NAME))).to(device).eval()


def face_descriptor(x: torch.Tensor) -> torch.Tensor:
    """128-d face descriptors of ``(N, 3, H, W)`` face crops in [0, 1] (see :func:`to_face_input`)."""
    from .. import weights as ws

    check_image(x, "face crops", channels=(3,))
    path = ws.resolve(WEIGHT_NAME)
    with torch.no_grad():  # not inference_mode: descriptors may be edited in place (d /= d.norm(...))
        return _model(str(x.device), (str(path), path.stat().st_mtime_ns))(to_face_input(x.float()))  # float32 net


def identity_similarity(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of the face descriptors of two batches of face crops, ``(N,)`` in [-1, 1]."""
    for t in (x, y):  # shapes here; face_descriptor checks the values
        check_image(t, "face crops", channels=(3,), check_range=False)
    if x.shape[0] != y.shape[0]:
        raise InputError(f"expected as many faces in both batches, got {x.shape[0]} and {y.shape[0]}")
    return F.cosine_similarity(face_descriptor(x), face_descriptor(y), dim=1)
