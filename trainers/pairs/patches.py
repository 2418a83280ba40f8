"""InfoMin's spatial view family: two patches of the same image at a controlled distance.

Tian et al. (NeurIPS 2020) vary what two views share by moving two crops apart: the further the
centres, the less the patches share, so ``distance`` is a knob on the views' mutual information.
Everything is batched integer indexing on the images' device (one gather per view, no per-image
loop, no host sync), so the relation costs about as much as a slice.

Geometry, for an ``S x S`` image: the patch side is ``p = max(2, round(size * S))`` pixels and
``L = S - p`` is the largest displacement that still fits in every direction (along the axes and
the diagonals alike, since each component of the displacement is at most ``L``). The displacement
is ``round(distance * L * (cos t, sin t))`` for a uniform angle ``t``, so the centre distance is
``distance * L`` up to rounding (at most ``sqrt(2) / 2`` pixels). For non-square images ``S`` is
the shorter side and each axis places the patches within its own extent.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from trainers.pairs.base import RelationBase
from trainers.pairs.family import PairFamily

if TYPE_CHECKING:
    import torch
    from torch import Tensor


class Patches(RelationBase):
    """Views = two ``p x p`` patches whose centres are ``distance * L`` pixels apart."""

    def __init__(self, size: float, distance: float):
        if not 0.0 < size <= 1.0:
            raise ValueError(f"patch size must be in (0, 1], got {size}")
        if not 0.0 <= distance <= 1.0:
            raise ValueError(f"patch distance must be in [0, 1], got {distance}")
        self.size = float(size)
        self.distance = float(distance)

    def side(self, hw: tuple[int, int]) -> int:
        """Patch side in pixels; at least 2 so a patch is never a single pixel."""
        return min(max(2, round(self.size * min(hw))), min(hw))

    def draw(self, batch: int, size: int | tuple[int, int], device: torch.device | str | None = None
             ) -> tuple[Tensor, Tensor]:
        """Top-left corners ``(y, x)`` of both patches, each long [batch, 2].

        Public so a test can crop with the very offsets a batch used. The first corner is uniform
        over the positions where *both* patches fit, so no position is favoured near the borders.
        """
        import torch

        h, w = (size, size) if isinstance(size, int) else size
        p = self.side((h, w))
        reach = self.distance * (min(h, w) - p)
        theta = torch.rand(batch, device=device) * (2 * math.pi)
        shift = torch.stack((torch.sin(theta), torch.cos(theta)), 1).mul_(reach).round_().long()  # (dy, dx)
        room = torch.tensor([h - p, w - p], device=device)  # per-axis free range of one patch
        lo = (-shift).clamp_min(0)
        count = room - shift.abs() + 1  # >= 1 because |shift| <= min(h, w) - p
        first = lo + (torch.rand(batch, 2, device=device) * count).long().minimum(count - 1)
        return first, first + shift

    def crop(self, x: Tensor, corners: Tensor) -> Tensor:
        """The ``p x p`` patches of ``x`` [B, C, H, W] at ``corners`` [B, 2], as one gather."""
        import torch

        p = self.side((x.shape[-2], x.shape[-1]))
        offs = torch.arange(p, device=x.device)
        rows = (corners[:, 0, None] + offs)[:, :, None]  # [B, p, 1]
        cols = (corners[:, 1, None] + offs)[:, None, :]  # [B, 1, p]
        batch = torch.arange(x.shape[0], device=x.device)[:, None, None]
        return x.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()

    def pair(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        first, second = self.draw(a.shape[0], (a.shape[-2], a.shape[-1]), a.device)
        return self.crop(a, first), self.crop(b, second)

    def single(self, a: Tensor) -> Tensor:
        """One patch anywhere: with no partner there is no distance to respect."""
        import torch

        h, w = a.shape[-2], a.shape[-1]
        p = self.side((h, w))
        count = torch.tensor([h - p + 1, w - p + 1], device=a.device)
        corner = (torch.rand(a.shape[0], 2, device=a.device) * count).long().minimum(count - 1)
        return self.crop(a, corner)

    # eval_view: the whole image (the default); the encoders pool globally, so they take any size.


class PatchesFamily(PairFamily):
    """``views.pairs: {kind: patches, size, distance}``."""

    kind: Literal["patches"] = "patches"
    size: float = Field(0.5, gt=0.0, le=1.0, description="patch side / image side")
    distance: float = Field(
        0.5, ge=0.0, le=1.0, description="centre distance / (image side - patch side); 0 = the same patch"
    )

    flat_keys: ClassVar[dict[str, str]] = {"patch_size": "size", "patch_distance": "distance"}

    def relation(self) -> Patches:
        return Patches(self.size, self.distance)


FAMILY = PatchesFamily
