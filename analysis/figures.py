"""The report's figures: accuracy against view MI (trials, point means with CIs, the fits, the
untrained encoder's floor, the task information of each point) and accuracy against each
searched knob; and the view grids copied from the trials."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from analysis.trials import Trial
from trainers.results import LABEL_ENTROPY_NATS, LABEL_MI_NATS, MI_CAP_NATS, MI_NATS


def pyplot():
    """matplotlib's pyplot on the Agg backend: figures are files, no display is needed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _title(summary: dict) -> str:
    stable = summary.get("stability")
    share = f", {stable['share']:.0%} of seed resamples" if stable else ""
    return f"verdict: {summary['verdict']}{share}  ({summary['n_used']} trials, {summary['n_points']} points)"


MI_AXIS = "view MI estimate I(v1; v2) [nats]  (views share less ←  → more)"


def curve_rows(summary: dict, metric: str) -> list[dict]:
    """The points with a view MI and a mean of ``metric``, in MI order: what a curve line joins."""
    return sorted((r for r in summary["points"] if r.get(MI_NATS) is not None and r.get(f"{metric}_mean") is not None),
                  key=lambda r: r[MI_NATS])


def plot_mi_vs_accuracy(trials: list[Trial], summary: dict, path: Path) -> Path | None:
    """None (no figure) when no trial has a view MI."""
    import numpy as np

    used = [t for t in trials if t.usable]
    if not used:
        path.unlink(missing_ok=True)  # a figure from an earlier report would describe other trials
        return None
    metric, probe = summary["fit_metric"], summary["probe"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.4, 4.8), dpi=110)
    mi = np.array([t.metrics[MI_NATS] for t in used])
    acc = np.array([t.metrics[metric] for t in used])
    rows = curve_rows(summary, metric)
    replicated = any(r["n"] > 1 for r in rows)
    ax.scatter(mi, acc, color="tab:blue", alpha=0.3 if replicated else 1.0, s=12 if replicated else 30,
               zorder=3, label="trials")
    if replicated:
        ax.errorbar([r[MI_NATS] for r in rows], [r[f"{metric}_mean"] for r in rows],
                    yerr=[r[f"{metric}_half_width"] or 0 for r in rows], fmt="o-", color="tab:blue", lw=1,
                    capsize=3, zorder=4, label="point mean, 95% CI (pooled SD)")
    _mark_peak(ax, summary, rows, metric)
    quad = summary.get("quadratic")
    if quad:
        xs = np.linspace(mi.min(), mi.max(), 200)
        ax.plot(xs, quad["a"] * xs**2 + quad["b"] * xs + quad["c"], color="tab:orange", lw=1, alpha=0.8,
                label=f"quadratic fit, descriptive (R²={quad['r2']:.2f})")
    floor = summary.get("floor")
    if floor:
        ax.axhline(floor["mean"], color="black", linestyle=":", label=f"untrained encoder ({floor['mean']:.3f})")
    cap = summary.get(MI_CAP_NATS)
    if cap:
        ax.axvline(cap, color="gray", linestyle="--", lw=1, label=f"InfoNCE cap log K = {cap:.2f}")
    ax.set_xlabel(MI_AXIS)
    ax.set_ylabel(f"{probe} probe accuracy (test split)")
    ax.set_title(_title(summary), fontsize=10)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    task = _task_information(ax, rows, summary)
    if task:
        handles, labels = handles + task[0], labels + task[1]
    ax.legend(handles, labels, fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _mark_peak(ax, summary: dict, rows: list[dict], metric: str) -> None:
    peak = next((r for r in rows if r["name"] == summary.get("peak_point")), None)
    if peak is not None:
        ax.scatter([peak[MI_NATS]], [peak[f"{metric}_mean"]], s=140, facecolors="none", edgecolors="tab:red",
                   zorder=5, label=f"peak point ({peak['name']})")


def _task_information(ax, rows: list[dict], summary: dict):
    """I(v; y) of each point on a second axis, H(y) dashed; None when not measured."""
    have = [r for r in rows if r.get(LABEL_MI_NATS) is not None]
    if not have:
        return None
    have.sort(key=lambda r: r[MI_NATS])
    twin = ax.twinx()
    (line,) = twin.plot([r[MI_NATS] for r in have], [r[LABEL_MI_NATS] for r in have], "s--", color="tab:green",
                        ms=4, lw=1, label="task information I(v; y) ≥ H(y) − CE")
    handles, labels = [line], [line.get_label()]
    entropy = summary.get(LABEL_ENTROPY_NATS)
    if entropy:
        h = twin.axhline(entropy, color="tab:green", linestyle="--", lw=0.8, label=f"H(y) = {entropy:.2f} nats")
        handles.append(h)
        labels.append(h.get_label())
        twin.set_ylim(0, entropy * 1.08)
    twin.set_ylabel("task information [nats]", color="tab:green")
    return handles, labels


def plot_knobs(trials: list[Trial], path: Path, metrics: tuple[str, str]) -> Path | None:
    """Accuracy against each searched knob: ``metrics`` = (validation metric, test metric)."""
    plt = pyplot()
    used = [t for t in trials if t.scored]
    knobs = sorted(used[0].searched) if used else []
    if not knobs:
        return None
    cols = min(3, len(knobs))
    rows = math.ceil(len(knobs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), dpi=100, squeeze=False)
    for ax, knob in zip(axes.flat, knobs):
        values = [t.searched[knob] for t in used]
        for metric, colour in zip(metrics, ("tab:green", "tab:blue")):
            acc = [t.metrics[metric] for t in used]
            try:
                xs = [float(v) for v in values]
            except ValueError:
                cats = sorted(set(values))
                xs = [cats.index(v) for v in values]
                ax.set_xticks(range(len(cats)), cats, rotation=20, fontsize=7)
            ax.scatter(xs, acc, s=12, color=colour, alpha=0.6, label=metric)
        ax.set_xlabel(knob)
        ax.set_ylabel("probe accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
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

    ranked = sorted((t for t in trials if t.usable), key=lambda t: t.metrics[MI_NATS])
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
