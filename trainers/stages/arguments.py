"""A stage's arguments: checked against its constructor's signature, then the stage is built.

Names come from the signature (unknown and missing arguments are refused with the accepted
ones listed). Values are validated by pydantic (a ``TypeAdapter`` per argument) over the
signature's annotations, mapped once per argument so that the checks stay strict and fit YAML:

- ``bool``/``int``/``float``/``str`` are strict (``p: true`` or ``p: "0.5"`` is refused, an int
  is a fine float);
- a tuple or list annotation takes a YAML list (a tuple comes out) or, as kornia widens a number
  into a range (``hue: 0.1`` means ``(-0.1, 0.1)``), a single number;
- ``Tensor`` takes numbers or nested lists of numbers (a float32 tensor comes out);
- a union tries its arms left to right, lenient arms (tensors, kornia enums, classes pydantic
  does not know, which kornia itself checks when the module is built) last.

Then the domains the annotations cannot state (``p`` in [0, 1], ``std`` >= 0) and, when built,
kornia's own checks: an exception from the constructor becomes a :class:`StageError` naming the
argument when that can be told.
"""

from __future__ import annotations

import difflib
import enum
import functools
import inspect
import re
import types
import typing
import warnings
from collections.abc import Sequence
from typing import Annotated, Any

import torch
from pydantic import Field, PlainValidator, Strict, TypeAdapter, ValidationError
from torch import Tensor

from trainers.stages.errors import StageError
from trainers.stages.names import resolve_stage_class, stage_name

__all__ = ["build_stage", "check_kwargs", "construct"]


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_union(origin: object) -> bool:
    return origin is typing.Union or origin is types.UnionType


def _flatten(v: object):
    if isinstance(v, (list, tuple)):
        for x in v:
            yield from _flatten(x)
    else:
        yield v


# --------------------------------------------------------------------------------------------------
# Annotation -> the type pydantic validates


def _number(value: object) -> object:
    if not _is_number(value):
        raise ValueError("not a number")
    return value


def _tensor(value: object) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if _is_number(value) or (isinstance(value, (list, tuple)) and value and all(map(_is_number, _flatten(value)))):
        return torch.tensor(value, dtype=torch.float32)  # a ragged list raises ValueError: refused
    raise ValueError("not a tensor, number or list of numbers")


def _enum_like(cls: type[enum.Enum]):
    def check(value: object) -> object:  # kornia converts the name or the number itself
        if isinstance(value, (cls, str, int)) and not isinstance(value, bool):
            return value
        raise ValueError(f"not a {cls.__name__}")

    return check


_NUMBER = Annotated[Any, PlainValidator(_number)]
_TENSOR = Annotated[Any, PlainValidator(_tensor)]


def _left_to_right(*arms: object) -> object:
    """A union whose arms are tried in order (pydantic's default picks the "best" match instead)."""
    return Annotated[typing.Union[arms], Field(union_mode="left_to_right")]  # noqa: UP007 -- arms known at run time


def _field_type(ann: object) -> tuple[object, bool]:
    """The pydantic type of a constructor annotation, and whether it is lenient (tried last in a union)."""
    if ann is inspect.Parameter.empty or ann is typing.Any or ann is object:
        return Any, True
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if _is_union(origin):
        arms = sorted((_field_type(a) for a in args if a is not type(None)), key=lambda arm: arm[1])  # strict first
        one = arms[0][0] if len(arms) == 1 else _left_to_right(*(t for t, _ in arms))
        return (one | None if type(None) in args else one), all(lenient for _, lenient in arms)
    if origin is typing.Literal:
        return ann, False
    if origin in (tuple, list, Sequence):
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            seq = tuple[_field_type(args[0])[0], ...]
        elif origin is tuple:
            seq = tuple[tuple(_field_type(a)[0] for a in args)] if args and args != ((),) else tuple[()]
        else:
            seq = (list if origin is list else Sequence)[_field_type(args[0])[0] if args else Any]
        return _left_to_right(seq, _NUMBER), False
    if ann is type(None):
        return type(None), False
    if ann in (bool, int, float, str):
        return Annotated[ann, Strict()], False
    if ann is Tensor:
        return _TENSOR, True
    if inspect.isclass(ann) and issubclass(ann, enum.Enum):
        return Annotated[Any, PlainValidator(_enum_like(ann))], True
    return Any, True  # a class pydantic does not know: kornia decides


