"""Does downstream accuracy peak at an intermediate view MI? Pure statistics on (MI, accuracy).

InfoMin (Tian et al., 2020) predicts that accuracy rises as the views share less information, up
to a sweet spot, and then falls once the views lose what the task needs. ``analyse`` returns
the verdict of ``analysis/decision.py`` (five outcomes on effect sizes between points: the rise,
the fall, TOST against the spec's delta, two lines at the peak point; its docstring gives the
order of the checks) with the share of seed resamples that agree, and beside it descriptive
numbers that decide nothing:

- Spearman and Pearson correlations of MI and accuracy over the trials;
- the least-squares line and quadratic acc = a*mi^2 + b*mi + c, its vertex (``peak_mi``),
  whether that vertex is a maximum inside the observed MI range, and the nested-model F-test,
  F = (SSR_line - SSR_quad) / (SSR_quad / (n - 3)) on (1, n - 3) degrees of freedom;
- the vertex's 95% bootstrap CI ("Peak CI" below).

Replicates: when trials come in groups (the seeds of one point, ``groups``), every trial is an
observation of the fits above, and the bootstrap resamples *within* each point (its replicates,
with replacement) rather than across points, so the design (which MI values were measured)
stays fixed and only the seed noise is resampled. The reasons then also compare the spread of
the point means with the smallest difference the replicates can resolve (``analysis/noise.py``).

Peak CI: trials are resampled with replacement ``n_boot`` times and the quadratic refitted. A
resample whose fit has a >= 0 (or fewer than 3 distinct MI values) has no peak at all. Dropping
those would make the CI look tighter than the data allow, so they are counted as peaks at
-infinity for the lower percentile and at +infinity for the upper one: the CI is the 2.5% / 97.5%
order statistics of that extended sample (rounded outwards, no interpolation). If more than 2.5%
of resamples have no peak, the corresponding end is unbounded and reported as ``None``;
``peak_ci_no_peak_frac`` says how often it happened.

Degenerate inputs never crash and never produce a made-up fit: rows with a non-finite MI or
accuracy are dropped (``n_used`` counts the rest); fewer than ``min_trials`` rows, a constant MI,
a constant accuracy or fewer than 3 distinct MI values give ``inconclusive`` with ``None`` for the
fits that cannot be made, and a reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from analysis.decision import DEFAULT_RULE, Rule, decide, effect_reasons, resample_indices, stability


def _clean(
    mi: Sequence[float], acc: Sequence[float], groups: Sequence[str] | None = None,
    select: Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    x = np.asarray(mi, dtype=float).ravel()
    y = np.asarray(acc, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"mi and acc must have the same length, got {x.size} and {y.size}")
    g = None if groups is None else np.asarray([str(v) for v in groups])
    if g is not None and g.shape != x.shape:
        raise ValueError(f"groups must have one entry per trial, got {g.size} for {x.size}")
    v = None if select is None else np.asarray(select, dtype=float).ravel()
    if v is not None and v.shape != x.shape:
        raise ValueError(f"select must have one entry per trial, got {v.size} for {x.size}")
    keep = np.isfinite(x) & np.isfinite(y) & (True if v is None else np.isfinite(v))
    return x[keep], y[keep], (None if g is None else g[keep]), (None if v is None else v[keep])


def _r2(y: np.ndarray, fitted: np.ndarray) -> float:
    sst = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - fitted) ** 2)) / sst


def fit_linear(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    slope, intercept = np.polyfit(x, y, 1)
    return {"slope": float(slope), "intercept": float(intercept), "r2": _r2(y, slope * x + intercept)}


def fit_quadratic(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Least-squares quadratic, its vertex and whether that vertex is a maximum inside the data."""
    a, b, c = (float(v) for v in np.polyfit(x, y, 2))
    peak = -b / (2 * a) if a != 0 else None
    return {
        "a": a,
        "b": b,
        "c": c,
        "r2": _r2(y, np.polyval([a, b, c], x)),
        "peak_mi": peak,
        "peak_in_range": bool(a < 0 and peak is not None and x.min() <= peak <= x.max()),
    }


