"""Names are data, not code: QGraph names made safe as C identifiers and C comments.

A node or tensor name can hold anything ONNX allows: quotes, ``*/``, ``??/``
trigraphs, newlines, backslashes, non-ASCII text, C keywords, 10 kB strings.
:func:`identifier` keeps ``[A-Za-z0-9_]`` (everything else becomes ``_``), puts a
prefix first (so no keyword, no leading digit, no reserved ``_X``/``__``
identifier), shortens long names, and de-duplicates clashes with a counter.
:func:`comment` makes the text safe inside ``/* ... */``: printable ASCII only
(others as ``\\xNN``/``\\uNNNN``), no ``*/`` or ``/*``, no ``??`` (trigraphs), no
backslash (line splicing), one line, at most ``limit`` characters.
"""
from __future__ import annotations

import re

MAX_IDENT = 40


def identifier(name: str, prefix: str, used: set[str]) -> str:
    """A fresh C identifier ``<prefix>_<cleaned name>`` not in ``used`` (added to it)."""
    body = re.sub(r"[^A-Za-z0-9_]", "_", name)
    body = re.sub(r"_+", "_", body).strip("_")[:MAX_IDENT].rstrip("_")
    base = f"{prefix}_{body}" if body else prefix
    ident, k = base, 1
    while ident in used:
        k += 1
        ident = f"{base}_{k}"
    used.add(ident)
    return ident


def comment(text: str, limit: int = 72) -> str:
    """``text`` as a safe one-line fragment for a C block comment."""
    out = []
    for ch in str(text):
        o = ord(ch)
        if ch == "\\":
            out.append("\\x5c")
        elif 32 <= o < 127:
            out.append(ch)
        elif o < 256:
            out.append(f"\\x{o:02x}")
        else:
            out.append(f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
    s = "".join(out).replace("\\", "/")   # no backslash at all: no line splice, no escapes
    while "*/" in s or "/*" in s or "??" in s:
        s = s.replace("*/", "* /").replace("/*", "/ *").replace("??", "?-?")
    if len(s) > limit:
        s = s[:limit - 3] + "..."
        while s.endswith("*") or s.endswith("/") or s.endswith("?"):
            s = s[:-1]
    return s
