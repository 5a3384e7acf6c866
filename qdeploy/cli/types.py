"""Option types shared by the commands: numbers with their allowed range
(click reports a value outside it as a usage error, one line)."""
from __future__ import annotations

import math

import click


class FiniteFloat(click.FloatRange):
    """A float in a range that is also finite (``nan``, ``inf`` refused)."""

    name = "finite float"

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv

    def _describe_range(self) -> str:   # unbounded: no "[x<=None]" in --help
        return "" if self.min is None and self.max is None else super()._describe_range()


POSITIVE = click.IntRange(min=1)              # --limit, --batch-size
SEED = click.IntRange(min=0)                  # --seed
PIXEL = click.IntRange(0, 255)                # --pad
PERCENTILE = FiniteFloat(50, 100, min_open=True)  # --percentile: keep [100-p, p]
POINTS = FiniteFloat(0, 100)                      # --max-drop (percentage points)
DECIBELS = FiniteFloat()                          # --min-sqnr
