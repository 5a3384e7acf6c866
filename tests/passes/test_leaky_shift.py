"""leaky_shift: the integer multiplier/shift of a LeakyRelu slope against a
brute-force search; the pass annotation."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from onnx import helper

from qdeploy.passes import PassOptions, leaky_shift
from tests.helpers import model
from tests.passes.build import apply


def brute_force(alpha: float, bits: int) -> tuple[int, int]:
    """Every (m, s) with |m| < 2**bits and s < bits; least error, then smallest s, then |m|."""
    cands = [(abs(alpha - m / 2 ** s), s, abs(m), m) for s in range(bits)
             for m in range(-(2 ** bits) + 1, 2 ** bits)]
    err, s, _, m = min(cands)
    return m, s


def test_design_value_0_1_at_8_bits_is_13_shift_7():
    q = leaky_shift.approximation(float(np.float32(0.1)), 8)
    assert (q["multiplier"], q["shift"]) == (13, 7)
    assert q["alpha_approx"] == 0.1015625
    assert q["abs_error"] == pytest.approx(0.0015625, abs=1e-8)
    assert q["rel_error"] == pytest.approx(0.015625, rel=1e-6)


def test_ties_go_to_the_smallest_shift():
    assert leaky_shift.best_shift(0.25, 8) == (1, 2)      # not 2>>3, 32>>7
    assert leaky_shift.best_shift(0.0, 8) == (0, 0)
    assert leaky_shift.best_shift(3.0, 2) == (3, 0)


@settings(max_examples=150, deadline=None)
@given(alpha=st.floats(-3.0, 3.0, allow_nan=False), bits=st.integers(1, 7))
def test_search_matches_brute_force(alpha, bits):
    m, s = leaky_shift.best_shift(alpha, bits)
    bm, bs = brute_force(alpha, bits)
    assert abs(alpha - m / 2 ** s) == abs(alpha - bm / 2 ** bs)
    assert (m, s) == (bm, bs)


def test_pass_annotates_and_keeps_float_alpha():
    m = model([helper.make_node("LeakyRelu", ["x"], ["y"], name="lr", alpha=0.1)], {"x": (1, 2, 3, 3)}, ["y"])
    _, after, msgs = apply(m, leaky_shift)
    node = after.nodes[0]
    assert node.attrs["alpha"] == pytest.approx(0.1) and node.attrs["q_leaky"]["multiplier"] == 13
    assert msgs == ["LeakyRelu 'lr' alpha=0.1 ~ 13>>7 = 0.1015625 (abs error 0.00156, 1.56% at 8 bits)"]
    assert leaky_shift.run(after, PassOptions()) == []                 # nothing new on a second run
    q4 = leaky_shift.run(after, PassOptions(leaky_bits=4))[0]           # another budget re-annotates
    assert "1>>3 = 0.125" in q4 and node.attrs["q_leaky"]["shift"] == 3


def test_default_alpha():
    m = model([helper.make_node("LeakyRelu", ["x"], ["y"])], {"x": (1, 4)}, ["y"])
    _, after, _ = apply(m, leaky_shift)
    q = after.nodes[0].attrs["q_leaky"]          # ONNX default alpha 0.01 ~ 1>>7
    assert (q["multiplier"], q["shift"]) == (1, 7)
