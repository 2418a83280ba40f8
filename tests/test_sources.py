"""Pair sources end to end: built from a config, used by the trainer, the MI measurement, the grid.

The relations themselves are tested exactly in test_pair_families.py; here: each family's knob
moves the measured view MI the way it should on real images, every method (IR included) goes
through the one (compiled) source, Kornia stages change the views and can be searched, and the
toy testbed's trials measure their own MI from their own views."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

from analysis.mi import view_mi
from analysis.viewgrid import draw_pairs, save_view_grid
from tests.conftest import tiny_train_config
from trainers.config import MIConfig, TrainConfig
from trainers.data import load_data
from trainers.methods.knobs import IRKnobs
from trainers.pairs import build_pairs
from trainers.train import Trainer
from trainers.validation import point_config

FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
PROTOCOL = MIConfig(steps=100, batch_size=128, pairs=2048, seed=0)


@pytest.fixture(scope="module")
def fmnist():
    if not FMNIST.is_file():
        pytest.skip("Debian package dataset-fashion-mnist not installed (make setup installs it)")
    return load_data(TrainConfig.model_validate({"dataset": {"subset": 4000, "test_subset": 16}}).dataset)


def with_views(**views) -> TrainConfig:
    return TrainConfig.model_validate({"dataset": {"subset": 4000, "test_subset": 16}, "views": views})


@pytest.mark.slow
@pytest.mark.parametrize("knob,values,extra", [
    ("distance", (0.0, 0.5, 1.0), {"kind": "patches", "size": 0.5}),
    ("gap", (0.0, 0.4, 0.8), {"kind": "frequency", "cutoff": 0.3}),
], ids=["patches", "frequency"])
def test_view_mi_falls_along_each_familys_knob(fmnist, knob, values, extra):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        nats = [view_mi(build_pairs(with_views(strength=0.0, pairs={**extra, knob: v}), fmnist), PROTOCOL).nats
                for v in values]
    finally:
        torch.set_num_threads(threads)
    assert all(math.isfinite(n) for n in nats)
    assert all(a > b for a, b in itertools.pairwise(nats)), nats


def test_every_family_trains_and_evaluates_on_its_own_views():
    base = tiny_train_config().model_dump()
    for views, channels in (({"pairs": {"kind": "patches", "distance": 0.5}}, 1), ({"pairs": "frequency"}, 1),
                            ({"pairs": {"kind": "channels", "color_space": "ydbdr"}}, 3)):
        cfg = TrainConfig.model_validate({**base, "dataset": {**base["dataset"], "channels": channels},
                                          "views": {"strength": 0.3, **views}})
        trainer = Trainer(cfg)
        v1, v2 = trainer.pairs(torch.arange(4))
        assert v1.shape == v2.shape and v1.shape[0] == 4
        result = trainer.fit()
        assert 0.0 <= result["linear_acc"] <= 1.0 and 0.0 <= result["val_linear_acc"] <= 1.0


def test_ir_takes_its_one_view_through_the_compiled_source():
    cfg = tiny_train_config(compile_views=True, epochs=1, max_steps=2)
    cfg = cfg.model_copy(update={"method": IRKnobs(num_negatives=8)})
    trainer = Trainer(cfg)
    calls = []
    compiled = trainer.make_pairs
    assert compiled is not trainer.pairs.__call__  # wrapped by torch.compile

    def spy(idx, need_second):
        calls.append(need_second)
        return compiled(idx, need_second)

    trainer.make_pairs = spy
    assert trainer.train_epoch()["diverged"] == 0.0
    assert calls == [False, False]  # IR: one view a step, from the same source as everyone else


def test_a_kornia_stage_changes_the_views_and_its_argument_can_be_searched():
    base = tiny_train_config().model_dump()
    plain = TrainConfig.model_validate({**base, "views": {"strength": 0.0}})
    erased = TrainConfig.model_validate({**base, "views": {"strength": 0.0, "stages": [{"RandomErasing": {"p": 1.0}}]}})
    data = load_data(plain.dataset)
    idx = torch.arange(8)
    a1, a2 = build_pairs(plain, data)(idx)
    assert torch.equal(a1, a2)  # strength 0, no stage: identical views
    b1, b2 = build_pairs(erased, data)(idx)
    assert not torch.equal(b1, a1) and not torch.equal(b1, b2)

    raw = {**base, "views": {"stages": [{"RandomSharpness": {"p": 1.0, "sharpness": {"uniform": [0.1, 0.9]}}}]}}
    from trainers.domains import find_domains
    from trainers.validation import validate_train

    validate_train(raw)
    assert list(find_domains(raw)) == ["views.stages.0.RandomSharpness.sharpness"]
    picked = [point_config(raw, {"views.stages.0.RandomSharpness.sharpness": v}) for v in (0.2, 0.8)]
    assert [c.views.stages[0]["RandomSharpness"]["sharpness"] for c in picked] == [0.2, 0.8]


def test_the_view_grid_draws_the_sources_own_pairs(tmp_path):
    cfg = tiny_train_config()
    cfg = TrainConfig.model_validate({**cfg.model_dump(), "views": {"pairs": {"kind": "patches", "size": 0.5}}})
    source = build_pairs(cfg, load_data(cfg.dataset))
    originals, v1, _ = draw_pairs(source, 4)
    assert originals.shape[-1] == 16 and v1.shape[-1] == 8  # the patches, not the whole images
    path = save_view_grid(source, tmp_path / "views.png", "views.pairs: patches", n=4)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_toy_trials_measure_their_own_views(tmp_path):
    """The toy testbed's views come from its re-renderer everywhere: the MI and the grid see them."""
    import numpy as np

    from search.trial import measure_views
    from tests.test_reliability import write_idx

    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 300), ("t10k", 64)):
        write_idx(raw / f"{split}-images-idx3-ubyte.gz", rng.integers(96, 256, (n, 28, 28)))
        write_idx(raw / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    cfg = TrainConfig.model_validate({
        "dataset": {"name": "infomin_toy", "root": str(tmp_path), "subset": 300, "test_subset": 64},
        "views": {"strength": 0.0, "pairs": {"kind": "toy", "shared": ["class"]}},
        "model": {"width": 8, "proj_dim": 8, "proj_hidden": 16},
        "trainer": {"epochs": 1, "batch_size": 32, "device": "cpu"},
        "mi": {"steps": 5, "batch_size": 32, "pairs": 128, "label_steps": 5, "label_batch_size": 32},
    })
    trainer = Trainer(cfg)
    assert trainer.pairs.name == "toy"
    _, v1, v2 = draw_pairs(trainer.pairs, 6)
    assert not torch.equal(v1, v2)  # background and position are redrawn in view 2
    mi = measure_views(trainer, cfg)
    assert math.isfinite(mi["mi_nats"]) and mi["mi_nats"] <= mi["mi_cap_nats"]
