"""The view families, one line each: ``views.pairs`` is the discriminated union of their models.

A family is a module of ``trainers/pairs/`` whose ``FAMILY`` is a ``PairFamily`` subclass
(``family.py``); listing the module here is all it takes for specs, validation, the search and
the caches to know it (docs/design.md, "Adding a view family").
"""

from __future__ import annotations

from importlib import import_module
from typing import Annotated, Union

from pydantic import Field

from trainers.pairs.family import PairFamily

MODULES = (
    "augment",
    "patches",
    "channels",
    "frequency",
    "toy",
    "rotation",
    "learned",
)

FAMILIES: dict[str, type[PairFamily]] = {
    family.name(): family for family in (import_module(f"trainers.pairs.{m}").FAMILY for m in MODULES)
}
DEFAULT = "augment"  # the family of a dataset no family claims with ``default_for``

# The type of ``views.pairs``: pydantic picks the model by ``kind`` and names it in errors.
PairsSpec = Annotated[Union[tuple(FAMILIES.values())], Field(discriminator="kind")]  # noqa: UP007


def default_family(dataset: str) -> PairFamily:
    """The family in force when ``views.pairs`` is unset."""
    for family in FAMILIES.values():
        if dataset in family.default_for:
            return family()
    return FAMILIES[DEFAULT]()
