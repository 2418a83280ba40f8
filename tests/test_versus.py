"""Two searches compared (``analysis/versus.py``): the best points chosen on validation, the Welch
interval of their test difference against a hand-computed one, and the refusals."""

from __future__ import annotations

import json
import math

import pytest
from scipy import stats

from analysis.render import learned_note, points_block
from analysis.versus import VersusError, compare, main


def point(name: str, mi: float, val: float, tests: list[float], learned: bool = False) -> dict:
    return {"point": name, "name": name, "params": {}, "n": len(tests), "learned": learned, "mi_nats": mi,
            "val_linear_acc_mean": val, "val_linear_acc_half_width": 0.01,
            "linear_acc_mean": sum(tests) / len(tests), "linear_acc_half_width": 0.01,
            "replicates": [{"seed": str(i), "linear_acc": t, "val_linear_acc": val} for i, t in enumerate(tests)]}


def summary(points: list[dict]) -> dict:
    """A summary.json as the report writes it: points best first by validation."""
    rows = sorted(points, key=lambda r: -r["val_linear_acc_mean"])
    return {"fit_metric": "linear_acc", "select_metric": "val_linear_acc", "probe": "linear", "points": rows,
            "best_point": rows[0], "floor": {"mean": 0.7}, "reasons": []}


LEARNED = summary([point("budget=0.05", 2.0, 0.78, [0.771, 0.768, 0.774], True),
                   point("budget=0.2", 1.0, 0.80, [0.781, 0.779, 0.786, 0.777], True)])
DESIGNED = summary([point("strength=0.4", 3.0, 0.81, [0.800, 0.806, 0.803, 0.799]),
                    point("strength=1.0", 0.9, 0.79, [0.812, 0.811, 0.813, 0.810])])  # best on test, not on val


def welch_reference(a: list[float], b: list[float]) -> tuple[float, float, float]:
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    va = sum((x - ma) ** 2 for x in a) / (len(a) - 1)
    vb = sum((x - mb) ** 2 for x in b) / (len(b) - 1)
    se2 = va / len(a) + vb / len(b)
    df = se2**2 / ((va / len(a)) ** 2 / (len(a) - 1) + (vb / len(b)) ** 2 / (len(b) - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(se2)
    return ma - mb, ma - mb - half, ma - mb + half


def test_the_best_points_are_chosen_on_validation_and_differ_by_welch():
    got = compare(LEARNED, DESIGNED, ("learned", "designed"))
    assert [s["best_point"] for s in got["searches"]] == ["budget=0.2", "strength=0.4"]
    diff, lo, hi = welch_reference([0.781, 0.779, 0.786, 0.777], [0.800, 0.806, 0.803, 0.799])
    assert got["diff_mean"] == pytest.approx(diff, abs=1e-12)
    assert got["ci95"] == pytest.approx([lo, hi], abs=1e-12)


def test_different_probes_are_refused():
    knn = {**DESIGNED, "fit_metric": "knn_acc"}
    with pytest.raises(VersusError, match="different probes"):
        compare(LEARNED, knn, ("learned", "designed"))


def test_the_cli_writes_the_comparison_and_refuses_a_missing_report(tmp_path, capsys):
    for name, s in (("learned", LEARNED), ("designed", DESIGNED)):
        (tmp_path / name / "report").mkdir(parents=True)
        (tmp_path / name / "report" / "summary.json").write_text(json.dumps(s))
    assert main(["learned", "designed", "--runs-dir", str(tmp_path)]) == 0
    out = tmp_path / "learned" / "report"
    assert json.loads((out / "versus_designed.json").read_text())["test"] == "Welch"
    assert (out / "versus_designed.png").stat().st_size > 0
    assert "learned - designed:" in (out / "versus_designed.md").read_text()
    assert main(["learned", "nothing", "--runs-dir", str(tmp_path)]) == 2
    assert main(["learned", "../x", "--runs-dir", str(tmp_path)]) == 2
    assert "no report for experiment 'nothing'" in capsys.readouterr().err


def test_the_report_says_which_points_are_learned():
    mixed = summary([point("a", 1.0, 0.8, [0.8, 0.81], True), point("b", 2.0, 0.7, [0.7, 0.71])])
    table = points_block(mixed)
    assert table.head[0] == "views" and [row[0] for row in table.rows] == ["learned", "designed"]
    assert "1 of 2 points learned" in str(learned_note(mixed)[0])
    assert learned_note(DESIGNED) == [] and points_block(DESIGNED).head[0] == "point"
