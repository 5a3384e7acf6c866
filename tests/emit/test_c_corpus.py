"""The C bundle of every corpus model x {arm, cortex-m, fpga}, judged by gcc and clang:
compiles with ``-std=c99 -Wall -Wextra -Werror -pedantic`` under both, runs under
AddressSanitizer + UndefinedBehaviorSanitizer (gcc) in an arena of exactly
MODEL_ARENA_BYTES between guard canaries (tests/emit/c_harness.c), and its int8 outputs
equal the reference interpreter's, bit for bit, on several inputs (gcc and clang builds).
The cortex-m bundle has arm's numerics: its code and data are the arm bundle's, byte for
byte (only the target name in the comments differs), so it is compared, not rebuilt.
Two models also run under valgrind."""
from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

from qdeploy.corpus import CORPUS
from tests.emit import c_bundle
from tests.emit.corpus_qgraphs import corpus_qgraph

SAMPLES = 3
VALGRIND = ("mobilenet_v2", "shufflenet_v2")


def _inputs(qg, seed=0):
    rng = np.random.default_rng(seed)
    return {i: rng.uniform(-1.5, 1.5, (SAMPLES,) + tuple(qg.tensors[i].shape[1:])).astype(np.float32)
            for i in qg.inputs}


def _strip_target(data: bytes) -> bytes:
    return re.sub(rb"target '[^']*'|--target \S+", b"", data)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CORPUS))
def test_corpus_bundle_bit_exact(name, tmp_path):
    for cc in ("gcc", "clang"):
        assert c_bundle.have(cc), f"{cc} missing: run scripts/setup-dev.sh"
    for target in ("arm", "fpga"):
        qg = corpus_qgraph(name, target)
        d = tmp_path / target
        b = c_bundle.write(qg, target, d)
        x = _inputs(qg)
        blocks, want = c_bundle.int8_blocks(qg, x), c_bundle.reference_blocks(qg, x)
        exe = c_bundle.compile_harness(d / "c", "gcc", ["-O1", "-g", *c_bundle.SANITIZE], d / "h_gcc")
        np.testing.assert_array_equal(c_bundle.run_harness(exe, blocks, want.shape[1]), want,
                                      err_msg=f"{name} {target}: gcc (ASan+UBSan) build vs reference")
        exe = c_bundle.compile_harness(d / "c", "clang", ["-O1"], d / "h_clang")
        np.testing.assert_array_equal(c_bundle.run_harness(exe, blocks, want.shape[1]), want,
                                      err_msg=f"{name} {target}: clang build vs reference")
        if target == "arm" and name in VALGRIND:
            exe = c_bundle.compile_harness(d / "c", "gcc", ["-O1", "-g"], d / "h_vg")
            r = subprocess.run(["valgrind", "--error-exitcode=9", "--leak-check=full", "-q", str(exe),
                                str(d / "in.bin"), str(d / "vg.bin")], capture_output=True, text=True, timeout=600)
            assert r.returncode == 0, r.stderr[-2000:]
            np.testing.assert_array_equal(np.fromfile(d / "vg.bin", np.int8).reshape(want.shape), want)
        if target == "arm":
            cm = c_bundle.write(corpus_qgraph(name, "cortex-m"), "cortex-m", tmp_path / "cortex-m")
            assert set(cm.files) == set(b.files)
            for p in b.files:
                assert _strip_target(cm.files[p]) == _strip_target(b.files[p]), f"cortex-m {p} differs from arm's"
            assert cm.arena == b.arena
