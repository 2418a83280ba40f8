"""The Ray Tune callback that makes the driver MLflow's one writer (see ``search/tracking.py``),
and the console a person reads while a search runs.

Tune calls these hooks in the driver, in order, for every trial of every worker: start,
each epoch's result, each checkpoint, completion or error. Each hook turns into a few MLflow
calls on the trial's child run and one console line. The callback is pickled with the Tuner
(``tuner.pkl``) and comes back on resume, so it holds only plain data: which store, experiment
and parent run to write to are read in ``setup`` from ``runs/<experiment>/search.json`` (the
driver writes it before the Tuner starts), and child runs are looked up again by Ray trial id
rather than remembered, which is what keeps a resumed trial on its own run.

Console: one line when a trial starts, one per epoch, one when it ends, and after each end a
progress line (trials done out of the total, time elapsed, an estimate of the time left).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from analysis.state import SearchState
from analysis.store import (
    TAG_ERROR,
    TAG_ORPHAN,
    TAG_POINT,
    TAG_POINT_NAME,
    TAG_RESUMED_FROM,
    TAG_RETRIES,
    TAG_STATUS,
    TAG_TRIAL_NAME,
)
from search.interrupt import Interrupt
from search.mlflow_store import Store
from search.replicates import point_id, point_values
from search.spec import Spec
from search.summary import outcome
from search.tracking import Tracker, run_name
from search.trial import CHECKPOINT, CONFIG, VIEWS, trial_config
from trainers.domains import flatten
from trainers.results import (
    DIVERGED,
    EPOCH,
    EPOCH_METRICS,
    FINAL_METRICS,
    LINEAR_ACC,
    MI_NATS,
    ONCE_METRICS,
    START_EPOCH,
    TRAIN_LOSS,
    VAL_KNN_ACC,
    VAL_LINEAR_ACC,
    factor_of,
)

PREFIX = "[viewsearch]"
_BOUND: dict[str, Any] = {}


def bind(state_file: Path, interrupt: Interrupt | None = None) -> None:
    """The ``search.json`` of the search this driver runs, resolved from where it runs now.

    The callback comes back from ``tuner.pkl`` on resume with the absolute path of the place the
    search began; a ``runs/`` folder copied or moved since must read (and so write to the store
    of) its own ``search.json``. Called by the driver before ``Tuner.fit``, with the driver's
    interruption state, which tells a trial ended by Ctrl-C / SIGTERM from one that finished.
    """
    _BOUND.update(state_file=Path(state_file), interrupt=interrupt or Interrupt())


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def error_line(text: str) -> str:
    """The exception's own last line from a Ray error file (a traceback ends with it)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:400] if lines else "unknown error"


