"""The InfoMin testbed: renderings match their factors, view pairs share exactly what they should.

Most tests run on a small fake Fashion-MNIST written here (full-frame objects, so an object's
bounding box is exactly its placement box and every factor can be decoded from the pixels);
one test checks the real dataset and is skipped where it is not installed.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from trainers.config import DatasetConfig, TrainConfig
from trainers.data import DatasetMissing
from trainers.data import files as data_mod
from trainers.data.toy import (
    DESIGN,
    FACTORS,
    ToyDesign,
    load_infomin_toy,
    n_values,
    object_size,
    palette,
    placements,
    render_factors,
)
from trainers.pairs.base import PairSource
from trainers.pairs.toy import ToyRerender
from trainers.validation import point_config
from trainers.views import ViewPipeline

REPO = Path(__file__).resolve().parents[1]
N_TRAIN, N_TEST = 256, 64  # images in the fake files
N_VAL = 26  # the default validation split: 10% of the training-split images, the last of them
N_FIT = N_TRAIN - N_VAL  # the images that train (and the object bank the second view redraws from)


def write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory) -> Path:
    """Fashion-MNIST-shaped IDX files whose objects fill their whole 28x28 frame (values >= 96)."""
    root = tmp_path_factory.mktemp("fmnist")
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        write_idx(raw / f"{split}-images-idx3-ubyte.gz", rng.integers(96, 256, (n, 28, 28)))
        write_idx(raw / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return root


@pytest.fixture(scope="module")
def toy(fake_root):
    return load_infomin_toy(DatasetConfig(name="infomin_toy", root=str(fake_root)))


PLAIN = ToyDesign(object_fraction=20 / 32, grid=2, noise_std=0.0)  # every placement covers one corner


@pytest.fixture(scope="module")
def plain(fake_root):
    """A noise-free 2x2 variant whose factors can be decoded from four corner pixels."""
    return load_infomin_toy(DatasetConfig(name="infomin_toy", root=str(fake_root)), PLAIN)


def decode_plain(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(background id, position id) read off the corner pixels of uint8 [B,3,S,S] PLAIN renderings.

    Each placement covers exactly one canvas corner; the other three show the flat background."""
    s = images.shape[-1]
    corners = torch.stack([images[:, :, r, c] for r, c in ((0, 0), (0, s - 1), (s - 1, 0), (s - 1, s - 1))], 1)
    corners = corners.float() / 255  # [B,4,3]
    differs = (corners[:, :, None] - corners[:, None]).abs().sum(-1) > 1e-6  # [B,4,4]
    position = differs.sum(2).argmax(1)  # the odd corner out differs from the other three
    bg = corners[torch.arange(len(images)), 3 - position]  # the diagonally opposite corner
    return torch.cdist(bg, palette(PLAIN)).argmin(1), position


def object_box(position: int, canvas: int = 32, design: ToyDesign = DESIGN) -> tuple[int, int, int, int]:
    r, c = placements(canvas, design)[position].tolist()
    o = object_size(canvas, design)
    return r, r + o, c, c + o


# --------------------------------------------------------------------------- rendering


def test_rendering_is_deterministic_and_shaped(fake_root, toy):
    again = load_infomin_toy(DatasetConfig(name="infomin_toy", root=str(fake_root)))
    assert toy.train_x.shape == (N_FIT, 3, 32, 32) and toy.train_x.dtype == torch.uint8
    assert toy.val_x.shape == (N_VAL, 3, 32, 32) and toy.test_x.shape == (N_TEST, 3, 32, 32)
    assert torch.equal(toy.train_x, again.train_x) and torch.equal(toy.test_x, again.test_x)
    for name in FACTORS:
        for split in range(3):
            assert torch.equal(toy.factors[name][split], again.factors[name][split])
    assert torch.equal(toy.factors["class"][0], toy.train_y) and torch.equal(toy.factors["class"][1], toy.val_y)
    assert toy.extras["bank"].shape == (N_FIT, 1, object_size(32), object_size(32))  # validation objects left out


def test_subset_and_image_size(fake_root):
    cfg = DatasetConfig(name="infomin_toy", root=str(fake_root), subset=100, test_subset=10, image_size=40)
    d = load_infomin_toy(cfg)
    assert d.train_x.shape == (90, 3, 40, 40) and d.val_x.shape[0] == 10 and d.test_x.shape[0] == 10
    assert all((len(a), len(b), len(c)) == (90, 10, 10) for a, b, c in d.factors.values())


