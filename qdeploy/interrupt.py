"""Ctrl-C and SIGTERM end a command as one line ``interrupted`` (exit 128 +
signal: 130 for SIGINT, 143 for SIGTERM), with nothing half-written.

- :func:`early` is installed first thing when the command line is imported (before
  onnx, numpy and onnxruntime load): a signal then prints ``interrupted`` and
  exits at once, since nothing has been written yet.
- :func:`handling` is active while a command runs: SIGINT and SIGTERM raise
  :class:`Interrupted` (a ``KeyboardInterrupt``), so every ``finally`` and
  clean-up runs (``fsutil.atomic_dir`` removes its temporary folder).
- :func:`deferred` holds both signals back over a few steps that must not be
  cut in two (the renames that replace an output folder); a signal that
  arrives meanwhile is delivered right after.
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


def _handled() -> tuple:
    """The signals to handle: not those the parent set to be ignored (a
    background job of a script, nohup), which stay ignored."""
    return tuple(s for s in SIGNALS if signal.getsignal(s) != signal.SIG_IGN)


def early() -> dict:
    """Exit at once on SIGINT/SIGTERM (start-up); returns the handlers it replaced."""
    if not _main_thread():
        return {}
    return {s: signal.signal(s, _exit_now) for s in _handled()}


def restore(saved: dict) -> None:
    for s, h in saved.items():
        signal.signal(s, h if h is not None else signal.SIG_DFL)


@contextlib.contextmanager
def handling():
    """SIGINT and SIGTERM raise :class:`Interrupted` inside the block."""
    if not _main_thread():
        yield
        return
    saved = {s: signal.signal(s, _raise) for s in _handled()}
    try:
        yield
    finally:
        restore(saved)


@contextlib.contextmanager
def deferred():
    """SIGINT and SIGTERM held back inside the block, delivered after it. (Python
    runs signal handlers in the main thread only, so swapping the handlers holds
    them back reliably; blocking them with ``pthread_sigmask`` would not: the
    kernel hands a process signal to any thread that does not block it, e.g.
    onnxruntime's pool, and Python then runs the handler anyway.)"""
    if not _main_thread():
        yield
        return
    pending: list[int] = []
    saved = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in _handled()}
    try:
        yield
    finally:
        restore(saved)
        if pending:
            _deliver(pending[0], saved[pending[0]])


def _deliver(signum: int, handler) -> None:
    """What the handler that was in place would have done."""
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        os.kill(os.getpid(), signum)


def is_console_script() -> bool:
    """Running as the ``qdeploy`` command, or as ``python -m qdeploy`` (its ``__main__``
    module is qdeploy's), not imported by other Python code."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return (os.path.basename(sys.argv[0] if sys.argv else "") == "qdeploy"
            or getattr(spec, "name", None) == "qdeploy.__main__")
