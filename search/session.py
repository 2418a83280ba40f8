"""One search, from its checked spec to its report: a ``SearchSession`` holds the spec, paths,
store, dataset, plan and interruption state, and has one method per phase.

``SearchSession.open`` is the part that creates nothing: the pre-flight checks
(``search/preflight.py``), the experiment's lock, and the plan (new, resume or fresh: ``plan_run``),
which checks a resume against the store. ``run`` is the rest: connect to Ray, open (or reopen) the
MLflow parent run, let Tune run the trials, end the runs and leave Ray, then build the report.
Its return value is the command's exit code.

Imports of Ray, MLflow, Optuna and the modules built on them stay inside the methods that use
them, so that ``--help`` and a spec error answer in a fraction of a second.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.state import SearchState
from analysis.store import TAG_RAY_ADDRESS, TAG_RAY_STARTED_LOCAL
from search import cluster, landing, preflight, resume, storage
from search.failure import failed, trial_failures
from search.interrupt import Interrupt
from search.mlflow_store import Store
from search.paths import Paths, paths_for
from search.preflight import UsageError
from search.spec import Spec, SpecError, load_spec
from search.summary import rows, table, verdict_block
from search.tracking import Tracker
from trainers.domains import flatten

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True)
class Plan:
    mode: str  # "new" | "resume" | "fresh"
    old_state: SearchState | None  # search.json of an earlier search of this experiment


def restorable(where: storage.TuneStorage) -> bool:
    return where.restorable()


def plan_run(spec: Spec, paths: Paths, fresh: bool, store: Store | None = None) -> Plan:
    """New, resume or fresh; a resume is checked against the store (``resume.verify``) first."""
    state = SearchState.find(paths.root, paths.experiment)
    if state is None and paths.state_file.exists() and not fresh and restorable(storage.tune_storage(spec, paths)):
        raise UsageError(f"{paths.state_file} cannot be read, so the search in {paths.experiment_dir} cannot be "
                         f"checked before it resumes; nothing was started. {resume.FRESH}")
    if fresh:
        return Plan("fresh", state)
    if state and restorable(storage.tune_storage(spec, paths)):
        if state.fingerprint != spec.fingerprint():
            raise SpecError(
                "experiment",
                f"'{spec.experiment}' already holds a search started from a different spec "
                f"({paths.experiment_dir}); rerun with --fresh to start over, or choose another experiment name",
                file=spec.file,
            )
        if store is not None:
            note = resume.verify(spec, state, paths, store, resume.is_default_store(spec, store, paths))
            if note:
                print(f"note: {note}", flush=True)
            state = SearchState.find(paths.root, paths.experiment)
        return Plan("resume", state)
    storage.refuse_unknown_search(spec, paths, state)  # storage.uri: never clear a search this runs/ does not know
    return Plan("new", state)


class SearchSession:
    """A checked search, holding its experiment lock, and what it has started so far (Ray, the parent run)."""

    def __init__(self, spec: Spec, paths: Paths, store: Store, plan: Plan, *, data: Any = None,
                 address: str | None = None, verbose: bool = False, interrupt: Interrupt | None = None,
                 lock: Any = None):
        self.spec, self.paths, self.store, self.plan, self.data = spec, paths, store, plan, data
        self.address, self.verbose, self.lock = address, verbose, lock
        self.interrupt = interrupt or Interrupt()
        self.tracker = Tracker(store)
        self.info: cluster.RayInfo | None = None
        self.experiment_id: str | None = None
        self.parent: str | None = None

    @functools.cached_property
    def where(self) -> storage.TuneStorage:
        """Where Tune keeps this search (a folder, or the bucket with its filesystem), built once."""
        return storage.tune_storage(self.spec, self.paths)

    @classmethod
    def open(cls, spec_file: str, overrides: list[str], *, address: str | None = None, fresh: bool = False,
             verbose: bool = False, interrupt: Interrupt | None = None) -> SearchSession:
        """Check everything, take the experiment's lock and plan the run; nothing is created or
        started before the lock. Raises the errors of a command that cannot run as given
        (``preflight.USAGE_ERRORS``: the CLI's exit 2)."""
        spec = load_spec(spec_file, overrides)
        paths = paths_for(spec)
        address = cluster.target_address(address)
        store, data = preflight.check(spec, paths, address)
        lock = storage.experiment_lock(spec, paths).acquire()
        try:
            plan = plan_run(spec, paths, fresh, store)
        except BaseException:
            lock.release()
            raise
        return cls(spec, paths, store, plan, data=data, address=address, verbose=verbose, interrupt=interrupt,
                   lock=lock)

    def close(self) -> None:
        """Release the experiment's lock."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    # ----------------------------------------------------------------------- the search

    def run(self) -> int:
        """Ray, the parent run, the trials, the cleanup and the report; returns the exit code.
        An interruption propagates as KeyboardInterrupt once the runs are ended and Ray is left."""
        quiet_environment(self.verbose)
        results = failure = None
        status = "FAILED"
        stop = self.interrupt
        try:
            self.info = cluster.connect(self.address, verbose=self.verbose)
            stop.install()  # again: ray.init sets handlers of its own
            problem = cluster.impossible_resources(self.spec.resources.cpu, self.spec.resources.gpu)
            if problem:
                print(f"error: {problem} (cluster at {self.info.address})", file=sys.stderr)
                return EXIT_USAGE
            print(self.banner(), flush=True)
            self.experiment_id = self.tracker.experiment_id(self.spec.experiment)
            self.parent = self.open_parent()
            stop.set_phase("trials")
            stop.graceful(True)
            results = self.fit()
            stop.graceful(False)
            if stop.requested():
                raise KeyboardInterrupt
            status = search_status(results)
            self.print_summary(results)
        except KeyboardInterrupt:
            status = "KILLED"
            raise  # the CLI prints the one line, after the cleanup below
        except Exception as err:  # noqa: BLE001 -- any failure past this point is a runtime failure, exit 1
            failure = err
        finally:
            stop.graceful(False)
            stop.set_phase("shutdown")
            with stop.shielded():
                failure = failure or self.end(status)
        if failure is not None:
            return failed(failure, self.paths, self.store, self.verbose)
        if status == "FAILED":
            print(trial_failures(results, self.paths, self.store), file=sys.stderr)
            return EXIT_RUNTIME
        if status != "FINISHED":
            print("some trials did not finish: rerun the same command to resume them", file=sys.stderr)
            return EXIT_RUNTIME
        stop.set_phase("report")
        return self.report()

    def end(self, status: str) -> Exception | None:
        """End the search's MLflow runs and leave Ray; a failure here (a full disk) is returned, not raised."""
        error = None
        if self.parent is not None:
            try:
                self.tracker.close_search(self.experiment_id, self.parent, status)
            except Exception as err:  # noqa: BLE001 -- still leave Ray; the caller reports it
                error = err
        cluster.disconnect(self.info)
        return error

    def open_parent(self) -> str:
        """The search's parent run: continued on resume, new otherwise (an older search is removed)."""
        tags = run_tags(self.info)
        old = self.plan.old_state
        if self.plan.mode == "resume":
            self.tracker.reopen(old.parent_run_id, tags)
            return old.parent_run_id
        if old and old.experiment_id:
            self.tracker.delete_search(old.experiment_id, old.parent_run_id)
        storage.clear_search(self.spec, self.paths)  # the Ray directory and the MI cache, local or in the bucket
        return self.new_parent(tags)

    def new_parent(self, tags: dict[str, str]) -> str:
        """Create the parent run and record it in ``search.json``, where the Tune callback finds it."""
        from search.space import total_trials

        spec, paths = self.spec, self.paths
        search_id = uuid.uuid4().hex[:12]
        params = flatten({"search": spec.search.model_dump(), "resources": spec.resources.model_dump(),
                          "analysis": spec.analysis.model_dump()})  # the report reads analysis.* back from here
        parent = self.tracker.start_parent(self.experiment_id, search_id, f"search {search_id}", spec.to_yaml(), tags,
                                           params)
        paths.experiment_dir.mkdir(parents=True, exist_ok=True)
        SearchState(
            parent, search_id=search_id, experiment_id=self.experiment_id,
            tracking_uri=self.store.uri, artifact_location=self.store.artifact_location,
            default_store=resume.is_default_store(spec, self.store, paths),
            fingerprint=spec.fingerprint(), spec_file=spec.file, overrides=tuple(spec.overrides),
            total_trials=total_trials(spec),
        ).save(paths.state_file)
        return parent

    def fit(self) -> Any:
        """Tune's run of the trials (``Tuner.restore`` on resume); returns its ResultGrid."""
        from ray import tune

        from search import callback, space, trial

        spec, paths = self.spec, self.paths
        where = self.where
        trainable = tune.with_resources(
            tune.with_parameters(trial.trainable, data=self.data, train_raw=spec.train_raw, metric=spec.search.metric,
                                 cpu=spec.resources.cpu, mi_cache=where.mi_cache),
            {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
        )
        callback.bind(paths.state_file, self.interrupt)  # this place's search.json, not the path in tuner.pkl
        if self.plan.mode == "resume":
            if where.filesystem is None:
                resume.relocate_searcher_state(paths)  # a moved runs/: new trials checkpoint here, not there
            print(f"resuming {where.display}", flush=True)
            tuner = tune.Tuner.restore(where.experiment_path, trainable, resume_unfinished=True,
                                       resume_errored=True, restart_errored=False, storage_filesystem=where.filesystem)
            return tuner.fit()
        s = spec.search
        tuner = tune.Tuner(
            trainable,
            param_space=space.param_space(spec),
            tune_config=tune.TuneConfig(
                metric=s.metric, mode=s.mode, search_alg=space.search_algorithm(spec),
                scheduler=space.scheduler(spec), num_samples=space.tune_num_samples(spec), reuse_actors=False,
            ),
            run_config=tune.RunConfig(
                name=spec.experiment,
                storage_path=where.storage_path,
                storage_filesystem=where.filesystem,
                callbacks=[callback.MlflowTrials(spec, paths.state_file, total=space.total_trials(spec))],
                failure_config=tune.FailureConfig(max_failures=s.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=where.num_to_keep),
                verbose=2 if self.verbose else 0,
            ),
        )
        return tuner.fit()

    # ----------------------------------------------------------------------- output

    def banner(self) -> str:
        info = self.info
        where = ("started a local Ray (every port on 127.0.0.1)" if info.started_local
                 else f"Connected to the existing Ray cluster at {info.address}")
        return "\n".join([
            f"viewsearch: experiment '{self.spec.experiment}' ({self.plan.mode}) from {self.spec.file}",
            f"  {where}",
            f"  Ray results: {self.where.display}",
            f"  MLflow store: {self.store.uri}",
            cluster.dashboard_help(info),
        ])

    def print_summary(self, results: Any) -> None:
        print("\n" + table(rows(results)))  # the best point and the verdict follow, from the report
        print(f"\nRay results:   {self.where.display}")
        print(f"MLflow parent run: {self.parent} (experiment {self.experiment_id})")

    def report(self) -> int:
        """The InfoMin report, the parent run's front page, and the MLflow link that opens on the comparison."""
        from analysis.report import ReportError, build_report, report_link

        spec, store = self.spec, self.store
        base = store.runs_url(self.experiment_id).split("/#/")[0]
        try:
            path = build_report(spec.experiment, store.uri, runs_dir=self.paths.root, settings=spec.analysis,
                                ui_url=base)
        except ReportError as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_RUNTIME
        except Exception as err:  # noqa: BLE001 -- the search is safe in MLflow; say how to retry the report
            print(f"error: the report failed: {err}\n  retry: {sys.executable} -m analysis.report --experiment "
                  f"{spec.experiment} --tracking-uri {store.uri}", file=sys.stderr)
            return EXIT_RUNTIME
        summary = json.loads((path / "summary.json").read_text())
        print("\n" + verdict_block(summary, str(path / "report.md")))
        print(f"Compare the trials in the MLflow UI:\n  {store.ui_command()}\n  then open "
              f"{landing.search_link(spec, store, self.experiment_id)}\n  the report there: "
              f"{report_link(base, self.experiment_id, summary['parent_run_id'])}")
        return EXIT_OK


def quiet_environment(verbose: bool) -> None:
    """Keep Ray Tune's result boxes, its TensorBoard hint and MLflow's download bars off the console
    (Ray's logs stay in its session folder); ``--verbose`` brings Tune's own output back."""
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")  # small state: snapshot often, lose little on a crash
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")  # that, on purpose
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if not verbose:
        import logging

        import mlflow  # noqa: F401 -- it sets its loggers' levels on import: quiet them after
        import optuna

        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning,ignore::FutureWarning")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)


def search_status(results: Any) -> str:
    """The parent run's end state: FINISHED, FAILED (a trial errored) or KILLED (some unfinished)."""
    if any(r.status == "error" for r in rows(results)):
        return "FAILED"
    return "FINISHED" if results.num_terminated == len(results) else "KILLED"


def run_tags(info: cluster.RayInfo) -> dict[str, str]:
    import ray

    gpus = int(ray.cluster_resources().get("GPU", 0))
    return {
        "git.commit": _git_commit(),
        "host": socket.gethostname(),
        "device": f"{gpus} GPU(s)" if gpus else "cpu",
        TAG_RAY_ADDRESS: info.address,
        TAG_RAY_STARTED_LOCAL: str(info.started_local).lower(),
    }


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], check=False, cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "none (no commit yet)"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
