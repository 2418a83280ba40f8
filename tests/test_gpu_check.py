"""benchmarks/gpu_check.py: its CPU dry run writes every JSON field; its refusals; its t-interval.

The dry run (``--tiny --device cpu``) is what makes the GPU run one command with no surprises:
every section runs at toy sizes and every field of the JSON is checked against the schema below
(present, of its type, finite where it is a measurement). Speed is not asserted.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats

from benchmarks.gpucheck.stats import paired_difference, t_cdf, t_interval, t_ppf

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
FMNIST = Path("/usr/share/datasets/fashion-mnist")
NUM, OPT_NUM, OPT_STR = (int, float), (int, float, type(None)), (str, type(None))

META = {"device": str, "device_name": str, "torch": str, "kornia": str, "python": str, "tiny": bool,
        "started_utc": str, "budget_minutes": NUM, "sources_minutes": NUM, "seeds": int, "sizes": dict, "argv": list,
        "bf16_autocast": bool, "channels_last": bool, "compile_backend": str, "compile_note": str, "data": dict,
        "seconds_total": NUM}
LEARNING = {"status": str, "reason": OPT_STR, "steps": int, "batch": int, "backbone": str, "seconds": NUM,
            "loss_first": NUM, "loss_last": NUM, "window": int, "loss_fell": bool, "val_knn_before": NUM,
            "val_knn_after": NUM, "chance": NUM, "knn_above_chance": bool, "knn_improved": bool, "n_val": int,
            "passed": bool}
SOURCE = {"pairs": str, "data": str, "channels": int, "image_size": int, "batch": int, "backbone": str, "views": dict,
          "measurements": dict}
MEASUREMENT = {"status": str, "reason": OPT_STR, "seconds": OPT_NUM, "imgs_per_s": OPT_NUM, "compile_seconds": OPT_NUM,
               "share_of_model_step": OPT_NUM}
MEASUREMENTS = ("views_eager", "model_step_eager", "full_step_eager", "views_compiled_graphs", "views_compiled_no_graphs",
                "model_step_compiled", "full_step_compiled_graphs", "full_step_compiled_no_graphs")
SOURCES = ("augment", "augment_random_erasing", "patches", "channels", "frequency", "toy", "learned",
           "augment_randaugment")
SHARING = {"status": str, "reason": OPT_STR, "source": str, "batch": int, "backbone": str, "seconds_each": NUM,
           "processes": dict}
SHARE = {"status": str, "reason": OPT_STR, "total_imgs_per_s": OPT_NUM, "per_process": (list, type(None))}
RING = {"status": str, "reason": OPT_STR, "spec_file": str, "spec": dict, "arms": dict, "seeds": list, "epochs": int,
        "epochs_basis": str, "n_train": int, "selection": str, "runs": list, "comparison": dict}
RUN = {"arm": str, "seed": int, "lower": NUM, "upper": NUM, "rc": int, "seconds": NUM, "status": str,
       "reason": OPT_STR, "linear_acc": OPT_NUM, "val_linear_acc": OPT_NUM, "knn_acc": OPT_NUM,
       "val_knn_acc": OPT_NUM, "epochs": (int, type(None)), "train_loss": OPT_NUM, "imgs_per_s": OPT_NUM}
METRICS = ("linear_acc", "val_linear_acc", "knn_acc", "val_knn_acc")


def check(obj: dict, schema: dict, where: str) -> None:
    """Exactly the schema's keys, each of its type (a bool is not a number)."""
    assert set(obj) == set(schema), f"{where}: keys {sorted(set(obj) ^ set(schema))} differ from the schema"
    for key, kind in schema.items():
        value = obj[key]
        assert isinstance(value, kind) and not (isinstance(value, bool) and kind in (NUM, OPT_NUM)), (
            f"{where}.{key} = {value!r} is not {kind}")


def finite(*values) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def run_check(out: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, check=False)


# --------------------------------------------------------------------------- statistics


def test_t_quantiles_and_cdf_match_scipy():
    for df in (1, 2, 3, 5, 9, 30, 250):
        for q in (0.01, 0.5, 0.8, 0.95, 0.975, 0.995):
            assert t_ppf(q, df) == pytest.approx(stats.t.ppf(q, df), rel=1e-10, abs=1e-12)
        for t in (-4.0, -0.7, 0.0, 1.3, 12.0):
            assert t_cdf(t, df) == pytest.approx(stats.t.cdf(t, df), rel=1e-10, abs=1e-13)


def test_paired_difference_is_the_t_interval_of_the_per_seed_differences():
    ring = {0: 0.81, 1: 0.79, 2: 0.84, 5: 0.5}  # seed 5 has no uniform partner: left out
    uniform = {0: 0.80, 1: 0.80, 2: 0.81, 3: 0.7}
    diffs = [0.81 - 0.80, 0.79 - 0.80, 0.84 - 0.81]
    res = paired_difference(ring, uniform)
    lo, hi = stats.t.interval(0.95, len(diffs) - 1, loc=sum(diffs) / 3, scale=stats.sem(diffs))
    assert res["seeds"] == [0, 1, 2] and res["n_pairs"] == 3 and res["diffs"] == pytest.approx(diffs)
    assert res["mean"] == pytest.approx(sum(diffs) / 3)
    assert res["ci95"] == pytest.approx([lo, hi], rel=1e-9)
    assert t_interval([0.3]) == (0.3, None, None)
    assert paired_difference({0: 0.5}, {1: 0.5})["mean"] is None


# --------------------------------------------------------------------------- refusals


