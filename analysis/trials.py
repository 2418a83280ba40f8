"""The trials of one search as the report reads them from MLflow: their params, final metrics,
the point each belongs to, and the parent run's recorded ``analysis`` section.

Which trials count: ``Trial.scored`` (finished, not diverged, both the fitted test probe and its
validation twin finite) counts for the points, the noise floor and the best point;
``Trial.usable`` (scored and with a view MI) counts for the InfoMin fit.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.settings import AnalysisConfig, from_params
from analysis.store import REPORT_METRIC, SELECT_METRIC, TAG_PARENT, TAG_POINT, TAG_POINT_NAME
from trainers.pairs.family import KIND_KEY
from trainers.results import DIVERGED, MI_NATS


class ReportError(Exception):
    """Nothing (or less than before) to report on: the CLI exits 2."""


@dataclass
class Trial:
    run_id: str
    name: str
    status: str
    params: dict[str, str]
    metrics: dict[str, float]
    point: str = ""
    point_name: str = ""
    searched: dict[str, str] = field(default_factory=dict)
    fit_metric: str = REPORT_METRIC  # the analysis probe on the test split (``analysis.probe``)
    select_metric: str = SELECT_METRIC  # the same probe on validation

    @property
    def diverged(self) -> bool:
        return self.metrics.get(DIVERGED, 0.0) >= 0.5

    @property
    def scored(self) -> bool:
        """Finished with both accuracies: counts for the points, the noise floor and the best point."""
        m = self.metrics
        return (self.status == "FINISHED" and not self.diverged
                and all(finite(m.get(k)) for k in (self.fit_metric, self.select_metric)))

    @property
    def learned_views(self) -> bool:
        """Its views were learned in its training (``views.pairs`` a family that ``learns``)."""
        from trainers.pairs.registry import FAMILIES

        family = FAMILIES.get(self.params.get(KIND_KEY, ""))
        return bool(family is not None and family.learns)

    @property
    def usable(self) -> bool:
        """Scored and with a view MI: counts for the InfoMin fit."""
        return self.scored and finite(self.metrics.get(MI_NATS))


def finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def mean(values: list[Any]) -> float | None:
    kept = [v for v in values if finite(v)]
    return sum(kept) / len(kept) if kept else None


def check_store_reachable(tracking_uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds on a missing SQLite file or a tracking server that does not answer."""
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).is_file():
        raise ReportError(f"--tracking-uri: no tracking store at {tracking_uri} (has a search run here yet?)")
    if tracking_uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=timeout).close()
        except urllib.error.HTTPError:
            pass
        except (OSError, ValueError) as err:
            raise ReportError(f"--tracking-uri {tracking_uri}: the tracking server does not answer "
                              f"({getattr(err, 'reason', err)})") from None


def parent_analysis(client: Any, parent_id: str) -> AnalysisConfig:
    """The ``analysis`` section the search recorded on its parent run (defaults for older runs)."""
    from trainers.errors import SpecError

    try:
        return from_params(client.get_run(parent_id).data.params)
    except SpecError as err:
        raise ReportError(str(err)) from None


def load_trials(experiment: str, tracking_uri: str, parent_id: str,
                settings: AnalysisConfig | None = None) -> tuple[list[Trial], AnalysisConfig]:
    """The trials (child runs) of one search, with their point and the knobs that vary, and the
    analysis section (``settings``, else the one the parent run recorded)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ReportError(f"--experiment: no MLflow experiment named {experiment!r} in {tracking_uri}")
    try:
        client.get_run(parent_id)
    except MlflowException:
        raise ReportError(f"the store {tracking_uri} has no parent run {parent_id} for experiment {experiment!r} "
                          "(it lost the search?); nothing was written") from None
    settings = settings or parent_analysis(client, parent_id)
    runs, token = [], None
    while True:
        page = client.search_runs([exp.experiment_id], filter_string=f"tags.`{TAG_PARENT}` = '{parent_id}'",
                                  max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    trials = [
        Trial(r.info.run_id, r.info.run_name or r.info.run_id[:8], r.info.status, dict(r.data.params),
              dict(r.data.metrics), r.data.tags.get(TAG_POINT, ""), r.data.tags.get(TAG_POINT_NAME, ""),
              fit_metric=settings.fit_metric(), select_metric=settings.select_metric())
        for r in runs
    ]
    mark_searched(trials)
    return trials, settings


def mark_searched(trials: list[Trial]) -> None:
    """A knob was searched if its value differs across the trials; replicates of a point differ
    only in ``trainer.seed`` and share a point (the tag, or else their other searched values)."""
    keys = set().union(*(t.params for t in trials)) if trials else set()
    varying = sorted(k for k in keys if len({t.params.get(k) for t in trials}) > 1 and k != "trainer.seed")
    for t in trials:
        t.searched = {k: t.params.get(k, "") for k in varying}
        if not t.point:
            t.point = json.dumps(t.searched, sort_keys=True)
        if not t.point_name:
            t.point_name = " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in t.searched.items()) or "spec"
