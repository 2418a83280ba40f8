"""``python -m search.run SPEC.yaml [--set KEY=VALUE ...] [--address ADDR] [--fresh]``

Runs the search a spec describes, then the InfoMin report, and prints where everything is.

Order matters: everything that can make the command wrong (the spec, the overrides, a resume
that does not match, a missing dataset) is checked before anything is created or started, so
those fail with exit code 2, a message naming the file and key, and no ``runs/`` entry. Only
then is Ray started and MLflow opened; failures after that are runtime failures (exit 1).

Resume: ``runs/<experiment>/search.json`` records the spec's fingerprint and the MLflow parent
run. Re-running the same command finds it and Ray's experiment directory and continues with
``Tuner.restore`` (finished trials kept; unfinished and errored ones resume from their last
checkpoint) under the same parent run. ``--fresh`` starts over: it removes the Ray directory and
soft-deletes the old search's MLflow runs (``mlflow gc`` purges them; ``mlflow runs restore``
brings one back), so the experiment shows one search. A different spec under the same
experiment name is refused unless ``--fresh`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from search.cluster import prepare_auth, target_address
from search.paths import Paths, paths_for
from search.spec import Spec, SpecError, domain_values, load_spec
from trainers.config import flatten

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True)
class Plan:
    mode: str  # "new" | "resume" | "fresh"
    old_state: dict | None  # search.json of an earlier search of this experiment


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m search.run", description=__doc__.split("\n\n")[1])
    parser.add_argument("spec", help="YAML spec (see spaces/augment_strength.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a spec key, e.g. --set trainer.epochs=1 (validated like the file)")
    parser.add_argument("--address", default=None,
                        help="join an existing Ray cluster (default: RAY_ADDRESS, else start a local Ray)")
    parser.add_argument("--fresh", action="store_true", help="discard an earlier search of this experiment")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        spec = load_spec(args.spec, args.overrides)
        paths = paths_for(spec)
        prepare_auth(target_address(args.address))  # before anything imports Ray
        plan = plan_run(spec, paths, args.fresh)
        data = load_checked_data(spec)
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    return execute(spec, paths, plan, data, args.address)


class UsageError(Exception):
    """Not a spec error, but the command cannot run as given (e.g. the dataset is missing)."""


# --------------------------------------------------------------------------- checks (nothing created)


def read_state(paths: Paths) -> dict | None:
    try:
        return json.loads(paths.state_file.read_text())
    except (OSError, ValueError):
        return None


def restorable(paths: Paths) -> bool:
    from ray.tune import Tuner

    return paths.ray_experiment.is_dir() and Tuner.can_restore(str(paths.ray_experiment))


def plan_run(spec: Spec, paths: Paths, fresh: bool) -> Plan:
    state = read_state(paths)
    if fresh:
        return Plan("fresh", state)
    if state and restorable(paths):
        if state.get("fingerprint") != spec.fingerprint():
            raise SpecError(
                "experiment",
                f"'{spec.experiment}' already holds a search started from a different spec "
                f"({paths.experiment_dir}); rerun with --fresh to start over, or choose another experiment name",
                file=spec.file,
            )
        return Plan("resume", state)
    return Plan("new", state)


def load_checked_data(spec: Spec):
    """Load the dataset once in the driver (trials get it through Ray's object store)."""
    from trainers.data import DatasetMissing, load_data

    try:
        data = load_data(spec.train.dataset)
    except DatasetMissing as err:
        raise UsageError(f"{spec.file}: {err}") from None
    n = int(data.train_x.shape[0])
    batch = spec.train_raw.get("trainer", {}).get("batch_size", spec.train.trainer.batch_size)
    largest = max(domain_values(batch)) if isinstance(batch, dict) else batch
    if largest > n:
        raise SpecError("trainer.batch_size", f"{largest} exceeds the {n} training images", file=spec.file)
    return data


# --------------------------------------------------------------------------- the search


def execute(spec: Spec, paths: Paths, plan: Plan, data, address: str | None) -> int:
    from search import cluster
    from search.tracking import Tracker, resolve_store

    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")  # small state: snapshot often, lose little on a crash
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")  # that, on purpose
    store = resolve_store(spec, paths)
    tracker = Tracker(store)
    info = None
    experiment_id = parent = None
    status = "FAILED"
    try:
        info = cluster.connect(cluster.target_address(address))
        print(_banner(spec, paths, plan, info, store.uri), flush=True)
        experiment_id = tracker.experiment_id(spec.experiment)
        parent = open_parent(spec, paths, plan, tracker, experiment_id, info)
        results = fit(spec, paths, plan, data)
        status = search_status(results)
        print_summary(results, spec, paths, store, experiment_id, parent)
    except KeyboardInterrupt:
        status = "KILLED"
        print("\ninterrupted: rerun the same command to resume", file=sys.stderr)
        return EXIT_RUNTIME
    except Exception as err:  # noqa: BLE001 -- any failure past this point is a runtime failure, exit 1
        import traceback

        traceback.print_exc()
        print(f"error: the search failed: {err}", file=sys.stderr)
        return EXIT_RUNTIME
    finally:
        if parent is not None:
            tracker.close_search(experiment_id, parent, status)
        cluster.disconnect(info)
    if status == "FAILED":
        print("some trials failed after their retries (the error is in each MLflow run's ray.error tag); "
              "rerun the same command to retry them from their last checkpoint", file=sys.stderr)
        return EXIT_RUNTIME
    if status != "FINISHED":
        print("some trials did not finish: rerun the same command to resume them", file=sys.stderr)
        return EXIT_RUNTIME
    return build_report(spec, paths, store.uri)


def open_parent(spec: Spec, paths: Paths, plan: Plan, tracker, experiment_id: str, info) -> str:
    """The search's parent run: continued on resume, new otherwise (an older search is removed)."""
    tags = run_tags(info)
    old = plan.old_state
    if plan.mode == "resume":
        if tracker.run_exists(old["parent_run_id"]):
            tracker.reopen(old["parent_run_id"], tags)
            return old["parent_run_id"]
        print("warning: the search's MLflow parent run is gone; continuing under a new one "
              "(trials that finished earlier are not logged again)", file=sys.stderr)
        return new_parent(spec, paths, tracker, experiment_id, tags)
    if old and old.get("parent_run_id") and old.get("experiment_id"):
        tracker.delete_search(old["experiment_id"], old["parent_run_id"])
    shutil.rmtree(paths.ray_storage, ignore_errors=True)
    return new_parent(spec, paths, tracker, experiment_id, tags)


def new_parent(spec: Spec, paths: Paths, tracker, experiment_id: str, tags: dict) -> str:
    """Create the parent run and record it in ``search.json``, where the Tune callback finds it."""
    search_id = uuid.uuid4().hex[:12]
    params = flatten({"search": spec.search.model_dump(), "resources": spec.resources.model_dump()})
    parent = tracker.start_parent(experiment_id, search_id, f"search {search_id}", spec.to_yaml(), tags, params)
    paths.experiment_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "search_id": search_id, "parent_run_id": parent, "experiment_id": experiment_id,
        "tracking_uri": tracker.store.uri, "artifact_location": tracker.store.artifact_location,
        "fingerprint": spec.fingerprint(), "spec_file": spec.file, "overrides": list(spec.overrides),
    }
    paths.state_file.write_text(json.dumps(state, indent=2))
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


