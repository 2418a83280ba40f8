"""What every contrastive method shares: the module it is, and the small post-step contract.

A method decides which similarities are the candidates, nothing more; every loss goes through
``objectives.conditional_nce``, and the ring bounds arrive per step from the trainer's schedule,
so a method never knows whether it is annealed.

``loss`` returns a ``StepResult``: the loss, and what must happen after the optimiser step (a
queue or a memory bank updated with this step's keys, an EMA encoder). The state that crosses
the step is in that closure, not in attributes left for a later call to find.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.methods.knobs import MethodKnobs

if TYPE_CHECKING:
    from trainers.models import Encoder


@dataclass(frozen=True)
class StepResult:
    """One step's loss, and what to run after ``optimizer.step()`` (None: nothing).

    The update runs after the step because backward still needs the state the loss read."""

    loss: Tensor
    after_step: Callable[[], None] | None = None


class Method(nn.Module):
    """A method's module: the encoder it trains plus whatever state it keeps (buffers, encoders),
    so a checkpoint is its ``state_dict``."""

    views_per_step = 2  # IR takes one view a step

    def __init__(self, encoder: Encoder, knobs: MethodKnobs, n_train: int):
        super().__init__()
        self.encoder = encoder
        self.knobs = knobs

    def loss(self, v1: Tensor, v2: Tensor | None, idx: Tensor, lower: float, upper: float) -> StepResult:
        """The loss of views ``v1``/``v2`` of training images ``idx`` with ring bounds [lower, upper)."""
        raise NotImplementedError


def random_unit(n: int, d: int) -> Tensor:
    """``n`` random unit vectors in ``d`` dimensions: an initial queue or memory bank."""
    return F.normalize(torch.randn(n, d), dim=1)
