"""Intervals over seeds: the mean with its 95% t-interval, and the difference of two means.

A seed is one draw of everything random in a run (initialization, data order, augmentation), so
the runs of one configuration are a sample and their mean has Student's t-interval
``mean +- t(0.975, n - 1) s / sqrt(n)``. Two configurations are compared by Welch's interval for
the difference of their means, which does not assume equal variances:
``(a - b) +- t(0.975, nu) sqrt(s_a^2 / n_a + s_b^2 / n_b)`` with the Welch-Satterthwaite ``nu``.
A difference is called significant when its interval excludes 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

LEVEL = 0.95


def _clean(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def t_halfwidth(values: Sequence[float], level: float = LEVEL) -> float:
    """Half the width of the t-interval of the mean; NaN below two values (no spread to measure)."""
    xs = _clean(values)
    n = len(xs)
    if n < 2:
        return math.nan
    mean = sum(xs) / n
    s = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    return stats.t.ppf(0.5 + level / 2, n - 1) * s / math.sqrt(n)


@dataclass(frozen=True)
class Difference:
    diff: float  # mean(a) - mean(b)
    half: float  # half-width of its interval (NaN when either side has fewer than 2 values)
    n_a: int
    n_b: int

    @property
    def significant(self) -> bool:
        return math.isfinite(self.half) and abs(self.diff) > self.half

    def __str__(self) -> str:
        ci = "" if math.isnan(self.half) else f" ± {self.half:.2f}"
        return f"{self.diff:+.2f}{ci}"


def welch(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Difference:
    """Welch's interval for mean(a) - mean(b)."""
    a, b = _clean(a), _clean(b)
    if not a or not b:
        return Difference(math.nan, math.nan, len(a), len(b))
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    if len(a) < 2 or len(b) < 2:
        return Difference(ma - mb, math.nan, len(a), len(b))
    va = sum((x - ma) ** 2 for x in a) / (len(a) - 1) / len(a)
    vb = sum((x - mb) ** 2 for x in b) / (len(b) - 1) / len(b)
    if va + vb == 0:  # identical runs: no spread, the difference is exact
        return Difference(ma - mb, 0.0, len(a), len(b))
    nu = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return Difference(ma - mb, stats.t.ppf(0.5 + level / 2, nu) * math.sqrt(va + vb), len(a), len(b))
