"""What every part of the GPU check shares: its sizes, its data, its clock and how it times a call.

Data comes only from the files the check is given: the Fashion-MNIST IDX files (``--data``) and,
when given, CIFAR-10's python batches (``--cifar``). Without CIFAR the 3-channel sources run on
*tinted* Fashion-MNIST: each image's grey level blends a per-image background colour into a
per-image foreground colour, so the colour channels differ and carry content (the ``channels``
source's L and ab views are then not trivially constant). The JSON names which data each source
used.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from trainers.config import DatasetConfig
from trainers.data import DataBundle, load_data
from trainers.data.files import FMNIST_FILES


class BadInput(Exception):
    """A refusal before anything starts (exit 2): the message names the argument and the value."""


@dataclass(frozen=True)
class Sizes:
    """Every size of one run: the GPU's, or ``--tiny``'s for a CPU dry run in seconds."""

    backbone: str
    width: int
    image_size: int
    batch: int  # throughput sections
    n_images: int  # training images the view sources and the sharing processes index
    warmup: int
    reps: int
    learn_steps: int
    learn_batch: int
    share_procs: tuple[int, ...]
    share_seconds: float
    ring_batch: int
    ring_subset: int | None  # None: all 60,000 training images (5,000 of them validation)
    ring_test_subset: int | None
    ring_max_steps: int | None
    ring_linear_epochs: int
    ring_overhead_s: float  # start, data, evaluation of one ring run: time that trains nothing

    def as_dict(self) -> dict:
        return asdict(self)


GPU = Sizes(backbone="resnet18_cifar", width=64, image_size=32, batch=512, n_images=8192, warmup=10, reps=20,
            learn_steps=300, learn_batch=256, share_procs=(1, 2, 4), share_seconds=6.0, ring_batch=256,
            ring_subset=None, ring_test_subset=None, ring_max_steps=None, ring_linear_epochs=30, ring_overhead_s=45.0)
TINY = Sizes(backbone="convnet", width=8, image_size=16, batch=32, n_images=512, warmup=1, reps=3,
             learn_steps=40, learn_batch=32, share_procs=(1, 2, 4), share_seconds=1.0, ring_batch=32,
             ring_subset=512, ring_test_subset=128, ring_max_steps=6, ring_linear_epochs=2, ring_overhead_s=0.0)


def check_fashion_mnist(folder: Path) -> list[Path]:
    """The four IDX files in ``folder`` (gzipped or not), or BadInput naming each one missing."""
    found, missing = [], []
    for split in ("train", "test"):
        for stem in FMNIST_FILES[split]:
            hits = [folder / n for n in (stem + ".gz", stem) if (folder / n).is_file()]
            (found.append(hits[0]) if hits else missing.append(stem))
    if missing:
        raise BadInput(f"--data: {folder} lacks the Fashion-MNIST file(s) {', '.join(missing)} (.gz or not); "
                       "give the folder that holds all four IDX files")
    return found


def fashion_mnist_root(folder: Path, work: Path) -> Path:
    """A ``dataset.root`` whose ``FashionMNIST/raw`` links to exactly the given files, so the
    trainers' reader reads them (and nothing else) without a change to its search places."""
    files = check_fashion_mnist(folder)
    raw = work / "fmnist" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for f in files:
        (raw / f.name).symlink_to(f.resolve())
    return work / "fmnist"


def dataset_section(name: str, root: Path, sizes: Sizes, subset: int | None, test_subset: int | None) -> dict:
    val = None if subset is None else max(16, subset // 8)
    section = {"name": name, "root": str(root), "image_size": sizes.image_size}
    for key, value in (("subset", subset), ("test_subset", test_subset), ("val_size", val)):
        if value is not None:
            section[key] = value
    return section


def load_bundle(section: dict) -> DataBundle:
    return load_data(DatasetConfig.model_validate(section))


def tinted(gray: DataBundle, seed: int = 0) -> DataBundle:
    """3-channel images from 1-channel ones: grey level g -> (1 - g) * background + g * foreground,
    both colours drawn per image (seeded)."""
    gen = torch.Generator().manual_seed(seed)

    def tint(x: torch.Tensor) -> torch.Tensor:
        g = x.float().div(255)
        bg, fg = (torch.rand(x.shape[0], 3, 1, 1, generator=gen) for _ in range(2))
        return ((1 - g) * bg + g * fg).mul(255).round().clamp(0, 255).to(torch.uint8)

    return DataBundle(tint(gray.train_x), gray.train_y, tint(gray.val_x), gray.val_y, tint(gray.test_x), gray.test_y,
                      name="fashion_mnist_tinted", num_classes=gray.num_classes)


def save_bundle(bundle: DataBundle, path: Path) -> None:
    """For child processes: tensors, strings, ints and dicts of them load with ``weights_only=True``."""
    torch.save({f.name: getattr(bundle, f.name) for f in fields(bundle)}, path)


def read_bundle(path: Path) -> DataBundle:
    return DataBundle(**torch.load(path, weights_only=True))


# --------------------------------------------------------------------------- time


class Clock:
    """The run's budget: every section asks how much is left before it starts something."""

    def __init__(self, seconds: float):
        self.start, self.seconds = time.perf_counter(), seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], object], device: torch.device, warmup: int, reps: int, inner: int = 1) -> float:
    """Median seconds per call of ``fn`` over ``reps`` blocks of ``inner`` calls, after ``warmup``."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        sync(device)
        times.append((time.perf_counter() - start) / inner)
    return statistics.median(times)


def first_call(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds of one call (for a compiled function: its compilation)."""
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


# --------------------------------------------------------------------------- records

MEASUREMENT_KEYS = ("status", "reason", "seconds", "imgs_per_s", "compile_seconds", "share_of_model_step")


def measured(seconds: float, batch: int, compile_seconds: float | None = None, model_seconds: float | None = None
             ) -> dict:
    """One timing: per call, images per second (``batch`` images a call), and for a full step
    ``share_of_model_step`` = model-only time / full-step time (1.0: the views cost nothing)."""
    return {"status": "ok", "reason": None, "seconds": seconds, "imgs_per_s": batch / seconds,
            "compile_seconds": compile_seconds,
            "share_of_model_step": None if model_seconds is None else model_seconds / seconds}


def not_measured(status: str, reason: str) -> dict:
    """``not_applicable`` (cannot exist here), ``skipped`` (budget or --tiny) or ``error``."""
    return {"status": status, "reason": reason, **dict.fromkeys(MEASUREMENT_KEYS[2:])}
