"""The one error a spec can raise, so every CLI can exit 2 with a message naming file and key."""

from __future__ import annotations


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
