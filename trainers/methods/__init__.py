"""Contrastive methods as plugins: each decides which similarities are the candidates.

- ``knobs.py``: every method's knobs and the registry the config's ``method`` section is built
  from (torch-free);
- ``base.py``: the ``Method`` module and ``StepResult``, the post-step contract;
- one module per method (``simclr.py``, ``moco.py``, ``ir.py``), whose ``METHOD`` class
  ``build_method`` instantiates.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from trainers.methods.knobs import REGISTRY, MethodKnobs

if TYPE_CHECKING:
    from trainers.methods.base import Method
    from trainers.models import Encoder


def build_method(encoder: Encoder, knobs: MethodKnobs, n_train: int) -> Method:
    """The method ``knobs.name`` names, training ``encoder`` on ``n_train`` images."""
    name = knobs.name
    if REGISTRY.get(name) is not type(knobs):
        raise TypeError(f"knobs of type {type(knobs).__name__} are not the registered knobs of method {name!r}")
    return importlib.import_module(f"trainers.methods.{name}").METHOD(encoder, knobs, n_train)
