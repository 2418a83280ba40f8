"""The InfoMin report of one search, rebuilt from what MLflow holds.

Reads the trial runs of the experiment's search (the parent run that ``runs/<experiment>/
search.json`` records, or ``--parent-run``), groups replicates by point, fits test accuracy
against view MI (``infomin.analyse``) and writes ``runs/<experiment>/report/``: ``summary.json``,
``report.md`` and ``report.html`` (the same, images embedded, which MLflow's artifact view
shows), ``mi_vs_accuracy.png``, ``knobs.png`` and the view grids of the points with the lowest,
median and highest MI. The files are logged to the parent run, which also gets the search's
front page: the best point's metrics, the verdict, and a description holding the point table.

Selection reads validation: the best trial and the best point are the highest
``val_linear_acc``. The InfoMin fit reads the test split's ``linear_acc``: it is a reported
measurement and selects nothing.

    python -m analysis.report --experiment augment_strength [--tracking-uri URI] [--runs-dir runs]

Exit codes: 0 (a report was written, with or without a verdict); 2 (no such experiment or
search, an unreachable store, or a store holding fewer trials than the report already shows:
a report is never replaced by one with less).
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.compare import ArmRow, ring_vs_uniform
from analysis.infomin import analyse
from analysis.noise import noise_floor, point_summaries
from analysis.store import (
    DEFAULT_ROOT,
    EXPERIMENT_NAME_RULE,
    REPORT_METRIC,
    SELECT_METRIC,
    TAG_NOTE,
    TAG_PARENT,
    TAG_POINT,
    TAG_POINT_NAME,
    TAG_VERDICT,
    default_tracking_uri,
    read_state,
    running_search,
    shown,
    valid_experiment,
)


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

    @property
    def diverged(self) -> bool:
        return self.metrics.get("diverged", 0.0) >= 0.5

    @property
    def scored(self) -> bool:
        """Finished with both accuracies: counts for the points, the noise floor and the best point."""
        m = self.metrics
        return (self.status == "FINISHED" and not self.diverged
                and all(_finite(m.get(k)) for k in (REPORT_METRIC, SELECT_METRIC)))

    @property
    def usable(self) -> bool:
        """Scored and with a view MI: counts for the InfoMin fit."""
        return self.scored and _finite(self.metrics.get("mi_nats"))


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _mean(values: list[Any]) -> float | None:
    finite = [v for v in values if _finite(v)]
    return sum(finite) / len(finite) if finite else None


# --------------------------------------------------------------------------- reading


def check_reachable(tracking_uri: str, timeout: float = 5.0) -> None:
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


def load_trials(experiment: str, tracking_uri: str, parent_id: str) -> list[Trial]:
    """The trials (child runs) of one search, with their point and the knobs that vary."""
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
              dict(r.data.metrics), r.data.tags.get(TAG_POINT, ""), r.data.tags.get(TAG_POINT_NAME, ""))
        for r in runs
    ]
    _mark_searched(trials)
    return trials


def _mark_searched(trials: list[Trial]) -> None:
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


# --------------------------------------------------------------------------- summary


def points(trials: list[Trial]) -> list[dict]:
    """One row per point of the scored trials: mean and 95% CI (pooled replicate SD) of both
    accuracies, the MI (None when not measured), the replicates; best first by validation."""
    used = [t for t in trials if t.scored]
    by_point: dict[str, list[Trial]] = defaultdict(list)
    for t in used:
        by_point[t.point].append(t)
    stats = {m: point_summaries({p: [t.metrics[m] for t in ts] for p, ts in by_point.items()})
             for m in (SELECT_METRIC, REPORT_METRIC)}
    rows = []
    for p, ts in by_point.items():
        rows.append({
            "point": p, "name": ts[0].point_name, "params": ts[0].searched, "n": len(ts),
            "mi_nats": _mean([t.metrics.get("mi_nats") for t in ts]),
            **{f"{m}_mean": stats[m][p]["mean"] for m in stats},
            **{f"{m}_half_width": stats[m][p]["half_width_pooled"] for m in stats},
            "seeds": sorted(t.params.get("trainer.seed", "") for t in ts),
        })
    return sorted(rows, key=lambda r: (-r[f"{SELECT_METRIC}_mean"], r["name"]))  # ties: by name, not by run order


def summarise(trials: list[Trial]) -> dict:
    scored = [t for t in trials if t.scored]
    used = [t for t in scored if t.usable]
    stats = analyse([t.metrics["mi_nats"] for t in used], [t.metrics[REPORT_METRIC] for t in used],
                    groups=[t.point for t in used])
    if scored and not used:
        stats["reasons"] = ["the view MI was not measured (mi.enabled: false): no InfoMin fit"]
    best = max(sorted(scored, key=lambda t: t.name), key=lambda t: t.metrics[SELECT_METRIC], default=None)
    caps = [t.metrics["mi_cap_nats"] for t in used if _finite(t.metrics.get("mi_cap_nats"))]
    n_test = next((int(t.metrics["n_test_images"]) for t in scored if _finite(t.metrics.get("n_test_images"))), None)
    rows = points(trials)
    groups = defaultdict(list)
    for t in scored:
        groups[t.point].append(t.metrics[REPORT_METRIC])
    return {
        "n_trials": len(trials),
        "n_used": len(used),
        "n_scored": len(scored),
        "n_points": len(rows),
        "n_diverged": sum(t.diverged for t in trials),
        "diverged_trials": [t.run_id for t in trials if t.diverged],
        "unusable_trials": [t.run_id for t in trials if not t.scored and not t.diverged],
        "fit_metric": REPORT_METRIC,
        "select_metric": SELECT_METRIC,
        **{k: stats.get(k) for k in ("spearman_mi_acc", "pearson_mi_acc", "quadratic", "linear", "peak_ci",
                                     "peak_ci_no_peak_frac", "two_lines", "bootstrap")},
        "verdict": stats["verdict"],
        "reasons": stats.get("reasons", []),
        "noise_floor": noise_floor(dict(groups), n_test),
        "mi_cap_nats": max(caps) if caps else None,
        "points": rows,
        "best_point": rows[0] if rows else None,
        "best_trial": None if best is None else {
            "run_id": best.run_id, "name": best.name, "params": best.searched,
            SELECT_METRIC: best.metrics[SELECT_METRIC], REPORT_METRIC: best.metrics[REPORT_METRIC],
            "mi_nats": best.metrics.get("mi_nats"),
        },
    }


def ring_comparison(trials: list[Trial]) -> list[dict]:
    """Ring minus uniform test accuracy per method, when the search varied the ring."""
    rows = []
    for t in trials:
        p = t.params
        if t.status != "FINISHED" or t.diverged or not _finite(t.metrics.get(REPORT_METRIC)):
            continue
        try:
            rows.append(ArmRow(p["method.name"], float(p["negatives.lower"]), float(p["negatives.upper"]),
                               p.get("negatives.anneal", "none"), int(p.get("trainer.seed", 0)),
                               t.metrics[REPORT_METRIC]))
        except (KeyError, ValueError):
            continue
    return ring_vs_uniform(rows)


# --------------------------------------------------------------------------- figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_mi_vs_accuracy(trials: list[Trial], summary: dict, path: Path) -> Path | None:
    """None (no figure) when no trial has a view MI."""
    import numpy as np

    used = [t for t in trials if t.usable]
    if not used:
        path.unlink(missing_ok=True)  # a figure from an earlier report would describe other trials
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.6, 4.5), dpi=110)
    if used:
        mi = np.array([t.metrics["mi_nats"] for t in used])
        acc = np.array([t.metrics[REPORT_METRIC] for t in used])
        replicated = any(r["n"] > 1 for r in summary["points"])
        ax.scatter(mi, acc, color="tab:blue", alpha=0.35 if replicated else 1.0, s=14 if replicated else 30,
                   zorder=3, label="trials")
        if replicated:
            rows = summary["points"]
            ax.errorbar([r["mi_nats"] for r in rows], [r[f"{REPORT_METRIC}_mean"] for r in rows],
                        yerr=[r[f"{REPORT_METRIC}_half_width"] or 0 for r in rows], fmt="o", color="tab:blue",
                        capsize=3, zorder=4, label="point mean, 95% CI (pooled SD)")
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
    ax.set_ylabel("linear-probe accuracy (test split)")
    ax.set_title(f"verdict: {summary['verdict']}  ({summary['n_used']} trials, {summary['n_points']} points)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_knobs(trials: list[Trial], path: Path) -> Path | None:
    plt = _plt()
    used = [t for t in trials if t.scored]
    knobs = sorted(used[0].searched) if used else []
    if not knobs:
        return None
    cols = min(3, len(knobs))
    rows = math.ceil(len(knobs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), dpi=100, squeeze=False)
    for ax, knob in zip(axes.flat, knobs):
        values = [t.searched[knob] for t in used]
        for metric, colour in ((SELECT_METRIC, "tab:green"), (REPORT_METRIC, "tab:blue")):
            acc = [t.metrics[metric] for t in used]
            try:
                xs = [float(v) for v in values]
            except ValueError:
                cats = sorted(set(values))
                xs = [cats.index(v) for v in values]
                ax.set_xticks(range(len(cats)), cats, rotation=20, fontsize=7)
            ax.scatter(xs, acc, s=12, color=colour, alpha=0.6, label=metric)
        ax.set_xlabel(knob)
        ax.set_ylabel("linear-probe accuracy")
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


# --------------------------------------------------------------------------- markdown and html


def _fmt(v: Any, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if _finite(v) else "—"


def _pm(mean: Any, half: Any) -> str:
    return f"{_fmt(mean, 4)} ± {_fmt(half, 4)}" if _finite(half) else _fmt(mean, 4)


def point_table(summary: dict) -> list[str]:
    """The points, best first by validation accuracy (markdown)."""
    rows = summary["points"]
    knobs = sorted(rows[0]["params"]) if rows else []
    lines = ["| point | " + " | ".join(knobs) + (" | " if knobs else "") +
             "replicates | val linear acc | test linear acc | MI [nats] |",
             "|---" * (len(knobs) + 5) + "|"]
    for r in rows:
        cells = [r["name"], *(r["params"].get(k, "") for k in knobs), str(r["n"]),
                 _pm(r[f"{SELECT_METRIC}_mean"], r[f"{SELECT_METRIC}_half_width"]),
                 _pm(r[f"{REPORT_METRIC}_mean"], r[f"{REPORT_METRIC}_half_width"]), _fmt(r["mi_nats"], 2)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines


def summary_lines(summary: dict) -> list[str]:
    lines = [f"**Verdict: {summary['verdict']}** (InfoMin's reverse-U in test accuracy against view MI)", ""]
    lines += [f"- {r}" for r in summary["reasons"]] + [""]
    sp, pe, quad, ci = summary["spearman_mi_acc"], summary["pearson_mi_acc"], summary["quadratic"], summary["peak_ci"]
    lines.append(f"Trials: {summary['n_trials']} ({summary['n_scored']} finished, {summary['n_used']} with a view MI, "
                 f"{summary['n_diverged']} diverged) at {summary['n_points']} points.")
    if sp:
        lines.append(f"Spearman rho = {_fmt(sp.get('rho'))} (p = {_fmt(sp.get('p'), 3)}); "
                     f"Pearson r = {_fmt(pe.get('r'))} (p = {_fmt(pe.get('p'), 3)}).")
    if quad:
        lines.append(f"Quadratic fit: acc = {quad['a']:.4f}·MI² + {quad['b']:.4f}·MI + {quad['c']:.4f} "
                     f"(R² = {quad['r2']:.3f}); peak at MI = {_fmt(quad.get('peak_mi'))} nats "
                     f"({'inside' if quad.get('peak_in_range') else 'outside'} the observed range); "
                     f"bootstrap ({summary.get('bootstrap')}) 95% CI of the peak: "
                     f"[{_fmt(ci[0] if ci else None)}, {_fmt(ci[1] if ci else None)}].")
    nf = summary["noise_floor"]
    if nf["replicate_sd"] is not None:
        lines.append(f"Noise floor (test accuracy): replicate SD {nf['replicate_sd']:.4f} (pooled over points, "
                     f"{nf['replicate_df']} df); 95% CI half-width of a point with {nf['replicates_per_point']:g} "
                     f"replicates {nf['ci_half_width_pooled']:.4f}; smallest resolvable difference between two "
                     f"points {nf['resolvable_difference']:.4f}; the point means span {_fmt(nf['point_mean_spread'], 4)}"
                     + (f"; test split binomial SE {nf['test_binomial_se']:.4f} ({nf['n_test_images']} images)"
                        if nf["test_binomial_se"] else "") + ".")
    if summary["mi_cap_nats"]:
        lines.append(f"InfoNCE estimates cannot exceed log K = {summary['mi_cap_nats']:.2f} nats.")
    best = summary.get("best_point")
    if best:
        lines.append(f"Best point (by validation accuracy): **{best['name']}**, val {_fmt(best[f'{SELECT_METRIC}_mean'], 4)}"
                     f", test {_fmt(best[f'{REPORT_METRIC}_mean'], 4)}, MI {_fmt(best['mi_nats'], 2)} nats.")
    return lines


def write_markdown(experiment: str, summary: dict, grids: dict[str, str], path: Path) -> Path:
    lines = [f"# InfoMin report: {experiment}", "", *summary_lines(summary), ""]
    if (path.parent / "mi_vs_accuracy.png").exists():
        lines += ["![MI vs accuracy](mi_vs_accuracy.png)", ""]
    if (path.parent / "knobs.png").exists():
        lines += ["![accuracy against each searched knob](knobs.png)", ""]
    lines += ["## Points, best first by validation accuracy", "",
              "Mean ± 95% CI half-width over the replicates (pooled replicate SD).", "", *point_table(summary)]
    if summary.get("ring_vs_uniform"):
        lines += ["", "## Ring against uniform negatives (test linear accuracy)", "",
                  "| method | arm | ring mean | uniform mean | ring - uniform | 95% CI | resolvable | n | test |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in summary["ring_vs_uniform"]:
            lo, hi = r["ci95"]
            lines.append(f"| {r['method']} | {r['arm']} | {r['ring_mean']:.4f} | {r['uniform_mean']:.4f} | "
                         f"{r['diff_mean']:+.4f} | [{_fmt(lo, 4)}, {_fmt(hi, 4)}] | {_fmt(r['resolvable'], 4)} | "
                         f"{r['n_ring']}/{r['n_uniform']} | {r['test']} |")
    if grids:
        lines += ["", "## Views at low, medium and high MI", ""]
        lines += [f"**{level} MI**\n\n![views at {level} MI]({name})\n" for level, name in grids.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_html(markdown_path: Path, path: Path) -> Path:
    """report.md as a self-contained page (images inlined), for MLflow's artifact view."""
    import html

    style = ("body{font-family:sans-serif;max-width:60em;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}")
    out = [f"<!doctype html><meta charset='utf-8'><style>{style}</style>"]
    table: list[str] = []

    def flush() -> None:
        if table:
            rows = [r for r in table if not re.fullmatch(r"\|(-+\|)+", r.replace("---", "-"))]
            cells = [[html.escape(c.strip()) for c in r.strip("|").split("|")] for r in rows]
            out.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in cells[0]) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in cells[1:])
                       + "</table>")
            table.clear()

    for line in markdown_path.read_text().splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        image = re.fullmatch(r"!\[(.*)\]\((.*)\)", line.strip())
        if image and (markdown_path.parent / image.group(2)).is_file():
            data = base64.b64encode((markdown_path.parent / image.group(2)).read_bytes()).decode()
            out.append(f"<p><img alt='{html.escape(image.group(1))}' src='data:image/png;base64,{data}'></p>")
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line.startswith("- "):
            out.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.strip():
            text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(line))
            out.append(f"<p>{text}</p>")
    flush()
    path.write_text("\n".join(out) + "\n")
    return path


