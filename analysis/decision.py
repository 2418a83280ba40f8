"""The InfoMin verdict: five outcomes decided on effect sizes between points, with thresholds
declared in the spec (``analysis.min_effect`` = delta, ``analysis.alpha``), never tuned per run.

Why effect sizes and not a trend test: a curve that rises and then stays flat has no word in a
monotone test (Spearman), so its verdict flips with the seed whenever p sits near 0.05. Here
every outcome names a shape and is backed by confidence intervals of differences between point
means, and an equivalence test gives "flat" a positive meaning.

Points. Trials are grouped by point (``groups``: the replicates of one point share it); a
point's accuracy is the mean of its replicates, its MI the mean of theirs. Points are ordered by
MI (ties by name). The *maximal-MI point* is the last (the views share most, e.g. identical
views), the *minimal-MI point* the first. The *peak point* is the interior point (neither end)
with the highest mean of the ranking values: the validation accuracy of the same probe when
``select`` is given (selection reads validation), else the fitted accuracy itself (ties: the
lower MI). A peak at an end is no peak: such a curve is monotone or nothing.

Effects, each a difference of two point means of the fitted (test) accuracy with a 1 - alpha
CI from the replicates: the pooled replicate SD over all points (``analysis.noise.pooled_sd``,
sum(n_i - 1) degrees of freedom), SE = sd * sqrt(1/n_a + 1/n_b), a t quantile. A CI cannot be
formed when one of its two points has a single trial, or when no point has two.

- rise = peak - maximal-MI point (accuracy gained by views that share less than the most);
- fall = peak - minimal-MI point (accuracy lost by the views that share least);
- end-to-end = maximal-MI point - minimal-MI point (> 0: accuracy grows with MI).

An effect is *significant* when its CI excludes 0 on the stated side; the fall is *within
+-delta* when both one-sided tests of TOST reject at alpha (``tost_p`` < alpha, i.e. its
1 - 2 alpha CI lies inside (-delta, delta)). *Two lines* (Simonsohn 2018): a line through the
trials of the points from the minimal-MI one to the peak, and one through those from the peak
to the maximal-MI one (the peak point in both); each is significant when its slope has the
reverse-U's sign (rising with MI below the peak, falling above it) with two-sided p < alpha.

Order of the checks (the first that holds decides):

1. fewer than 3 points with distinct MI, or the rise, fall or end-to-end CI cannot be formed:
   ``inconclusive``, saying which;
2. ``plateau``: a significant rise, and a fall within +-delta by TOST. A fall that is
   significant but also within +-delta is too small to matter, so this check comes first;
3. ``reverse_u``: a significant rise, a significant fall, and both two lines significant;
4. ``increasing``: the end-to-end CI lies above 0 and the rise is not significant (no interior
   point stands above the maximal-MI end); ``decreasing``: the end-to-end CI lies below 0 and the
   fall is not significant (no interior point stands above the minimal-MI end);
5. ``inconclusive``, with the reasons of the checks that failed.

Each reason is a whole sentence that reads right alone. The peak is chosen from the data, which
makes a rise and a fall look a little larger than they are when there is no effect at all; the
tests on pure noise (``tests/test_decision.py``) measure how often a shape is then called.

Stability: the replicates of every point are resampled with replacement (the points, and so the
design, stay fixed), the whole rule including the choice of the peak is rerun on each resample,
and ``stability`` reports the share of resamples that give the same verdict. Deterministic: the
resamples come from a fixed seed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from analysis.noise import pooled_sd

OUTCOMES = ("reverse_u", "plateau", "increasing", "decreasing", "inconclusive")
STABILITY_SEED = 0


@dataclass(frozen=True)
class Rule:
    """The spec's thresholds (``analysis.min_effect``, ``analysis.alpha``)."""

    min_effect: float = 0.01
    alpha: float = 0.05


DEFAULT_RULE = Rule()


