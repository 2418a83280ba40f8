"""Does downstream accuracy peak at an intermediate view MI? Pure statistics on (MI, accuracy).

InfoMin (Tian et al., 2020) predicts a reverse-U: accuracy rises as views share less
information, up to a sweet spot, then falls. A quadratic that happens to bend is not evidence
of that, so ``analyse`` asks for all of the following before it says ``reverse_u``:

1. the least-squares quadratic acc = a*mi^2 + b*mi + c opens downward (a < 0);
2. its vertex, peak_mi = -b / (2a), lies inside the observed MI range [min, max];
3. the peak's 95% bootstrap CI lies inside that range too (see "Peak CI" below);
4. the quadratic fits significantly better than a line: nested-model F-test,
   F = (SSR_line - SSR_quad) / (SSR_quad / (n - 3)) on (1, n - 3) degrees of freedom, p < 0.05;
5. "two lines" (Simonsohn 2018, "Two lines: a valid alternative to the invalid testing of
   U-shaped relationships with quadratic regressions"): a line fitted to the trials with
   mi <= peak_mi rises and one fitted to those with mi >= peak_mi falls, each with one-sided
   p < 0.05 and at least 3 trials per side. Conditions 1-4 alone call a plateau a reverse-U:
   accuracy that rises with diminishing returns (0.9 - 0.3 e^{-mi}) gets a concave quadratic
   with a confident in-range vertex and a significant F-test, but nothing actually falls.

Otherwise, a significant monotone trend (Spearman p < 0.05) gives ``increasing`` (rho > 0) or
``decreasing`` (rho < 0); anything else is ``inconclusive``. ``reasons`` lists each check's outcome
in words, so a reader sees why.

Replicates: when trials come in groups (the seeds of one point, ``groups``), every trial is an
observation of the fits and tests above, and the bootstrap resamples *within* each point (its
replicates, with replacement) rather than across points, so the design (which MI values were
measured) stays fixed and only the seed noise is resampled. The reasons then also compare the
spread of the point means with the smallest difference the replicates can resolve
(``analysis/noise.py``): a spread below it means no two points are told apart.

Peak CI: trials are resampled with replacement ``n_boot`` times and the quadratic refitted. A
resample whose fit has a >= 0 (or fewer than 3 distinct MI values) has no peak at all. Dropping
those would make the CI look tighter than the data allow, so they are counted as peaks at
-infinity for the lower percentile and at +infinity for the upper one: the CI is the 2.5% / 97.5%
order statistics of that extended sample (rounded outwards, no interpolation). If more than 2.5%
of resamples have no peak, the corresponding end is unbounded and reported as ``None``;
``peak_ci_no_peak_frac`` says how often it happened. A ``None`` end never qualifies as inside.

Degenerate inputs never crash and never produce a made-up fit: rows with a non-finite MI or
accuracy are dropped (``n_used`` counts the rest); fewer than ``min_trials`` rows, a constant MI,
a constant accuracy or fewer than 3 distinct MI values give ``inconclusive`` with ``None`` for the
fits that cannot be made, and a reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

ALPHA = 0.05
VERDICTS = ("reverse_u", "increasing", "decreasing", "inconclusive")


def _clean(
    mi: Sequence[float], acc: Sequence[float], groups: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    x = np.asarray(mi, dtype=float).ravel()
    y = np.asarray(acc, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"mi and acc must have the same length, got {x.size} and {y.size}")
    g = None if groups is None else np.asarray([str(v) for v in groups])
    if g is not None and g.shape != x.shape:
        raise ValueError(f"groups must have one entry per trial, got {g.size} for {x.size}")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep], (None if g is None else g[keep])


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


def _one_sided_slope(x: np.ndarray, y: np.ndarray, sign: int) -> dict[str, Any]:
    """OLS slope and one-sided p-value for H1: sign * slope > 0 (None if fewer than 3 distinct x)."""
    if np.unique(x).size < 3:
        return {"n": int(x.size), "slope": None, "p": None}
    if np.ptp(y) == 0:
        return {"n": int(x.size), "slope": 0.0, "p": 1.0}
    fit = stats.linregress(x, y)
    p_two = float(fit.pvalue)
    p = p_two / 2 if sign * fit.slope > 0 else 1 - p_two / 2
    return {"n": int(x.size), "slope": float(fit.slope), "p": p}


def two_lines(x: np.ndarray, y: np.ndarray, peak: float) -> dict[str, dict[str, Any]]:
    """Separate lines below and above the peak: the reverse-U needs a rise, then a fall."""
    return {
        "left": _one_sided_slope(x[x <= peak], y[x <= peak], +1),
        "right": _one_sided_slope(x[x >= peak], y[x >= peak], -1),
    }


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


def _empty(n: int, reason: str) -> dict[str, Any]:
    return {
        "n_used": n,
        "spearman_mi_acc": None,
        "pearson_mi_acc": None,
        "quadratic": None,
        "linear": None,
        "peak_ci": None,
        "peak_ci_no_peak_frac": None,
        "two_lines": None,
        "verdict": "inconclusive",
        "reasons": [reason],
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


def _two_lines_check(lines: dict | None) -> tuple[bool, str]:
    if lines is None:
        return False, "two-lines test not applicable (no peak inside the range)"
    left, right = lines["left"], lines["right"]
    if left["p"] is None or right["p"] is None:
        return False, f"two-lines test needs 3 distinct MI values per side (have {left['n']} | {right['n']} trials)"
    ok = left["p"] < ALPHA and right["p"] < ALPHA
    return ok, (
        f"two lines: slope {left['slope']:.3g} below the peak (one-sided p={left['p']:.3g}), "
        f"{right['slope']:.3g} above it (p={right['p']:.3g}) -> {'rise then fall' if ok else 'no clear rise then fall'}"
    )


def _reverse_u_checks(
    quad: dict, ci: list, no_peak: float, f_p: float | None, lines: dict | None, lo: float, hi: float
) -> list:
    """(passed, reason) for each of the five reverse-U conditions."""
    a, peak = quad["a"], quad["peak_mi"]
    ci_inside = ci[0] is not None and ci[1] is not None and lo <= ci[0] and ci[1] <= hi
    ci_text = f"[{ci[0]}, {ci[1]}]" if None in ci else f"[{ci[0]:.3g}, {ci[1]:.3g}]"
    return [
        (a < 0, f"quadratic {'opens downward' if a < 0 else 'does not open downward'} (a={a:.3g})"),
        (
            quad["peak_in_range"],
            f"vertex at MI={peak:.3g} {'inside' if quad['peak_in_range'] else 'not a maximum inside'} "
            f"the observed range [{lo:.3g}, {hi:.3g}]"
            if peak is not None
            else "quadratic has no vertex (a=0)",
        ),
        (
            ci_inside,
            (
                f"peak 95% bootstrap CI {ci_text} {'inside' if ci_inside else 'not inside'} the range "
                f"({no_peak:.0%} of resamples had no peak)"
            ),
        ),
        (
            f_p is not None and f_p < ALPHA,
            f"quadratic vs line F-test p={f_p:.3g}" if f_p is not None else "F-test not possible (n < 4)",
        ),
        _two_lines_check(lines),
    ]


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
    mi: Sequence[float], acc: Sequence[float], *, groups: Sequence[str] | None = None, n_boot: int = 2000,
    seed: int = 0, min_trials: int = 4,
) -> dict[str, Any]:
    """The data-derived summary.json fields and an InfoMin verdict with its reasons (see module doc).

    ``groups`` names the point each trial belongs to (its replicates share it)."""
    x, y, g = _clean(mi, acc, groups)
    g = _replicate_groups(g)
    problem = _degenerate(x, y, min_trials)
    if problem is not None:
        return _empty(x.size, problem)
    spearman, pearson = _correlations(x, y)
    quad, linear = fit_quadratic(x, y), fit_linear(x, y)
    f_stat, f_p = f_test_quadratic_vs_linear(x, y)
    quad.update(f_stat=f_stat, f_p=f_p)
    ci, no_peak = peak_ci(bootstrap_peaks(x, y, n_boot, seed, g))
    lines = two_lines(x, y, quad["peak_mi"]) if quad["peak_in_range"] else None
    checks = _reverse_u_checks(quad, ci, no_peak, f_p, lines, float(x.min()), float(x.max()))
    reasons = [text for _, text in checks]
    trend = spearman["p"] < ALPHA
    reasons.append(f"Spearman rho={spearman['rho']:.3g}, p={spearman['p']:.3g} ({'' if trend else 'not '}significant)")
    failed = [i + 1 for i, (ok, _) in enumerate(checks) if not ok]
    if not failed:
        verdict = "reverse_u"
    elif trend:
        verdict = "increasing" if spearman["rho"] > 0 else "decreasing"
    else:
        verdict = "inconclusive"
    why = (
        "all 5 reverse-U conditions hold"
        if not failed
        else f"reverse-U fails condition(s) {', '.join(map(str, failed))} of 5"
    )
    trend_why = "" if not failed else ("; monotone trend significant" if trend else "; no significant monotone trend")
    reasons.insert(0, f"{verdict}: {why}{trend_why}")
    if g is not None:
        reasons.append(_resolution_reason(y, g))
    return {
        "n_used": int(x.size),
        "spearman_mi_acc": spearman,
        "pearson_mi_acc": pearson,
        "quadratic": quad,
        "linear": linear,
        "peak_ci": ci,
        "peak_ci_no_peak_frac": no_peak,
        "two_lines": lines,
        "bootstrap": "within points (replicates)" if g is not None else "trials",
        "verdict": verdict,
        "reasons": reasons,
    }


def diverged_filter(
    rows: Sequence[Mapping[str, Any]], mi_key: str = "mi_nats", acc_key: str = "linear_acc"
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """Split trial rows into (used, excluded): excluded ones diverged or lack a finite MI/accuracy.

    Diverged trials say nothing about the views, only about the optimiser; counting them as
    low-accuracy points would plant a fake trend.
    """
    used, excluded = [], []
    for row in rows:
        finite = _finite(row.get(mi_key)) and _finite(row.get(acc_key))
        (used if finite and not row.get("diverged") else excluded).append(row)
    return used, excluded


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