def _ann_str(ann: object) -> str:
    """An annotation as an error message says it (``a list of 2 (float, float)``)."""
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


# --------------------------------------------------------------------------------------------------
# The signature


@functools.cache
def _signature(cls: type) -> tuple[dict[str, inspect.Parameter], dict[str, object], bool]:
    """``cls``'s keyword parameters, their annotations, and whether it takes ``**kwargs``."""
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
    return params, {n: hints.get(n, p.annotation) for n, p in params.items()}, var_kw


@functools.cache
def _adapter(cls: type, arg: str) -> TypeAdapter:
    """The validator of argument ``arg`` of ``cls``, built on first use (pydantic builds are not free)."""
    return TypeAdapter(_field_type(_signature(cls)[1][arg])[0])


def check_kwargs(cls: type, kwargs: dict | None, name: str | None = None) -> dict:
    """Check a stage's arguments against ``cls``'s constructor; returns them validated (tuples, tensors).

    Unknown argument names and missing required arguments are refused from the signature, values by
    their annotations (see the module docstring), ``p``/``p_batch`` outside [0, 1] and a negative
    ``std``. Raises :class:`StageError` keyed ``<name>.<arg>``. ``name``: the stage name for error keys
    (default: derived from ``cls``). Kornia's own checks run only when the stage is built.
    """
    name = name or stage_name(cls)
    kwargs = dict(kwargs or {})
    params, anns, var_kw = _signature(cls)
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

    checked = {}
    for k, v in kwargs.items():
        if k not in params:  # taken by **kwargs: kornia decides
            checked[k] = v
            continue
        try:
            checked[k] = _adapter(cls, k).validate_python(v)
        except ValidationError:
            raise StageError(f"{name}.{k}", f"expected {_ann_str(anns[k])}, got {type(v).__name__} {v!r}") from None
    for k in ("p", "p_batch"):
        if k in checked and _is_number(checked[k]) and not 0.0 <= checked[k] <= 1.0:
            raise StageError(f"{name}.{k}", f"a probability must lie in [0, 1], got {checked[k]!r}")
    if "std" in checked and any(v < 0 for v in _flatten(checked["std"]) if _is_number(v)):
        # kornia draws noise * std: -s and s give the same views, so a search would count one point twice
        raise StageError(f"{name}.std", f"a standard deviation must be >= 0, got {checked['std']!r}")
    return checked


# --------------------------------------------------------------------------------------------------
# Building: kornia's own checks, blamed on an argument


def _blame(exc: BaseException, kwargs: dict, cls: type) -> str | None:
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
    params = _signature(cls)[0]
    culprits = []
    for k in kwargs:
        if k in params and params[k].default is not inspect.Parameter.empty:
            try:
                _quiet(cls, {a: v for a, v in kwargs.items() if a != k})
            except Exception:  # noqa: BLE001, S112 -- still failing without k: k is not the culprit
                continue
            culprits.append(k)
    return culprits[0] if len(culprits) == 1 else None


def _quiet(cls: type, kwargs: dict) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(**kwargs)


def construct(cls: type, kwargs: dict, name: str) -> torch.nn.Module:
    """Build ``cls`` from arguments :func:`check_kwargs` returned; kornia's errors become :class:`StageError`."""
    try:
        return _quiet(cls, kwargs)
    except Exception as exc:
        arg = _blame(exc, kwargs, cls)
        raise StageError(f"{name}.{arg}" if arg else name, f"{type(exc).__name__}: {exc}") from exc


def build_stage(name: str, kwargs: dict | None = None) -> torch.nn.Module:
    """Resolve ``name``, check ``kwargs`` and build the stage module: the one place a stage is built."""
    cls = resolve_stage_class(name)
    return construct(cls, check_kwargs(cls, kwargs, name=name), name)
