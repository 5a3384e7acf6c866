"""The C bundle as Cortex-M4 firmware under QEMU: every corpus model bit-exact?
Instructions per inference, flash and RAM on the MCU.

    python bench/c_firmware.py [--models a,b] [--samples 4] [--write]

For every corpus model and the ``arm`` and ``fpga`` targets, ``quantize_model``
(bundled calibration photos, first 8) writes ``OUT/c/``; examples/firmware builds
it with ``arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -O2`` (qdeploy/emit/qemu.py)
and ``qemu-system-arm -M mps2-an386 -icount shift=0`` runs it on ``--samples``
inputs (the calibration photos mirrored: inputs calibration never saw). Columns:

* ``QEMU = ref``: every output integer equal to ``qdeploy run --backend ref``
  on every sample (the firmware's output.bin, dequantized, against the
  reference interpreter), or how many differ;
* ``M4 insns``: instructions per ``model_invoke`` (SysTick around the call,
  one instruction per virtual ns: a 40-instruction grain; the median over the
  samples). Instructions, not cycles: QEMU does not model the M4's pipeline,
  wait states or memory;
* ``flash -O2`` / ``flash -Os``: ``text + data`` of the bundle's own objects
  built for the M4 (code + const weights; startup, libc and the example main
  excluded); ``weights``: the manifest's const-data bytes; ``est.``: the
  emitter's flash estimate (manifest ``memory.flash_bytes``);
* ``RAM``: the manifest's ``memory.ram_bytes`` (arena + input + output).

``--write`` replaces the "C bundle on Cortex-M4 (QEMU)" section of bench/RESULTS.md.
Host latency and arena vs TFLite Micro: bench/c_bundle.py.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.results import write_section  # noqa: E402
from qdeploy.corpus import CORPUS, save  # noqa: E402
from qdeploy.emit import qemu  # noqa: E402
from qdeploy.emit.c.host import float_outputs, int8_inputs  # noqa: E402
from qdeploy.pipeline import (QGRAPH, QuantizeOptions, calibration_samples, prepare_float,  # noqa: E402
                              quantize_model, read_manifest, run_artifact)
from qdeploy.quant.qgraph import load_qgraph  # noqa: E402

SECTION = "C bundle on Cortex-M4 (QEMU)"
TARGETS = ("arm", "fpga")


def bench_one(model: Path, target: str, x: np.ndarray, work: Path) -> dict:
    out = work / f"{model.stem}_{target}"
    quantize_model(model, out, QuantizeOptions(target=target, limit=8, progress=False, emit="c"))
    qg = load_qgraph(out / QGRAPH)
    mem = read_manifest(out)["memory"]
    with tempfile.TemporaryDirectory() as o2, tempfile.TemporaryDirectory() as os_:
        elf = qemu.build(out / "c", o2)
        run = qemu.run_elf(elf, int8_inputs(qg, {qg.inputs[0]: x}), timeout_s=120 + 60 * len(x))
        flash_o2 = qemu.sizes(o2).flash
        qemu.build(out / "c", os_, opt="-Os")
        flash_os = qemu.sizes(os_).flash
    got, ref = float_outputs(qg, run.outputs), run_artifact(out, "ref", x)
    differ = sum(int(np.sum(got[k] != ref[k])) for k in ref)
    return {"model": model.stem, "target": target, "differ": differ, "values": sum(v.size for v in ref.values()),
            "insns": int(np.median(run.instructions)), "flash_o2": flash_o2, "flash_os": flash_os,
            "weights": mem["weights_bytes"], "est": mem["flash_bytes"], "ram": mem["ram_bytes"]}


def table(rows: list[dict], samples: int) -> str:
    lines = [f"| model | target | QEMU = ref ({samples} inputs) | M4 insns | flash -O2 | flash -Os | weights | "
             "est. | RAM |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        same = "bit-exact" if r["differ"] == 0 else f"{r['differ']} of {r['values']} differ"
        lines.append(f"| {r['model']} | {r['target']} | {same} | {r['insns'] / 1e6:.2f} M | {r['flash_o2']} | "
                     f"{r['flash_os']} | {r['weights']} | {r['est']} | {r['ram']} |")
    return "\n".join(lines)


def versions() -> str:
    def first_line(cmd):
        return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
    return f"{first_line(['arm-none-eabi-gcc', '--version'])}; {first_line(['qemu-system-arm', '--version'])}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(CORPUS))
    ap.add_argument("--samples", type=int, default=4, help="inputs per model under QEMU")
    ap.add_argument("--write", action="store_true", help=f"replace the '{SECTION}' section of bench/RESULTS.md")
    a = ap.parse_args(argv)
    if qemu.missing_tools():
        sys.exit(f"needs {', '.join(qemu.missing_tools())}: bash scripts/setup-dev.sh")
    rows = []
    with tempfile.TemporaryDirectory(prefix="qdeploy-bench-fw-") as work:
        work = Path(work)
        for name in a.models.split(","):
            model = work / f"{name}.onnx"
            save(name, model)
            x, _ = calibration_samples(prepare_float(model), None, limit=a.samples)
            x = np.ascontiguousarray(x[..., ::-1])
            for target in TARGETS:
                t0 = time.time()
                rows.append(bench_one(model, target, x, work))
                print(f"{name} {target}: {time.time() - t0:.0f} s {rows[-1]}", file=sys.stderr, flush=True)
    body = (f"Command: `python bench/c_firmware.py --samples {a.samples}`  \n"
            f"Date: {time.strftime('%Y-%m-%d')}; {versions()}\n\n" + table(rows, a.samples))
    print(body)
    if a.write:
        write_section(SECTION, body)


if __name__ == "__main__":
    main()