class MlflowTrials(Callback):
    def __init__(self, spec: Spec, state_file: Path, total: int | None = None):
        self.spec = spec
        self.state_file = Path(state_file)
        self.total = total
        self._reset()

    def _reset(self) -> None:
        self.tracker: Tracker | None = None
        self.experiment_id = self.parent_run_id = None
        self._runs: dict[str, dict] = {}  # trial id -> {run_id, last_step, logged, checkpoint, started}
        self._closed: set[str] = set()  # trials whose run this session ended
        self._start = time.monotonic()
        self._done_here = 0

    def __getstate__(self) -> dict:
        return {"spec": self.spec, "state_file": self.state_file, "total": self.total}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.total = state.get("total")
        self._reset()

    def setup(self, **info) -> None:
        self.state_file = _BOUND.get("state_file", self.state_file)
        state = SearchState.load(self.state_file)
        self.tracker = Tracker(Store(state.tracking_uri, state.artifact_location))
        self.experiment_id, self.parent_run_id = state.experiment_id, state.parent_run_id
        self._start = time.monotonic()

    def get_state(self) -> dict | None:
        return None  # nothing worth saving: runs are found again by trial id

    # ------------------------------------------------------------------ helpers

    def _run(self, trial: Any) -> dict:
        """The trial's child run, opened (or found again) on first use."""
        if trial.trial_id not in self._runs:
            self._check_point(trial)
            cfg = trial_config(self.spec.train_raw, trial.config, self.spec.resources.cpu)
            run_id, last_step, logged = self.tracker.open_child(
                self.experiment_id,
                self.parent_run_id,
                trial.trial_id,
                name=run_name(trial.config) or trial.trial_id,
                params=flatten(cfg),
                tags={TAG_TRIAL_NAME: str(trial), TAG_POINT: point_id(trial.config), TAG_POINT_NAME: run_name(point_values(trial.config))},
            )
            self._runs[trial.trial_id] = {"run_id": run_id, "last_step": last_step, "logged": logged,
                                          "checkpoint": None, "started": time.monotonic(),
                                          "epochs": cfg.trainer.epochs}
        return self._runs[trial.trial_id]

    def _check_point(self, trial: Any) -> None:
        """Never run a trial that is not a point of this search (a damaged Tune state restores one
        with an empty config): stop the search instead, before its run is opened."""
        from search.resume import point_problem

        problem = point_problem(dict(trial.config), self.spec)
        if problem:
            raise RuntimeError(f"Tune restored trial {trial.trial_id}, which is not a point of this search "
                               f"({problem}); its state under {self.state_file.parent / 'ray'} is damaged. "
                               "Rerun with --fresh to start the search over")

    def _log_result(self, state: dict, result: dict) -> None:
        step = int(result.get(EPOCH, result.get("training_iteration", 0)))
        self._log_start(state, result, step)
        if step <= state["last_step"]:
            return  # logged before a crash of the driver; the trial resumed from an earlier checkpoint
        metrics = {k: result[k] for k in (*EPOCH_METRICS, *FINAL_METRICS) if k in result and k not in ONCE_METRICS}
        metrics.update({k: v for k, v in result.items() if factor_of(k)})  # one probe per known factor (infomin_toy)
        for key in ONCE_METRICS:
            if key in result and key not in state["logged"]:
                metrics[key] = result[key]
                state["logged"].add(key)
        self.tracker.log_metrics(state["run_id"], metrics, step)
        state["last_step"] = step
        if result.get(START_EPOCH):
            self.tracker.set_tags(state["run_id"], {TAG_RESUMED_FROM: int(result[START_EPOCH])})

    def _log_start(self, state: dict, result: dict, step: int) -> None:
        """``start_epoch`` once per (re)start: its history shows whether a trial ever began again
        from scratch (a second 0) or resumed from a checkpoint (the epoch it resumed from)."""
        start = result.get(START_EPOCH)
        if start is not None and state.get("start") != start:
            self.tracker.log_metrics(state["run_id"], {START_EPOCH: start}, step)
            state["start"] = start

    def _log_files(self, trial: Any, state: dict) -> None:
        checkpoint = state["checkpoint"] or trial.checkpoint
        if checkpoint is None:
            return
        try:
            with checkpoint.as_directory() as folder:  # read in place, or downloaded from storage.uri's bucket
                folder = Path(folder)
                self.tracker.log_artifacts(
                    state["run_id"], [("", folder / CONFIG), ("", folder / VIEWS), ("checkpoint", folder / CHECKPOINT)]
                )
        except OSError as err:  # the checkpoint is gone from the bucket: the run keeps its metrics
            print(f"{PREFIX} warning: trial {trial.trial_id}'s files could not be read ({err})", flush=True)

    def _record_finished(self, trial_id: str) -> None:
        """``search.json`` lists the finished trials, so a later run can tell a store that lost them."""
        SearchState.load(self.state_file).with_finished(trial_id).save(self.state_file)

    def _progress(self, trials: list) -> None:
        ended = {t.trial_id for t in trials if t.status in ("TERMINATED", "ERROR")} | self._closed
        done = len(ended)
        running = sum(t.status == "RUNNING" and t.trial_id not in ended for t in trials)
        total = max(self.total or len(trials), done)
        elapsed = time.monotonic() - self._start
        left = f", about {_clock(elapsed / self._done_here * (total - done))} left" if self._done_here else ""
        print(f"{PREFIX} progress: {done}/{total} trials done, {running} running, {_clock(elapsed)} elapsed{left}",
              flush=True)

    # ------------------------------------------------------------------ Tune hooks

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info) -> None:
        state = self._run(trial)
        print(f"{PREFIX} trial {trial.trial_id} started: {run_name(trial.config) or 'spec defaults'}", flush=True)
        state["started"] = time.monotonic()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info) -> None:
        state = self._run(trial)
        self._log_result(state, result)
        print(f"{PREFIX} trial {trial.trial_id} epoch {int(result.get(EPOCH, 0))}/{state['epochs']}: "
              f"loss {result.get(TRAIN_LOSS, math.nan):.4f} {VAL_KNN_ACC} {result.get(VAL_KNN_ACC, math.nan):.4f}"
              + (" DIVERGED" if result.get(DIVERGED) else ""), flush=True)

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info) -> None:
        self._run(trial)["checkpoint"] = checkpoint

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info) -> None:
        state = self._run(trial)
        last = trial.last_result or {}
        self._log_files(trial, state)
        what = outcome(last)
        if _BOUND.get("interrupt", Interrupt()).requested() and what == "stopped_early":  # stopped by Ctrl-C / SIGTERM, not by ASHA
            self.tracker.set_tags(state["run_id"], {TAG_STATUS: "interrupted"})
            self.tracker.end(state["run_id"], "KILLED")
            self._closed.add(trial.trial_id)
            print(f"{PREFIX} trial {trial.trial_id} interrupted after epoch {int(last.get(EPOCH, 0))}", flush=True)
            return
        self.tracker.set_tags(state["run_id"], {TAG_STATUS: what})
        self.tracker.end(state["run_id"], "FINISHED")
        self._closed.add(trial.trial_id)
        self._record_finished(trial.trial_id)
        self._done_here += 1
        seconds = time.monotonic() - state["started"]
        print(f"{PREFIX} trial {trial.trial_id} {what}: {VAL_LINEAR_ACC} {last.get(VAL_LINEAR_ACC, math.nan):.4f} "
              f"{LINEAR_ACC} {last.get(LINEAR_ACC, math.nan):.4f} {MI_NATS} {last.get(MI_NATS, math.nan):.3f} "
              f"({_clock(seconds)})", flush=True)
        self._progress(trials)

    def on_experiment_end(self, trials: list, **info) -> None:
        """Make MLflow agree with the experiment: every trial's run ended, no run without a trial."""
        if _BOUND.get("interrupt", Interrupt()).requested():
            return  # the driver ends what is left KILLED; the resumed search continues the runs
        for trial in trials:
            if trial.trial_id in self._closed or trial.status not in ("TERMINATED", "ERROR"):
                continue
            run = self.tracker.find_child(self.experiment_id, self.parent_run_id, trial.trial_id)
            if run is not None and run.info.status == "RUNNING":  # ended while the driver was down
                (self.on_trial_complete if trial.status == "TERMINATED" else self.on_trial_error)(0, trials, trial)
        pruned, kept = self.tracker.prune_children(self.experiment_id, self.parent_run_id,
                                                   {t.trial_id for t in trials})
        if pruned:
            print(f"{PREFIX} removed {pruned} empty MLflow run(s) of trials lost in a crash before Tune recorded them",
                  flush=True)
        if kept:
            print(f"{PREFIX} kept {kept} MLflow run(s) holding results of trials Tune does not know (tagged "
                  f"{TAG_ORPHAN})", flush=True)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info) -> None:
        state = self._run(trial)
        self.tracker.set_tags(state["run_id"], {TAG_RETRIES: trial.run_metadata.num_failures})
        print(f"{PREFIX} trial {trial.trial_id} crashed ({_error_text(trial, last_line=True)}); "
              "retrying from its last checkpoint", flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info) -> None:
        state = self._run(trial)
        self._log_files(trial, state)
        self.tracker.set_tags(state["run_id"], {TAG_STATUS: "error", TAG_ERROR: _error_text(trial)})
        self.tracker.end(state["run_id"], "FAILED")
        self._closed.add(trial.trial_id)
        print(f"{PREFIX} trial {trial.trial_id} FAILED: {_error_text(trial, last_line=True)}", flush=True)
        self._progress(trials)


def _error_text(trial: Any, last_line: bool = False) -> str:
    path = getattr(trial, "error_file", None)
    try:
        text = Path(path).read_text()[-4000:] if path else "unknown error"
    except OSError:
        text = str(path)
    return error_line(text) if last_line else text
