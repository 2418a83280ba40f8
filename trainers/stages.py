"""Extra view stages from the spec: ``kornia.augmentation`` classes named in YAML, run on the batch.

A spec lists the stages under ``views.stages``, each one mapping ``{ClassName: {arg: value}}``::

    views:
      stages:
        - RandomErasing: {p: 0.5, scale: [0.02, 0.2]}
        - RandomSharpness: {sharpness: 0.5, p: 0.5}
        - auto.RandAugment: {n: 2, m: 10}

They run in order on the whole float ``[B, C, H, W]`` batch in ``[0, 1]``, after the built-in view
ops; each stage draws its own per-sample random parameters (kornia does that).

Names come from user YAML, so they are never import paths: a plain name is looked up as an
attribute of ``kornia.augmentation`` and ``auto.Name`` as one of ``kornia.augmentation.auto``,
nothing else. Accepted are

- concrete 2D image augmentations: subclasses of ``kornia.augmentation.AugmentationBase2D`` (the
  base of kornia's geometric and intensity 2D augmentations), except the exported abstract bases,
  ``Normalize``/``Denormalize`` (not augmentations: their output leaves ``[0, 1]``) and
  ``RandomDissolving`` (it loads a Stable Diffusion model);
- the auto-augment policies under ``auto.``: subclasses of
  ``kornia.augmentation.auto.PolicyAugmentBase`` (``AutoAugment``, ``RandAugment``,
  ``TrivialAugment``).

Refused are containers (``AugmentationSequential``, ``ImageSequential``, ``VideoSequential``,
``PatchSequential``, the dispatchers, ``auto.PolicySequential``), 3D/volumetric augmentations
(``AugmentationBase3D``) and mix augmentations (``MixAugmentationBaseV2``: ``RandomMixUpV2``,
``RandomCutMixV2``, ``RandomMosaic``, ``RandomJigsaw``, ``PatchMix``, ``RandomTransplantation``),
which take labels or masks or change what a batch means.

Errors are :class:`StageError` with a dotted ``key`` relative to the stage entry (``RandomErasing``,
``RandomErasing.scale``) or, from :func:`stage_entries`, to the stage list (``"0"``), and, from
:class:`Stages`, the stage's ``index`` in the list. ``err.path`` joins the two; a caller prefixes
it with where the list sits in the spec (``views.stages.``).

Note: kornia augmentations are not free of host syncs and Python branching, unlike the built-in
view ops (see ``trainers/views.py``): stages cost what kornia costs.
"""

from __future__ import annotations

import contextlib
import difflib
import enum
import inspect
import re
import types
import typing
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "StageError",
    "Stages",
    "accepted_stage_names",
    "build_stage",
    "check_kwargs",
    "check_on",
    "resolve_stage_class",
    "stage_entries",
    "stage_name",
]

ENTRY_SHAPE = "each stage is one mapping {ClassName: {arg: value}}"
# Far more than any augmentation pipeline needs, and few enough to build and probe in a second.
MAX_STAGES = 64

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


class StageError(ValueError):
    """A stage entry is invalid.

    ``key``: dotted, relative to the stage entry (``"RandomErasing"``, ``"RandomErasing.scale"``) or, for
    errors about the list's shape, to the list (``"0"``). ``index``: the stage's position in the list when
    the error comes from :class:`Stages` (else ``None``). ``reason``: what is wrong.
    """

    def __init__(self, key: str, reason: str, index: int | None = None):
        self.key, self.reason, self.index = key, reason, index
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        """Rebuild from the fields: a trial's error crosses Ray (pickled) with its own message."""
        return (type(self), (self.key, self.reason, self.index))

    @property
    def path(self) -> str:
        """The key relative to the stage list: ``"<index>.<key>"`` when the index is known."""
        return self.key if self.index is None else f"{self.index}.{self.key}"

    def at(self, index: int) -> StageError:
        """The same error, placed at stage ``index`` of the list."""
        return StageError(self.key, self.reason, index)


# --------------------------------------------------------------------------------------------------
# Names -> classes


def _modules():
    import kornia.augmentation as K
    import kornia.augmentation.auto as A

    return K, A


