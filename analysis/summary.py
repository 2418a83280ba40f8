"""summary.json of a search: its points (replicates grouped), the InfoMin verdict with its effects
and stability, the noise floor, the floor of an untrained encoder, the best point.

One notion of "best" everywhere: the best *point* is the one with the highest mean validation
accuracy of the analysis probe (``val_<probe>_acc``) over its replicates (ties by name); its
replicates are listed best first under it. The test split is reported beside it, never used.
"""

from __future__ import annotations

from collections import defaultdict

from analysis.compare import ArmRow, ring_vs_uniform
from analysis.decision import Rule
from analysis.infomin import analyse
from analysis.noise import noise_floor, point_summaries
from analysis.settings import AnalysisConfig
from analysis.trials import Trial, finite, mean
from trainers.results import (
    LABEL_ENTROPY_NATS,
    LABEL_MI_NATS,
    MI_CAP_NATS,
    MI_NATS,
    PROBE_METRICS,
    floor_metric,
)

DEFAULTS = AnalysisConfig()  # a search from before the analysis section: the linear probe
TASK_METRICS = (LABEL_MI_NATS, LABEL_ENTROPY_NATS)  # per trial, from the task-information estimate (absent in older runs)


def point_order(trials: list[Trial], select: str) -> list[str]:
    """The points of the scored trials (``Trial.scored``), best first: highest mean of ``select`` (a
    validation metric) over the point's replicates; ties by point name, then point id, never by
    run order. The one ranking behind the best point, the point table and the console."""
    by_point: dict[str, list[Trial]] = defaultdict(list)
    for t in trials:
        if t.scored:
            by_point[t.point].append(t)
    means = {p: sum(t.metrics[select] for t in ts) / len(ts) for p, ts in by_point.items()}
    return sorted(by_point, key=lambda p: (-means[p], by_point[p][0].point_name, p))


def select_best(trials: list[Trial], settings: AnalysisConfig = DEFAULTS) -> str | None:
    """The best point's id (``point_order``'s first), or None when no trial is scored."""
    order = point_order(trials, settings.select_metric())
    return order[0] if order else None


def points(trials: list[Trial], settings: AnalysisConfig = DEFAULTS) -> list[dict]:
    """One row per point of the scored trials: mean and 95% CI (pooled replicate SD) of each
    probe's accuracy, the MI and task information (None when not measured), the replicates best
    first; the points best first by the validation mean of the analysis probe."""
    select = settings.select_metric()
    by_point: dict[str, list[Trial]] = defaultdict(list)
    for t in trials:
        if t.scored:
            by_point[t.point].append(t)
    stats = {}
    for m in PROBE_METRICS:
        if all(finite(t.metrics.get(m)) for ts in by_point.values() for t in ts):
            stats[m] = point_summaries({p: [t.metrics[m] for t in ts] for p, ts in by_point.items()})
    rows = []
    for p, ts in by_point.items():
        reps = sorted(ts, key=lambda t: (-t.metrics[select], t.name))
        rows.append({
            "point": p, "name": ts[0].point_name, "params": ts[0].searched, "n": len(ts),
            "learned": ts[0].learned_views,
            MI_NATS: mean([t.metrics.get(MI_NATS) for t in ts]),
            **{m: mean([t.metrics.get(m) for t in ts]) for m in TASK_METRICS},
            **{f"{m}_mean": stats[m][p]["mean"] for m in stats},
            **{f"{m}_half_width": stats[m][p]["half_width_pooled"] for m in stats},
            "seeds": sorted(t.params.get("trainer.seed", "") for t in ts),
            "replicates": [{"run_id": t.run_id, "name": t.name, "seed": t.params.get("trainer.seed"),
                            **{m: t.metrics.get(m) for m in PROBE_METRICS if finite(t.metrics.get(m))}}
                           for t in reps],
        })
    rank = {p: i for i, p in enumerate(point_order(trials, select))}
    return sorted(rows, key=lambda r: rank[r["point"]])


