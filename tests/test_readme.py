"""Documentation that runs: the README's tour and its two set-up commands."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def tour_commands() -> list[str]:
    m = re.search(r"<!-- readme-test -->\s*```sh\n(.*?)```", README, re.S)
    assert m, "README.md lost its tested tour block"
    return [line for line in m.group(1).splitlines() if line.strip()]


def test_readme_names_the_two_setup_commands_and_ci_runs_the_test_one():
    assert "bash scripts/demo.sh" in README and "bash scripts/test.sh" in README
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_readme_tour_runs(tmp_path):
    for name in ("examples", "calib"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "out").mkdir()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for cmd in tour_commands():
        r = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, f"README command failed: {cmd}\n{r.stderr[-2000:]}"
    out = tmp_path / "out"
    for f in ("inspect.json", "set.npz", "ranges.json", "mnv3/model.qgraph", "digits/manifest.json",
              "digits_ort/model.qdq.onnx",
              "digits/report.html", "../digits_cnn_arm/report.html"):
        assert (out / f).is_file(), f
    ref, flt = np.load(out / "y_ref.npy"), np.load(out / "y_float.npy")
    assert ref.shape == flt.shape == (8, 10)
    np.testing.assert_array_equal(np.load(out / "y_c.npy"), ref)   # the C bundle, bit-exact
    assert (ref.argmax(1) == flt.argmax(1)).mean() >= 0.875


def test_readme_python_api_block_runs(tmp_path):
    m = re.search(r"<!-- readme-test-python -->\s*```python\n(.*?)```", README, re.S)
    assert m, "README.md lost its tested Python API block"
    for name in ("examples", "calib"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "out").mkdir()
    r = subprocess.run([sys.executable, "-c", m.group(1)], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("PASS: accuracy drop") and "model.int8.tflite" in r.stdout
    assert (tmp_path / "out" / "digits_api" / "report.html").is_file()


@pytest.mark.slow
def test_demo_script_runs():
    r = subprocess.run(["bash", "scripts/demo.sh"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = dict(line.split()[:2] for line in r.stdout.splitlines() if line.startswith(("float ", "ref ")))
    drop = float(rows["float"].rstrip("%")) - float(rows["ref"].rstrip("%"))
    assert drop <= 0.5, r.stdout