def fit(spec: Spec, paths: Paths, plan: Plan, data):
    from ray import tune

    from search import space, trial
    from search.callback import MlflowTrials

    trainable = tune.with_resources(
        tune.with_parameters(trial.trainable, data=data, train_raw=spec.train_raw, metric=spec.search.metric,
                             cpu=spec.resources.cpu),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )
    if plan.mode == "resume":
        print(f"resuming {paths.ray_experiment}", flush=True)
        tuner = tune.Tuner.restore(str(paths.ray_experiment), trainable, resume_unfinished=True,
                                   resume_errored=True, restart_errored=False)
        return tuner.fit()
    s = spec.search
    tuner = tune.Tuner(
        trainable,
        param_space=space.param_space(spec),
        tune_config=tune.TuneConfig(
            metric=s.metric, mode=s.mode, search_alg=space.search_algorithm(spec),
            scheduler=space.scheduler(spec), num_samples=s.num_samples, reuse_actors=False,
        ),
        run_config=tune.RunConfig(
            name=spec.experiment,
            storage_path=str(paths.ray_storage),
            callbacks=[MlflowTrials(spec, paths.state_file)],
            failure_config=tune.FailureConfig(max_failures=s.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            verbose=1,
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

    where = ("started a local Ray" if info.started_local else f"Connected to the existing Ray cluster at {info.address}")
    return "\n".join([
        f"viewsearch: experiment '{spec.experiment}' ({plan.mode}) from {spec.file}",
        f"  {where}",
        f"  Ray results: {paths.ray_experiment}",
        f"  MLflow store: {tracking_uri}",
        dashboard_help(info),
    ])


def print_summary(results, spec: Spec, paths: Paths, store, experiment_id: str, parent: str) -> None:
    from search.summary import best, fmt, rows, table

    trial_rows = rows(results)
    print("\n" + table(trial_rows))
    top = best(trial_rows)
    if top is not None:
        params = ", ".join(f"{k}={fmt(v)}" for k, v in top.params.items()) or "(spec defaults)"
        print(f"\nbest trial: {top.trial_id}  {params}  linear_acc {top.linear_acc:.4f}  knn_acc {top.knn_acc:.4f}"
              f"  mi_nats {top.mi_nats:.3f}")
    print(f"\nRay results:   {paths.ray_experiment}")
    print(f"MLflow parent run: {parent} (experiment {experiment_id})")
    print(f"Compare the trials in the MLflow UI:\n  {store.ui_command()}\n  then open {store.runs_url(experiment_id)}")


def build_report(spec: Spec, paths: Paths, tracking_uri: str) -> int:
    """The InfoMin analysis, if the analysis package provides it (a missing module is a note)."""
    try:
        from analysis.report import build_report as build
    except ImportError as err:
        print(f"\nnote: no InfoMin report: analysis.report is not available ({err})")
        return EXIT_OK
    try:
        path = build(spec.experiment, tracking_uri, runs_dir=paths.root)
    except Exception as err:  # noqa: BLE001 -- the search is safe in MLflow; say how to retry the report
        print(f"error: the report failed: {err}\n  retry: python -m analysis.report --experiment {spec.experiment} "
              f"--tracking-uri {tracking_uri}", file=sys.stderr)
        return EXIT_RUNTIME
    print(f"\nInfoMin report: {path}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
