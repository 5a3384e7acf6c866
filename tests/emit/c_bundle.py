"""Helpers of the C bundle tests: emit a QGraph's bundle into a folder, compile it with
the harness (tests/emit/c_harness.c) under a given compiler and flags, run it on int8
samples, and the reference interpreter's integers in the bundle's layout."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from qdeploy.emit import EmitContext
from qdeploy.emit.c import build
from qdeploy.emit.c.host import sources
from qdeploy.emit.c.layout import to_memory
from qdeploy.quant.interpreter import quantize_inputs, run_int
from qdeploy.quant.targets import load_target

HARNESS = Path(__file__).with_name("c_harness.c")
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wvla"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]


def write(qg, target: str, out: Path):
    """The bundle of ``qg`` (as ``quantize --emit c`` writes it) under ``out``/c."""
    b = build(qg, EmitContext(load_target(target), None, qg.name, "test"))
    for p, data in b.files.items():
        (out / p).parent.mkdir(parents=True, exist_ok=True)
        (out / p).write_bytes(data)
    return b


_OBJECTS: dict = {}


def _objects(cdir: Path, cc: str, flags: list[str]) -> list[Path]:
    """The runtime kernels compiled once per compiler, flags, profile and runtime
    version (they are the same in every bundle of a profile)."""
    runtime = sorted(p for p in cdir.glob("qd_*") if p.name != "qd_profile.h")
    fpga = b"QD_PROFILE_FPGA 1" in (cdir / "qd_profile.h").read_bytes()
    h = hashlib.sha256(repr((cc, flags, fpga)).encode())
    for p in runtime:
        h.update(p.name.encode() + p.read_bytes())
    key = h.hexdigest()
    if key not in _OBJECTS:
        d = Path(tempfile.mkdtemp(prefix="qd-rt-"))
        for p in runtime + [cdir / "qd_profile.h"]:
            shutil.copy(p, d / p.name)
        srcs = [d / p.name for p in runtime if p.suffix == ".c"]
        r = subprocess.run([cc, *STRICT, *flags, "-I", str(d), "-c", *map(str, srcs)], cwd=d,
                           capture_output=True, text=True)
        assert r.returncode == 0, f"{cc} failed on the runtime:\n{r.stderr[-3000:]}"
        _OBJECTS[key] = sorted(d.glob("*.o"))
    return _OBJECTS[key]


def compile_harness(cdir: Path, cc: str, flags: list[str], exe: Path) -> Path:
    """The harness linked with the bundle (the runtime objects shared by the bundles of
    a profile); example_main.c compiled too (not linked)."""
    objs = _objects(cdir, cc, flags)
    model = [cdir / "model.c", cdir / "model_weights.c"]
    cmd = [cc, *STRICT, *flags, "-I", str(cdir), "-o", str(exe), str(HARNESS), *map(str, model),
           *map(str, objs)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"{cc} failed on the bundle:\n{r.stderr[-3000:]}"
    r = subprocess.run([cc, *STRICT, "-fsyntax-only", "-I", str(cdir), str(cdir / "example_main.c")],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"{cc} failed on example_main.c:\n{r.stderr[-3000:]}"
    return exe


def run_harness(exe: Path, blocks: np.ndarray, out_bytes: int) -> np.ndarray:
    work = exe.parent
    (work / "in.bin").write_bytes(np.ascontiguousarray(blocks, np.int8).tobytes())
    r = subprocess.run([str(exe), str(work / "in.bin"), str(work / "out.bin")], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "ASAN_OPTIONS": "detect_leaks=1",
                                                    "UBSAN_OPTIONS": "print_stacktrace=1"})
    assert r.returncode == 0, f"harness exit {r.returncode}:\n{r.stderr[-3000:]}"
    return np.fromfile(work / "out.bin", np.int8).reshape(len(blocks), out_bytes)


def int8_blocks(qg, x: dict) -> np.ndarray:
    """Float inputs quantized as the reference does, each sample's inputs back to back in
    the bundle's layout: [N, MODEL_INPUT_BYTES]."""
    q = quantize_inputs(qg, x)
    n = len(next(iter(q.values())))
    return np.stack([np.concatenate([to_memory(q[name][i:i + 1]) for name in qg.inputs]) for i in range(n)])


def reference_blocks(qg, x: dict) -> np.ndarray:
    """The reference interpreter's int8 outputs in the bundle's layout: [N, MODEL_OUTPUT_BYTES]."""
    ints = run_int(qg, quantize_inputs(qg, x))
    n = len(next(iter(ints.values())))
    return np.stack([np.concatenate([to_memory(np.asarray(ints[o][i:i + 1])) for o in qg.outputs]) for i in range(n)])


def have(cc: str) -> bool:
    return shutil.which(cc) is not None
