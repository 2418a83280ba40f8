"""Every shipped spec loads; the GPU-scale specs survive a one-step dry run on synthetic data."""

from pathlib import Path

import pytest

from search.spec import load_spec
from trainers.train import Trainer
from trainers.validation import point_config

SPACES = sorted((Path(__file__).resolve().parents[1] / "spaces").glob("*.yaml"))


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_spec_loads(path):
    spec = load_spec(path)
    assert spec.experiment == path.stem
    assert spec.domains, "a search spec searches something"


@pytest.mark.parametrize("name", ["cifar10_infomin", "cifar10_ring", "cifar10_channels"])
def test_gpu_spec_dry_run_on_synthetic_data(name):
    dry = [
        "dataset.name=synthetic", "dataset.channels=3", "dataset.image_size=32", "dataset.subset=32",
        "dataset.test_subset=16", "dataset.val_size=4", "trainer.device=cpu", "trainer.epochs=1", "trainer.max_steps=1",
        "trainer.batch_size=16", "search.grace_period=1", "trainer.compile_views=false",
    ]
    spec = load_spec(Path(__file__).resolve().parents[1] / "spaces" / f"{name}.yaml", dry)
    assert spec.train.model.backbone == "resnet18_cifar" and spec.resources.gpu >= 1
    methods = ("ir", "moco", "simclr") if "method.name" in spec.domains else ("simclr",)
    for method in methods:
        values = {"method.name": method} if "method.name" in spec.domains else {}
        cfg = point_config(spec.train_raw, values)
        assert cfg.method.name == method
        trainer = Trainer(cfg)
        metrics = trainer.train_epoch()
        assert metrics["diverged"] == 0.0 and trainer.global_step == 1
