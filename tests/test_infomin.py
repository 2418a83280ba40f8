"""InfoMin's descriptive statistics: fits match numpy, degenerate inputs never crash, the output is
strict JSON. The verdict rule itself is tested in test_decision.py."""

import json
import math
import warnings

import numpy as np
import pytest
from scipy import stats

from analysis.infomin import (
    analyse,
    bootstrap_peaks,
    f_test_quadratic_vs_linear,
    fit_quadratic,
    peak_ci,
)

N_BOOT = 500  # enough for a stable 95% CI in these tests, and fast


def table(shape, n=20, noise=0.004, seed=0, lo=0.5, hi=4.5):
    rng = np.random.default_rng(seed)
    mi = rng.uniform(lo, hi, n)
    return mi, shape(mi) + rng.normal(0, noise, n)


def reverse_u(mi):
    return 0.80 - 0.03 * (mi - 2.5) ** 2


@pytest.mark.parametrize("n", [0, 1, 3])
def test_too_few_trials(n):
    out = analyse([1.0, 2.0, 3.0][:n], [0.5, 0.6, 0.55][:n])
    assert out["verdict"] == "inconclusive"
    assert out["reasons"] == [f"inconclusive: too few trials (n={n}, need 4)"]
    assert out["rise"] is None and out["fall"] is None and out["stability"] is None
    assert out["quadratic"] is None and out["linear"] is None and out["peak_ci"] is None
    assert out["spearman_mi_acc"] is None and out["pearson_mi_acc"] is None


def test_nan_rows_are_dropped_before_counting():
    out = analyse([1.0, 2.0, float("nan"), 3.0, 4.0], [0.5, float("inf"), 0.6, 0.55, 0.6])
    assert out["n_used"] == 3
    assert out["reasons"][0].startswith("inconclusive: too few trials (n=3")


def test_replicated_trials_without_any_mi_are_inconclusive_not_a_crash():
    """A comparison search (mi.enabled: false, e.g. ring_bounds) has replicates but no MI."""
    nan = float("nan")
    out = analyse([nan] * 6, [0.5, 0.6, 0.55, 0.6, 0.7, 0.65], groups=["a", "a", "b", "b", "c", "c"])
    assert out["verdict"] == "inconclusive" and out["n_used"] == 0


@pytest.mark.parametrize(
    "mi, acc, phrase",
    [
        ([2.0] * 6, [0.1, 0.5, 0.3, 0.2, 0.9, 0.4], "MI is constant"),
        ([1.0, 2.0, 3.0, 4.0, 5.0], [0.5] * 5, "accuracy is constant"),
        ([1.0, 1.0, 2.0, 2.0, 2.0], [0.1, 0.2, 0.3, 0.4, 0.5], "fewer than 3 distinct MI"),
    ],
)
def test_degenerate_inputs_never_crash_or_warn(mi, acc, phrase):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = analyse(mi, acc)
    assert out["verdict"] == "inconclusive"
    assert phrase in out["reasons"][0]
    assert out["quadratic"] is None


def test_fits_match_numpy_polyfit():
    mi, acc = table(reverse_u, n=15, noise=0.02, seed=3)
    quad = fit_quadratic(mi, acc)
    a, b, c = np.polyfit(mi, acc, 2)
    assert (quad["a"], quad["b"], quad["c"]) == pytest.approx((a, b, c), rel=1e-9, abs=1e-12)
    assert quad["peak_mi"] == pytest.approx(-b / (2 * a), rel=1e-9)
    resid = acc - np.polyval([a, b, c], mi)
    assert quad["r2"] == pytest.approx(1 - resid @ resid / np.sum((acc - acc.mean()) ** 2), rel=1e-9)
    out = analyse(mi, acc, n_boot=50)
    slope, intercept = np.polyfit(mi, acc, 1)
    assert out["linear"]["slope"] == pytest.approx(slope, rel=1e-9)
    assert out["linear"]["intercept"] == pytest.approx(intercept, rel=1e-9)
    assert out["pearson_mi_acc"]["r"] == pytest.approx(stats.pearsonr(mi, acc)[0], rel=1e-9)


