"""The one error a spec can raise, so every CLI can exit 2 with a message naming file and key."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel
from pydantic.fields import FieldInfo


class SpecError(Exception):
    """A spec or override is invalid. Carries the dotted key so the message names it."""

    def __init__(self, key: str, reason: str, file: str | None = None):
        self.key, self.reason, self.file = key, reason, file
        where = f"{file}: " if file else ""
        super().__init__(f"{where}{key or '<top level>'}: {reason}")

    def __reduce__(self):
        """Rebuild from the fields: a trial's error crosses Ray (pickled) with its own message."""
        return (type(self), (self.key, self.reason, self.file))


class KeyedError(ValueError):
    """A cross-field error raised inside a pydantic validator that knows which key it is about."""

    def __init__(self, key: str, reason: str):
        self.key, self.reason = key, reason
        super().__init__(f"{key}: {reason}")

    def __reduce__(self):
        return (type(self), (self.key, self.reason))


def _union(field: FieldInfo) -> tuple[str, dict[str, type[BaseModel]]] | None:
    """(discriminator, tag -> member model) of a discriminated-union field, else None."""
    if not isinstance(field.discriminator, str):
        return None
    members = get_args(field.annotation)
    return field.discriminator, {t: m for m in members for t in get_args(m.model_fields[field.discriminator].annotation)}


def locate(loc: tuple, root: type[BaseModel]) -> tuple[str, tuple[str, str, dict, str] | None]:
    """pydantic's error loc in ``root`` -> the spec's dotted key, without the tag pydantic puts
    after a discriminated union (``method.moco.queue_size`` is ``method.queue_size``); and the
    last union it went through as (its key, discriminator, tag -> member, the tag in force)."""
    parts: list[str] = []
    model: Any = root
    union = None
    i = 0
    while i < len(loc):
        part = loc[i]
        parts.append(str(part))
        i += 1
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        model = field.annotation if field is not None else None
        tagged = _union(field) if field is not None else None
        if tagged and i < len(loc) and loc[i] in tagged[1]:
            union = (".".join(parts), tagged[0], tagged[1], loc[i])
            model = tagged[1][loc[i]]
            i += 1
    return ".".join(parts), union
