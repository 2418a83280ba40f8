"""``analysis.report`` on a store written here: verdicts, too few trials, unknown experiments."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def make_store(tmp_path, experiment, trials):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(experiment, artifact_location=str(tmp_path / "art"))
    parent = client.create_run(exp_id, run_name="search").info.run_id
    for i, (strength, mi, acc) in enumerate(trials):
        run = client.create_run(exp_id, run_name=f"s={strength:.2f}", tags={"mlflow.parentRunId": parent})
        rid = run.info.run_id
        client.log_param(rid, "views.strength", strength)
        client.log_param(rid, "trainer.seed", 0)
        client.log_metric(rid, "mi_nats", mi)
        client.log_metric(rid, "mi_cap_nats", 5.55)
        client.log_metric(rid, "linear_acc", acc)
        client.log_metric(rid, "diverged", 0.0)
        client.set_terminated(rid)
    client.set_terminated(parent)
    return uri


def test_planted_reverse_u_gets_its_verdict_and_files(tmp_path):
    from analysis.report import build_report

    rng = np.random.default_rng(0)
    mi = np.linspace(0.5, 4.5, 20)
    acc = 0.85 - 0.02 * (mi - 2.5) ** 2 + rng.normal(0, 0.002, mi.size)
    uri = make_store(tmp_path, "planted", [(1 - m / 5, m, a) for m, a in zip(mi, acc)])
    out = build_report("planted", uri, runs_dir=tmp_path / "runs")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "reverse_u" and summary["n_trials"] == 20
    assert summary["quadratic"]["peak_mi"] == pytest.approx(2.5, abs=0.2)
    assert summary["best_trial"]["linear_acc"] == pytest.approx(acc.max())
    for name in ("report.md", "mi_vs_accuracy.png", "knobs.png"):
        assert (out / name).is_file()
    assert "reverse_u" in (out / "report.md").read_text()


def test_too_few_trials_is_a_report_without_a_verdict(tmp_path):
    uri = make_store(tmp_path, "small", [(0.1, 3.0, 0.8), (0.9, 1.0, 0.82)])
    proc = subprocess.run([sys.executable, "-m", "analysis.report", "--experiment", "small", "--tracking-uri", uri],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "runs" / "small" / "report" / "summary.json").read_text())
    assert summary["verdict"] == "inconclusive" and summary["quadratic"] is None
    assert any("too few" in r for r in summary["reasons"])


def test_unknown_experiment_exits_2(tmp_path):
    uri = make_store(tmp_path, "exists", [])
    proc = subprocess.run([sys.executable, "-m", "analysis.report", "--experiment", "nope", "--tracking-uri", uri],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2 and "nope" in proc.stderr
    assert not (tmp_path / "runs").exists()
