"""Mutual information between paired samples, measured with one fixed critic protocol.

Why a fixed protocol: view MI is only comparable across view configurations when every
configuration is measured the same way — same critic architecture, same number of steps, same
batch size K, same held-out evaluation pairs. The spec's ``mi`` section (``MIConfig``, in
``trainers/config.py``, with every knob's range) pins all of that down and is passed here as is.

The critic is separable, s(x, y) = f(x) . g(y), so one forward pass scores a whole K x K batch:
row i holds anchor x_i against candidates y_1..y_K, positives on the diagonal. The bounds are
small pure functions of that score matrix (``infonce_bound``, ``nwj_bound``, ``smile_bound``).

Estimators
- ``infonce``: log K + mean_i [s_ii - logsumexp_j s_ij]. Low variance, but it can never exceed
  log K, so ``cap_nats`` is always reported and ``saturated`` flags estimates within 0.5 nat of it.
- ``nwj``: E_p[s] - e^{-1} E_q[e^s] (the f-GAN KL / NWJ bound with its optimal critic shifted by
  1), with q = the off-diagonal (shuffled) pairs of the batch. Not capped by log K, high variance.
- ``smile`` (Song & Ermon, 2020): the critic is trained with the Jensen-Shannon f-GAN objective
  (as in the paper's reference code) and the estimate is the clipped Donsker-Varadhan value
  E_p[s] - log E_q[e^{clip(s, -tau, tau)}], tau = ``smile_clip``. Clipping trades bias for
  variance; the estimate is not capped by log K either.
For ``nwj`` and ``smile`` ``cap_nats`` is still log K of the evaluation batch, for reference,
and ``saturated`` uses the same rule (then it means "large relative to what InfoNCE could see").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from trainers.config import MIConfig

ESTIMATORS = ("infonce", "nwj", "smile")
SATURATION_MARGIN_NATS = 0.5


@dataclass(frozen=True)
class MIEstimate:
    nats: float  # held-out estimate
    cap_nats: float  # log K (a hard ceiling only for InfoNCE)
    saturated: bool  # nats >= cap_nats - 0.5
    estimator: str
    train_nats: float  # the same bound on the training pairs, to see overfitting
    std_nats: float  # std of the bound across held-out batches
    steps: int
    batch_size: int


# ----------------------------------------------------------------------------- bounds


def _offdiag_logmeanexp(scores: Tensor) -> Tensor:
    """log of the mean of exp(s_ij) over i != j (the shuffled, product-of-marginals pairs)."""
    k = scores.shape[0]
    masked = scores.masked_fill(torch.eye(k, dtype=torch.bool, device=scores.device), float("-inf"))
    return torch.logsumexp(masked.flatten(), dim=0) - math.log(k * (k - 1))


def infonce_bound(scores: Tensor) -> Tensor:
    """log K + mean_i [s_ii - logsumexp_j s_ij]; at most log K by construction."""
    k = scores.shape[0]
    return math.log(k) + (scores.diagonal() - torch.logsumexp(scores, dim=1)).mean()


def nwj_bound(scores: Tensor) -> Tensor:
    """E_p[s] - e^{-1} E_q[e^s], q = off-diagonal pairs. Computed in log space against overflow."""
    return scores.diagonal().mean() - torch.exp(_offdiag_logmeanexp(scores) - 1.0)


def smile_bound(scores: Tensor, clip: float) -> Tensor:
    """E_p[s] - log E_q[e^{clip(s, -clip, clip)}] (Song & Ermon's clipped DV); q = off-diagonal."""
    return scores.diagonal().mean() - _offdiag_logmeanexp(scores.clamp(-clip, clip))


def js_bound(scores: Tensor) -> Tensor:
    """Jensen-Shannon f-GAN objective, -E_p[softplus(-s)] - E_q[softplus(s)]; SMILE's training loss."""
    k = scores.shape[0]
    diag = scores.diagonal()
    pos = -nn.functional.softplus(-diag).mean()
    neg = (nn.functional.softplus(scores).sum() - nn.functional.softplus(diag).sum()) / (k * (k - 1))
    return pos - neg


def _objectives(protocol: MIConfig) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """(training objective to maximise, evaluation bound) for the protocol's estimator."""
    if protocol.estimator == "infonce":
        return infonce_bound, infonce_bound
    if protocol.estimator == "nwj":
        return nwj_bound, nwj_bound
    if protocol.estimator == "smile":
        return js_bound, lambda s: smile_bound(s, protocol.smile_clip)
    raise ValueError(f"unknown MI estimator {protocol.estimator!r}; expected one of {ESTIMATORS}")


# ----------------------------------------------------------------------------- critic


def _mlp(d_in: int, hidden: int, embed: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, embed)
    )


