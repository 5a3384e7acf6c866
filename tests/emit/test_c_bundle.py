"""The C bundle beyond numerics: names are data (hostile names still compile and run),
the fpga kernels contain no divide and no 64-bit arithmetic, the cortex-m memory limits
are enforced with a clear error, bytes are deterministic, and `qdeploy run --backend c`
(the cached shared library through ctypes) equals `--backend ref` bit for bit."""
from __future__ import annotations

import dataclasses
import json
import re
import subprocess

import numpy as np
import pytest
from onnx import helper

from qdeploy.emit import EmitContext
from qdeploy.emit.c import build
from qdeploy.emit.c.host import FLAGS, build_library, compiler
from qdeploy.errors import QDeployError
from qdeploy.pipeline import QuantizeOptions, quantize_model, run_artifact
from qdeploy.quant.targets import load_target
from tests.cli_helpers import DIGITS_CALIB, DIGITS_EVAL, DIGITS_MODEL
from tests.emit import c_bundle
from tests.emit.corpus_qgraphs import corpus_qgraph
from tests.emit.qdq_oneop import build_case
from tests.helpers import model
from tests.quant.oneop import pipeline

HOSTILE = ['a"b', "*/ int x; /*", "??/\nnext", "line\nbreak\\", "caf\u00e9 \u2603", "int", "for",
           "a-b", "a_b", "x" * 10_000, "", "__reserved", "9lives", "main"]


