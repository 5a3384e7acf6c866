"""SIGINT and SIGTERM at every step of writing OUT (driven by a hook at each
step of ``fsutil.atomic_dir``, not by sleeps): the command prints ``interrupted``
and exits 130 / 143; OUT is the old one, byte for byte, or the complete new
one; no temporary sibling survives. And a Ctrl-C during start-up (while onnx
is imported) is ``interrupted``, exit 130, no traceback."""
import os
import shutil
import signal
import subprocess
import sys

import pytest

from qdeploy import fsutil, pipeline
from tests.cli_helpers import cli, folder_bytes
from tests.helpers import ROOT

STEPS = ("created", "written", "old-moved", "new-moved", "old-removed")
SIGNALS = {"SIGINT": (signal.SIGINT, 130), "SIGTERM": (signal.SIGTERM, 143)}


@pytest.fixture(autouse=True)
def _signals_not_ignored():
    """qdeploy leaves a signal its parent ignores ignored (a script's background
    job has SIGINT ignored): make sure the test process does not ignore them."""
    saved = {s: signal.signal(s, h) for s, h in ((signal.SIGINT, signal.default_int_handler),
                                                  (signal.SIGTERM, signal.SIG_DFL))}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def test_an_ignored_signal_stays_ignored(w, monkeypatch):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    monkeypatch.setattr(fsutil, "STEP_HOOK", lambda step: os.kill(os.getpid(), signal.SIGINT))
    res = cli("quantize", "m.onnx", "--calib", "c.npz", "--limit", "4", "-o", "out", "-q")
    assert res.exit_code == 0 and signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def _complete(out) -> bool:
    """OUT holds every file its manifest lists, with the sizes written there."""
    import json
    m = json.loads((out / "manifest.json").read_text())
    return all((out / f).is_file() and (out / f).stat().st_size == r["bytes"] for f, r in m["artefacts"].items())


def _quantize_interrupted(w, monkeypatch, at, signum, code, existing=True):
    if not existing:
        shutil.rmtree(w / "out")
    old = folder_bytes(w / "out") if existing else None

    def hook(step):
        if step == at:
            os.kill(os.getpid(), signum)
    monkeypatch.setattr(fsutil, "STEP_HOOK", hook)
    res = cli("quantize", "m.onnx", "--calib", "c.npz", "--limit", "4", "-o", "out", "-q")
    assert (res.exit_code, res.stderr) == (code, "interrupted\n"), (res.exit_code, res.stderr, res.exception)
    assert not [p.name for p in w.iterdir() if p.name.startswith(".out.")]   # no temporary sibling
    return old


@pytest.mark.parametrize("sig", SIGNALS, ids=SIGNALS.keys())
@pytest.mark.parametrize("at", STEPS)
def test_signal_while_replacing_out(w, monkeypatch, at, sig):
    signum, code = SIGNALS[sig]
    old = _quantize_interrupted(w, monkeypatch, at, signum, code)
    now = folder_bytes(w / "out")
    if at in ("created", "written"):
        assert now == old                      # interrupted before the swap: the old OUT, byte for byte
    else:
        assert now == old or _complete(w / "out")   # held back over the swap: the complete new one


@pytest.mark.parametrize("at", ("created", "written", "new-moved"))
def test_signal_while_writing_a_new_out(w, monkeypatch, at):
    _quantize_interrupted(w, monkeypatch, at, signal.SIGINT, 130, existing=False)
    assert not (w / "out").exists() or _complete(w / "out")


def test_signal_between_two_artefact_files(w, monkeypatch):
    """Interrupted after the first file of OUT is written: the old OUT stays."""
    old = folder_bytes(w / "out")
    calls = []
    real = pipeline.write_bytes

    def write(path, data):
        calls.append(path)
        real(path, data)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
    monkeypatch.setattr(pipeline, "write_bytes", write)
    res = cli("quantize", "m.onnx", "--calib", "c.npz", "--limit", "4", "-o", "out", "-q")
    assert (res.exit_code, res.stderr) == (143, "interrupted\n")
    assert folder_bytes(w / "out") == old
    assert sorted(p.name for p in w.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("argv, module", [(["targets"], "numpy"), (["inspect", "m.onnx"], "onnx")])
def test_ctrl_c_during_startup_imports(tmp_path, argv, module):
    """SIGINT while a heavy module is imported: ``numpy`` inside ``import
    qdeploy.cli`` (the console script's start-up), ``onnx`` where ``inspect``
    imports it lazily: one line `interrupted`, exit 130."""
    code = ("import builtins, os, signal, sys\n"
            f"sys.argv = ['qdeploy', *{argv!r}]\n"
            "real = builtins.__import__\n"
            "def imp(name, *a, **k):\n"
            f"    if name == {module!r}:\n"
            "        os.kill(os.getpid(), signal.SIGINT)\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = imp\n"
            "from qdeploy.cli import main\n"
            "main()\n")
    (tmp_path / "m.onnx").write_bytes(b"")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert (res.returncode, res.stderr, res.stdout) == (130, "interrupted\n", "")


def test_python_m_qdeploy_is_the_command(tmp_path):
    """``python -m qdeploy`` runs the same command line: output, the one-line error with
    exit 2 naming 'qdeploy' (not '__main__.py')."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = lambda *a: subprocess.run([sys.executable, "-m", "qdeploy", *a], capture_output=True, text=True,
                                    env=env, cwd=tmp_path, timeout=120)
    res = run("targets", "--json")
    assert res.returncode == 0 and res.stdout == cli("targets", "--json").stdout, res.stderr
    res = run("quantize")
    assert (res.returncode, res.stdout) == (2, "")
    assert res.stderr == "error: Missing argument 'MODEL'; see 'qdeploy quantize --help'\n"


@pytest.mark.parametrize("argv0", ["qdeploy", "-m"])
def test_sigterm_right_after_startup_imports(tmp_path, argv0):
    """SIGTERM just after ``import qdeploy.cli``, before the command runs, as the console
    script and under ``python -m qdeploy`` (run here by runpy exactly as -m does): the start-up
    handler is still in place, so one line `interrupted`, exit 143 (not a silent kill)."""
    start = ("sys.argv = ['qdeploy', 'targets']\nfrom qdeploy.cli import main\nmain()\n" if argv0 == "qdeploy"
             else "import runpy\nsys.argv = ['-m', 'targets']\n"
                  "runpy.run_module('qdeploy', run_name='__main__', alter_sys=True)\n")
    code = ("import builtins, os, signal, sys\n"
            "real = builtins.__import__\n"
            "def imp(name, *a, **k):\n"
            "    m = real(name, *a, **k)\n"
            "    if name == 'qdeploy.cli' and 'qdeploy.cli.targets_cmd' in sys.modules:\n"
            "        os.kill(os.getpid(), signal.SIGTERM)\n"
            "    return m\n"
            "builtins.__import__ = imp\n" + start)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120, preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
    assert (res.returncode, res.stderr, res.stdout) == (143, "interrupted\n", ""), res
