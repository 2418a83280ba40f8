"""``python -m search.run SPEC.yaml [--set KEY=VALUE ...] [--address ADDR] [--fresh] [--verbose]``

Runs the search a spec describes, then the InfoMin report, and prints where everything is.

Order matters: everything that can make the command wrong is checked before anything is
created or started, so it fails with exit code 2, a message naming the file and key (or the
file, server or address), and no ``runs/`` entry: the spec and the overrides, the device and
GPU share on this machine, the tracking server, the dataset files, the cluster address. Then the
experiment's lock is taken (a second search of the same experiment is refused, exit 2), and a
resume is checked against the store (a store that lost the search is refused, exit 2, and the
report stays as it is). Only then is Ray started and MLflow written; failures after that are
runtime failures (exit 1), and an interruption (Ctrl-C, SIGTERM) exits 130 / 143.

Resume: ``runs/<experiment>/search.json`` records the spec's fingerprint and the MLflow parent
run. Re-running the same command finds it and Ray's experiment directory, checks both against
the store and each other (``search/resume.py``: a damaged state is refused, a moved ``runs/``
resumes in its new place), and continues with
``Tuner.restore`` (finished trials kept; unfinished and errored ones resume from their last
checkpoint) under the same parent run. ``--fresh`` starts over: it removes the Ray directory and
the MI cache and soft-deletes the old search's MLflow runs (``mlflow gc`` purges them), so the
experiment shows one search. A different spec under the same experiment name is refused unless
``--fresh`` is given.

This module is the command line: the arguments, the exit codes and the error lines. The checks
are ``search/preflight.py``; the search itself, phase by phase, is ``search/session.py``.
"""

from __future__ import annotations

import argparse
import sys

from search.interrupt import Interrupt
from search.preflight import USAGE_ERRORS
from search.session import EXIT_USAGE, SearchSession


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m search.run", description=__doc__.split("\n\n")[1])
    parser.add_argument("spec", help="YAML spec (see spaces/augment_strength.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a spec key, e.g. --set trainer.epochs=1 (validated like the file)")
    parser.add_argument("--address", default=None,
                        help="join an existing Ray cluster (default: RAY_ADDRESS, else start a local Ray)")
    parser.add_argument("--fresh", action="store_true", help="discard an earlier search of this experiment")
    parser.add_argument("--verbose", action="store_true", help="show Ray's and Tune's own output as well")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """The command; returns its exit code (0, 1 runtime failure, 2 usage, 130 / 143 interrupted)."""
    args = parse_args(argv)
    stop = Interrupt()
    stop.install()  # from the first line: Ctrl-C / SIGTERM in any phase end with one line, no traceback
    try:
        return _search(args, stop)
    except KeyboardInterrupt:
        print(f"\n{stop.hint()}", file=sys.stderr, flush=True)
        return stop.exit_code()
    finally:
        stop.close()


def _search(args: argparse.Namespace, stop: Interrupt) -> int:
    try:
        session = SearchSession.open(args.spec, args.overrides, address=args.address, fresh=args.fresh,
                                     verbose=args.verbose, interrupt=stop)
    except USAGE_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return session.run()
    finally:
        session.close()


if __name__ == "__main__":
    sys.exit(main())
