"""Dataset readers on small files written here in each dataset's own format."""

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from trainers.config import DatasetConfig
from trainers.data import DatasetCorrupt, DatasetMissing, load_data
from trainers.data import files as data_mod
from trainers.data.bundle import carve_validation


def write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def make_fmnist(root: Path, n_train=30, n_test=10) -> tuple[np.ndarray, np.ndarray]:
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, n_train, dtype=np.uint8)
    write_idx(raw / "train-images-idx3-ubyte.gz", x)
    write_idx(raw / "train-labels-idx1-ubyte.gz", y)
    write_idx(raw / "t10k-images-idx3-ubyte.gz", x[:n_test])
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", y[:n_test])
    return x, y


def test_fashion_mnist_from_root_in_torchvision_layout(tmp_path):
    x, y = make_fmnist(tmp_path)
    d = load_data(DatasetConfig(name="fashion_mnist", root=str(tmp_path), subset=20, val_size=5))
    assert d.train_x.dtype == torch.uint8 and d.train_x.shape == (15, 1, 28, 28) and d.val_x.shape == (5, 1, 28, 28)
    tx, ty, vx, _ = carve_validation(torch.from_numpy(x[:20])[:, None], torch.from_numpy(y[:20].astype(np.int64)), 5, 0)
    assert torch.equal(d.train_x, tx) and torch.equal(d.val_x, vx) and torch.equal(d.train_y, ty)
    assert d.test_x.shape == (10, 1, 28, 28) and d.channels == 1


def test_validation_split_is_fixed_disjoint_and_keeps_the_training_order():
    x = torch.arange(50).view(50, 1, 1, 1).to(torch.uint8)
    y = torch.arange(50)
    tx, ty, vx, vy = carve_validation(x, y, 10, seed=7)
    assert len(vx) == 10 and len(tx) == 40 and torch.equal(vx.flatten().long(), vy)
    assert set(ty.tolist()).isdisjoint(vy.tolist()) and set(ty.tolist()) | set(vy.tolist()) == set(range(50))
    assert ty.tolist() == sorted(ty.tolist())  # the rest keeps its order
    assert torch.equal(carve_validation(x, y, 10, seed=7)[3], vy)  # the same for every trial
    assert not torch.equal(carve_validation(x, y, 10, seed=8)[3], vy)
    assert DatasetConfig(name="fashion_mnist").val_count(60000) == 5000  # default: 10%, at most 5,000
    assert DatasetConfig(name="fashion_mnist").val_count(9000) == 900


def test_truncated_idx_and_foreign_pickles_are_corrupt_not_tracebacks(tmp_path):
    path = tmp_path / "x.gz"
    header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in (4, 28, 28))
    with gzip.open(path, "wb") as f:
        f.write(header + bytes(100))
    with pytest.raises(DatasetCorrupt, match="truncated"):
        data_mod.read_idx(path)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()

    class Planted:  # a pickle that would run code when loaded
        def __reduce__(self):
            return (print, ("pwned",))

    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": Planted(), b"labels": [0]}, f)
    with pytest.raises(DatasetCorrupt, match="refusing to load"):
        load_data(DatasetConfig(name="cifar10", root=str(tmp_path)))


def test_missing_fashion_mnist_names_every_place(tmp_path, monkeypatch):
    monkeypatch.setattr(data_mod, "SYSTEM_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(DatasetMissing) as err:
        load_data(DatasetConfig(name="fashion_mnist", root=str(tmp_path / "r")))
    msg = str(err.value)
    assert str(tmp_path / "r" / "FashionMNIST" / "raw") in msg and str(tmp_path / "nowhere") in msg
    assert "dataset-fashion-mnist" in msg and "download" in msg


def test_cifar10_and_100_pickles(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        arr = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, 4).tolist()
        batches.append((arr, labels))
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": arr, b"labels": labels}, f)
    d = load_data(DatasetConfig(name="cifar10", root=str(tmp_path), val_size=1, val_seed=0))
    assert d.train_x.shape == (19, 3, 32, 32) and d.val_x.shape == (1, 3, 32, 32) and d.test_x.shape == (4, 3, 32, 32)
    everything = np.concatenate([b[0] for b in batches[:5]]).reshape(20, 3, 32, 32)
    rows = {arr.tobytes() for arr in everything}
    assert {x.numpy().tobytes() for x in torch.cat([d.train_x, d.val_x])} == rows
    assert d.test_y.tolist() == batches[5][1]

    f100 = tmp_path / "cifar-100-python"
    f100.mkdir()
    for name, n in (("train", 6), ("test", 3)):
        with open(f100 / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"fine_labels": list(range(n))}, f)
    d = load_data(DatasetConfig(name="cifar100", root=str(tmp_path), val_size=1))
    assert d.train_x.shape == (5, 3, 32, 32) and d.test_y.tolist() == [0, 1, 2]


def test_cifar_missing_without_download(tmp_path):
    with pytest.raises(DatasetMissing, match="download"):
        load_data(DatasetConfig(name="cifar10", root=str(tmp_path)))


def test_stl10_binary_is_transposed_and_zero_based(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    img = np.zeros((2, 3, 96, 96), dtype=np.uint8)
    img[0, 0, 5, 7] = 200  # channel 0, row 5, column 7
    img.transpose(0, 1, 3, 2).tofile(folder / "train_X.bin")  # the file stores columns first
    np.array([1, 10], dtype=np.uint8).tofile(folder / "train_y.bin")
    img.transpose(0, 1, 3, 2).tofile(folder / "test_X.bin")
    np.array([2, 3], dtype=np.uint8).tofile(folder / "test_y.bin")
    d = load_data(DatasetConfig(name="stl10", root=str(tmp_path), image_size=32, val_size=1))
    assert d.train_x.shape == (1, 3, 32, 32) and sorted(d.train_y.tolist() + d.val_y.tolist()) == [0, 9]
    full = data_mod.read_stl10(folder, "train")[0]
    assert full[0, 0, 5, 7] == 200


def test_image_folder(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for cls, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (40, 30), colour).save(tmp_path / split / cls / f"{i}.png")
    d = load_data(DatasetConfig(name="image_folder", root=str(tmp_path), image_size=16, val_size=1))
    assert d.train_x.shape == (3, 3, 16, 16) and d.test_y.tolist() == [0, 0, 1, 1]
    for x, label in zip(torch.cat([d.train_x, d.val_x]), torch.cat([d.train_y, d.val_y])):
        assert int(x[0 if label == 0 else 2].float().mean()) == 255  # red cats, blue dogs


def test_synthetic_is_seeded_and_sized():
    cfg = DatasetConfig(name="synthetic", subset=64, test_subset=32, channels=3, image_size=16)
    a, b = load_data(cfg), load_data(cfg)
    assert torch.equal(a.train_x, b.train_x) and a.train_x.shape == (58, 3, 16, 16) and a.val_x.shape[0] == 6
    assert a.num_classes == 10 and a.test_x.shape[0] == 32


def test_real_fashion_mnist_when_installed():
    if not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian package dataset-fashion-mnist not installed")
    d = load_data(DatasetConfig(name="fashion_mnist", root="/nonexistent"))
    assert d.train_x.shape == (55000, 1, 28, 28) and d.val_x.shape == (5000, 1, 28, 28)
    assert d.test_x.shape == (10000, 1, 28, 28)
    assert sorted(d.train_y.unique().tolist()) == list(range(10))