# --------------------------------------------------------------------------- entry points


def front_page(client: Any, parent_id: str, summary: dict) -> None:
    """The parent run as the search's front page: best point's metrics, the verdict, the table."""
    best = summary.get("best_point")
    metrics = {"n_trials": summary["n_trials"], "n_points": summary["n_points"]}
    if best:
        metrics.update({f"best_{SELECT_METRIC}": best[f"{SELECT_METRIC}_mean"],
                        f"best_{REPORT_METRIC}": best[f"{REPORT_METRIC}_mean"], "best_mi_nats": best["mi_nats"]})
    metrics = {k: v for k, v in metrics.items() if _finite(v)}
    for key, value in metrics.items():
        client.log_metric(parent_id, key, shown(value))
    client.set_tag(parent_id, TAG_VERDICT, summary["verdict"])
    if best:
        client.set_tag(parent_id, "viewsearch.best_point", best["name"])
    note = ["# InfoMin search", "", *summary_lines(summary), "", "## Points", "", *point_table(summary), "",
            "Full report with figures: artifacts, report/report.html."]
    client.set_tag(parent_id, TAG_NOTE, "\n".join(note)[:60_000])


def _refuse_less(out: Path, parent_id: str, summary: dict) -> None:
    try:
        old = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return
    if old.get("parent_run_id") == parent_id and old.get("n_trials", 0) > summary["n_trials"]:
        raise ReportError(f"the store now holds {summary['n_trials']} trials of this search, but {out} reports "
                          f"{old['n_trials']}: the store lost trials, so the report is left as it is")


