"""The command line starts without the heavy modules: `qdeploy --help`, `targets` and
every command's --help load no onnx, onnxruntime, matplotlib, jinja2 or TFLite runtime
(each command imports what it needs when it runs; onnx alone was 0.6 s with ml_dtypes 0.7)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("onnx", "onnxruntime", "matplotlib", "jinja2", "tflite_micro", "ai_edge_litert", "scipy", "sklearn")


def test_cli_import_loads_no_heavy_module():
    code = ("import sys\nfrom qdeploy.cli import main\n"
            "for args in (['--help'], ['targets'], ['quantize', '--help'], ['inspect', '--help'], ['run', '--help'],"
            " ['calib', 'ranges', '--help'], ['report', '--help']):\n"
            "    try:\n        main(args)\n    except SystemExit as e:\n        assert not e.code, (args, e.code)\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout[-300:]
