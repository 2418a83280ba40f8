"""Dataset files: the readers, each parsing its format itself, and where each dataset is looked for.

Readers parse the files themselves (IDX for Fashion-MNIST, the pickled batches of CIFAR, the
binary STL-10 files, an image folder); torchvision is used only to *download* them. That keeps
the loading code testable on small files a test writes. A missing dataset is ``DatasetMissing``
naming every place looked and the remedy, never a substitute; a file that is there but
unreadable (truncated, not the format) is ``DatasetCorrupt`` naming the file and the remedy.

CIFAR's batches are Python pickles. They are read with an unpickler that only builds the plain
containers and numpy arrays those files hold, so a planted pickle cannot run code.
"""

from __future__ import annotations

import gzip
import pickle
import zlib
from pathlib import Path

import numpy as np

from trainers.config import DatasetConfig
from trainers.data.bundle import DatasetCorrupt, DatasetMissing

SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # train_x, train_y, test_x, test_y


# --------------------------------------------------------------------------- file readers


def read_idx(path: Path) -> np.ndarray:
    """IDX format (MNIST family), gzipped or not; a truncated or foreign file is DatasetCorrupt."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetCorrupt(f"{path}: cannot be read ({err}); {_refetch(path)}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise DatasetCorrupt(f"{path}: not an IDX file of unsigned bytes; {_refetch(path)}")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if len(raw) != expected:
        raise DatasetCorrupt(f"{path}: {len(raw):,} bytes where its header promises {expected:,} (truncated?); "
                             f"{_refetch(path)}")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()


def _refetch(path: Path) -> str:
    if SYSTEM_FASHION_MNIST in path.parents:
        return "reinstall it: apt-get install --reinstall dataset-fashion-mnist"
    return "delete it and download it again (dataset.download: true)"


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


def load_fashion_mnist(cfg: DatasetConfig) -> Arrays:
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
        path = folder / name
        try:
            with open(path, "rb") as f:
                entry = _ArraysOnly(f, encoding="bytes").load()
            xs.append(np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(entry[label_key], dtype=np.int64))
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError) as err:
            raise DatasetCorrupt(f"{path}: not a CIFAR batch ({type(err).__name__}: {err}); {_refetch(path)}") from None
    return np.concatenate(xs), np.concatenate(ys)


class _ArraysOnly(pickle.Unpickler):
    """Builds only what CIFAR's batches hold: dicts, lists, bytes, strings and numpy arrays."""

    ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    })

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")
        return super().find_class(module, name)


def load_cifar(cfg: DatasetConfig) -> Arrays:
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
    x = np.fromfile(folder / f"{split}_X.bin", dtype=np.uint8)
    y = np.fromfile(folder / f"{split}_y.bin", dtype=np.uint8).astype(np.int64) - 1  # labels are 1-based
    if x.size != y.size * 3 * 96 * 96 or y.size == 0:
        raise DatasetCorrupt(f"{folder}/{split}_X.bin: {x.size:,} bytes for {y.size:,} labels (expected "
                             f"{y.size * 3 * 96 * 96:,}); {_refetch(folder)}")
    x = x.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)
    return np.ascontiguousarray(x), y


def load_stl10(cfg: DatasetConfig) -> Arrays:
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


def load_image_folder(cfg: DatasetConfig) -> Arrays:
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
                try:
                    img = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
                except (OSError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
                    raise DatasetCorrupt(f"{path}: not a readable image ({err}); remove it from "
                                         f"{root / split / cls} or replace it") from None
                xs.append(np.asarray(img).transpose(2, 0, 1))
                ys.append(label)
        if not xs:
            raise DatasetMissing(f"dataset.name: image_folder found no images under {root / split}")
        return np.stack(xs), np.asarray(ys, dtype=np.int64)

    return (*read("train"), *read("test"))
