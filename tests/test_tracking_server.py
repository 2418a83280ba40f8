"""A team's tracking server: ``mlflow server`` on a real PostgreSQL 15 with proxied artifacts.

A search pointed at it with ``tracking.uri`` logs its parent and child runs there, its artifacts
land in the server's artifact store (not under ``runs/``), it survives a driver SIGKILL, and its
report is rebuilt from the server alone. A server that refuses writes is found before Ray
starts: exit 2, naming the server and why.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from analysis.store import FINAL_METRICS, TAG_WRITE_PROBE
from search.mlflow_store import Store, check_writable
from tests.conftest import REPO, cli_env, kill_group, mlflow_runs, run_search, search_cmd

SPEC = REPO / "spaces" / "augment_strength.yaml"
TINY = ["--set", "views.strength={grid: [0.0, 1.0]}", "--set", "search.repeats=1", "--set", "trainer.epochs=2",
        "--set", "dataset.subset=1000", "--set", "dataset.val_size=200", "--set", "mi.steps=20",
        "--set", "mi.pairs=512", "--set", "evaluation.linear_epochs=2",
        "--set", "search.max_concurrent=1"]  # one trial at a time: the kill lands inside the second one


def refused(proc: subprocess.CompletedProcess, took: float, tmp_path: Path, uri: str) -> None:
    """Exit 2 in seconds, naming the server, before Ray started and with nothing under runs/."""
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"tracking.uri {uri}" in proc.stderr and "refuses to write" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "Ray" not in proc.stdout
    assert not (tmp_path / "runs").exists()
    assert took < 60, f"took {took:.1f} s"  # seconds of imports and data loading; Ray would add more


class _ReadOnlyHandler(BaseHTTPRequestHandler):
    """What an authenticating proxy in front of MLflow answers a user with read access only."""

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            self._send(200, {"status": "OK"})
        else:
            self._send(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such experiment"})

    def do_POST(self):
        self._send(403, {"error_code": "PERMISSION_DENIED", "message": "Permission denied"})

    def log_message(self, *args):
        pass


def test_a_server_answering_403_to_writes_is_refused_before_ray_starts(tmp_path, tiny_spec):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ReadOnlyHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        start = time.monotonic()
        proc = run_search(tmp_path, tiny_spec, "--set", f"tracking.uri={uri}", timeout=120)
        took = time.monotonic() - start
    finally:
        server.shutdown()
        server.server_close()
    refused(proc, took, tmp_path, uri)
    assert "HTTP 403: Permission denied" in proc.stderr


@pytest.mark.integration
def test_a_postgresql_server_whose_role_cannot_write_is_refused(pg_mlflow_server, tmp_path, tiny_spec):
    """The real server, its database role stripped of INSERT/UPDATE/DELETE: the server's own error."""
    pg, uri = pg_mlflow_server.pg, pg_mlflow_server.server.uri
    pg.sql("REVOKE INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public FROM mlflow")
    try:
        start = time.monotonic()
        proc = run_search(tmp_path, tiny_spec, "--set", f"tracking.uri={uri}", "--set", "experiment=pg_refused",
                          timeout=120)
        took = time.monotonic() - start
    finally:
        pg.sql("GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO mlflow")
    refused(proc, took, tmp_path, uri)
    assert "permission denied for table experiments" in proc.stderr


@pytest.mark.integration
def test_the_write_probe_restores_a_deleted_experiment_and_leaves_no_tag(pg_mlflow_server):
    """A deleted experiment is restored, as the search would restore it; the probe's tag is gone."""
    from mlflow.tracking import MlflowClient

    uri = pg_mlflow_server.server.uri
    client = MlflowClient(uri)
    exp = client.create_experiment("pg_deleted")
    client.delete_experiment(exp)
    check_writable(Store(uri, None), "pg_deleted")
    got = client.get_experiment(exp)
    assert got.lifecycle_stage == "active" and TAG_WRITE_PROBE not in got.tags


