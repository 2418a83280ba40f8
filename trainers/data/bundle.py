"""A dataset as uint8 tensors on one device: training, validation and test images with labels.

Why a validation split: everything that *selects* (the per-epoch metric a search and ASHA
compare, the best trial, a benchmark's settings) must read images the reported numbers do not
come from. ``carve_validation`` takes ``val_size`` of the training images out with a fixed seed,
the same for every trial of a search; they never train the encoder or the linear probe.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor


class DatasetError(Exception):
    """The dataset cannot be used as configured; the message says where and what to do."""


class DatasetMissing(DatasetError):
    """The dataset is not where we looked. The message lists the places and the remedy."""


class DatasetCorrupt(DatasetError):
    """A dataset file is there but unreadable (truncated, not the expected format)."""


@dataclass
class DataBundle:
    train_x: Tensor  # uint8 [N, C, H, W]
    train_y: Tensor  # int64 [N]
    val_x: Tensor
    val_y: Tensor
    test_x: Tensor
    test_y: Tensor
    name: str
    num_classes: int
    # Datasets with known generative factors (infomin_toy): factor -> (train, val, test) labels,
    # plus whatever their pair source needs (indexed like train_x), on the same device.
    factors: dict[str, tuple[Tensor, Tensor, Tensor]] | None = None
    extras: dict[str, Tensor] | None = None

    @property
    def channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])

    def sizes(self) -> dict[str, int]:
        """Image counts per split, as the trial logs them (the report's noise floor needs n_test)."""
        return {f"n_{s}_images": int(getattr(self, f"{s}_x").shape[0]) for s in ("train", "val", "test")}

    def to(self, device: torch.device | str) -> DataBundle:
        tensors = {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), Tensor)}
        move = {k: v.to(device) for k, v in tensors.items()}
        if self.factors is not None:
            move["factors"] = {k: tuple(t.to(device) for t in v) for k, v in self.factors.items()}
        if self.extras is not None:
            move["extras"] = {k: v.to(device) for k, v in self.extras.items()}
        return replace(self, **move)


def carve_validation(
    train_x: Tensor, train_y: Tensor, n_val: int, seed: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(train_x, train_y, val_x, val_y): ``n_val`` images drawn with ``seed``; the rest keep their order."""
    n = train_x.shape[0]
    if not 0 < n_val < n:
        raise ValueError(f"dataset.val_size must be between 1 and {n - 1} (there are {n} training images), got {n_val}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx = perm[:n_val].sort().values
    keep = torch.ones(n, dtype=torch.bool)
    keep[val_idx] = False
    return train_x[keep], train_y[keep], train_x[val_idx], train_y[val_idx]
