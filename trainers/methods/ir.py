"""Instance discrimination (Wu et al. 2018): a memory bank with one slowly updated entry per
training image; ``num_negatives`` negatives are drawn uniformly with replacement from the ring's
band of the bank."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from trainers.methods.base import Method, StepResult, random_unit
from trainers.methods.knobs import IRKnobs
from trainers.models import Encoder
from trainers.objectives import conditional_nce, ring_sample


class InstanceDiscrimination(Method):
    """IR: the positive is the anchor's own (old) bank entry."""

    views_per_step = 1
    knobs: IRKnobs

    def __init__(self, encoder: Encoder, knobs: IRKnobs, n_train: int):
        super().__init__(encoder, knobs, n_train)
        self.register_buffer("bank", random_unit(n_train, encoder.proj_dim))

    def loss(self, v1: Tensor, v2: Tensor | None, idx: Tensor, lower: float, upper: float) -> StepResult:
        z = self.encoder(v1)
        pos = (z * self.bank[idx]).sum(dim=1)
        with torch.no_grad():
            neg_idx = ring_sample(z.detach() @ self.bank.T, lower, upper, self.knobs.num_negatives, exclude=idx)
        neg = torch.einsum("bd,bkd->bk", z, self.bank[neg_idx])
        loss = conditional_nce(pos, neg, torch.ones_like(neg, dtype=torch.bool), self.knobs.temperature)
        z = z.detach()
        return StepResult(loss, lambda: self.update_bank(idx, z))  # after backward, like MoCo's queue

    @torch.no_grad()
    def update_bank(self, idx: Tensor, z: Tensor) -> None:
        m = self.knobs.bank_momentum
        self.bank[idx] = F.normalize(m * self.bank[idx] + (1 - m) * z.to(self.bank.dtype), dim=1)


METHOD = InstanceDiscrimination
