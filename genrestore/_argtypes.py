"""argparse types for the CLI's numeric options: a bad value is a one-line usage error (exit 2).

Every float type here refuses NaN and infinities, so that a value such as ``--lr nan`` stops the
command before any work is done, instead of training a model full of NaN.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

DEVICE_HELP = "auto (default): CUDA when a GPU is visible, else the CPU; cpu; cuda (refused without a GPU)"


def int_at_least(low: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer >= ``low``; ``what`` names it in the message ("positive")."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or v < low:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}")
        return v
    return parse


def float_in(low: float = -math.inf, high: float = math.inf, *, low_open: bool = False,
             high_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite float in the interval from ``low`` to ``high``.

    ``low_open`` / ``high_open`` exclude the end point. Example: ``float_in(0, low_open=True)``
    takes learning rates (> 0); ``float_in(0, 1, high_open=True)`` takes EMA decays ([0, 1)).
    """
    # an infinite end is never included (the value must be finite), so its bracket is open
    lo_bracket = "(" if low_open or math.isinf(low) else "["
    hi_bracket = ")" if high_open or math.isinf(high) else "]"
    interval = f"{lo_bracket}{low:g}, {high:g}{hi_bracket}"

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        above = v > low if low_open else v >= low
        below = v < high if high_open else v <= high
        if not (math.isfinite(v) and above and below):  # NaN fails every comparison
            raise argparse.ArgumentTypeError(f"expected a finite number in {interval}, got {text!r}")
        return v
    return parse


positive_int = int_at_least(1, "positive")
nonneg_int = int_at_least(0, "non-negative")
positive_float = float_in(0, low_open=True)
nonneg_float = float_in(0)
unit_float = float_in(0, 1)
