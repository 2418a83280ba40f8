"""The InfoMin report of one experiment, rebuilt from what MLflow holds.

Reads the trial runs of the experiment's latest search (child runs of its newest parent run),
fits accuracy against view MI (``infomin.analyse``), and writes ``runs/<experiment>/report/``:
``summary.json``, ``report.md``, ``mi_vs_accuracy.png``, ``knobs.png`` (accuracy against each
searched knob) and the view grids of the trials with the lowest, median and highest MI. The
files are also logged to the parent run under ``report/``.

    python -m analysis.report --experiment augment_strength [--tracking-uri sqlite:///runs/mlflow.db]

Exit codes: 0 (a report was written, with or without a verdict), 2 (no such experiment).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.compare import ArmRow, ring_vs_uniform
from analysis.infomin import analyse

RUNS_DIR = Path("runs")
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class ReportError(Exception):
    """Nothing to report on (unknown experiment, bad name): the CLI exits 2."""


def default_tracking_uri(runs_dir: Path = RUNS_DIR) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the project's SQLite store as an absolute URI."""
    import os

    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(runs_dir / 'mlflow.db').resolve()}"


@dataclass
class Trial:
    run_id: str
    name: str
    status: str
    params: dict[str, str]
    metrics: dict[str, float]
    searched: dict[str, str] = field(default_factory=dict)

    @property
    def diverged(self) -> bool:
        return self.metrics.get("diverged", 0.0) >= 0.5

    @property
    def usable(self) -> bool:
        m = self.metrics
        return (
            self.status == "FINISHED"
            and not self.diverged
            and all(_finite(m.get(k)) for k in ("linear_acc", "mi_nats"))
        )


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


# --------------------------------------------------------------------------- reading


def load_trials(experiment: str, tracking_uri: str) -> tuple[Any, str | None, list[Trial]]:
    """(mlflow experiment, parent run id, trials of the newest search)."""
    from mlflow.tracking import MlflowClient

    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).is_file():
        raise ReportError(f"--tracking-uri: no tracking store at {tracking_uri} (has a search run here yet?)")
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ReportError(f"--experiment: no MLflow experiment named {experiment!r} in {tracking_uri}")
    runs = _all_runs(client, exp.experiment_id)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    parent = max(parents, key=lambda r: r.info.start_time) if parents else None
    parent_id = parent.info.run_id if parent else None
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id] if parent_id else []
    trials = [
        Trial(r.info.run_id, r.info.run_name or r.info.run_id[:8], r.info.status, dict(r.data.params), dict(r.data.metrics))
        for r in children
    ]
    _mark_searched(trials)
    return exp, parent_id, trials


