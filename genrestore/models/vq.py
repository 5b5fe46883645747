"""The two stages of Taming Transformers as DiffGAR §3.1-3.2 uses them: a VQ autoencoder (VQGAN's
encoder E, codebook Z and decoder D) and an autoregressive transformer over its token grid.

* :class:`VQAutoencoder` wraps diffusers' ``VQModel`` (encoder, nearest-neighbour codebook lookup,
  decoder): ``encode_tokens(x) -> (N, h, w)`` codebook indices, ``decode_tokens(s) -> x``. The
  image side must be a multiple of :attr:`VQAutoencoder.factor` (``2^(blocks - 1)``).
* :class:`TokenTransformer` is a decoder-only (GPT-style) transformer on the raster-order token
  sequence with a start token, built from ``torch.nn.TransformerEncoderLayer`` with a causal mask;
  :meth:`TokenTransformer.sample` continues a prefix with temperature and top-k sampling.

Both save and load as safetensors + JSON (:class:`~genrestore.models.checkpoint.SavedModel`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import InputError
from .._random import Generator, rand
from .checkpoint import SavedModel, in_module_dtype

VQ_ARCH = "vq-autoencoder"
GPT_ARCH = "token-transformer"


class VQAutoencoder(nn.Module, SavedModel):
    """A VQGAN-style autoencoder: images in ``[0, 1]`` <-> a grid of codebook indices.

    Args:
        codebook_size: ``K``, the number of codes.
        embed_dim: ``d``, the dimension of a code.
        block_out_channels: encoder widths; ``len - 1`` downsamplings, so ``factor = 2^(len - 1)``.
        layers_per_block: ResNet layers per block.
        norm_num_groups: GroupNorm groups (must divide every width).
        mid_attention: self-attention in the encoder's and decoder's middle blocks (VQGAN's). Without
            it the autoencoder is convolutional apart from GroupNorm's per-image statistics: cheaper,
            and nothing global over the latent grid to learn on small crops.

    Example:
        >>> vq = VQAutoencoder(16, 4, (8, 16), norm_num_groups=4)
        >>> s = vq.encode_tokens(torch.rand(1, 3, 8, 8))
        >>> s.shape, vq.decode_tokens(s).shape
        (torch.Size([1, 4, 4]), torch.Size([1, 3, 8, 8]))
    """

    arch = VQ_ARCH

    def __init__(self, codebook_size: int = 512, embed_dim: int = 4, block_out_channels=(64, 128, 128, 256),
                 layers_per_block: int = 1, norm_num_groups: int = 32, mid_attention: bool = True):
        super().__init__()
        from ..diffusion.schedulers import require_diffusers

        d = require_diffusers()
        boc = [int(c) for c in block_out_channels]
        self.config: dict[str, Any] = {"arch": VQ_ARCH, "codebook_size": codebook_size, "embed_dim": embed_dim,
                                       "block_out_channels": boc, "layers_per_block": layers_per_block,
                                       "norm_num_groups": norm_num_groups}
        if not mid_attention:  # kept out of the config when on, so earlier configs load unchanged
            self.config["mid_attention"] = False
        self.vq = d.VQModel(in_channels=3, out_channels=3, block_out_channels=tuple(boc),
                            down_block_types=("DownEncoderBlock2D",) * len(boc),
                            up_block_types=("UpDecoderBlock2D",) * len(boc), layers_per_block=layers_per_block,
                            latent_channels=embed_dim, num_vq_embeddings=codebook_size, vq_embed_dim=embed_dim,
                            norm_num_groups=norm_num_groups, sample_size=32, mid_block_add_attention=mid_attention)
        self.factor = 2 ** (len(boc) - 1)
        self.codebook_size = codebook_size


    def _check(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` checked, in the network's dtype (e.g. float64 images are encoded in float32)."""
        from .._checks import check_image

        check_image(x, "x", channels=(3,))
        if x.shape[-2] % self.factor or x.shape[-1] % self.factor:
            raise InputError(f"expected sides that are multiples of {self.factor}, got {tuple(x.shape[-2:])} "
                             "(pad first: genrestore.restore.idm.pad_to_multiple)")
        return in_module_dtype(self, x)

    def nearest_codes(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z_q, tokens)`` for latents ``z`` ``(N, d, h, w)``: the nearest codebook entries
        (straight-through) and their ``(N, h, w)`` indices.

        Distances are taken in float64. diffusers' quantizer takes them in float32 through
        ``torch.cdist``, whose rounding picks a code that is not the nearest at near-ties and differs
        with the thread count (6 of 49,152 tokens of 48 crops between 1 and 2 threads); in float64
        the encoder's own rounding (~4e-7) no longer moves any of them."""
        codebook = self.vq.quantize.embedding.weight
        e = codebook.detach().double()
        flat = z.detach().permute(0, 2, 3, 1).reshape(-1, z.shape[1]).double()
        half_norms = 0.5 * (e * e).sum(1)
        idx = torch.cat([(half_norms - c @ e.t()).argmin(1)  # |c - e|^2 / 2 less the row's constant |c|^2 / 2
                         for c in flat.split(1 << 14)]) if flat.numel() else flat.new_zeros(0, dtype=torch.long)
        tokens = idx.view(z.shape[0], *z.shape[-2:])
        z_q = F.embedding(tokens, codebook).permute(0, 3, 1, 2).to(z.dtype)
        return z + (z_q - z).detach(), tokens

    def quantize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z_e, z_q, tokens)``: encoder output, its nearest codes (straight-through), ``(N, h, w)`` indices."""
        x = self._check(x)
        z_e = self.vq.encode(x * 2 - 1).latents
        z_q, tokens = self.nearest_codes(z_e)
        return z_e, z_q, tokens

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` in ``[0, 1]`` -> ``(N, d, H/f, W/f)`` encoder output ``z_e`` before
        quantization (the space latent diffusion works in; LDM §3)."""
        x = self._check(x)
        return self.vq.encode(x * 2 - 1).latents

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Latents ``(N, d, h, w)`` -> ``(N, 3, h f, w f)`` images in ``[0, 1]``: quantized to the
        nearest codes, then decoded (the VQ layer absorbed into the decoder, as in LDM)."""
        return self.decode_codes(self.nearest_codes(z)[0]).clamp(0, 1)

    def encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` in ``[0, 1]`` -> ``(N, H/f, W/f)`` int64 codebook indices."""
        return self.quantize(x)[2]

    def decode_codes(self, z_q: torch.Tensor) -> torch.Tensor:
        """Quantized latents ``(N, d, h, w)`` -> ``(N, 3, h f, w f)`` images (unclamped, ~``[0, 1]``)."""
        return (self.vq.decode(z_q, force_not_quantize=True).sample + 1) / 2

    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(N, h, w)`` int64 indices -> ``(N, 3, h f, w f)`` images in ``[0, 1]``."""
        if tokens.ndim != 3 or tokens.dtype != torch.long:
            raise InputError(f"expected (N, h, w) int64 tokens, got {tuple(tokens.shape)} {tokens.dtype}")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.codebook_size):
            raise InputError(f"tokens must lie in [0, {self.codebook_size})")
        n, h, w = tokens.shape
        z_q = self.vq.quantize.get_codebook_entry(tokens.reshape(-1), (n, h, w, self.config["embed_dim"]))
        return self.decode_codes(z_q).clamp(0, 1)

    def autoencode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(reconstruction, vq_loss, z_e, tokens)``: :meth:`forward` with the encoder output
        ``(N, d, h, w)`` and the ``(N, h, w)`` indices (for codebook-usage tracking in training)."""
        x = self._check(x)
        z_e = self.vq.encode(x * 2 - 1).latents
        z_q, vq_loss, (_, _, idx) = self.vq.quantize(z_e)
        return self.decode_codes(z_q), vq_loss, z_e, idx.view(x.shape[0], *z_e.shape[-2:])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(reconstruction, vq_loss)``: the VQ-VAE codebook + commitment loss (beta 0.25, diffusers)."""
        return self.autoencode(x)[:2]


class TokenTransformer(nn.Module, SavedModel):
    """A GPT-style autoregressive model of raster-order token sequences (Taming Transformers' stage 2).

    Input position 0 is a start token (index ``vocab_size``); position ``i`` predicts token ``i``.

    Args:
        vocab_size: the codebook size ``K``.
        length: tokens per image, ``h * w``.
        dim, depth, heads: transformer width, layers and attention heads (pre-norm, GELU, 4x MLP).

    Example:
        >>> gpt = TokenTransformer(16, 6, dim=8, depth=1, heads=2)
        >>> gpt(torch.zeros(2, 6, dtype=torch.long)).shape
        torch.Size([2, 6, 16])
    """

    arch = GPT_ARCH

    def __init__(self, vocab_size: int, length: int, dim: int = 256, depth: int = 6, heads: int = 8,
                 dropout: float = 0.0):
        super().__init__()
        self.config: dict[str, Any] = {"arch": GPT_ARCH, "vocab_size": vocab_size, "length": length, "dim": dim,
                                       "depth": depth, "heads": heads, "dropout": dropout}
        self.vocab_size, self.length = vocab_size, length
        self.tok = nn.Embedding(vocab_size + 1, dim)
        self.pos = nn.Parameter(torch.zeros(1, length, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size)
        nn.init.normal_(self.pos, std=0.02)


    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits: ``(N, L)`` int64 tokens -> ``(N, L, K)``, position ``i`` from tokens ``< i``."""
        length = tokens.shape[1]
        h = self._inputs(tokens)
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device)
        return self.head(self.norm(self.blocks(h, mask=causal, is_causal=True)))

    @torch.no_grad()  # not inference_mode: the tokens are the user's, to edit in place or decode for a loss
    def sample(self, tokens: torch.Tensor, keep: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
               generator: Generator = None) -> torch.Tensor:
        """Resample, in raster order, every position where ``keep`` is False; keep the others.

        Each resampled token is drawn from ``softmax(logits / temperature)`` restricted to the
        ``top_k`` most likely codes, given every token before it (kept or already resampled).

        Args:
            tokens: ``(N, L)`` int64.
            keep: ``(N, L)`` or ``(L,)`` bool.
            temperature: > 0 (DiffGAR: 18 / 21 on FFHQ).
            top_k: codes kept per step (DiffGAR: 500); ``None`` or ``>= K`` for all.
            generator: a generator or one per image (one uniform draw per resampled position).

        Returns:
            ``(N, L)`` int64.
        """
        if temperature <= 0:
            raise InputError(f"expected temperature > 0, got {temperature}")
        self._check_length(tokens.shape[1])
        keep = keep.expand_as(tokens).to(tokens.device)
        out = tokens.clone()
        todo_any = (~keep).any(0).nonzero()[:, 0]
        u = rand(generator, out.shape, device=out.device, dtype=torch.float64)  # one draw per position
        if not len(todo_any):
            return out
        first, last = int(todo_any[0]), int(todo_any[-1])
        cache: list = []
        inputs = self._inputs(out[:, :first + 1])  # positions 0..first: the start token, then tokens < first
        logits = self._cached_logits(inputs, cache)[:, -1]
        for i in range(first, last + 1):  # sequential by nature: token i needs tokens < i
            if i > first:  # one more input: token i - 1, final now; the rest is in the cache
                logits = self._cached_logits(self.tok(out[:, i - 1:i]) + self.pos[:, i:i + 1], cache)[:, -1]
            todo = ~keep[:, i]
            if todo.any():
                out[:, i] = torch.where(todo, self._draw(logits, u[:, i], temperature, top_k), out[:, i])
        return out

    def _draw(self, logits: torch.Tensor, u: torch.Tensor, temperature: float, top_k: int | None) -> torch.Tensor:
        """``(N,)`` codes from ``(N, K)`` logits: ``softmax(logits / T)`` over the top ``k`` (codes tied with
        the ``k``-th are kept too), by the inverse CDF at the ``(N,)`` uniforms ``u`` in ``[0, 1)``.

        The CDF runs over the codes in index order, not in order of likelihood: at a high temperature
        the top codes are nearly equally likely, and rounding that differs with the thread count would
        reorder them and so change the draw."""
        k = self.vocab_size if top_k is None else max(1, min(int(top_k), self.vocab_size))
        scaled = logits.double() / temperature
        kth = scaled.topk(k, dim=-1).values[:, -1:]
        cdf = F.softmax(scaled.masked_fill(scaled < kth, float("-inf")), -1).cumsum(-1)
        # u > 0 so that a code left out (flat CDF) is never the first to reach it; < the total for rounding
        target = u[:, None].clamp(min=1e-300).minimum(cdf[:, -1:] - 1e-12)
        return torch.searchsorted(cdf, target)[:, 0]

    def _check_length(self, length: int) -> None:
        if length > self.length:
            raise InputError(f"sequence of {length} tokens; this model knows {self.length} positions")

    def _inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """Embedded inputs ``(N, L, dim)`` for predicting ``(N, L)`` tokens: start token, then tokens shifted by one."""
        n, length = tokens.shape
        self._check_length(length)
        start = torch.full((n, 1), self.vocab_size, dtype=torch.long, device=tokens.device)
        return self.tok(torch.cat([start, tokens[:, :-1]], 1)) + self.pos[:, :length]

    def _cached_logits(self, h: torch.Tensor, cache: list) -> torch.Tensor:
        """Logits ``(N, m, K)`` for ``m`` new input positions ``h`` ``(N, m, dim)`` following those whose
        keys and values are in ``cache`` (one ``(k, v)`` per layer; extended in place). Equal to
        :meth:`forward` on the whole sequence (the pre-norm layers of ``nn.TransformerEncoderLayer``,
        evaluated incrementally: each token's keys and values are computed once)."""
        past = cache[0][0].shape[2] if cache else 0
        m = h.shape[1]
        allowed = torch.ones(m, past + m, dtype=torch.bool, device=h.device).tril(past)  # j <= past + i
        for li, layer in enumerate(self.blocks.layers):
            attn = layer.self_attn
            heads = attn.num_heads
            q, k, v = F.linear(layer.norm1(h), attn.in_proj_weight, attn.in_proj_bias).chunk(3, -1)
            q, k, v = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (q, k, v))  # (N, heads, m, d)
            if li < len(cache):
                k, v = torch.cat([cache[li][0], k], 2), torch.cat([cache[li][1], v], 2)
                cache[li] = (k, v)
            else:
                cache.append((k, v))
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed).transpose(1, 2).flatten(2)
            h = h + attn.out_proj(o)
            h = h + layer.linear2(layer.activation(layer.linear1(layer.norm2(h))))
        return self.head(self.norm(h))

    @property
    def grid(self) -> int:
        """The side of the square token grid this model was trained on (``sqrt(length)``)."""
        side = math.isqrt(self.length)
        if side * side != self.length:
            raise InputError(f"this transformer models {self.length} tokens, not a square grid")
        return side

    @torch.no_grad()  # not inference_mode, as sample
    def sample_grid(self, tokens: torch.Tensor, keep: torch.Tensor, temperature: float = 1.0,
                    top_k: int | None = None, generator: Generator = None) -> torch.Tensor:
        """:meth:`sample` on token grids at least as large as the model's, with a sliding window.

        Each position to resample, in raster order, is drawn given the tokens before it inside the
        model's ``grid x grid`` window centred on it as far as the grid's edges allow (Taming
        Transformers' sampling of images larger than the training crops). On a grid of the model's
        own size the window is the whole grid and this equals :meth:`sample`.

        Args:
            tokens: ``(N, h, w)`` int64 with ``h, w >= grid``.
            keep: ``(N, h, w)`` or ``(h, w)`` bool; False where to resample.
            temperature, top_k, generator: as in :meth:`sample` (one uniform draw per grid position).

        Returns:
            ``(N, h, w)`` int64.
        """
        n, h, w = tokens.shape
        side = self.grid
        if h < side or w < side:
            raise InputError(f"this transformer models {side}x{side} token grids; a {h}x{w} grid is smaller "
                             f"(use images of at least {side} tokens a side)")
        if h == side and w == side:
            keep = keep.expand(n, h, w).reshape(n, -1)
            return self.sample(tokens.reshape(n, -1), keep, temperature, top_k, generator).view(n, h, w)
        if temperature <= 0:
            raise InputError(f"expected temperature > 0, got {temperature}")
        keep = keep.expand(n, h, w).to(tokens.device)
        out = tokens.clone()
        u = rand(generator, (n, h * w), device=out.device, dtype=torch.float64).view(n, h, w)
        for i, j in (~keep).any(0).nonzero().tolist():  # raster order
            top, left = min(max(i - side // 2, 0), h - side), min(max(j - side // 2, 0), w - side)
            local = (i - top) * side + (j - left)
            window = out[:, top:top + side, left:left + side].reshape(n, -1)[:, : local + 1]
            drawn = self._draw(self(window)[:, local], u[:, i, j], temperature, top_k)
            out[:, i, j] = torch.where(~keep[:, i, j], drawn, out[:, i, j])
        return out
