"""Two searches on one curve: the best point of each, compared on the test split, and both on one
accuracy-against-view-MI figure (learned views beside hand-designed ones, say).

Each search's best point is its own report's (``summary.json``'s ``best_point``: the highest mean
validation accuracy of the analysis probe over its replicates), so the test split chooses
nothing. The difference of the two best points' test means comes with a Welch 95% interval (the
replicates of two searches share no initialisation or data order, so nothing pairs them). The
two searches must read the same probe; whether they trained for the same budget is the specs'
business, and the table prints each search's numbers so a reader can check.

    python -m analysis.versus learned_views augment_strength [--runs-dir runs]

writes ``runs/<first>/report/versus_<second>.{json,md,png}``. Exit 2 when a report is missing or
the two read different probes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from analysis.compare import welch_interval
from analysis.document import Block, Heading, Image, Table, para, to_markdown
from analysis.figures import MI_AXIS, curve_rows, pyplot
from analysis.render import fmt
from analysis.store import DEFAULT_ROOT, EXPERIMENT_NAME_RULE, report_dir, valid_experiment
from analysis.trials import finite
from trainers.results import MI_CAP_NATS, MI_NATS


class VersusError(Exception):
    """A report to compare is missing or incomparable: the CLI exits 2."""


def read_summary(root: Path, experiment: str) -> dict:
    path = report_dir(root, experiment) / "summary.json"
    if not path.is_file():
        raise VersusError(f"no report for experiment {experiment!r} at {path} (run its search, or "
                          f"python -m analysis.report --experiment {experiment})")
    return json.loads(path.read_text())


def best_replicates(summary: dict) -> list[float]:
    """The test accuracies (the analysis probe) of the best point's replicates."""
    best = summary.get("best_point")
    metric = summary["fit_metric"]
    return [r[metric] for r in (best or {}).get("replicates", []) if finite(r.get(metric))]


def compare(first: dict, second: dict, names: tuple[str, str]) -> dict:
    """The two best points and first minus second in test accuracy, with its Welch 95% CI."""
    if first["fit_metric"] != second["fit_metric"]:
        raise VersusError(f"the searches read different probes ({first['fit_metric']} and {second['fit_metric']}); "
                          "set analysis.probe alike")
    a, b = best_replicates(first), best_replicates(second)
    for name, values in zip(names, (a, b), strict=True):
        if not values:
            raise VersusError(f"experiment {name!r} has no finished best point")
    diff, lo, hi = welch_interval(a, b)
    return {
        "metric": first["fit_metric"],
        "select_metric": first["select_metric"],
        "searches": [
            {"experiment": name, "best_point": s["best_point"]["name"], "n": len(v), "mean": sum(v) / len(v),
             "replicates": v, MI_NATS: s["best_point"].get(MI_NATS),
             "select_mean": s["best_point"].get(f"{s['select_metric']}_mean")}
            for name, s, v in zip(names, (first, second), (a, b), strict=True)
        ],
        "diff_mean": diff,
        "ci95": [lo, hi],
        "test": "Welch",
    }


def blocks(result: dict) -> list[Block]:
    """The two best points as a table, then the difference with its interval."""
    metric, sel = result["metric"], result["select_metric"]
    rows = tuple((s["experiment"], s["best_point"], str(s["n"]), fmt(s["select_mean"], 4), fmt(s["mean"], 4),
                  fmt(s[MI_NATS], 2)) for s in result["searches"])
    head = ("search", f"best point (by {sel})", "replicates", sel, f"test {metric}", "MI [nats]")
    lo, hi = result["ci95"]
    first, second = (s["experiment"] for s in result["searches"])
    diff = (f"{first} - {second}: {100 * result['diff_mean']:+.2f} points of test {metric}, 95% CI "
            f"[{100 * lo:+.2f}, {100 * hi:+.2f}] ({result['test']})")
    return [Table(head, rows), para(diff)]


def plot(summaries: list[tuple[str, dict]], path: Path) -> Path:
    """Point means with their 95% CIs against view MI, one colour per search, best points starred."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.4, 4.8), dpi=110)
    for (name, s), colour, marker in zip(summaries, ("tab:red", "tab:blue"), ("s", "o"), strict=False):
        metric = s["fit_metric"]
        rows = curve_rows(s, metric)
        ax.errorbar([r[MI_NATS] for r in rows], [r[f"{metric}_mean"] for r in rows],
                    yerr=[r.get(f"{metric}_half_width") or 0 for r in rows], fmt=f"{marker}-", color=colour, lw=1,
                    capsize=3, label=f"{name} (point mean, 95% CI)")
        best = s.get("best_point")
        if best and best.get(MI_NATS) is not None:
            ax.scatter([best[MI_NATS]], [best[f"{metric}_mean"]], marker="*", s=180, color=colour, zorder=5,
                       edgecolor="black", label=f"{name} best point ({best['name']}), chosen on validation")
        floor = s.get("floor")
        if floor:
            ax.axhline(floor["mean"], color=colour, linestyle=":", lw=1, label=f"{name} untrained encoder")
    caps = [s.get(MI_CAP_NATS) for _, s in summaries if s.get(MI_CAP_NATS)]
    if caps:
        ax.axvline(max(caps), color="gray", linestyle="--", lw=1, label=f"InfoNCE cap log K = {max(caps):.2f}")
    ax.set_xlabel(MI_AXIS)
    ax.set_ylabel(f"{summaries[0][1].get('probe', 'linear')} probe accuracy (test split)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.versus", description=__doc__.split("\n\n")[0])
    parser.add_argument("first", help="experiment whose report folder receives the comparison")
    parser.add_argument("second", help="the experiment it is compared with")
    parser.add_argument("--runs-dir", type=Path, default=DEFAULT_ROOT)
    args = parser.parse_args(argv)
    try:
        for key, name in (("first", args.first), ("second", args.second)):
            if not valid_experiment(name):
                raise VersusError(f"{key}: {name!r} is not a valid experiment name ({EXPERIMENT_NAME_RULE})")
        first, second = read_summary(args.runs_dir, args.first), read_summary(args.runs_dir, args.second)
        result = compare(first, second, (args.first, args.second))
    except VersusError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = report_dir(args.runs_dir, args.first)
    stem = out / f"versus_{args.second}"
    body = blocks(result)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    figure = plot([(args.first, first), (args.second, second)], stem.with_suffix(".png"))
    page = [Heading(f"{args.first} against {args.second}"), *body, Image("accuracy against view MI", figure.name)]
    stem.with_suffix(".md").write_text(to_markdown(page))
    print(to_markdown(body), end="")
    print(f"wrote {stem}.json, .md, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
