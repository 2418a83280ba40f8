"""The ``infomin_toy`` view family: view 2 re-renders view 1 keeping only the shared factors.

View 1 is the training image itself; view 2 re-renders it from its factors, keeping each one
``views.pairs.shared`` lists and redrawing the others (class -> another object of the training
bank, of any class; background -> a random palette colour with fresh jitter and texture;
position -> a random placement). At ``views.strength`` 0 nothing else differs between the views,
so with every factor shared the two views are the same image (the trivial end of the testbed). A
strength above 0 also augments both views, which itself erodes shared factors (hue jitter
changes the background); the testbed's spec keeps it at 0.

The toy data module (and torch) are imported where they are used: the data module imports the
config, which imports this module through the registry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from trainers.pairs.family import PairFamily

if TYPE_CHECKING:
    from torch import Tensor

    from trainers.data.bundle import DataBundle
    from trainers.data.toy import ToyFactors

Factor = Literal["class", "background", "position"]  # trainers.data.toy.FACTORS (a test checks they agree)


class ToyRerender:
    """``idx -> float [B,3,S,S]``: the second view's images, sharing exactly ``shared`` with view 1."""

    def __init__(self, data: DataBundle, shared: list[str] | None):
        from trainers.data.toy import FACTORS

        if data.extras is None or "bank" not in data.extras:
            raise ValueError("the toy pair source needs a DataBundle from load_infomin_toy (extras['bank'] missing)")
        self.extras = data.extras
        self.shared = frozenset(FACTORS if shared is None else shared)
        self.bg_jitter = float(data.extras["bg_jitter"])  # read once: no host sync in the step

    def factors(self, idx: Tensor) -> ToyFactors:
        """The factors of training images ``idx`` (view 1)."""
        from trainers.data.toy import ToyFactors

        e = self.extras
        return ToyFactors(obj=e["obj"][idx], background=e["background"][idx], bg_rgb=e["bg_rgb"][idx],
                          texture=e["texture"][idx], position=e["position"][idx])

    def second_view_factors(self, idx: Tensor) -> ToyFactors:
        """View 2's factors: view 1's where shared, fresh uniform draws where not."""
        import torch

        from trainers.data.toy import jittered_colours

        f, e, dev, n = self.factors(idx), self.extras, idx.device, idx.shape[0]
        if "class" not in self.shared:  # another object of the bank, whatever its class
            m = e["bank"].shape[0]
            f.obj = (f.obj + torch.randint(1, max(m, 2), (n,), device=dev)) % m
        if "background" not in self.shared:
            f.background = torch.randint(0, e["palette"].shape[0], (n,), device=dev)
            f.bg_rgb = jittered_colours(f.background, e["palette"], self.bg_jitter)
            f.texture = torch.randint(0, e["noise"].shape[0], (n,), device=dev)
        if "position" not in self.shared:
            f.position = torch.randint(0, e["placements"].shape[0], (n,), device=dev)
        return f

    def __call__(self, idx: Tensor) -> Tensor:
        from trainers.data.toy import render_factors

        return render_factors(self.second_view_factors(idx), self.extras).float().div_(255)


class ToyFamily(PairFamily):
    """``views.pairs: {kind: toy, shared}``: the default (and only) family of ``infomin_toy``."""

    kind: Literal["toy"] = "toy"
    shared: list[Factor] | None = Field(None, description="the factors the two views share (the rest are "
                                                          "redrawn); None = all three")

    datasets = ("infomin_toy",)
    default_for = ("infomin_toy",)
    flat_keys: ClassVar[dict[str, str]] = {"shared": "shared"}

    def second_view(self, data: DataBundle) -> ToyRerender:
        return ToyRerender(data, self.shared)


FAMILY = ToyFamily
