"""Datasets as uint8 tensors, loaded once and kept on the training device.

A batch is then an index gather (``train_x[idx]``), not a DataLoader: on a GPU the whole of
CIFAR-10 is 150 MB, and views are made on the device (``views.py``).

Readers parse the files themselves (IDX for Fashion-MNIST, the pickled batches of CIFAR, the
binary STL-10 files); torchvision is used only to *download* them. That keeps the loading code
testable on small files a test writes, without torchvision's checksums. A missing dataset is an
error naming every place looked and the remedy, never a substitute.
"""

from __future__ import annotations

import gzip
import pickle
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from trainers.config import DatasetConfig

SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DatasetMissing(Exception):
    """The dataset is not where we looked. The message lists the places and the remedy."""


@dataclass
class DataBundle:
    train_x: Tensor  # uint8 [N, C, H, W]
    train_y: Tensor  # int64 [N]
    test_x: Tensor
    test_y: Tensor
    name: str
    num_classes: int
    # Datasets with known generative factors (infomin_toy): factor -> (train labels, test labels),
    # plus whatever their pair renderer needs, kept on the same device as the images.
    factors: dict[str, tuple[Tensor, Tensor]] | None = None
    extras: dict[str, Tensor] | None = None

    @property
    def channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])

    def to(self, device: torch.device | str) -> DataBundle:
        move = {k: getattr(self, k).to(device) for k in ("train_x", "train_y", "test_x", "test_y")}
        if self.factors is not None:
            move["factors"] = {k: (a.to(device), b.to(device)) for k, (a, b) in self.factors.items()}
        if self.extras is not None:
            move["extras"] = {k: v.to(device) for k, v in self.extras.items()}
        return replace(self, **move)


# --------------------------------------------------------------------------- file readers


