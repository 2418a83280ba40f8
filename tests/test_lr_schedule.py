"""The learning-rate schedule: values against a per-step reference, and exact resume."""

import math

import pytest
import torch

from tests.conftest import tiny_train_config
from trainers.data import load_data
from trainers.train import Trainer, lr_factor


def reference_factor(step: int, total: int, warmup: int) -> float:
    """Warm-up then cosine, written the long way: the rate rises linearly over ``warmup`` steps
    to the base rate, then follows half a cosine period down to zero at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    decay_steps = total - warmup
    done = step - warmup
    angle = math.pi * done / decay_steps
    return (1 + math.cos(angle)) / 2


@pytest.mark.parametrize(("total", "warmup"), [(100, 0), (100, 10), (7, 3), (1, 0)])
def test_cosine_matches_reference(total, warmup):
    for step in range(total):
        assert lr_factor(step, total, warmup, "cosine") == pytest.approx(reference_factor(step, total, warmup), abs=1e-12)


def test_chosen_values():
    assert lr_factor(0, 100, 0, "cosine") == 1.0
    assert lr_factor(50, 100, 0, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, 0, "cosine") == pytest.approx(0.0)
    assert lr_factor(4, 100, 10, "cosine") == pytest.approx(0.5)  # halfway up the warm-up
    assert lr_factor(10, 100, 10, "cosine") == 1.0  # warm-up done: the base rate
    assert lr_factor(500, 100, 0, "cosine") == pytest.approx(0.0)  # past the end: stays at 0
    assert all(lr_factor(s, 100, 10, "constant") == 1.0 for s in range(120))


def test_trainer_follows_the_schedule_and_resumes_exactly(tmp_path):
    cfg = tiny_train_config(lr=0.01, lr_schedule="cosine", warmup_epochs=0.5)
    data = load_data(cfg.dataset)
    full = Trainer(cfg, data)
    seen = []
    for _ in range(2):
        for _ in range(full.steps_per_epoch):
            full.step(torch.arange(32))
            seen.append(full.optimizer.param_groups[0]["lr"])
    total, warmup = 2 * full.steps_per_epoch, round(0.5 * full.steps_per_epoch)
    assert seen == pytest.approx([0.01 * reference_factor(s, total, warmup) for s in range(total)])

    first = Trainer(cfg, data)
    first.train_epoch()
    first.save_checkpoint(tmp_path / "ckpt.pt")
    first.train_epoch()
    resumed = Trainer(cfg, data)
    resumed.load_checkpoint(tmp_path / "ckpt.pt")
    resumed.train_epoch()
    assert resumed.optimizer.param_groups[0]["lr"] == first.optimizer.param_groups[0]["lr"]
    for a, b in zip(first.encoder.state_dict().values(), resumed.encoder.state_dict().values(), strict=True):
        assert torch.equal(a, b)
