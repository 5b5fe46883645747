"""StyleGAN2 generator (config-f / StyleGAN2-ADA) in plain PyTorch, with W, W+ and W++ style inputs.

Architecture (Karras et al., "Analyzing and Improving the Image Quality of StyleGAN", 2020, and
the StyleGAN2-ADA PyTorch layout; written here without custom CUDA ops, so it runs on CPU):

- Mapping: ``z`` is pixel-normalised, ``z / sqrt(mean(z^2) + 1e-8)``, then ``n_layers`` fully
  connected layers with equalised learning rate (weight gain ``lr_multiplier / sqrt(fan_in)``,
  bias gain ``lr_multiplier``, ``lr_multiplier = 0.01``) and leaky ReLU 0.2 times ``sqrt(2)``.
  ``mapping.w_avg`` is the tracked mean ``w``; truncation is ``w_avg + psi * (w - w_avg)``.
- Synthesis: a learned 4x4 constant, then per resolution ``r = 8, 16, ...`` a modulated 3x3 conv
  that upsamples x2 (``conv0``: transposed conv with stride 2, then the [1,3,3,1] FIR) and a
  modulated 3x3 conv (``conv1``), each with demodulation, per-pixel noise times a learned
  strength, bias, leaky ReLU 0.2 times ``sqrt(2)`` and an optional clamp ``conv_clamp``.
  Skip architecture: each resolution's ``torgb`` (1x1 modulated conv, no demodulation) is added
  to the previous RGB upsampled x2 with the same FIR.

Modulated conv (StyleGAN2 eq. 1-3): ``w'_{oik} = s_i w_{oik}``, ``w''_{oik} = w'_{oik} /
sqrt(sum_{ik} w'^2_{oik} + 1e-8)``, computed as one grouped convolution over the batch so each
image has its own styles. With W++ styles the scale is per output filter too: ``s_{oi}``.

Styles. The modulated layers, in forward order, are ``b4.conv1, b4.torgb, b8.conv0, b8.conv1,
b8.torgb, ...``; layer ``l`` has ``C_l`` input channels and an affine ``A_l`` (w_dim -> C_l,
bias initialised to 1). Its style ``s_l`` (N, C_l) can come from

- W: one ``w`` (N, w_dim): ``s_l = A_l(w)`` (RobustStyleGAN eq. 5);
- W+: ``ws`` (N, num_ws, w_dim): ``s_l = A_l(ws[:, idx_l])``, with NVIDIA's indices (a
  resolution's torgb shares the index of the next resolution's conv0);
- W++: per layer a tensor (N, O_l, w_dim), one latent per convolution filter (output channel)
  ``o`` of the layer's ``O_l``: filter ``o`` is modulated by its own style vector
  ``s_l[o] = A_l(w_{l,o})`` (C_l,), so the styles are (N, O_l, C_l) and ``w'_{oik} = s_{oi} w_{oik}``
  (RobustStyleGAN eq. 7, "a different latent code for each convolution filter"; the authors'
  code keeps one latent per output channel and modulates ``weight[o, i]`` by ``A(w_o)[i]``).
  Initialised from W+ by repeating each layer's ``w`` over its filters, W++ gives the same
  image as W+.

State-dict keys are NVIDIA's StyleGAN2-ADA ``G_ema`` names (``mapping.fc0.weight``,
``mapping.w_avg``, ``synthesis.b4.const``, ``synthesis.b8.conv0.affine.weight``,
``synthesis.b8.conv0.noise_const``, ``synthesis.b8.torgb.weight``, ...) without the
``resample_filter`` buffers, which are constant. See :mod:`genrestore.models.stylegan2_convert`
for the rosinality and ADA-pickle converters.

Images: the network works in [-1, 1]; :meth:`StyleGAN2Generator.generate` and
:meth:`StyleGAN2Generator.synthesis_from_styles` return ``(x + 1) / 2``, i.e. ``(N, 3, H, W)``
in [0, 1].
"""

from __future__ import annotations

import math
import os
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import InputError, finite_number, real_number
from .checkpoint import SavedModel, in_module_dtype

