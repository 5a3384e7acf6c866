"""A qdeploy C bundle as bare-metal Cortex-M4 firmware, run under QEMU.

Builds ``OUT/c/`` with examples/firmware (its Makefile, linker script,
startup and main: ``arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb``, hard float,
newlib over semihosting) and runs it on ``qemu-system-arm -M mps2-an386``
(always under a timeout: a crash ends the run through the fault handler, a hang
through the timeout). The int8 samples go in through the semihosting file
``input.bin`` and the outputs come back through ``output.bin``, byte for byte
in the bundle's layout. QEMU runs with ``-icount shift=0`` (one instruction per
virtual nanosecond), so the SysTick ticks the firmware prints around each
``model_invoke`` count instructions: :data:`INSTRUCTIONS_PER_TICK` per tick
(25 MHz CPU clock).

The firmware sources live in the source tree (examples/firmware), not in the
installed package: this module serves the tests, the bench and the example.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import QDeployError

FIRMWARE = Path(__file__).resolve().parents[2] / "examples" / "firmware"
TOOLS = ("make", "arm-none-eabi-gcc", "qemu-system-arm")
INSTRUCTIONS_PER_TICK = 40          # 1 ns per instruction, 25 MHz SysTick
BUILD_TIMEOUT_S = 600


@dataclass
class QemuRun:
    outputs: np.ndarray              # int8 [N, output bytes], the bundle's layout
    instructions: list[int]          # per model_invoke (SysTick ticks x 40; 40-instruction grain)
    stdout: str


@dataclass
class Sizes:
    """Bytes of the bundle's own objects built for Cortex-M4 (no libc, no startup)."""
    text: int                        # code + const data (weights): flash
    data: int                        # initialised RAM (flash too, for its initial values)
    bss: int                         # zeroed RAM (the arena)

    @property
    def flash(self) -> int:
        return self.text + self.data

    @property
    def ram(self) -> int:
        return self.data + self.bss


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def _check_tools() -> None:
    if missing_tools():
        raise QDeployError(f"Cortex-M build/run needs {', '.join(missing_tools())}; install them "
                           "with scripts/setup-dev.sh (Debian: gcc-arm-none-eabi libnewlib-arm-none-eabi "
                           "qemu-system-arm)")
    if not (FIRMWARE / "Makefile").is_file():
        raise QDeployError(f"{FIRMWARE}: the firmware example is not here; run from qdeploy's source tree")


def build(bundle, build_dir, opt: str = "-O2 -g") -> Path:
    """``bundle`` (an OUT/c folder) linked into ``build_dir``/firmware.elf."""
    _check_tools()
    bundle, build_dir = Path(bundle).resolve(), Path(build_dir).resolve()
    cmd = ["make", "-s", "-C", str(FIRMWARE), f"BUNDLE={bundle}", f"BUILD={build_dir}",
           f"OPT={opt}", str(build_dir / "firmware.elf")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    if r.returncode != 0:
        raise QDeployError(f"{bundle}: the Cortex-M4 build failed: {_first_error(r.stderr + r.stdout)}")
    return build_dir / "firmware.elf"


def sizes(build_dir) -> Sizes:
    """What the bundle's objects take (``arm-none-eabi-size``; startup.o and main.o excluded)."""
    objs = sorted(p for p in Path(build_dir).glob("*.o") if p.name not in ("startup.o", "main.o"))
    r = subprocess.run(["arm-none-eabi-size", "-t", *map(str, objs)], capture_output=True, text=True,
                       check=True)
    text, data, bss = (int(v) for v in r.stdout.strip().splitlines()[-1].split()[:3])
    return Sizes(text, data, bss)


def run_elf(elf, x: np.ndarray, timeout_s: float = 300.0) -> QemuRun:
    """The firmware ``elf`` on ``x`` (int8, N samples along axis 0, each flattened
    in the bundle's layout): outputs [N, output bytes] and instructions per sample."""
    x = np.ascontiguousarray(x, dtype=np.int8).reshape(len(x), -1)
    with tempfile.TemporaryDirectory(prefix="qdeploy-qemu-") as tmp:
        tmp = Path(tmp)
        shutil.copy(elf, tmp / "firmware.elf")
        (tmp / "input.bin").write_bytes(x.tobytes())
        cmd = ["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-semihosting",
               "-icount", "shift=0", "-kernel", "firmware.elf"]
        try:
            r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise QDeployError(f"{elf}: no exit within {timeout_s:.0f} s under QEMU (a hang or a "
                               "crash loop)") from None
        if r.returncode != 0:
            raise QDeployError(f"{elf}: firmware exited with status {r.returncode} under QEMU "
                               f"(1 = fault or model_invoke error): {r.stdout.strip()[-300:]}")
        out = np.fromfile(tmp / "output.bin", dtype=np.int8)
    ticks = [int(t) for t in re.findall(r"^sample \d+: (\d+) ticks", r.stdout, re.M)]
    if len(ticks) != len(x) or out.size % max(len(x), 1):
        raise QDeployError(f"{elf}: {len(ticks)} of {len(x)} samples ran under QEMU: {r.stdout[-300:]}")
    return QemuRun(out.reshape(len(x), -1), [t * INSTRUCTIONS_PER_TICK for t in ticks], r.stdout)


def run_int8(bundle, x: np.ndarray, timeout_s: float = 300.0) -> QemuRun:
    """Build ``bundle`` (OUT/c) for Cortex-M4 and run it on ``x`` under QEMU."""
    with tempfile.TemporaryDirectory(prefix="qdeploy-fw-") as tmp:
        return run_elf(build(bundle, tmp), x, timeout_s)


# ------------------------------------------------------------------ float in, float out
def run(out, inputs: dict, manifest: dict) -> dict:
    """OUT/c/ built for Cortex-M4 and run under QEMU, with a run backend's signature
    (float inputs and outputs in the model's layout, by name). Not in the ARTEFACTS
    table: `quantize` verifies every backend there, and this one takes seconds and
    the ARM toolchain."""
    from ..pipeline import QGRAPH
    from ..quant.qgraph import load_qgraph
    out = Path(out)
    qg = load_qgraph(out / QGRAPH)
    from .c.host import float_outputs, int8_inputs
    x = int8_inputs(qg, inputs)
    return float_outputs(qg, run_int8(out / "c", x, timeout_s=60.0 + 5.0 * len(x)).outputs)


def _first_error(log: str) -> str:
    lines = [ln for ln in log.splitlines() if "error" in ln.lower()] or log.strip().splitlines()[-1:]
    return lines[0].strip() if lines else "(no output)"
