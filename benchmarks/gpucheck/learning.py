"""Does a short training on this device learn? A few hundred SimCLR steps on Fashion-MNIST.

Two signs, both read on this run alone: the training loss falls (the mean of the last steps
against the mean of the first ones), and the validation kNN accuracy after training is above
chance (1 / classes). The kNN of the untrained encoder is reported too: random convolutional
features are far above chance on Fashion-MNIST already, so "improved over init" is the
stronger sign, reported but not required. Validation images only; the test split is not read.
"""

from __future__ import annotations

import time

import torch

from benchmarks.gpucheck.common import Sizes, sync
from trainers.data import DataBundle
from trainers.train import Trainer
from trainers.validation import validate_train


def measure(data: DataBundle, sizes: Sizes, device: torch.device) -> dict:
    cfg = validate_train({
        "dataset": {"name": "fashion_mnist", "image_size": sizes.image_size},
        "model": {"backbone": sizes.backbone, "width": sizes.width},
        "trainer": {"batch_size": sizes.learn_batch, "device": device.type, "seed": 0},
        "evaluation": {"knn_every_epoch": False, "monitor_train": 5000, "monitor_val": 1000},
    })
    trainer = Trainer(cfg, data)
    knn_before = trainer.monitor_knn()
    n, window = trainer.data.train_x.shape[0], max(5, sizes.learn_steps // 10)
    gen = torch.Generator(device=device).manual_seed(0)
    losses = []
    start = time.perf_counter()
    for _ in range(sizes.learn_steps):
        losses.append(trainer.step(torch.randint(0, n, (sizes.learn_batch,), device=device, generator=gen)))
    sync(device)
    seconds = time.perf_counter() - start
    curve = torch.stack(losses).float().cpu()
    knn_after = trainer.monitor_knn()
    first, last = curve[:window].mean().item(), curve[-window:].mean().item()
    chance = 1.0 / data.num_classes
    return {
        "steps": sizes.learn_steps, "batch": sizes.learn_batch, "backbone": sizes.backbone, "seconds": seconds,
        "loss_first": first, "loss_last": last, "window": window, "loss_fell": last < first,
        "val_knn_before": knn_before, "val_knn_after": knn_after, "chance": chance,
        "knn_above_chance": knn_after > chance, "knn_improved": knn_after > knn_before,
        "n_val": int(min(cfg.evaluation.monitor_val, trainer.data.val_x.shape[0])),
        "passed": last < first and knn_after > chance,
    }