def _refusal(qual: str, obj: object) -> str | None:
    """Why ``obj`` (found under the stage name ``qual``) is not a usable stage, or None if it is."""
    K, A = _modules()
    from kornia.augmentation.base import _BasicAugmentationBase
    from kornia.augmentation.container.base import SequentialBase

    if not inspect.isclass(obj):
        return f"is not a class (it is a {type(obj).__name__})"
    if not issubclass(obj, torch.nn.Module):
        return "is not a torch.nn.Module"
    short = qual.removeprefix("auto.")
    if qual.startswith("auto."):
        if obj is A.PolicyAugmentBase:
            return "is an abstract base class; use auto.RandAugment, auto.AutoAugment or auto.TrivialAugment"
        if issubclass(obj, A.PolicyAugmentBase):
            return None
        if issubclass(obj, SequentialBase):
            return "is a container of augmentations, not an augmentation; list the stages directly"
        return "is not an auto-augment policy (accepted: auto.RandAugment, auto.AutoAugment, auto.TrivialAugment)"
    if issubclass(obj, (SequentialBase, K.ManyToManyAugmentationDispather, K.ManyToOneAugmentationDispather)):
        return "is a container of augmentations, not an augmentation; list the stages directly"
    if issubclass(obj, K.AugmentationBase3D):
        return "is a 3D (volumetric/video) augmentation; stages act on [B, C, H, W] image batches"
    if issubclass(obj, K.MixAugmentationBaseV2):
        return (
            "is a mix augmentation: it combines samples of the batch and takes labels or masks, which would "
            "change what a contrastive batch means; not supported as a view stage"
        )
    if short in _ABSTRACT_2D:
        return "is an abstract base class, not an augmentation"
    if short in _REFUSED_2D:
        return _REFUSED_2D[short]
    if issubclass(obj, K.AugmentationBase2D):
        return None
    if issubclass(obj, _BasicAugmentationBase):
        return "is not a 2D image augmentation (not an AugmentationBase2D)"
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


# --------------------------------------------------------------------------------------------------
# Arguments: names from the signature, YAML values coerced by the annotations, then kornia builds it


_NO = object()  # "does not match"


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_union(origin: object) -> bool:
    return origin is typing.Union or origin is getattr(types, "UnionType", None)


def _ann_str(ann: object) -> str:
    if ann is type(None):
        return "null"
    if ann is Tensor:
        return "tensor"
    if inspect.isclass(ann):
        return ann.__name__
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if _is_union(origin):
        return " or ".join(dict.fromkeys(_ann_str(a) for a in args))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_ann_str(args[0])}"
        return f"a list of {len(args)} ({', '.join(_ann_str(a) for a in args)})"
    if origin in (list, Sequence):
        return f"a list of {_ann_str(args[0])}" if args else "a list"
    if origin is typing.Literal:
        return " or ".join(repr(a) for a in args)
    return str(ann).replace("typing.", "")


def _coerce(value: object, ann: object) -> object:
    """``value`` made to fit ``ann`` (YAML lists become tuples where a tuple is expected), or ``_NO``.

    Annotations this does not understand (kornia enums, ``Any``, other classes) let the value through
    unchanged: kornia checks it when the module is built.
    """
    if ann is inspect.Parameter.empty or ann is typing.Any or ann is object:
        return value
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if _is_union(origin):
        lenient = False
        for arm in args:
            if _strict(arm):
                out = _coerce(value, arm)
                if out is not _NO:
                    return out
            else:
                lenient = True
        if lenient:  # e.g. Union[str, int, Resample] failing str/int, or a Tensor arm: pass it on
            for arm in args:
                if not _strict(arm):
                    out = _coerce(value, arm)
                    if out is not _NO:
                        return out
        return _NO
    if origin is typing.Literal:
        return value if value in args else _NO
    if origin in (tuple, list, Sequence) and _is_number(value):
        return value  # kornia takes a number for many ranges annotated as tuples (hue: 0.1 means (-0.1, 0.1))
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return _NO
        if len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],) * len(value)
        if args == ((),):  # Tuple[()]
            args = ()
        if len(value) != len(args):
            return _NO
        out = tuple(_coerce(v, a) for v, a in zip(value, args))
        return _NO if any(o is _NO for o in out) else out
    if origin in (list, Sequence):
        if not isinstance(value, (list, tuple)):
            return _NO
        out = [_coerce(v, args[0]) if args else v for v in value]
        return _NO if any(o is _NO for o in out) else out
    if ann is type(None):
        return value if value is None else _NO
    if ann is bool:
        return value if isinstance(value, bool) else _NO
    if ann is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _NO
    if ann is float:
        return float(value) if _is_number(value) else _NO
    if ann is str:
        return value if isinstance(value, str) else _NO
    if ann is Tensor:
        if isinstance(value, Tensor):
            return value
        if _is_number(value) or (
            isinstance(value, (list, tuple)) and value and all(_is_number(v) for v in _flatten(value))
        ):
            try:
                return torch.tensor(value, dtype=torch.float32)
            except (TypeError, ValueError):
                return _NO
        return _NO
    if inspect.isclass(ann) and issubclass(ann, enum.Enum):
        return value if isinstance(value, (ann, str, int)) and not isinstance(value, bool) else _NO
    return value  # a class we don't know: kornia decides


