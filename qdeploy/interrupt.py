"""Ctrl-C and SIGTERM end a command as one line ``interrupted`` (exit 128 +
signal: 130 for SIGINT, 143 for SIGTERM), with nothing half-written.

- :func:`early` is installed first thing when the command line is imported (before
  onnx, numpy and onnxruntime load): a signal then prints ``interrupted`` and
  exits at once, since nothing has been written yet.
- :func:`handling` is active while a command runs: SIGINT and SIGTERM raise
  :class:`Interrupted` (a ``KeyboardInterrupt``), so every ``finally`` and
  clean-up runs (``fsutil.atomic_dir`` removes its temporary folder).
- :func:`deferred` blocks both signals over a few steps that must not be cut
  in two (the renames that replace an output folder); a signal that arrives
  meanwhile is delivered right after.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A signal ended the command; ``exit_code`` is 128 + the signal number."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + int(signum)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _exit_now(signum, frame):
    try:
        os.write(2, b"interrupted\n")
    finally:
        os._exit(128 + signum)


def _raise(signum, frame):
    raise Interrupted(signum)


def early() -> dict:
    """Exit at once on SIGINT/SIGTERM (start-up); returns the handlers it replaced."""
    if not _main_thread():
        return {}
    return {s: signal.signal(s, _exit_now) for s in SIGNALS}


def restore(saved: dict) -> None:
    for s, h in saved.items():
        signal.signal(s, h if h is not None else signal.SIG_DFL)


@contextlib.contextmanager
def handling():
    """SIGINT and SIGTERM raise :class:`Interrupted` inside the block."""
    if not _main_thread():
        yield
        return
    saved = {s: signal.signal(s, _raise) for s in SIGNALS}
    try:
        yield
    finally:
        restore(saved)


@contextlib.contextmanager
def deferred():
    """SIGINT and SIGTERM held back inside the block, delivered after it."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def message(e: BaseException) -> tuple[str, int]:
    """The line and exit code for an interruption."""
    return "interrupted", getattr(e, "exit_code", 130)


def is_console_script() -> bool:
    return os.path.basename(sys.argv[0] if sys.argv else "") == "qdeploy"
