"""The end-of-search printout: one row per trial, then the report's answer (``verdict_block``):
the best point with its replicates, the verdict with its stability, rise, fall and delta.

One notion of "best" everywhere: the best *point* of the report's ``summary.json`` (highest mean
validation accuracy of the analysis probe over its replicates), the same the parent run and the
experiment's description in MLflow show. Rows are built from plain dicts (``TrialRow``) so the
table can be tested without Ray; ``rows`` is the only function that knows Ray's ``ResultGrid``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from trainers.results import DIVERGED, EPOCH, LINEAR_ACC, MI_NATS, VAL_KNN_ACC, VAL_LINEAR_ACC


@dataclass(frozen=True)
class TrialRow:
    trial_id: str
    params: dict[str, Any]  # the searched values only
    epochs: int
    val_knn_acc: float
    val_linear_acc: float
    linear_acc: float
    mi_nats: float
    status: str  # completed | stopped_early | diverged | error


def outcome(last: dict, error: bool = False) -> str:
    if error:
        return "error"
    if last.get(DIVERGED):
        return "diverged"
    return "completed" if LINEAR_ACC in last else "stopped_early"


def rows(results: Any) -> list[TrialRow]:
    """ResultGrid -> rows, in trial order."""
    out = []
    for result in results:
        last = result.metrics or {}
        out.append(
            TrialRow(
                trial_id=str(last.get("trial_id", "?")),
                params=dict(result.config or {}),
                epochs=int(last.get(EPOCH, 0) or 0),
                val_knn_acc=_num(last.get(VAL_KNN_ACC)),
                val_linear_acc=_num(last.get(VAL_LINEAR_ACC)),
                linear_acc=_num(last.get(LINEAR_ACC)),
                mi_nats=_num(last.get(MI_NATS)),
                status=outcome(last, result.error is not None),
            )
        )
    return sorted(out, key=lambda r: r.trial_id)


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.4g}"
    return str(value)


def table(trial_rows: list[TrialRow]) -> str:
    """A fixed-width text table: searched params first, then the accuracies, MI and status."""
    keys = list(dict.fromkeys(k for r in trial_rows for k in r.params))
    head = ["trial", *keys, "epochs", VAL_KNN_ACC, VAL_LINEAR_ACC, LINEAR_ACC, MI_NATS, "status"]
    body = [
        [r.trial_id, *(fmt(r.params.get(k, "")) for k in keys), str(r.epochs), fmt(r.val_knn_acc),
         fmt(r.val_linear_acc), fmt(r.linear_acc), fmt(r.mi_nats), r.status]
        for r in trial_rows
    ]
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    line = lambda row: "  ".join(cell.ljust(w) for cell, w in zip(row, widths))
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, body)])


def verdict_block(summary: dict, report_md: str) -> str:
    """The best point first, then its replicates, then the verdict line (from ``summary.json``)."""
    from analysis.render import best_point_text, headline

    sel, fit = summary["select_metric"], summary["fit_metric"]
    lines = [f"best point (highest mean {sel} of its replicates): {best_point_text(summary)}"]
    best = summary.get("best_point") or {}
    for rep in best.get("replicates", []):
        lines.append(f"  seed {rep.get('seed')}: {sel} {fmt(rep.get(sel))}  test {fit} {fmt(rep.get(fit))}  "
                     f"(run {rep['run_id'][:8]})")
    lines.append(f"InfoMin verdict: {headline(summary)}")
    lines += [f"  {summary['reasons'][0]}"] if summary.get("reasons") else []
    lines.append(f"  report: {report_md}")
    return "\n".join(lines)
