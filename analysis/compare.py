"""Ring against uniform negatives: the difference in linear accuracy, with a confidence interval.

Trials are grouped into arms by (method, ring setting); the accuracy compared is the test split's
(a reported measurement: the comparison selects nothing). Every ring arm of a method is compared with
that method's uniform arm (``lower=0, upper=1``, no annealing). When both arms ran the same seeds
the difference is paired by seed (the seeds share the initialisation and the data order, so pairing
removes most of the seed-to-seed noise); otherwise it is the difference of means with Welch's
standard error. The interval is Student-t at 95%: with 3 seeds it is wide, as it should be.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from scipy import stats


@dataclass(frozen=True)
class ArmRow:
    method: str
    lower: float
    upper: float
    anneal: str
    seed: int
    linear_acc: float

    @property
    def arm(self) -> str:
        if self.is_uniform:
            return "uniform"
        tail = f", anneal {self.anneal}" if self.anneal != "none" else ""
        return f"ring [{self.lower:g}, {self.upper:g}]{tail}"

    @property
    def is_uniform(self) -> bool:
        return self.lower == 0.0 and self.upper == 1.0  # annealing from 1.0 to 1.0 changes nothing


def _t_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def welch_interval(a: list[float], b: list[float], level: float = 0.95) -> tuple[float, float, float]:
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    diff = ma - mb
    if len(a) < 2 or len(b) < 2:
        return diff, math.nan, math.nan
    va = sum((x - ma) ** 2 for x in a) / (len(a) - 1) / len(a)
    vb = sum((x - mb) ** 2 for x in b) / (len(b) - 1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.5 + level / 2, dof) * se
    return diff, diff - half, diff + half


def ring_vs_uniform(rows: list[ArmRow]) -> list[dict]:
    """One entry per (method, ring arm): mean and 95% CI of ring minus uniform linear accuracy."""
    arms: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for r in rows:
        arms[(r.method, r.arm)][r.seed] = r.linear_acc
    out = []
    for (method, arm), by_seed in sorted(arms.items()):
        base = arms.get((method, "uniform"))
        if arm == "uniform" or not base:
            continue
        common = sorted(set(by_seed) & set(base))
        if len(common) >= 2 and len(common) == len(by_seed) == len(base):
            mean, lo, hi = _t_interval([by_seed[s] - base[s] for s in common])
            how = "paired by seed"
        else:
            mean, lo, hi = welch_interval(list(by_seed.values()), list(base.values()))
            how = "Welch"
        out.append({
            "method": method, "arm": arm, "n_ring": len(by_seed), "n_uniform": len(base),
            "ring_mean": sum(by_seed.values()) / len(by_seed), "uniform_mean": sum(base.values()) / len(base),
            "diff_mean": mean, "ci95": [lo, hi], "test": how,
            # the smallest ring - uniform difference these replicates could call non-zero at 95%
            "resolvable": (hi - lo) / 2 if math.isfinite(lo) and math.isfinite(hi) else math.nan,
        })
    return out