def test_cuda_asked_for_and_absent_exits_2_creating_nothing(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = run_check(tmp_path / "out", timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert "--device cuda" in proc.stderr and "no CUDA device" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_data_folder_without_readable_idx_files_exits_2_naming_them(tmp_path):
    (tmp_path / "data").mkdir()
    proc = run_check(tmp_path / "out", "--tiny", "--device", "cpu", "--data", str(tmp_path / "data"), timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert "--data" in proc.stderr and "train-images-idx3-ubyte" in proc.stderr
    assert not (tmp_path / "out").exists()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / "data" / stem).write_bytes(b"not an IDX file")
    proc = run_check(tmp_path / "out", "--tiny", "--device", "cpu", "--data", str(tmp_path / "data"), timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert "train-images-idx3-ubyte" in proc.stderr and "not an IDX file" in proc.stderr
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- the dry run


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    if not (FMNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian package dataset-fashion-mnist not installed (make setup installs it)")
    out = tmp_path_factory.mktemp("gpu_check")
    # a generous budget: on a busy CI machine the dry run must not skip a section for lack of time
    proc = run_check(out, "--tiny", "--device", "cpu", "--minutes", "25", "--sources-minutes", "12", timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]

    def refuse(name):
        raise AssertionError(f"non-finite number {name} in the JSON")

    return out, json.loads((out / "gpu_check.json").read_text(), parse_constant=refuse)


@pytest.mark.slow
def test_the_dry_run_writes_every_field(dry_run):
    _, d = dry_run
    assert set(d) == {"meta", "learning", "sources", "sharing", "ring"}
    check(d["meta"], META, "meta")
    assert d["meta"]["tiny"] is True and d["meta"]["device"] == "cpu" and set(d["meta"]["data"]) == {"gray", "rgb", "toy"}
    assert "tinted Fashion-MNIST" in d["meta"]["data"]["rgb"]  # no CIFAR given: says which 3-channel data

    check(d["learning"], LEARNING, "learning")
    ln = d["learning"]
    assert ln["status"] == "ok" and finite(ln["loss_first"], ln["loss_last"], ln["val_knn_after"])
    assert ln["loss_fell"] and ln["knn_above_chance"] and ln["passed"]

    assert set(d["sources"]) == {"status", "reason", "by_source"} and d["sources"]["status"] == "ok"
    assert tuple(d["sources"]["by_source"]) == SOURCES
    for name, src in d["sources"]["by_source"].items():
        check(src, SOURCE, name)
        assert set(src["measurements"]) == set(MEASUREMENTS), name
        for key, rec in src["measurements"].items():
            check(rec, MEASUREMENT, f"{name}.{key}")
            if rec["status"] == "ok":
                assert finite(rec["seconds"], rec["imgs_per_s"]) and rec["seconds"] > 0, (name, key)
                if key.startswith("full_step"):
                    assert finite(rec["share_of_model_step"]), (name, key)
            else:
                assert rec["status"] in ("not_applicable", "skipped") and rec["reason"], (name, key, rec)
        m = src["measurements"]
        assert all(m[k]["status"] == "ok" for k in ("views_eager", "model_step_eager", "full_step_eager")), name
        for key in ("views_compiled_graphs", "full_step_compiled_graphs"):
            assert m[key]["status"] == "not_applicable" and "CUDA graphs" in m[key]["reason"]
    erasing = d["sources"]["by_source"]["augment_random_erasing"]["measurements"]["views_compiled_no_graphs"]
    assert erasing["status"] == "ok" and finite(erasing["compile_seconds"])  # torch.compile ran on a Kornia stage
    assert d["sources"]["by_source"]["channels"]["channels"] == 3 and d["sources"]["by_source"]["toy"]["pairs"] == "toy"

    check(d["sharing"], SHARING, "sharing")
    assert set(d["sharing"]["processes"]) == {"1", "2", "4"}
    for count, rec in d["sharing"]["processes"].items():
        check(rec, SHARE, f"sharing.{count}")
        assert rec["status"] == "ok" and len(rec["per_process"]) == int(count) and finite(*rec["per_process"])

    check(d["ring"], RING, "ring")
    assert d["ring"]["arms"] == {"uniform": [0.0, 1.0], "ring": [0.01, 0.1]} and d["ring"]["seeds"] == [0, 1]
    assert len(d["ring"]["runs"]) == 4
    for run in d["ring"]["runs"]:
        check(run, RUN, f"ring.runs.{run['arm']}.{run['seed']}")
        assert run["status"] == "ok" and finite(*(run[m] for m in METRICS)), run
    assert set(d["ring"]["comparison"]) == set(METRICS)  # validation and test both, nothing selected
    for metric, c in d["ring"]["comparison"].items():
        assert set(c) == {"uniform_mean", "ring_mean", "ring_minus_uniform"}
        diff = c["ring_minus_uniform"]
        assert set(diff) == {"n_pairs", "seeds", "diffs", "mean", "ci95"} and diff["n_pairs"] == 2
        lo, hi = diff["ci95"]
        assert finite(diff["mean"], lo, hi) and lo <= diff["mean"] <= hi, metric
        assert diff["mean"] == pytest.approx(c["ring_mean"] - c["uniform_mean"])


@pytest.mark.slow
def test_the_dry_runs_ring_spec_is_a_valid_training_spec(dry_run):
    from trainers.specfile import load_train_config

    out, d = dry_run
    assert {p.name for p in out.iterdir()} == {"gpu_check.json", "ring_spec.yaml", "console.txt"}
    cfg = load_train_config(str(out / d["ring"]["spec_file"]), [])
    assert cfg.method.name == "simclr" and cfg.dataset.name == "fashion_mnist" and cfg.negatives.uniform
    assert "| source |" in (out / "console.txt").read_text()
