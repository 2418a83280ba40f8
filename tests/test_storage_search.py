"""Searches whose trials write only to a real SeaweedFS bucket (``storage.uri``): a local Ray
whose driver is SIGKILLed midway and resumed from the bucket, and a two-node cluster."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import cli_env, free_port, kill_group, search_cmd
from tests.seaweed import BUCKET, SECRET_KEY, serving
from tests.test_storage import _spec_file


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory):
    yield from serving(tmp_path_factory.mktemp("seaweed"), free_port)

# ----------------------------------------------------------------------------- searches on the bucket


def _storage_args(seaweed, prefix: str) -> list[str]:
    return ["--set", f"storage.uri=s3://{BUCKET}/{prefix}", "--set", f"storage.endpoint={seaweed.endpoint}",
            "--set", "search.algorithm=grid", "--set", "search.num_samples=1", "--set", "negatives.lower=0.0",
            "--set", "negatives.upper=1.0"]


def wait_for_nodes(address: str, n: int, env: dict, timeout: float = 300) -> None:
    """``ray status`` until it lists ``n`` active nodes; a slow answer (a loaded machine) is retried."""
    ray_bin, out = str(Path(sys.executable).parent / "ray"), ""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            done = subprocess.run([ray_bin, "status", f"--address={address}"], check=False, env=env,
                                  capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            continue
        out = done.stdout
        if done.returncode == 0 and out.split("Pending:")[0].count("node_") >= n:
            return
        time.sleep(2)
    raise AssertionError(f"the test cluster never had {n} nodes: {out}")


def _local_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _trial_checkpoints(seaweed, prefix: str) -> dict[str, list[str]]:
    """Trial folder -> its checkpoint objects in the bucket."""
    found: dict[str, list[str]] = {}
    for key in seaweed.keys(BUCKET, f"{prefix}/tiny/ray/tiny/"):
        if key.endswith("/checkpoint.pt"):
            found.setdefault(key.split("/")[4], []).append(key)
    return found


@pytest.mark.integration
@pytest.mark.slow
def test_sigkill_then_rerun_resumes_from_the_bucket_alone(seaweed, tmp_path):
    """Trials write only to the bucket; the driver is SIGKILLed after a trial finished, and the
    same command resumes from the bucket's Tune state and checkpoints, each epoch logged once."""
    from tests.test_search import mlflow_runs

    spec = _spec_file(tmp_path)
    args = [*_storage_args(seaweed, "resume"), "--set", "views.strength={grid: [0.2, 0.6, 1.0]}",
            "--set", "trainer.epochs=4", "--set", "trainer.max_steps=3"]
    env = seaweed.env(cli_env())
    proc = subprocess.Popen(search_cmd(spec, *args), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not any(" epoch 2/4" in x for x in list(lines)):
        time.sleep(0.2)
    time.sleep(3)  # Tune uploads its experiment state every second: let it record that checkpoint
    midway = {m.group(1) for x in list(lines) if (m := re.search(r"trial (\w+) epoch 2/4", x))}
    finished_before = {m.group(1) for x in list(lines) if (m := re.search(r"trial (\w+) completed: ", x))}
    try:
        assert midway, "".join(lines)[-3000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        kill_group(proc.pid)
    experiment = tmp_path / "runs" / "tiny"
    assert _local_files(experiment) == ["search.json"]  # no Ray state, checkpoint, MI cache or lock here
    assert _trial_checkpoints(seaweed, "resume")  # the checkpoints are in the bucket

    rerun = subprocess.run(search_cmd(spec, *args), check=False, cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "(resume)" in rerun.stdout and f"resuming s3://{BUCKET}/resume/tiny/ray/tiny" in rerun.stdout

    assert not [f for f in _local_files(experiment) if not f.startswith("report/") and f != "search.json"]
    assert not [f for f in _local_files(tmp_path / "runs") if "checkpoint_0" in f]  # Tune's live only in the bucket
    checkpoints = _trial_checkpoints(seaweed, "resume")
    assert len(checkpoints) == 3 and all(1 <= len(v) <= 4 for v in checkpoints.values()), checkpoints  # kept: 4
    assert not seaweed.keys(BUCKET, "resume/tiny/search.lock")  # released
    assert len(seaweed.keys(BUCKET, "resume/tiny/mi_cache/")) == 4  # one per view configuration + the floor
    assert SECRET_KEY.encode() not in seaweed.client().get_object(Bucket=BUCKET, Key="resume/tiny/ray/tiny/tuner.pkl")[
        "Body"].read()

    client, parents, children = mlflow_runs(tmp_path / "runs" / "mlflow.db", "tiny")
    assert len(parents) == 1 and len(children) == 3 and all(r.info.status == "FINISHED" for r in children)
    for run in children:
        trial_id = run.data.tags["ray.trial_id"]
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_knn_acc")]
        assert sorted(steps) == [1, 2, 3, 4], (trial_id, steps)  # each epoch logged once
        starts = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "start_epoch"),
                                          key=lambda m: m.timestamp)]
        if trial_id in midway - finished_before:  # killed midway: the rerun went on from a bucket checkpoint
            assert starts[0] == 0 and len(starts) == 2 and starts[1] >= 1, (trial_id, starts)
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"views.png", "config.yaml", "checkpoint"}

    from search import session
    from search.paths import paths_for
    from search.spec import load_spec
    from search.storage import StorageError

    with pytest.MonkeyPatch.context() as mp:  # a driver elsewhere, without this search.json: never clears it
        for key, value in env.items():
            if key.startswith("AWS_"):
                mp.setenv(key, value)
        loaded = load_spec(spec, [a for a in args if a != "--set"])
        with pytest.raises(StorageError, match="does not record.*--fresh"):
            session.plan_run(loaded, paths_for(loaded, tmp_path / "elsewhere"), fresh=False)


