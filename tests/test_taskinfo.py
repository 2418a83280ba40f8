"""Task information I(v; y) >= H(y) - CE: right where the label information is known, and falling
along a view family's knob.

The images: 10 classes, each drawn as a bright 3 x 3 block at its own place of a 12 x 12 noise
image, so the image determines its class exactly. Labels copied from that class carry
I(x; y) = H(y); labels flipped with probability p to one of the 9 other classes carry
log 10 - h(p) - p log 9 (uniform classes, h the binary entropy); labels drawn independently of
the image carry nothing. 6,000 training images and 2,000 validation images: the held-out CE
then has a standard error of about 0.03 nats in the flipped case (the per-image loss takes the
values -log 0.7 and -log(0.3 / 9), SD about 1.4 nats, over 2,000 images), so the tolerances
below (0.15 nats) are about five standard errors plus what a classifier of 300 steps leaves
unlearned. The bound can only err low in expectation (any classifier's CE is >= H(y | v)), so
the upper tolerances are tighter.
"""

import math

import pytest
import torch

from analysis.taskinfo import label_entropy, task_information
from trainers.config import MIConfig, ViewsConfig
from trainers.pairs.base import PairSource
from trainers.views import ViewPipeline

C, SIDE = 10, 12
PROTOCOL = MIConfig(hidden=32, label_steps=300, label_batch_size=128, label_lr=3e-3)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def images_of(classes: torch.Tensor, seed: int) -> torch.Tensor:
    """uint8 [N, 1, 12, 12]: noise plus one bright block whose position is the class."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 60, (classes.shape[0], 1, SIDE, SIDE), generator=g, dtype=torch.uint8)
    for c in range(C):
        r, q = divmod(c, 4)
        x[classes == c, :, 1 + 4 * r : 4 + 4 * r, q * 3 : q * 3 + 3] = 255
    return x


def data(n_train: int = 6000, n_val: int = 2000, seed: int = 0):
    g = torch.Generator().manual_seed(seed + 100)
    c_tr, c_val = torch.randint(0, C, (n_train,), generator=g), torch.randint(0, C, (n_val,), generator=g)
    return images_of(c_tr, seed), c_tr, images_of(c_val, seed + 1), c_val


def flip(y: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """Each label moved with probability p to one of the C - 1 other classes, uniformly."""
    g = torch.Generator().manual_seed(seed)
    moved = torch.rand(y.shape[0], generator=g) < p
    return torch.where(moved, (y + torch.randint(1, C, y.shape, generator=g)) % C, y)


def ref_entropy(y) -> float:
    counts = [sum(1 for v in y.tolist() if v == c) for c in range(C)]
    return -sum(k / len(y) * math.log(k / len(y)) for k in counts if k)


def test_label_entropy_matches_a_loop():
    y = torch.tensor([0, 0, 1, 2, 2, 2, 9])
    assert label_entropy(y, C) == pytest.approx(ref_entropy(y), abs=1e-12)
    assert label_entropy(torch.zeros(5, dtype=torch.long), C) == 0.0


def test_labels_copied_into_the_image_give_about_h_y():
    x_tr, y_tr, x_val, y_val = data()
    est = task_information(PairSource(x_tr), y_tr, x_val, y_val, C, PROTOCOL)
    assert est.entropy_nats == pytest.approx(ref_entropy(y_val), abs=1e-9)
    assert est.entropy_nats - 0.1 <= est.nats <= est.entropy_nats + 1e-9, est


def test_labels_with_a_known_share_flipped_give_the_analytic_value():
    p = 0.3
    x_tr, c_tr, x_val, c_val = data()
    y_tr, y_val = flip(c_tr, p, 1), flip(c_val, p, 2)
    est = task_information(PairSource(x_tr), y_tr, x_val, y_val, C, PROTOCOL)
    h = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    truth = ref_entropy(y_val) - (h + p * math.log(C - 1))  # about 1.03 nats
    assert truth - 0.15 <= est.nats <= truth + 0.1, (est, truth)


def test_labels_independent_of_the_image_give_about_zero():
    x_tr, _, x_val, _ = data()
    g = torch.Generator().manual_seed(7)
    y_tr, y_val = torch.randint(0, C, (x_tr.shape[0],), generator=g), torch.randint(0, C, (x_val.shape[0],), generator=g)
    est = task_information(PairSource(x_tr), y_tr, x_val, y_val, C, PROTOCOL)
    assert -0.15 <= est.nats <= 0.05, est


def test_it_falls_along_the_augmentation_strength_and_leaves_the_callers_rng_alone():
    """Small random crops move and cut the block, so stronger views keep less of the class."""
    x_tr, y_tr, x_val, y_val = data(3000, 1000)
    knobs = {"crop_scale_min": 0.05, "crop_scale_max": 0.15, "flip_p": 0.5}
    protocol = PROTOCOL.model_copy(update={"label_steps": 150})
    torch.manual_seed(123)
    before = torch.get_rng_state()
    values = []
    for s in (0.0, 0.5, 1.0):
        aug = ViewPipeline(ViewsConfig(strength=s, **knobs), 1) if s > 0 else None
        values.append(task_information(PairSource(x_tr, aug), y_tr, x_val, y_val, C, protocol).nats)
    assert torch.equal(torch.get_rng_state(), before)
    assert values[0] > values[1] + 0.2 > values[2] + 0.4, values
