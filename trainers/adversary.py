"""The view generator's side of a training with learned views: it ascends the loss the encoder descends.

One backward pass serves both players: the contrastive loss's gradient reaches the encoder and,
through the views, the generator; the generator's gradient is then negated, so its optimiser
step *raises* the loss (a gradient-reversal step, as Viewmaker trains). With ``label_weight``
> 0 a linear head on the encoder's features of view 1 classifies the labelled images of the
batch; the head and the generator descend that loss (the generator keeps what the label needs),
while the encoder never sees its gradient, so the representation itself stays self-supervised.

Which labels exist is decided once: a fixed ``label_fraction`` of the training images (drawn from
the trainer's seed in a private generator). The other labels are never copied into this object,
and with ``label_weight: 0`` no label is copied at all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.models import Encoder
from trainers.pairs.learned import LearnedFamily

UNLABELLED = -1


def labelled_share(labels: Tensor, fraction: float, seed: int) -> Tensor:
    """``labels`` with all but a fixed ``fraction`` of them (rounded) replaced by ``UNLABELLED``."""
    n = labels.shape[0]
    keep = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: round(fraction * n)].to(labels.device)
    out = torch.full_like(labels, UNLABELLED)
    out[keep] = labels[keep]
    return out


class ViewAdversary(nn.Module):
    """The generator, its optimiser, and the optional label head."""

    def __init__(self, generator: nn.Module, knobs: LearnedFamily, encoder: Encoder, train_y: Tensor,
                 num_classes: int, seed: int):
        super().__init__()
        self.generator = generator
        self.label_weight = knobs.label_weight
        self.head: nn.Module | None = None
        labels = None  # only the labelled share; None when no label is read
        if self.label_weight > 0:
            self.head = nn.Linear(encoder.backbone.out_dim, num_classes).to(train_y.device)
            labels = labelled_share(train_y, knobs.label_fraction, seed)
        self.register_buffer("labels", labels, persistent=False)  # derived from the seed: not checkpointed
        self.optimizer = torch.optim.Adam(list(self.parameters()), lr=knobs.lr)
        self.label_params = list(self.parameters()) if self.head is not None else []  # what the label term trains

    def label_loss(self, encoder: Encoder, v1: Tensor, idx: Tensor) -> Tensor:
        """Mean cross-entropy of the head on the batch's labelled images (0 when none is labelled);
        no host sync: unlabelled images are weighted out, not filtered."""
        y = self.labels[idx]
        known = (y != UNLABELLED).float()
        logits = self.head(encoder.features(v1)).float()
        ce = F.cross_entropy(logits, y.clamp_min(0), reduction="none")
        return (ce * known).sum() / known.sum().clamp_min(1.0)

    def backward(self, loss: Tensor, encoder: Encoder, v1: Tensor, idx: Tensor) -> None:
        """Fill every gradient for this step: the encoder's (descend ``loss``), the generator's
        (ascend ``loss``, descend the label term) and the head's."""
        self.optimizer.zero_grad(set_to_none=True)
        keep: tuple[Tensor | None, ...] = ()
        if self.label_params:
            term = self.label_weight * self.label_loss(encoder, v1, idx)
            keep = torch.autograd.grad(term, self.label_params, retain_graph=True, allow_unused=True)
        loss.backward()
        for p in self.generator.parameters():
            if p.grad is not None:
                p.grad.neg_()
        for p, g in zip(self.label_params, keep, strict=False):  # nothing when no label term
            if g is not None:
                p.grad = g if p.grad is None else p.grad.add_(g)

    def step(self) -> None:
        self.optimizer.step()

    def freeze(self) -> None:
        """The trained views, fixed: what the view MI and the task information are measured on."""
        self.generator.eval().requires_grad_(False)

    def checkpoint(self) -> dict:
        """The generator, the head and their optimiser: what a resumed training continues from."""
        return {"modules": self.state_dict(), "optimizer": self.optimizer.state_dict()}

    def restore(self, sd: dict) -> None:
        self.load_state_dict(sd["modules"])
        self.optimizer.load_state_dict(sd["optimizer"])