def read_idx(path: Path) -> np.ndarray:
    """IDX format (MNIST family), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _fmnist_from(folder: Path) -> tuple[np.ndarray, ...] | None:
    paths = [_find_idx(folder, stem) for split in ("train", "test") for stem in FMNIST_FILES[split]]
    if any(p is None for p in paths):
        return None
    return tuple(read_idx(p) for p in paths)


def load_fashion_mnist(cfg: DatasetConfig) -> tuple[np.ndarray, ...]:
    root_layout = Path(cfg.root) / "FashionMNIST" / "raw"
    places = [root_layout, SYSTEM_FASHION_MNIST]
    for place in places:
        arrays = _fmnist_from(place)
        if arrays is not None:
            return arrays
    if cfg.download:
        import torchvision

        torchvision.datasets.FashionMNIST(cfg.root, train=True, download=True)
        torchvision.datasets.FashionMNIST(cfg.root, train=False, download=True)
        arrays = _fmnist_from(root_layout)
        if arrays is not None:
            return arrays
    raise DatasetMissing(
        "dataset.name: fashion_mnist not found. Looked in:\n"
        + "".join(f"  - {p}\n" for p in places)
        + "Remedy: on Debian `apt-get install dataset-fashion-mnist`, or set `dataset.download: true` "
        "(needs internet), or put the four IDX .gz files under "
        f"{root_layout}."
    )


def read_cifar(folder: Path, train: bool, fine: bool) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10/100 python pickles -> (uint8 [N,3,32,32], labels)."""
    if fine:
        names = ["train"] if train else ["test"]
        label_key = b"fine_labels"
    else:
        names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        label_key = b"labels"
    xs, ys = [], []
    for name in names:
        with open(folder / name, "rb") as f:
            entry = pickle.load(f, encoding="bytes")
        xs.append(np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(entry[label_key], dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def load_cifar(cfg: DatasetConfig) -> tuple[np.ndarray, ...]:
    fine = cfg.name == "cifar100"
    folder = Path(cfg.root) / ("cifar-100-python" if fine else "cifar-10-batches-py")
    needed = ["train", "test"] if fine else [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if not all((folder / n).is_file() for n in needed) and cfg.download:
        import torchvision

        cls = torchvision.datasets.CIFAR100 if fine else torchvision.datasets.CIFAR10
        cls(cfg.root, train=True, download=True)
    if not all((folder / n).is_file() for n in needed):
        raise DatasetMissing(
            f"dataset.name: {cfg.name} not found. Looked in:\n  - {folder} (for {', '.join(needed)})\n"
            "Remedy: set `dataset.download: true` (needs internet) or `dataset.root` to the folder "
            f"that holds {folder.name}/."
        )
    return (*read_cifar(folder, True, fine), *read_cifar(folder, False, fine))


def read_stl10(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """STL-10 binary files: images stored column-major per channel -> uint8 [N,3,96,96]."""
    x = np.fromfile(folder / f"{split}_X.bin", dtype=np.uint8).reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)
    y = np.fromfile(folder / f"{split}_y.bin", dtype=np.uint8).astype(np.int64) - 1  # labels are 1-based
    return np.ascontiguousarray(x), y


def load_stl10(cfg: DatasetConfig) -> tuple[np.ndarray, ...]:
    folder = Path(cfg.root) / "stl10_binary"
    needed = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"]
    if not all((folder / n).is_file() for n in needed) and cfg.download:
        import torchvision

        torchvision.datasets.STL10(cfg.root, split="train", download=True)
    if not all((folder / n).is_file() for n in needed):
        raise DatasetMissing(
            f"dataset.name: stl10 not found. Looked in:\n  - {folder} (for {', '.join(needed)})\n"
            "Remedy: set `dataset.download: true` (needs internet, 2.5 GB) or `dataset.root` to the "
            "folder that holds stl10_binary/."
        )
    return (*read_stl10(folder, "train"), *read_stl10(folder, "test"))


def load_image_folder(cfg: DatasetConfig) -> tuple[np.ndarray, ...]:
    """``root/{train,test}/<class>/*.png|jpg``; images resized to ``image_size`` (default 32)."""
    from PIL import Image

    root = Path(cfg.root)
    size = cfg.image_size or 32
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        raise DatasetMissing(
            f"dataset.name: image_folder needs {root}/train/<class>/*.png and {root}/test/<class>/*.png; "
            f"Looked in:\n  - {root / 'train'}\n  - {root / 'test'}\nRemedy: set `dataset.root` to such a folder."
        )
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not classes:
        raise DatasetMissing(f"dataset.name: image_folder found no class folders in {root / 'train'}")

    def read(split: str) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for label, cls in enumerate(classes):
            for path in sorted((root / split / cls).glob("*")):
                if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp"):
                    continue
                img = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
                xs.append(np.asarray(img).transpose(2, 0, 1))
                ys.append(label)
        if not xs:
            raise DatasetMissing(f"dataset.name: image_folder found no images under {root / split}")
        return np.stack(xs), np.asarray(ys, dtype=np.int64)

    return (*read("train"), *read("test"))


def make_synthetic(cfg: DatasetConfig, n_train: int = 1024, n_test: int = 256) -> tuple[np.ndarray, ...]:
    """Procedural, seeded, tiny: each class is a fixed random low-frequency pattern, each image that
    pattern shifted a little, scaled in contrast and with noise. Learnable, so tests can see learning."""
    size = cfg.image_size or 16
    gen = torch.Generator().manual_seed(1234)
    protos = torch.rand(cfg.num_classes, cfg.channels, 4, 4, generator=gen)
    protos = F.interpolate(protos, size=(size, size), mode="bilinear", align_corners=False)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = torch.randint(0, cfg.num_classes, (n,), generator=gen)
        x = protos[y]
        shifts = torch.randint(-2, 3, (n, 2), generator=gen)
        x = torch.stack([torch.roll(img, tuple(s.tolist()), dims=(1, 2)) for img, s in zip(x, shifts)])
        x = 0.5 + (x - 0.5) * (0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=gen))
        x = x + 0.08 * torch.randn(x.shape, generator=gen)
        return (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy(), y.numpy()

    return (*draw(cfg.subset or n_train), *draw(cfg.test_subset or n_test))


LOADERS = {
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


def load_data(cfg: DatasetConfig) -> DataBundle:
    """The dataset as CPU uint8 tensors [N, C, H, W]; move with ``.to(device)``."""
    if cfg.name == "infomin_toy":
        from trainers.toy import load_infomin_toy

        return load_infomin_toy(cfg)
    train_x, train_y, test_x, test_y = LOADERS[cfg.name](cfg)
    if train_x.ndim == 3:  # grayscale [N, H, W]
        train_x, test_x = train_x[:, None], test_x[:, None]
    if cfg.subset is not None:
        train_x, train_y = train_x[: cfg.subset], train_y[: cfg.subset]
    if cfg.test_subset is not None:
        test_x, test_y = test_x[: cfg.test_subset], test_y[: cfg.test_subset]
    num_classes = int(max(train_y.max(), test_y.max()) + 1) if cfg.name != "synthetic" else cfg.num_classes
    return DataBundle(
        train_x=_resize(torch.from_numpy(np.ascontiguousarray(train_x)), cfg.image_size),
        train_y=torch.from_numpy(np.asarray(train_y, dtype=np.int64)),
        test_x=_resize(torch.from_numpy(np.ascontiguousarray(test_x)), cfg.image_size),
        test_y=torch.from_numpy(np.asarray(test_y, dtype=np.int64)),
        name=cfg.name,
        num_classes=num_classes,
    )
