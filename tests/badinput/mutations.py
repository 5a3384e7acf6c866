"""Mutations of valid ONNX models for the importer's fuzz test (and
bench/fuzz_import.py): each takes the model's bytes and a seeded
``random.Random`` and returns the bytes of a model with one thing wrong."""
from __future__ import annotations

import random

import onnx
from onnx import TensorProto

from qdeploy.corpus import build
from tests.cli_helpers import DIGITS_MODEL

DTYPES = [TensorProto.INT8, TensorProto.INT64, TensorProto.STRING, TensorProto.BOOL, TensorProto.DOUBLE,
          TensorProto.FLOAT16, TensorProto.UINT8, TensorProto.UNDEFINED, 99]


def base_models() -> dict[str, bytes]:
    """The valid models the mutations start from."""
    return {"digits": DIGITS_MODEL.read_bytes(),
            **{n: build(n).SerializeToString() for n in ("mobilenet_v2", "shufflenet_v2", "tiny_yolo")}}


def _edit(fn):
    def mutate(data: bytes, rng: random.Random) -> bytes:
        m = onnx.ModelProto()
        m.ParseFromString(data)
        fn(m, rng)
        return m.SerializeToString()
    mutate.__name__ = fn.__name__
    return mutate


def _inputs(m):
    inits = {t.name for t in m.graph.initializer}
    return [i for i in m.graph.input if i.name not in inits]


@_edit
def drop_input(m, rng):
    ins = _inputs(m)
    m.graph.input.remove(rng.choice(ins))


@_edit
def rename_output(m, rng):
    out = rng.choice(list(m.graph.output))
    if rng.random() < 0.5:
        out.name = out.name + "_renamed"             # nothing produces it
    else:
        for n in m.graph.node:                       # the producer's output renamed
            for k, o in enumerate(n.output):
                if o == out.name:
                    n.output[k] = o + "_renamed"


@_edit
def wrong_dtype(m, rng):
    if rng.random() < 0.5 or not m.graph.initializer:
        rng.choice(_inputs(m) + list(m.graph.output)).type.tensor_type.elem_type = rng.choice(DTYPES)
    else:
        rng.choice(list(m.graph.initializer)).data_type = rng.choice(DTYPES)


@_edit
def wrong_dims(m, rng):
    t = rng.choice(list(m.graph.initializer))
    if t.dims:
        k = rng.randrange(len(t.dims))
        t.dims[k] = rng.choice([0, 1, t.dims[k] + 1, 7])


@_edit
def shuffle_nodes(m, rng):
    nodes = list(m.graph.node)
    rng.shuffle(nodes)
    del m.graph.node[:]
    m.graph.node.extend(nodes)


@_edit
def drop_node(m, rng):
    m.graph.node.remove(rng.choice(list(m.graph.node)))


@_edit
def drop_initializer(m, rng):
    m.graph.initializer.remove(rng.choice(list(m.graph.initializer)))


@_edit
def duplicate_node(m, rng):
    n = onnx.NodeProto()
    n.CopyFrom(rng.choice(list(m.graph.node)))
    m.graph.node.insert(rng.randrange(len(m.graph.node) + 1), n)


@_edit
def swap_node_inputs(m, rng):
    n = rng.choice([n for n in m.graph.node if len(n.input) >= 2] or list(m.graph.node))
    ins = list(n.input)
    rng.shuffle(ins)
    del n.input[:]
    n.input.extend(ins)


@_edit
def perturb_attribute(m, rng):
    nodes = [n for n in m.graph.node if any(a.type in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS,
                                                       onnx.AttributeProto.FLOAT) for a in n.attribute)]
    if not nodes:
        return
    a = rng.choice([a for a in rng.choice(nodes).attribute
                    if a.type in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS, onnx.AttributeProto.FLOAT)])
    if a.type == onnx.AttributeProto.INT:
        a.i = rng.choice([-1, 0, 2, 3, 50])
    elif a.type == onnx.AttributeProto.FLOAT:
        a.f = rng.choice([float("nan"), float("inf"), -1.0, 0.0, 1e30])
    elif a.ints:
        a.ints[rng.randrange(len(a.ints))] = rng.choice([-2, 0, 5, 40])


@_edit
def change_op(m, rng):
    rng.choice(list(m.graph.node)).op_type = rng.choice(["Conv", "Relu", "Add", "Concat", "Gemm", "Reshape",
                                                         "MaxPool", "Softmax", "Foo", ""])


@_edit
def wrong_opset(m, rng):
    m.opset_import[0].version = rng.choice([1, 6, 7, 10, 22, 30])


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[:rng.randrange(len(data))]


def flip_bytes(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        b[rng.randrange(len(b))] = rng.randrange(256)
    return bytes(b)


MUTATIONS = [drop_input, rename_output, wrong_dtype, wrong_dims, shuffle_nodes, drop_node, drop_initializer,
             duplicate_node, swap_node_inputs, perturb_attribute, change_op, wrong_opset, truncate, flip_bytes]


def outcome(path) -> str:
    """Import (and run the passes on) the model at ``path``: "ok", or the
    one-line error. Anything else escapes: the fuzz test's failure."""
    from qdeploy.errors import QDeployError
    from qdeploy.pipeline import prepare_float
    try:
        prepare_float(path)
        return "ok"
    except QDeployError as e:
        assert "\n" not in str(e) and str(e), repr(str(e))
        return "error: " + str(e)
