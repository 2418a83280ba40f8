"""The saved runs-table view a search links to (``search.landing``)."""

from __future__ import annotations

import base64
import json
import zlib
from urllib.parse import parse_qs, urlsplit

import pytest

from search import landing

PARAMS = ["views.strength", "negatives.lower"]
METRICS = ["val_knn_acc", "val_linear_acc", "knn_acc", "linear_acc", "mi_nats"]


def _query(url: str) -> dict[str, list[str]]:
    fragment = urlsplit(url).fragment  # "/experiments/<id>/runs?..."
    return parse_qs(fragment.split("?", 1)[1])


def test_state_names_params_metrics_and_sort():
    state = landing.view_state(PARAMS, METRICS, "val_linear_acc")
    assert state["selectedColumns"] == [
        "params.`views.strength`",
        "params.`negatives.lower`",
        *[f"metrics.`{m}`" for m in METRICS],
    ]
    assert state["orderByKey"] == "metrics.`val_linear_acc`"
    assert state["orderByAsc"] is False
    assert state["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": "mlflow.parentRunId"}]
    (chart,) = state["compareRunCharts"]
    assert chart["type"] == "SCATTER"
    assert (chart["xaxis"], chart["yaxis"]) == (
        {"key": "mi_nats", "type": "METRIC"},
        {"key": "linear_acc", "type": "METRIC"},
    )
    assert chart["metricSectionId"] in {s["uuid"] for s in state["compareRunSections"]}
    assert state["useGroupedValuesInCharts"] is True  # grouped rows chart as one dot per group (a point's mean)
    # a flat, ascending view without a chart
    flat = landing.view_state(["lr"], ["loss"], "loss", descending=False, group_by_tag=None, scatter=None)
    assert flat["orderByAsc"] is True and flat["groupBy"] is None and "compareRunCharts" not in flat
    assert flat["useGroupedValuesInCharts"] is False


def test_encode_decode_roundtrip():
    state = landing.view_state(PARAMS, METRICS, "val_linear_acc", search_filter="tags.`viewsearch.role` = 'trial'")
    text = landing.encode_view_state(state, created_at_ms=123)
    envelope = json.loads(text)
    assert envelope["name"] == landing.VIEW_NAME and envelope["createdAt"] == envelope["updatedAt"] == 123
    assert envelope["state"].startswith("deflate;")
    assert landing.decode_view_state(text) == state
    assert landing.encode_view_state(landing.decode_view_state(text), created_at_ms=123) == text
    # the older bare forms the UI still reads: plain JSON and "deflate;" + base64(zlib(JSON))
    raw = json.dumps(state)
    assert landing.decode_view_state(raw) == state
    assert landing.decode_view_state("deflate;" + base64.b64encode(zlib.compress(raw.encode())).decode()) == state


def test_view_key_is_stable_and_url_safe():
    assert landing.view_key("tiny") == landing.view_key("tiny") != landing.view_key("other")
    assert landing.view_key("tiny").replace("-", "").isalnum()


def test_landing_url():
    key = landing.view_key("tiny")
    with_key = landing.landing_url("http://127.0.0.1:5000/", "7", key, "val_linear_acc", chart=True)
    assert with_key.startswith("http://127.0.0.1:5000/#/experiments/7/runs?")
    q = _query(with_key)
    assert q["viewStateShareKey"] == [key] and q["workflowType"] == ["machine_learning"]
    assert q["compareRunsMode"] == ["CHART"]
    assert "orderByKey" not in q  # a sort parameter in the URL makes the UI skip the shared view

    plain = _query(landing.landing_url("http://h:1", "7", None, "val_linear_acc", search_filter="metrics.mi_nats > 0"))
    assert plain["workflowType"] == ["machine_learning"]
    assert plain["orderByKey"] == ["metrics.`val_linear_acc`"] and plain["orderByAsc"] == ["false"]
    assert plain["searchFilter"] == ["metrics.mi_nats > 0"] and "viewStateShareKey" not in plain


def test_version_gate():
    assert landing.format_verified("3.17.2") and landing.format_verified("3.17.0rc1")
    assert not landing.format_verified("3.18.0") and not landing.format_verified("2.22.1")
    assert not landing.format_verified("dev")


def test_write_landing_view_sqlite(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp_id = client.create_experiment("tiny", artifact_location=(tmp_path / "art").as_uri())

    monkeypatch.setattr(landing, "format_verified", lambda version=None: True)
    key = landing.write_landing_view(client, exp_id, PARAMS, METRICS, "val_linear_acc")
    assert key == landing.view_key("tiny")
    value = client.get_experiment(exp_id).tags[landing.TAG_PREFIX + key]
    assert landing.decode_view_state(value) == landing.view_state(PARAMS, METRICS, "val_linear_acc")

    # a rerun overwrites the same tag
    again = landing.write_landing_view(client, exp_id, PARAMS[:1], METRICS, "knn_acc")
    tags = client.get_experiment(exp_id).tags
    assert again == key and [k for k in tags if k.startswith(landing.TAG_PREFIX)] == [landing.TAG_PREFIX + key]
    assert landing.decode_view_state(tags[landing.TAG_PREFIX + key])["orderByKey"] == "metrics.`knn_acc`"

    # an MLflow the format was not verified for: nothing written
    monkeypatch.setattr(landing, "format_verified", lambda version=None: False)
    other = client.create_experiment("other", artifact_location=(tmp_path / "art2").as_uri())
    assert landing.write_landing_view(client, other, PARAMS, METRICS, "val_linear_acc") is None
    assert not any(k.startswith(landing.TAG_PREFIX) for k in client.get_experiment(other).tags)


def test_installed_mlflow_is_gated_correctly():
    import mlflow

    major_minor = tuple(int(p) for p in mlflow.__version__.split(".")[:2])
    assert landing.format_verified() == (major_minor in landing.VERIFIED_VERSIONS)


def test_too_large_state_is_refused():
    state = landing.view_state([f"p{i}" for i in range(10)], ["m"], "m")
    state["columnWidths"] = {base64.b64encode(bytes([i % 256, i // 256, 7])).decode() + str(i): i for i in range(4000)}
    with pytest.raises(ValueError, match="at most"):
        landing.encode_view_state(state)
