"""Contrastive objectives as small pure functions, and the ring's schedules.

Everything here is a function of tensors (or a step count) so it can be tested exactly against
a slow reference. Methods (``trainers/methods/``) only choose *which* similarities are candidates.

The ring (Wu et al., ICLR 2021): per anchor, rank the candidate negatives by similarity (most
similar first) and keep only a band of ranks ``[lower, upper)`` as fractions of the candidates.
Skipping the top ``lower`` removes likely false negatives; cutting at ``upper`` keeps the hard
ones. ``lower=0, upper=1`` keeps every candidate, and the loss is then plain InfoNCE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def band_ranks(n: Tensor, lower: float, upper: float) -> tuple[Tensor, Tensor]:
    """Rank range ``[lo, hi)`` kept for rows with ``n`` valid candidates (at least one kept)."""
    n = n.to(torch.float64)
    lo = torch.floor(lower * n)
    hi = torch.maximum(torch.ceil(upper * n), lo + 1)
    return lo.long(), hi.long()


def ring_mask(sim: Tensor, lower: float, upper: float, valid: Tensor | None = None) -> Tensor:
    """bool[B, N]: which candidates of each row lie in the similarity band.

    Ranks are taken among valid candidates only, most similar first; ties are broken by index
    (a stable sort), so the mask is deterministic.
    """
    if valid is None:
        valid = torch.ones_like(sim, dtype=torch.bool)
    if lower == 0.0 and upper == 1.0:
        return valid.clone()
    keyed = torch.where(valid, sim, torch.full_like(sim, -math.inf))
    order = torch.sort(keyed, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(sim.shape[1], device=sim.device).expand_as(order))
    lo, hi = band_ranks(valid.sum(dim=1), lower, upper)
    return valid & (ranks >= lo[:, None]) & (ranks < hi[:, None])


def conditional_nce(pos_sim: Tensor, neg_sim: Tensor, mask: Tensor, temperature: float) -> Tensor:
    """``mean_i(-pos_i/t + logsumexp({pos_i/t} ∪ {neg_ij/t : mask_ij}))``.

    With a full mask this is InfoNCE, and ``log(1 + n_neg) - loss`` is its MI lower bound.
    Computed in float32 whatever the input dtype: bf16 logsumexp over thousands of terms is
    too coarse for a loss.
    """
    pos = pos_sim.float() / temperature
    neg = neg_sim.float() / temperature
    neg = neg.masked_fill(~mask, -math.inf)
    logits = torch.cat([pos[:, None], neg], dim=1)
    return (torch.logsumexp(logits, dim=1) - pos).mean()


def nt_xent(z1: Tensor, z2: Tensor, temperature: float, lower: float = 0.0, upper: float = 1.0) -> Tensor:
    """SimCLR's NT-Xent over 2B anchors, with the ring applied to the 2B-2 in-batch negatives.

    Each anchor's positive is its other view; itself is excluded; the positive is always in the
    partition (it is ``pos_sim``, not a masked candidate).
    """
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    b = z1.shape[0]
    sim = z @ z.T
    idx = torch.arange(2 * b, device=z.device)
    partner = torch.cat([idx[b:], idx[:b]])
    pos = sim[idx, partner]
    valid = torch.ones_like(sim, dtype=torch.bool)
    valid[idx, idx] = False
    valid[idx, partner] = False
    mask = ring_mask(sim, lower, upper, valid)
    return conditional_nce(pos, sim, mask, temperature)


def ring_sample(sim: Tensor, lower: float, upper: float, k: int, exclude: Tensor | None = None) -> Tensor:
    """Indices [B, k] drawn uniformly with replacement from each row's band (IR's negatives).

    Only the top ``ceil(upper*n)`` are ranked (a ``topk``, not a full sort), which makes the ring
    over a 50k-entry memory bank cheap. ``exclude`` [B] is one index per row that is not a
    candidate (the anchor's own bank entry).
    """
    b, n_all = sim.shape
    n = n_all - (1 if exclude is not None else 0)
    if exclude is not None:
        sim = sim.scatter(1, exclude[:, None], -math.inf)
    if lower == 0.0 and upper == 1.0:
        draw = torch.randint(0, n, (b, k), device=sim.device)
        if exclude is not None:  # skip over the excluded column
            draw = draw + (draw >= exclude[:, None]).long()
        return draw
    lo = math.floor(lower * n)
    hi = max(math.ceil(upper * n), lo + 1)
    top = torch.topk(sim, hi, dim=1, sorted=True).indices
    pick = torch.randint(lo, hi, (b, k), device=sim.device)
    return torch.gather(top, 1, pick)


# --------------------------------------------------------------------------- schedules


@dataclass(frozen=True)
class RingSchedule:
    """``bounds(step) -> (lower, upper)``: the lower bound is constant; the upper bound goes from
    ``start`` to ``end`` over ``total`` steps and stays at ``end`` after.

    kinds: ``constant`` (always end), ``linear``, ``step`` (start for the first half, then end),
    ``exponential`` (geometric interpolation, start * (end/start)^(step/total)).
    """

    lower: float
    end: float
    start: float = 1.0
    total: int = 1
    kind: str = "constant"

    def bounds(self, step: int) -> tuple[float, float]:
        frac = min(max(step, 0) / max(self.total, 1), 1.0)
        if self.kind == "constant":
            upper = self.end
        elif self.kind == "linear":
            upper = self.start + (self.end - self.start) * frac
        elif self.kind == "step":
            upper = self.start if frac < 0.5 else self.end
        elif self.kind == "exponential":
            upper = self.start * (self.end / self.start) ** frac
        else:
            raise ValueError(f"unknown schedule kind {self.kind!r}")
        return self.lower, max(upper, self.end)  # never undershoot through rounding


def make_schedule(lower: float, upper: float, anneal: str, start: float, total_steps: int) -> RingSchedule:
    kind = "constant" if anneal == "none" else anneal
    return RingSchedule(lower=lower, end=upper, start=start, total=total_steps, kind=kind)