@dataclass(frozen=True)
class Points:
    """Trials grouped by point and ordered by MI (see the module docstring)."""

    names: list[str]
    mi: np.ndarray
    mean: np.ndarray  # fitted accuracy, mean of the replicates
    rank: np.ndarray  # what picks the peak: validation means, else ``mean``
    n: np.ndarray
    members: list[np.ndarray]  # trial indices of each point
    sd: float | None  # pooled replicate SD
    df: int


# --------------------------------------------------------------------------- pure statistics


def contrast(mean_a: float, n_a: int, mean_b: float, n_b: int, sd: float | None, df: int,
             alpha: float) -> dict[str, Any]:
    """a - b with its 1 - alpha t CI from the pooled SD; ``ci`` None when it cannot be formed."""
    out: dict[str, Any] = {"mean": float(mean_a - mean_b), "ci": None, "se": None, "df": df}
    if sd is None or n_a < 2 or n_b < 2:
        return out
    se = sd * np.sqrt(1 / n_a + 1 / n_b)
    half = float(stats.t.ppf(1 - alpha / 2, df)) * se
    out.update(ci=[float(out["mean"] - half), float(out["mean"] + half)], se=float(se))
    return out


def tost_p(diff: float, se: float, df: int, delta: float) -> float:
    """Two one-sided t tests of H0: |true difference| >= delta; a small p shows it lies within
    +-delta. The larger of the two one-sided p-values."""
    if se == 0:
        return 0.0 if abs(diff) < delta else 1.0
    p_above_minus = float(stats.t.sf((diff + delta) / se, df))  # H0: diff <= -delta
    p_below_plus = float(stats.t.cdf((diff - delta) / se, df))  # H0: diff >= +delta
    return max(p_above_minus, p_below_plus)


