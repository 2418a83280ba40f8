"""What a spec may say about the contrastive method: one knob model per method, and the registry.

Each method declares its knobs as a strict pydantic model whose ``name: Literal["<method>"]`` is
the discriminator of the config's ``method`` section (``trainers/config.py`` builds that section
from ``REGISTRY``). The implementation of method ``<name>`` is the ``METHOD`` class of the module
``trainers/methods/<name>.py``, imported only when a training builds it: this module imports no
torch, so validating a spec stays cheap (``search/spec.py`` never loads torch).

Adding a method: its module, its knob model here, and one line in ``REGISTRY``.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from trainers.domains import domain_values, is_domain
from trainers.errors import SpecError


class MethodKnobs(BaseModel):
    """The knobs every method has; strict and closed like every config section."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str  # each method narrows it to Literal["<method>"] with that default
    temperature: float = Field(0.2, gt=0.0, le=10.0)

    @classmethod
    def method_name(cls) -> str:
        """The method's ``name``: the one value of its Literal."""
        return get_args(cls.model_fields["name"].annotation)[0]


class SimCLRKnobs(MethodKnobs):
    """SimCLR: the candidates are the other 2B-2 views of the batch; no knobs of its own."""

    name: Literal["simclr"] = "simclr"


class MoCoKnobs(MethodKnobs):
    """MoCo: a queue of keys from a momentum (EMA) copy of the encoder."""

    name: Literal["moco"] = "moco"
    queue_size: int = Field(4096, ge=16, le=1_000_000, description="MoCo queue length K")
    momentum: float = Field(0.99, ge=0.0, le=1.0, description="MoCo key-encoder EMA")
    bn_groups: int = Field(
        1, ge=1, le=64, description="MoCo: BatchNorm groups with keys shuffled across them (shuffling BN); 1 = off"
    )
    symmetric: bool = Field(
        False, description="MoCo: average the loss with the views swapped (MoCo v3); each image trains the query twice"
    )


class IRKnobs(MethodKnobs):
    """Instance discrimination: a memory bank with one slowly updated entry per training image."""

    name: Literal["ir"] = "ir"
    bank_momentum: float = Field(0.5, ge=0.0, lt=1.0, description="IR memory-bank update m")
    num_negatives: int = Field(4096, ge=1, le=1_000_000, description="IR negatives drawn per anchor")


# The registry: one line per method. ``method.name`` omitted means DEFAULT.
REGISTRY: dict[str, type[MethodKnobs]] = {
    knobs.method_name(): knobs
    for knobs in (
        SimCLRKnobs,
        MoCoKnobs,
        IRKnobs,
    )
}
DEFAULT = "simclr"


def owners(knob: str) -> list[str]:
    """The registered methods that have ``knob`` (all of them for a shared knob)."""
    return [name for name, knobs in REGISTRY.items() if knob in knobs.model_fields]


def with_default_name(section: object) -> object:
    """A ``method`` mapping without ``name`` is the default method's (inserted before validation)."""
    if isinstance(section, dict) and "name" not in section:
        return {"name": DEFAULT, **section}
    return section


def own_knobs(section: dict) -> dict:
    """The section without the knobs of other registered methods.

    A spec that searches ``method.name`` may set each method's knobs side by side; every point
    keeps those of its own method (so a SimCLR trial neither validates nor logs MoCo's queue).
    Keys no method has are kept, so they still fail as unknown keys.
    """
    knobs = REGISTRY.get(section.get("name")) if isinstance(section.get("name"), str) else None
    if knobs is None:
        return section
    return {k: v for k, v in section.items() if k in knobs.model_fields or not owners(k)}


def searched_methods(raw: dict) -> list | None:
    """The values a spec's searched ``method.name`` takes; None when it is a constant."""
    section = raw.get("method")
    name = section.get("name") if isinstance(section, dict) else None
    return domain_values(name) if is_domain(name) else None


def check_searched_methods(raw: dict) -> None:
    """With ``method.name`` searched, each method knob must belong to one of the searched methods."""
    names = searched_methods(raw)
    for knob in raw["method"] if names else ():
        mine = owners(knob)
        if mine and not set(mine) & set(names):
            raise SpecError(f"method.{knob}", f"only applies to method.name: {' or '.join(mine)} "
                                              f"(this spec searches {', '.join(map(str, names))})")


def with_method_for_probe(raw: dict, values: dict) -> dict:
    """``values`` of one point; when they probe a method knob of a spec that searches
    ``method.name`` (and do not fix the name), the point is the first searched method having it."""
    names = searched_methods(raw)
    knobs = [k.removeprefix("method.") for k in values if k.startswith("method.")]
    if not names or not knobs or "method.name" in values:
        return values
    fitting = [n for n in names if all(n in owners(k) for k in knobs)]
    return {**values, "method.name": fitting[0]} if fitting else values