def f_test_quadratic_vs_linear(x: np.ndarray, y: np.ndarray) -> tuple[float | None, float | None]:
    """Nested-model F-test (1, n-3 dof): does the squared term explain significantly more?"""
    n = x.size
    if n < 4:
        return None, None
    ssr_lin = float(np.sum((y - np.polyval(np.polyfit(x, y, 1), x)) ** 2))
    ssr_quad = float(np.sum((y - np.polyval(np.polyfit(x, y, 2), x)) ** 2))
    gain = max(ssr_lin - ssr_quad, 0.0)
    if ssr_quad <= 1e-15 * max(ssr_lin, 1e-300):
        return (None, 0.0) if gain > 0 else (None, 1.0)  # exact quadratic: F is infinite (not JSON)
    f = gain / (ssr_quad / (n - 3))
    return f, float(stats.f.sf(f, 1, n - 3))


def bootstrap_peaks(x: np.ndarray, y: np.ndarray, n_boot: int, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Vertex of the quadratic refitted on each resample of trials; NaN where there is no peak.

    All resamples are fitted at once through 3x3 normal equations on standardised MI (the
    vertex is mapped back), which is what makes 2000 resamples cheap.
    """
    rng = np.random.default_rng(seed)
    idx = resample_indices(x.size, n_boot, rng, groups)
    mu, sd = x.mean(), x.std()
    t, yy = (x[idx] - mu) / sd, y[idx]
    powers = [np.sum(t**p, axis=1) for p in range(5)]
    xtx = np.stack(
        [np.stack([powers[4], powers[3], powers[2]], -1),
         np.stack([powers[3], powers[2], powers[1]], -1),
         np.stack([powers[2], powers[1], powers[0]], -1)], axis=1,
    )  # fmt: skip
    xty = np.stack([np.sum(t**2 * yy, 1), np.sum(t * yy, 1), np.sum(yy, 1)], -1)
    distinct = 1 + np.sum(np.diff(np.sort(t, axis=1), axis=1) > 1e-12, axis=1)
    ok = distinct >= 3
    coef = np.full((n_boot, 3), np.nan)
    coef[ok] = np.linalg.solve(xtx[ok], xty[ok][..., None])[..., 0]
    a, b = coef[:, 0], coef[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        peaks = np.where(ok & (a < 0), mu + sd * (-b / (2 * a)), np.nan)
    return peaks


def peak_ci(peaks: np.ndarray, level: float = 0.95) -> tuple[list[float | None], float]:
    """Percentile CI counting no-peak resamples as unbounded (see module docstring)."""
    none = np.isnan(peaks)
    tail = (1 - level) / 2
    lo = float(np.quantile(np.where(none, -np.inf, peaks), tail, method="lower"))
    hi = float(np.quantile(np.where(none, np.inf, peaks), 1 - tail, method="higher"))
    return [lo if math.isfinite(lo) else None, hi if math.isfinite(hi) else None], float(none.mean())


def _correlations(x: np.ndarray, y: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
    rho, p_s = stats.spearmanr(x, y)
    r, p_p = stats.pearsonr(x, y)
    return {"rho": float(rho), "p": float(p_s)}, {"r": float(r), "p": float(p_p)}


def _empty(n: int, reason: str, rule: Rule) -> dict[str, Any]:
    return {
        "n_used": n,
        "stability": None,
        "min_effect": rule.min_effect,
        "alpha": rule.alpha,
        "peak_point": None,
        "rise": None,
        "fall": None,
        "end_to_end": None,
        "fall_tost_p": None,
        "spearman_mi_acc": None,
        "pearson_mi_acc": None,
        "quadratic": None,
        "linear": None,
        "peak_ci": None,
        "peak_ci_no_peak_frac": None,
        "two_lines": None,
        "verdict": "inconclusive",
        "reasons": [f"inconclusive: {reason}"],
    }


def _degenerate(x: np.ndarray, y: np.ndarray, min_trials: int) -> str | None:
    if x.size < min_trials:
        return f"too few trials (n={x.size}, need {min_trials})"
    if np.ptp(x) == 0:
        return f"MI is constant across trials ({x[0]:.4g} nats): nothing to correlate"
    if np.ptp(y) == 0:
        return f"accuracy is constant across trials ({y[0]:.4g}): nothing to correlate"
    if np.unique(x).size < 3:
        return "fewer than 3 distinct MI values: a quadratic cannot be fitted"
    return None


def _replicate_groups(g: np.ndarray | None) -> np.ndarray | None:
    """Groups only count as replicates when every point has at least two trials."""
    if g is None or g.size == 0:  # no trial with a finite MI (mi.enabled: false)
        return None
    _, counts = np.unique(g, return_counts=True)
    return g if counts.min() >= 2 else None


def _resolution_reason(y: np.ndarray, g: np.ndarray) -> str:
    from analysis.noise import noise_floor

    groups = {key: list(y[g == key]) for key in np.unique(g)}
    floor = noise_floor(groups)
    spread, resolvable = floor["point_mean_spread"], floor["resolvable_difference"]
    if spread is None or resolvable is None:
        return "noise floor: not enough replicates to estimate it"
    verdict = "below" if spread < resolvable else "above"
    return (f"noise floor: the point means span {spread:.4f}, {verdict} the smallest difference two points can "
            f"show at 95% ({resolvable:.4f}, from a pooled replicate SD of {floor['replicate_sd']:.4f})"
            + ("; no two points are told apart" if spread < resolvable else ""))


def analyse(
    mi: Sequence[float], acc: Sequence[float], *, groups: Sequence[str] | None = None,
    select: Sequence[float] | None = None, rule: Rule = DEFAULT_RULE, stability_resamples: int = 200,
    n_boot: int = 2000, seed: int = 0, min_trials: int = 4,
) -> dict[str, Any]:
    """The data-derived summary.json fields: the verdict of ``analysis.decision`` with its effects,
    reasons and stability, and the descriptive fits (see the module docstring).

    ``groups`` names the point each trial belongs to (its replicates share it; without it every
    trial is a point of its own and no CI can be formed); ``select`` is each trial's validation
    accuracy, which picks the peak point (rows where it is not finite are dropped)."""
    x, y, g, v = _clean(mi, acc, groups, select)
    problem = _degenerate(x, y, min_trials)
    if problem is not None:
        return _empty(x.size, problem, rule)
    spearman, pearson = _correlations(x, y)
    quad, linear = fit_quadratic(x, y), fit_linear(x, y)
    f_stat, f_p = f_test_quadratic_vs_linear(x, y)
    quad.update(f_stat=f_stat, f_p=f_p)
    replicated = _replicate_groups(g)
    ci, no_peak = peak_ci(bootstrap_peaks(x, y, n_boot, seed, replicated))
    points = g if g is not None else np.asarray([str(i) for i in range(x.size)])
    result = decide(x, y, points, rule, v)
    stable = None
    if result["effects"] is not None and result["effects"]["rise"]["ci"] is not None:
        stable = stability(x, y, points, rule, result["verdict"], stability_resamples, v)
    reasons = [result["reason"], *effect_reasons(result, rule)]
    if result["effects"] is not None and result["effects"]["fall"]["se"] is not None:
        reasons.append(f"fall within ±{rule.min_effect:g} by TOST: p={result['fall_tost_p']:.3g} "
                       f"({'shown' if result['fall_tost_p'] < rule.alpha else 'not shown'} at alpha {rule.alpha:g})")
    if result["lines"] is not None:
        reasons.append(_lines_reason(result["lines"], result["peak_point"]))
    if replicated is not None:
        reasons.append(_resolution_reason(y, replicated))
    return {
        "n_used": int(x.size),
        "verdict": result["verdict"],
        "stability": stable,
        "min_effect": rule.min_effect,
        "alpha": rule.alpha,
        "peak_point": result["peak_point"],
        **{k: None if result["effects"] is None else result["effects"][k] for k in ("rise", "fall", "end_to_end")},
        "fall_tost_p": result.get("fall_tost_p"),
        "two_lines": result["lines"],
        "reasons": reasons,
        "spearman_mi_acc": spearman,
        "pearson_mi_acc": pearson,
        "quadratic": quad,
        "linear": linear,
        "peak_ci": ci,
        "peak_ci_no_peak_frac": no_peak,
        "bootstrap": "within points (replicates)" if replicated is not None else "trials",
    }


def _lines_reason(lines: dict, peak: str) -> str:
    def side(line: dict, where: str, sign: str) -> str:
        if line["p"] is None:
            return f"{where}: too few trials for a line ({line['n']})"
        return f"{where} slope {line['slope']:+.3g} per nat (two-sided p={line['p']:.3g}; a reverse-U needs {sign})"

    return (f"two lines at the peak point {peak}: " + side(lines["left"], "from the minimal-MI point up to it", "> 0")
            + "; " + side(lines["right"], "from it up to the maximal-MI point", "< 0"))