def _strict(arm: object) -> bool:
    """Whether ``_coerce`` judges ``arm`` by itself (rather than letting values through to kornia)."""
    return not (arm is Tensor or (inspect.isclass(arm) and issubclass(arm, enum.Enum)))


def _flatten(v: object):
    if isinstance(v, (list, tuple)):
        for x in v:
            yield from _flatten(x)
    else:
        yield v


def _signature(cls: type) -> tuple[dict[str, inspect.Parameter], dict[str, object], bool]:
    sig = inspect.signature(cls.__init__)
    params = {
        n: p
        for n, p in list(sig.parameters.items())[1:]
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001 -- unresolvable annotations: check names only
        hints = {}
    return params, hints, var_kw


def _blame(exc: BaseException, kwargs: dict, cls: type, built) -> str | None:
    """The argument an exception from building ``cls`` is about, if it can be told."""
    msg = str(exc)
    mentioned = [
        (m.start(), k)
        for k in kwargs
        for m in [re.search(rf"(?<![A-Za-z0-9_]){re.escape(k)}(?![A-Za-z0-9_])", msg)]
        if m
    ]
    if mentioned:
        return min(mentioned)[1]
    if len(kwargs) == 1:
        return next(iter(kwargs))
    # The one argument whose removal (back to its default) lets the module build.
    params, _, _ = _signature(cls)
    culprits = []
    for k in kwargs:
        if k in params and params[k].default is not inspect.Parameter.empty:
            try:
                built({a: v for a, v in kwargs.items() if a != k})
            except Exception:  # noqa: BLE001, S112 -- still failing without k: k is not the culprit
                continue
            culprits.append(k)
    return culprits[0] if len(culprits) == 1 else None


def check_kwargs(cls: type, kwargs: dict | None, name: str | None = None) -> torch.nn.Module:
    """Check a stage's arguments and build it; returns the built module.

    Unknown argument names and missing required arguments are refused from the constructor's signature;
    values are checked against its annotations (YAML lists become tuples where a tuple is expected), ``p``
    and ``p_batch`` must lie in [0, 1], and then the module is built, any exception kornia raises becoming
    a :class:`StageError` naming the argument when that can be told, else the class. ``name``: the stage
    name for error keys (default: derived from ``cls``).
    """
    name = name or stage_name(cls)
    kwargs = dict(kwargs or {})
    params, hints, var_kw = _signature(cls)
    for k in kwargs:
        if not isinstance(k, str):
            raise StageError(name, f"argument names are strings, got {k!r}")
    unknown = [k for k in kwargs if k not in params]
    if unknown and not var_kw:
        close = difflib.get_close_matches(unknown[0], list(params), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise StageError(
            f"{name}.{unknown[0]}",
            f"unknown argument {unknown[0]!r}{hint}; {name} accepts: {', '.join(params) or 'no arguments'}",
        )
    missing = [n for n, p in params.items() if p.default is inspect.Parameter.empty and n not in kwargs]
    if missing:
        raise StageError(f"{name}.{missing[0]}", f"missing required argument(s): {', '.join(missing)}")

    coerced = {}
    for k, v in kwargs.items():
        ann = hints.get(k, params[k].annotation if k in params else inspect.Parameter.empty)
        out = _coerce(v, ann)
        if out is _NO:
            raise StageError(f"{name}.{k}", f"expected {_ann_str(ann)}, got {type(v).__name__} {v!r}")
        coerced[k] = out
    for k in ("p", "p_batch"):
        if k in coerced and _is_number(coerced[k]) and not 0.0 <= coerced[k] <= 1.0:
            raise StageError(f"{name}.{k}", f"a probability must lie in [0, 1], got {coerced[k]!r}")
    if "std" in coerced and any(v < 0 for v in _flatten(coerced["std"]) if _is_number(v)):
        # kornia draws noise * std: -s and s give the same views, so a search would count one point twice
        raise StageError(f"{name}.std", f"a standard deviation must be >= 0, got {coerced['std']!r}")

    def built(kw: dict) -> torch.nn.Module:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls(**kw)

    try:
        return built(coerced)
    except Exception as exc:
        arg = _blame(exc, coerced, cls, built)
        key = f"{name}.{arg}" if arg else name
        raise StageError(key, f"{type(exc).__name__}: {exc}") from exc


def build_stage(name: str, kwargs: dict | None = None) -> torch.nn.Module:
    """Resolve ``name``, check ``kwargs`` and build the stage module."""
    return check_kwargs(resolve_stage_class(name), kwargs, name=name)


# --------------------------------------------------------------------------------------------------
# The YAML list and the stage pipeline


def stage_entries(raw: object) -> list[tuple[str, dict]]:
    """Validate the YAML stage list's shape: ``[{ClassName: {arg: value} or null}, ...]`` -> ``[(name, kwargs)]``.

    Only the shape is checked (names and arguments are checked by :func:`build_stage`). Errors name the
    entry's index (key ``"0"``) or, for a kwargs value that is not a mapping, ``"0.ClassName"``.
    """
    if raw is None:
        return []
    if not isinstance(raw, (list, tuple)):
        raise StageError("", f"stages are a list of mappings {{ClassName: {{arg: value}}}}, got {type(raw).__name__}")
    if len(raw) > MAX_STAGES:
        raise StageError(str(MAX_STAGES), f"the list has {len(raw):,} stages; a pipeline holds at most {MAX_STAGES}")
    out = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or len(entry) != 1:
            got = (
                f"a mapping with {len(entry)} keys" if isinstance(entry, dict) else f"{type(entry).__name__} {entry!r}"
            )
            raise StageError(str(i), f"{ENTRY_SHAPE}; got {got}")
        ((name, kwargs),) = entry.items()
        if not isinstance(name, str):
            raise StageError(str(i), f"{ENTRY_SHAPE}; the class name must be a string, got {name!r}")
        if kwargs is None:
            kwargs = {}
        if not isinstance(kwargs, dict):
            raise StageError(
                f"{i}.{name}",
                f"{ENTRY_SHAPE}; the arguments must be a mapping (or empty), got {type(kwargs).__name__} {kwargs!r}",
            )
        bad = [k for k in kwargs if not isinstance(k, str)]
        if bad:
            raise StageError(f"{i}.{name}", f"argument names are strings, got {bad[0]!r}")
        out.append((name, dict(kwargs)))
    return out


class Stages(torch.nn.Module):
    """The extra stages of a spec, applied in order to a float ``[B, C, H, W]`` batch in ``[0, 1]``.

    Built from ``[(name, kwargs), ...]`` (see :func:`stage_entries`); build errors are
    :class:`StageError` with the stage's ``index``. Calling it returns a batch of the same shape,
    clamped to ``[0, 1]`` (after every stage, so each stage sees valid images; with no stages the batch
    comes back as it is). Each stage draws its own per-sample random parameters from torch's global RNG;
    ``.to(device)`` makes kornia draw them on that device (else on the CPU, then copied over).
    """

    def __init__(self, entries: Sequence[tuple[str, dict]] = ()):
        super().__init__()
        self.names: list[str] = []
        mods = []
        for i, (name, kwargs) in enumerate(entries):
            try:
                mods.append(build_stage(name, kwargs))
            except StageError as e:
                raise e.at(i) from e.__cause__
            self.names.append(name)
        self.stages = torch.nn.ModuleList(mods)

    @classmethod
    def from_yaml(cls, raw: object) -> Stages:
        """Stages from the raw YAML list (shape checked by :func:`stage_entries`)."""
        return cls(stage_entries(raw))

    def __len__(self) -> int:
        return len(self.stages)

    def __bool__(self) -> bool:
        return len(self.stages) > 0

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or not x.is_floating_point():
            raise ValueError(f"stages take a float [B, C, H, W] batch, got {tuple(x.shape)} {x.dtype}")
        for i, (name, stage) in enumerate(zip(self.names, self.stages)):
            y = stage(x)
            if y.shape != x.shape:
                raise StageError(
                    name, f"changed the batch shape from {tuple(x.shape)} to {tuple(y.shape)}; stages must keep it", i
                )
            x = y.clamp(0.0, 1.0)
        return x

    def probe(
        self, channels: int, size: int | tuple[int, int], batch: int = 4, device: torch.device | str | None = None
    ) -> None:
        """Run every stage on a tiny random ``[batch, channels, H, W]`` batch; raise if one cannot run on it.

        Each stage runs with every probability inside it forced to 1, so an op that applies only sometimes
        is still exercised; an auto-augment policy additionally runs each of its sub-policies, since it
        draws only a few per call (RandAugment's "color" op, for one, needs 3 channels). Raises
        :class:`StageError` (key: the stage name, with its index) for a stage that fails on such a batch
        (e.g. a colour op on 1 channel) or changes its shape. Torch's global RNG is left as it was.
        ``device``: where the batch lives (default: the stages' device, else the CPU).
        """
        h, w = (size, size) if isinstance(size, int) else size
        device = torch.device(device) if device is not None else self._device()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.manual_seed(0)
            x = torch.rand(batch, channels, h, w, device=device)
            for i, (name, stage) in enumerate(zip(self.names, self.stages)):
                out = x
                with _all_applied(stage):
                    for what, module in _probe_targets(stage):
                        try:
                            y = module(x)
                        except Exception as exc:
                            raise StageError(
                                name,
                                f"{what}fails on a {channels}-channel {h}x{w} batch: {type(exc).__name__}: {exc}",
                                i,
                            ) from exc
                        if not isinstance(y, Tensor) or y.shape != x.shape:
                            shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
                            raise StageError(
                                name, f"{what}changes a {tuple(x.shape)} batch to {shape}; stages must keep it", i
                            )
                        if module is stage:
                            out = y
                x = out.clamp(0.0, 1.0)

    def _device(self) -> torch.device:
        for t in (*self.parameters(), *self.buffers()):
            return t.device
        for m in self.modules():
            if isinstance(getattr(m, "device", None), torch.device):
                return m.device
        return torch.device("cpu")

    def extra_repr(self) -> str:
        return ", ".join(self.names)


@contextlib.contextmanager
def _all_applied(stage: torch.nn.Module):
    """Within: every kornia augmentation inside ``stage`` applies to every sample (``p = p_batch = 1``)."""
    from kornia.augmentation.base import _BasicAugmentationBase

    saved = [(m, m.p, m.p_batch) for m in stage.modules() if isinstance(m, _BasicAugmentationBase)]
    try:
        for m, _, _ in saved:
            m.p, m.p_batch = 1.0, 1.0
        yield
    finally:
        for m, p, p_batch in saved:
            m.p, m.p_batch = p, p_batch


def _probe_targets(stage: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """What to run to probe ``stage``: the stage, then each sub-policy of an auto-augment policy."""
    from kornia.augmentation.auto import PolicyAugmentBase

    targets = [("", stage)]
    if isinstance(stage, PolicyAugmentBase):
        for j, sub in enumerate(stage.children()):
            ops = "+".join(type(getattr(op, "op", op)).__name__ for op in sub.children()) or type(sub).__name__
            targets.append((f"sub-policy {j} ({ops}) ", sub))
    return targets


def check_on(entries: Sequence[tuple[str, dict]] | Stages, channels: int, size: int | tuple[int, int]) -> Stages:
    """Build the stages (unless given built) and :meth:`Stages.probe` them; returns the :class:`Stages`."""
    stages = entries if isinstance(entries, Stages) else Stages(entries)
    stages.probe(channels, size)
    return stages
