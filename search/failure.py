"""The one line a failed search ends with, for the failures a person can act on.

Why: a full disk surfaces as an ``OSError`` deep in Tune, as SQLite's "database or disk is full"
from MLflow, or as text in a trial's error file, under pages of tracebacks from every trial that
hit it. The person needs what happened, where, and what to do, as the last line: ``error: no
space left on device writing runs/e10/ray/...; free space or move runs/ (it resumes in its new
place)``. A ``runs/`` folder is self-contained (``search/resume.py``), so moving it is a remedy.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator
from pathlib import Path

from search.paths import Paths

NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)
_NO_SPACE_TEXT = re.compile(r"No space left on device(?::\s*'([^']+)')?|Disk quota exceeded(?::\s*'([^']+)')?")
_DB_FULL = "database or disk is full"


def shown(path: str | Path) -> str:
    """A path as the person typed its folder: relative to the working directory when under it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def no_space(where: str | Path, paths: Paths) -> str:
    return (f"error: no space left on device writing {shown(where)}; free space or move {shown(paths.root)}/ "
            "(it resumes in its new place)")


def describe(err: BaseException, paths: Paths, store_file: Path | None = None) -> str | None:
    """The last line for ``err`` (or anything in its cause chain), or None if it is not one of these."""
    for exc in _chain(err):
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            return no_space(exc.filename or paths.experiment_dir, paths)
        if isinstance(exc, OSError) and exc.errno in NOT_WRITABLE and exc.filename:
            return (f"error: cannot write {shown(exc.filename)} ({exc.strerror}); make {shown(paths.root)}/ "
                    "writable, or move it somewhere that is (it resumes in its new place)")
        line = describe_text(str(exc), paths, store_file)
        if line:
            return line
    return None


def describe_text(text: str, paths: Paths, store_file: Path | None = None) -> str | None:
    """The same, from an error's text (a trial's error file crosses Ray as text)."""
    if _DB_FULL in text:
        return no_space(store_file or paths.root, paths)
    match = _NO_SPACE_TEXT.search(text)
    if match:
        return no_space(match.group(1) or match.group(2) or paths.experiment_dir, paths)
    return None


def store_file(store) -> Path | None:
    """The SQLite file of a local store (where "database or disk is full" happens), else None."""
    return Path(store.uri.removeprefix("sqlite:///")) if store.is_sqlite else None


def failed(err: Exception, paths: Paths, store, verbose: bool) -> int:
    """A runtime failure: a known cause (a full disk...) as one plain last line, else the traceback
    and the exception's own line. Returns the exit code, 1."""
    import sys

    line = describe(err, paths, store_file(store))
    if line is None or verbose:
        import traceback

        traceback.print_exception(err)
    print(line or f"error: the search failed: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
    return 1


def trial_failures(results, paths: Paths, store) -> str:
    """The last line when trials failed after their retries: a full disk named plainly, else where to look."""
    for result in results or []:
        if result.error is not None:
            line = describe_text(str(result.error), paths, store_file(store))
            if line:
                return line
    return ("error: some trials failed after their retries (the error is in each MLflow run's ray.error tag); "
            "rerun the same command to retry them from their last checkpoint")
