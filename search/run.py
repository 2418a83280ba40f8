"""``python -m search.run SPEC.yaml [--set KEY=VALUE ...] [--address ADDR] [--fresh] [--verbose]``

Runs the search a spec describes, then the InfoMin report, and prints where everything is.

Order matters: everything that can make the command wrong is checked before anything is
created or started, so it fails with exit code 2, a message naming the file and key (or the
file, server or address), and no ``runs/`` entry: the spec and the overrides, the device and
GPU share on this machine, the tracking server, the dataset files, the cluster address. Then the
experiment's lock is taken (a second search of the same experiment is refused, exit 2), and a
resume is checked against the store (a store that lost the search is refused, exit 2, and the
report stays as it is). Only then is Ray started and MLflow written; failures after that are
runtime failures (exit 1), and an interruption (Ctrl-C, SIGTERM) exits 130 / 143.

Resume: ``runs/<experiment>/search.json`` records the spec's fingerprint and the MLflow parent
run. Re-running the same command finds it and Ray's experiment directory, checks both against
the store and each other (``search/resume.py``: a damaged state is refused, a moved ``runs/``
resumes in its new place), and continues with
``Tuner.restore`` (finished trials kept; unfinished and errored ones resume from their last
checkpoint) under the same parent run. ``--fresh`` starts over: it removes the Ray directory and
the MI cache and soft-deletes the old search's MLflow runs (``mlflow gc`` purges them), so the
experiment shows one search. A different spec under the same experiment name is refused unless
``--fresh`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from analysis.state import SearchState
from search import interrupt, resume, storage
from search.cluster import Unreachable, check_reachable, prepare_auth, target_address
from search.failure import failed, trial_failures
from search.lock import ExperimentBusy
from search.paths import Paths, paths_for
from search.preflight import UsageError, check_device, load_checked_data
from search.spec import Spec, SpecError, load_spec
from search.tracking import Store, StoreUnreachable, check_store, check_writable, resolve_store
from trainers.domains import flatten

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True)
class Plan:
    mode: str  # "new" | "resume" | "fresh"
    old_state: SearchState | None  # search.json of an earlier search of this experiment


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m search.run", description=__doc__.split("\n\n")[1])
    parser.add_argument("spec", help="YAML spec (see spaces/augment_strength.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a spec key, e.g. --set trainer.epochs=1 (validated like the file)")
    parser.add_argument("--address", default=None,
                        help="join an existing Ray cluster (default: RAY_ADDRESS, else start a local Ray)")
    parser.add_argument("--fresh", action="store_true", help="discard an earlier search of this experiment")
    parser.add_argument("--verbose", action="store_true", help="show Ray's and Tune's own output as well")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt.install()  # from the first line: Ctrl-C / SIGTERM in any phase end with one line, no traceback
    interrupt.set_phase("start-up")
    try:
        return _main(args)
    except KeyboardInterrupt:
        print(f"\n{interrupt.hint()}", file=sys.stderr, flush=True)
        return interrupt.exit_code()
    finally:
        interrupt.reset()


def _main(args: argparse.Namespace) -> int:
    lock = None
    try:
        spec = load_spec(args.spec, args.overrides)
        paths = paths_for(spec)
        address = target_address(args.address)
        check_device(spec, address)
        store = resolve_store(spec, paths)
        check_store(store)
        storage.check_storage(spec)  # storage.uri: the bucket answers, with these credentials
        data = load_checked_data(spec)
        if address:
            check_reachable(address)
        check_writable(store, spec.experiment)  # after the checks that need no server: it may create the experiment
        prepare_auth(address)  # before anything imports Ray
        lock = storage.experiment_lock(spec, paths).acquire()
        plan = plan_run(spec, paths, args.fresh, store)
    except (SpecError, UsageError, StoreUnreachable, Unreachable, ExperimentBusy, resume.ResumeRefused,
            storage.StorageError) as err:
        if lock is not None:
            lock.release()
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    try:
        return execute(spec, paths, plan, data, store, address, args.verbose)
    finally:
        lock.release()


# --------------------------------------------------------------------------- checks (nothing created)


def restorable(where: storage.TuneStorage) -> bool:
    return where.restorable()


def plan_run(spec: Spec, paths: Paths, fresh: bool, store: Store | None = None) -> Plan:
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


# --------------------------------------------------------------------------- the search


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


def execute(spec: Spec, paths: Paths, plan: Plan, data, store: Store, address: str | None, verbose: bool) -> int:
    from search import cluster
    from search.tracking import Tracker

    quiet_environment(verbose)
    tracker = Tracker(store)
    info = results = None
    experiment_id = parent = failure = None
    status = "FAILED"
    try:
        info = cluster.connect(address, verbose=verbose)
        interrupt.install()  # again: ray.init sets handlers of its own
        problem = cluster.impossible_resources(spec.resources.cpu, spec.resources.gpu)
        if problem:
            print(f"error: {problem} (cluster at {info.address})", file=sys.stderr)
            return EXIT_USAGE
        print(_banner(spec, paths, plan, info, store.uri), flush=True)
        experiment_id = tracker.experiment_id(spec.experiment)
        parent = open_parent(spec, paths, plan, tracker, experiment_id, info)
        interrupt.set_phase("trials")
        interrupt.graceful(True)
        results = fit(spec, paths, plan, data, verbose)
        interrupt.graceful(False)
        if interrupt.requested():
            raise KeyboardInterrupt
        status = search_status(results)
        print_summary(results, spec, paths, store, experiment_id, parent)
    except KeyboardInterrupt:
        status = "KILLED"
        raise  # main prints the one line, after the cleanup below
    except Exception as err:  # noqa: BLE001 -- any failure past this point is a runtime failure, exit 1
        failure = err
    finally:
        interrupt.graceful(False)
        interrupt.set_phase("shutdown")
        with interrupt.shielded():
            failure = failure or _close(tracker, experiment_id, parent, status, info)
    if failure is not None:
        return failed(failure, paths, store, verbose)
    if status == "FAILED":
        print(trial_failures(results, paths, store), file=sys.stderr)
        return EXIT_RUNTIME
    if status != "FINISHED":
        print("some trials did not finish: rerun the same command to resume them", file=sys.stderr)
        return EXIT_RUNTIME
    interrupt.set_phase("report")
    return build_report(spec, paths, store, experiment_id)


def _close(tracker, experiment_id: str | None, parent: str | None, status: str, info) -> Exception | None:
    """End the search's MLflow runs and leave Ray; a failure here (a full disk) is returned, not raised."""
    from search import cluster

    error = None
    if parent is not None:
        try:
            tracker.close_search(experiment_id, parent, status)
        except Exception as err:  # noqa: BLE001 -- still leave Ray; the caller reports it
            error = err
    cluster.disconnect(info)
    return error


