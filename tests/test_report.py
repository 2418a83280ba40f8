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
        if mi is not None:  # None: the search measured no view MI (mi.enabled: false)
            client.log_metric(rid, "mi_nats", mi)
            client.log_metric(rid, "mi_cap_nats", 5.55)
        client.log_metric(rid, "linear_acc", acc)
        client.log_metric(rid, "val_linear_acc", acc + 0.01)
        client.log_metric(rid, "diverged", 0.0)
        client.set_terminated(rid)
    client.set_terminated(parent)
    state = tmp_path / "runs" / experiment / "search.json"  # where a search records its parent run
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"parent_run_id": parent}))
    return uri


def test_planted_reverse_u_gets_its_verdict_and_files(tmp_path):
    from analysis.report import build_report

    rng = np.random.default_rng(0)
    strengths = np.linspace(0.0, 1.0, 8)
    rows = [(s, 4.5 - 4 * s, 0.85 - 0.02 * (4.5 - 4 * s - 2.5) ** 2 + rng.normal(0, 0.002))
            for s in strengths for _ in range(3)]
    uri = make_store(tmp_path, "planted", rows)
    out = build_report("planted", uri, runs_dir=tmp_path / "runs")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "reverse_u" and summary["n_trials"] == 24 and summary["n_points"] == 8
    assert summary["stability"]["share"] >= 0.9 and summary["min_effect"] == 0.01 and summary["probe"] == "linear"
    assert summary["rise"]["mean"] > 0.01 and summary["fall"]["mean"] > 0.01 and summary["fall"]["ci"][0] > 0
    assert summary["quadratic"]["peak_mi"] == pytest.approx(2.5, abs=0.2)
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
    proc = subprocess.run([sys.executable, "-m", "analysis.report", "--experiment", "nope", "--tracking-uri", uri,
                           "--parent-run", "0" * 32],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2 and "nope" in proc.stderr
    assert not (tmp_path / "runs" / "nope").exists()


def test_report_groups_replicates_and_never_shrinks(tmp_path):
    from analysis.report import ReportError, build_report

    rng = np.random.default_rng(2)
    rows = [(s, 4 - 3 * s, 0.8 + 0.01 * s + rng.normal(0, 0.002)) for s in (0.2, 0.4, 0.6, 0.8) for _ in range(3)]
    uri = make_store(tmp_path, "reps", rows)
    out = build_report("reps", uri, runs_dir=tmp_path / "runs")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_trials"] == 12 and summary["n_points"] == 4
    assert all(p["n"] == 3 for p in summary["points"])
    assert summary["noise_floor"]["replicate_df"] == 8 and summary["noise_floor"]["replicate_sd"] > 0
    assert summary["best_point"]["params"] == {"views.strength": "0.8"}
    assert (out / "report.html").is_file() and "data:image/png;base64" in (out / "report.html").read_text()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    victim = next(r for r in client.search_runs([client.get_experiment_by_name("reps").experiment_id])
                  if "mlflow.parentRunId" in r.data.tags)
    client.delete_run(victim.info.run_id)  # the store loses a trial
    before = (out / "summary.json").read_bytes()
    with pytest.raises(ReportError, match="lost trials"):
        build_report("reps", uri, runs_dir=tmp_path / "runs")
    assert (out / "summary.json").read_bytes() == before


def test_a_search_without_view_mi_still_reports_its_points(tmp_path):
    """A comparison (ring_bounds: mi.enabled false) has points, a noise floor and a best point,
    no MI figure, and says why there is no InfoMin fit."""
    from analysis.report import build_report

    rows = [(s, None, 0.8 + 0.01 * s + 0.001 * r) for s in (0.2, 0.5) for r in range(3)]
    out = build_report("no_mi", make_store(tmp_path, "no_mi", rows), runs_dir=tmp_path / "runs")
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["n_scored"], summary["n_used"], summary["n_points"]) == (6, 0, 2)
    assert summary["best_point"]["params"] == {"views.strength": "0.5"} and summary["best_point"]["mi_nats"] is None
    assert summary["noise_floor"]["replicate_df"] == 4
    assert summary["reasons"] == [("inconclusive: the view MI was not measured (mi.enabled: false), so there is no "
                                   "InfoMin fit")]
    assert not (out / "mi_vs_accuracy.png").exists() and "mi_vs_accuracy" not in (out / "report.md").read_text()
