"""A generator one save behind Tune's trials (a driver killed between Tune's two state writes)
neither duplicates a trial nor keeps a finished trial's slot on resume (``search/generator.py``).

Each test drives Tune's real generators: it creates trials, saves the generator, goes on (creates a
trial, ends one), writes Tune's experiment state with the real trials' JSON, and restores a fresh
generator from that folder, as ``Tuner.restore`` does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ray import tune
from ray.tune.experiment import Experiment
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from search.generator import CaughtUpGrid, CaughtUpSearch, config_key
from search.replicates import Replicated


def trainable(config):  # never run: the generators only need a registered name
    return None


class Told(OptunaSearch):
    """Optuna, recording each completion it is told (its public interface)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.told: list[dict] = []

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.told.append({"trial_id": trial_id, "result": result, "error": error})
        super().on_trial_complete(trial_id, result=result, error=error)


def optuna(tmp_path: Path, points: int, repeats: int = 1, max_concurrent: int = 8) -> CaughtUpSearch:
    searcher = Told(seed=3)
    if repeats > 1:
        searcher = Replicated(searcher, repeats, base_seed=0)
    gen = CaughtUpSearch(ConcurrencyLimiter(searcher, max_concurrent=max_concurrent))
    space = {"x": tune.uniform(0, 1)}
    gen.set_search_properties("m", "max", space)
    gen.add_configurations(Experiment("e", trainable, config=space, num_samples=points * repeats,
                                      storage_path=str(tmp_path / "ray")))
    return gen


def grid(tmp_path: Path, values: list[float]) -> CaughtUpGrid:
    gen = CaughtUpGrid(max_concurrent=8, random_state=0)
    gen.add_configurations(Experiment("e", trainable, config={"x": tune.grid_search(values)},
                                      storage_path=str(tmp_path / "ray")))
    return gen


def write_tune_state(folder: Path, trials: list) -> None:
    entries = [list(t.get_json_state()) for t in trials]
    (folder / "experiment_state-2026-12-04_00-00-00.json").write_text(json.dumps({"trial_data": entries}))


def end(trial, value: float) -> None:
    trial.update_last_result({"m": value, "training_iteration": 1})
    trial.set_status("TERMINATED")


def drain(gen, trials: list, created: list) -> None:
    """Run the search to its end: end every open trial, take every new one."""
    for _ in range(100):
        trial = gen.next_trial()
        if trial is not None:
            created.append(trial)
            continue
        running = [t for t in trials + created if t.status != "TERMINATED"]
        if not running:
            return
        end(running[0], 0.5)
        gen.on_trial_complete(running[0].trial_id, result=running[0].last_result)
    raise AssertionError("the search did not end")


def test_optuna_one_save_behind_runs_exactly_its_trials(tmp_path):
    before = optuna(tmp_path, points=3)
    trials = [before.next_trial() for _ in range(2)]
    before.save_to_dir(str(tmp_path), "s")
    trials.append(before.next_trial())  # created after the generator's save, before Tune's
    end(trials[0], 0.7)
    write_tune_state(tmp_path, trials)

    after = optuna(tmp_path, points=3)
    after.restore_from_dir(str(tmp_path))
    assert trials[0].trial_id not in after.searcher.live_trials  # its end reached the generator
    after.on_trial_result(trials[2].trial_id, {"m": 0.1, "training_iteration": 1})  # Optuna never saw it: no crash
    created: list = []
    drain(after, trials, created)
    assert created == [] and after.is_finished()  # three trials restored: three is the search


def test_optuna_replicates_one_save_behind_complete_the_point_without_a_duplicate(tmp_path):
    before = optuna(tmp_path, points=3, repeats=2)
    trials = [before.next_trial() for _ in range(2)]  # point 1, both replicates
    before.save_to_dir(str(tmp_path), "s")
    trials.append(before.next_trial())  # point 2, replicate 0: the generator never saved it
    end(trials[0], 0.7)
    write_tune_state(tmp_path, trials)

    after = optuna(tmp_path, points=3, repeats=2)
    after.restore_from_dir(str(tmp_path))
    created: list = []
    drain(after, trials, created)
    everything = trials + created
    keys = [config_key(t.config) for t in everything]
    assert len(everything) == 6 and len(set(keys)) == 6  # 3 points x 2 seeds, none twice
    points = {}
    for t in everything:
        points.setdefault(t.config["x"], set()).add(t.config["trainer.seed"])
    assert all(seeds == {0, 1} for seeds in points.values()) and len(points) == 3
    # every point reached Optuna with its replicates' mean, point 2 through the orphan's stand-in
    told = after.searcher.searcher.searcher.told
    assert [t["result"]["m"] for t in told] == pytest.approx([0.6, 0.5, 0.5]) and not any(t["error"] for t in told)


def test_a_slot_freed_between_the_saves_is_free_after_the_resume(tmp_path):
    before = optuna(tmp_path, points=3, max_concurrent=1)
    trials = [before.next_trial()]
    before.save_to_dir(str(tmp_path), "s")
    end(trials[0], 0.7)
    before.on_trial_complete(trials[0].trial_id, result=trials[0].last_result)
    trials.append(before.next_trial())  # the next one, in the freed slot
    write_tune_state(tmp_path, trials)

    after = optuna(tmp_path, points=3, max_concurrent=1)
    after.restore_from_dir(str(tmp_path))
    assert after.searcher.live_trials.isdisjoint({trials[0].trial_id})
    created: list = []
    drain(after, trials, created)
    assert len(trials + created) == 3 and len({config_key(t.config) for t in trials + created}) == 3


def test_a_grid_one_save_behind_does_not_hand_out_its_last_point_again(tmp_path):
    before = grid(tmp_path, [0.1, 0.2, 0.3])
    trials = [before.next_trial() for _ in range(2)]
    before.save_to_dir(str(tmp_path), "s")
    trials.append(before.next_trial())
    write_tune_state(tmp_path, trials)

    after = grid(tmp_path, [0.1, 0.2, 0.3])
    after.restore_from_dir(str(tmp_path))
    created: list = []
    drain(after, trials, created)
    assert created == [] and after.is_finished()


def test_a_generator_in_step_with_tune_is_left_as_it_is(tmp_path):
    """The catching up changes nothing when the two files agree (the usual resume)."""
    before = optuna(tmp_path, points=4)
    trials = [before.next_trial() for _ in range(2)]
    end(trials[0], 0.7)
    before.on_trial_complete(trials[0].trial_id, result=trials[0].last_result)
    before.save_to_dir(str(tmp_path), "s")
    write_tune_state(tmp_path, trials)

    after = optuna(tmp_path, points=4)
    after.restore_from_dir(str(tmp_path))
    created: list = []
    drain(after, trials, created)
    assert len(trials + created) == 4 and len({config_key(t.config) for t in trials + created}) == 4


def test_a_trial_created_and_ended_between_the_saves_is_not_run_again(tmp_path):
    before = grid(tmp_path, [0.1, 0.2, 0.3])
    trials = [before.next_trial()]
    before.save_to_dir(str(tmp_path), "s")
    trials.append(before.next_trial())
    end(trials[1], 0.4)  # unknown to the saved generator, and already over
    write_tune_state(tmp_path, trials)

    after = grid(tmp_path, [0.1, 0.2, 0.3])
    after.restore_from_dir(str(tmp_path))
    created: list = []
    drain(after, trials, created)
    assert [t.config["x"] for t in trials + created] == [0.1, 0.2, 0.3] and after.is_finished()
