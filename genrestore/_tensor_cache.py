"""A cache for functions that build constant tensors (filter taps, resampling and DCT matrices)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch


def tensor_cache(maxsize: int) -> Callable:
    """``functools.lru_cache`` for a function of hashable arguments that returns a constant tensor.

    The tensor is always built outside inference mode: one first built under
    ``torch.inference_mode()`` (a bench run, a metric) would be an inference tensor, which autograd
    refuses to save for backward when the same process later needs a gradient through it (a loss).
    """
    def wrap(fn: Callable) -> Callable:
        @functools.lru_cache(maxsize=maxsize)
        @functools.wraps(fn)
        def cached(*args):
            with torch.inference_mode(False):
                return fn(*args)

        return cached

    return wrap