def floor(trials: list[Trial], settings: AnalysisConfig) -> dict | None:
    """The untrained encoder's accuracy with the analysis probe (test split), mean over trials."""
    metric = floor_metric(settings.fit_metric())
    values = [t.metrics[metric] for t in trials if t.scored and finite(t.metrics.get(metric))]
    if not values:
        return None
    return {"metric": metric, "mean": sum(values) / len(values), "n": len(values)}


def summarise(trials: list[Trial], settings: AnalysisConfig = DEFAULTS) -> dict:
    fit_metric, select = settings.fit_metric(), settings.select_metric()
    scored = [t for t in trials if t.scored]
    used = [t for t in scored if t.usable]
    names = {t.point: t.point_name for t in trials}
    readable = len(set(names.values())) == len(names)  # the reasons name points by name when names are unique
    stats = analyse([t.metrics[MI_NATS] for t in used], [t.metrics[fit_metric] for t in used],
                    groups=[t.point_name if readable else t.point for t in used],
                    select=[t.metrics[select] for t in used],
                    rule=Rule(settings.min_effect, settings.alpha),
                    stability_resamples=settings.stability_resamples)
    if scored and not used:
        stats["reasons"] = [("inconclusive: the view MI was not measured (mi.enabled: false), so there is no "
                             "InfoMin fit")]
    for key in ("rise", "fall", "end_to_end"):
        if stats.get(key):
            stats[key] = {**stats[key], "from": names.get(stats[key]["from"], stats[key]["from"]),
                          "to": names.get(stats[key]["to"], stats[key]["to"])}
    caps = [t.metrics[MI_CAP_NATS] for t in used if finite(t.metrics.get(MI_CAP_NATS))]
    n_test = next((int(t.metrics["n_test_images"]) for t in scored if finite(t.metrics.get("n_test_images"))), None)
    rows = points(trials, settings)
    groups = defaultdict(list)
    for t in scored:
        groups[t.point].append(t.metrics[fit_metric])
    entropy = [t.metrics[LABEL_ENTROPY_NATS] for t in scored if finite(t.metrics.get(LABEL_ENTROPY_NATS))]
    return {
        "n_trials": len(trials),
        "n_used": len(used),
        "n_scored": len(scored),
        "n_points": len(rows),
        "n_diverged": sum(t.diverged for t in trials),
        "diverged_trials": [t.run_id for t in trials if t.diverged],
        "unusable_trials": [t.run_id for t in trials if not t.scored and not t.diverged],
        "probe": settings.probe,
        "fit_metric": fit_metric,
        "select_metric": select,
        "verdict": stats["verdict"],
        "stability": stats.get("stability"),
        "min_effect": settings.min_effect,
        "alpha": settings.alpha,
        "peak_point": names.get(stats.get("peak_point"), stats.get("peak_point")),
        **{k: stats.get(k) for k in ("rise", "fall", "end_to_end", "fall_tost_p", "two_lines")},
        "reasons": stats.get("reasons", []),
        **{k: stats.get(k) for k in ("spearman_mi_acc", "pearson_mi_acc", "quadratic", "linear", "peak_ci",
                                     "peak_ci_no_peak_frac", "bootstrap")},
        "noise_floor": noise_floor(dict(groups), n_test),
        "floor": floor(trials, settings),
        LABEL_ENTROPY_NATS: sum(entropy) / len(entropy) if entropy else None,
        MI_CAP_NATS: max(caps) if caps else None,
        "points": rows,
        "best_point": rows[0] if rows else None,
    }


def ring_comparison(trials: list[Trial], settings: AnalysisConfig = DEFAULTS) -> list[dict]:
    """Ring minus uniform test accuracy per method, when the search varied the ring."""
    metric = settings.fit_metric()
    rows = []
    for t in trials:
        p = t.params
        if t.status != "FINISHED" or t.diverged or not finite(t.metrics.get(metric)):
            continue
        try:
            rows.append(ArmRow(p["method.name"], float(p["negatives.lower"]), float(p["negatives.upper"]),
                               p.get("negatives.anneal", "none"), int(p.get("trainer.seed", 0)),
                               t.metrics[metric]))
        except (KeyError, ValueError):
            continue
    return ring_vs_uniform(rows)
