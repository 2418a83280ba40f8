"""InfoMin's frequency view family: a low-pass view and a high-pass view of the same image.

Tian et al. (NeurIPS 2020) also split images by spatial frequency. Here the two bands meet at
``cutoff`` and ``gap`` removes a band of frequencies around the cut from both views: those are
the frequencies the two views would otherwise share most (each band's edge is where the other
begins), so widening the gap lowers what the views share without changing what kind of content
each holds.

Radial normalised frequency ``r = sqrt(fy^2 + fx^2) / sqrt(0.5^2 + 0.5^2)`` lies in [0, 1]
(fftfreq units, 0.5 = Nyquist). The low view keeps ``r < cutoff * (1 - gap)``, the high view keeps
``r >= cutoff + (1 - cutoff) * gap``. At gap 0 the masks are complementary, so
``low + (high - 0.5) == image`` up to float error; at gap 1 the low view is empty and the high
view keeps at most the Nyquist corner.

Ranges: the high view is returned offset by +0.5 so both views sit around [0, 1] like the other
relations' views. Neither view is clamped (clamping would break the exact reassembly and the
band-limiting), so ringing leaves them in about [-0.5, 1.5].
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


class FrequencyBands(RelationBase):
    """Views = a low band and a high band (offset by 0.5) of each image, ``gap`` apart."""

    def __init__(self, cutoff: float, gap: float):
        if not 0.0 < cutoff < 1.0:
            raise ValueError(f"frequency cutoff must be in (0, 1), got {cutoff}")
        if not 0.0 <= gap <= 1.0:
            raise ValueError(f"frequency gap must be in [0, 1], got {gap}")
        self.cutoff = float(cutoff)
        self.gap = float(gap)
        self._masks: dict[tuple[int, int, torch.device], tuple[Tensor, Tensor]] = {}

    def masks(self, h: int, w: int, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """(low, high) float masks [h, w // 2 + 1] over ``rfft2`` coefficients, cached per size and
        device so a training step only multiplies."""
        import torch

        device = torch.device(device if device is not None else "cpu")
        key = (h, w, device)
        if key not in self._masks:
            fy = torch.fft.fftfreq(h, device=device, dtype=torch.float64)[:, None]
            fx = torch.fft.rfftfreq(w, device=device, dtype=torch.float64)[None, :]
            r = (fy.square() + fx.square()).sqrt() / math.sqrt(0.5)
            low = r < self.cutoff * (1 - self.gap)
            high = r >= self.cutoff + (1 - self.cutoff) * self.gap
            self._masks[key] = (low.float(), high.float())
        return self._masks[key]

    def _band(self, x: Tensor, which: int) -> Tensor:
        import torch

        h, w = x.shape[-2], x.shape[-1]
        spec = torch.fft.rfft2(x if x.dtype in (torch.float32, torch.float64) else x.float())  # no half FFTs
        return torch.fft.irfft2(spec * self.masks(h, w, x.device)[which], s=(h, w))

    def low(self, x: Tensor) -> Tensor:
        return self._band(x, 0).to(x.dtype)

    def high(self, x: Tensor) -> Tensor:
        """High band + 0.5, so it is centred like an image rather than around 0."""
        return (self._band(x, 1) + 0.5).to(x.dtype)

    def pair(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        return self.low(a), self.high(b)

    def single(self, a: Tensor) -> Tensor:
        return self.low(a)



class FrequencyFamily(PairFamily):
    """``views.pairs: {kind: frequency, cutoff, gap}``."""

    kind: Literal["frequency"] = "frequency"
    cutoff: float = Field(0.25, gt=0.0, lt=1.0, description="the band edge, radial, in (0, 1)")
    gap: float = Field(0.0, ge=0.0, le=1.0, description="the gap around the cutoff that neither view keeps; 0 = none")

    flat_keys: ClassVar[dict[str, str]] = {"frequency_cutoff": "cutoff", "frequency_gap": "gap"}

    def relation(self) -> FrequencyBands:
        return FrequencyBands(self.cutoff, self.gap)


FAMILY = FrequencyFamily
