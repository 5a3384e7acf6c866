"""The C runtime's fixed-point arithmetic and integer softmax against qdeploy's Python
recipes (themselves checked against exact rational arithmetic and TFLite Micro), on
hypothesis-drawn values: SaturatingRoundingDoublingHighMul, RoundingDivideByPOT,
MultiplyByQuantizedMultiplier, the fpga rounding shift, and softmax rows."""
from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from qdeploy.quant import fixedpoint as fp
from qdeploy.quant.recipes import softmax_eval, softmax_params

RUNTIME = Path(__file__).resolve().parents[2] / "qdeploy" / "emit" / "c" / "runtime"
SHIM = Path(__file__).with_name("c_fixedpoint_shim.c")
i32 = st.integers(-(1 << 31), (1 << 31) - 1)


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    d = tmp_path_factory.mktemp("fixedpoint")
    (d / "qd_profile.h").write_text("#define QD_PROFILE_FPGA 0\n")
    so = d / "shim.so"
    r = subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O1", "-shared", "-fPIC",
                        "-I", str(d), "-I", str(RUNTIME), "-o", str(so), str(SHIM), str(RUNTIME / "qd_softmax.c")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lib = ctypes.CDLL(str(so))
    for name in ("shim_srdhm", "shim_rdbpot", "shim_mbqm", "shim_shift_round"):
        getattr(lib, name).restype = ctypes.c_int32
        getattr(lib, name).argtypes = [ctypes.c_int32] * (3 if name == "shim_mbqm" else 2)
    return lib


@settings(max_examples=300, deadline=None)
@given(i32, i32)
@example(-(1 << 31), -(1 << 31))
@example(1 << 30, 1 << 30)
def test_srdhm(lib, a, b):
    assert lib.shim_srdhm(a, b) == int(fp.srdhm(a, b))


@settings(max_examples=300, deadline=None)
@given(i32, st.integers(0, 31))
@example(-(1 << 31), 31)
@example(-3, 1)
def test_rdbpot(lib, x, e):
    assert lib.shim_rdbpot(x, e) == int(fp.rdbpot(x, e))


@settings(max_examples=300, deadline=None)
@given(st.integers(-(1 << 24), 1 << 24), st.floats(min_value=2.0 ** -30, max_value=2.0 ** 6))
def test_mbqm(lib, x, real):
    m, s = fp.quantize_multiplier(real)
    if abs(x) * 2.0 ** max(s, 0) >= 2.0 ** 31:   # TFLite's x * 2**left must fit int32
        return
    assert lib.shim_mbqm(x, m, s) == int(fp.mbqm(x, m, s))


@settings(max_examples=300, deadline=None)
@given(i32, st.integers(-20, 40))
@example(-(1 << 31), 1)
@example((1 << 31) - 1, 1)
@example(-1, 40)
def test_shift_round(lib, x, s):
    """Equal wherever the int64 reference fits int32; beyond, C saturates (a clamp to int8
    follows in every kernel, so the results still agree there)."""
    want = int(fp.shift_round(x, s))
    got = lib.shim_shift_round(x, s)
    if -(1 << 31) <= want < (1 << 31):
        assert got == want
    else:
        assert got == (-(1 << 31) if want < 0 else (1 << 31) - 1)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(-128, 127), min_size=1, max_size=300),
       st.floats(min_value=0.002, max_value=1.0), st.floats(min_value=0.5, max_value=2.0))
@example([127] * 300, 1.0, 2.0)
@example([-128, 127], 0.002, 1.0)
def test_softmax_row(lib, row, scale, beta):
    try:
        p = softmax_params(scale, 0, beta=beta)
    except ValueError:
        return
    x = np.array(row, np.int8)
    y = np.zeros_like(x)
    lib.shim_softmax(x.ctypes.data_as(ctypes.c_void_p), len(x), p["multiplier"], p["left_shift"], p["diff_min"],
                     y.ctypes.data_as(ctypes.c_void_p))
    np.testing.assert_array_equal(y, softmax_eval(x[None], p)[0])
