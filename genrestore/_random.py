"""Seeded randomness that does not depend on batch size, shard or device.

Library functions take ``generator``, which may be:

* ``None``: torch's global generator (not reproducible unless the caller seeds it);
* one ``torch.Generator``: the whole batch is drawn from it, in one call per quantity;
* a sequence of ``torch.Generator``, one per image: image ``i`` draws only from
  ``generator[i]``, so its result is the same whatever batch it is in.

Everything is drawn on the generator's device (CPU unless a CUDA generator is given) and
then moved, so the same seed gives the same bytes on CPU and GPU.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Union

import torch

from ._checks import InputError

Generator = Union[torch.Generator, Sequence[torch.Generator], None]


def seed_for(seed: int, key: str) -> int:
    """A 63-bit seed derived from a base seed and a stable key such as a file name.

    Example:
        >>> seed_for(0, "a.png") == seed_for(0, "a.png") != seed_for(1, "a.png")
        True
    """
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator_for(seed: int, key: str = "") -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`seed_for` ``(seed, key)``."""
    return torch.Generator().manual_seed(seed_for(seed, key))


def check_generator(generator: Generator, n: int | None = None) -> None:
    """Raise :class:`InputError` unless ``generator`` is ``None``, a ``torch.Generator`` or a
    sequence of them (a seed or a string is not a generator: ``generator_for(seed)`` makes one),
    of ``n`` (one per image) when ``n`` is given."""
    ok = generator is None or isinstance(generator, torch.Generator) or (
        isinstance(generator, Sequence) and not isinstance(generator, (str, bytes))
        and all(g is None or isinstance(g, torch.Generator) for g in generator))
    if not ok:
        raise InputError(f"expected generator as a torch.Generator, a list of them (one per image) or None, got "
                         f"{type(generator).__name__}; genrestore._random.generator_for(seed) makes one from a seed")
    if n is not None and isinstance(generator, Sequence) and len(generator) != n:
        raise InputError(f"expected {n} generators (one per image), got {len(generator)}")


def _check_count(generator: Generator, n: int) -> None:
    check_generator(generator, n)


def _device_of(g: torch.Generator | None) -> torch.device:
    """Where a generator draws; ``None`` (torch's global generator) draws on the CPU."""
    return torch.device("cpu") if g is None else g.device


def _draw(fn, generator: Generator, shape: Sequence[int], device, dtype) -> torch.Tensor:
    """Call ``fn(shape, generator=g)`` for the batch, or once per image for a list of generators."""
    n = shape[0]
    _check_count(generator, n)
    if isinstance(generator, Sequence):  # drawn on each generator's device (a CUDA one draws on CUDA)
        out = torch.stack([fn(tuple(shape[1:]), generator=g, dtype=dtype, device=_device_of(g)).to(device)
                           for g in generator]) if n else torch.empty(tuple(shape), dtype=dtype)
    else:
        out = fn(tuple(shape), generator=generator, dtype=dtype, device=getattr(generator, "device", "cpu"))
    return out.to(device)


def rand(generator: Generator, shape: Sequence[int], device=None, dtype=torch.float32) -> torch.Tensor:
    """Uniform [0, 1) samples of ``shape``; ``shape[0]`` is the batch."""
    return _draw(torch.rand, generator, shape, device, dtype)


def randn(generator: Generator, shape: Sequence[int], device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard normal samples of ``shape``; ``shape[0]`` is the batch."""
    return _draw(torch.randn, generator, shape, device, dtype)


def randint(generator: Generator, n: int, low: int, high: int, device=None) -> torch.Tensor:
    """``(n,)`` int64 samples, uniform in ``[low, high)`` (``high`` excluded)."""
    return (low + (rand(generator, (n,), dtype=torch.float64) * (high - low)).floor().long()).to(device)


def poisson(rates: torch.Tensor, generator: Generator) -> torch.Tensor:
    """Poisson samples with the given rates ``(N, ...)``, drawn per image when ``generator`` is a list."""
    _check_count(generator, rates.shape[0])
    rates_cpu = rates.detach().to("cpu" if not isinstance(generator, torch.Generator) else generator.device)
    if isinstance(generator, Sequence):
        out = torch.stack([torch.poisson(r, generator=g) for r, g in zip(rates_cpu, generator)])
    else:
        out = torch.poisson(rates_cpu, generator=generator)
    return out.to(device=rates.device, dtype=rates.dtype)


def fork(generator: Generator) -> Generator:
    """A new generator (or one per image, for a list) seeded by one draw from ``generator``.

    For draws whose count depends on the data (CPU ``torch.poisson`` uses a variable number of
    uniforms per sample): made on a fork, they leave ``generator`` in a state that depends only
    on its seed, so whatever is drawn from it afterwards is the same for any image.
    ``None`` gives ``None`` (torch's global generator).
    """
    check_generator(generator)
    if generator is None:
        return None
    gens = list(generator) if isinstance(generator, Sequence) else [generator]
    forks = [None if g is None else torch.Generator(g.device).manual_seed(
        int(torch.randint(1 << 62, (1,), generator=g, device=g.device))) for g in gens]  # None: the global one
    return forks if isinstance(generator, Sequence) else forks[0]


def per_image(generator: Generator, n: int) -> list[torch.Generator | None]:
    """One generator (or ``None``) per image, for code that loops over images.

    A single generator is shared by every image, which is then drawn from in order.
    """
    _check_count(generator, n)
    if isinstance(generator, Sequence):
        return list(generator)
    return [generator] * n
