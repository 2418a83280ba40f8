"""The end-of-search printout: one row per trial, the best trial, and where to look next.

Rows are built from plain dicts (``TrialRow``) so the table can be tested without Ray; ``rows``
is the only function that knows Ray's ``ResultGrid``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any


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
    if last.get("diverged"):
        return "diverged"
    return "completed" if "linear_acc" in last else "stopped_early"


def rows(results: Any) -> list[TrialRow]:
    """ResultGrid -> rows, in trial order."""
    out = []
    for result in results:
        last = result.metrics or {}
        out.append(
            TrialRow(
                trial_id=str(last.get("trial_id", "?")),
                params=dict(result.config or {}),
                epochs=int(last.get("epoch", 0) or 0),
                val_knn_acc=_num(last.get("val_knn_acc")),
                val_linear_acc=_num(last.get("val_linear_acc")),
                linear_acc=_num(last.get("linear_acc")),
                mi_nats=_num(last.get("mi_nats")),
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
    head = ["trial", *keys, "epochs", "val_knn_acc", "val_linear_acc", "linear_acc", "mi_nats", "status"]
    body = [
        [r.trial_id, *(fmt(r.params.get(k, "")) for k in keys), str(r.epochs), fmt(r.val_knn_acc),
         fmt(r.val_linear_acc), fmt(r.linear_acc), fmt(r.mi_nats), r.status]
        for r in trial_rows
    ]
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    line = lambda row: "  ".join(cell.ljust(w) for cell, w in zip(row, widths))
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, body)])


def best(trial_rows: list[TrialRow]) -> TrialRow | None:
    """Highest validation linear-probe accuracy among trials that trained to the end.

    Selection reads the validation split only (the test split is reported beside it); a search
    where no trial completed falls back to the highest per-epoch validation kNN accuracy.
    """
    # Ties (a small validation split has coarse accuracies) go to the final validation kNN, then
    # to the searched values, never to the trial order: Ray's trial ids are random per run.
    ordered = sorted(trial_rows, key=lambda r: json.dumps(r.params, sort_keys=True, default=str))
    done = [r for r in ordered if r.status == "completed" and not math.isnan(r.val_linear_acc)]
    if done:
        return max(done, key=lambda r: (r.val_linear_acc, _or_low(r.val_knn_acc)))
    seen = [r for r in ordered if not math.isnan(r.val_knn_acc)]
    return max(seen, key=lambda r: r.val_knn_acc) if seen else None


def _or_low(value: float) -> float:
    return -math.inf if math.isnan(value) else value
