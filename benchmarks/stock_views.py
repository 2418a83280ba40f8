"""The stock Kornia SimCLR pipeline: the throughput benchmark's baseline, not used in training.

``benchmarks/throughput.py`` times it against the project's pair source at the same settings
(``trainers/views.py`` says why training does not use it).
"""

from __future__ import annotations

import kornia.augmentation as K
import torch

from trainers.config import ViewsConfig
from trainers.views import blur_kernel_size, effective_params


def stock_kornia_pipeline(cfg: ViewsConfig, channels: int, size: int) -> torch.nn.Module:
    """The stock Kornia SimCLR pipeline at the same effective settings: the benchmark baseline.

    Takes float [B,C,H,W] in [0,1] and returns one view of size ``size``. Ops with probability
    (or magnitude) 0 are left out, as the fast pipeline skips them.
    """
    p = effective_params(cfg, channels)
    ops: list[torch.nn.Module] = [
        K.RandomResizedCrop(
            (size, size), scale=(p.crop_scale_min, p.crop_scale_max), ratio=(p.crop_ratio_min, p.crop_ratio_max)
        )
    ]
    if p.flip_p > 0:
        ops.append(K.RandomHorizontalFlip(p=p.flip_p))
    if p.jitter_p > 0:
        ops.append(K.ColorJitter(p.brightness, p.contrast, p.saturation, p.hue, p=p.jitter_p))
    if channels == 3 and p.grayscale_p > 0:
        ops.append(K.RandomGrayscale(p=p.grayscale_p))
    if p.blur_p > 0:
        k = blur_kernel_size(size, p.blur_sigma_max)
        ops.append(K.RandomGaussianBlur(k, (p.blur_sigma_min, p.blur_sigma_max), p=p.blur_p))
    if p.solarize_p > 0:
        t = p.solarize_threshold
        ops.append(K.RandomSolarize(thresholds=(t, t), additions=0.0, p=p.solarize_p))
    if p.rotation_degrees > 0:
        ops.append(K.RandomRotation(p.rotation_degrees, p=1.0))
    return K.AugmentationSequential(*ops)
