"""``--backend c`` (and quantize's verification of the C bundle) with the CC a firmware
developer's shell may hold: a compiler with arguments, as make takes it, builds and runs;
a cross compiler (arm-none-eabi-gcc) is one line saying to point CC at the host compiler,
not 'a qdeploy bug'."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.cli_helpers import DIGITS_CALIB, DIGITS_MODEL, assert_error, cli


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    d = tmp_path_factory.mktemp("cc")
    res = cli("quantize", DIGITS_MODEL, "--calib", DIGITS_CALIB, "--limit", "16", "--emit", "c", "--no-verify",
              "-o", d / "out", "-q")
    assert res.exit_code == 0, res.stderr
    np.save(d / "x.npy", np.load(DIGITS_CALIB)["x"][:3])
    return d


def test_cc_with_arguments_builds_and_runs(out, tmp_path, monkeypatch):
    cc = shutil.which("cc") or shutil.which("gcc")
    monkeypatch.setenv("QDEPLOY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", f"{cc} -DQDEPLOY_TEST_CC_ARG=1")
    for backend in ("c", "ref"):
        res = cli("run", out / "out", "--backend", backend, "--input", out / "x.npy", "-o", tmp_path / f"{backend}.npy")
        assert res.exit_code == 0, res.stderr
    assert np.array_equal(np.load(tmp_path / "c.npy"), np.load(tmp_path / "ref.npy"))


def test_cross_compiler_is_one_line(out, tmp_path, monkeypatch):
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed (scripts/setup-dev.sh installs it)")
    monkeypatch.setenv("QDEPLOY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", "arm-none-eabi-gcc")
    assert_error(cli("run", out / "out", "--backend", "c", "--input", out / "x.npy", "-o", tmp_path / "y.npy"),
                 "arm-none-eabi-gcc", "does not load on this machine", "set CC")
    assert not (tmp_path / "y.npy").exists()
