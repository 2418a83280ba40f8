"""Learned views (``views.pairs: learned``): the budget, the signs of the two players' steps, which
labels are read, an exact resume, the refusals, and the view MI measured after training."""

from __future__ import annotations

import json
import math

import pytest
import torch

from search.trial import run_trial
from tests.conftest import tiny_train_config
from trainers.adversary import UNLABELLED, labelled_share
from trainers.config import TrainConfig
from trainers.errors import SpecError
from trainers.pairs.learned import project_to_budget
from trainers.specfile import load_train_config
from trainers.train import Trainer

BUDGETS = (0.0, 0.01, 0.05, 0.3)


def learned_config(epochs: int = 1, **pairs) -> TrainConfig:
    """The tiny synthetic training with learned views on images left as they are (strength 0)."""
    base = tiny_train_config(epochs=epochs).model_dump()
    base["views"] = {**base["views"], "strength": 0.0, "pairs": {"kind": "learned", **pairs}}
    return TrainConfig.model_validate(base)


def mean_abs_per_image(delta: torch.Tensor) -> list[float]:
    """The slow reference: one image at a time, sum of |change| over its pixels and channels / count."""
    out = []
    for image in delta:
        total = sum(abs(float(v)) for v in image.flatten())
        out.append(total / image.numel())
    return out


@pytest.mark.parametrize("budget", BUDGETS)
def test_the_projection_hits_the_budget_for_every_image(budget):
    torch.manual_seed(0)
    delta = torch.randn(5, 3, 6, 7, dtype=torch.float64) * torch.rand(5, 1, 1, 1, dtype=torch.float64) * 10
    got = mean_abs_per_image(project_to_budget(delta, budget))
    assert got == pytest.approx([budget] * 5, rel=1e-12, abs=1e-15)


def test_a_zero_perturbation_stays_zero():
    assert torch.equal(project_to_budget(torch.zeros(2, 1, 3, 3), 0.1), torch.zeros(2, 1, 3, 3))


@pytest.mark.parametrize("budget", BUDGETS)
def test_every_batch_of_views_keeps_the_budget(budget):
    trainer = Trainer(learned_config(budget=budget))
    for start in (0, 32, 64):
        idx = torch.arange(start, start + 32)
        v1, v2 = trainer.pairs(idx)
        copy = trainer.data.train_x[idx].float() / 255  # strength 0: the augmented copy is the image
        for view in (v1, v2):
            assert mean_abs_per_image(view.detach() - copy) == pytest.approx([budget] * 32, rel=1e-4, abs=1e-6)
        if budget > 0:
            assert not torch.equal(v1, v2)  # fresh noise per view
    assert torch.allclose(trainer.pairs(torch.arange(4), need_second=False)[0].detach()
                          .sub(trainer.data.train_x[:4].float() / 255).abs().flatten(1).mean(1),
                          torch.full((4,), budget), atol=1e-6)


def _loss_at(trainer: Trainer, idx: torch.Tensor, seed: int) -> float:
    """The contrastive loss of a fixed draw of views (the generator's noise seeded)."""
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        v1, v2 = trainer.pairs(idx)
        return float(trainer.method.loss(v1, v2, idx, 0.0, 1.0).loss)


def _one_side_step(trainer: Trainer, idx: torch.Tensor, seed: int, side: str) -> None:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        v1, v2 = trainer.pairs(idx)
        loss = trainer.method.loss(v1, v2, idx, 0.0, 1.0).loss
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.adversary.backward(loss, trainer.encoder, v1, idx)
        (trainer.adversary if side == "generator" else trainer.optimizer).step()


@pytest.mark.parametrize("side", ["generator", "encoder"])
def test_the_generator_raises_the_loss_and_the_encoder_lowers_it(side):
    trainer = Trainer(learned_config(budget=0.2, lr=0.001))
    idx = torch.arange(32)
    before = _loss_at(trainer, idx, seed=7)
    _one_side_step(trainer, idx, seed=7, side=side)
    after = _loss_at(trainer, idx, seed=7)
    assert (after > before) if side == "generator" else (after < before), (side, before, after)


def test_the_label_term_never_reaches_the_encoder():
    trainer = Trainer(learned_config(budget=0.1, label_weight=5.0, label_fraction=1.0))
    idx = torch.arange(32)
    v1, _ = trainer.pairs(idx)
    with_label = trainer.adversary.label_loss(trainer.encoder, v1, idx)
    assert with_label.item() > 0
    zero = torch.zeros((), requires_grad=True)
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.adversary.backward(zero * 1.0, trainer.encoder, v1, idx)  # only the label term has a gradient
    assert all(p.grad is None for p in trainer.encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.adversary.generator.parameters())
    assert all(p.grad is not None for p in trainer.adversary.head.parameters())


