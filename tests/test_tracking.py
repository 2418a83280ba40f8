"""MLflow tracking (issue 6): the store, one run per trial across resumes, and -- integration --
the runs a real search leaves, read back directly and through ``mlflow server``'s REST API."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from ray.tune import Checkpoint

from analysis.state import SearchState
from analysis.store import EPOCH_METRICS, FINAL_METRICS, FLOOR_METRICS, shown
from search.callback import MlflowTrials
from search.mlflow_store import Store, resolve_store
from search.paths import paths_for
from search.spec import validate_spec
from search.tracking import Tracker, run_name
from search.trial import CHECKPOINT, CONFIG, VIEWS
from tests.conftest import TINY_SPEC, cli_env, free_port, kill_group, mlflow_runs
from trainers.config import TrainConfig
from trainers.domains import flatten

SPEC = validate_spec(yaml.safe_load(TINY_SPEC))
FINAL = FINAL_METRICS  # the probes, mi_nats, label_mi_nats, the untrained floor (init_*), diverged
EPOCH = EPOCH_METRICS


# ----------------------------------------------------------------------------- store


def test_default_store_is_sqlite_under_output_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store = resolve_store(SPEC, paths_for(SPEC, tmp_path))
    assert store.uri == f"sqlite:///{tmp_path.resolve()}/runs/mlflow.db"
    assert store.artifact_location == (tmp_path.resolve() / "runs" / "mlartifacts").as_uri()
    assert store.ui_command() == (f"{sys.executable} -m mlflow ui --backend-store-uri {store.uri} --default-artifact-root "
                                  f"{store.artifact_location} --host 127.0.0.1 --port 5000")
    assert store.runs_url("3") == "http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"


def test_env_and_spec_override_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5555")
    assert resolve_store(SPEC, paths_for(SPEC, tmp_path)).uri == "http://127.0.0.1:5555"
    spec = validate_spec({**yaml.safe_load(TINY_SPEC), "tracking": {"uri": "sqlite:////x/y.db"}})
    assert resolve_store(spec, paths_for(spec, tmp_path)).uri == "sqlite:////x/y.db"


def test_logged_metrics_read_as_written_in_the_ui(store):
    """float32 accuracies are logged at 6 significant digits, so a cell reads 0.7817."""
    import numpy as np

    assert shown(np.float32(0.7817)) == 0.7817
    assert shown(np.float32(0.665)) == 0.665
    assert shown(0.000973123456) == 0.000973123 and shown(1844.1234) == 1844.12
    experiment = store.experiment_id("show")
    run_id = store.client.create_run(experiment).info.run_id
    store.log_metrics(run_id, {"linear_acc": np.float32(0.7817)}, step=3)
    assert store.client.get_run(run_id).data.metrics["linear_acc"] == 0.7817


def test_run_names_are_short_and_readable():
    assert run_name({"views.strength": 0.6234, "negatives.lower": 0.01, "negatives.upper": 0.1}) == \
        "s=0.62 ring=[0.01,0.10]"
    assert run_name({"trainer.lr": 0.0003}) == "lr=3.0e-04"
    assert run_name({"views.pairs.budget": 0.025}) == "budget=0.025"  # not 0.03: two points, two names
    assert run_name({"views.pairs.budget": 0.05}) == "budget=0.05"
    whole_section = {"method.name": "moco", "negatives": {"lower": 0.01, "upper": 0.1, "anneal": "linear"}}
    assert run_name(whole_section) == "method=moco ring=[0.01,0.10] anneal=linear"


# ----------------------------------------------------------------------------- the callback, without Ray


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store for the unit tests (creating its tables takes seconds)."""
    root = tmp_path_factory.mktemp("store")
    tracker = Tracker(Store(f"sqlite:///{root}/mlflow.db", (root / "art").as_uri()))
    tracker.experiment_id("unit")
    return tracker


def make_search(tracker: Tracker, folder: Path) -> tuple[str, str, Path]:
    exp = tracker.experiment_id("unit")
    parent = tracker.start_parent(exp, "s1", "search s1", "experiment: unit\n", {"host": "h"})
    state = folder / "search.json"
    state.write_text(json.dumps({"tracking_uri": tracker.store.uri, "artifact_location": tracker.store.artifact_location,
                                 "experiment_id": exp, "parent_run_id": parent}))
    return exp, parent, state


def fake_trial(trial_id: str, checkpoint: Path | None = None, last: dict | None = None, status: str = "RUNNING"):
    config = {"views.strength": 0.5, "negatives.lower": 0.0, "negatives.upper": 0.5}
    return SimpleNamespace(trial_id=trial_id, config=config, last_result=last or {}, status=status,
                           checkpoint=Checkpoint.from_directory(str(checkpoint)) if checkpoint else None,
                           run_metadata=SimpleNamespace(num_failures=1), error_file=None)