def build_report(experiment: str, tracking_uri: str | None = None, runs_dir: Path = DEFAULT_ROOT,
                 parent_id: str | None = None, log_to_parent: bool = True) -> Path:
    """Write the report folder and return it. Raises ReportError (nothing written) when it cannot."""
    if not valid_experiment(experiment):
        raise ReportError(f"--experiment: {experiment!r} is not a valid name ({EXPERIMENT_NAME_RULE})")
    runs_dir = Path(runs_dir)
    uri = tracking_uri or default_tracking_uri(runs_dir)
    if parent_id is None:
        state = read_state(runs_dir, experiment)
        if state is None:
            raise ReportError(f"--experiment: no search of {experiment!r} under {runs_dir} (no search.json there); "
                              "pass --runs-dir, or --parent-run with the search's MLflow parent run id")
        parent_id = state["parent_run_id"]
    check_reachable(uri)
    trials = load_trials(experiment, uri, parent_id)
    summary = {"parent_run_id": parent_id, **summarise(trials)}
    summary["ring_vs_uniform"] = ring_comparison(trials)
    out = runs_dir / experiment / "report"
    _refuse_less(out, parent_id, summary)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot_mi_vs_accuracy(trials, summary, out / "mi_vs_accuracy.png")
    plot_knobs(trials, out / "knobs.png")
    grids = fetch_view_grids(trials, uri, out)
    write_markdown(experiment, summary, grids, out / "report.md")
    write_html(out / "report.md", out / "report.html")
    if log_to_parent:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        client.log_artifacts(parent_id, str(out), artifact_path="report")
        front_page(client, parent_id, summary)
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
    print(f"verdict: {summary['verdict']} ({summary['n_scored']} finished trials, {summary['n_used']} with a view MI, "
          f"at {summary['n_points']} points)")
    for reason in summary["reasons"]:
        print(f"  - {reason}")
    print(f"report: {out / 'report.md'}")
    if running:
        print(f"note: the search is still running ({running}): this report covers the trials finished so far, "
              "and the search rewrites it when it ends")
    return 0


if __name__ == "__main__":
    sys.exit(main())
