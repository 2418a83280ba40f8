"""The YAML stage list: its shape, and the spec-time check of every entry (memoised).

A spec is validated many times over (the default point, then each domain value substituted
alone), and each time the stage list is the same or differs in one argument: every distinct
``(name, arguments)`` entry is checked once per process (names and arguments, no module built);
a trial builds its modules once, from the validated list (``module.Stages``).
"""

from __future__ import annotations

import functools

from trainers.stages.arguments import check_kwargs
from trainers.stages.errors import StageError
from trainers.stages.names import resolve_stage_class

__all__ = ["ENTRY_SHAPE", "MAX_STAGES", "stage_entries", "validate_stages"]

ENTRY_SHAPE = "each stage is one mapping {ClassName: {arg: value}}"
# Far more than any augmentation pipeline needs, and few enough to check in well under a second.
MAX_STAGES = 64


def stage_entries(raw: object) -> list[tuple[str, dict]]:
    """Validate the YAML stage list's shape: ``[{ClassName: {arg: value} or null}, ...]`` -> ``[(name, kwargs)]``.

    Only the shape is checked (names and arguments: :func:`validate_stages`). Errors name the entry's
    index (key ``"0"``) or, for a kwargs value that is not a mapping, ``"0.ClassName"``.
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


def validate_stages(raw: object) -> list[tuple[str, dict]]:
    """The spec-time check of a stage list: its shape, then each entry's name and arguments.

    Returns the entries as :func:`stage_entries` does. Raises :class:`StageError`; an entry's error
    carries the entry's index (``err.path``: ``"1.RandomErasing.scal"``). Kornia's own checks in a
    constructor and what a stage does to the data's images are checked where the stages are built
    (``Stages``, ``check_on``).
    """
    entries = stage_entries(raw)
    for i, (name, kwargs) in enumerate(entries):
        try:
            key = _freeze((name, kwargs))
        except TypeError:  # a value YAML does not make (a tensor, an object): checked, not remembered
            err = _error_of(name, kwargs)
        else:
            err = _remembered_error(key)
        if err is not None:
            raise err.at(i)
    return entries


def _error_of(name: str, kwargs: dict) -> StageError | None:
    try:
        check_kwargs(resolve_stage_class(name), kwargs, name=name)
    except StageError as err:
        return err
    return None


@functools.lru_cache(maxsize=4096)
def _remembered_error(key: tuple) -> StageError | None:
    name, kwargs = _thaw(key)
    return _error_of(name, kwargs)


def _freeze(value: object) -> tuple:
    """A hashable, lossless form of a YAML value; the type is kept, so ``True`` and ``1`` differ."""
    if isinstance(value, dict):
        return ("dict", tuple((_freeze(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_freeze(v) for v in value))
    if value is None or type(value) in (bool, int, float, str):
        return (type(value).__name__, value)
    raise TypeError(f"not a YAML value: {type(value).__name__}")


def _thaw(key: tuple) -> object:
    kind, value = key
    if kind == "dict":
        return {_thaw(k): _thaw(v) for k, v in value}
    if kind in ("list", "tuple"):
        return {"list": list, "tuple": tuple}[kind](_thaw(v) for v in value)
    return value
