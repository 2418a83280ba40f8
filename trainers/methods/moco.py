"""MoCo: a queue of K keys from a momentum (EMA) copy of the encoder are the candidates."""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from trainers.methods.base import Method, StepResult, random_unit
from trainers.methods.knobs import MoCoKnobs
from trainers.models import Encoder
from trainers.objectives import conditional_nce, ring_mask


class MoCo(Method):
    """MoCo v2 style: query from view 1, key from view 2; ``symmetric`` adds the swapped pair.

    ``bn_groups`` > 1 emulates MoCo's shuffling BN (one group per GPU in the paper) on one device.
    """

    knobs: MoCoKnobs

    def __init__(self, encoder: Encoder, knobs: MoCoKnobs, n_train: int):
        super().__init__(encoder, knobs, n_train)
        self.key_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self.register_buffer("queue", random_unit(knobs.queue_size, encoder.proj_dim))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    def _one_way(self, v_query: Tensor, v_key: Tensor, lower: float, upper: float) -> tuple[Tensor, Tensor]:
        g = self.knobs.bn_groups
        q = torch.cat([self.encoder(chunk) for chunk in v_query.chunk(g)]) if g > 1 else self.encoder(v_query)
        with torch.no_grad():
            k = self._shuffled_keys(v_key) if g > 1 else self.key_encoder(v_key)
        pos = (q * k).sum(dim=1)
        neg = q @ self.queue.T
        return conditional_nce(pos, neg, ring_mask(neg.detach(), lower, upper), self.knobs.temperature), k

    def _shuffled_keys(self, v_key: Tensor) -> Tensor:
        """Shuffling BN on one device: queries are normalised in fixed groups, keys in random ones,
        so a key's BatchNorm statistics do not come from the images its query was normalised
        with. Without it those shared statistics let the model find the positive among the queue's
        keys without learning anything (MoCo, section 3.3)."""
        perm = torch.randperm(v_key.shape[0], device=v_key.device)
        k = torch.cat([self.key_encoder(chunk) for chunk in v_key[perm].chunk(self.knobs.bn_groups)])
        return k[torch.argsort(perm)]

    def loss(self, v1: Tensor, v2: Tensor | None, idx: Tensor, lower: float, upper: float) -> StepResult:
        loss, k2 = self._one_way(v1, v2, lower, upper)
        if self.knobs.symmetric:  # MoCo v3's symmetrised loss: both views act as query once
            loss = (loss + self._one_way(v2, v1, lower, upper)[0]) / 2
        # Enqueued after the optimiser step (backward still needs this queue); one key per image
        # either way, so the queue spans the same K / B past batches.
        return StepResult(loss, lambda: self.after_step(k2))

    @torch.no_grad()
    def after_step(self, keys: Tensor) -> None:
        """Enqueue this step's keys, then move the key encoder towards the updated query encoder."""
        self.enqueue(keys)
        self.momentum_update()

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write keys at ``ptr`` with wrap-around; ``ptr`` is a tensor so no host sync is needed."""
        slots = (self.ptr + torch.arange(keys.shape[0], device=keys.device)) % self.queue.shape[0]
        self.queue[slots] = keys.to(self.queue.dtype)
        self.ptr.copy_((self.ptr + keys.shape[0]) % self.queue.shape[0])

    @torch.no_grad()
    def momentum_update(self) -> None:
        """key = m * key + (1 - m) * query for the weights; BatchNorm statistics are copied."""
        m = self.knobs.momentum
        for p_k, p_q in zip(self.key_encoder.parameters(), self.encoder.parameters()):
            p_k.mul_(m).add_(p_q.detach(), alpha=1 - m)
        for b_k, b_q in zip(self.key_encoder.buffers(), self.encoder.buffers()):
            b_k.copy_(b_q)


METHOD = MoCo
