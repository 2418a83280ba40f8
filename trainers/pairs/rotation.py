"""A rotation view family: the two views are the image turned by two angles ``angle`` apart.

Each sample draws its own base angle ``t`` uniformly in [0, 360) degrees and a random direction
``s`` (+1 or -1); view 1 is the image rotated by ``t``, view 2 by ``t + s * angle``. So ``angle``
is the only thing that tells the views apart: 0 gives identical views, 180 views upside down
relative to each other. The base angle is random so that neither view is ever the upright image
the encoder sees at evaluation (``eval_view`` is the whole, unrotated image).

One affine grid per view, built for the whole batch and resampled bilinearly on the images'
device (no per-image loop, no host sync). The grid is corrected for the aspect ratio, so a
non-square image rotates rigidly. Corners that turn in from outside the image are zero; at
multiples of 90 degrees a square image's pixel centres land on pixel centres, so the views are
exact ``rot90``s.

What the angle moves is how well the views line up pixel for pixel, not the information they
hold: a rotation is invertible up to the corners, so a critic that learns to undo it still finds
most of it (quarter and half turns lose nothing, being exact pixel permutations). Pixel
correlation between the views falls from 0 to 90 degrees; a measured view MI need not.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from trainers.pairs.base import RelationBase
from trainers.pairs.family import PairFamily

if TYPE_CHECKING:
    import torch
    from torch import Tensor


class Rotations(RelationBase):
    """Views = the image rotated by a random ``t`` and by ``t +- angle`` (degrees)."""

    def __init__(self, angle: float):
        if not 0.0 <= angle <= 180.0:
            raise ValueError(f"rotation angle must be in [0, 180] degrees, got {angle}")
        self.angle = float(angle)

    @staticmethod
    def rotate(x: Tensor, theta: Tensor) -> Tensor:
        """``x`` [B, C, H, W] rotated by ``theta`` [B] radians about its centre, zeros outside."""
        import torch
        import torch.nn.functional as F

        h, w = x.shape[-2], x.shape[-1]
        cos, sin = theta.cos().to(x.dtype), theta.sin().to(x.dtype)
        zero = torch.zeros_like(cos)
        # affine_grid works in [-1, 1] per axis: scale the off-diagonal terms by the aspect ratio
        mat = torch.stack((torch.stack((cos, -sin * (h / w), zero), 1), torch.stack((sin * (w / h), cos, zero), 1)), 1)
        grid = F.affine_grid(mat, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def angles(self, batch: int, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """Both views' angles in radians, each [batch]; public so a test can check the offset."""
        import torch

        base = torch.rand(batch, device=device) * (2 * math.pi)
        sign = torch.randint(0, 2, (batch,), device=device) * 2 - 1
        return base, base + sign * math.radians(self.angle)

    def pair(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        first, second = self.angles(a.shape[0], a.device)
        return self.rotate(a, first), self.rotate(b, second)

    def single(self, a: Tensor) -> Tensor:
        return self.rotate(a, self.angles(a.shape[0], a.device)[0])


class RotationFamily(PairFamily):
    """``views.pairs: {kind: rotation, angle}``."""

    kind: Literal["rotation"] = "rotation"
    angle: float = Field(90.0, ge=0.0, le=180.0, description="degrees between the two views' rotations; "
                                                            "0 = identical views, 180 = opposite")

    def relation(self) -> Rotations:
        return Rotations(self.angle)


FAMILY = RotationFamily