def _run_until_mid_second_trial(cwd: Path, args: list[str]) -> tuple[set[str], str]:
    """Start the search; SIGKILL its process group once one trial finished and another logged an epoch."""
    proc = subprocess.Popen(search_cmd(SPEC, *args), cwd=cwd, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()

    def state() -> tuple[set[str], set[str]]:
        text = list(lines)
        done = {m.group(1) for x in text if (m := re.search(r"trial (\w+) completed: ", x))}
        started = {m.group(1) for x in text if (m := re.search(r"trial (\w+) epoch 1/", x))}
        return done, started - done

    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None and not all(state()):
            time.sleep(0.2)
        done, running = state()
        assert done and running, "".join(lines)[-3000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        kill_group(proc.pid)
    return done, "".join(lines)


def _run(cwd: Path, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    """The search to its end in its own session, whose leftovers (a local Ray) are killed whatever happens."""
    proc = subprocess.Popen(search_cmd(SPEC, *args), cwd=cwd, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        kill_group(proc.pid)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.integration
@pytest.mark.slow
def test_a_search_on_a_postgresql_tracking_server(pg_mlflow_server, tmp_path):
    server = pg_mlflow_server.server
    name = "pg_search"
    args = ["--set", f"experiment={name}", "--set", f"tracking.uri={server.uri}", *TINY]
    finished_before, first = _run_until_mid_second_trial(tmp_path, args)
    rerun = _run(tmp_path, args, timeout=420)
    errors = [line for line in rerun.stderr.splitlines() if "error" in line.lower() and " INFO " not in line]
    assert rerun.returncode == 0, rerun.stdout[-3000:] + "\n".join(errors[-20:]) + rerun.stderr[-1500:]
    assert "(resume)" in rerun.stdout and f"MLflow store: {server.uri}" in first

    client, parents, children = mlflow_runs(server.uri, name)
    exp = client.get_experiment_by_name(name)
    assert exp.artifact_location.startswith("mlflow-artifacts:"), exp.artifact_location  # proxied by the server
    assert TAG_WRITE_PROBE not in exp.tags  # the write probe (twice: run and rerun) left nothing behind
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2 and len({r.data.tags["ray.trial_id"] for r in children}) == 2
    for run in children:
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert set(FINAL_METRICS) <= set(run.data.metrics)
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_knn_acc")) == [1, 2]
        starts = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "start_epoch"),
                                          key=lambda m: m.timestamp)]
        if run.data.tags["ray.trial_id"] in finished_before:  # began once from scratch; never retrained
            assert starts[0] == 0 and all(s > 0 for s in starts[1:]), starts
        # the artifacts went through the server into its own store, not under runs/
        stored = server.artifacts / exp.experiment_id / run.info.run_id / "artifacts"
        assert (stored / "checkpoint" / "checkpoint.pt").stat().st_size > 0
        assert (stored / "config.yaml").is_file() and (stored / "views.png").is_file()
    assert not (tmp_path / "runs" / "mlartifacts").exists() and not (tmp_path / "runs" / "mlflow.db").exists()
    assert not list((tmp_path / "runs").rglob("mlartifacts"))

    # the landing link opens this experiment on the server, and the saved view it names is there
    link = re.search(rf"then open ({re.escape(server.uri)}/#/experiments/{exp.experiment_id}/runs\?\S+)",
                     rerun.stdout)
    assert link, rerun.stdout[-2000:]
    assert f"(the tracking server at {server.uri} already serves the UI)" in rerun.stdout
    key = re.search(r"viewStateShareKey=([\w-]+)", link.group(1))
    if key:
        assert f"mlflow.sharedViewState.{key.group(1)}" in client.get_experiment(exp.experiment_id).tags

    # the report, rebuilt from the server alone (another folder: no search.json, no local store)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    report = subprocess.run(
        [sys.executable, "-m", "analysis.report", "--experiment", name, "--tracking-uri", server.uri,
         "--parent-run", parents[0].info.run_id], cwd=elsewhere, env=cli_env(), capture_output=True, text=True,
        timeout=300, check=False)
    assert report.returncode == 0, report.stdout[-2000:] + report.stderr[-2000:]
    rebuilt = json.loads((elsewhere / "runs" / name / "report" / "summary.json").read_text())
    original = json.loads((tmp_path / "runs" / name / "report" / "summary.json").read_text())
    for key in ("n_trials", "n_scored", "verdict", "best_point", "points"):
        assert rebuilt[key] == original[key], key
    assert rebuilt["n_trials"] == 2
    assert list((elsewhere / "runs" / name / "report").glob("*.png"))  # view grids fetched through the server

