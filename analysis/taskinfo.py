"""Task information of a view: a lower bound on I(v; y), the label information one view keeps.

Why: the view MI I(v1; v2) says how much two views share, not whether what they share is what
the task needs. InfoMin's argument (Tian et al., 2020, Prop. 3.1) is about both: shrink
I(v1; v2) while I(v; y) stays at I(x; y). A view axis can only show a falling limb once its
views start to lose I(v; y), so the search measures it next to the view MI.

The bound: for any classifier q(y | v), the cross-entropy CE = E[-log q(y | v)] on held-out
pairs is at least H(y | v), so I(v; y) = H(y) - H(y | v) >= H(y) - CE. The classifier is a small
convnet (the MI critic's, ``analysis/mi.py``), trained with Adam on single views of the
training images -- one fresh view per image per step, drawn as a pair's first view -- and
scored on one view of every validation image. H(y) is the plug-in entropy of the validation
labels. The estimate can fall slightly below 0 when the views keep nothing a classifier can
use (its held-out CE then exceeds H(y) a little). It reads training and validation labels
only and selects nothing. The protocol is the spec's ``mi.label_*`` keys (``MIConfig``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from analysis.mi import _convnet, _mlp, _rng_devices
from trainers.config import MIConfig


@dataclass(frozen=True)
class TaskInfo:
    nats: float  # H(y) - CE: the lower bound on I(v; y)
    entropy_nats: float  # H(y) of the validation labels
    ce_nats: float  # the classifier's held-out cross-entropy
    accuracy: float  # the classifier's held-out accuracy, for reading the bound
    steps: int


def label_entropy(y: Tensor, num_classes: int) -> float:
    """Plug-in entropy of integer labels, in nats."""
    p = torch.bincount(y.long().flatten(), minlength=num_classes).double()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log()).sum())


def _classifier(sample: Tensor, protocol: MIConfig, num_classes: int) -> nn.Module:
    if sample.dim() == 4:
        return _convnet(sample.shape[1], protocol.hidden, num_classes)
    if sample.dim() == 2:
        return _mlp(sample.shape[1], protocol.hidden, num_classes)
    raise ValueError(f"expected vectors [N, d] or images [N, C, H, W], got shape {tuple(sample.shape)}")


def _views(source: Any, images: Tensor, chunk: int = 1024) -> Tensor:
    with torch.no_grad():
        return torch.cat([source.first_view(images[i : i + chunk]).float() for i in range(0, images.shape[0], chunk)])


def task_information(
    source: Any,
    train_y: Tensor,
    val_x: Tensor,
    val_y: Tensor,
    num_classes: int,
    protocol: MIConfig | None = None,
    device: torch.device | str | None = None,
) -> TaskInfo:
    """The lower bound H(y) - CE on I(v; y) for the first view of ``source`` (a ``PairSource``).

    ``source.images`` are the training images, labelled ``train_y``; ``val_x`` / ``val_y`` the
    validation images and labels. Seeded from ``protocol.seed`` inside a forked RNG, so the
    caller's random state (a trainer's) is untouched and the same inputs give the same value.
    """
    protocol = protocol or MIConfig()
    images = source.images
    device = torch.device(device) if device is not None else images.device
    n, k = images.shape[0], min(protocol.label_batch_size, images.shape[0])
    train_y = train_y.to(images.device)
    with torch.random.fork_rng(devices=_rng_devices(images.device)):
        torch.manual_seed(protocol.seed)
        first = source.first_view(images[torch.randperm(n, device=images.device)[:k]]).float()
        dims = [d for d in range(first.dim()) if d != 1]
        mean, std = first.mean(dim=dims, keepdim=True).to(device), first.std(dim=dims, keepdim=True).clamp_min(1e-6).to(device)
        clf = _classifier(first, protocol, num_classes).to(device)
        opt = torch.optim.Adam(clf.parameters(), lr=protocol.label_lr)
        per_epoch = max(1, n // k)
        for step in range(protocol.label_steps):
            if step % per_epoch == 0:
                perm = torch.randperm(n, device=images.device)
            idx = perm[(step % per_epoch) * k : (step % per_epoch + 1) * k]
            with torch.no_grad():
                v = source.first_view(images[idx]).float().to(device)
            loss = F.cross_entropy(clf((v - mean) / std), train_y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        v_val = _views(source, val_x.to(images.device)).to(device)
        with torch.no_grad():
            logits = torch.cat([clf((v_val[i : i + 1024] - mean) / std) for i in range(0, v_val.shape[0], 1024)])
    y = val_y.to(device).long()
    ce = float(F.cross_entropy(logits.double(), y))
    h = label_entropy(y, num_classes)
    return TaskInfo(nats=h - ce, entropy_nats=h, ce_nats=ce, accuracy=float((logits.argmax(1) == y).double().mean()),
                    steps=protocol.label_steps)

