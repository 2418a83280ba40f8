"""The untrained encoder's probes (the floor, ``init_*``) and the task information in a trial:
measured once, shared where they may be, and never changing the training they precede."""

from __future__ import annotations

import json
import math

import torch

from search.micache import floor_key, key_name, mi_key
from search.trial import run_trial
from tests.conftest import tiny_train_config
from trainers.config import TrainConfig
from trainers.train import Trainer


def cfg(**sections) -> TrainConfig:
    return TrainConfig.model_validate({"dataset": {"name": "synthetic"}, **sections})


def test_floor_key_depends_on_data_architecture_and_seed_not_on_the_views_strength():
    base = key_name(floor_key(cfg()))
    assert key_name(floor_key(cfg(views={"strength": 0.3}, mi={"steps": 7}, trainer={"lr": 0.1}))) == base
    assert key_name(floor_key(cfg(trainer={"seed": 3}))) != base
    assert key_name(floor_key(cfg(model={"width": 32}))) != base
    assert key_name(floor_key(cfg(dataset={"name": "synthetic", "subset": 100}))) != base
    assert key_name(floor_key(cfg(evaluation={"knn_k": 5}))) != base


def test_the_task_information_protocol_is_part_of_the_mi_key():
    assert key_name(mi_key(cfg(mi={"label_steps": 10}))) != key_name(mi_key(cfg()))


def test_measuring_the_floor_leaves_the_training_as_it_was():
    torch.set_num_threads(1)
    c = tiny_train_config(epochs=1)
    plain = Trainer(c).train_epoch()["train_loss"]
    trainer = Trainer(c)
    floor = trainer.evaluate(trainer.untrained_encoder())
    assert trainer.train_epoch()["train_loss"] == plain
    assert all(0.0 <= v <= 1.0 for v in floor.values())
    # the same seed gives the same untrained encoder, whatever the views
    other = Trainer(tiny_train_config(epochs=1).model_copy(update={"views": c.views.model_copy(update={"strength": 0.2})}))
    assert other.evaluate(other.untrained_encoder()) == floor


def test_a_trial_logs_both_and_points_that_share_a_seed_share_the_floor(tmp_path):
    torch.set_num_threads(1)
    reports = []
    mi = {"steps": 3, "batch_size": 16, "pairs": 64, "label_steps": 3, "label_batch_size": 16}
    for strength in (0.0, 0.5):
        c = TrainConfig.model_validate({**tiny_train_config(epochs=1).model_dump(), "mi": mi,
                                        "views": {"strength": strength}})
        result = run_trial(c, None, lambda r, f: reports.append(r), mi_cache=tmp_path)
        for key in ("label_mi_nats", "label_entropy_nats", "init_linear_acc", "init_knn_acc",
                    "init_val_linear_acc", "init_val_knn_acc"):
            assert math.isfinite(result[key]), key
    assert reports[0]["init_knn_acc"] == reports[-1]["init_knn_acc"]
    entries = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    assert sum("floor" in e["key"] for e in entries) == 1  # one floor for the one seed
    assert sum("views" in e["key"] for e in entries) == 2  # one view MI + task information per strength
