"""Frozen-feature evaluation: weighted kNN and a linear probe, one fixed protocol each.

kNN (Wu et al. 2018): cosine similarity to the training features, the k nearest vote with
weight exp(sim / t); k=200, t=0.07 by default. It needs no training, so it is cheap enough to
monitor every epoch (on a subset) and is what early stopping watches.

Linear probe (the number the papers report): features of the un-augmented images computed once
with the encoder frozen, standardised with the training mean and std, then a linear classifier
trained with Adam (lr ``linear_lr``, batch 256, cosine decay to 0) for ``linear_epochs`` epochs,
with its own fixed seed; accuracy on each split it is given (validation and test). Fixed, so
accuracies are comparable across trials: the probe is a measuring instrument, like the MI critic.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.models import Encoder


@torch.no_grad()
def extract_features(
    encoder: Encoder, images: Tensor, batch_size: int = 1024, transform: Callable[[Tensor], Tensor] | None = None
) -> Tensor:
    """Backbone features of uint8 images [N,C,H,W] (no augmentation), float32 [N, D].

    ``transform`` maps the float images in [0, 1] to what the encoder was trained on (a pair
    source's ``eval_view``, e.g. a colour space); default: the images as they are."""
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(device).float().div_(255)
        if transform is not None:
            x = transform(x)
        if encoder.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out.append(encoder.features(x).float())
    encoder.train(was_training)
    return torch.cat(out)


@torch.no_grad()
def knn_predict(
    train_f: Tensor, train_y: Tensor, test_f: Tensor, num_classes: int, k: int = 200, t: float = 0.07, chunk: int = 1024
) -> Tensor:
    """Weighted kNN class predictions for ``test_f`` (features are L2-normalised here)."""
    train_f = F.normalize(train_f, dim=1)
    test_f = F.normalize(test_f, dim=1)
    k = min(k, train_f.shape[0])
    preds = []
    for start in range(0, test_f.shape[0], chunk):
        sim = test_f[start : start + chunk] @ train_f.T
        top_sim, top_idx = sim.topk(k, dim=1)
        votes = torch.zeros(sim.shape[0], num_classes, device=sim.device)
        votes.scatter_add_(1, train_y[top_idx], (top_sim / t).exp())
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds)


def knn_accuracy(train_f, train_y, test_f, test_y, num_classes: int, k: int = 200, t: float = 0.07) -> float:
    return (knn_predict(train_f, train_y, test_f, num_classes, k, t) == test_y).float().mean().item()


def linear_probe(
    train_f: Tensor,
    train_y: Tensor,
    evals: dict[str, tuple[Tensor, Tensor]],
    epochs: int = 30,
    lr: float = 1e-2,
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, float]:
    """Accuracy of one linear classifier on frozen, standardised features, for each named split."""
    num_classes = int(max([int(train_y.max())] + [int(y.max()) for _, y in evals.values()])) + 1
    mean, std = train_f.mean(0), train_f.std(0) + 1e-6
    xtr = (train_f - mean) / std
    with torch.random.fork_rng(devices=[xtr.device] if xtr.device.type == "cuda" else []):
        torch.manual_seed(seed)
        clf = nn.Linear(xtr.shape[1], num_classes).to(xtr.device)
        opt = torch.optim.Adam(clf.parameters(), lr=lr)
        n = xtr.shape[0]
        steps = epochs * math.ceil(n / batch_size)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
        with torch.enable_grad():
            for _ in range(epochs):
                perm = torch.randperm(n, device=xtr.device)
                for start in range(0, n, batch_size):
                    idx = perm[start : start + batch_size]
                    loss = F.cross_entropy(clf(xtr[idx]), train_y[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
        with torch.no_grad():
            return {name: (clf((f - mean) / std).argmax(1) == y).float().mean().item() for name, (f, y) in evals.items()}
