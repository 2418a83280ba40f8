"""What every view-pair source shares: the interface the trainer, the view-MI measurement, the
view grids and the throughput benchmark call, and the relation that turns two augmented copies
of an image into the two views.

A pair source answers one question: given the indices of a batch of training images, what are
the two views the contrastive loss compares? Every source here is built the same way:

1. each view starts as the image itself (``toy`` re-renders the second one from the factors the
   views share instead);
2. each view is one independent draw of the augmentation (the built-in pipeline, then any
   Kornia stages); at ``views.strength: 0`` with no stages this is the identity;
3. a *relation* picks what each view keeps of its augmented copy: all of it (``augment``), a
   patch at a controlled distance from the other view's patch (``patches``), a group of colour
   channels (``channels``), a frequency band (``frequency``) or a rotation (``rotation``).

Each family declares its knobs and builds its relation in its own module (``family.py`` says how).

So the relation is what decides *how the views relate*, and the augmentation on top erodes
whatever they still share. Everything runs on the images' device as batched tensor ops, with
random draws from torch's global RNG (a trainer's seed makes them reproducible).

This package imports torch only where a view is made, never at import: the config validates a
spec's ``views.pairs`` through the families' knob models, and spec validation stays torch-free.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn


class Relation(Protocol):
    """How two augmented copies ``a`` and ``b`` of the same images become the two views.

    ``a`` and ``b`` are float [B, C, H, W] in [0, 1] (identical at strength 0). A relation draws
    any randomness it needs per sample, on the tensors' device.
    """

    def pair(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """The two views, each [B, C', H', W'] (the same shape for both)."""
        ...

    def single(self, a: Tensor) -> Tensor:
        """View 1 alone, for methods that take one view a step (IR)."""
        ...

    def eval_view(self, x: Tensor) -> Tensor:
        """What the encoder sees of an un-augmented image at evaluation (kNN, linear probe):
        the whole image in the representation the views are cut from."""
        ...

    def out_channels(self, channels: int) -> int:
        ...

    learner: nn.Module | None
    """A module the trainer optimises against the encoder (a view generator); None for fixed views."""

    def bind(self, channels: int, device: torch.device) -> None:
        """Build whatever depends on the images (a learner); the pair source calls it once."""
        ...


class RelationBase:
    """Defaults a relation may keep: view 1 alone is drawn as a pair's first view is, the encoder
    sees whole images at evaluation, the views keep the images' channels, nothing is learned."""

    learner: nn.Module | None = None

    def bind(self, channels: int, device: torch.device) -> None:
        return None

    def pair(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def single(self, a: Tensor) -> Tensor:
        return self.pair(a, a)[0]

    def eval_view(self, x: Tensor) -> Tensor:
        return x

    def out_channels(self, channels: int) -> int:
        return channels


class Identity(RelationBase):
    """The default relation: each view is its whole augmented copy."""

    def pair(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        return a, b

    def single(self, a: Tensor) -> Tensor:
        return a


Augment = Callable[["Tensor"], "Tensor"]  # float [N,C,H,W] -> one random view each, same shape


class PairSource:
    """``source(idx, need_second) -> (v1, v2 | None)``: the views of training images ``idx``.

    ``images`` are the training images (uint8 [N, C, H, W], on the training device). ``augment``
    makes one random view of each image of a float batch (None: no augmentation). ``second``
    optionally maps ``idx`` to the float images the second view starts from (the toy
    re-renderer); by default both views start from the same images.
    """

    def __init__(
        self,
        images: Tensor,
        augment: Augment | None = None,
        relation: Relation | None = None,
        second: Callable[[Tensor], Tensor] | None = None,
        name: str = "augment",
    ):
        self.images = images
        self.augment = augment
        self.relation = relation or Identity()
        self.second = second
        self.name = name
        self.relation.bind(int(images.shape[1]), images.device)

    @property
    def learner(self) -> nn.Module | None:
        """The relation's trainable view generator, if its views are learned."""
        return self.relation.learner

    @property
    def channels(self) -> int:
        """Channels of every view (what the encoder's first layer takes)."""
        return self.relation.out_channels(int(self.images.shape[1]))

    def _augment(self, x: Tensor) -> Tensor:
        return self.augment(x) if self.augment is not None else x

    def __call__(self, idx: Tensor, need_second: bool = True) -> tuple[Tensor, Tensor | None]:
        import torch

        x = self.images[idx].float().div_(255.0)
        if not need_second:
            return self.relation.single(self._augment(x)), None
        y = self.second(idx) if self.second is not None else x
        both = self._augment(torch.cat((x, y)))  # one batched draw for both views
        b = x.shape[0]
        return self.relation.pair(both[:b], both[b:])

    def first_view(self, images: Tensor) -> Tensor:
        """View 1 of ``images`` (uint8, any split), drawn as a pair's first view is drawn.

        For measuring what one view keeps of the label on images that are not the training ones
        (the validation split). The relation gets the same augmented copy twice: its first view
        depends only on that copy, so this is the first view's distribution exactly.
        """
        a = self._augment(images.float().div(255.0))
        return self.relation.pair(a, a)[0]

    def eval_view(self, x: Tensor) -> Tensor:
        return self.relation.eval_view(x)

