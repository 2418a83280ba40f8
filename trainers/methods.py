"""Contrastive methods: each decides which similarities are the candidates, nothing more.

- SimCLR: the other 2B-2 views in the batch.
- MoCo: a queue of K keys from a momentum (EMA) copy of the encoder.
- IR (instance discrimination): a memory bank with one slowly updated entry per training image;
  ``num_negatives`` negatives are drawn uniformly with replacement from the ring's band.

All losses go through ``objectives.conditional_nce``; the ring bounds arrive per step from the
trainer's schedule, so a method never knows whether it is annealed.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.config import MethodConfig
from trainers.models import Encoder
from trainers.objectives import conditional_nce, nt_xent, ring_mask, ring_sample


class Method(nn.Module):
    views_per_step = 2

    def __init__(self, encoder: Encoder, cfg: MethodConfig, n_train: int):
        super().__init__()
        self.encoder = encoder
        self.cfg = cfg

    def loss(self, v1: Tensor, v2: Tensor | None, idx: Tensor, lower: float, upper: float) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def after_step(self) -> None:
        """Updates that follow the optimiser step (EMA encoders)."""


class SimCLR(Method):
    def loss(self, v1, v2, idx, lower, upper):
        return nt_xent(self.encoder(v1), self.encoder(v2), self.cfg.temperature, lower, upper)


def _random_unit(n: int, d: int) -> Tensor:
    return F.normalize(torch.randn(n, d), dim=1)


class MoCo(Method):
    """MoCo v2 style: query from view 1, key from view 2; ``symmetric`` adds the swapped pair.

    ``bn_groups`` > 1 emulates MoCo's shuffling BN (one group per GPU in the paper) on one device.
    """

    def __init__(self, encoder, cfg, n_train):
        super().__init__(encoder, cfg, n_train)
        self.key_encoder = copy.deepcopy(encoder).requires_grad_(False)
        dim = encoder.head.net[-1].out_features
        self.register_buffer("queue", _random_unit(cfg.queue_size, dim))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    def _one_way(self, v_query: Tensor, v_key: Tensor, lower: float, upper: float) -> tuple[Tensor, Tensor]:
        g = self.cfg.bn_groups
        q = torch.cat([self.encoder(chunk) for chunk in v_query.chunk(g)]) if g > 1 else self.encoder(v_query)
        with torch.no_grad():
            k = self._shuffled_keys(v_key) if g > 1 else self.key_encoder(v_key)
        pos = (q * k).sum(dim=1)
        neg = q @ self.queue.T
        return conditional_nce(pos, neg, ring_mask(neg.detach(), lower, upper), self.cfg.temperature), k

    def _shuffled_keys(self, v_key: Tensor) -> Tensor:
        """Shuffling BN on one device: queries are normalised in fixed groups, keys in random ones,
        so a key's BatchNorm statistics do not come from the images its query was normalised
        with. Without it those shared statistics let the model find the positive among the queue's
        keys without learning anything (MoCo, section 3.3)."""
        perm = torch.randperm(v_key.shape[0], device=v_key.device)
        k = torch.cat([self.key_encoder(chunk) for chunk in v_key[perm].chunk(self.cfg.bn_groups)])
        return k[torch.argsort(perm)]

    def loss(self, v1, v2, idx, lower, upper):
        loss, k2 = self._one_way(v1, v2, lower, upper)
        if self.cfg.symmetric:  # MoCo v3's symmetrised loss: both views act as query once
            loss = (loss + self._one_way(v2, v1, lower, upper)[0]) / 2
        # Enqueued after the optimiser step (backward still needs this queue); one key per image
        # either way, so the queue spans the same K / B past batches.
        self._pending_keys = k2
        return loss

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write keys at ``ptr`` with wrap-around; ``ptr`` is a tensor so no host sync is needed."""
        slots = (self.ptr + torch.arange(keys.shape[0], device=keys.device)) % self.queue.shape[0]
        self.queue[slots] = keys.to(self.queue.dtype)
        self.ptr.copy_((self.ptr + keys.shape[0]) % self.queue.shape[0])

    @torch.no_grad()
    def after_step(self):
        if getattr(self, "_pending_keys", None) is not None:
            self.enqueue(self._pending_keys)
            self._pending_keys = None
        m = self.cfg.momentum
        for p_k, p_q in zip(self.key_encoder.parameters(), self.encoder.parameters()):
            p_k.mul_(m).add_(p_q.detach(), alpha=1 - m)
        for b_k, b_q in zip(self.key_encoder.buffers(), self.encoder.buffers()):
            b_k.copy_(b_q)


class InstanceDiscrimination(Method):
    """Wu et al. 2018's IR: the positive is the anchor's own (old) bank entry."""

    views_per_step = 1

    def __init__(self, encoder, cfg, n_train):
        super().__init__(encoder, cfg, n_train)
        dim = encoder.head.net[-1].out_features
        self.register_buffer("bank", _random_unit(n_train, dim))

    def loss(self, v1, v2, idx, lower, upper):
        z = self.encoder(v1)
        pos = (z * self.bank[idx]).sum(dim=1)
        with torch.no_grad():
            neg_idx = ring_sample(z.detach() @ self.bank.T, lower, upper, self.cfg.num_negatives, exclude=idx)
        neg = torch.einsum("bd,bkd->bk", z, self.bank[neg_idx])
        self._pending = (idx, z.detach())  # the bank is updated after backward, like MoCo's queue
        return conditional_nce(pos, neg, torch.ones_like(neg, dtype=torch.bool), self.cfg.temperature)

    @torch.no_grad()
    def after_step(self):
        if getattr(self, "_pending", None) is not None:
            self.update_bank(*self._pending)
            self._pending = None

    @torch.no_grad()
    def update_bank(self, idx: Tensor, z: Tensor) -> None:
        m = self.cfg.bank_momentum
        self.bank[idx] = F.normalize(m * self.bank[idx] + (1 - m) * z.to(self.bank.dtype), dim=1)


METHODS = {"simclr": SimCLR, "moco": MoCo, "ir": InstanceDiscrimination}


def build_method(encoder: Encoder, cfg: MethodConfig, n_train: int) -> Method:
    return METHODS[cfg.name](encoder, cfg, n_train)
