"""A learned view family: a small generator perturbs each augmented copy, trained against the encoder.

InfoMin (Tian et al., 2020) learns views with a generator that reduces what the views share, and
Viewmaker networks (Tamkin et al., 2021) bound that generator with a budget so that it cannot
erase the image. Here each view is its augmented copy (``views.strength`` and ``views.stages``
as for every family; 0 and none leave the image itself) plus a perturbation ``delta`` made by
the generator from the copy and fresh noise, scaled so that its mean absolute value per image is
exactly ``budget``. The two views of an image get different noise, so they differ even at
strength 0.

The generator trains in the same steps as the encoder, adversarially: the encoder descends the
contrastive loss and the generator ascends it (``trainers/adversary.py`` does the step). Left
alone it removes as much shared information as the budget allows; ``label_weight`` adds a
classifier on the views whose loss the generator descends, read on a fixed ``label_fraction``
of the training labels only (InfoMin's semi-supervised views).

Because the views are learned, they exist only after a training: the view MI and the task
information of this family are measured with the trained generator frozen, once per trial, never
shared between replicates (``learns = True``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from trainers.pairs.base import RelationBase
from trainers.pairs.family import PairFamily

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn


def project_to_budget(delta: Tensor, budget: float) -> Tensor:
    """``delta`` scaled per image so that its mean absolute value is exactly ``budget``.

    The projection onto the L1 sphere of radius ``budget * C*H*W`` along the ray of ``delta``
    (Viewmaker's). An all-zero ``delta`` stays zero: there is no direction to scale.
    """
    import torch

    size = delta[0].numel()
    norm = delta.abs().flatten(1).sum(1).div(size)
    scale = torch.where(norm > 0, budget / norm.clamp_min(torch.finfo(delta.dtype).tiny), torch.zeros_like(norm))
    return delta * scale.view(-1, *([1] * (delta.dim() - 1)))


def build_generator(channels: int, width: int) -> nn.Module:
    """Image + one noise channel -> a perturbation of the image's shape (three 3x3 convolutions).

    Noise enters at the input and again before the last layer, so two draws of one image differ
    in their structure, not only in a shared offset.
    """
    import torch
    from torch import nn

    class Generator(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = nn.Conv2d(channels + 1, width, 3, padding=1)
            self.mid = nn.Conv2d(width + 1, width, 3, padding=1)
            self.out = nn.Conv2d(width, channels, 3, padding=1)

        def forward(self, x: Tensor) -> Tensor:
            noise = torch.randn_like(x[:, :1])
            h = torch.relu(self.inp(torch.cat((x, noise), 1)))
            h = torch.relu(self.mid(torch.cat((h, torch.randn_like(noise)), 1)))
            return self.out(h)

    return Generator()


class LearnedViews(RelationBase):
    """Views = each augmented copy + its generator's budgeted perturbation.

    The generator is built by ``bind`` on the images' channels and device (the pair source calls
    it): it is the ``learner`` the trainer optimises against the encoder.
    """

    def __init__(self, knobs: LearnedFamily):
        self.knobs = knobs
        self.learner: nn.Module | None = None

    def bind(self, channels: int, device: torch.device) -> None:
        if self.learner is None:
            self.learner = build_generator(channels, self.knobs.width).to(device)

    def perturb(self, x: Tensor) -> Tensor:
        """``x`` plus a perturbation of mean absolute value ``budget`` per image (not clipped: a
        clip to [0, 1] would break the budget)."""
        if self.learner is None:
            raise RuntimeError("LearnedViews.bind(channels, device) must run before views are made")
        return x + project_to_budget(self.learner(x), self.knobs.budget)

    def pair(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        import torch

        both = self.perturb(torch.cat((a, b)))  # one generator call for both views
        return both[: a.shape[0]], both[a.shape[0] :]

    def single(self, a: Tensor) -> Tensor:
        return self.perturb(a)


class LearnedFamily(PairFamily):
    """``views.pairs: {kind: learned, budget, label_weight, label_fraction, lr, width}``."""

    kind: Literal["learned"] = "learned"
    budget: float = Field(0.05, ge=0.0, le=1.0, description="mean absolute change per pixel the generator "
                                                            "makes (images in [0, 1]); 0 = the augmented copies")
    label_weight: float = Field(0.0, ge=0.0, le=100.0, description="weight of the label-keeping term the "
                                                                   "generator descends; 0 = no label is read")
    label_fraction: float = Field(0.1, ge=0.0, le=1.0, description="share of the training labels the "
                                                                   "label-keeping term may read (a fixed subset)")
    lr: float = Field(0.001, gt=0.0, le=1.0, description="Adam learning rate of the generator and its label head")
    width: int = Field(16, ge=1, le=256, description="channels of the generator's hidden layers")

    methods: ClassVar[tuple[str, ...] | None] = ("simclr",)
    learns: ClassVar[bool] = True

    def relation(self) -> LearnedViews:
        return LearnedViews(self)


FAMILY = LearnedFamily
