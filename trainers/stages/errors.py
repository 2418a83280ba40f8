"""The one error of the stage list, with the dotted key it is about and the stage's index."""

from __future__ import annotations


class StageError(ValueError):
    """A stage entry is invalid.

    ``key``: dotted, relative to the stage entry (``"RandomErasing"``, ``"RandomErasing.scale"``) or, for
    errors about the list's shape, to the list (``"0"``). ``index``: the stage's position in the list when
    it is known (else ``None``). ``reason``: what is wrong. ``path`` joins the two; a caller prefixes it
    with where the list sits in the spec (``views.stages.``).
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
