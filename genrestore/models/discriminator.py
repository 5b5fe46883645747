"""Real-ESRGAN's U-Net discriminator with spectral normalization (``UNetDiscriminatorSN``).

Layout (Wang et al. 2021, Real-ESRGAN §3.3): a 3x3 stem, three stride-2 4x4 convolutions
(64 -> 128 -> 256 -> 512), three bilinear x2 up-steps with 3x3 convolutions and skip additions
back to 64 channels, two more 3x3 convolutions and a 3x3 head to one logit per pixel;
LeakyReLU 0.2, spectral norm on every convolution but the first and the last. Parameter names
follow the released ``RealESRGAN_x4plus_netD.pth`` (``conv0`` .. ``conv9``, spectral norm's
``weight_orig`` / ``weight_u`` / ``weight_v``), so that file loads after
``genrestore weights add realesrgan-x4plus-netd RealESRGAN_x4plus_netD.pth``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


class UNetDiscriminatorSN(nn.Module):
    """``(N, 3, H, W)`` in [0, 1] (H, W divisible by 8) -> ``(N, 1, H, W)`` real/fake logits."""

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64) -> None:
        super().__init__()
        f = num_feat
        self.conv0 = nn.Conv2d(num_in_ch, f, 3, 1, 1)
        self.conv1 = spectral_norm(nn.Conv2d(f, f * 2, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(f * 2, f * 4, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(f * 4, f * 8, 4, 2, 1, bias=False))
        self.conv4 = spectral_norm(nn.Conv2d(f * 8, f * 4, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(f * 4, f * 2, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(f * 2, f, 3, 1, 1, bias=False))
        self.conv7 = spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(f, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
        up = lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
        x0 = act(self.conv0(x))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))
        x4 = act(self.conv4(up(x3))) + x2
        x5 = act(self.conv5(up(x4))) + x1
        x6 = act(self.conv6(up(x5))) + x0
        return self.conv9(act(self.conv8(act(self.conv7(x6)))))
