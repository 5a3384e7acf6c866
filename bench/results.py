"""bench/RESULTS.md sections: each bench script rewrites its own ``## title`` section."""
from __future__ import annotations

import os
import platform
import re
import shlex
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(title: str, body: str, path: Path = RESULTS) -> None:
    """Replace the ``## title`` section in place (or append it), leaving the other
    sections as they are."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    section = f"## {title}\n\n{body.strip()}\n"
    pat = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pat.search(text):
        text = pat.sub(lambda _: section + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)


def run_header(script: str, argv: list[str], extra: str = "") -> str:
    """The head of a section: the command that made it (``OMP_NUM_THREADS=1 python
    bench/SCRIPT ARGS``) and the machine (cores, Python, numpy, onnxruntime, ``extra``, date)."""
    import numpy as np
    import onnxruntime
    return (f"Command: `OMP_NUM_THREADS=1 python bench/{script} {shlex.join(argv)}`\n\n"
            f"Machine: nproc {os.cpu_count()}, Python {platform.python_version()}, numpy {np.__version__}, "
            f"onnxruntime {onnxruntime.__version__}{extra}; date {time.strftime('%Y-%m-%d')}\n\n")


def write_run(title: str, script: str, argv: list[str], text: str, intro: str, extra: str = "") -> None:
    """Replace section ``title`` with a run of ``script``: :func:`run_header`, the ``intro``
    paragraph, then ``text`` (the tables)."""
    write_section(title, run_header(script, argv, extra) + intro + "\n\n" + text + "\n")
