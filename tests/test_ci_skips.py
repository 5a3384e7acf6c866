"""In CI (CI=true) a skipped test or module fails the run (tests/conftest.py)."""
import os
import subprocess
import sys

from tests.helpers import ROOT

PROBE = '''import pytest
pytest.importorskip("{module}")
def test_probe():
    pytest.skip("a missing runtime")
'''


def _run(ci: bool, module: str) -> subprocess.CompletedProcess:
    d = ROOT / "tests" / f"_probe_{os.getpid()}"
    d.mkdir()
    try:
        (d / "__init__.py").write_text("")
        (d / "test_probe.py").write_text(PROBE.format(module=module))
        env = {**os.environ, "CI": "true" if ci else ""}
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(d)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    finally:
        for f in d.iterdir():
            f.unlink()
        d.rmdir()


def test_skip_fails_in_ci_and_not_outside():
    assert _run(ci=False, module="os").returncode == 0
    r = _run(ci=True, module="os")
    assert r.returncode == 1 and "counts as a failure: Skipped: a missing runtime" in r.stdout
    r = _run(ci=True, module="no_such_runtime_module")
    assert r.returncode != 0 and "no_such_runtime_module" in r.stdout
