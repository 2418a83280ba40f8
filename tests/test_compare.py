"""Ring-vs-uniform differences against hand-computed t intervals."""

import math

import pytest
from scipy import stats

from analysis.compare import ArmRow, ring_vs_uniform


def rows(method, lower, upper, accs, anneal="none"):
    return [ArmRow(method, lower, upper, anneal, seed, acc) for seed, acc in enumerate(accs)]


def test_paired_difference_and_interval():
    data = rows("simclr", 0.0, 1.0, [0.80, 0.82, 0.81]) + rows("simclr", 0.01, 0.1, [0.83, 0.84, 0.85])
    [res] = ring_vs_uniform(data)
    diffs = [0.03, 0.02, 0.04]
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert res["arm"] == "ring [0.01, 0.1]" and res["test"] == "paired by seed"
    assert res["diff_mean"] == pytest.approx(mean)
    assert res["ci95"] == pytest.approx([mean - half, mean + half])


def test_methods_are_compared_only_with_their_own_uniform_arm():
    data = (
        rows("simclr", 0.0, 1.0, [0.8, 0.8])
        + rows("moco", 0.0, 1.0, [0.7, 0.7])
        + rows("moco", 0.0, 0.1, [0.75, 0.77], anneal="linear")
        + rows("ir", 0.01, 0.1, [0.6, 0.6])  # no uniform arm for ir: not compared
    )
    res = ring_vs_uniform(data)
    assert [(r["method"], r["arm"]) for r in res] == [("moco", "ring [0, 0.1], anneal linear")]
    assert res[0]["diff_mean"] == pytest.approx(0.06)


def test_unpaired_arms_use_welch():
    data = rows("ir", 0.0, 1.0, [0.5, 0.6, 0.7]) + [ArmRow("ir", 0.01, 0.1, "none", s, a) for s, a in ((5, 0.7), (6, 0.8))]
    [res] = ring_vs_uniform(data)
    assert res["test"] == "Welch" and res["diff_mean"] == pytest.approx(0.15)
    welch = stats.ttest_ind([0.7, 0.8], [0.5, 0.6, 0.7], equal_var=False)
    # the interval excludes 0 exactly when Welch's test rejects at 5%
    assert (res["ci95"][0] > 0) == (welch.pvalue < 0.05)