NoiseMode = Literal["const", "random", "none"]
LRELU_GAIN = math.sqrt(2.0)


# ---------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------
def fir_kernel(taps: tuple[float, ...] = (1, 3, 3, 1)) -> torch.Tensor:
    """The separable 2-D FIR kernel ``outer(taps, taps) / sum``, shape (K, K), summing to 1."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = torch.outer(k, k)
    return k / k.sum()


def fir_filter(x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int, int, int],
               gain: float = 1.0) -> torch.Tensor:
    """Zero-pad ``x`` (N, C, H, W) by ``pad`` = (left, right, top, bottom), then convolve every
    channel with ``kernel * gain`` (K, K); output (N, C, H + top + bottom - K + 1, ...)."""
    c = x.shape[1]
    w = (kernel * gain).flip([0, 1]).to(x).expand(c, 1, *kernel.shape)  # true convolution
    return F.conv2d(F.pad(x, list(pad)), w, groups=c)


def upsample2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Upsample (N, C, H, W) to (N, C, 2H, 2W): insert zeros, then the FIR with gain 4
    (NVIDIA ``upfirdn2d.upsample2d``: padding (2, 1) for a 4-tap kernel)."""
    n, c, h, w = x.shape
    y = F.pad(x.reshape(n, c, h, 1, w, 1), [0, 1, 0, 0, 0, 1]).reshape(n, c, 2 * h, 2 * w)
    k = kernel.shape[-1]
    return fir_filter(y, kernel, ((k + 1) // 2, (k - 2) // 2, (k + 1) // 2, (k - 2) // 2), gain=4.0)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     up: bool = False, kernel: torch.Tensor | None = None) -> torch.Tensor:
    """StyleGAN2 modulated convolution, one grouped conv over the batch (each image its own styles).

    Args:
        x: (N, C_in, H, W) features.
        weight: (C_out, C_in, k, k) conv weight (stored without equalised-lr gain: demodulation
            cancels any constant scale).
        styles: (N, C_in) per-image scales ``s_i``, or (N, C_out, C_in) per-filter scales
            ``s_{oi}`` (W++).
        demodulate: divide each output filter by its norm (StyleGAN2 eq. 3).
        up: upsample x2: transposed conv with stride 2 (weight not flipped), then ``kernel`` with
            gain 4, as NVIDIA's ``conv2d_resample(up=2, flip_weight=False)`` and rosinality's
            ``conv_transpose2d`` + ``Blur``.
        kernel: the (K, K) FIR for ``up``.

    Returns:
        (N, C_out, H', W') with H' = H, or 2H when ``up``.
    """
    n, c_in, h, w_ = x.shape
    c_out, _, kh, kw = weight.shape
    per_filter = styles.reshape(n, -1, c_in, 1, 1)  # (N, 1 or C_out, C_in, 1, 1)
    wgt = weight.unsqueeze(0) * per_filter  # eq. 1
    if demodulate:
        wgt = wgt * (wgt.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt().reshape(n, c_out, 1, 1, 1)  # eq. 2-3
    xg = x.reshape(1, n * c_in, h, w_)
    if up:
        wt = wgt.transpose(1, 2).reshape(n * c_in, c_out, kh, kw)
        y = F.conv_transpose2d(xg, wt, stride=2, groups=n).reshape(n, c_out, 2 * h + kh - 2, 2 * w_ + kw - 2)
        k = kernel.shape[-1]
        # NVIDIA conv2d_resample's pads for up=2 after the transposed conv: (1, 1) for K=4, k=3
        p0, p1 = kh // 2 + (k + 1) // 2 - (kh - 1), kh // 2 + (k - 2) // 2 - (kh - 2)
        return fir_filter(y, kernel, (p0, p1, p0, p1), gain=4.0)
    y = F.conv2d(xg, wgt.reshape(n * c_out, c_in, kh, kw), padding=kh // 2, groups=n)
    return y.reshape(n, c_out, h, w_)


def bias_lrelu(x: torch.Tensor, bias: torch.Tensor, clamp: float | None = None) -> torch.Tensor:
    """``clamp(lrelu_0.2(x + b) * sqrt(2))`` with ``b`` broadcast over channels (dim 1)."""
    x = F.leaky_relu(x + bias.reshape(1, -1, *([1] * (x.ndim - 2))), 0.2) * LRELU_GAIN
    return x.clamp(-clamp, clamp) if clamp is not None else x


# ---------------------------------------------------------------------------------------------
# Layers (NVIDIA names for parameters and buffers)
# ---------------------------------------------------------------------------------------------
class FullyConnectedLayer(nn.Module):
    """Equalised-lr linear layer: ``y = x (weight * lr / sqrt(fan_in))^T + bias * lr``, optional lrelu."""

    def __init__(self, in_features: int, out_features: int, lr_multiplier: float = 1.0, bias_init: float = 0.0,
                 lrelu: bool = False, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features, generator=generator) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.lrelu = lrelu

    def effective(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The (out, in) weight and (out,) bias with their gains applied."""
        return self.weight * self.weight_gain, self.bias * self.bias_gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.effective()
        if not self.lrelu:
            return F.linear(x, w, b)
        return bias_lrelu(F.linear(x, w), b)


class MappingNetwork(nn.Module):
    """z (N, z_dim) -> w (N, w_dim); holds ``w_avg`` (w_dim,)."""

    def __init__(self, z_dim: int, w_dim: int, n_layers: int = 8, lr_multiplier: float = 0.01,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.n_layers = n_layers
        for i in range(n_layers):
            fc = FullyConnectedLayer(z_dim if i == 0 else w_dim, w_dim, lr_multiplier, lrelu=True, generator=generator)
            setattr(self, f"fc{i}", fc)
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()  # pixel norm
        for i in range(self.n_layers):
            x = getattr(self, f"fc{i}")(x)
        if truncation_psi != 1:
            x = self.w_avg.lerp(x, truncation_psi)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally upsampling), noise, bias, lrelu, clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool = False,
                 conv_clamp: float | None = None, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.up, self.resolution, self.conv_clamp = up, resolution, conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0, generator=generator)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3, generator=generator))
        self.register_buffer("noise_const", torch.randn(resolution, resolution, generator=generator))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("resample_filter", fir_kernel(), persistent=False)

    def forward(self, x: torch.Tensor, styles: torch.Tensor, noise_mode: NoiseMode = "const",
                generator: torch.Generator | None = None) -> torch.Tensor:
        x = modulated_conv2d(x, self.weight, styles, demodulate=True, up=self.up, kernel=self.resample_filter)
        if noise_mode == "const":
            x = x + self.noise_const.to(x) * self.noise_strength
        elif noise_mode == "random":
            shape = (x.shape[0], 1, self.resolution, self.resolution)
            dev = generator.device if generator is not None else x.device
            x = x + torch.randn(shape, generator=generator, device=dev).to(x) * self.noise_strength
        return bias_lrelu(x, self.bias, self.conv_clamp)


class ToRGBLayer(nn.Module):
    """1x1 modulated conv without demodulation; styles scaled by ``1 / sqrt(C_in)``; bias; clamp."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int, conv_clamp: float | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.conv_clamp = in_channels, img_channels, conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0, generator=generator)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels, 1, 1, generator=generator))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, styles: torch.Tensor, noise_mode: NoiseMode = "const",
                generator: torch.Generator | None = None) -> torch.Tensor:
        x = modulated_conv2d(x, self.weight, styles * self.weight_gain, demodulate=False)
        x = x + self.bias.reshape(1, -1, 1, 1)
        return x.clamp(-self.conv_clamp, self.conv_clamp) if self.conv_clamp is not None else x


class SynthesisBlock(nn.Module):
    """One resolution: ``const`` (4x4) or ``conv0`` (up x2), ``conv1``, ``torgb`` (skip architecture)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 conv_clamp: float | None, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.resolution = resolution
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution, generator=generator))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=True, conv_clamp=conv_clamp,
                                        generator=generator)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp,
                                    generator=generator)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp, generator=generator)
        self.register_buffer("resample_filter", fir_kernel(), persistent=False)
        self.num_conv = 1 if in_channels == 0 else 2


# ---------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------
class SynthesisNetwork(nn.Module):
    """Blocks ``b4, b8, ..., b{resolution}``; channels ``min(channel_base // r, channel_max)``."""

    def __init__(self, w_dim: int, resolution: int, img_channels: int = 3, channel_base: int = 32768,
                 channel_max: int = 512, conv_clamp: float | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        log2 = int(math.log2(resolution)) if resolution >= 4 else 0
        if resolution < 4 or 2 ** log2 != resolution:
            raise InputError(f"expected resolution a power of two >= 4, got {resolution}")
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        self.channels = {r: min(channel_base // r, channel_max) for r in self.block_resolutions}
        if min(self.channels.values()) < 1:
            raise InputError(f"channel_base {channel_base} gives no channels at {resolution} px")
        self.layers: list[nn.Module] = []  # modulated layers in forward order
        self.layer_names: list[str] = []
        self.layer_w_index: list[int] = []
        w_idx = 0
        for r in self.block_resolutions:
            block = SynthesisBlock(self.channels[r // 2] if r > 4 else 0, self.channels[r], w_dim, r, img_channels,
                                   conv_clamp, generator)
            setattr(self, f"b{r}", block)
            for name in (["conv1"] if r == 4 else ["conv0", "conv1"]):
                self.layers.append(getattr(block, name))
                self.layer_names.append(f"b{r}.{name}")
                self.layer_w_index.append(w_idx)
                w_idx += 1
            self.layers.append(block.torgb)
            self.layer_names.append(f"b{r}.torgb")
            self.layer_w_index.append(w_idx)  # shares the next conv0's index (or the extra last one)
        self.num_ws = w_idx + 1

    def forward(self, styles: list[torch.Tensor], noise_mode: NoiseMode = "const",
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Styles (one (N, C_l) or, W++, (N, O_l, C_l) per modulated layer) -> image
        (N, img_channels, H, W) in [-1, 1]."""
        it = iter(styles)
        x = img = None
        for r in self.block_resolutions:
            block = getattr(self, f"b{r}")
            if r == 4:
                x = block.const.unsqueeze(0).expand(styles[0].shape[0], -1, -1, -1).to(styles[0])
            else:
                x = block.conv0(x, next(it), noise_mode, generator)
            x = block.conv1(x, next(it), noise_mode, generator)
            y = block.torgb(x, next(it))
            img = y if img is None else upsample2d(img, block.resample_filter) + y
        return img


class StyleGAN2Generator(nn.Module, SavedModel):
    """StyleGAN2 generator (see the module docstring) with W / W+ / W++ style inputs.

    Args:
        z_dim: latent size.
        w_dim: intermediate latent size.
        resolution: output size (power of two >= 4).
        img_channels: output channels (3).
        channel_base, channel_max: channels ``min(channel_base // r, channel_max)`` at ``r`` px
            (config-f: 32768 and 512).
        n_mapping_layers: mapping depth (8).
        lr_multiplier: mapping learning-rate multiplier (0.01).
        conv_clamp: clamp of conv outputs (None; 256 in ADA training configs).
        generator: random source for the initial weights.

    Attributes:
        num_ws: number of W+ latents (NVIDIA's count: 18 at 1024 px).
        style_channels: ``C_l`` of every modulated layer, in forward order.
        style_w_index: the W+ index of every modulated layer.
        config: the constructor kwargs plus ``"arch": "stylegan2"`` (JSON-serialisable).

    Example:
        >>> g = StyleGAN2Generator(z_dim=8, w_dim=8, resolution=8, channel_base=64, channel_max=8,
        ...                        n_mapping_layers=2, generator=torch.Generator().manual_seed(0)).eval()
        >>> g.num_ws, g.style_channels
        (4, [8, 8, 8, 8, 8])
        >>> g.generate(torch.randn(2, 8)).shape
        torch.Size([2, 3, 8, 8])
    """

    arch = "stylegan2"

    def __init__(self, z_dim: int = 512, w_dim: int = 512, resolution: int = 1024, img_channels: int = 3,
                 channel_base: int = 32768, channel_max: int = 512, n_mapping_layers: int = 8,
                 lr_multiplier: float = 0.01, conv_clamp: float | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        finite_number(lr_multiplier, "lr_multiplier", 0.0, low_open=True)  # checked; kept as given in the config
        clamp = None if conv_clamp is None else real_number(conv_clamp)
        if conv_clamp is not None and (clamp is None or not math.isfinite(clamp) or clamp <= 0):
            raise InputError(f"expected conv_clamp as a finite number > 0, or null, got {conv_clamp!r}")
        self.z_dim, self.w_dim, self.resolution, self.img_channels = z_dim, w_dim, resolution, img_channels
        self.config = {"arch": "stylegan2", "z_dim": z_dim, "w_dim": w_dim, "resolution": resolution,
                       "img_channels": img_channels, "channel_base": channel_base, "channel_max": channel_max,
                       "n_mapping_layers": n_mapping_layers, "lr_multiplier": lr_multiplier,
                       "conv_clamp": conv_clamp}
        self.mapping = MappingNetwork(z_dim, w_dim, n_mapping_layers, lr_multiplier, generator)
        self.synthesis = SynthesisNetwork(w_dim, resolution, img_channels, channel_base, channel_max, conv_clamp,
                                          generator)
        self.num_ws = self.synthesis.num_ws
        self.style_channels = [layer.in_channels for layer in self.synthesis.layers]
        self.filter_counts = [layer.out_channels for layer in self.synthesis.layers]  # O_l, W++ latents per layer
        self.style_w_index = list(self.synthesis.layer_w_index)
        self.style_names = list(self.synthesis.layer_names)

    # -- latents ------------------------------------------------------------------------------
    def _check_latent(self, t: torch.Tensor, shape: tuple[int, ...], what: str) -> None:
        if not isinstance(t, torch.Tensor) or t.ndim != len(shape) + 1 or tuple(t.shape[1:]) != shape:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise InputError(f"expected {what} of shape (N, {', '.join(map(str, shape))}), got {got}")
        if not t.is_floating_point() or t.shape[0] == 0:
            raise InputError(f"expected {what} as a non-empty float tensor, got {t.dtype} {tuple(t.shape)}")

    def map(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        """z (N, z_dim) -> w (N, w_dim), truncated towards ``mapping.w_avg`` by ``psi``."""
        self._check_latent(z, (self.z_dim,), "z")
        return self.mapping(in_module_dtype(self.mapping, z), truncation_psi)  # e.g. float64 z, float32 net

    @torch.no_grad()
    def estimate_w_avg(self, num_samples: int = 10000, generator: torch.Generator | None = None) -> torch.Tensor:
        """Set ``mapping.w_avg`` to the mean of ``num_samples`` mapped z ~ N(0, I); returns it."""
        dev = self.mapping.w_avg.device
        total = torch.zeros(self.w_dim, dtype=torch.float64, device=dev)
        for start in range(0, num_samples, 1000):
            n = min(1000, num_samples - start)
            z = torch.randn(n, self.z_dim, generator=generator,
                            device=generator.device if generator is not None else dev).to(dev)
            total += self.mapping(z).double().sum(0)
        self.mapping.w_avg.copy_(total / num_samples)
        return self.mapping.w_avg

    def w_to_wplus(self, w: torch.Tensor) -> torch.Tensor:
        """(N, w_dim) -> (N, num_ws, w_dim), the same w for every index."""
        self._check_latent(w, (self.w_dim,), "w")
        return w.unsqueeze(1).repeat(1, self.num_ws, 1)

    def wplus_to_wpp(self, ws: torch.Tensor) -> list[torch.Tensor]:
        """W+ (N, num_ws, w_dim) -> W++: per layer (N, O_l, w_dim), the layer's w repeated over its
        ``O_l`` filters (RobustStyleGAN phase III init; the same image as ``ws``)."""
        self._check_latent(ws, (self.num_ws, self.w_dim), "ws")
        return [ws[:, i].unsqueeze(1).repeat(1, o, 1) for i, o in zip(self.style_w_index, self.filter_counts)]

    # -- styles -------------------------------------------------------------------------------
    def styles_from_w(self, w: torch.Tensor) -> list[torch.Tensor]:
        """W: ``s_l = A_l(w)`` for one w (N, w_dim); returns one (N, C_l) per layer."""
        self._check_latent(w, (self.w_dim,), "w")
        return [layer.affine(w) for layer in self.synthesis.layers]

    def styles_from_wplus(self, ws: torch.Tensor) -> list[torch.Tensor]:
        """W+: ``s_l = A_l(ws[:, idx_l])`` for ws (N, num_ws, w_dim)."""
        self._check_latent(ws, (self.num_ws, self.w_dim), "ws")
        return [layer.affine(ws[:, i]) for layer, i in zip(self.synthesis.layers, self.style_w_index)]

    def styles_from_wpp(self, wpp: list[torch.Tensor]) -> list[torch.Tensor]:
        """W++ (RobustStyleGAN eq. 7): per layer latents (N, O_l, w_dim) -> styles (N, O_l, C_l),
        ``s_l[o] = A_l(w_{l,o})``: filter ``o`` of layer ``l`` is modulated by its own latent."""
        if len(wpp) != len(self.synthesis.layers):
            raise InputError(f"expected {len(self.synthesis.layers)} W++ tensors (one per modulated layer), "
                             f"got {len(wpp)}")
        out = []
        for t, layer, name in zip(wpp, self.synthesis.layers, self.style_names):
            self._check_latent(t, (layer.out_channels, self.w_dim), f"W++ latent of {name}")
            out.append(layer.affine(t))
        return out

    # -- images -------------------------------------------------------------------------------
    def synthesis_from_styles(self, styles: list[torch.Tensor], noise_mode: NoiseMode = "const",
                              generator: torch.Generator | None = None, clamp: bool = False) -> torch.Tensor:
        """Styles -> images (N, 3, H, W): the network's [-1, 1] output mapped by ``(x + 1) / 2``.

        Args:
            styles: one tensor per modulated layer, forward order: (N, C_l) (``style_channels``)
                or, per filter (W++), (N, O_l, C_l) (``filter_counts`` x ``style_channels``).
            noise_mode: ``"const"`` (the stored ``noise_const`` buffers, deterministic),
                ``"random"`` (fresh N(0, 1) from ``generator``) or ``"none"``.
            generator: random source for ``"random"``.
            clamp: clamp to [0, 1]; off by default so gradients reach out-of-range pixels.

        Raises:
            InputError: wrong number or shape of styles, or an unknown noise mode.
        """
        if noise_mode not in ("const", "random", "none"):
            raise InputError(f"expected noise_mode in ('const', 'random', 'none'), got {noise_mode!r}")
        if noise_mode == "random" and not isinstance(generator, (torch.Generator, type(None))):
            raise InputError(f"noise_mode='random' draws from one torch.Generator (or None), got "
                             f"{type(generator).__name__}; torch.Generator().manual_seed(seed) makes one")
        if len(styles) != len(self.style_channels):
            raise InputError(f"expected {len(self.style_channels)} styles, got {len(styles)}")
        n = styles[0].shape[0] if isinstance(styles[0], torch.Tensor) else 0
        for s, c, o, name in zip(styles, self.style_channels, self.filter_counts, self.style_names):
            if not isinstance(s, torch.Tensor) or s.shape not in ((n, c), (n, o, c)):
                raise InputError(f"expected style of {name} of shape ({n}, {c}) or ({n}, {o}, {c}), "
                                 f"got {tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__}")
        img = (self.synthesis(styles, noise_mode, generator) + 1) / 2
        return img.clamp(0, 1) if clamp else img

    def generate(self, z: torch.Tensor | None = None, *, w: torch.Tensor | None = None,
                 ws: torch.Tensor | None = None, wpp: list[torch.Tensor] | None = None,
                 truncation_psi: float = 1.0, noise_mode: NoiseMode = "const",
                 generator: torch.Generator | None = None, clamp: bool = True) -> torch.Tensor:
        """Images (N, 3, H, W) in [0, 1] from exactly one of z, w (W), ws (W+) or wpp (W++).

        The network's [-1, 1] output is mapped by ``(x + 1) / 2`` and, with ``clamp``, clamped to
        [0, 1]. ``truncation_psi`` applies to z, w and ws (towards ``mapping.w_avg``).

        Example:
            >>> g = StyleGAN2Generator(z_dim=4, w_dim=4, resolution=4, channel_base=16, channel_max=4,
            ...                        n_mapping_layers=1)
            >>> x = g.generate(torch.randn(3, 4), truncation_psi=0.7)
            >>> x.shape, bool(x.min() >= 0 and x.max() <= 1)
            (torch.Size([3, 3, 4, 4]), True)
        """
        given = [name for name, v in (("z", z), ("w", w), ("ws", ws), ("wpp", wpp)) if v is not None]
        if len(given) != 1:
            raise InputError(f"expected exactly one of z, w, ws, wpp, got {given or 'none'}")
        if wpp is not None:
            styles = self.styles_from_wpp(wpp)
        elif ws is not None:
            self._check_latent(ws, (self.num_ws, self.w_dim), "ws")
            if truncation_psi != 1:
                ws = self.mapping.w_avg.lerp(ws, truncation_psi)
            styles = self.styles_from_wplus(ws)
        else:
            if z is not None:
                w = self.map(z, truncation_psi)
            elif truncation_psi != 1:
                self._check_latent(w, (self.w_dim,), "w")
                w = self.mapping.w_avg.lerp(w, truncation_psi)
            styles = self.styles_from_w(w)
        return self.synthesis_from_styles(styles, noise_mode, generator, clamp=clamp)

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, noise_mode: NoiseMode = "const",
                generator: torch.Generator | None = None) -> torch.Tensor:
        """``generate(z, ...)``: images (N, 3, H, W) in [0, 1]."""
        return self.generate(z, truncation_psi=truncation_psi, noise_mode=noise_mode, generator=generator)


def build_stylegan2(config: dict) -> StyleGAN2Generator:
    """A generator from a ``config`` dict (``"arch": "stylegan2"`` plus constructor kwargs)."""
    cfg = dict(config)
    if cfg.pop("arch", "stylegan2") != "stylegan2":
        raise InputError(f"expected a config with arch 'stylegan2', got {config.get('arch')!r}")
    return StyleGAN2Generator(**cfg)


def load_stylegan2(path: str | os.PathLike, device: str | torch.device = "cpu") -> StyleGAN2Generator:
    """Load a converted generator: ``NAME.safetensors`` with its ``NAME.json`` sidecar (``config``).

    ``path`` is a file, or a weight name in the local store. Returns the model in eval mode.

    Raises:
        InputError: no sidecar config, or the tensors do not fit the config.
    """
    from pathlib import Path

    from ..io import load_safetensors
    from .checkpoint import BUILD_ERRORS, build_error_summary, read_sidecar, state_dict_mismatch

    p = Path(path)
    if not p.is_file():
        from ..weights import resolve

        p = resolve(str(path))
    sidecar = p.with_suffix(".json")
    if not sidecar.is_file():
        raise InputError(f"{p}: no {sidecar.name} beside it with the generator's config; convert the network "
                         f"with `genrestore weights convert G.pkl G.safetensors` (or "
                         f"genrestore.models.stylegan2_convert.convert_stylegan2), which writes both")
    config = read_sidecar(p)["config"]
    try:
        net = build_stylegan2(config)
    except BUILD_ERRORS as e:
        raise InputError(f"{sidecar}: not a generator sidecar with a valid 'config' ({build_error_summary(e)})") from None
    state = load_safetensors(p)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise InputError(f"{p}: tensors do not match the config {config}: {state_dict_mismatch(e)}") from None
    return net.to(device).eval()