def test_upward_quadratic_has_no_peak_in_range():
    mi = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    quad = fit_quadratic(mi, (mi - 3) ** 2)
    assert quad["peak_mi"] == pytest.approx(3.0)
    assert quad["a"] > 0 and not quad["peak_in_range"]


def test_f_test_against_slow_reference():
    mi, acc = table(reverse_u, n=10, noise=0.03, seed=5)

    def ssr(deg):
        design = np.array([[m**p for p in range(deg, -1, -1)] for m in mi])
        coef = np.linalg.lstsq(design, acc, rcond=None)[0]
        return sum((acc[i] - design[i] @ coef) ** 2 for i in range(len(mi)))

    f_ref = (ssr(1) - ssr(2)) / (ssr(2) / (len(mi) - 3))
    f, p = f_test_quadratic_vs_linear(mi, acc)
    assert f == pytest.approx(f_ref, rel=1e-7)
    assert p == pytest.approx(1 - stats.f.cdf(f_ref, 1, len(mi) - 3), rel=1e-6)


def test_bootstrap_peaks_match_a_polyfit_loop():
    mi, acc = table(reverse_u, n=12, noise=0.02, seed=7)
    peaks = bootstrap_peaks(mi, acc, n_boot=40, seed=11)
    idx = np.random.default_rng(11).integers(0, mi.size, size=(40, mi.size))
    for row, got in zip(idx, peaks):
        if np.unique(mi[row]).size < 3:
            assert math.isnan(got)
            continue
        a, b, _ = np.polyfit(mi[row], acc[row], 2)
        if a >= 0:
            assert math.isnan(got)
        else:
            assert got == pytest.approx(-b / (2 * a), rel=1e-6, abs=1e-9)


def test_peak_ci_counts_missing_peaks_as_unbounded():
    finite = np.arange(1.0, 101.0)  # 100 peaks 1..100
    assert peak_ci(finite)[0] == [3.0, 98.0]  # order statistics, rounded outwards
    one_missing = finite.copy()
    one_missing[50] = np.nan
    (lo, hi), frac = peak_ci(one_missing)
    assert lo is not None and hi is not None and frac == pytest.approx(0.01)
    many_missing = finite.copy()
    many_missing[:10] = np.nan
    assert peak_ci(many_missing)[0] == [None, None]


def test_output_is_strict_json_and_deterministic():
    mi, acc = table(reverse_u, n=8, noise=0.01, seed=1)
    groups = [str(i % 4) for i in range(8)]
    mi = np.array([1.0, 2.0, 3.0, 4.0] * 2)
    a = analyse(mi, acc, groups=groups, n_boot=100, seed=4, stability_resamples=30)
    assert a == analyse(list(mi), list(acc), groups=groups, n_boot=100, seed=4, stability_resamples=30)
    json.dumps(a, allow_nan=False)
    assert json.loads(json.dumps(a))["verdict"] in {"reverse_u", "plateau", "increasing", "decreasing", "inconclusive"}
    assert a["stability"]["n_resamples"] == 30 and a["rise"]["ci"] is not None


def test_only_finished_finite_undiverged_trials_are_used():
    """Diverged trials say nothing about the views, only about the optimiser: counting them as
    low-accuracy points would plant a fake trend (the report's filter, ``Trial.usable``)."""
    from analysis.report import Trial

    def trial(status="FINISHED", **metrics):
        return Trial("r", "r", status, {}, {"mi_nats": 1.0, "linear_acc": 0.5, "val_linear_acc": 0.5, **metrics})

    assert trial().usable
    assert not trial(diverged=1.0).usable
    assert not trial(mi_nats=float("nan")).usable and trial(mi_nats=float("nan")).scored  # a point, not the fit
    assert not trial(diverged=1.0).scored
    assert not trial(status="KILLED").usable
    assert not Trial("r", "r", "FINISHED", {}, {"mi_nats": 1.0, "linear_acc": 0.5}).usable  # no validation probe
