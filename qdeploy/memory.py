"""Memory estimated before a large allocation, refused with the estimate.

``available()`` is what the machine can give now (Linux ``MemAvailable``), or
the limit set in the environment variable ``QDEPLOY_MEMORY_LIMIT`` (bytes, or
with a K/M/G suffix: ``QDEPLOY_MEMORY_LIMIT=2G``). :func:`need` raises one
line naming the estimate, the amount available and what to change, instead of
letting the allocation fail half-way (or the kernel kill the process).
"""
from __future__ import annotations

import math
import os

from .errors import QDeployError

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _parse(text: str) -> int | None:
    """``2G``, ``512M``, ``1.5GiB``, ``1000000`` -> bytes; None if it is not an amount."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in _UNITS else ""
    try:
        v = float(t[:len(t) - len(unit)]) * _UNITS[unit]
    except ValueError:
        return None
    return int(v) if math.isfinite(v) and v >= 0 else None


def available() -> int | None:
    """Bytes that can be allocated now; None when unknown. A QDEPLOY_MEMORY_LIMIT
    that is not an amount is an error (ignoring it would drop the guard)."""
    env = os.environ.get("QDEPLOY_MEMORY_LIMIT")
    if env:
        limit = _parse(env)
        if limit is None:
            raise QDeployError(f"QDEPLOY_MEMORY_LIMIT={env!r} is not an amount of memory; give bytes or a "
                               "number with K, M, G or T (such as 2G), or unset it")
        return limit
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def fmt(n: float) -> str:
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{int(n)} bytes"


def need(nbytes: int, what: str, todo: str) -> None:
    """Refuse when ``nbytes`` exceed the memory available."""
    avail = available()
    if avail is not None and nbytes > avail:
        raise QDeployError(f"{what} needs about {fmt(nbytes)} of memory, more than the {fmt(avail)} "
                           f"available; {todo}")