def epoch(n: int, **extra) -> dict:
    return {"epoch": float(n), "train_loss": 1.0 / n, "val_knn_acc": 0.1 * n, "ring_lower": 0.0, "ring_upper": 0.5,
            "imgs_per_s": 100.0, "diverged": 0.0, "mi_nats": 1.5, "mi_cap_nats": 3.0, "label_mi_nats": 1.2,
            "label_entropy_nats": 2.3, **{k: 0.5 for k in FLOOR_METRICS}, "start_epoch": 0.0, **extra}


def checkpoint_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    for name in (CONFIG, VIEWS, CHECKPOINT):
        (folder / name).write_bytes(b"x")
    return folder


def test_one_run_per_trial_across_a_driver_restart(store, tmp_path):
    exp, parent, state = make_search(store, tmp_path)
    folder = checkpoint_folder(tmp_path)
    cb = MlflowTrials(SPEC, state)
    cb.setup()
    trial = fake_trial("t1", folder)
    cb.on_trial_start(0, [], trial)
    cb.on_trial_result(0, [], trial, epoch(1))
    cb.on_trial_result(0, [], trial, epoch(2))

    again = pickle.loads(pickle.dumps(cb))  # the callback as Tuner.restore brings it back
    again.setup()
    again.on_trial_start(0, [], trial)
    again.on_trial_result(0, [], trial, epoch(2, start_epoch=1.0))  # resumed from epoch 1: epoch 2 again
    last = epoch(3, linear_acc=0.7, val_linear_acc=0.72, knn_acc=0.6, start_epoch=1.0)
    again.on_trial_result(0, [], trial, last)
    again.on_checkpoint(0, [], trial, Checkpoint.from_directory(str(folder)))
    again.on_trial_complete(0, [], fake_trial("t1", folder, last))

    children = store.children(exp, parent)
    assert len(children) == 1
    run = store.client.get_run(children[0].info.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "s=0.50 ring=[0.00,0.50]"
    assert [m.step for m in store.client.get_metric_history(run.info.run_id, "val_knn_acc")] == [1, 2, 3]
    assert len(store.client.get_metric_history(run.info.run_id, "mi_nats")) == 1
    starts = sorted(store.client.get_metric_history(run.info.run_id, "start_epoch"), key=lambda m: m.timestamp)
    assert [m.value for m in starts] == [0.0, 1.0]  # began at 0, resumed once from epoch 1
    assert set(FINAL) <= set(run.data.metrics) and set(EPOCH) <= set(run.data.metrics)
    assert set(flatten(TrainConfig())) <= set(run.data.params)
    assert run.data.params["views.strength"] == "0.5"
    assert run.data.tags["ray.trial_id"] == "t1" and run.data.tags["viewsearch.resumed_from_epoch"] == "1"
    assert run.data.tags["ray.status"] == "completed"
    arts = {a.path for a in store.client.list_artifacts(run.info.run_id)}
    assert arts == {"config.yaml", "views.png", "checkpoint"}


def test_errors_and_interruptions_leave_no_run_running(store, tmp_path):
    exp, parent, state = make_search(store, tmp_path)
    cb = MlflowTrials(SPEC, state)
    cb.setup()
    broken, cut = fake_trial("e1"), fake_trial("k1")
    for trial in (broken, cut):
        cb.on_trial_start(0, [], trial)
        cb.on_trial_result(0, [], trial, epoch(1))
    cb.on_trial_error(0, [], broken)
    assert store.close_search(exp, parent, "KILLED") == 1  # ``cut`` was still running
    status = {r.data.tags["ray.trial_id"]: r.info.status for r in store.children(exp, parent)}
    assert status == {"e1": "FAILED", "k1": "KILLED"}
    assert store.client.get_run(parent).info.status == "KILLED"


def test_a_trial_ended_by_the_drivers_interrupt_stays_resumable(store, tmp_path, monkeypatch):
    """The driver hands its ``Interrupt`` to the callback (``callback.bind``): a trial Tune ends early
    because of Ctrl-C / SIGTERM is KILLED and tagged interrupted, one ASHA stopped is FINISHED."""
    import signal

    from search import callback
    from search.interrupt import Interrupt

    monkeypatch.setattr(callback, "_BOUND", {})  # this test's binding only
    exp, parent, state = make_search(store, tmp_path)
    stop = Interrupt()
    callback.bind(state, stop)
    cb = MlflowTrials(SPEC, state)
    cb.setup()
    stopped, cut = fake_trial("s1", last=epoch(1)), fake_trial("c1", last=epoch(1))
    for trial in (stopped, cut):
        cb.on_trial_start(0, [], trial)
    cb.on_trial_complete(0, [], stopped)
    stop.signal = signal.SIGTERM  # what its handler records
    cb.on_trial_complete(0, [], cut)
    runs = {r.data.tags["ray.trial_id"]: (r.info.status, r.data.tags["ray.status"]) for r in store.children(exp, parent)}
    assert runs == {"s1": ("FINISHED", "stopped_early"), "c1": ("KILLED", "interrupted")}


def test_fresh_soft_deletes_the_old_search(store, tmp_path):
    exp, parent, state = make_search(store, tmp_path)
    cb = MlflowTrials(SPEC, state)
    cb.setup()
    cb.on_trial_start(0, [], fake_trial("f1"))
    assert store.delete_search(exp, parent) == 1
    assert store.children(exp, parent) == [] and not store.run_exists(parent)


def test_experiment_is_tagged_for_model_training(store):
    exp = store.client.get_experiment_by_name("unit")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


# ----------------------------------------------------------------------------- integration


@pytest.mark.integration
def test_search_leaves_one_parent_and_a_complete_run_per_trial(tiny_search):
    assert tiny_search.rc == 0, tiny_search.out[-3000:]
    client, parents, children = mlflow_runs(tiny_search.db, "tiny")
    exp = client.get_experiment_by_name("tiny")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert {"git.commit", "host", "device", "ray.address"} <= set(parent.data.tags)
    assert "spec.yaml" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert len(children) == tiny_search.num_samples
    params = set(flatten(TrainConfig()))
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id and run.data.tags["ray.trial_id"]
        assert params <= set(run.data.params), params - set(run.data.params)
        assert set(FINAL) <= set(run.data.metrics) and set(EPOCH) <= set(run.data.metrics)
        assert run.data.metrics["diverged"] == 0.0
        history = client.get_metric_history(run.info.run_id, "val_knn_acc")
        assert sorted(m.step for m in history) == list(range(1, tiny_search.epochs + 1))
        arts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "views.png"} <= arts
        assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")] == ["checkpoint/checkpoint.pt"]
        config = yaml.safe_load(Path(client.download_artifacts(run.info.run_id, "config.yaml")).read_text())
        assert config["views"]["strength"] == pytest.approx(float(run.data.params["views.strength"]))


