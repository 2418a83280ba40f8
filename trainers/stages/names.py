"""Stage names -> ``kornia.augmentation`` classes, through Kornia's public API only.

Names come from user YAML, so they are never import paths: a plain name is looked up as an
attribute of ``kornia.augmentation`` and ``auto.Name`` as one of ``kornia.augmentation.auto``,
nothing else. What is accepted and refused (and why) is listed in the package docstring; the
class tests here use only the base classes Kornia exports.
"""

from __future__ import annotations

import difflib
import inspect
import re

import torch

from trainers.stages.errors import StageError

__all__ = ["accepted_stage_names", "augmentation_bases", "resolve_stage_class", "stage_name"]

_NAME_RE = re.compile(r"^(auto\.)?([A-Za-z][A-Za-z0-9_]*)$")

# Exported from kornia.augmentation but abstract: subclass them, don't use them.
_ABSTRACT_2D = {
    "AugmentationBase2D",
    "RigidAffineAugmentationBase2D",
    "GeometricAugmentationBase2D",
    "IntensityAugmentationBase2D",
}
# Concrete 2D classes refused on purpose, with the reason.
_REFUSED_2D = {
    "Normalize": "is a fixed normalisation, not an augmentation: its output leaves [0, 1] and stage output is "
    "clamped to [0, 1] (the model input is normalised elsewhere)",
    "Denormalize": "is a fixed de-normalisation, not an augmentation: stages take and return batches in [0, 1]",
    "RandomDissolving": "runs a Stable Diffusion model that must be downloaded; not usable as a view stage",
}
_CONTAINER = "is a container of augmentations, not an augmentation; list the stages directly"
_POLICIES = "auto.RandAugment, auto.AutoAugment or auto.TrivialAugment"


def _modules():
    import kornia.augmentation as K
    import kornia.augmentation.auto as A

    return K, A


def augmentation_bases() -> tuple[type, ...]:
    """Kornia's exported bases of single augmentations (2D, 3D, mix): every module with ``p``/``p_batch``."""
    K, _ = _modules()
    return (K.AugmentationBase2D, K.AugmentationBase3D, K.MixAugmentationBaseV2)


def _containers() -> tuple[type, ...]:
    """Kornia's exported containers (``AugmentationSequential``, ``PatchSequential`` and ``VideoSequential``
    subclass ``ImageSequential``) and dispatchers."""
    K, A = _modules()
    return (K.ImageSequential, A.PolicySequential, K.ManyToManyAugmentationDispather, K.ManyToOneAugmentationDispather)


def _refusal(qual: str, obj: object) -> str | None:
    """Why ``obj`` (found under the stage name ``qual``) is not a usable stage, or None if it is."""
    K, A = _modules()
    if not inspect.isclass(obj):
        return f"is not a class (it is a {type(obj).__name__})"
    if not issubclass(obj, torch.nn.Module):
        return "is not a torch.nn.Module"
    if qual.startswith("auto."):
        if obj is A.PolicyAugmentBase:
            return f"is an abstract base class; use {_POLICIES}"
        if issubclass(obj, A.PolicyAugmentBase):
            return None
        if issubclass(obj, _containers()):
            return _CONTAINER
        return f"is not an auto-augment policy (accepted: {_POLICIES.replace(' or ', ', ')})"
    if issubclass(obj, _containers()):
        return _CONTAINER
    if issubclass(obj, K.AugmentationBase3D):
        return "is a 3D (volumetric/video) augmentation; stages act on [B, C, H, W] image batches"
    if issubclass(obj, K.MixAugmentationBaseV2):
        return (
            "is a mix augmentation: it combines samples of the batch and takes labels or masks, which would "
            "change what a contrastive batch means; not supported as a view stage"
        )
    if qual in _ABSTRACT_2D:
        return "is an abstract base class, not an augmentation"
    if qual in _REFUSED_2D:
        return _REFUSED_2D[qual]
    if issubclass(obj, K.AugmentationBase2D):
        return None
    return "is not a kornia augmentation"


def accepted_stage_names() -> list[str]:
    """Every name :func:`resolve_stage_class` accepts, sorted (``auto.`` names last)."""
    K, A = _modules()
    plain = [n for n in dir(K) if not n.startswith("_") and _refusal(n, getattr(K, n)) is None]
    auto = [f"auto.{n}" for n in dir(A) if not n.startswith("_") and _refusal(f"auto.{n}", getattr(A, n)) is None]
    return sorted(plain) + sorted(auto)


def _suggest(name: str) -> str:
    known = accepted_stage_names()
    short = name.removeprefix("auto.")
    hints: list[str] = []
    if name.startswith("auto.") and short in known:
        hints.append(short)
    if not name.startswith("auto.") and f"auto.{name}" in known:
        hints.append(f"auto.{name}")
    lower = {k.lower(): k for k in known}
    hints += [lower[m] for m in difflib.get_close_matches(name.lower(), list(lower), n=3, cutoff=0.7)]
    if name.startswith("auto."):
        hints += [lower[m] for m in difflib.get_close_matches(short.lower(), list(lower), n=3, cutoff=0.7)]
    hints = list(dict.fromkeys(h for h in hints if h != name))[:3]
    return f"; did you mean {' or '.join(hints)}?" if hints else ""


def resolve_stage_class(name: str) -> type:
    """The augmentation class a stage name stands for.

    ``Name`` is looked up in ``kornia.augmentation`` only, ``auto.Name`` in ``kornia.augmentation.auto``
    only; nothing is imported by name. Raises :class:`StageError` (key: the name) for an unknown name
    (with close matches), a name that is not a plain class name, or a class that is not a usable stage.
    """
    if not isinstance(name, str):
        raise StageError(str(name), f"a stage name is a string, got {type(name).__name__}")
    m = _NAME_RE.match(name)
    if not m:
        raise StageError(
            name,
            "not a stage name: stages are classes of kornia.augmentation, named 'ClassName' or 'auto.ClassName' "
            "(import paths are not accepted)" + _suggest(name),
        )
    K, A = _modules()
    module, short = (A, m.group(2)) if m.group(1) else (K, m.group(2))
    where = "kornia.augmentation.auto" if m.group(1) else "kornia.augmentation"
    obj = getattr(module, short, None)
    if obj is None:
        raise StageError(name, f"unknown stage: no class {short!r} in {where}" + _suggest(name))
    why = _refusal(name, obj)
    if why is not None:
        raise StageError(name, f"{where}.{short} {why}")
    return obj


def stage_name(cls: type) -> str:
    """The stage name of an accepted class: ``Name`` or ``auto.Name``."""
    _, A = _modules()
    return f"auto.{cls.__name__}" if issubclass(cls, A.PolicyAugmentBase) else cls.__name__