def test_pixels_match_factors(toy):
    """Outside its placement box an image is exactly its background (palette colour of its id,
    jittered, plus its texture); inside, the object shows everywhere (the fake objects fill it)."""
    e, canvas = toy.extras, 32
    bg_id, pos_id, texture = e["background"], e["position"], e["texture"]
    assert torch.equal(bg_id, toy.factors["background"][0]) and torch.equal(pos_id, toy.factors["position"][0])
    assert ((e["bg_rgb"] - palette()[bg_id]).abs() <= DESIGN.bg_jitter + 1e-6).all()
    expected_bg = (e["bg_rgb"][:, :, None, None] + e["noise"][texture]).clamp(0, 1).mul(255).round()
    assert e["noise"].std() == pytest.approx(DESIGN.noise_std, rel=0.05)
    for i in range(N_FIT):
        r0, r1, c0, c1 = object_box(int(pos_id[i]))
        inside = torch.zeros(canvas, canvas, dtype=torch.bool)
        inside[r0:r1, c0:c1] = True
        diff = (toy.train_x[i].float() - expected_bg[i]).abs().amax(0)
        assert (diff[~inside] == 0).all(), i
        assert diff[inside].float().mean() > 10, i


def test_plain_design_decodes_from_pixels(plain):
    for split, x in enumerate((plain.train_x, plain.val_x, plain.test_x)):
        background, position = decode_plain(x)
        assert torch.equal(background, plain.factors["background"][split])
        assert torch.equal(position, plain.factors["position"][split])


def test_palette_colours_stay_distinct_after_jitter(toy):
    """Every background id is recoverable from its colour: the jittered clusters do not overlap."""
    nearest = torch.cdist(toy.extras["bg_rgb"], palette()).argmin(1)
    assert torch.equal(nearest, toy.extras["background"])
    # guaranteed, not just observed: a colour p + u with |u|_inf <= j (jitter plus uint8 rounding)
    # is nearer to p than to q whenever j * |q - p|_1 < |q - p|^2 / 2
    d = palette()[:, None] - palette()[None]
    off_diagonal = ~torch.eye(DESIGN.n_backgrounds, dtype=torch.bool)
    j = DESIGN.bg_jitter + 0.5 / 255
    assert (j * d.abs().sum(-1) < d.pow(2).sum(-1) / 2)[off_diagonal].all()


def test_placements_tile_the_canvas():
    for design in (DESIGN, PLAIN):
        p, far = placements(32, design), 32 - object_size(32, design)
        assert len(p) == design.grid**2 and p.min() == 0 and p.max() == far
        assert len({tuple(x) for x in p.tolist()}) == len(p)


def test_factors_are_spread_over_their_values(toy):
    for name, n in (("background", DESIGN.n_backgrounds), ("position", DESIGN.grid**2)):
        assert n_values(toy, name) == n
        counts = torch.bincount(toy.factors[name][0], minlength=n)
        assert len(counts) == n and counts.min() > 0


