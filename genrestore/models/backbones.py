"""ImageNet backbones in torchvision's layout, as feature extractors with named taps.

The weights cannot be downloaded here: they load from the local weight store
(``alexnet-torchvision``, ``vgg16-torchvision``), whose files are torchvision's own
checkpoints converted once by ``genrestore weights add``. The state-dict keys are
torchvision's (``features.0.weight`` ...), so a torchvision checkpoint loads unchanged.
"""

from __future__ import annotations

import torch
from torch import nn


def alexnet_features() -> nn.Sequential:
    """``torchvision.models.alexnet().features``: 5 convolutions with ReLU and 3 max-pools."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
    )


VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _vgg_features(config: tuple) -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = 3
    for v in config:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU()]
            c_in = v
    return nn.Sequential(*layers)


def vgg16_features() -> nn.Sequential:
    """``torchvision.models.vgg16().features``: 13 3x3 convolutions with ReLU and 5 max-pools."""
    return _vgg_features(VGG16_CONFIG)


class FeatureTaps(nn.Module):
    """Runs ``features`` and returns the activations after the layers listed in ``taps``.

    Args:
        features: a torchvision-layout ``nn.Sequential``.
        taps: indices of the layers whose outputs are returned, increasing.
    """

    def __init__(self, features: nn.Sequential, taps: tuple[int, ...]) -> None:
        super().__init__()
        self.features = features[: taps[-1] + 1]
        self.taps = taps

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out

    def load_torchvision(self, state: dict[str, torch.Tensor]) -> None:
        """Load the ``features.*`` entries of a torchvision state dict (the classifier is ignored)."""
        own = self.state_dict()
        wanted = {k: v for k, v in state.items() if k in own}
        missing = sorted(set(own) - set(wanted))
        if missing:
            raise KeyError(f"backbone state dict lacks {missing[:4]}{' ...' if len(missing) > 4 else ''}")
        self.load_state_dict(wanted)


VGG19_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def vgg19_features() -> nn.Sequential:
    """``torchvision.models.vgg19().features``: 16 3x3 convolutions with ReLU and 5 max-pools."""
    return _vgg_features(VGG19_CONFIG)


# Real-ESRGAN's perceptual loss taps: conv1_2, conv2_2, conv3_4, conv4_4, conv5_4 before their ReLU
VGG19_PERCEPTUAL_TAPS = (2, 7, 16, 25, 34)

# LPIPS taps (Zhang et al. 2018): the ReLU outputs after each convolution block.
ALEXNET_TAPS = (1, 4, 7, 9, 11)      # relu1 .. relu5
VGG16_TAPS = (3, 8, 15, 22, 29)      # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
