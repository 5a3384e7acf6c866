"""The static arena planner (qdeploy/emit/arena.py): no two buffers live at the
same step share a byte (except an honoured in-place pair), offsets aligned, the
size exact and at least the lower bound, and at the lower bound within 1.1x on
every corpus model. The last test runs corpus models through the reference
interpreter's kernels with every tensor stored at its planned offset of one
byte array: any overlap of live tensors would change the outputs."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from qdeploy.corpus import CORPUS
from qdeploy.emit.arena import ALIGNMENT, Buffer, plan, plan_qgraph, qgraph_buffers, schedule, int_io
from qdeploy.quant.interpreter import quantize_inputs, run_int, run_node
from tests.emit.corpus_qgraphs import corpus_qgraph


def _live_max(buffers) -> int:
    """Max over steps of the sum of the live buffers' sizes (no sharing)."""
    steps = range(min(b.first for b in buffers), max(b.last for b in buffers) + 1)
    return max(sum(b.size for b in buffers if b.first <= t <= b.last) for t in steps)


def _check(buffers, p):
    by = {b.name: b for b in buffers}
    assert set(p.offsets) == set(by)
    assert all(o % ALIGNMENT == 0 for o in p.offsets.values())
    assert p.size == max((p.offsets[b.name] + b.size for b in buffers), default=0)
    assert p.size >= p.lower_bound
    takers: set[str] = set()
    for b, a in p.inplace.items():     # only the legal sharings
        assert by[b].inplace_of == a and by[a].last == by[b].first and by[b].size == by[a].size
        assert a not in takers
        takers.add(a)
        assert p.offsets[a] == p.offsets[b]
    for i, a in enumerate(buffers):
        for b in buffers[i + 1:]:
            if a.first <= b.last and b.first <= a.last and a.size and b.size:
                if p.inplace.get(b.name) == a.name or p.inplace.get(a.name) == b.name:
                    continue
                lo_a, lo_b = p.offsets[a.name], p.offsets[b.name]
                assert lo_a + a.size <= lo_b or lo_b + b.size <= lo_a, (a, b, p)


@st.composite
def buffer_sets(draw):
    n = draw(st.integers(1, 14))
    out = []
    for i in range(n):
        first = draw(st.integers(0, 12))
        last = first + draw(st.integers(0, 6))
        size = draw(st.sampled_from([0, 1, 7, 16, 33, 100, 256, 1000, 4096]))
        inplace = draw(st.one_of(st.none(), st.integers(0, n - 1).map(lambda j: f"b{j}")))
        out.append(Buffer(f"b{i}", size, first, last, inplace))
    return out


@settings(max_examples=300, deadline=None)
@given(buffer_sets())
def test_random_lifetimes_never_overlap(buffers):
    p = plan(buffers)
    _check(buffers, p)
    q = plan([Buffer(b.name, b.size, b.first, b.last) for b in buffers])
    assert q.lower_bound == _live_max(buffers) and not q.inplace
    assert p.lower_bound <= q.lower_bound


def test_chain_reaches_the_bound_where_largest_first_does_not():
    """MobileNet V1's stem: 12 kB input, 8 kB, 8 kB, 16 kB. Largest-first puts the
    input at 0 and the 8 kB pair side by side above it (28 kB); the bound is the
    16 + 8 kB of step 2, which placing the peak step's buffers first reaches."""
    kb = 1024
    bufs = [Buffer("in", 12 * kb, 0, 0), Buffer("c1", 8 * kb, 0, 1), Buffer("c2", 8 * kb, 1, 2),
            Buffer("c3", 16 * kb, 2, 3), Buffer("c4", 4 * kb, 3, 4)]
    p = plan(bufs)
    _check(bufs, p)
    assert p.lower_bound == 24 * kb and p.size == 24 * kb
    assert set(p.peak) == {"c2", "c3"}


def test_chain_with_conv_scratch_reaches_the_bound():
    """The digits CNN's C bundle: five convs, each with an im2col scratch buffer live
    during its own step. Largest-first, peak-first and most-conflicts-first all give
    2048 B (the 512 B of step 2 end up above the 768 B of step 3); placing in schedule
    order reaches the bound of step 1 (1024 + 512 + 144)."""
    bufs = [Buffer("c0", 1024, 0, 1), Buffer("c3", 512, 1, 2), Buffer("c6", 512, 2, 3),
            Buffer("c9", 768, 3, 4), Buffer("c12", 256, 4, 5), Buffer("gap", 64, 5, 6),
            Buffer("flat", 64, 6, 7, inplace_of="gap"), Buffer("s0", 9, 0, 0), Buffer("s1", 144, 1, 1),
            Buffer("s4", 432, 4, 4)]
    p = plan(bufs)
    _check(bufs, p)
    assert p.size == p.lower_bound == 1680