@pytest.mark.integration
@pytest.mark.slow
def test_a_two_node_cluster_writes_only_to_the_bucket(seaweed, tmp_path):
    """A head and a second node started by ``ray start`` with the S3 credentials in their
    environment; the driver joins with --address. MLflow's artifacts go to the bucket too, so
    nothing under runs/ holds a checkpoint."""
    from search.cluster import token_available
    from tests.test_search import mlflow_runs, start_node, stop_node

    port, env = free_port(), seaweed.env(cli_env())
    address = f"127.0.0.1:{port}"
    env["RAY_AUTH_MODE"] = "token"
    if not token_available():
        subprocess.run([str(Path(sys.executable).parent / "ray"), "get-auth-token", "--generate"], env=env,
                       capture_output=True, timeout=60, check=True)
    import tempfile

    temp = tempfile.mkdtemp(prefix="vs-", dir="/tmp")  # short: Ray's unix socket paths must fit 107 bytes
    nodes = [start_node(["--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                         f"--temp-dir={temp}", "--node-ip-address=127.0.0.1"], env)]
    try:
        wait_for_nodes(address, 1, env)
        nodes.append(start_node([f"--address={address}", "--num-cpus=1", "--node-ip-address=127.0.0.1"], env))
        wait_for_nodes(address, 2, env)
        driver_env = {**seaweed.env(cli_env()), "MLFLOW_S3_ENDPOINT_URL": seaweed.endpoint}
        proc = subprocess.run(
            search_cmd(_spec_file(tmp_path), "--address", address, *_storage_args(seaweed, "cluster"),
                       "--set", "views.strength={grid: [0.0, 1.0]}",
                       "--set", f"tracking.artifact_root=s3://{BUCKET}/cluster/mlflow"),
            check=False, cwd=tmp_path, env=driver_env, capture_output=True, text=True, timeout=420)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        assert f"Connected to the existing Ray cluster at {address}" in proc.stdout
    finally:
        for node in reversed(nodes):
            stop_node(node)
        import shutil

        shutil.rmtree(temp, ignore_errors=True)
    assert not [f for f in _local_files(tmp_path) if f.endswith(".pt") or "checkpoint" in f]
    assert sorted(p.name for p in (tmp_path / "runs" / "tiny").iterdir()) == ["report", "search.json"]
    assert len(_trial_checkpoints(seaweed, "cluster")) == 2
    _, _, children = mlflow_runs(tmp_path / "runs" / "mlflow.db", "tiny")
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
    logged = seaweed.keys(BUCKET, "cluster/mlflow/")
    assert sum(k.endswith("/views.png") for k in logged) == 2 and sum(k.endswith("checkpoint.pt") for k in logged) == 2