def _all_runs(client: Any, experiment_id: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _mark_searched(trials: list[Trial]) -> None:
    """A knob was searched if its value differs across the trials."""
    keys = set().union(*(t.params for t in trials)) if trials else set()
    varying = sorted(k for k in keys if len({t.params.get(k) for t in trials}) > 1 and not k.startswith("trainer.seed"))
    for t in trials:
        t.searched = {k: t.params.get(k, "") for k in varying}


# --------------------------------------------------------------------------- summary


def summarise(trials: list[Trial]) -> dict:
    used = [t for t in trials if t.usable]
    stats = analyse([t.metrics["mi_nats"] for t in used], [t.metrics["linear_acc"] for t in used])
    best = max(used, key=lambda t: t.metrics["linear_acc"], default=None)
    caps = [t.metrics["mi_cap_nats"] for t in used if _finite(t.metrics.get("mi_cap_nats"))]
    return {
        "n_trials": len(trials),
        "n_used": len(used),
        "n_diverged": sum(t.diverged for t in trials),
        "diverged_trials": [t.run_id for t in trials if t.diverged],
        "unusable_trials": [t.run_id for t in trials if not t.usable and not t.diverged],
        "spearman_mi_acc": stats.get("spearman_mi_acc"),
        "pearson_mi_acc": stats.get("pearson_mi_acc"),
        "quadratic": stats.get("quadratic"),
        "linear": stats.get("linear"),
        "peak_ci": stats.get("peak_ci"),
        "peak_ci_no_peak_frac": stats.get("peak_ci_no_peak_frac"),
        "two_lines": stats.get("two_lines"),
        "verdict": stats["verdict"],
        "reasons": stats.get("reasons", []),
        "mi_cap_nats": max(caps) if caps else None,
        "best_trial": None
        if best is None
        else {
            "run_id": best.run_id,
            "name": best.name,
            "params": best.searched,
            "linear_acc": best.metrics["linear_acc"],
            "mi_nats": best.metrics["mi_nats"],
        },
    }


def ring_comparison(trials: list[Trial]) -> list[dict]:
    """Ring minus uniform linear accuracy per method, when the search varied the ring."""
    rows = []
    for t in trials:
        p = t.params
        if t.status != "FINISHED" or t.diverged or not _finite(t.metrics.get("linear_acc")):
            continue
        try:
            rows.append(ArmRow(p["method.name"], float(p["negatives.lower"]), float(p["negatives.upper"]),
                               p.get("negatives.anneal", "none"), int(p.get("trainer.seed", 0)), t.metrics["linear_acc"]))
        except (KeyError, ValueError):
            continue
    return ring_vs_uniform(rows)


# --------------------------------------------------------------------------- figures


def plot_mi_vs_accuracy(trials: list[Trial], summary: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    used = [t for t in trials if t.usable]
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    if used:
        mi = np.array([t.metrics["mi_nats"] for t in used])
        acc = np.array([t.metrics["linear_acc"] for t in used])
        ax.scatter(mi, acc, color="tab:blue", zorder=3, label="trials")
        quad = summary.get("quadratic")
        if quad:
            xs = np.linspace(mi.min(), mi.max(), 200)
            ax.plot(xs, quad["a"] * xs**2 + quad["b"] * xs + quad["c"], color="tab:orange",
                    label=f"quadratic fit (R²={quad['r2']:.2f})")
        ci = summary.get("peak_ci")
        if ci and ci[0] is not None and ci[1] is not None:
            ax.axvspan(ci[0], ci[1], color="tab:orange", alpha=0.15, label="peak 95% CI (bootstrap)")
    cap = summary.get("mi_cap_nats")
    if cap:
        ax.axvline(cap, color="gray", linestyle="--", label=f"InfoNCE cap log K = {cap:.2f}")
    ax.set_xlabel("view MI estimate I(v1; v2) [nats]")
    ax.set_ylabel("linear-probe test accuracy")
    ax.set_title(f"verdict: {summary['verdict']}  (n={summary['n_used']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_knobs(trials: list[Trial], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    used = [t for t in trials if t.usable or (t.status == "FINISHED" and _finite(t.metrics.get("linear_acc")))]
    knobs = sorted(used[0].searched) if used else []
    if not knobs:
        return None
    cols = min(3, len(knobs))
    rows = math.ceil(len(knobs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), dpi=100, squeeze=False)
    for ax, knob in zip(axes.flat, knobs):
        values = [t.searched[knob] for t in used]
        acc = [t.metrics["linear_acc"] for t in used]
        try:
            xs = [float(v) for v in values]
            ax.scatter(xs, acc)
        except ValueError:
            cats = sorted(set(values))
            ax.scatter([cats.index(v) for v in values], acc)
            ax.set_xticks(range(len(cats)), cats, rotation=20, fontsize=7)
        ax.set_xlabel(knob)
        ax.set_ylabel("linear acc")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(knobs):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def fetch_view_grids(trials: list[Trial], tracking_uri: str, out: Path) -> dict[str, str]:
    """Copy the views.png of the lowest, median and highest-MI trials into the report."""
    import shutil

    import mlflow

    ranked = sorted((t for t in trials if t.usable), key=lambda t: t.metrics["mi_nats"])
    if not ranked:
        return {}
    picks = {"low": ranked[0], "medium": ranked[len(ranked) // 2], "high": ranked[-1]}
    got = {}
    for level, trial in picks.items():
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=trial.run_id, artifact_path="views.png", tracking_uri=tracking_uri, dst_path=str(out / f".dl_{level}")
            )
        except Exception as err:  # noqa: BLE001 -- a trial without the artifact: say so, keep reporting
            print(f"note: no views.png for trial {trial.name}: {err}", file=sys.stderr)
            continue
        target = out / f"views_{level}_mi.png"
        shutil.copyfile(local, target)
        shutil.rmtree(out / f".dl_{level}", ignore_errors=True)
        got[level] = target.name
    return got


# --------------------------------------------------------------------------- markdown


def _fmt(v: Any, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if _finite(v) else "—"


def write_markdown(experiment: str, trials: list[Trial], summary: dict, grids: dict[str, str], path: Path) -> Path:
    lines = [f"# InfoMin report: {experiment}", "", f"**Verdict: {summary['verdict']}**", ""]
    lines += [f"- {r}" for r in summary["reasons"]] + [""]
    sp, pe, quad, ci = summary["spearman_mi_acc"], summary["pearson_mi_acc"], summary["quadratic"], summary["peak_ci"]
    lines.append(f"Trials: {summary['n_trials']} ({summary['n_used']} used, {summary['n_diverged']} diverged).")
    if sp:
        lines.append(f"Spearman rho = {_fmt(sp.get('rho'))} (p = {_fmt(sp.get('p'), 3)}); "
                     f"Pearson r = {_fmt(pe.get('r'))} (p = {_fmt(pe.get('p'), 3)}).")
    if quad:
        lines.append(f"Quadratic fit: acc = {quad['a']:.4f}·MI² + {quad['b']:.4f}·MI + {quad['c']:.4f} "
                     f"(R² = {quad['r2']:.3f}); peak at MI = {_fmt(quad.get('peak_mi'))} nats "
                     f"({'inside' if quad.get('peak_in_range') else 'outside'} the observed range); "
                     f"bootstrap 95% CI of the peak: [{_fmt(ci[0] if ci else None)}, {_fmt(ci[1] if ci else None)}].")
    if summary["mi_cap_nats"]:
        lines.append(f"InfoNCE estimates cannot exceed log K = {summary['mi_cap_nats']:.2f} nats.")
    lines += ["", "![MI vs accuracy](mi_vs_accuracy.png)", ""]
    if (path.parent / "knobs.png").exists():
        lines += ["![accuracy against each searched knob](knobs.png)", ""]
    knobs = sorted(trials[0].searched) if trials else []
    header = ["trial", *knobs, "linear acc", "kNN acc", "MI [nats]", "status"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for t in sorted(trials, key=lambda t: -(t.metrics.get("linear_acc") or -1)):
        status = "diverged" if t.diverged else t.status.lower()
        cells = [t.name, *(t.searched.get(k, "") for k in knobs), _fmt(t.metrics.get("linear_acc")),
                 _fmt(t.metrics.get("knn_acc")), _fmt(t.metrics.get("mi_nats"), 2), status]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    if summary.get("ring_vs_uniform"):
        lines += ["", "## Ring against uniform negatives (linear accuracy)", "",
                  "| method | arm | ring mean | uniform mean | ring - uniform | 95% CI | n | test |", "|---|---|---|---|---|---|---|---|"]
        for r in summary["ring_vs_uniform"]:
            lo, hi = r["ci95"]
            lines.append(f"| {r['method']} | {r['arm']} | {r['ring_mean']:.4f} | {r['uniform_mean']:.4f} | "
                         f"{r['diff_mean']:+.4f} | [{_fmt(lo, 4)}, {_fmt(hi, 4)}] | {r['n_ring']}/{r['n_uniform']} | {r['test']} |")
    if grids:
        lines += ["", "## Views at low, medium and high MI", ""]
        lines += [f"**{level} MI**\n\n![views at {level} MI]({name})\n" for level, name in grids.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- entry points


def build_report(experiment: str, tracking_uri: str | None = None, runs_dir: Path = RUNS_DIR,
                 log_to_parent: bool = True) -> Path:
    """Write the report folder and return it. Raises ReportError for an unknown experiment."""
    if not NAME_RE.match(experiment) or experiment in (".", ".."):
        raise ReportError(f"--experiment: {experiment!r} is not a valid name (letters, digits, _ - .)")
    uri = tracking_uri or default_tracking_uri(runs_dir)
    _, parent_id, trials = load_trials(experiment, uri)
    out = runs_dir / experiment / "report"
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(trials)
    summary["ring_vs_uniform"] = ring_comparison(trials)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot_mi_vs_accuracy(trials, summary, out / "mi_vs_accuracy.png")
    plot_knobs(trials, out / "knobs.png")
    grids = fetch_view_grids(trials, uri, out)
    write_markdown(experiment, trials, summary, grids, out / "report.md")
    if log_to_parent and parent_id:
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=uri).log_artifacts(parent_id, str(out), artifact_path="report")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description="Rebuild an experiment's InfoMin report.")
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI or sqlite:///runs/mlflow.db")
    args = parser.parse_args(argv)
    try:
        out = build_report(args.experiment, args.tracking_uri)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = json.loads((out / "summary.json").read_text())
    print(f"verdict: {summary['verdict']} ({summary['n_used']} usable trials)")
    for reason in summary["reasons"]:
        print(f"  - {reason}")
    print(f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