@pytest.mark.integration
def test_mlflow_server_serves_the_runs(tiny_search, tmp_path):
    port = free_port()
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    server = subprocess.Popen(
        [mlflow_bin, "server", "--backend-store-uri", f"sqlite:///{tiny_search.db}", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(1)
        with urllib.request.urlopen(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=tiny") as r:
            exp_id = json.load(r)["experiment"]["experiment_id"]
        body = json.dumps({"experiment_ids": [exp_id], "max_results": 100}).encode()
        req = urllib.request.Request(f"{base}/api/2.0/mlflow/runs/search", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            runs = json.load(r)["runs"]
    finally:
        kill_group(server.pid)
        server.wait(30)
    children = [r for r in runs if any(t["key"] == "mlflow.parentRunId" for t in r["data"].get("tags", []))]
    assert len(children) == tiny_search.num_samples
    for run in children:
        params = {p["key"] for p in run["data"]["params"]}
        metrics = {m["key"] for m in run["data"]["metrics"]}
        assert {"views.strength", "negatives.lower", "negatives.upper", "trainer.lr", "method.name"} <= params
        assert set(FINAL) <= metrics


def test_experiment_end_reconciles_runs_with_trials(store, tmp_path):
    exp, parent, state = make_search(store, tmp_path)
    cb = MlflowTrials(SPEC, state)
    cb.setup()
    kept, lost = fake_trial("keep1", status="TERMINATED"), fake_trial("lost1")
    for trial in (kept, lost):
        cb.on_trial_start(0, [], trial)
    cb.on_experiment_end([kept])  # keep1 ended while no driver listened: its run is closed now
    assert [(r.data.tags["ray.trial_id"], r.info.status) for r in store.children(exp, parent)] == \
        [("keep1", "FINISHED")]


def test_fresh_search_replaces_the_old_one(store, tmp_path, monkeypatch):
    from search import session

    spec = validate_spec({**yaml.safe_load(TINY_SPEC), "experiment": "unit"})
    paths = paths_for(spec, tmp_path)
    exp, old_parent, state = make_search(store, tmp_path)
    cb = MlflowTrials(spec, state)
    cb.setup()
    cb.on_trial_start(0, [], fake_trial("old1"))
    paths.ray_experiment.mkdir(parents=True)
    monkeypatch.setattr(session, "run_tags", lambda info: {"host": "h"})
    plan = session.Plan("fresh", SearchState(old_parent, experiment_id=exp))
    search = session.SearchSession(spec, paths, store.store, plan)
    search.experiment_id = exp
    parent = search.open_parent()
    assert parent != old_parent and not store.run_exists(old_parent) and store.children(exp, old_parent) == []
    assert not paths.ray_storage.exists()
    saved = json.loads(paths.state_file.read_text())
    assert saved["parent_run_id"] == parent and saved["fingerprint"] == spec.fingerprint()
    assert saved["tracking_uri"] == store.store.uri
