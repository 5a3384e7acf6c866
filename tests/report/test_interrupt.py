"""Ctrl-C during calibration and during verification leaves nothing behind: no OUT, no
temporary sibling, exit 130 with one line. The step is made slow (and announces itself
in a marker file) inside the child process, then SIGINT is sent."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.cli_helpers import DIGITS_CALIB, DIGITS_MODEL
from tests.helpers import ROOT

CHILD = """
import sys, time
from pathlib import Path
marker = Path(sys.argv[1])
if sys.argv[2] == "calibration":
    import qdeploy.calibration.calibrate as c
    real = c.calibrate
    def slow(*a, **k):
        marker.write_text("calibrating")
        time.sleep(60)
        return real(*a, **k)
    c.calibrate = slow
else:
    import os
    os.environ["FAKE_SLEEP"] = str(marker)
    from tests.report import fake_artefact
    fake_artefact.register()
from qdeploy.cli import main
sys.argv = ["qdeploy"] + sys.argv[3:]
main()
"""


@pytest.mark.parametrize("step", ["calibration", "verification"])
def test_sigint_leaves_nothing(step, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    marker = tmp_path / "marker"
    args = ["quantize", str(DIGITS_MODEL), "--calib", str(DIGITS_CALIB), "--limit", "20", "-o", str(work / "out")]
    if step == "verification":
        args += ["--emit", "fake"]
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(marker), step, *args], cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not marker.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert marker.exists(), p.communicate()[1][-2000:]
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted", err
    assert list(work.iterdir()) == [], list(work.iterdir())
