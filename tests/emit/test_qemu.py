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
