"""InfoMin's colour view family: luminance versus chrominance of one colour space.

Tian et al. (NeurIPS 2020) split an image's channels in a decorrelating colour space into two
views; which space is used changes how much the views share (Lab and YDbDr were among their
best). View 1 keeps the first channel (L or Y), view 2 the other two; the dropped channels are
zeroed rather than removed so both views are [B, 3, H, W] and feed one encoder, and so that
``v1 + v2`` is exactly the whole colour-space image (which ``to_rgb`` maps back to RGB).

Normalisations, chosen so every channel lies in about [0, 1] like the RGB inputs:

- Lab (kornia, sRGB D65): ``L / 100``, ``(a + 128) / 255``, ``(b + 128) / 255``.
- YDbDr: ``Y`` as is (in [0, 1]); ``Db / (2 * 1.333) + 0.5`` and ``Dr / (2 * 1.333) + 0.5``.
  Over the RGB cube Db and Dr each range over exactly [-1.333, 1.333] (the sums of the negative
  and of the positive coefficients of their rows), so all three channels land in [0, 1].
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

from pydantic import Field

from trainers.pairs.base import RelationBase
from trainers.pairs.family import PairFamily

if TYPE_CHECKING:
    from torch import Tensor

Space = Literal["lab", "ydbdr"]
SPACES = get_args(Space)
_CHROMA = 2 * 1.333  # Db and Dr span [-1.333, 1.333]: divide by the span, then shift by 0.5


@cache
def _constants() -> dict[str, Tensor]:
    """The colour transforms' constants, made on first use (torch is not imported with the config)."""
    import torch

    ydbdr = torch.tensor([[0.299, 0.587, 0.114], [-0.450, -0.883, 1.333], [-1.333, 1.116, 0.217]], dtype=torch.float64)
    # Normalised YDbDr = fwd @ rgb + shift; inverted once in float64 so the round trip is exact.
    fwd = ydbdr / torch.tensor([[1.0], [_CHROMA], [_CHROMA]], dtype=torch.float64)
    return {"fwd": fwd, "inv": torch.linalg.inv(fwd), "shift": torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64),
            "lab_scale": torch.tensor([100.0, 255.0, 255.0]), "lab_shift": torch.tensor([0.0, 128.0, 128.0])}


def _linear(m: Tensor, x: Tensor) -> Tensor:
    import torch

    return torch.einsum("ij,bjhw->bihw", m.to(x.device, x.dtype), x)


def _col(v: Tensor, x: Tensor) -> Tensor:
    return v.to(x.device, x.dtype).view(1, 3, 1, 1)


class ColourChannels(RelationBase):
    """Views = the first channel vs the other two of a normalised colour space (RGB input only)."""

    def __init__(self, space: str):
        if space not in SPACES:
            raise ValueError(f"colour space must be one of {SPACES}, got {space!r}")
        self.space = space
        self.c = _constants()  # read here, not in a (compiled) step

    def to_space(self, x: Tensor) -> Tensor:
        """RGB [B, 3, H, W] in [0, 1] -> the normalised colour space, each channel about [0, 1]."""
        if x.shape[1] != 3:
            raise ValueError(f"colour-channel views need RGB images (3 channels), got {x.shape[1]}")
        if self.space == "lab":
            import kornia

            return (kornia.color.rgb_to_lab(x) + _col(self.c["lab_shift"], x)) / _col(self.c["lab_scale"], x)
        return _linear(self.c["fwd"], x) + _col(self.c["shift"], x)

    def to_rgb(self, full: Tensor) -> Tensor:
        """The exact inverse of ``to_space`` (not clipped, so the round trip is exact)."""
        if self.space == "lab":
            import kornia

            return kornia.color.lab_to_rgb(full * _col(self.c["lab_scale"], full) - _col(self.c["lab_shift"], full), clip=False)
        return _linear(self.c["inv"], full - _col(self.c["shift"], full))

    @staticmethod
    def first(cs: Tensor) -> Tensor:
        """Luminance only; zeros keep three channels so ``first + rest`` is the whole image."""
        import torch

        return torch.cat((cs[:, :1], torch.zeros_like(cs[:, 1:])), 1)

    @staticmethod
    def rest(cs: Tensor) -> Tensor:
        """Chrominance only, luminance zeroed."""
        import torch

        return torch.cat((torch.zeros_like(cs[:, :1]), cs[:, 1:]), 1)

    def pair(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        return self.first(self.to_space(a)), self.rest(self.to_space(b))

    def single(self, a: Tensor) -> Tensor:
        return self.first(self.to_space(a))

    def eval_view(self, x: Tensor) -> Tensor:
        """Everything the two views were cut from: the full normalised colour-space image."""
        return self.to_space(x)

    def out_channels(self, channels: int) -> int:
        """Always 3; raises on non-RGB data so a grayscale dataset fails when the source is built."""
        if channels != 3:
            raise ValueError(f"colour-channel views need RGB images (3 channels), got {channels}")
        return 3


class ChannelsFamily(PairFamily):
    """``views.pairs: {kind: channels, color_space}``: RGB data only."""

    kind: Literal["channels"] = "channels"
    color_space: Space = Field("lab", description="L vs ab, or Y vs DbDr")

    channels = (3,)
    flat_keys: ClassVar[dict[str, str]] = {"color_space": "color_space"}

    def relation(self) -> ColourChannels:
        return ColourChannels(self.color_space)

    def eval_key(self) -> dict[str, Any]:
        return {"pairs": self.kind, "color_space": self.color_space}  # the eval view is the colour space


FAMILY = ChannelsFamily
