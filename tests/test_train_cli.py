"""``python -m trainers.train``: bad input exits 2 naming the key; a tiny run prints the metrics JSON."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(tmp_path, spec_text, *overrides):
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text)
    args = [sys.executable, "-m", "trainers.train", str(spec), "--quiet"]
    for o in overrides:
        args += ["--set", o]
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize(
    "spec,overrides,needle",
    [
        ("dataset: {name: cifar10, root: /nonexistent}\n", [], "dataset.name"),
        ("dataset: {name: imagenet}\n", [], "dataset.name"),
        ("method: {name: byol}\n", [], "method.name"),
        ("views: {hue: 0.1}\n", [], "views.hue"),
        ("negatives: {lower: 0.5, upper: 0.1}\n", [], "negatives.lower"),
        ("{}\n", ["trainer.epochz=1"], "trainer.epochz"),
        ("trainer: {device: cuda}\n", [], "trainer.device"),
    ],
)
def test_bad_input_exits_2_naming_the_key(tmp_path, spec, overrides, needle):
    if "cuda" in spec:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    proc = run_cli(tmp_path, spec, *overrides)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr


def test_tiny_synthetic_run_prints_metrics(tmp_path):
    spec = (
        "dataset: {name: synthetic, subset: 256, test_subset: 128, image_size: 16}\n"
        "model: {width: 8, proj_dim: 16, proj_hidden: 32}\n"
        "trainer: {epochs: 2, batch_size: 64, seed: 3}\n"
        "evaluation: {linear_epochs: 2}\n"
        "negatives: {lower: 0.0, upper: {uniform: [0.2, 0.6]}}\n"
    )
    first = run_cli(tmp_path, spec)
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout.strip().splitlines()[-1])
    for key in ("knn_acc", "linear_acc", "train_loss", "imgs_per_s", "epochs", "seconds"):
        assert key in out
    assert out["epochs"] == 2 and 0.0 <= out["linear_acc"] <= 1.0
    again = json.loads(run_cli(tmp_path, spec).stdout.strip().splitlines()[-1])
    assert again["train_loss"] == out["train_loss"]  # trainer.seed makes a CPU run repeatable
