"""The ring claim at GPU scale: SimCLR with uniform negatives against the ring [0.01, 0.10].

ResNet-18 with the CIFAR stem on Fashion-MNIST at 32 px, the recipe of
``spaces/cifar10_ring.yaml`` (batch 256, SGD lr 0.03, weight decay 5e-4, temperature 0.07, views
at strength 1) with the ring not annealed. Every run is one ``python -m trainers.train``
process (no Ray); all of them run at once on the one device, for as many epochs as the time left
allows at the per-process rate the sharing section measured. Seeds pair the runs (a seed fixes
the initialisation and the data order of both arms), so ring - uniform is a paired difference
with a t-interval. Selection-free: every run is reported, validation and test side by side, and
nothing is chosen.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from benchmarks.gpucheck.common import Clock, Sizes, dataset_section
from benchmarks.gpucheck.stats import paired_difference
from trainers.config import DatasetConfig
from trainers.results import KNN_ACC, LINEAR_ACC, VAL_KNN_ACC, VAL_LINEAR_ACC

REPO = Path(__file__).resolve().parents[2]
ARMS = {"uniform": (0.0, 1.0), "ring": (0.01, 0.10)}
METRICS = (LINEAR_ACC, VAL_LINEAR_ACC, KNN_ACC, VAL_KNN_ACC)
FMNIST_TRAIN = 60_000


def spec(root: Path, sizes: Sizes, device: str) -> dict:
    trainer = {"batch_size": sizes.ring_batch, "optimizer": "sgd", "lr": 0.03, "weight_decay": 5e-4, "device": device}
    if sizes.ring_max_steps:
        trainer["max_steps"] = sizes.ring_max_steps
    if device == "cpu":
        trainer["threads"] = 1  # the runs share the cores
    return {
        "dataset": dataset_section("fashion_mnist", root, sizes, sizes.ring_subset, sizes.ring_test_subset),
        "model": {"backbone": sizes.backbone, "width": sizes.width, "proj_dim": 128,
                  "proj_hidden": 2048 if sizes.backbone == "resnet18_cifar" else 64},
        "method": {"name": "simclr", "temperature": 0.07},
        "views": {"strength": 1.0},
        "trainer": trainer,
        "evaluation": {"knn_every_epoch": False, "linear_epochs": sizes.ring_linear_epochs},
        "mi": {"enabled": False},
    }


def n_train(section: dict) -> int:
    n = section.get("subset") or FMNIST_TRAIN
    return n - DatasetConfig.model_validate(section).val_count(n)


def plan_epochs(seconds: float, rate_per_process: float | None, images: int, sizes: Sizes, tiny: bool
                ) -> tuple[int, str]:
    """Epochs that fit in ``seconds`` at 80% of the measured per-process rate, after the runs' overhead."""
    if tiny:
        return 1, f"--tiny: 1 epoch of at most {sizes.ring_max_steps} steps"
    if rate_per_process is None:
        return 1, "no per-process rate was measured (sharing section): 1 epoch"
    epochs = math.floor(0.8 * (seconds - sizes.ring_overhead_s) * rate_per_process / images)
    basis = (f"{seconds:.0f} s left, {sizes.ring_overhead_s:.0f} s overhead, 80% of {rate_per_process:,.0f} img/s "
             f"per process, {images:,} training images")
    return max(1, epochs), basis


def launch(spec_path: Path, arm: str, seed: int, epochs: int, logs: Path) -> tuple[subprocess.Popen, Path, Path]:
    lower, upper = ARMS[arm]
    cmd = [sys.executable, "-m", "trainers.train", str(spec_path), "--quiet", "--set", f"trainer.seed={seed}",
           "--set", f"negatives.lower={lower}", "--set", f"negatives.upper={upper}", "--set", f"trainer.epochs={epochs}"]
    out, err = logs / f"{arm}_{seed}.out", logs / f"{arm}_{seed}.err"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=fo, stderr=fe, env=env)
    return proc, out, err


def run_record(arm: str, seed: int, proc: subprocess.Popen, out: Path, err: Path, seconds: float) -> dict:
    rec: dict = {"arm": arm, "seed": seed, "lower": ARMS[arm][0], "upper": ARMS[arm][1], "rc": proc.returncode,
                 "seconds": seconds, "status": "error", "reason": None,
                 **dict.fromkeys((*METRICS, "epochs", "train_loss", "imgs_per_s"))}
    lines = out.read_text().strip().splitlines()
    try:
        metrics = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        metrics = None
    if proc.returncode == 0 and isinstance(metrics, dict):
        rec.update(status="ok", **{k: metrics.get(k) for k in (*METRICS, "epochs", "train_loss", "imgs_per_s")})
    else:
        tail = err.read_text().strip().splitlines()[-3:]
        rec["reason"] = f"exit code {proc.returncode}: " + " | ".join(tail)
    return rec


def compare(runs: list[dict]) -> dict:
    """Per metric: each arm's mean over its runs, and ring - uniform paired by seed with its 95% CI."""
    out = {}
    for metric in METRICS:
        by_arm = {arm: {r["seed"]: r[metric] for r in runs if r["arm"] == arm and r["status"] == "ok"} for arm in ARMS}
        means = {arm: (sum(v.values()) / len(v) if v else None) for arm, v in by_arm.items()}
        out[metric] = {"uniform_mean": means["uniform"], "ring_mean": means["ring"],
                       "ring_minus_uniform": paired_difference(by_arm["ring"], by_arm["uniform"])}
    return out


def measure(root: Path, sizes: Sizes, device: str, seeds: int, clock: Clock, deadline: float,
            rate_per_process: float | None, work: Path, out_dir: Path, tiny: bool, log=print) -> dict:
    raw = spec(root, sizes, device)
    (out_dir / "ring_spec.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    spec_path = work / "ring_spec.yaml"
    spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    images = n_train(raw["dataset"])
    epochs, basis = plan_epochs(deadline - clock.elapsed(), rate_per_process, images, sizes, tiny)
    log(f"  {2 * seeds} runs at once, {epochs} epoch(s) each ({basis})")
    logs = work / "ring_logs"
    logs.mkdir(exist_ok=True)
    started = time.perf_counter()
    procs = {(arm, s): launch(spec_path, arm, s, epochs, logs) for arm in ARMS for s in range(seeds)}
    ended: dict = {}
    while len(ended) < len(procs) and clock.elapsed() < deadline + 30:
        ended.update({k: time.perf_counter() - started for k, (p, _, _) in procs.items()
                      if k not in ended and p.poll() is not None})
        time.sleep(0.2)
    runs = []
    for key, (proc, out, err) in procs.items():
        killed = proc.poll() is None
        if killed:  # past the budget: stop it, its result is lost
            proc.kill()
            proc.wait()
        rec = run_record(*key, proc, out, err, ended.get(key, time.perf_counter() - started))
        if killed:
            rec.update(status="skipped", reason="stopped at the time budget (--minutes)")
        runs.append(rec)
    return {"spec_file": "ring_spec.yaml", "spec": raw, "arms": {a: list(b) for a, b in ARMS.items()},
            "seeds": list(range(seeds)), "epochs": epochs, "epochs_basis": basis, "n_train": images,
            "selection": "none: every run is reported, validation and test side by side",
            "runs": runs, "comparison": compare(runs)}