def _with_labels(cfg: TrainConfig, labels: torch.Tensor) -> Trainer:
    from trainers.data import load_data

    data = load_data(cfg.dataset)
    data.train_y = labels
    return Trainer(cfg, data)


def test_with_label_weight_zero_no_label_is_read():
    from trainers.data import load_data

    n = load_data(tiny_train_config().dataset).train_y.shape[0]
    poison = torch.full((n,), 10**6)  # any read of these as classes fails
    trainer = _with_labels(learned_config(budget=0.1, label_weight=0.0, label_fraction=1.0), poison)
    assert trainer.adversary.labels is None and trainer.adversary.head is None
    for _ in range(3):
        assert math.isfinite(float(trainer.step(torch.arange(32))))
    reads = _with_labels(learned_config(budget=0.1, label_weight=1.0, label_fraction=1.0), poison)
    with pytest.raises((IndexError, RuntimeError)):  # the same poison, read: the check above can fail
        reads.step(torch.arange(32))


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 1.0])
def test_only_the_label_fraction_is_kept(fraction):
    labels = torch.arange(200) % 10
    kept = labelled_share(labels, fraction, seed=3)
    known = [i for i in range(200) if int(kept[i]) != UNLABELLED]
    assert len(known) == round(fraction * 200)
    assert all(int(kept[i]) == int(labels[i]) for i in known)
    assert torch.equal(kept, labelled_share(labels, fraction, seed=3))  # a fixed subset


def test_the_trainer_holds_only_the_fraction_of_the_training_labels():
    trainer = Trainer(learned_config(budget=0.1, label_weight=1.0, label_fraction=0.25))
    held = trainer.adversary.labels
    n = trainer.data.train_y.shape[0]
    known = held != UNLABELLED
    assert int(known.sum()) == round(0.25 * n)
    assert torch.equal(held[known], trainer.data.train_y[known])


def test_a_resumed_training_continues_with_the_same_generator(tmp_path):
    cfg = learned_config(epochs=2, budget=0.1, label_weight=1.0, label_fraction=0.5)
    straight = Trainer(cfg)
    straight.train_epoch()
    straight.train_epoch()
    first = Trainer(cfg)
    first.train_epoch()
    first.save_checkpoint(tmp_path / "ckpt.pt")
    resumed = Trainer(cfg)
    resumed.load_checkpoint(tmp_path / "ckpt.pt")
    for a, b in zip(first.adversary.generator.parameters(), resumed.adversary.generator.parameters(), strict=True):
        assert torch.equal(a, b)
    resumed.train_epoch()
    gens = (straight.adversary.state_dict(), resumed.adversary.state_dict())
    assert gens[0].keys() == gens[1].keys()
    for key in gens[0]:
        assert torch.equal(gens[0][key], gens[1][key]), key
    for a, b in zip(straight.encoder.parameters(), resumed.encoder.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_checkpoint_without_a_generator_is_refused(tmp_path):
    fixed = Trainer(tiny_train_config(epochs=1))
    fixed.save_checkpoint(tmp_path / "fixed.pt")
    with pytest.raises(ValueError, match="no view generator"):
        Trainer(learned_config()).load_checkpoint(tmp_path / "fixed.pt")


@pytest.mark.parametrize(("override", "key"), [
    ("views.pairs={kind: learned, budget: -0.1}", "views.pairs.budget"),
    ("views.pairs={kind: learned, label_fraction: 1.5}", "views.pairs.label_fraction"),
    ("views.pairs={kind: learned, label_weight: -1}", "views.pairs.label_weight"),
    ("method.name=moco", "method.name"),
    ("method.name=ir", "method.name"),
])
def test_bad_learned_inputs_name_their_key(tmp_path, override, key):
    spec = tmp_path / "s.yaml"
    spec.write_text("dataset: {name: synthetic}\nviews: {pairs: learned}\n")
    with pytest.raises(SpecError) as err:
        load_train_config(spec, [override])
    assert err.value.key == key


def test_learned_views_are_measured_after_training_and_never_cached(tmp_path):
    cfg = learned_config(epochs=1, budget=0.1)
    cfg = TrainConfig.model_validate({**cfg.model_dump(), "mi": {"steps": 5, "pairs": 64, "batch_size": 16,
                                                                  "label_info": False}})
    reports: list[dict] = []
    result = run_trial(cfg, None, lambda r, f: reports.append(r), mi_cache=tmp_path)
    assert math.isfinite(result["mi_nats"]) and result["mi_cached"] == 0.0
    entries = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    assert not any("views" in e["key"] for e in entries)  # the floor may be shared; the views never
    assert len(reports) == 1
