"""Ctrl-C and SIGTERM during a search: stop cleanly, say so, and let the same command resume.

Ray Tune stops a run gracefully on SIGUSR1 (its own stop signal): it snapshots the experiment
with the unfinished trials still unfinished, so ``Tuner.restore`` resumes them, and then ends
every trial, calling the callbacks' ``on_trial_complete`` as if they had finished. So the driver
handles SIGINT and SIGTERM itself: the first one records the interruption (which the MLflow
callback reads, to end those runs KILLED rather than FINISHED) and hands Tune its stop signal;
a second one forces the stop. Outside the Tune loop the first signal is a KeyboardInterrupt,
which the CLI turns into one line naming the phase and the resume hint (exit 130 / 143) -- from
the first line of ``main`` to the report, so start-up, shutdown and the report are covered too.
While the driver cleans up (ending the MLflow runs, leaving Ray) the first signal is held
until the cleanup is done (``shielded``) and a second one stops at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM)
_state: dict = {"signal": None, "graceful": False, "shield": False, "pending": False, "previous": {}}


PHASES = {
    "start-up": "while starting, before any trial ran",
    "trials": "during the trials: their last epochs are saved",
    "shutdown": "while the search shut down: every result is saved",
    "report": "while the report was built: every trial is saved in MLflow (the rerun only builds the report)",
}


def set_phase(name: str) -> None:
    """What the driver is doing, for the one line an interruption prints (``PHASES``)."""
    _state["phase"] = name


def hint() -> str:
    """The one line an interrupted search ends with."""
    name = signal.Signals(_state["signal"] or signal.SIGINT).name
    return f"interrupted ({name}) {PHASES[_state.get('phase', 'start-up')]}; rerun the same command to resume"


def requested() -> int | None:
    """The signal that interrupted this search (SIGINT or SIGTERM), or None."""
    return _state["signal"]


def exit_code() -> int:
    """130 for SIGINT, 143 for SIGTERM: the shell's convention for "ended by a signal"."""
    return 128 + int(_state["signal"] or signal.SIGINT)


def _handler(signum: int, frame: FrameType | None) -> None:
    first = _state["signal"] is None
    if first and _state["shield"]:  # cleaning up: finish it, then stop
        _state.update(signal=signum, pending=True)
        return
    if not first or not _state["graceful"]:
        _state["signal"] = _state["signal"] or signum
        raise KeyboardInterrupt
    _state["signal"] = signum
    name = signal.Signals(signum).name
    print(f"\n[viewsearch] {name}: stopping after the running epochs are saved "
          "(press Ctrl-C again to stop at once)", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGUSR1)  # Tune's graceful stop


def install() -> None:
    """Handle SIGINT and SIGTERM from now on (call after ``ray.init``, which sets its own)."""
    for sig in HANDLED:
        _state["previous"].setdefault(sig, signal.getsignal(sig))
        signal.signal(sig, _handler)


def graceful(on: bool) -> None:
    """While on (the Tune loop), the first signal asks Tune to stop instead of raising."""
    _state["graceful"] = on
    if on:
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # ours decides; Tune's SIGUSR1 does the stopping


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Cleanup that a first signal must not cut short; a second signal still stops at once.
    A signal held meanwhile is raised (KeyboardInterrupt) when the block ends."""
    _state["shield"] = True
    try:
        yield
    finally:
        _state["shield"] = False
    if _state["pending"]:
        _state["pending"] = False
        raise KeyboardInterrupt


def reset() -> None:
    """Forget any interruption and restore the previous handlers (tests run several searches)."""
    for sig, handler in _state["previous"].items():
        signal.signal(sig, handler)
    _state.update(signal=None, graceful=False, shield=False, pending=False, previous={}, phase="start-up")
