"""What a newcomer meets in a tiny search: a console a person can read, Ray on loopback only, the
MLflow link that opens on the comparison, and the parent run as the search's front page."""

from __future__ import annotations

import json
import re
import sys

import pytest

from search import landing
from tests.listeners import is_loopback


@pytest.mark.integration
def test_console_has_progress_lines_and_no_ray_boxes(tiny_search):
    out = tiny_search.out
    assert tiny_search.rc == 0, out[-3000:]
    for noise in ("╭", "│", "Trial status", "tensorboard", "TensorBoard", "Downloading artifacts", "Result(",
                  "Creating initial MLflow database tables", "A new study created"):
        assert noise not in out, noise
    progress = [line for line in out.splitlines() if line.startswith("[viewsearch] progress:")]
    assert len(progress) == tiny_search.num_samples
    assert re.fullmatch(r"\[viewsearch\] progress: 4/4 trials done, 0 running, \d+:\d\d elapsed, about 0:00 left",
                        progress[-1]), progress[-1]
    per_trial = [line for line in out.splitlines() if re.match(r"\[viewsearch\] trial \w+ (started|epoch|completed)", line)]
    assert len(per_trial) == tiny_search.num_samples * (2 + tiny_search.epochs)  # start, each epoch, end
    assert len(out.splitlines()) < 80, len(out.splitlines())


@pytest.mark.integration
def test_every_ray_listener_is_on_loopback(tiny_search):
    listeners = tiny_search.listeners
    assert len(listeners) >= 5, listeners  # GCS, raylet, dashboard, agent, workers...
    assert [entry for entry in listeners if not is_loopback(entry[0])] == []


@pytest.mark.integration
def test_the_printed_link_opens_on_the_comparison(tiny_search):
    from mlflow.tracking import MlflowClient

    out = tiny_search.out
    assert f"{sys.executable} -m mlflow ui --backend-store-uri sqlite:///{tiny_search.db}" in out
    url = re.search(r"then open (http://127\.0\.0\.1:5000/#/experiments/(\d+)/runs\?\S+)", out)
    assert url and "workflowType=machine_learning" in url.group(1)
    key = re.search(r"viewStateShareKey=([\w-]+)", url.group(1)).group(1)
    exp = MlflowClient(f"sqlite:///{tiny_search.db}").get_experiment(url.group(2))
    state = landing.decode_view_state(exp.tags[landing.TAG_PREFIX + key])
    columns = " ".join(state["selectedColumns"])
    for name in ("views.strength", "negatives.lower", "negatives.upper", "val_linear_acc", "linear_acc", "mi_nats"):
        assert f"`{name}`" in columns, (name, columns)
    assert state["orderByKey"] == "metrics.`val_linear_acc`" and state["orderByAsc"] is False


@pytest.mark.integration
def test_the_parent_run_is_the_front_page(tiny_search):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tiny_search.db}")
    summary = json.loads((tiny_search.cwd / "runs" / "tiny" / "report" / "summary.json").read_text())
    parent = client.get_run(summary["parent_run_id"])
    best = summary["best_point"]
    assert parent.data.metrics["best_val_linear_acc"] == pytest.approx(best["val_linear_acc_mean"])
    assert parent.data.metrics["best_linear_acc"] == pytest.approx(best["linear_acc_mean"])
    assert parent.data.tags["viewsearch.verdict"] == summary["verdict"]
    note = parent.data.tags["mlflow.note.content"]
    assert f"Verdict: {summary['verdict']}" in note and "| point |" in note
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.html", "report/mi_vs_accuracy.png", "report/summary.json"} <= artifacts
    html = (tiny_search.cwd / "runs" / "tiny" / "report" / "report.html").read_text()
    assert "data:image/png;base64," in html and "![" not in html  # images embedded, not literal text
