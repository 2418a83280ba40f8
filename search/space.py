"""Spec -> Ray Tune: the search space, the search algorithm and the trial scheduler.

The param space holds only the searched knobs, keyed by their dotted names
(``{"views.strength": tune.uniform(0, 1)}``): a trial's ``config`` is then exactly "the point
this trial is" (plus ``trainer.seed`` for replicates, ``search/replicates.py``), which is what the
end-of-search table, the run names and the searcher's own state need. The constants travel
separately (``tune.with_parameters``) and ``trainers.validation.point_config`` merges the two and
validates the result.
"""

from __future__ import annotations

from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter, SearchAlgorithm
from ray.tune.search.optuna import OptunaSearch

from search.generator import CaughtUpGrid, CaughtUpSearch
from search.replicates import SEED_KEY, Replicated, replicate_seeds
from search.spec import Spec


def tune_domain(dom: dict) -> Any:
    """One spec domain -> the Tune domain that samples exactly the same set.

    ``{int: [a, b]}`` is inclusive of ``b`` (as a user reads it) while ``tune.randint`` excludes
    its upper bound, hence ``b + 1``; Ray's Optuna bridge maps that back to ``suggest_int(a, b)``.
    """
    kind, args = next(iter(dom.items()))
    if kind == "uniform":
        return tune.uniform(float(args[0]), float(args[1]))
    if kind == "loguniform":
        return tune.loguniform(float(args[0]), float(args[1]))
    if kind == "int":
        return tune.randint(int(args[0]), int(args[1]) + 1)
    if kind == "choice":
        return tune.choice(list(args))
    if kind == "grid":
        return tune.grid_search(list(args))
    raise ValueError(f"unknown domain kind {kind!r}")


def param_space(spec: Spec) -> dict[str, Any]:
    """Dotted key -> Tune domain, for every searched knob (grid for algorithm grid)."""
    space = {}
    for key, dom in spec.domains.items():
        kind, args = next(iter(dom.items()))
        if spec.search.algorithm == "grid" and kind == "choice":
            dom = {"grid": args}
        space[key] = tune_domain(dom)
    if seeds_as_grid(spec):
        space[SEED_KEY] = tune.grid_search(replicate_seeds(spec.train.trainer.seed, spec.search.repeats))
    return space


def seeds_as_grid(spec: Spec) -> bool:
    """Replicates without a model-based searcher are one more grid dimension: the seeds."""
    return spec.search.repeats > 1 and (spec.search.algorithm == "grid" or not spec.domains)


def tune_num_samples(spec: Spec) -> int:
    """Tune's ``num_samples``: passes over the grid (seeds included), or one per trial (points x replicates)."""
    s = spec.search
    return s.num_samples if s.algorithm == "grid" or seeds_as_grid(spec) else s.num_samples * s.repeats


def total_trials(spec: Spec) -> int:
    """How many trials the search runs, for the progress line."""
    n = tune_num_samples(spec)
    for dom in spec.domains.values():
        kind, args = next(iter(dom.items()))
        if kind == "grid" or (kind == "choice" and spec.search.algorithm == "grid"):
            n *= len(args)
    return n * (spec.search.repeats if seeds_as_grid(spec) else 1)


def search_algorithm(spec: Spec) -> SearchAlgorithm:
    """Optuna TPE (seeded, at most ``max_concurrent`` open) or Tune's own generator.

    A spec without domains has nothing for TPE to model, so it gets the plain generator, which
    repeats the single point ``num_samples`` times (useful for seed studies).
    """
    s = spec.search
    if s.algorithm == "optuna" and spec.domains:
        searcher = OptunaSearch(seed=s.seed)
        if s.repeats > 1:
            searcher = Replicated(searcher, s.repeats, spec.train.trainer.seed)
        return CaughtUpSearch(ConcurrencyLimiter(searcher, max_concurrent=s.max_concurrent))
    return CaughtUpGrid(max_concurrent=s.max_concurrent, random_state=s.seed)


def scheduler(spec: Spec) -> TrialScheduler:
    """ASHA on the per-epoch metric (rungs in epochs, ``max_t`` = the longest training), or FIFO."""
    s = spec.search
    if s.scheduler == "asha":
        return ASHAScheduler(
            time_attr="epoch",
            max_t=spec.max_epochs(),
            grace_period=s.grace_period,
            reduction_factor=s.reduction_factor,
        )
    return FIFOScheduler()
