"""The InfoMin report of one search, rebuilt from what MLflow holds.

Reads the trial runs of the experiment's search (the parent run that ``runs/<experiment>/
search.json`` records, or ``--parent-run``) and the ``analysis`` section the search recorded as
params of that parent run (``analysis/settings.py``; the defaults for a search from before the
section), groups replicates by point, decides the InfoMin verdict (``analysis/decision.py``)
and writes ``runs/<experiment>/report/``: ``summary.json`` (``analysis/summary.py``),
``report.md`` and ``report.html`` (the same, images embedded, which MLflow's artifact view
shows; ``analysis/render.py``), ``mi_vs_accuracy.png``, ``knobs.png`` and the view grids of the
points with the lowest, median and highest MI (``analysis/figures.py``). The files are logged to
the parent run, which also becomes the search's front page: the best point's metrics, the
verdict and its stability as tags, a description with the headline and the point table. The
experiment's description (shown above its runs table) gets the same headline and the link to
report.html.

Selection reads validation: the best point and the peak point are ranked by the validation
accuracy of the analysis probe (``val_<probe>_acc``), mean over replicates. The InfoMin fit reads
the test split's ``<probe>_acc``: it is a reported measurement and selects nothing.

    python -m analysis.report --experiment augment_strength [--tracking-uri URI] [--runs-dir runs]

Exit codes: 0 (a report was written, with or without a verdict); 2 (no such experiment or
search, an unreachable store, or a store holding fewer trials than the report already shows:
a report is never replaced by one with less).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from analysis.figures import fetch_view_grids, plot_knobs, plot_mi_vs_accuracy
from analysis.render import (
    best_point_text,
    effect_text,
    fmt,
    headline,
    point_table,
    summary_lines,
    write_html,
    write_markdown,
)
from analysis.settings import AnalysisConfig
from analysis.state import SearchState
from analysis.store import (
    DEFAULT_ROOT,
    EXPERIMENT_NAME_RULE,
    REPORT_DIR,
    REPORT_HTML,
    TAG_BEST_POINT,
    TAG_NOTE,
    TAG_VERDICT,
    TAG_VERDICT_LINE,
    default_tracking_uri,
    report_dir,
    running_search,
    shown,
    ui_base,
    valid_experiment,
)
from analysis.summary import points, ring_comparison, summarise
from analysis.trials import ReportError, Trial, check_store_reachable, finite, load_trials
from trainers.results import MI_NATS

__all__ = ["ReportError", "Trial", "build_report", "main", "points", "summarise"]


def report_link(base_url: str, experiment_id: str, parent_id: str) -> str:
    """report.html in the MLflow UI's artifact view of the parent run, in the model-training
    layout (``workflowType=machine_learning``)."""
    return (f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{parent_id}/artifacts/{REPORT_HTML}"
            "?workflowType=machine_learning")


def front_page(client: Any, parent_id: str, summary: dict) -> None:
    """The parent run as the search's front page: best point's metrics, the verdict, the table."""
    best = summary.get("best_point")
    sel, fit = summary["select_metric"], summary["fit_metric"]
    metrics = {"n_trials": summary["n_trials"], "n_points": summary["n_points"]}
    if best:
        metrics.update({f"best_{sel}": best.get(f"{sel}_mean"), f"best_{fit}": best.get(f"{fit}_mean"),
                        "best_mi_nats": best[MI_NATS]})
    if summary.get("stability"):
        metrics["verdict_stability"] = summary["stability"]["share"]
    for key in ("rise", "fall"):
        if summary.get(key):
            metrics[key] = summary[key]["mean"]
    for key, value in metrics.items():
        if finite(value):
            client.log_metric(parent_id, key, shown(value))
    client.set_tag(parent_id, TAG_VERDICT, summary["verdict"])
    client.set_tag(parent_id, TAG_VERDICT_LINE, headline(summary)[:5000])
    if best:
        client.set_tag(parent_id, TAG_BEST_POINT, best["name"])
    note = ["# InfoMin search", "", *summary_lines(summary), "", "## Points", "", *point_table(summary), "",
            f"Full report with figures: artifacts, {REPORT_HTML}."]
    client.set_tag(parent_id, TAG_NOTE, "\n".join(note)[:60_000])


def experiment_note(summary: dict, link: str | None) -> str:
    """The experiment's description: what a user sees above the runs table without a click (the
    UI shows its first two lines folded, so they carry the verdict, its stability, the best point,
    the rise, the fall and delta)."""
    stable, best = summary.get("stability"), summary.get("best_point")
    share = f" ({stable['share']:.0%} of seed resamples agree)" if stable else ""
    first = [f"**InfoMin verdict: {summary['verdict']}**{share}"]
    if best:
        sel = summary["select_metric"]
        first.append(f"best point **{best['name']}** ({sel} {fmt(best.get(f'{sel}_mean'), 4)})")
    first += [f"rise {effect_text(summary.get('rise'))}", f"fall {effect_text(summary.get('fall'))}",
              f"δ = {summary.get('min_effect', 0.01):g}"]
    lines = [" · ".join(first), "", f"Verdict: {headline(summary)}.", "",
             f"**Best point** (highest mean {summary['select_metric']} of its replicates): {best_point_text(summary)}.",
             ""]
    if summary["reasons"]:
        lines += [summary["reasons"][0], ""]
    if link:
        lines.append(f"[Full report with figures (report.html)]({link})")
    return "\n".join(lines)


def describe_experiment(client: Any, experiment: str, parent_id: str, summary: dict, base_url: str) -> None:
    exp = client.get_experiment_by_name(experiment)
    link = report_link(base_url, exp.experiment_id, parent_id)
    client.set_experiment_tag(exp.experiment_id, TAG_NOTE, experiment_note(summary, link)[:20_000])


def _refuse_less(out: Path, parent_id: str, summary: dict) -> None:
    try:
        old = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return
    if old.get("parent_run_id") == parent_id and old.get("n_trials", 0) > summary["n_trials"]:
        raise ReportError(f"the store now holds {summary['n_trials']} trials of this search, but {out} reports "
                          f"{old['n_trials']}: the store lost trials, so the report is left as it is")


def build_report(experiment: str, tracking_uri: str | None = None, runs_dir: Path = DEFAULT_ROOT,
                 parent_id: str | None = None, log_to_parent: bool = True, settings: AnalysisConfig | None = None,
                 ui_url: str | None = None) -> Path:
    """Write the report folder and return it. Raises ReportError (nothing written) when it cannot.

    ``settings``: the spec's analysis section (default: what the parent run recorded);
    ``ui_url``: the MLflow UI's address, for the report link in the experiment's description
    (default: the tracking server, or the printed ``mlflow ui`` command's 127.0.0.1:5000)."""
    if not valid_experiment(experiment):
        raise ReportError(f"--experiment: {experiment!r} is not a valid name ({EXPERIMENT_NAME_RULE})")
    runs_dir = Path(runs_dir)
    uri = tracking_uri or default_tracking_uri(runs_dir)
    if parent_id is None:
        state = SearchState.find(runs_dir, experiment)
        if state is None:
            raise ReportError(f"--experiment: no search of {experiment!r} under {runs_dir} (no search.json there); "
                              "pass --runs-dir, or --parent-run with the search's MLflow parent run id")
        parent_id = state.parent_run_id
    check_store_reachable(uri)
    trials, settings = load_trials(experiment, uri, parent_id, settings)
    summary = {"parent_run_id": parent_id, **summarise(trials, settings)}
    summary["ring_vs_uniform"] = ring_comparison(trials, settings)
    out = report_dir(runs_dir, experiment)
    _refuse_less(out, parent_id, summary)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot_mi_vs_accuracy(trials, summary, out / "mi_vs_accuracy.png")
    plot_knobs(trials, out / "knobs.png", (settings.select_metric(), settings.fit_metric()))
    grids = fetch_view_grids(trials, uri, out)
    write_markdown(experiment, summary, grids, out / "report.md")
    write_html(experiment, summary, grids, out / "report.html")
    if log_to_parent:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        client.log_artifacts(parent_id, str(out), artifact_path=REPORT_DIR)
        front_page(client, parent_id, summary)
        describe_experiment(client, experiment, parent_id, summary, ui_url or ui_base(uri))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description="Rebuild a search's InfoMin report.")
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI or sqlite:///runs/mlflow.db")
    parser.add_argument("--runs-dir", default=str(DEFAULT_ROOT), help="the search's output.root (default: runs)")
    parser.add_argument("--parent-run", default=None, help="the search's MLflow parent run id (default: search.json)")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no download bars on the console
    running = running_search(Path(args.runs_dir), args.experiment)
    try:
        out = build_report(args.experiment, args.tracking_uri, Path(args.runs_dir), args.parent_run)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = json.loads((out / "summary.json").read_text())
    print(f"verdict: {headline(summary)}")
    print(f"best point: {best_point_text(summary)}")
    print(f"({summary['n_scored']} finished trials, {summary['n_used']} with a view MI, at {summary['n_points']} "
          "points)")
    for reason in summary["reasons"]:
        print(f"  - {reason}")
    print(f"report: {out / 'report.md'}")
    if running:
        print(f"note: the search is still running ({running}): this report covers the trials finished so far, "
              "and the search rewrites it when it ends")
    return 0


if __name__ == "__main__":
    sys.exit(main())
