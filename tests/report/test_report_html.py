"""report.html opened in headless Chromium (Debian's ``chromium``): the DOM has the verdict
first and the plots as images, and the screenshot shows them rendered: the verdict box's
colour at the top, and the plot lines' colours (matplotlib's tab:blue / tab:orange, used
nowhere else on the page) in the per-layer SQNR plot."""
from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from tests.cli_helpers import DIGITS_CALIB, DIGITS_EVAL, DIGITS_MODEL, cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("CI") != "true":
    pytest.skip("headless Chromium not installed (scripts/setup-dev.sh installs it)", allow_module_level=True)

PASS_GREEN, TAB_BLUE, TAB_ORANGE = (216, 245, 216), (31, 119, 180), (255, 127, 14)


def _chromium(*args, timeout=120):
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--user-data-dir=" + os.environ.get("TMPDIR", "/tmp") + "/qdeploy-chromium",
                           *args], capture_output=True, text=True, timeout=timeout)


def _near(px: np.ndarray, rgb, tol=12) -> np.ndarray:
    return (np.abs(px[..., :3].astype(int) - np.array(rgb)) <= tol).all(-1)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("html")
    res = cli("quantize", DIGITS_MODEL, "--calib", DIGITS_CALIB, "--eval", DIGITS_EVAL, "-o", d / "o", "-q")
    assert res.exit_code == 0, res.stderr
    return d / "o" / "report.html"


def test_dom_has_the_verdict_first_and_the_plots(report):
    r = _chromium("--dump-dom", report.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    assert 'id="verdict" class="pass"' in dom and "PASS: accuracy drop" in dom
    assert dom.index('id="verdict"') < dom.index('id="backends"') < dom.index('id="plot-layers"')
    for plot in ("plot-layers", "plot-weights", "plot-histograms"):
        assert f'id="{plot}"' in dom and "data:image/svg+xml;base64," in dom


def test_screenshot_shows_verdict_and_rendered_plots(report, tmp_path):
    shot = tmp_path / "shot.png"
    r = _chromium(f"--screenshot={shot}", "--window-size=1100,2000", report.as_uri())
    assert shot.is_file(), r.stderr[-2000:]
    px = np.asarray(Image.open(shot).convert("RGB"))
    top = px[: px.shape[0] // 8]
    assert _near(top, PASS_GREEN, 4).sum() > 20000          # the verdict box, near the top
    assert _near(px, TAB_BLUE).sum() > 200 and _near(px, TAB_ORANGE).sum() > 200   # SVG plot lines drawn
    assert (px < 250).any(-1).mean() > 0.05                   # not a blank page
