"""The trial generators Tune runs, brought up to date with the trials Tune restores on a resume.

Why: Tune saves a search as two files, written one after the other: the experiment state (every
trial, its status and last result) and then the generator's state (what the searcher has suggested,
which trials it holds open). A driver killed between the two writes resumes with a generator one
save behind its trials. As Tune restores it, that generator
- creates again the trials it made after its last save (a grid hands out the same trial twice;
  Optuna suggests one more point than the search runs): a duplicated trial;
- keeps the slot of a trial that ended in between, so fewer trials run at once, and with
  ``max_concurrent: 1`` none runs again;
- crashes Optuna when a trial it never suggested reports a result.

On restore, ``restore_from_dir`` reads the same experiment state Tune restored and catches up:
1. a restored trial that ended while the generator holds it open is reported ended;
2. the trials the generator never saw are orphans: Tune lists trials in the order they were
   created, so they are the last ones, as many as Tune has more than the generator created (and any
   unfinished trial it does not hold open). When the generator creates a trial with an orphan's
   config, that trial is not started: it stands for the orphan, whose results then reach the
   searcher under the stand-in's id. An orphan whose config never comes again runs on, and the
   searcher never hears of it;
3. the count of trials created (``SearchGenerator``) is at least the count Tune restored, so the
   search never runs more trials than it was given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ray.tune.search import BasicVariantGenerator, SearchGenerator

ENDED = ("TERMINATED", "ERROR")


@dataclass(frozen=True)
class RestoredTrial:
    trial_id: str
    config: dict
    status: str
    last_result: dict = field(default_factory=dict)


def _say(line: str) -> None:
    from search.callback import PREFIX

    print(f"{PREFIX} {line}", flush=True)


def config_key(config: dict) -> str:
    """A config as comparable text (a config read back from JSON equals the one suggested)."""
    return json.dumps(config, sort_keys=True, default=str)


def restored_trials(folder: Path) -> list[RestoredTrial]:
    """The trials in the newest ``experiment_state-*.json`` of ``folder``: what Tune restores."""
    from search.resume import newest_state_file, tune_trial_entries

    path = newest_state_file(folder)
    if path is None:
        return []
    trials = []
    for trial, metadata in tune_trial_entries(path):
        result = json.loads(metadata).get("last_result") or {}
        trials.append(RestoredTrial(trial["trial_id"], trial["config"], trial["status"],
                                    result if isinstance(result, dict) else {}))
    return trials


class CatchUp:
    """The catching up, for a Tune search algorithm class that comes after it in the bases."""

    def _catch_up_state(self) -> None:
        if not hasattr(self, "_orphans"):
            self._orphans: dict[str, RestoredTrial] = {}  # trial id -> orphan (no stand-in yet)
            self._stand_in: dict[str, str] = {}  # orphan's trial id -> the generator's trial id

    def open_trials(self) -> set[str]:
        """Trial ids the generator holds open."""
        raise NotImplementedError

    def created(self) -> int:
        """How many trials the generator has created."""
        raise NotImplementedError

    def _count_at_least(self, n: int) -> None:
        """Never create more trials than the search runs, counting those Tune restored."""

    def _uncount(self) -> None:
        """A stand-in was created but never runs: it does not count as a trial of the search."""

    def get_state(self) -> dict | bool:
        self._catch_up_state()
        state = super().get_state()
        if isinstance(state, dict):  # (a lazily evaluated grid cannot be saved at all: False)
            state["stand_in"] = dict(self._stand_in)
        return state

    def set_state(self, state: dict) -> None:
        self._catch_up_state()
        state = dict(state)
        self._stand_in = state.pop("stand_in", {})
        super().set_state(state)

    def restore_from_dir(self, dirpath: str) -> None:
        super().restore_from_dir(dirpath)
        self._catch_up_state()
        trials = restored_trials(Path(dirpath))
        open_ids, created = self.open_trials(), self.created()
        behind = max(0, len(trials) - created)  # Tune lists trials in the order they were created
        unknown = trials[len(trials) - behind:] + [
            t for t in trials if t.status not in ENDED and t.trial_id not in open_ids and t.trial_id not in self._stand_in]
        self._orphans = {t.trial_id: t for t in unknown}
        for trial in trials:
            if trial.status in ENDED and trial.trial_id not in self._orphans and self._route(trial.trial_id) in open_ids:
                self.on_trial_complete(trial.trial_id, result=trial.last_result or None, error=trial.status == "ERROR")
        self._count_at_least(len(trials))
        if self._orphans:
            _say(f"the search's generator was saved before Tune's last {len(self._orphans)} trial(s) (a driver "
                 "killed between Tune's two writes); caught up with Tune, so no trial runs twice")

    def next_trial(self):
        self._catch_up_state()
        while True:
            trial = super().next_trial()
            if trial is None or not self._orphans:
                return trial
            key = config_key(trial.config)
            orphan = next((o for o in self._orphans.values() if config_key(o.config) == key), None)
            if orphan is None:
                return trial
            del self._orphans[orphan.trial_id]
            self._stand_in[orphan.trial_id] = trial.trial_id
            self._uncount()
            _say(f"trial {orphan.trial_id} (restored) stands for the generator's trial {trial.trial_id} "
                 "(the same config), which is not started")
            if orphan.status in ENDED:  # it will never report again: its end is told now
                super().on_trial_complete(trial.trial_id, result=orphan.last_result or None,
                                          error=orphan.status == "ERROR")

    def _route(self, trial_id: str) -> str | None:
        """The id the generator knows a trial by; None for an orphan it never saw."""
        self._catch_up_state()
        if trial_id in self._orphans:
            return None
        return self._stand_in.get(trial_id, trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        routed = self._route(trial_id)
        if routed is not None:
            super().on_trial_result(routed, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        routed = self._route(trial_id)
        if routed is not None:
            super().on_trial_complete(routed, result=result, error=error)


class CaughtUpSearch(CatchUp, SearchGenerator):
    """Tune's generator around a Searcher (here a ConcurrencyLimiter), caught up on restore."""

    def open_trials(self) -> set[str]:
        return set(getattr(self.searcher, "live_trials", ()))

    def created(self) -> int:
        return self._counter

    def _count_at_least(self, n: int) -> None:
        self._counter = max(self._counter, n)

    def _uncount(self) -> None:
        self._counter -= 1


class CaughtUpGrid(CatchUp, BasicVariantGenerator):
    """Tune's grid and random generator, caught up on restore. Its trial ids are a prefix and a
    count, so a grid one save behind creates its last trials again under their old ids."""

    def open_trials(self) -> set[str]:
        return set(self._live_trials)

    def created(self) -> int:
        return max((iterator.counter for iterator in self._iterators), default=0)  # ids count on across them