def line(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """OLS slope and its two-sided p; p None with fewer than 2 distinct x or 3 trials."""
    if np.unique(x).size < 2 or x.size < 3:
        return {"n": int(x.size), "slope": None, "p": None}
    if np.ptp(y) == 0:
        return {"n": int(x.size), "slope": 0.0, "p": 1.0}
    fit = stats.linregress(x, y)
    return {"n": int(x.size), "slope": float(fit.slope), "p": float(fit.pvalue)}


# --------------------------------------------------------------------------- points


def resample_indices(n: int, n_boot: int, rng: np.random.Generator, groups: np.ndarray | None = None) -> np.ndarray:
    """[n_boot, n] row indices: all trials with replacement, or, with ``groups``, each group's
    own trials with replacement (a stratified bootstrap that keeps every point)."""
    if groups is None:
        return rng.integers(0, n, size=(n_boot, n))
    columns = []
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        columns.append(members[rng.integers(0, members.size, size=(n_boot, members.size))])
    return np.concatenate(columns, axis=1)


def group_points(mi: np.ndarray, acc: np.ndarray, groups: np.ndarray, select: np.ndarray | None = None,
                 idx: np.ndarray | None = None) -> Points:
    """Trials (rows ``idx`` of the arrays, default all) -> points ordered by MI."""
    idx = np.arange(mi.size) if idx is None else idx
    by: dict[str, list[int]] = {}
    for i in idx:
        by.setdefault(str(groups[i]), []).append(int(i))
    names = sorted(by, key=lambda g: (float(np.mean(mi[by[g]])), g))
    members = [np.asarray(by[g]) for g in names]
    mean = np.array([acc[m].mean() for m in members])
    rank = mean if select is None else np.array([select[m].mean() for m in members])
    sd, df = pooled_sd({g: acc[m].tolist() for g, m in zip(names, members)})
    return Points(names, np.array([mi[m].mean() for m in members]), mean, rank,
                  np.array([m.size for m in members]), members, sd, df)


def peak_index(p: Points) -> int | None:
    """The interior point with the highest ranking mean (ties: the lower MI); None without one."""
    if len(p.names) < 3:
        return None
    interior = p.rank[1:-1]
    return 1 + int(np.flatnonzero(interior == interior.max())[0])


# --------------------------------------------------------------------------- the rule


def _effects(p: Points, peak: int, rule: Rule) -> dict[str, dict]:
    def diff(a: int, b: int) -> dict[str, Any]:
        c = contrast(p.mean[a], int(p.n[a]), p.mean[b], int(p.n[b]), p.sd, p.df, rule.alpha)
        return {**c, "from": p.names[b], "to": p.names[a]}

    return {"rise": diff(peak, -1), "fall": diff(peak, 0), "end_to_end": diff(-1, 0)}


def _lines(mi: np.ndarray, acc: np.ndarray, p: Points, peak: int) -> dict[str, dict]:
    low = np.concatenate(p.members[: peak + 1])
    high = np.concatenate(p.members[peak:])
    return {"left": line(mi[low], acc[low]), "right": line(mi[high], acc[high])}


def _above(effect: dict, delta: float) -> bool:
    """Shown above 0: its CI excludes 0 and it is at least delta (smaller effects do not matter)."""
    return effect["ci"] is not None and effect["ci"][0] > 0 and effect["mean"] >= delta


def _below(effect: dict, delta: float) -> bool:
    return effect["ci"] is not None and effect["ci"][1] < 0 and effect["mean"] <= -delta


def _lines_hold(lines: dict, alpha: float) -> bool:
    left, right = lines["left"], lines["right"]
    return (left["p"] is not None and right["p"] is not None and left["slope"] > 0 and right["slope"] < 0
            and left["p"] < alpha and right["p"] < alpha)


def classify(effects: dict, lines: dict, rule: Rule) -> tuple[str, str]:
    """(verdict, the sentence that says why) from the effects; steps 2-5 of the module docstring."""
    rise, fall, end = effects["rise"], effects["fall"], effects["end_to_end"]
    d, delta = rule.min_effect, f"±{rule.min_effect:g}"
    fall_p = tost_p(fall["mean"], fall["se"], fall["df"], rule.min_effect)
    if _above(rise, d) and fall_p < rule.alpha:
        return "plateau", (f"plateau: accuracy rises significantly from the maximal-MI point to the peak, and the "
                           f"fall to the minimal-MI point is within {delta} (TOST p={fall_p:.3g} < {rule.alpha:g})")
    if _above(rise, d) and _above(fall, d) and _lines_hold(lines, rule.alpha):
        return "reverse_u", ("reverse_u: accuracy rises significantly from the maximal-MI point to the peak and "
                             "falls significantly to the minimal-MI point, and both of the two lines are significant")
    if _below(end, d) and not _above(fall, d):
        return "decreasing", ("decreasing: the minimal-MI point is significantly more accurate than the maximal-MI "
                              f"point, and no interior point stands above the minimal-MI end by a shown effect (CI above 0 and at "
                              f"least {d:g})")
    if _above(end, d) and not _above(rise, d):
        return "increasing", ("increasing: the maximal-MI point is significantly more accurate than the minimal-MI "
                              f"point, and no interior point stands above the maximal-MI end by a shown effect (CI above 0 and at "
                              f"least {d:g})")
    return "inconclusive", "inconclusive: " + _why_not(effects, lines, rule, fall_p)


def _why_not(effects: dict, lines: dict, rule: Rule, fall_p: float) -> str:
    rise, fall, end = effects["rise"], effects["fall"], effects["end_to_end"]
    d = rule.min_effect
    if _above(rise, d) and _above(fall, d):
        return ("the rise and the fall are both significant, but the two lines are not both significant "
                "with a reverse-U's signs")
    if _above(rise, d):
        return (f"the rise is significant, but the fall is neither significant nor shown within ±{rule.min_effect:g} "
                f"(TOST p={fall_p:.3g}), and the ends do not differ with a monotone curve between them")
    if _above(fall, d) and not _below(end, d):
        return "the fall is significant but the rise is not, and the maximal-MI end is not significantly above " \
               "the minimal-MI end"
    return "neither the rise nor the end-to-end difference is significant: the curve shows no shape the " \
           "replicates can resolve"


def _insufficient(p: Points, peak: int | None) -> str | None:
    if peak is None or np.unique(p.mi).size < 3:
        return f"inconclusive: the rule needs at least 3 points with distinct view MI (have {np.unique(p.mi).size})"
    if p.sd is None:
        return "inconclusive: no point has two trials, so no CI can be formed (set search.repeats >= 2)"
    single = [p.names[i] for i in sorted({0, peak, len(p.names) - 1}) if p.n[i] < 2]
    if single:
        return (f"inconclusive: the CIs of the rise and the fall cannot be formed: {', '.join(single)} "
                f"{'has' if len(single) == 1 else 'have'} one trial")
    return None


def decide(mi: np.ndarray, acc: np.ndarray, groups: np.ndarray, rule: Rule, select: np.ndarray | None = None,
           idx: np.ndarray | None = None) -> dict[str, Any]:
    """The rule on the trials ``idx`` (default all): verdict, its reason, the effects and the peak."""
    p = group_points(mi, acc, groups, select, idx)
    peak = peak_index(p)
    effects = _effects(p, peak, rule) if peak is not None else None
    lines = _lines(mi, acc, p, peak) if peak is not None else None
    problem = _insufficient(p, peak)
    out = {"peak_point": None if peak is None else p.names[peak], "effects": effects, "lines": lines}
    if problem is not None:
        return {**out, "verdict": "inconclusive", "reason": problem}
    verdict, why = classify(effects, lines, rule)
    return {**out, "verdict": verdict, "reason": why,
            "fall_tost_p": tost_p(effects["fall"]["mean"], effects["fall"]["se"], effects["fall"]["df"],
                                  rule.min_effect)}


def stability(mi: np.ndarray, acc: np.ndarray, groups: np.ndarray, rule: Rule, verdict: str, n_resamples: int,
              select: np.ndarray | None = None, seed: int = STABILITY_SEED) -> dict[str, Any]:
    """Share of within-point resamples of the replicates whose verdict is ``verdict``."""
    rng = np.random.default_rng(seed)
    rows = resample_indices(mi.size, n_resamples, rng, groups)
    counts = Counter(decide(mi, acc, groups, rule, select, idx=r)["verdict"] for r in rows)
    return {"share": counts[verdict] / n_resamples, "n_resamples": n_resamples,
            "verdicts": {v: counts[v] / n_resamples for v in OUTCOMES if counts[v]}}


def effect_reasons(result: dict, rule: Rule) -> list[str]:
    """One sentence per effect, each readable alone."""
    effects = result["effects"]
    if effects is None:
        return []
    words = {"rise": ("rise", "from the maximal-MI point {f} to the peak point {t}"),
             "fall": ("fall", "from the peak point {t} to the minimal-MI point {f}"),
             "end_to_end": ("end-to-end difference", "maximal-MI point {t} minus minimal-MI point {f}")}
    level = f"{1 - rule.alpha:.0%}"
    out = []
    for key, (name, where) in words.items():
        e = effects[key]
        place = where.format(f=e["from"], t=e["to"])
        if e["ci"] is None:
            out.append(f"{name} {e['mean']:+.4f} ({place}): its CI cannot be formed (a point with one trial)")
            continue
        lo, hi = e["ci"]
        if lo > 0 or hi < 0:
            sig = "significant" + ("" if abs(e["mean"]) >= rule.min_effect else
                                   f", but smaller than the smallest effect that matters ({rule.min_effect:g})")
        else:
            sig = "not significant"
        out.append(f"{name} {e['mean']:+.4f}, {level} CI [{lo:+.4f}, {hi:+.4f}] ({place}): {sig}")
    return out
