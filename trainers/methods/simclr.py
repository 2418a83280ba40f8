"""SimCLR: the candidates of each view are the other 2B-2 views in the batch."""

from __future__ import annotations

from torch import Tensor

from trainers.methods.base import Method, StepResult
from trainers.objectives import nt_xent


class SimCLR(Method):
    def loss(self, v1: Tensor, v2: Tensor | None, idx: Tensor, lower: float, upper: float) -> StepResult:
        return StepResult(nt_xent(self.encoder(v1), self.encoder(v2), self.knobs.temperature, lower, upper))


METHOD = SimCLR