def open_parent(spec: Spec, paths: Paths, plan: Plan, tracker, experiment_id: str, info) -> str:
    """The search's parent run: continued on resume, new otherwise (an older search is removed)."""
    tags = run_tags(info)
    old = plan.old_state
    if plan.mode == "resume":
        tracker.reopen(old.parent_run_id, tags)
        return old.parent_run_id
    if old and old.experiment_id:
        tracker.delete_search(old.experiment_id, old.parent_run_id)
    storage.clear_search(spec, paths)  # the Ray directory and the MI cache, local or in the bucket
    return new_parent(spec, paths, tracker, experiment_id, tags)


def new_parent(spec: Spec, paths: Paths, tracker, experiment_id: str, tags: dict) -> str:
    """Create the parent run and record it in ``search.json``, where the Tune callback finds it."""
    from search.space import total_trials

    search_id = uuid.uuid4().hex[:12]
    params = flatten({"search": spec.search.model_dump(), "resources": spec.resources.model_dump(),
                      "analysis": spec.analysis.model_dump()})  # the report reads analysis.* back from here
    parent = tracker.start_parent(experiment_id, search_id, f"search {search_id}", spec.to_yaml(), tags, params)
    paths.experiment_dir.mkdir(parents=True, exist_ok=True)
    SearchState(
        parent, search_id=search_id, experiment_id=experiment_id,
        tracking_uri=tracker.store.uri, artifact_location=tracker.store.artifact_location,
        default_store=resume.is_default_store(spec, tracker.store, paths),
        fingerprint=spec.fingerprint(), spec_file=spec.file, overrides=tuple(spec.overrides),
        total_trials=total_trials(spec),
    ).save(paths.state_file)
    return parent


