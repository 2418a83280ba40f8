"""The noise floor of a search with replicates: what differences between points it can resolve.

A point of the space trained with k seeds gives k accuracies. From all points together:

- the replicate SD ``s``: the pooled within-point standard deviation,
  ``s^2 = sum_i (k_i - 1) s_i^2 / sum_i (k_i - 1)``, on ``df = sum_i (k_i - 1)`` degrees of freedom
  (pooling assumes the seed noise is about the same at every point, which is what lets three or
  four replicates per point give a usable estimate);
- each point's 95% CI: ``mean +- t(0.975, df) * s / sqrt(k)`` with the pooled ``s`` (and, for
  reference, with the point's own SD on ``k - 1`` df);
- the smallest difference two points can show at 95%: ``t(0.975, df) * s * sqrt(1/k_a + 1/k_b)``,
  given for the typical (median) number of replicates;
- the test split's binomial standard error ``sqrt(p (1 - p) / n)``: the sampling noise of one
  accuracy on ``n`` test images. All points share the test images, so it shifts them together
  and does not enter their differences; it says how far the absolute numbers could move on
  another test set of the same size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import median
from typing import Any

from scipy import stats


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _sd(values: Sequence[float]) -> float | None:
    if len(values) < 2:
        return None
    m = _mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def pooled_sd(groups: Mapping[str, Sequence[float]]) -> tuple[float | None, int]:
    """(pooled within-group SD, its degrees of freedom); None when no group has 2 values."""
    df = sum(len(v) - 1 for v in groups.values() if len(v) >= 2)
    if df == 0:
        return None, 0
    ss = sum(sum((x - _mean(v)) ** 2 for x in v) for v in groups.values() if len(v) >= 2)
    return math.sqrt(ss / df), df


def t95(df: int) -> float:
    return float(stats.t.ppf(0.975, df))


def point_summaries(groups: Mapping[str, Sequence[float]]) -> dict[str, dict[str, Any]]:
    """Per point: n, mean, own SD, and 95% CI half-widths (pooled and own)."""
    s, df = pooled_sd(groups)
    out = {}
    for key, values in groups.items():
        k, own = len(values), _sd(values)
        out[key] = {
            "n": k,
            "mean": _mean(values),
            "sd": own,
            "half_width_pooled": t95(df) * s / math.sqrt(k) if s is not None else None,
            "half_width_own": t95(k - 1) * own / math.sqrt(k) if own is not None else None,
        }
    return out


def noise_floor(groups: Mapping[str, Sequence[float]], n_test: int | None = None) -> dict[str, Any]:
    """The search-level figures of the module docstring (None where they cannot be computed)."""
    s, df = pooled_sd(groups)
    all_values = [x for v in groups.values() for x in v]
    p = _mean(all_values) if all_values else None
    k = median(len(v) for v in groups.values()) if groups else None
    resolvable = t95(df) * s * math.sqrt(2 / k) if s is not None and k else None
    spread = None
    if len(groups) >= 2:
        means = [_mean(v) for v in groups.values()]
        spread = max(means) - min(means)
    return {
        "replicate_sd": s,
        "replicate_df": df,
        "replicates_per_point": k,
        "ci_half_width_pooled": t95(df) * s / math.sqrt(k) if s is not None and k else None,
        "resolvable_difference": resolvable,
        "point_mean_spread": spread,
        "test_binomial_se": math.sqrt(p * (1 - p) / n_test) if p is not None and n_test else None,
        "n_test_images": n_test,
    }