def test_missing_fashion_mnist_is_the_fashion_mnist_error(tmp_path, monkeypatch):
    monkeypatch.setattr(data_mod, "SYSTEM_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(DatasetMissing, match="fashion_mnist"):
        load_infomin_toy(DatasetConfig(name="infomin_toy", root=str(tmp_path)))


@pytest.mark.skipif(not data_mod.SYSTEM_FASHION_MNIST.is_dir(), reason="Fashion-MNIST not installed")
def test_real_fashion_mnist_objects(tmp_path):
    d = load_infomin_toy(DatasetConfig(name="infomin_toy", root=str(tmp_path), subset=512, test_subset=128))
    assert d.train_x.shape == (461, 3, 32, 32) and set(d.train_y.tolist()) == set(range(10))  # 512 - 51
    assert d.extras["bank"].float().mean() > 40  # objects, not an empty bank
    plain = load_infomin_toy(DatasetConfig(name="infomin_toy", root=str(tmp_path), subset=512, test_subset=128), PLAIN)
    background, _ = decode_plain(plain.train_x)
    assert (background == plain.factors["background"][0]).float().mean() > 0.95  # a corner may show the object


# --------------------------------------------------------------------------- view pairs


def toy_source(data, shared, strength: float = 0.0) -> PairSource:
    """The toy pair source as ``build_pairs`` makes it: the re-renderer, and the pipeline if strength > 0."""
    augment = ViewPipeline(TrainConfig().views.model_copy(update={"strength": strength}), 3) if strength else None
    return PairSource(data.train_x, augment, second=ToyRerender(data, shared), name="toy")


def factor_ids(rerender: ToyRerender, f) -> dict[str, torch.Tensor]:
    return {"class": rerender.extras["bank_labels"][f.obj], "object": f.obj, "background": f.background,
            "position": f.position}


def seeded_pair(source: PairSource, idx: torch.Tensor):
    """View 2's factors and the views, drawn from the same seed (so they belong together)."""
    torch.manual_seed(0)
    f2 = source.second.second_view_factors(idx)
    torch.manual_seed(0)
    return f2, *source(idx)


@pytest.mark.parametrize("shared", [["class"], ["background"], ["position"], ["class", "position"], None])
def test_pairs_keep_shared_factors_and_redraw_the_others(toy, plain, shared):
    idx = torch.randint(0, N_FIT, (1024,), generator=torch.Generator().manual_seed(1))
    # the default design: view 1 is the stored image, view 2 exactly the rendering of its factors
    pairs = toy_source(toy, shared)
    f2, v1, v2 = seeded_pair(pairs, idx)
    assert v1.shape == v2.shape == (1024, 3, 32, 32) and v2.dtype == torch.float32
    assert torch.equal(v1, toy.train_x[idx].float() / 255)
    assert torch.equal(v2, render_factors(f2, toy.extras).float() / 255)
    # the decodable design: read both views' background and position off the pixels
    pairs = toy_source(plain, shared)
    f2, v1, v2 = seeded_pair(pairs, idx)
    (bg1, pos1), (bg2, pos2) = (decode_plain((v * 255).round().to(torch.uint8)) for v in (v1, v2))
    assert torch.equal(bg2, f2.background) and torch.equal(pos2, f2.position)
    one, two = factor_ids(pairs.second, pairs.second.factors(idx)), factor_ids(pairs.second, f2)
    one.update(background=bg1, position=pos1)
    two.update(background=bg2, position=pos2)
    for name in FACTORS:
        differs = (one[name] != two[name]).float().mean().item()
        if shared is None or name in shared:
            assert differs == 0.0, name
        else:  # redrawn uniformly: differs with probability 1 - 1/n (class: about that)
            assert abs(differs - (1 - 1 / n_values(plain, name))) < 0.05, (name, differs)
    same_object = (one["object"] == two["object"]).all() if shared is None or "class" in shared else \
        (one["object"] != two["object"]).all()  # a redrawn object is always another one
    assert same_object


def test_all_shared_at_strength_zero_gives_identical_views(toy):
    v1, v2 = toy_source(toy, None)(torch.arange(64))
    assert torch.equal(v1, v2)


def test_strength_adds_the_view_pipeline(toy):
    v1, v2 = toy_source(toy, None, strength=1.0)(torch.arange(64))
    assert v1.shape == (64, 3, 32, 32) and not torch.equal(v1, v2)
    assert v1.min() >= 0 and v1.max() <= 1


# --------------------------------------------------------------------------- training and the spec


def test_tiny_training_reports_a_probe_per_factor(fake_root):
    from trainers.train import Trainer

    cfg = TrainConfig.model_validate({
        "dataset": {"name": "infomin_toy", "root": str(fake_root), "subset": 128, "test_subset": 64},
        "model": {"width": 8, "proj_dim": 16, "proj_hidden": 32},
        "views": {"strength": 0.0, "pairs": {"kind": "toy", "shared": ["class"]}},
        "trainer": {"epochs": 1, "batch_size": 32, "max_steps": 2, "device": "cpu", "threads": 1},
        "evaluation": {"knn_k": 10, "linear_epochs": 1, "monitor_train": 100, "monitor_val": 12},
    })
    result = Trainer(cfg).fit()
    assert result["diverged"] == 0.0
    for name in FACTORS:
        assert 0.0 <= result[f"linear_acc_{name}"] <= 1.0 and 0.0 <= result[f"val_linear_acc_{name}"] <= 1.0


def test_spec_grid_of_shared_subsets_loads():
    from search.spec import load_spec

    spec = load_spec(REPO / "spaces" / "infomin_toy.yaml")
    grid = spec.domains["views.pairs.shared"]["grid"]
    assert spec.train.dataset.name == "infomin_toy" and spec.search.algorithm == "grid"
    assert {tuple(g) for g in grid} >= {("class",), ("background",), ("position",)}
    for subset in grid:
        assert point_config(spec.train_raw, {"views.pairs.shared": subset}).views.pairs.shared == subset


def test_the_toy_familys_factors_are_the_datasets():
    from typing import get_args

    from trainers.pairs.toy import Factor

    assert get_args(Factor) == FACTORS
