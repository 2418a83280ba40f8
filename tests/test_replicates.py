"""Replicates: the Replicated searcher, point ids, the seed grid, and the statistics built on them."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import yaml
from ray.tune.search import Searcher

from analysis.infomin import analyse, resample_indices
from analysis.noise import noise_floor, point_summaries, pooled_sd
from search import space
from search.replicates import Replicated, point_id, point_values, replicate_seeds
from search.spec import validate_spec
from tests.conftest import TINY_SPEC

GOOD = yaml.safe_load(TINY_SPEC)


class Scripted(Searcher):
    """A searcher that suggests x = 0, 1, 2, ... and records what it is told."""

    def __init__(self):
        super().__init__(metric="m", mode="max")
        self.n, self.told = 0, []

    def suggest(self, trial_id):
        self.n += 1
        return {"x": self.n - 1}

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.told.append((trial_id, result, error))


def test_each_point_is_handed_out_repeats_times_with_disjoint_seeds():
    inner = Scripted()
    rep = Replicated(inner, repeats=3, base_seed=2)
    configs = [rep.suggest(f"t{i}") for i in range(6)]
    assert [c["x"] for c in configs] == [0, 0, 0, 1, 1, 1]
    assert [c["trainer.seed"] for c in configs] == [6, 7, 8, 6, 7, 8]
    assert replicate_seeds(0, 3) == [0, 1, 2] and replicate_seeds(1, 3) == [3, 4, 5]  # never shared
    assert inner.n == 2  # the wrapped searcher was asked once per point


def test_the_searcher_sees_the_mean_of_a_points_replicates_once():
    inner = Scripted()
    rep = Replicated(inner, repeats=3, base_seed=0)
    for i in range(3):
        rep.suggest(f"t{i}")
    rep.on_trial_complete("t0", {"m": 0.5})
    rep.on_trial_complete("t1", {"m": 0.7})
    assert inner.told == []  # not before the last replicate
    rep.on_trial_complete("t1", {"m": 0.9})  # a duplicate completion changes nothing
    rep.on_trial_complete("t2", {"m": float("nan")})  # a replicate without the metric drops out of the mean
    assert inner.told == [("t0", {"m": pytest.approx(0.6)}, False)]


def test_a_point_whose_replicates_all_failed_is_an_error():
    inner = Scripted()
    rep = Replicated(inner, repeats=2, base_seed=0)
    rep.suggest("a"), rep.suggest("b")
    rep.on_trial_complete("a", error=True)
    rep.on_trial_complete("b", {"other": 1.0})
    assert inner.told == [("a", None, True)]


def test_state_survives_a_restore():
    rep = Replicated(Scripted(), repeats=2, base_seed=0)
    rep.suggest("a")
    again = Replicated(Scripted(), repeats=2, base_seed=0)
    again.set_state(pickle.loads(pickle.dumps(rep.get_state())))
    assert again.suggest("b") == {"x": 0, "trainer.seed": 1}  # the pending replicate is still pending


def test_point_ids_ignore_the_seed_only():
    a = {"views.strength": 0.5, "trainer.seed": 0}
    assert point_id(a) == point_id({"trainer.seed": 7, "views.strength": 0.5})
    assert point_id(a) != point_id({"views.strength": 0.6, "trainer.seed": 0})
    assert point_values(a) == {"views.strength": 0.5}


def test_grid_repeats_are_a_seed_dimension_and_optuna_repeats_wrap_the_searcher():
    from ray.tune.search import ConcurrencyLimiter

    grid = validate_spec({**GOOD, "views": {"strength": {"grid": [0.2, 0.8]}}, "negatives": {},
                          "trainer": {**GOOD["trainer"], "seed": 1},
                          "search": {"algorithm": "grid", "repeats": 3, "num_samples": 1}})
    assert space.param_space(grid)["trainer.seed"] == {"grid_search": [3, 4, 5]}
    assert space.total_trials(grid) == 6 and space.tune_num_samples(grid) == 1
    tpe = validate_spec({**GOOD, "search": {"num_samples": 4, "repeats": 2}})
    alg = space.search_algorithm(tpe)
    assert isinstance(alg.searcher, ConcurrencyLimiter) and isinstance(alg.searcher.searcher, Replicated)
    assert space.tune_num_samples(tpe) == 8 == space.total_trials(tpe)


# ----------------------------------------------------------------------------- noise floor, by hand


def test_pooled_sd_and_noise_floor_against_hand_computed_values():
    groups = {"a": [0.80, 0.82, 0.84], "b": [0.70, 0.71, 0.72, 0.73]}
    # within-group sums of squares: a: 0.02^2 + 0 + 0.02^2 = 0.0008; b: 1.5^2+.5^2+.5^2+1.5^2 = 5 (x 1e-4)
    ss, df = 0.0008 + 0.0005, 2 + 3
    s, got_df = pooled_sd(groups)
    assert got_df == df and s == pytest.approx(math.sqrt(ss / df))
    t = 2.570581836  # t(0.975, 5)
    floor = noise_floor(groups, n_test=10_000)
    k = 3.5  # median replicates per point
    assert floor["resolvable_difference"] == pytest.approx(t * s * math.sqrt(2 / k), rel=1e-6)
    assert floor["ci_half_width_pooled"] == pytest.approx(t * s / math.sqrt(k), rel=1e-6)
    assert floor["point_mean_spread"] == pytest.approx(0.82 - 0.715)
    p = (0.80 + 0.82 + 0.84 + 0.70 + 0.71 + 0.72 + 0.73) / 7
    assert floor["test_binomial_se"] == pytest.approx(math.sqrt(p * (1 - p) / 10_000))
    points = point_summaries(groups)
    assert points["a"]["mean"] == pytest.approx(0.82) and points["a"]["half_width_pooled"] == pytest.approx(t * s / math.sqrt(3))
    assert points["b"]["half_width_own"] == pytest.approx(3.182446305 * math.sqrt(0.0005 / 3) / 2, rel=1e-6)


def test_noise_floor_without_replicates_says_none():
    floor = noise_floor({"a": [0.8], "b": [0.7]})
    assert floor["replicate_sd"] is None and floor["resolvable_difference"] is None


def test_stratified_bootstrap_keeps_every_point_and_its_size():
    groups = np.array(["a", "a", "b", "b", "b", "c", "c"])
    idx = resample_indices(7, 500, np.random.default_rng(0), groups)
    assert idx.shape == (500, 7)
    for row in idx[:50]:
        assert sorted(groups[row]) == sorted(groups)  # each resample holds 2 a's, 3 b's, 2 c's


def test_verdict_with_replicates_names_the_resolution():
    rng = np.random.default_rng(1)
    mi = np.repeat(np.linspace(0.5, 4.5, 8), 3)
    acc = 0.85 - 0.02 * (mi - 2.5) ** 2 + rng.normal(0, 0.003, mi.size)
    out = analyse(mi, acc, groups=[f"{m:.2f}" for m in mi])
    assert out["verdict"] == "reverse_u" and out["bootstrap"] == "within points (replicates)"
    assert any("above the smallest difference" in r for r in out["reasons"])
    same = np.tile([-0.003, 0.0, 0.003], 8)  # every point has the same replicates: equal means
    flat = analyse(mi, 0.8 + same, groups=[f"{m:.2f}" for m in mi])
    assert any("no two points are told apart" in r for r in flat["reasons"])
