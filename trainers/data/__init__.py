"""Datasets as uint8 tensors, loaded once and kept on the training device.

A batch is then an index gather (``train_x[idx]``), not a DataLoader: on a GPU the whole of
CIFAR-10 is 150 MB, and views are made on the device (``trainers/pairs``). ``load_data`` is the
one entry point: it reads the files (``files.py``), takes ``subset`` / ``test_subset``, carves the
validation split (``bundle.py``) and resizes; the rendered ``infomin_toy`` testbed (``toy.py``)
makes its own three splits.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from trainers.config import DatasetConfig
from trainers.data.bundle import DataBundle, DatasetCorrupt, DatasetError, DatasetMissing, carve_validation
from trainers.data.files import load_cifar, load_fashion_mnist, load_image_folder, load_stl10
from trainers.data.synthetic import make_synthetic
from trainers.data.toy import load_infomin_toy

__all__ = ["DataBundle", "DatasetCorrupt", "DatasetError", "DatasetMissing", "load_data"]

READERS = {
    "fashion_mnist": load_fashion_mnist,
    "cifar10": load_cifar,
    "cifar100": load_cifar,
    "stl10": load_stl10,
    "image_folder": load_image_folder,
    "synthetic": make_synthetic,
}


def _resize(x: Tensor, size: int | None) -> Tensor:
    if size is None or x.shape[-1] == size:
        return x
    out = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def _tensor(x: np.ndarray, size: int | None) -> Tensor:
    if x.ndim == 3:  # grayscale [N, H, W]
        x = x[:, None]
    return _resize(torch.from_numpy(np.ascontiguousarray(x)), size)


def load_data(cfg: DatasetConfig) -> DataBundle:
    """The dataset as CPU uint8 tensors [N, C, H, W] with its validation split; move with ``.to(device)``.

    Raises DatasetMissing / DatasetCorrupt (both DatasetError) with the file and the remedy.
    """
    if cfg.name == "infomin_toy":
        return load_infomin_toy(cfg)
    train_x, train_y, test_x, test_y = READERS[cfg.name](cfg)
    if cfg.subset is not None:
        train_x, train_y = train_x[: cfg.subset], train_y[: cfg.subset]
    if cfg.test_subset is not None:
        test_x, test_y = test_x[: cfg.test_subset], test_y[: cfg.test_subset]
    num_classes = cfg.num_classes if cfg.name == "synthetic" else int(max(train_y.max(), test_y.max()) + 1)
    x, y = _tensor(train_x, cfg.image_size), torch.from_numpy(np.asarray(train_y, dtype=np.int64))
    try:
        train_x, train_y, val_x, val_y = carve_validation(x, y, cfg.val_count(len(x)), cfg.val_seed)
    except ValueError as err:
        raise DatasetError(str(err)) from None
    return DataBundle(
        train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y,
        test_x=_tensor(test_x, cfg.image_size), test_y=torch.from_numpy(np.asarray(test_y, dtype=np.int64)),
        name=cfg.name, num_classes=num_classes,
    )
