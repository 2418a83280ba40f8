"""The report's words: the verdict headline, the summary, the point table, and the page they
make, written as report.md and as report.html (the same blocks, images inlined, for MLflow's
artifact view; ``analysis/document.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from analysis.document import Block, Bullets, Heading, Image, Lines, Table, bold, para, to_html, to_markdown
from analysis.trials import finite
from trainers.results import LABEL_ENTROPY_NATS, LABEL_MI_NATS, LINEAR_ACC, MI_CAP_NATS, MI_NATS, VAL_LINEAR_ACC


def fmt(v: Any, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if finite(v) else "—"


def _pm(mean: Any, half: Any) -> str:
    return f"{fmt(mean, 4)} ± {fmt(half, 4)}" if finite(half) else fmt(mean, 4)


def effect_text(effect: dict | None) -> str:
    """``+0.0421 [+0.0380, +0.0462]``, or the mean and why there is no CI."""
    if not effect:
        return "—"
    if effect.get("ci") is None:
        return f"{effect['mean']:+.4f} (no CI: a point with one trial)"
    lo, hi = effect["ci"]
    return f"{effect['mean']:+.4f} [{lo:+.4f}, {hi:+.4f}]"


def stability_text(summary: dict) -> str:
    stable = summary.get("stability")
    if not stable:
        return "stability not estimated"
    return f"{stable['share']:.0%} of {stable['n_resamples']} seed resamples agree"


def headline(summary: dict) -> str:
    """One line: verdict, stability, rise, fall, delta (the console and MLflow show the same)."""
    level = f"{1 - summary.get('alpha', 0.05):.0%}"
    return (f"{summary['verdict']}, {stability_text(summary)}; rise {effect_text(summary.get('rise'))}, "
            f"fall {effect_text(summary.get('fall'))} ({level} CIs, {summary.get('probe', 'linear')} probe, "
            f"test split); δ = {summary.get('min_effect', 0.01):g}")


def best_point_text(summary: dict) -> str:
    best = summary.get("best_point")
    if not best:
        return "no point finished"
    sel, fit = summary["select_metric"], summary["fit_metric"]
    return (f"{best['name']}: {sel} {_pm(best.get(f'{sel}_mean'), best.get(f'{sel}_half_width'))}, "
            f"test {fit} {_pm(best.get(f'{fit}_mean'), best.get(f'{fit}_half_width'))}, MI {fmt(best[MI_NATS], 2)} "
            f"nats, {best['n']} replicate{'s' if best['n'] != 1 else ''}")


def points_block(summary: dict) -> Table:
    """The points, best first by validation accuracy of the analysis probe."""
    rows = summary["points"]
    knobs = sorted(rows[0]["params"]) if rows else []
    sel, fit = summary.get("select_metric", VAL_LINEAR_ACC), summary.get("fit_metric", LINEAR_ACC)
    task = any(r.get(LABEL_MI_NATS) is not None for r in rows)
    learned = any(r.get("learned") for r in rows)
    head = ["point", *knobs, "replicates", sel, fit, "MI [nats]"] + (["I(v; y) [nats]"] if task else [])
    head = ["views", *head] if learned else head
    body = []
    for r in rows:
        cells = ["learned" if r.get("learned") else "designed"] if learned else []
        cells += [r["name"], *(r["params"].get(k, "") for k in knobs), str(r["n"]),
                 _pm(r.get(f"{sel}_mean"), r.get(f"{sel}_half_width")),
                 _pm(r.get(f"{fit}_mean"), r.get(f"{fit}_half_width")), fmt(r[MI_NATS], 2)]
        cells += [fmt(r.get(LABEL_MI_NATS), 2)] if task else []
        body.append(tuple(str(c) for c in cells))
    return Table(tuple(head), tuple(body))


def point_table(summary: dict) -> list[str]:
    """The point table as Markdown lines (the parent run's description)."""
    return to_markdown([points_block(summary)]).splitlines()


def summary_blocks(summary: dict) -> list[Block]:
    """The verdict, what InfoMin predicts, the best point, the reasons, then the figures in words."""
    return [para(bold(f"Verdict: {headline(summary)}")),
            para("InfoMin predicts accuracy rising as the views share less information, then falling once they lose "
                 "what the task needs. Rise = peak point minus the maximal-MI point; fall = peak point minus the "
                 "minimal-MI point."),
            para(bold("Best point"), f" (highest mean {summary['select_metric']} of its replicates): "
                 f"{best_point_text(summary)}."),
            *learned_note(summary), Bullets(tuple(summary["reasons"])), Lines(tuple(_facts(summary)))]


def learned_note(summary: dict) -> list[Block]:
    """Which points have learned views, and how their MI differs from a designed view's."""
    n = sum(1 for r in summary["points"] if r.get("learned"))
    if not n:
        return []
    return [para(bold("Learned views"), f": {n} of {len(summary['points'])} points learned their views in training "
                 "(views.pairs: learned). Their view MI and I(v; y) were measured after training with the trained "
                 "generator frozen, once per replicate; a point's values are the means over its replicates.")]


def summary_lines(summary: dict) -> list[str]:
    """The summary as Markdown lines (the parent run's description)."""
    return to_markdown(summary_blocks(summary)).splitlines()


def _facts(summary: dict) -> list[str]:
    lines: list[str] = []
    sp, pe, quad, ci = summary["spearman_mi_acc"], summary["pearson_mi_acc"], summary["quadratic"], summary["peak_ci"]
    lines.append(f"Trials: {summary['n_trials']} ({summary['n_scored']} finished, {summary['n_used']} with a view MI, "
                 f"{summary['n_diverged']} diverged) at {summary['n_points']} points.")
    floor = summary.get("floor")
    if floor:
        lines.append(f"Untrained encoder ({floor['metric']}, mean of {floor['n']} trials): {floor['mean']:.4f}; "
                     "every accuracy above reads as a gain over it.")
    if summary.get(LABEL_ENTROPY_NATS):
        lines.append(f"Label entropy H(y) = {summary[LABEL_ENTROPY_NATS]:.3f} nats (validation labels).")
    if sp:
        lines.append(f"Descriptive only: Spearman rho = {fmt(sp.get('rho'))} (p = {fmt(sp.get('p'), 3)}); "
                     f"Pearson r = {fmt(pe.get('r'))} (p = {fmt(pe.get('p'), 3)}).")
    if quad:
        lines.append(f"Descriptive only: quadratic acc = {quad['a']:.4f}·MI² + {quad['b']:.4f}·MI + {quad['c']:.4f} "
                     f"(R² = {quad['r2']:.3f}); vertex at MI = {fmt(quad.get('peak_mi'))} nats "
                     f"({'inside' if quad.get('peak_in_range') else 'outside'} the observed range); "
                     f"bootstrap ({summary.get('bootstrap')}) 95% CI of the vertex: "
                     f"[{fmt(ci[0] if ci else None)}, {fmt(ci[1] if ci else None)}].")
    nf = summary["noise_floor"]
    if nf["replicate_sd"] is not None:
        lines.append(f"Noise floor (test accuracy): replicate SD {nf['replicate_sd']:.4f} (pooled over points, "
                     f"{nf['replicate_df']} df); 95% CI half-width of a point with {nf['replicates_per_point']:g} "
                     f"replicates {nf['ci_half_width_pooled']:.4f}; smallest resolvable difference between two "
                     f"points {nf['resolvable_difference']:.4f}; the point means span {fmt(nf['point_mean_spread'], 4)}"
                     + (f"; test split binomial SE {nf['test_binomial_se']:.4f} ({nf['n_test_images']} images)"
                        if nf["test_binomial_se"] else "") + ".")
    if summary[MI_CAP_NATS]:
        lines.append(f"InfoNCE estimates cannot exceed log K = {summary[MI_CAP_NATS]:.2f} nats.")
    return lines


def report_blocks(experiment: str, summary: dict, grids: dict[str, str], folder: Path) -> list[Block]:
    """The whole page; figures only where their file was drawn into ``folder``."""
    blocks: list[Block] = [Heading(f"InfoMin report: {experiment}"), *summary_blocks(summary)]
    if (folder / "mi_vs_accuracy.png").exists():
        blocks.append(Image("MI vs accuracy", "mi_vs_accuracy.png"))
    if (folder / "knobs.png").exists():
        blocks.append(Image("accuracy against each searched knob", "knobs.png"))
    blocks += [Heading(f"Points, best first by {summary['select_metric']}", 2),
               para("Mean ± 95% CI half-width over the replicates (pooled replicate SD)."), points_block(summary)]
    if summary.get("ring_vs_uniform"):
        rows = []
        for r in summary["ring_vs_uniform"]:
            lo, hi = r["ci95"]
            rows.append((r["method"], r["arm"], f"{r['ring_mean']:.4f}", f"{r['uniform_mean']:.4f}",
                         f"{r['diff_mean']:+.4f}", f"[{fmt(lo, 4)}, {fmt(hi, 4)}]", fmt(r["resolvable"], 4),
                         f"{r['n_ring']}/{r['n_uniform']}", str(r["test"])))
        blocks += [Heading(f"Ring against uniform negatives (test {summary['fit_metric']})", 2),
                   Table(("method", "arm", "ring mean", "uniform mean", "ring - uniform", "95% CI", "resolvable", "n",
                          "test"), tuple(rows))]
    if grids:
        blocks.append(Heading("Views at low, medium and high MI", 2))
        for level, name in grids.items():
            blocks += [para(bold(f"{level} MI")), Image(f"views at {level} MI", name)]
    return blocks


def write_markdown(experiment: str, summary: dict, grids: dict[str, str], path: Path) -> Path:
    path.write_text(to_markdown(report_blocks(experiment, summary, grids, path.parent)))
    return path


def write_html(experiment: str, summary: dict, grids: dict[str, str], path: Path) -> Path:
    """The same page as report.md, images inlined, for MLflow's artifact view."""
    path.write_text(to_html(report_blocks(experiment, summary, grids, path.parent), path.parent))
    return path
