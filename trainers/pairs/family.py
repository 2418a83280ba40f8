"""What a view family is to the config: its knobs (a pydantic model with a ``kind``) and the
factory that builds its relation, so a new family is one module plus one registry line.

A family module defines one subclass of ``PairFamily``: ``kind: Literal["<name>"]`` (the
discriminator of ``views.pairs``), its knobs as fields with their ranges and descriptions, and
``relation()``. Everything else has a default here that most families keep: which datasets and
channel counts it accepts, the second view's images (the same images as view 1), and what the
evaluation view depends on. The registry (``trainers/pairs/registry.py``) lists the modules.

A family module imports nothing of the config, the data or the views, and torch only inside the
functions that make views: ``trainers/config.py`` builds ``views.pairs`` from the registry, and
validating a spec must not import torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, get_args

from pydantic import BaseModel, ConfigDict

from trainers.errors import KeyedError
from trainers.pairs.base import Identity, Relation

if TYPE_CHECKING:
    from torch import Tensor

    from trainers.data.bundle import DataBundle

KIND_KEY = "views.pairs.kind"


class PairFamily(BaseModel):
    """One view family's knobs; strict and closed like every config section."""

    model_config = ConfigDict(extra="forbid", strict=True)

    kind: str  # each family narrows it to Literal["<name>"] with that default

    datasets: ClassVar[tuple[str, ...] | None] = None  # the datasets it works on; None = any
    channels: ClassVar[tuple[int, ...] | None] = None  # the image channel counts it takes; None = any
    methods: ClassVar[tuple[str, ...] | None] = None  # the methods whose training it can serve; None = any
    learns: ClassVar[bool] = False  # views learned in the training: their MI exists only after it, per trial
    default_for: ClassVar[tuple[str, ...]] = ()  # datasets whose default family this is
    flat_keys: ClassVar[dict[str, str]] = {}  # views.<old key> of earlier versions -> its knob now

    @classmethod
    def name(cls) -> str:
        """The family's ``kind``: the one value of its Literal."""
        return get_args(cls.model_fields["kind"].annotation)[0]

    @classmethod
    def knobs(cls) -> tuple[str, ...]:
        return tuple(k for k in cls.model_fields if k != "kind")

    def check_data(self, dataset: str, channels: int) -> None:
        """KeyedError naming ``views.pairs.kind`` when this family cannot make views of the data."""
        if self.datasets is not None and dataset not in self.datasets:
            wanted = " or ".join(self.datasets)
            raise KeyedError(KIND_KEY, f"'{self.kind}' works on dataset {wanted}, not '{dataset}'")
        if self.channels is not None and channels not in self.channels:
            wanted = " or ".join(str(c) for c in self.channels)
            raise KeyedError(KIND_KEY, f"'{self.kind}' needs images with {wanted} channels, but dataset "
                                       f"'{dataset}' has {channels}")

    def check_method(self, method: str) -> None:
        """KeyedError naming ``method.name`` when this family's views cannot train with that method."""
        if self.methods is not None and method not in self.methods:
            wanted = " or ".join(self.methods)
            raise KeyedError("method.name", f"views.pairs kind '{self.kind}' trains with method {wanted}, "
                                            f"not '{method}'")

    def relation(self) -> Relation:
        """How two augmented copies become the two views (the default: each is its whole copy)."""
        return Identity()

    def second_view(self, data: DataBundle) -> Callable[[Tensor], Tensor] | None:
        """``idx -> float images`` the second view starts from; None = the same images as view 1."""
        return None

    def eval_key(self) -> dict[str, Any]:
        """What ``relation().eval_view`` depends on (the untrained-encoder floor is cached by it)."""
        return {"pairs": self.kind}