def test_inplace_shares_only_when_the_input_dies_there():
    bufs = [Buffer("x", 64, 0, 1), Buffer("relu", 64, 1, 2, inplace_of="x"),
            Buffer("lut", 64, 2, 3, inplace_of="relu"),       # chain: all three share
            Buffer("y", 64, 3, 5, inplace_of="x"),            # x long dead: not honoured
            Buffer("z", 64, 4, 5, inplace_of="lut")]          # lut died at 3: not honoured
    p = plan(bufs)
    _check(bufs, p)
    assert p.inplace == {"relu": "x", "lut": "relu"}
    assert p.offsets["x"] == p.offsets["relu"] == p.offsets["lut"]
    assert p.lower_bound == 128 and p.size == 128


def test_inplace_refused_when_sizes_differ_or_taken_twice():
    """A smaller taker would hold the donor's footprint for its whole life: 4 kB
    then 512 B kept for 6 steps would force the next 4 kB tensor above it."""
    kb = 1024
    long_small = [Buffer("a", 4 * kb, 0, 1), Buffer("s", kb // 2, 1, 7, inplace_of="a"),
                  Buffer("b", 4 * kb, 2, 3)]
    p = plan(long_small)
    _check(long_small, p)
    assert not p.inplace and p.size == p.lower_bound == 4 * kb + kb // 2
    bufs = [Buffer("a", 32, 0, 1), Buffer("b", 48, 1, 2, inplace_of="a"),   # larger: no
            Buffer("c", 32, 0, 1), Buffer("d", 32, 1, 2, inplace_of="c"),
            Buffer("e", 32, 1, 2, inplace_of="c")]                          # c already taken
    p = plan(bufs)
    _check(bufs, p)
    assert p.inplace == {"d": "c"}


def test_size_is_exact_not_padded():
    """17 bytes at 0, the next buffer at the aligned 32, and the arena ends at its
    last byte (37), not at the next multiple of 16."""
    p = plan([Buffer("a", 17, 0, 1), Buffer("b", 5, 1, 2)])
    assert p.offsets == {"a": 0, "b": 32} and p.size == 37 and p.lower_bound == 22
    assert plan([]).size == 0


def test_bad_buffers_are_refused():
    with pytest.raises(ValueError):
        plan([Buffer("a", 1, 0, 0), Buffer("a", 1, 0, 0)])
    with pytest.raises(ValueError):
        plan([Buffer("a", 1, 3, 2)])


@pytest.mark.parametrize("target", ["arm", "fpga"])
@pytest.mark.parametrize("name", list(CORPUS))
def test_corpus_within_1p1_of_the_bound(name, target):
    qg = corpus_qgraph(name, target)
    bufs = qgraph_buffers(qg)
    p = plan_qgraph(qg)
    _check(bufs, p)
    assert p.size <= 1.1 * p.lower_bound, (p.size, p.lower_bound)
    # every int8 activation of the integer body, the integer inputs and outputs included
    body = schedule(qg)
    ins, outs = int_io(qg)
    acts = {t for n in body for t in n.inputs + n.outputs if not qg.tensors[t].is_const}
    assert {b.name for b in bufs} == acts and set(ins + outs) <= acts
    assert all(b.first == 0 for b in bufs if b.name in ins)
    assert all(b.last == len(body) for b in bufs if b.name in outs)
    assert not any(n.op in ("Quantize", "Dequantize") for n in body)


def _run_in_arena(qg, p, x_int: dict) -> dict:
    """The integer body with every activation stored at its planned offset of one
    byte array (constants from the QGraph); the outputs read back at the end."""
    arena = np.full(p.size, 0x55, np.uint8)

    def view(t):
        ten = qg.tensors[t]
        n = int(np.prod(ten.shape)) * np.dtype(ten.dtype).itemsize
        return arena[p.offsets[t]:p.offsets[t] + n].view(ten.dtype).reshape(ten.shape)

    for t, v in x_int.items():
        view(t)[...] = v
    for n in schedule(qg):
        vals = [None if qg.tensors[t].is_const else view(t).copy() for t in n.inputs]
        for t, v in zip(n.outputs, run_node(qg, n, vals)):
            view(t)[...] = v
    return {t: view(t).copy() for t in int_io(qg)[1]}


@pytest.mark.parametrize("name, target", [("mobilenet_v3_small", "arm"), ("ghostnet", "fpga"),
                                          ("tiny_yolo", "arm"), ("shufflenet_v2", "arm")])
def test_interpreter_in_the_planned_arena(name, target):
    qg = corpus_qgraph(name, target)
    p = plan_qgraph(qg)
    assert p.inplace   # these models exercise the in-place sharing
    x = qg.inputs[0]
    rng = np.random.default_rng(7)
    xf = rng.uniform(-1, 1, (1,) + tuple(qg.tensors[x].shape[1:])).astype(np.float32)
    xq = quantize_inputs(qg, {x: xf})
    want = run_int(qg, xq)
    got = _run_in_arena(qg, p, {int_io(qg)[0][0]: xq[x]})
    for o, t in zip(qg.outputs, int_io(qg)[1]):
        np.testing.assert_array_equal(got[t], want[o])