def _rename(qg, names):
    """Every tensor and node of ``qg`` renamed to the hostile names, in turn."""
    it = iter(names * (1 + (len(qg.tensors) + len(qg.nodes)) // len(names)))
    mapping = {t: f"{next(it)}" for t in qg.tensors}
    seen = {}
    for t, v in list(mapping.items()):   # keep tensor names unique (clashes stay for the C side)
        seen[v] = seen.get(v, 0) + 1
        mapping[t] = v if seen[v] == 1 else v + "\u200b" * (seen[v] - 1)
    qg.tensors = {mapping[k]: dataclasses.replace(t, name=mapping[k]) for k, t in qg.tensors.items()}
    for n in qg.nodes:
        n.name = next(it)
        n.inputs = [mapping[i] for i in n.inputs]
        n.outputs = [mapping[o] for o in n.outputs]
    qg.inputs = [mapping[i] for i in qg.inputs]
    qg.outputs = [mapping[o] for o in qg.outputs]
    return qg


@pytest.mark.parametrize("case", ["concat", "conv_transpose", "split"])
def test_hostile_names_compile_and_run(case, tmp_path):
    m, x, _ = build_case(case)
    _, qg = pipeline(m, x, "arm")
    x = dict(zip([n for n in qg.inputs], x.values()))
    qg = _rename(qg, HOSTILE)
    x = dict(zip(qg.inputs, x.values()))
    c_bundle.write(qg, "arm", tmp_path)
    text = b"".join((tmp_path / "c" / f).read_bytes() for f in ("model.h", "model.c", "model_weights.c"))
    assert b"??" not in text and b"\\\n" not in text and max(text) < 128
    exe = c_bundle.compile_harness(tmp_path / "c", "gcc", ["-O1"], tmp_path / "h")
    want = c_bundle.reference_blocks(qg, x)
    np.testing.assert_array_equal(c_bundle.run_harness(exe, c_bundle.int8_blocks(qg, x), want.shape[1]), want)


def _own_code(cdir, src) -> str:
    """``src`` preprocessed as the bundle compiles it, only the lines from the bundle's own
    files (comments are gone after -E; system headers left out)."""
    out = subprocess.run(["gcc", "-std=c99", "-E", "-I", str(cdir), str(src)], capture_output=True,
                         text=True, check=True).stdout
    own, mine = [], False
    for line in out.splitlines():
        if line.startswith("# "):
            mine = str(cdir) in line.split('"')[1] if '"' in line else mine
        elif mine:
            own.append(line)
    return "\n".join(own)


def test_fpga_kernels_have_no_divide_and_no_wide_arithmetic(tmp_path):
    """The fpga bundle's runtime holds no ``/`` or ``%`` operator and no 64-bit type; no
    bundle's code (runtime and schedule, both profiles) holds a floating-point type."""
    qg = corpus_qgraph("mobilenet_v3_small", "fpga")
    c_bundle.write(qg, "fpga", tmp_path)
    cdir = tmp_path / "c"
    for src in sorted(cdir.glob("qd_*.c")):
        code = _own_code(cdir, src)
        assert not re.search(r"[/%]", code), f"{src.name}: a divide in the fpga kernels"
        assert not re.search(r"int64_t|long", code), f"{src.name}: 64-bit arithmetic in the fpga kernels"
    arm = tmp_path / "arm"
    c_bundle.write(corpus_qgraph("mobilenet_v3_small", "arm"), "arm", arm)
    assert "int64_t" in _own_code(arm / "c", arm / "c" / "qd_conv.c")   # the scan sees Q31 code
    for d in (cdir, arm / "c"):
        for src in sorted(d.glob("*.c")):
            if src.name != "example_main.c":
                assert not re.search(r"\b(float|double)\b", _own_code(d, src)), f"{src}: floating point"


def test_cortex_m_limits_name_the_tensors_and_what_to_try():
    qg = corpus_qgraph("resnext", "cortex-m")
    base = load_target("cortex-m")
    ok = build(qg, EmitContext(base, None, "resnext", "test"))
    assert ok.ram <= base.ram_kib * 1024
    small = dataclasses.replace(base, ram_kib=ok.ram // 1024 - 8)
    with pytest.raises(QDeployError) as e:
        build(qg, EmitContext(small, None, "resnext", "test"))
    msg = str(e.value)
    assert "\n" not in msg and "ram_kib" in msg and "smaller input" in msg and "width multiplier" in msg
    assert re.search(r"'[^']+' \d+ B", msg), msg   # the largest live tensors, by name and size
    tiny_flash = dataclasses.replace(base, flash_kib=16)
    with pytest.raises(QDeployError, match=r"flash .* > flash_kib 16; largest constants: .*weights"):
        build(qg, EmitContext(tiny_flash, None, "resnext", "test"))


def test_bundle_bytes_are_deterministic():
    qg = corpus_qgraph("shufflenet_v2", "arm")
    a = build(qg, EmitContext(load_target("arm"), None, "m", "test")).files
    b = build(qg, EmitContext(load_target("arm"), None, "m", "test")).files
    assert a == b
    assert all(v.startswith(b"/* Generated by qdeploy") or k.endswith(("Makefile", "CMakeLists.txt"))
               or "/qd_" in k for k, v in a.items())


@pytest.mark.parametrize("target", ["arm", "fpga"])
def test_run_backend_c_equals_ref(target, tmp_path, monkeypatch):
    monkeypatch.setenv("QDEPLOY_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "o"
    quantize_model(DIGITS_MODEL, out, QuantizeOptions(target=target, calib=str(DIGITS_CALIB), emit="c", progress=False))
    x = np.load(DIGITS_EVAL)["x"][:16]
    ref, got = run_artifact(out, "ref", x), run_artifact(out, "c", x)
    assert list(ref) == list(got)
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k])
    memory = json.loads((out / "manifest.json").read_text())["memory"]
    header = (out / "c" / "model.h").read_text()
    assert f"#define MODEL_ARENA_BYTES {memory['arena_bytes']}\n" in header
    assert memory["arena_lower_bound"] <= memory["arena_bytes"] <= memory["ram_bytes"]
    lib = build_library(out / "c")
    assert lib.is_file() and str(lib).startswith(str(tmp_path / "cache"))
    assert len(list((tmp_path / "cache").rglob("*.so"))) == 1   # compiled once, reused
    # a file the user put beside the bundle (their firmware's main) is not compiled into it
    (out / "c" / "my_main.c").write_text("#error not part of the bundle\nint main(void) { return 0; }\n")
    np.testing.assert_array_equal(run_artifact(out, "c", x)[k], ref[k])
    assert len(list((tmp_path / "cache").rglob("*.so"))) == 1


def test_quantize_summary_prints_the_arena(tmp_path):
    from tests.cli_helpers import cli
    res = cli("quantize", DIGITS_MODEL, "--target", "fpga", "--calib", DIGITS_CALIB, "--emit", "c", "-o", tmp_path / "o")
    assert res.exit_code == 0, res.stderr
    arena = json.loads((tmp_path / "o" / "manifest.json").read_text())["memory"]["arena_bytes"]
    assert f"C bundle: arena {arena} B" in res.stdout


def test_data_movement_is_fused_and_flatten_keeps_nhwc(tmp_path):
    """ShuffleNet's reshape -> transpose -> reshape and SPP's flatten -> concat are composed
    into the copies that fill the concat/split (no intermediate tensor stored); a Flatten
    read only by a FullyConnected keeps the NHWC order (weight columns permuted, no copy).
    Bit-exactness of all three is checked by test_c_corpus / test_c_ops; here, the schedule."""
    def schedule(qg):
        return build(qg, EmitContext(load_target("arm"), None, "m", "test")).files["c/model.c"].decode()
    shuffle = schedule(corpus_qgraph("shufflenet_v2", "arm"))
    # unfused: 8 concat inputs + 8 reshapes + 4 transposes + 2 split outputs + 2 slices = 24 copies
    assert "/* transpose" not in shuffle and "/* concat" not in shuffle and shuffle.count("qd_copy(") <= 10
    spp = schedule(corpus_qgraph("he2014", "arm"))
    assert "/* reshape" not in spp and spp.count("qd_copy(") == 3   # the three pools into the concat
    rng = np.random.default_rng(0)
    m = model([helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
               helper.make_node("Flatten", ["c"], ["f"]), helper.make_node("Gemm", ["f", "G"], ["y"], transB=1)],
              {"x": (1, 3, 5, 5)}, ["y"], {"W": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
                                           "G": rng.normal(size=(6, 100)).astype(np.float32)})
    x = {"x": rng.uniform(-1, 1, (4, 3, 5, 5)).astype(np.float32)}
    _, qg = pipeline(m, x, "arm")
    flat = schedule(qg)
    assert "qd_copy(" not in flat and "qd_fully_connected(" in flat
    c_bundle.write(qg, "arm", tmp_path)
    exe = c_bundle.compile_harness(tmp_path / "c", "gcc", ["-O1"], tmp_path / "h")
    want = c_bundle.reference_blocks(qg, x)
    np.testing.assert_array_equal(c_bundle.run_harness(exe, c_bundle.int8_blocks(qg, x), want.shape[1]), want)


def test_cmake_builds_the_example(tmp_path):
    """The bundle's CMakeLists.txt: configure, build, run example_main (zero-point input)."""
    qg = corpus_qgraph("squeezenet", "fpga")
    c_bundle.write(qg, "fpga", tmp_path)
    build_dir = tmp_path / "build"
    for cmd in (["cmake", "-S", str(tmp_path / "c"), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release"],
                ["cmake", "--build", str(build_dir)]):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    r = subprocess.run([str(build_dir / "example_main")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("output 0:")
    assert len(r.stdout.split()) == 2 + int(np.prod(qg.tensors[qg.outputs[0]].shape))


def test_runtime_kernels_compile_once_per_target(tmp_path, monkeypatch):
    """A second model of the same target compiles only its own sources (model.c, the
    weights); the kernels' objects are reused, and the library equals a one-shot build."""
    monkeypatch.setenv("QDEPLOY_CACHE", str(tmp_path / "cache"))
    dirs = []
    for name in ("shufflenet_v2", "mobilenet_v2"):
        files = build(corpus_qgraph(name, "arm"), EmitContext(load_target("arm"), None, name, "test")).files
        for path, data in files.items():
            (tmp_path / name / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name / path).write_bytes(data)
        dirs.append(tmp_path / name / "c")
    libs = [build_library(d) for d in dirs]
    kernels = list(dirs[0].glob("qd_*.c"))
    assert kernels and len(list((tmp_path / "cache" / "c" / "obj").glob("*.o"))) == len(kernels) + 2 * 2
    one_shot = tmp_path / "one_shot.so"
    srcs = sorted(str(p) for p in dirs[1].glob("*.c") if p.name != "example_main.c")
    subprocess.run([compiler(), *FLAGS, "-o", str(one_shot), *srcs], check=True)
    assert libs[1].read_bytes() == one_shot.read_bytes()


def test_header_names_the_target_as_quantize_takes_it(tmp_path):
    """The headers' "rebuild with" line gives --target what loads the same target again:
    a bundled target's name, or the user's .toml file (its name, not the folder it lay in)."""
    from tests.helpers import ROOT
    mine = tmp_path / "targets" / "my_board.toml"
    mine.parent.mkdir()
    mine.write_text((ROOT / "targets" / "arm.toml").read_text().replace('name = "arm"', 'name = "board"'))
    for target, arg in (("arm", "arm"), (str(mine), "my_board.toml")):
        out = tmp_path / f"out_{arg.replace('.', '_')}"
        quantize_model(DIGITS_MODEL, out, QuantizeOptions(target=target, calib=str(DIGITS_CALIB), emit="c",
                                                          progress=False))
        header = (out / "c" / "model.h").read_text()
        assert f"--target {arg} --emit c" in header
        assert str(tmp_path) not in header
