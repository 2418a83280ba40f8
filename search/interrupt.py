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

The state lives in one ``Interrupt`` object per command: the CLI creates it before anything else,
the search session moves it through the phases, and the driver hands it to the Tune callback with
``callback.bind`` (the callback itself comes back from ``tuner.pkl`` on resume, so it cannot keep it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM)

PHASES = {
    "start-up": "while starting, before any trial ran",
    "trials": "during the trials: their last epochs are saved",
    "shutdown": "while the search shut down: every result is saved",
    "report": "while the report was built: every trial is saved in MLflow (the rerun only builds the report)",
}


class Interrupt:
    """One driver's interruption: the signal that came (if any), the phase it came in, and whether
    the driver is in the Tune loop (``graceful``) or cleaning up (``shielded``). The CLI creates it,
    its signal handler writes it, and the search session and the Tune callback read it."""

    def __init__(self) -> None:
        self.signal: int | None = None  # SIGINT or SIGTERM, once one came
        self.phase = "start-up"
        self._graceful = False
        self._shield = False
        self._pending = False
        self._previous: dict[int, object] = {}

    def set_phase(self, name: str) -> None:
        """What the driver is doing, for the one line an interruption prints (``PHASES``)."""
        self.phase = name

    def hint(self) -> str:
        """The one line an interrupted search ends with."""
        name = signal.Signals(self.signal or signal.SIGINT).name
        return f"interrupted ({name}) {PHASES[self.phase]}; rerun the same command to resume"

    def requested(self) -> int | None:
        """The signal that interrupted this search (SIGINT or SIGTERM), or None."""
        return self.signal

    def exit_code(self) -> int:
        """130 for SIGINT, 143 for SIGTERM: the shell's convention for "ended by a signal"."""
        return 128 + int(self.signal or signal.SIGINT)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.signal is None
        if first and self._shield:  # cleaning up: finish it, then stop
            self.signal, self._pending = signum, True
            return
        if not first or not self._graceful:
            self.signal = self.signal or signum
            raise KeyboardInterrupt
        self.signal = signum
        name = signal.Signals(signum).name
        print(f"\n[viewsearch] {name}: stopping after the running epochs are saved "
              "(press Ctrl-C again to stop at once)", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGUSR1)  # Tune's graceful stop

    def install(self) -> None:
        """Handle SIGINT and SIGTERM from now on (call again after ``ray.init``, which sets its own)."""
        for sig in HANDLED:
            self._previous.setdefault(sig, signal.getsignal(sig))
            signal.signal(sig, self._handle)

    def graceful(self, on: bool) -> None:
        """While on (the Tune loop), the first signal asks Tune to stop instead of raising."""
        self._graceful = on
        if on:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # ours decides; Tune's SIGUSR1 does the stopping

    @contextlib.contextmanager
    def shielded(self) -> Iterator[None]:
        """Cleanup that a first signal must not cut short; a second signal still stops at once.
        A signal held meanwhile is raised (KeyboardInterrupt) when the block ends."""
        self._shield = True
        try:
            yield
        finally:
            self._shield = False
        if self._pending:
            self._pending = False
            raise KeyboardInterrupt

    def close(self) -> None:
        """Restore the previous handlers and forget the interruption (a callback still bound to this
        object then reads "not interrupted"; tests run several searches in one process)."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self.signal, self.phase, self._previous = None, "start-up", {}
        self._graceful = self._shield = self._pending = False
