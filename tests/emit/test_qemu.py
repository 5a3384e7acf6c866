"""Cortex-M4 firmware under QEMU (examples/firmware, qdeploy/emit/qemu.py).

The harness on a hand-written stand-in bundle (tests/emit/fixture_bundle): the
outputs come back byte for byte, the instruction count is exact (a loop of
known length, checked against the disassembly's 8 instructions per
iteration), and a fault ends the run with an error instead of a hang."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from qdeploy.emit import qemu
from qdeploy.errors import QDeployError

FIXTURE = Path(__file__).parent / "fixture_bundle"

needs_tools = pytest.mark.skipif(bool(qemu.missing_tools()) and os.environ.get("CI") != "true",
                                 reason=f"needs {', '.join(qemu.missing_tools())} (scripts/setup-dev.sh)")


@needs_tools
def test_harness_outputs_and_instruction_count(tmp_path):
    elf = qemu.build(FIXTURE, tmp_path)
    x = np.array([[0, 1, 2, 3, 4, 5, 6, 127], [3, -1, -2, -3, -4, -5, -6, -128],
                  [10, 0, 0, 0, 0, 0, 0, 0]], np.int8)
    r = qemu.run_elf(elf, x)
    want = (x[:, ::-1].astype(np.int16) + 1).astype(np.uint8).view(np.int8)   # wraps
    np.testing.assert_array_equal(r.outputs, want)
    # 1000 * in[0] iterations of 8 instructions, plus a constant (40-instruction grain)
    base = r.instructions[0]
    assert all(abs(i - base - 8000 * n) <= 40 for i, n in zip(r.instructions, x[:, 0].tolist()))
    assert base < 400
    s = qemu.sizes(tmp_path)
    assert s.bss >= 16 and s.flash > 0


@needs_tools
def test_fault_is_an_error_not_a_hang(tmp_path):
    elf = qemu.build(FIXTURE, tmp_path)
    with pytest.raises(QDeployError, match="exited with status 1"):
        qemu.run_elf(elf, np.full((1, 8), -5, np.int8), timeout_s=60)


# ------------------------------------------------------------------ real bundles
def _quantized(name, target, tmp_path):
    from qdeploy.corpus import save
    from qdeploy.pipeline import QuantizeOptions, calibration_samples, prepare_float, quantize_model
    model = tmp_path / f"{name}.onnx"
    save(name, model)
    out = tmp_path / f"{name}_{target}"
    quantize_model(model, out, QuantizeOptions(target=target, limit=8, progress=False, emit="c"))
    x, _ = calibration_samples(prepare_float(model), None, limit=3)
    return out, np.ascontiguousarray(x[..., ::-1])   # mirrored: inputs calibration never saw


@needs_tools
@pytest.mark.parametrize("name, target", [("mobilenet_v3_small", "arm"), ("tiny_yolo", "fpga")])
def test_corpus_model_on_cortex_m4_is_bit_exact(name, target, tmp_path):
    """OUT/c/ as Cortex-M4 firmware under QEMU (qemu.run: model layout, float in and
    out, like every run backend): the same integers as the reference interpreter on
    every output (tiny_yolo: two)."""
    from qdeploy.pipeline import read_manifest, run_artifact
    out, x = _quantized(name, target, tmp_path)
    got = qemu.run(out, {read_manifest(out)["inputs"][0]["name"]: x}, read_manifest(out))
    ref = run_artifact(out, "ref", x)
    assert list(got) == list(ref)
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k])


@needs_tools
def test_firmware_readme_runs(tmp_path):
    """examples/firmware/README.md's tested block, in a copy of the folder: the digits
    model for the cortex-m target on the Cortex-M4, its printed digits are the
    reference's, and output.bin holds the reference's integers."""
    import re
    import shutil
    import subprocess
    import sys
    from qdeploy.pipeline import QGRAPH, run_artifact
    from qdeploy.quant.interpreter import quantize_inputs, run_int
    from qdeploy.quant.qgraph import load_qgraph
    root = Path(__file__).resolve().parents[2]
    fw = tmp_path / "firmware"
    shutil.copytree(root / "examples" / "firmware", fw, ignore=shutil.ignore_patterns("build"))
    (tmp_path / "digits").symlink_to(root / "examples" / "digits")
    block = re.search(r"<!-- readme-test -->\s*```sh\n(.*?)```", (fw / "README.md").read_text(), re.S).group(1)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=str(root))
    stdout = ""
    for cmd in [c for c in block.splitlines() if c.strip()]:
        r = subprocess.run(["bash", "-c", cmd], cwd=fw, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"{cmd}\n{r.stdout[-1000:]}\n{r.stderr[-2000:]}"
        stdout = r.stdout
    out = fw / "build" / "digits"
    x = np.load(root / "examples" / "digits" / "eval.npz")["x"][:4]
    qg = load_qgraph(out / QGRAPH)
    ints = run_int(qg, quantize_inputs(qg, {qg.inputs[0]: x}))[qg.outputs[0]]
    np.testing.assert_array_equal(np.fromfile(fw / "build" / "fw" / "output.bin", np.int8).reshape(ints.shape), ints)
    printed = [int(a) for a in re.findall(r"^sample \d+: \d+ ticks, argmax (\d+)", stdout, re.M)]
    assert printed == list(run_artifact(out, "ref", x)[qg.outputs[0]].argmax(1))
