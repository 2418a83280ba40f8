"""Replicates: every point a searcher suggests is trained ``repeats`` times, with different seeds.

Why: at this project's scale one training's accuracy moves by about half a point from seed to
seed, as much as the whole effect a search looks for. A point's replicates share everything but
``trainer.seed``, so the report can average them, give each point a confidence interval and
say which differences the search can resolve.

How each part of Ray Tune sees them:
- Optuna (TPE) sees one observation per point, the mean of its replicates' final search
  metric, reported once the last replicate ends (``Replicated`` below);
- ASHA sees every replicate as a trial of its own and may stop one replicate of a point and not
  another; a stopped replicate has no final probe and drops out of the point's mean;
- a grid search gets the seeds as one more grid dimension (``search/space.py``).

Replicate r of a point trains with seed ``trainer.seed * repeats + r``, so searches started
from different base seeds never share a replicate. The point a trial belongs to is the hash of
its searched values without the seed (``point_id``), tagged on every MLflow run.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from typing import Any

from ray.tune.search import Searcher

SEED_KEY = "trainer.seed"


def replicate_seeds(base_seed: int, repeats: int) -> list[int]:
    return [base_seed * repeats + r for r in range(repeats)]


def point_values(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's searched values without its seed: what its replicates share."""
    return {k: v for k, v in config.items() if k != SEED_KEY}


def point_id(config: dict[str, Any]) -> str:
    """Stable short id of a point (the same for all its replicates, across processes and resumes)."""
    text = json.dumps(point_values(config), sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


class Replicated(Searcher):
    """Wraps a Searcher: each suggestion is handed out ``repeats`` times with the replicate seeds,
    and the wrapped searcher is told the mean of the replicates' results once they are all done."""

    def __init__(self, searcher: Searcher, repeats: int, base_seed: int):
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher = searcher
        self.repeats = repeats
        self.seeds = replicate_seeds(base_seed, repeats)
        self._pending: list[tuple[str, dict, int]] = []  # (point's first trial id, config, replicate)
        self._trial_point: dict[str, str] = {}
        self._results: dict[str, dict[str, dict | None]] = {}  # point -> trial id -> final result

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        ok = self.searcher.set_search_properties(metric, mode, config, **spec)
        self._metric, self._mode = metric or self._metric, mode or self._mode
        return ok

    def suggest(self, trial_id: str) -> dict | str | None:
        if not self._pending:
            config = self.searcher.suggest(trial_id)
            if config is None or config == Searcher.FINISHED:
                return config
            self._pending = [(trial_id, config, r) for r in range(self.repeats)]
            self._results[trial_id] = {}
        point, config, r = self._pending.pop(0)
        self._trial_point[trial_id] = point
        return {**config, SEED_KEY: self.seeds[r]}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Intermediate results are not forwarded: the wrapped searcher models points, not trials."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        point = self._trial_point.get(trial_id)
        if point is None or trial_id in self._results[point]:
            return
        self._results[point][trial_id] = None if error else result
        if len(self._results[point]) < self.repeats:
            return
        values = [r[self._metric] for r in self._results[point].values()
                  if r and isinstance(r.get(self._metric), (int, float)) and math.isfinite(r[self._metric])]
        if values:
            self.searcher.on_trial_complete(point, result={self._metric: sum(values) / len(values)})
        else:
            self.searcher.on_trial_complete(point, error=True)

    # Tune saves a wrapper (anything with ``.searcher``) through get_state / set_state and the
    # wrapped searcher through its own save / restore, as it does for its ConcurrencyLimiter.
    def get_state(self) -> dict:
        return copy.deepcopy({k: v for k, v in self.__dict__.items() if k != "searcher"})

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)
