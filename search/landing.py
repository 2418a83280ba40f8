"""The link a search prints: the MLflow runs table already set up for comparing trials.

MLflow's UI keeps a saved/shared view of the runs page as an *experiment tag*; a link with
``viewStateShareKey=<key>`` opens the view stored in ``mlflow.sharedViewState.<key>``. This is
**internal UI state of MLflow 3.17**, not a public API: the format below was read from the
bundled UI (``mlflow/server/js/build/static/js``) and checked in a browser against MLflow
3.17.2. :func:`write_landing_view` writes it only when the installed MLflow is a version the
format was verified for (:data:`VERIFIED_VERSIONS`); otherwise it writes nothing and returns
``None``, and the caller prints the plain link (:func:`landing_url` without a key), which sorts
the table through ordinary URL parameters but cannot choose columns.

Format (``STATE_VERSION = "mlflow-3.17"``)
------------------------------------------
Tag ``mlflow.sharedViewState.<key>``; its value is a JSON *envelope* (the 3.17 "saved views"
format; the view also appears by name in the runs page's saved-views menu)::

    {"name": "<view name>", "createdAt": <ms>, "updatedAt": <ms>, "state": "<state>"}

``state`` is the view as a JSON string, either plain or ``"deflate;" + base64(zlib(json))``
(pako ``deflate``/``inflate``, i.e. zlib-wrapped; the UI writes the compressed form, reads
both). The UI caps the envelope at 20,000 characters (also MLflow's experiment-tag value limit).
The UI also reads a bare state (plain or ``deflate;``) with no envelope, the older share form.

The decoded state is the runs page's search facets plus its UI state, flat in one object:

* search facets (pushed into the URL when the view opens): ``searchFilter`` (an MLflow filter
  string), ``orderByKey`` (``attributes.start_time`` or ``metrics.`name``` / ``params.`name```),
  ``orderByAsc`` (bool), ``startTime`` ("ALL"), ``lifecycleFilter`` ("Active"),
  ``modelVersionFilter`` ("All Runs"), ``datasetsFilter`` (list);
* UI state: ``selectedColumns`` (``params.`name```, ``metrics.`name```, ``tags.`name```,
  ``attributes.`Source``` ...), ``columnOrder``, ``columnWidths``, ``runsHiddenMode``
  ("FIRST_10_RUNS", "SHOW_ALL", ...), ``compareRunCharts`` (chart cards, e.g. a ``SCATTER`` card
  with ``xaxis``/``yaxis`` ``{"key": metric, "type": "METRIC"}``), ``compareRunSections`` (the
  chart sections the cards' ``metricSectionId`` point to), ``groupBy`` (``{"aggregateFunction":
  "max"|"min"|"average", "groupByKeys": [{"mode": "tag"|"param"|"dataset", "groupByData":
  name}]}``), ``groupsExpanded``, ``useGroupedValuesInCharts``, ``hideEmptyCharts``,
  ``viewMaximized``, ``runListHidden``, ``isAccordionReordered``, ``globalLineChartConfig``...
  The UI ignores ``runsExpanded``, ``runsPinned``, ``runsHidden``, ``runsVisibilityMap`` and
  ``autoRefreshEnabled`` from a shared view.

The URL (``#/experiments/<id>/runs?...``) reads ``workflowType`` (``machine_learning`` opens the
model-training pages, not the GenAI ones), ``compareRunsMode`` (``TABLE`` | ``CHART``), the
search facets above as plain parameters (``orderByAsc=false``), and ``viewStateShareKey``.
**If any search-facet parameter is in the URL, the shared view is not loaded at all**, so the
link with a key carries no sort/filter parameters; the state itself holds the sort.

Nesting: the table nests child runs under their parent only while sorted by start time with no
filter; sorted by a metric it is flat. To keep trials together per search while sorted, the view
groups rows by a tag (``mlflow.parentRunId`` by default: one group per search, labelled with the
parent's run id, groups ordered by their best value of the sort metric, trials inside sorted best
first; the parent runs, which lack the tag, sit in a collapsed "Additional runs" group). Tag the
trials with ``viewsearch.search_id`` and pass ``group_by_tag="viewsearch.search_id"`` for readable
group labels, or ``group_by_tag=None`` for a flat table.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import zlib
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from analysis.store import TAG_PARENT, TAG_POINT_NAME, TAG_SHARED_VIEW_PREFIX
from trainers.results import KNN_ACC, LABEL_MI_NATS, LINEAR_ACC, MI_NATS, VAL_KNN_ACC, VAL_LINEAR_ACC

STATE_VERSION = "mlflow-3.17"
VERIFIED_VERSIONS = ((3, 17),)  # MLflow major.minor the format was checked against (3.17.2)

TAG_PREFIX = TAG_SHARED_VIEW_PREFIX
URL_KEY = "viewStateShareKey"
COMPRESSED_PREFIX = "deflate;"
MAX_TAG_CHARS = 20_000
VIEW_NAME = "viewsearch: best trials"
PARENT_TAG = TAG_PARENT

_SECTION_ID = "viewsearch-section"
_SCATTER_ID = "viewsearch-scatter"


def column(kind: str, name: str) -> str:
    """A runs-table column / sort key: ``metrics.`val_linear_acc```, ``params.`views.strength```."""
    if kind not in ("metrics", "params", "tags", "attributes"):
        raise ValueError(f"unknown column kind {kind!r}")
    return f"{kind}.`{name}`"


def view_state(
    searched_params: Sequence[str],
    metrics: Sequence[str],
    sort_metric: str,
    descending: bool = True,
    *,
    search_filter: str = "",
    group_by_tag: str | None = PARENT_TAG,
    aggregate: str | None = None,
    scatter: tuple[str, str] | None = (MI_NATS, LINEAR_ACC),
    extra_columns: Sequence[str] = (),
    show_all_runs: bool = True,
) -> dict[str, Any]:
    """The decoded view: searched params and metrics as columns, sorted by ``sort_metric``.

    ``group_by_tag`` groups rows by that run tag (``None``: a flat table); ``aggregate`` is how a
    group's row summarises its runs ("average", "max", "min"; default: the best, by the sort), and
    the charts then plot one dot per group. ``scatter`` is ``(x_metric, y_metric)`` for a scatter
    chart in the Chart view (``None``: no chart).
    ``extra_columns`` are ready-made column keys (see :func:`column`).
    """
    columns = [column("params", p) for p in searched_params] + [column("metrics", m) for m in metrics]
    columns += [c for c in extra_columns if c not in columns]
    state: dict[str, Any] = {
        # search facets
        "searchFilter": search_filter,
        "orderByKey": column("metrics", sort_metric),
        "orderByAsc": not descending,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        # UI state
        "selectedColumns": list(dict.fromkeys(columns)),
        "columnOrder": [],
        "columnWidths": {},
        "runsHiddenMode": "SHOW_ALL" if show_all_runs else "FIRST_10_RUNS",
        "viewMaximized": False,
        "runListHidden": False,
        "isAccordionReordered": False,
        "groupBy": None,
        "groupsExpanded": {},
        # with groups, charts show one dot per group (a point: its replicates' mean); without, every trial
        "useGroupedValuesInCharts": bool(group_by_tag),
        "hideEmptyCharts": True,
        "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0, "selectedXAxisMetricKey": ""},
    }
    if group_by_tag:
        state["groupBy"] = {
            "aggregateFunction": aggregate or ("min" if not descending else "max"),
            "groupByKeys": [{"mode": "tag", "groupByData": group_by_tag}],
        }
    if scatter:
        x, y = scatter
        state["compareRunSections"] = [
            {
                "uuid": _SECTION_ID,
                "name": "Search",
                "display": True,
                "isReordered": False,
                "deleted": False,
                "isGenerated": False,
            },
        ]
        state["compareRunCharts"] = [
            {
                "uuid": _SCATTER_ID,
                "type": "SCATTER",
                "runsCountToCompare": 100,
                "metricSectionId": _SECTION_ID,
                "deleted": False,
                "isGenerated": False,
                "displayName": f"{y} vs {x}",
                "xaxis": {"key": x, "type": "METRIC"},
                "yaxis": {"key": y, "type": "METRIC"},
            },
        ]
    return state


def encode_view_state(state: dict, name: str = VIEW_NAME, created_at_ms: int | None = None) -> str:
    """The experiment-tag value for ``state``: the 3.17 envelope around the compressed state."""
    text = json.dumps(state, separators=(",", ":"), ensure_ascii=False)
    packed = COMPRESSED_PREFIX + base64.b64encode(zlib.compress(text.encode("utf-8"), 9)).decode("ascii")
    now = int(time.time() * 1000) if created_at_ms is None else int(created_at_ms)
    value = json.dumps({"name": name, "createdAt": now, "updatedAt": now, "state": packed}, separators=(",", ":"))
    if len(value) > MAX_TAG_CHARS:
        raise ValueError(f"view state is {len(value)} characters, the UI takes at most {MAX_TAG_CHARS}")
    return value


def decode_view_state(text: str) -> dict:
    """The state in a tag value; reads the envelope and the older bare forms, plain or compressed."""
    obj: Any = None
    try:
        obj = json.loads(text)
    except ValueError:
        pass
    if (
        isinstance(obj, dict)
        and isinstance(obj.get("name"), str)
        and isinstance(obj.get("createdAt"), (int, float))
        and isinstance(obj.get("state"), str)
    ):
        text = obj["state"]
    elif obj is not None and not text.startswith(COMPRESSED_PREFIX):
        return obj
    if text.startswith(COMPRESSED_PREFIX):
        text = zlib.decompress(base64.b64decode(text[len(COMPRESSED_PREFIX) :])).decode("utf-8")
    return json.loads(text)


def view_key(stable: str) -> str:
    """A key from a stable input (the experiment name), so a rerun overwrites the same tag."""
    return "viewsearch-" + hashlib.sha1(stable.encode("utf-8")).hexdigest()[:16]


def landing_url(
    base_url: str,
    experiment_id: str,
    key: str | None,
    sort_metric: str,
    descending: bool = True,
    *,
    search_filter: str = "",
    chart: bool = False,
) -> str:
    """The runs page of the experiment in the model-training workflow.

    With ``key``: the saved view (it holds the sort, columns and chart); without: the plain link,
    sorted through URL parameters (``orderByKey``/``orderByAsc``/``searchFilter``). The two are
    exclusive: the UI skips a shared view when sort or filter parameters are in the URL.
    """
    query: dict[str, str] = {"workflowType": "machine_learning"}
    if chart:
        query["compareRunsMode"] = "CHART"
    if key:
        query[URL_KEY] = key
    else:
        query["orderByKey"] = column("metrics", sort_metric)
        query["orderByAsc"] = "false" if descending else "true"
        if search_filter:
            query["searchFilter"] = search_filter
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{urlencode(query)}"


def format_verified(version: str | None = None) -> bool:
    """Whether the installed (or given) MLflow version is one the state format was verified for."""
    if version is None:
        import mlflow

        version = mlflow.__version__
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) in VERIFIED_VERSIONS


def write_landing_view(
    client,
    experiment_id: str,
    searched_params: Sequence[str],
    metrics: Sequence[str],
    sort_metric: str,
    *,
    key: str | None = None,
    descending: bool = True,
    **state_options: Any,
) -> str | None:
    """Store the view as an experiment tag and return its key; ``None`` (nothing written) when
    the installed MLflow is not a version the format was verified for.

    ``key`` defaults to :func:`view_key` of the experiment's name, so a rerun replaces the view.
    ``state_options`` go to :func:`view_state`.
    """
    if not format_verified():
        return None
    if key is None:
        key = view_key(client.get_experiment(experiment_id).name)
    state = view_state(searched_params, metrics, sort_metric, descending, **state_options)
    client.set_experiment_tag(experiment_id, TAG_PREFIX + key, encode_view_state(state))
    return key


def search_link(spec: Any, store: Any, experiment_id: str) -> str:
    """The runs table of this experiment, best first by validation accuracy, with the searched
    params and the accuracies as columns, one group per point (its replicates averaged): an
    MLflow saved view where this MLflow supports it, else a plain sorted link."""
    from mlflow.tracking import MlflowClient

    from search.replicates import SEED_KEY

    select, fit = spec.analysis.select_metric(), spec.analysis.fit_metric()
    searched = list(spec.domains) + ([SEED_KEY] if spec.search.repeats > 1 else [])
    metrics = list(dict.fromkeys([select, fit, VAL_LINEAR_ACC, LINEAR_ACC, VAL_KNN_ACC, KNN_ACC, MI_NATS,
                                  LABEL_MI_NATS]))
    base = store.runs_url(experiment_id).split("/#/")[0]
    key = write_landing_view(MlflowClient(store.uri), experiment_id, searched, metrics, select,
                             group_by_tag=TAG_POINT_NAME, aggregate="average", scatter=(MI_NATS, fit))
    return landing_url(base, experiment_id, key, select)
