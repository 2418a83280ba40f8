"""A procedural dataset for tests and dry runs: learnable, seeded, tiny, no files."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from trainers.config import DatasetConfig
from trainers.data.files import Arrays


def make_synthetic(cfg: DatasetConfig, n_train: int = 1024, n_test: int = 256) -> Arrays:
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


