"""The contract every bad-input case checks."""
from __future__ import annotations

from pathlib import Path

from tests.cli_helpers import assert_error, cli, snapshot

READONLY = "/sys/qdeploy-badinput"   # nobody may create files here (root ignores file modes)


def tree(d: Path) -> tuple:
    """Every file (bytes, mtime) and folder under ``d``, hidden ones included."""
    return snapshot(d), sorted(str(p) for p in Path(d).rglob("*"))


def refused(w: Path, args: list, words: list) -> str:
    """``qdeploy ARGS`` in ``w``: exit 2, one ``error:`` line holding ``words``,
    no traceback, nothing new on disk and every input byte-identical."""
    before = tree(w)
    line = assert_error(cli(*args), *words)
    assert tree(w) == before
    return line


def run_cases(w: Path, case) -> None:
    make, words = case
    refused(w, [str(a) for a in make(w)], words)
