"""The names of every metric a training reports, and the shapes of its results: the one home of
the strings the trainer writes and the search, the report and the benchmarks read.

A name is built here and nowhere else: ``probe_metric("linear", "val")`` is ``val_linear_acc``,
``probe_metric("linear", "test", factor="shape")`` is ``linear_acc_shape`` (one probe per known
factor of a toy dataset), ``floor_metric(...)`` prefixes ``init_`` (the untrained encoder's
probe). Readers that must recognise a per-factor probe among a result's keys ask
:func:`factor_of` rather than matching a prefix of their own.

The validation split selects (the search metric, early stopping, the best point); the test split
is only reported. Imports nothing but the standard library, so every layer can use it.
"""

from __future__ import annotations

from typing import Literal, TypedDict

Probe = Literal["knn", "linear"]
Split = Literal["val", "test"]
PROBES: tuple[Probe, ...] = ("knn", "linear")
SPLITS: tuple[Split, ...] = ("val", "test")
_FLOOR_PREFIX = "init_"


def probe_metric(probe: Probe, split: Split, factor: str | None = None) -> str:
    """The accuracy of ``probe`` on ``split``: ``val_linear_acc``, ``knn_acc``, ``linear_acc_<factor>``."""
    if probe not in PROBES or split not in SPLITS:
        raise ValueError(f"no probe metric for probe={probe!r}, split={split!r}")
    name = f"{probe}_acc" if split == "test" else f"val_{probe}_acc"
    return f"{name}_{factor}" if factor else name


def factor_probe(factor: str, split: Split) -> str:
    """The linear probe of one known factor of the images (``infomin_toy``'s shape, colour...)."""
    return probe_metric("linear", split, factor)


def factor_of(name: str) -> str | None:
    """The factor a per-factor probe metric names (``linear_acc_shape`` -> ``shape``), else None."""
    for split in SPLITS:
        base = probe_metric("linear", split) + "_"
        if name.startswith(base) and len(name) > len(base):
            return name[len(base):]
    return None


def floor_metric(metric: str) -> str:
    """The same probe on the untrained encoder (the floor a trained encoder's accuracy is a gain over)."""
    return f"{_FLOOR_PREFIX}{metric}"


def image_count(split: Literal["train", "val", "test"]) -> str:
    return f"n_{split}_images"


# ---------------------------------------------------------------- per epoch (step = epoch)
EPOCH = "epoch"
TRAIN_LOSS = "train_loss"
IMGS_PER_S = "imgs_per_s"
RING_LOWER, RING_UPPER = "ring_lower", "ring_upper"
DIVERGED = "diverged"  # 1.0 when the epoch's loss was NaN/inf
START_EPOCH = "start_epoch"  # where a (re)started trial began: 0, or the epoch it resumed from

# ---------------------------------------------------------------- the final evaluation
VAL_KNN_ACC = probe_metric("knn", "val")  # also the cheap per-epoch monitor on subsets
KNN_ACC = probe_metric("knn", "test")
VAL_LINEAR_ACC = probe_metric("linear", "val")
LINEAR_ACC = probe_metric("linear", "test")
PROBE_METRICS = (VAL_LINEAR_ACC, LINEAR_ACC, VAL_KNN_ACC, KNN_ACC)
EPOCHS, SECONDS = "epochs", "seconds"  # what ``Trainer.fit`` adds

# ---------------------------------------------------------------- once per trial
MI_NATS = "mi_nats"  # the view MI, I(v1; v2)
MI_CAP_NATS = "mi_cap_nats"  # the most the MI estimator can show (log of its batch)
MI_CACHED = "mi_cached"  # 1.0 when the MI was read from the cache
LABEL_MI_NATS = "label_mi_nats"  # I(v; y) >= H(y) - CE of one view
LABEL_ENTROPY_NATS = "label_entropy_nats"  # H(y)
FLOOR_METRICS = tuple(floor_metric(m) for m in (VAL_KNN_ACC, VAL_LINEAR_ACC, KNN_ACC, LINEAR_ACC))
IMAGE_COUNTS = tuple(image_count(s) for s in ("train", "val", "test"))

# What the search logs: per epoch (step = epoch), the final evaluation, and once per trial.
EPOCH_METRICS = (TRAIN_LOSS, VAL_KNN_ACC, RING_LOWER, RING_UPPER, IMGS_PER_S, DIVERGED)
FINAL_METRICS = (VAL_KNN_ACC, VAL_LINEAR_ACC, KNN_ACC, LINEAR_ACC, MI_NATS, MI_CAP_NATS,
                 LABEL_MI_NATS, LABEL_ENTROPY_NATS, *FLOOR_METRICS, DIVERGED)
ONCE_METRICS = (MI_NATS, MI_CAP_NATS, MI_CACHED, LABEL_MI_NATS, LABEL_ENTROPY_NATS, *FLOOR_METRICS, *IMAGE_COUNTS)


class EpochResult(TypedDict, total=False):
    """What ``Trainer.train_epoch`` returns (``val_knn_acc`` only with ``knn_every_epoch`` and no divergence)."""

    epoch: float
    train_loss: float
    imgs_per_s: float
    ring_lower: float
    ring_upper: float
    diverged: float
    val_knn_acc: float


class Evaluation(TypedDict, total=False):
    """What ``Trainer.evaluate`` returns: both probes on validation and test, and one linear probe
    per known factor under :func:`factor_probe`'s names (keys a TypedDict cannot list)."""

    val_knn_acc: float
    knn_acc: float
    val_linear_acc: float
    linear_acc: float


class FitResult(Evaluation, total=False):
    """What ``Trainer.fit`` returns: the last epoch's loss and speed, then the evaluation (absent
    when the training diverged), the epochs trained and the seconds it took."""

    train_loss: float
    imgs_per_s: float
    diverged: float
    epochs: int
    seconds: float