def _convnet(channels: int, hidden: int, embed: int) -> nn.Module:
    """Three stride-2 convs, pooled to 4x4 so any image size maps to the same linear head."""
    w1, w2, w3 = max(8, hidden // 4), max(8, hidden // 2), max(8, hidden)
    return nn.Sequential(
        nn.Conv2d(channels, w1, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(w1, w2, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(w2, w3, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(w3 * 16, embed),
    )  # fmt: skip


def _encoder(sample: Tensor, protocol: MIConfig) -> nn.Module:
    if sample.dim() == 2:
        return _mlp(sample.shape[1], protocol.hidden, protocol.embed)
    if sample.dim() == 4:
        return _convnet(sample.shape[1], protocol.hidden, protocol.embed)
    raise ValueError(f"expected vectors [N, d] or images [N, C, H, W], got shape {tuple(sample.shape)}")


class SeparableCritic(nn.Module):
    """s_ij = f(x_i) . g(y_j): one K x K score matrix per forward pass."""

    def __init__(self, x: Tensor, y: Tensor, protocol: MIConfig):
        super().__init__()
        self.f = _encoder(x, protocol)
        self.g = _encoder(y, protocol)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.f(x) @ self.g(y).T


# ----------------------------------------------------------------------------- estimation


def _standardize(train: Tensor, held_out: Tensor) -> tuple[Tensor, Tensor]:
    """Per-feature (per-channel for images) z-scoring with training statistics.

    An invertible per-feature map leaves MI unchanged but makes one learning rate fit all inputs.
    """
    dims = [d for d in range(train.dim()) if d != 1]
    mean = train.mean(dim=dims, keepdim=True)
    std = train.std(dim=dims, keepdim=True).clamp_min(1e-6)
    return (train - mean) / std, (held_out - mean) / std


def _split(n: int, protocol: MIConfig, device: torch.device) -> tuple[Tensor, Tensor]:
    """Random (seeded by the caller) train / held-out index split of n pairs."""
    k, n_eval = protocol.batch_size, protocol.eval_pairs
    if n < n_eval + k:
        raise ValueError(
            f"need at least eval_pairs + batch_size = {n_eval} + {k} = {n_eval + k} pairs for this MI protocol, got {n}"
        )
    perm = torch.randperm(n, device=device)
    n_train = min(protocol.pairs, n - n_eval)
    return perm[n_eval : n_eval + n_train], perm[:n_eval]


def _train(critic: SeparableCritic, x: Tensor, y: Tensor, objective: Callable, protocol: MIConfig) -> None:
    """Adam on shuffled mini-batches of K training pairs (full batches only, reshuffled per epoch)."""
    opt = torch.optim.Adam(critic.parameters(), lr=protocol.lr)
    k, n = protocol.batch_size, x.shape[0]
    per_epoch = n // k
    critic.train()
    for step in range(protocol.steps):
        if step % per_epoch == 0:
            perm = torch.randperm(n, device=x.device)
        idx = perm[(step % per_epoch) * k : (step % per_epoch + 1) * k]
        loss = -objective(critic(x[idx], y[idx]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


@torch.no_grad()
def _batch_bounds(critic: SeparableCritic, x: Tensor, y: Tensor, bound: Callable, k: int) -> Tensor:
    """The bound on consecutive whole batches of K pairs, one value per batch."""
    critic.eval()
    values = [bound(critic(x[i : i + k], y[i : i + k])) for i in range(0, x.shape[0] - k + 1, k)]
    return torch.stack(values).double()


def _rng_devices(device: torch.device) -> list[Any]:
    return [device] if device.type == "cuda" else []


def estimate_mi(
    x: Tensor,
    y: Tensor,
    estimator: str | None = None,
    protocol: MIConfig | None = None,
    device: torch.device | str | None = None,
) -> MIEstimate:
    """Estimate I(x; y) in nats from paired samples (vectors [N, d] or images [N, C, H, W]).

    ``estimator`` overrides ``protocol.estimator`` when given. Needs at least
    ``protocol.eval_pairs + protocol.batch_size`` pairs; uses ``eval_pairs`` held out and up to
    ``protocol.pairs`` for training. Seeded from ``protocol.seed`` inside a forked RNG, so the
    caller's random state is untouched and the same inputs give the same estimate.
    """
    protocol = protocol or MIConfig()
    if estimator is not None and estimator != protocol.estimator:
        protocol = protocol.model_copy(update={"estimator": estimator})
    objective, bound = _objectives(protocol)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must be paired: got {x.shape[0]} and {y.shape[0]} samples")
    device = torch.device(device) if device is not None else x.device
    x, y = x.to(device, torch.float32), y.to(device, torch.float32)
    k = protocol.batch_size
    with torch.random.fork_rng(devices=_rng_devices(device)):
        torch.manual_seed(protocol.seed)
        train_idx, eval_idx = _split(x.shape[0], protocol, device)
        x_tr, x_ev = _standardize(x[train_idx], x[eval_idx])
        y_tr, y_ev = _standardize(y[train_idx], y[eval_idx])
        critic = SeparableCritic(x, y, protocol).to(device)
        _train(critic, x_tr, y_tr, objective, protocol)
        held_out = _batch_bounds(critic, x_ev, y_ev, bound, k)
        train = _batch_bounds(critic, x_tr, y_tr, bound, k)
    nats, cap = float(held_out.mean()), math.log(k)
    return MIEstimate(
        nats=nats,
        cap_nats=cap,
        saturated=nats >= cap - SATURATION_MARGIN_NATS,
        estimator=protocol.estimator,
        train_nats=float(train.mean()),
        std_nats=float(held_out.std()) if held_out.numel() > 1 else 0.0,
        steps=protocol.steps,
        batch_size=k,
    )


# ----------------------------------------------------------------------------- views


def _draw_images(n_images: int, n: int, device: torch.device) -> Tensor:
    """Indices of n distinct images when there are enough, else drawn with replacement."""
    if n_images >= n:
        return torch.randperm(n_images, device=device)[:n]
    return torch.randint(n_images, (n,), device=device)


def view_mi(
    source: Any,
    protocol: MIConfig | None = None,
    device: torch.device | str | None = None,
    chunk: int = 1024,
) -> MIEstimate:
    """MI between the two views of the same image, made by the trial's own pair source.

    ``source(idx, True) -> (v1, v2)`` is a ``trainers.pairs.PairSource`` (anything with that call
    and an ``images`` tensor). Draws ``protocol.pairs + protocol.eval_pairs`` images (seeded;
    distinct when the data set is large enough, otherwise with replacement), makes their two
    views in chunks, and estimates I(v1; v2) with ``estimate_mi`` under the same protocol.
    """
    protocol = protocol or MIConfig()
    images = source.images
    device = torch.device(device) if device is not None else images.device
    n = protocol.pairs + protocol.eval_pairs
    with torch.random.fork_rng(devices=_rng_devices(images.device)):
        torch.manual_seed(protocol.seed)
        idx = _draw_images(images.shape[0], n, images.device)
        v1, v2 = [], []
        with torch.no_grad():
            for start in range(0, n, chunk):
                a, b = source(idx[start : start + chunk], True)
                v1.append(a.float())
                v2.append(b.float())
    return estimate_mi(torch.cat(v1), torch.cat(v2), protocol=protocol, device=device)
