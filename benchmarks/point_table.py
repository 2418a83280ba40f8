"""Per-point table of a finished search, both probes side by side, read back from MLflow.

For each value of the searched knob: the view MI, the task information I(v; y) (and its share of
H(y)), the kNN and linear test accuracies (mean and SD of the replicates), the untrained
encoder's accuracies (the floor); then, per probe, the pooled seed SD, the range of the point
means and their ratio -- the dynamic range over seed noise a probe is chosen by. Reads the
trials' final metrics only; trains nothing, selects nothing.

    python benchmarks/point_table.py --experiment augment_strength_seed0 --out benchmarks/results/x.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.noise import pooled_sd
from analysis.state import SearchState
from analysis.store import DEFAULT_ROOT, TAG_PARENT, default_tracking_uri
from trainers.results import KNN_ACC, LABEL_ENTROPY_NATS, LABEL_MI_NATS, LINEAR_ACC, MI_NATS, floor_metric

PROBES = (KNN_ACC, LINEAR_ACC)
SHOWN = (MI_NATS, LABEL_MI_NATS, LABEL_ENTROPY_NATS, floor_metric(KNN_ACC), floor_metric(LINEAR_ACC))


def load(experiment: str, uri: str, knob: str, root: Path) -> dict[float, list[dict]]:
    """The finished trials of the experiment's current search (``search.json``'s parent run)."""
    from mlflow.tracking import MlflowClient

    state = SearchState.find(root, experiment)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None or not state:
        raise SystemExit(f"error: --experiment: no search {experiment!r} in {uri} / {root}")
    parent = state.parent_run_id
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`{TAG_PARENT}` = '{parent}'", max_results=5000)
    groups: dict[float, list[dict]] = {}
    for r in runs:
        m = r.data.metrics
        if r.info.status == "FINISHED" and all(p in m for p in PROBES) and knob in r.data.params:
            groups.setdefault(float(r.data.params[knob]), []).append(m)
    return dict(sorted(groups.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--knob", default="views.strength")
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--runs-dir", default=str(DEFAULT_ROOT))
    parser.add_argument("--out")
    args = parser.parse_args()
    groups = load(args.experiment, args.tracking_uri or default_tracking_uri(Path(args.runs_dir)), args.knob,
                  Path(args.runs_dir))
    rows = []
    print(f"| {args.knob} | n | view MI | I(v;y) (share of H(y)) | kNN test | linear test | floor kNN | floor linear |")
    print("|---|---|---|---|---|---|---|---|")
    for value, trials in groups.items():
        row = {"value": value, "n": len(trials)}
        for key in SHOWN:
            vals = [t[key] for t in trials if key in t]
            row[key] = statistics.mean(vals) if vals else None
        for p in PROBES:
            vals = [t[p] for t in trials]
            row[f"{p}_mean"], row[f"{p}_sd"] = statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else None
        rows.append(row)
        share = f"{row[LABEL_MI_NATS]:.2f} ({row[LABEL_MI_NATS] / row[LABEL_ENTROPY_NATS]:.0%})" \
            if row[LABEL_MI_NATS] is not None else "-"
        floor = [f"{row[k]:.4f}" if row[k] is not None else "-" for k in (floor_metric(KNN_ACC), floor_metric(LINEAR_ACC))]
        print(f"| {value:g} | {len(trials)} | {row[MI_NATS]:.2f} | {share} | {row['knn_acc_mean']:.4f} "
              f"+- {row['knn_acc_sd'] or 0:.4f} | {row['linear_acc_mean']:.4f} +- {row['linear_acc_sd'] or 0:.4f} | "
              f"{floor[0]} | {floor[1]} |")
    probes = {}
    for p in PROBES:
        sd, df = pooled_sd({str(v): [t[p] for t in ts] for v, ts in groups.items()})
        means = [r[f"{p}_mean"] for r in rows]
        span = max(means) - min(means)
        probes[p] = {"pooled_sd": sd, "df": df, "range_of_point_means": span, "range_over_sd": span / sd if sd else None}
        print(f"{p}: range of point means {span * 100:.2f} pts, pooled seed SD {sd * 100:.2f} pts ({df} df), "
              f"range / SD {span / sd:.1f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"experiment": args.experiment, "knob": args.knob, "points": rows,
                                              "probes": probes}, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