def run_tags(info) -> dict[str, str]:
    import ray

    gpus = int(ray.cluster_resources().get("GPU", 0))
    return {
        "git.commit": _git_commit(),
        "host": socket.gethostname(),
        "device": f"{gpus} GPU(s)" if gpus else "cpu",
        "ray.address": info.address,
        "ray.started_local": str(info.started_local).lower(),
    }


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], check=False, cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "none (no commit yet)"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def fit(spec: Spec, paths: Paths, plan: Plan, data, verbose: bool):
    from ray import tune

    from search import callback, space, trial
    from search.callback import MlflowTrials

    where = storage.tune_storage(spec, paths)
    trainable = tune.with_resources(
        tune.with_parameters(trial.trainable, data=data, train_raw=spec.train_raw, metric=spec.search.metric,
                             cpu=spec.resources.cpu, mi_cache=where.mi_cache),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )
    callback.bind(paths.state_file)  # this place's search.json, not the path pickled in tuner.pkl
    if plan.mode == "resume":
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
            callbacks=[MlflowTrials(spec, paths.state_file, total=space.total_trials(spec))],
            failure_config=tune.FailureConfig(max_failures=s.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=where.num_to_keep),
            verbose=2 if verbose else 0,
        ),
    )
    return tuner.fit()


def search_status(results) -> str:
    """The parent run's end state: FINISHED, FAILED (a trial errored) or KILLED (some unfinished)."""
    from search.summary import rows

    if any(r.status == "error" for r in rows(results)):
        return "FAILED"
    return "FINISHED" if results.num_terminated == len(results) else "KILLED"


# --------------------------------------------------------------------------- output


def _banner(spec: Spec, paths: Paths, plan: Plan, info, tracking_uri: str) -> str:
    from search.cluster import dashboard_help

    where = ("started a local Ray (every port on 127.0.0.1)" if info.started_local
             else f"Connected to the existing Ray cluster at {info.address}")
    return "\n".join([
        f"viewsearch: experiment '{spec.experiment}' ({plan.mode}) from {spec.file}",
        f"  {where}",
        f"  Ray results: {storage.tune_storage(spec, paths).display}",
        f"  MLflow store: {tracking_uri}",
        dashboard_help(info),
    ])


def print_summary(results, spec: Spec, paths: Paths, store, experiment_id: str, parent: str) -> None:
    from search.summary import rows, table

    print("\n" + table(rows(results)))  # the best point and the verdict follow, from the report
    print(f"\nRay results:   {storage.tune_storage(spec, paths).display}")
    print(f"MLflow parent run: {parent} (experiment {experiment_id})")


def build_report(spec: Spec, paths: Paths, store: Store, experiment_id: str) -> int:
    """The InfoMin report, the parent run's front page, and the MLflow link that opens on the comparison."""
    from analysis.report import ReportError, report_link
    from analysis.report import build_report as build
    from search import landing
    from search.summary import verdict_block

    base = store.runs_url(experiment_id).split("/#/")[0]
    try:
        path = build(spec.experiment, store.uri, runs_dir=paths.root, settings=spec.analysis, ui_url=base)
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
          f"{landing.search_link(spec, store, experiment_id)}\n  the report there: "
          f"{report_link(base, experiment_id, summary['parent_run_id'])}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
