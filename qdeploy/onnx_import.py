"""ONNX importer: an ONNX file becomes a :class:`~qdeploy.ir.Graph`, once.

Steps, in order:
1. load and validate (file, format, opset, external data kept inside the
   model's folder, initializers present, no NaN/Inf weights);
2. fix the input shapes (from the model, or ``input_shapes``; a lone dynamic
   batch dimension becomes 1);
3. fold constants to a fixed point: Constant/ConstantOfShape, Shape of a known
   shape, and any node whose inputs are all constant (the shape arithmetic that
   PyTorch and Paddle exports carry: Shape/Gather/Unsqueeze/Concat/Cast/Reshape
   chains); shapes are inferred again after each round, so a Shape downstream
   of a folded Reshape folds too;
4. infer every tensor's static shape (ONNX shape inference, onnxruntime for
   whatever it leaves open);
5. normalise into the IR's op forms (see ``qdeploy/ir.py``): Identity and
   Dropout removed, Gemm and MatMul(+Add) into one fully-connected ``Gemm``,
   Flatten/Squeeze/Unsqueeze/Reshape into ``Reshape`` with a static shape,
   Clip/Pad/Slice/Split/Resize/ReduceMean parameters into attributes, Sum
   into Adds, Upsample into Resize, Conv/pool ``auto_pad`` into explicit ``pads``;
6. refuse ops that are not in :data:`qdeploy.ops.OPS`, all listed at once.

Opsets 11 to 21 are imported as they are; opsets 7 to 10 are first upgraded
to 11 with onnx's version converter. Anything else is refused.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from . import ort_session
from .errors import QDeployError
from .ir import Graph, Node, Tensor, topo_order
from .ops import OPS

MIN_OPSET, MAX_OPSET, UPGRADE_FROM = 11, 21, 7
FOLD_LIMIT = 1 << 26   # elements: larger all-constant results are still folded (weights)
# ... up to this size: a ConstantOfShape/Expand/Tile/Range asked for more is refused before allocating
FOLD_MAX_ELEMENTS = 1 << 28

InputShapes = Mapping[str, Sequence[int]] | Sequence[int] | None


# ---------------------------------------------------------------- loading
def load_model(path: str | os.PathLike) -> onnx.ModelProto:
    """Read an ONNX file with its external data, refusing path escapes."""
    path = Path(path)
    if not path.exists():
        raise QDeployError(f"{path}: no such file; give the path of an .onnx model")
    if path.is_dir():
        raise QDeployError(f"{path}: is a folder; give the path of an .onnx model")
    if path.suffix.lower() != ".onnx":
        raise QDeployError(f"{path}: expected an .onnx file (got '{path.suffix or 'no extension'}'); "
                           "export the model to ONNX first")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends
        raise QDeployError(f"{path}: not a readable ONNX model ({type(e).__name__}); "
                           "the file may be truncated or not ONNX: export it again") from None
    if not model.graph.node:
        raise QDeployError(f"{path}: the ONNX graph has no nodes; the file may be truncated "
                           "or not an ONNX model: export it again")
    base = path.resolve().parent
    for t in _external_tensors(model):
        loc = dict((e.key, e.value) for e in t.external_data).get("location", "")
        target = (base / loc).resolve()
        if os.path.commonpath([str(base), str(target)]) != str(base):
            raise QDeployError(f"{path}: initializer '{t.name}' points to external data "
                               f"'{loc}' outside the model's folder; refused (move the data "
                               "file beside the model)")
        if not target.is_file():
            raise QDeployError(f"{path}: initializer '{t.name}' needs external data file "
                               f"'{loc}', which is missing; copy it beside the model")
    if any(True for _ in _external_tensors(model)):
        try:
            onnx.external_data_helper.load_external_data_for_model(model, str(base))
        except Exception as e:
            raise QDeployError(f"{path}: external data could not be read ({e}); "
                               "check the data files beside the model") from None
    return model


def _external_tensors(model: onnx.ModelProto):
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            yield t
    for n in model.graph.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_location == onnx.TensorProto.EXTERNAL:
                yield a.t


def _default_opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return o.version
    return 0


def _normalise_opset(model: onnx.ModelProto, where: str) -> onnx.ModelProto:
    opset = _default_opset(model)
    if MIN_OPSET <= opset <= MAX_OPSET:
        return model
    if UPGRADE_FROM <= opset < MIN_OPSET:
        try:
            from onnx import version_converter
            return version_converter.convert_version(model, MIN_OPSET)
        except Exception as e:
            raise QDeployError(f"{where}: opset {opset} could not be upgraded to {MIN_OPSET} "
                               f"({str(e).splitlines()[0][:120]}); re-export with opset "
                               f"{MIN_OPSET}..{MAX_OPSET}") from None
    raise QDeployError(f"{where}: unsupported opset {opset}; qdeploy reads opsets "
                       f"{UPGRADE_FROM}..{MAX_OPSET} ({MIN_OPSET}..{MAX_OPSET} natively): "
                       f"re-export with opset {MIN_OPSET}..{MAX_OPSET}")


# ---------------------------------------------------------------- shapes
def parse_input_shape(text: str) -> tuple[str | None, tuple[int, ...]]:
    """``1x3x224x224`` or ``name:1x3x224x224`` -> (name or None, shape)."""
    name, _, dims = text.rpartition(":")
    try:
        shape = tuple(int(d) for d in dims.lower().replace(",", "x").split("x"))
    except ValueError:
        raise QDeployError(f"--input-shape '{text}': expected dims like 1x3x224x224 "
                           "(optionally name:1x3x224x224)") from None
    if not shape or any(d <= 0 for d in shape):
        raise QDeployError(f"--input-shape '{text}': every dim must be a positive integer")
    return (name or None), shape


def check_batch_one(g: Graph) -> None:
    """Every input of ``g`` has batch 1: the QGraph, the artefacts and the calibration
    run one sample at a time (a fixed batch of 4 was only said by onnxruntime, as
    'Got: 1 Expected: 4')."""
    for name in g.inputs:
        shape = list(g.shape(name))
        if shape and shape[0] != 1:
            raise QDeployError(f"model input '{name}' has batch {shape[0]} ({'x'.join(map(str, shape))}); "
                               "qdeploy quantizes batch-1 models (N samples run one at a time): export the "
                               "model with batch 1 or a dynamic batch (--input-shape: "
                               f"1x{'x'.join(map(str, shape[1:]))})")


def parse_input_shapes(values) -> InputShapes:
    """Repeated ``--input-shape [name:]1x3xHxW`` -> the argument of
    :func:`import_onnx`: None (none given), the shape (one without a name),
    or ``{name: shape}`` (the key None stands for "the model's only input")."""
    shapes: dict = {}
    for text in values:
        name, shape = parse_input_shape(text)
        if name in shapes:
            raise QDeployError(f"--input-shape '{text}': input {name or '(unnamed)'} given twice")
        shapes[name] = shape
    if list(shapes) == [None]:
        return shapes[None]
    return shapes or None


def _fix_inputs(model: onnx.ModelProto, input_shapes: InputShapes, where: str) -> None:
    inits = {t.name for t in model.graph.initializer}
    real = [i for i in model.graph.input if i.name not in inits]
    for i in list(model.graph.input):
        if i.name in inits:      # old exports list initializers as inputs: they are constants
            model.graph.input.remove(i)
    model.ir_version = max(model.ir_version, 4)
    given: dict[str, tuple[int, ...]] = {}
    if input_shapes is not None and not isinstance(input_shapes, Mapping):
        input_shapes = {None: input_shapes}   # the shape of the only input
    if input_shapes is not None:
        given = {k: tuple(v) for k, v in input_shapes.items()}
        if None in given and len(real) != 1:
            raise QDeployError(f"{where}: the model has {len(real)} inputs {[i.name for i in real]}; "
                               "give each its shape as --input-shape name:1x3xHxW")
        unknown = set(given) - {i.name for i in real}
        if None in unknown and len(real) == 1:
            given[real[0].name] = given.pop(None)
        elif unknown:
            raise QDeployError(f"{where}: --input-shape names input(s) {sorted(map(str, unknown))}, "
                               f"but the model's inputs are {[i.name for i in real]}")
    missing = []
    for inp in real:
        tt = inp.type.tensor_type
        if not inp.type.HasField("tensor_type"):
            raise QDeployError(f"{where}: input '{inp.name}' is not a tensor; qdeploy takes image tensors")
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in tt.shape.dim]
        if inp.name in given:
            shape = given[inp.name]
            if dims and len(shape) != len(dims):
                raise QDeployError(f"{where}: --input-shape for '{inp.name}' has {len(shape)} dims, "
                                   f"the model's input has {len(dims)}")
            for k, (d, g) in enumerate(zip(dims, shape)):
                if d is not None and d != g:
                    raise QDeployError(f"{where}: --input-shape {'x'.join(map(str, shape))} for "
                                       f"'{inp.name}' contradicts the model's fixed dim {k} = {d}")
        else:
            if not tt.HasField("shape"):
                missing.append(inp.name)
                continue
            if dims and dims[0] is None:
                dims[0] = 1               # a dynamic batch: one sample at a time
            if any(d is None for d in dims):
                missing.append(inp.name)
                continue
            shape = tuple(dims)
        tt.shape.Clear()
        for d in shape:
            tt.shape.dim.add().dim_value = int(d)
    if missing:
        if len(real) == 1:
            raise QDeployError(f"{where}: input '{missing[0]}' has unknown dims; give them with "
                               "--input-shape, e.g. --input-shape 1x3x224x224")
        raise QDeployError(f"{where}: inputs {missing} have unknown dims; give each with "
                           "--input-shape name:1x3xHxW")


# ---------------------------------------------------------------- folding
def _attr(node: onnx.NodeProto) -> dict[str, Any]:
    """A node's attributes; strings (and lists of strings) as ``str``, so no
    later stage has to decode bytes."""
    return {a.name: _decoded(helper.get_attribute_value(a)) for a in node.attribute}


def _decoded(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [x.decode() for x in v]
    return v


def _eval_node(node: onnx.NodeProto, values: list[np.ndarray], opset: int) -> list[np.ndarray]:
    """Evaluate one node on constant inputs with onnx's reference runtime."""
    from onnx.reference import ReferenceEvaluator
    names = [f"i{k}" if n else "" for k, n in enumerate(node.input)]
    inputs = [helper.make_tensor_value_info(nm, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
              for nm, v in zip(names, values) if nm]
    outs = [helper.make_empty_tensor_value_info(f"o{k}") for k in range(len(node.output))]
    n2 = helper.make_node(node.op_type, names, [o.name for o in outs], domain=node.domain)
    n2.attribute.extend(node.attribute)
    g = helper.make_graph([n2], "fold", inputs, outs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    res = ReferenceEvaluator(m).run(None, {nm: v for nm, v in zip(names, values) if nm})
    return [np.asarray(r) for r in res]


def _light(model: onnx.ModelProto, consts: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """The model with large constants as typed graph inputs: shape inference
    then serialises no weights (small constants stay initializers, for data
    propagation through shape arithmetic). ``consts`` replaces the model's
    initializers when given."""
    g = model.graph
    if consts is None:
        consts = {t.name: t for t in g.initializer}
    used = {i for n in g.node for i in n.input}
    small, big = [], []
    for k, v in consts.items():
        if k not in used:
            continue
        if isinstance(v, onnx.TensorProto):
            dims, dtype = list(v.dims), v.data_type
            ok = v.data_location != onnx.TensorProto.EXTERNAL
        else:
            dims, dtype, ok = list(v.shape), helper.np_dtype_to_tensor_dtype(v.dtype), True
        if ok and int(np.prod(dims)) <= 4096:
            small.append(v if isinstance(v, onnx.TensorProto) else numpy_helper.from_array(v, k))
        else:
            big.append(helper.make_tensor_value_info(k, dtype, dims))
    graph = helper.make_graph(list(g.node), g.name, list(g.input) + big, list(g.output), initializer=small)
    m = helper.make_model(graph, opset_imports=list(model.opset_import))
    m.ir_version = max(model.ir_version, 4)   # initializers need not be listed as inputs
    return m


def _infer(model: onnx.ModelProto, consts=None) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Static shapes and dtypes of every tensor ONNX shape inference can see."""
    try:
        inferred = shape_inference.infer_shapes(_light(model, consts), strict_mode=False, data_prop=True)
    except Exception:
        inferred = model
    shapes, dtypes = {}, {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        tt = vi.type.tensor_type
        if tt.elem_type:
            dtypes[vi.name] = _np_dtype(tt.elem_type) or "float32"
        if tt.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
            if all(d is not None for d in dims):
                shapes[vi.name] = tuple(dims)
    return shapes, dtypes


def _fold(model: onnx.ModelProto, opset: int, where: str = "model") -> tuple[dict[str, np.ndarray], list[onnx.NodeProto]]:
    """Fold to a fixed point: fold -> re-infer shapes (with the folded
    constants) -> fold, until a round folds nothing. A Shape whose input gets a
    static shape only after earlier folds (a Reshape whose target was computed,
    as Paddle's and PyTorch's heads do) folds in a later round. When ONNX shape
    inference still leaves the input of a Shape/Size open, one onnxruntime run
    at the fixed input shapes gives it (every dim is static by then)."""
    consts = {t.name: _array(t, where, "initializer") for t in model.graph.initializer}
    nodes = list(model.graph.node)
    ran: dict[str, tuple[int, ...]] = {}      # shapes onnxruntime gave
    while True:
        shapes, _ = _infer(_with_nodes(model, nodes), consts)
        shapes.update(ran)
        kept = _fold_round(nodes, consts, shapes, opset, where)
        if len(kept) < len(nodes):
            nodes = kept
            continue
        open_ = sorted({n.input[0] for n in kept if n.op_type in ("Shape", "Size")
                        and n.input and n.input[0] not in shapes and n.input[0] not in consts})
        if not open_:
            return consts, kept
        m = _with_nodes(model, kept)
        used = {i for n in kept for i in n.input}
        m.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items() if k in used)
        ran.update(_shapes_by_running(m, open_, where))


def _with_nodes(model: onnx.ModelProto, nodes: list[onnx.NodeProto]) -> onnx.ModelProto:
    """A copy of ``model``'s frame (inputs, outputs, opsets) holding ``nodes``
    and no initializers."""
    g = helper.make_graph(nodes, model.graph.name, list(model.graph.input), list(model.graph.output))
    m = helper.make_model(g, opset_imports=list(model.opset_import))
    m.ir_version = max(model.ir_version, 4)
    return m


def _fold_size(node: onnx.NodeProto, consts: dict[str, np.ndarray]) -> int:
    """How many elements folding ``node`` would allocate (the ops whose output
    size comes from a shape or count input, not from their inputs' sizes)."""
    return _SIZE_OF[node.op_type]([consts.get(i) if i else None for i in node.input])


def _prod(dims) -> int:
    n = 1
    for d in np.asarray(dims).reshape(-1).tolist():
        n *= max(int(d), 0)
    return n


def _expand_size(v) -> int:
    a, shape = v[0], np.asarray(v[1]).reshape(-1).tolist()
    dims = list(np.shape(a))
    rank = max(len(dims), len(shape))
    dims, shape = [1] * (rank - len(dims)) + dims, [1] * (rank - len(shape)) + shape
    return _prod([max(int(d), int(s)) for d, s in zip(dims, shape)])


def _range_size(v) -> int:
    start, limit, delta = (float(np.asarray(x).reshape(-1)[0]) for x in v[:3])
    try:
        return 0 if delta == 0 else max(int(np.ceil((limit - start) / delta)), 0)
    except (OverflowError, ValueError):   # inf or nan bounds
        return 1 << 62


_SIZE_OF = {
    "ConstantOfShape": lambda v: _prod(v[0]),
    "Expand": _expand_size,
    "Tile": lambda v: np.asarray(v[0]).size * _prod(v[1]),
    "Range": _range_size,
}


def _fold_round(nodes: list[onnx.NodeProto], consts: dict[str, np.ndarray],
                shapes: dict[str, tuple[int, ...]], opset: int, where: str = "model") -> list[onnx.NodeProto]:
    """One folding sweep in graph order; ``consts`` grows in place. Returns the
    nodes that stay."""
    kept: list[onnx.NodeProto] = []
    for node in nodes:
        a = _attr(node)
        outs: list[np.ndarray] | None = None
        src = node.input[0] if node.input else ""
        known = consts[src].shape if src in consts else shapes.get(src)
        if node.op_type == "Constant":
            outs = [_constant_value(node, a)]
        elif node.op_type == "Shape" and known is not None:
            outs = [np.array(known, dtype=np.int64)[a.get("start", 0):a.get("end", None)]]
        elif node.op_type in _SIZE_OF and all((i == "" or i in consts) for i in node.input) \
                and _fold_size(node, consts) > FOLD_MAX_ELEMENTS:
            n = _fold_size(node, consts)
            raise QDeployError(f"{where}: node '{node.name}' ({node.op_type}) would make a constant of "
                               f"{n:,} elements ({n * 4 / 2**30:.1f} GiB as float32); qdeploy folds "
                               f"constants up to {FOLD_MAX_ELEMENTS:,} elements: check the shape it is given")
        elif node.op_type == "ConstantOfShape" and src in consts:
            # numpy directly: old exports make every weight this way (onnx.reference is slow at it)
            value = _array(a["value"], where, f"node '{node.name}' value").reshape(-1) if "value" in a \
                else np.zeros(1, np.float32)
            outs = [np.full(tuple(int(d) for d in consts[src]), value[0], dtype=value.dtype)]
        elif node.op_type == "Size" and known is not None:
            outs = [np.array(int(np.prod(known)), dtype=np.int64)]
        elif node.domain in ("", "ai.onnx") and node.op_type not in ("Dropout", "RandomNormal",
                                                                     "RandomUniform", "RandomNormalLike",
                                                                     "RandomUniformLike", "Multinomial") \
                and all((i == "" or i in consts) for i in node.input) and node.input:
            try:
                outs = _eval_node(node, [consts[i] if i else None for i in node.input], opset)
            except Exception:
                outs = None
        if outs is None:
            kept.append(node)
            continue
        for name, v in zip(node.output, outs):
            if name:
                consts[name] = v
    return kept


def _constant_value(node: onnx.NodeProto, a: dict) -> np.ndarray:
    if "value" in a:
        return _array(a["value"], f"node '{node.name}' (Constant)", "value")
    for key, dt in (("value_float", np.float32), ("value_int", np.int64)):
        if key in a:
            return np.array(a[key], dtype=dt)
    for key, dt in (("value_floats", np.float32), ("value_ints", np.int64)):
        if key in a:
            return np.array(list(a[key]), dtype=dt)
    raise QDeployError(f"node '{node.name}' (Constant): unsupported constant form {sorted(a)}; "
                       "re-export with tensor constants")


# ---------------------------------------------------------------- import
def import_onnx(source: str | os.PathLike | onnx.ModelProto, input_shapes: InputShapes = None,
                name: str | None = None) -> Graph:
    """Import an ONNX model (path or ModelProto) into a float :class:`Graph`."""
    if isinstance(source, onnx.ModelProto):
        model, where = onnx.ModelProto(), name or source.graph.name or "model"
        model.CopyFrom(source)
    else:
        model, where = load_model(source), str(source)
        name = name or Path(source).stem
    model = _normalise_opset(model, where)
    opset = _default_opset(model)
    _check_structure(model, where)
    _fix_inputs(model, input_shapes, where)

    consts, nodes = _fold(model, opset, where)
    _check_ops(nodes, where)   # before anything runs the graph: list every unknown op at once
    # Graph outputs that folded to constants are not a CNN: refuse clearly.
    out_names = [o.name for o in model.graph.output]
    for o in out_names:
        if o in consts:
            raise QDeployError(f"{where}: output '{o}' is a constant (it does not depend on the "
                               "input); nothing to quantize")
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    del model.graph.initializer[:]
    del model.graph.value_info[:]
    used = {i for n in nodes for i in n.input}
    shapes, dtypes = _infer(model, consts)
    missing = [o for n in nodes for o in n.output if o and o not in shapes]
    if missing:
        model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items() if k in used)
        shapes.update(_shapes_by_running(model, missing, where))

    inputs = [i.name for i in model.graph.input]
    g = Graph(nodes=[], tensors={}, inputs=inputs, outputs=out_names, name=name or "model", opset=opset)
    for i in model.graph.input:
        tt = i.type.tensor_type
        g.tensors[i.name] = Tensor(i.name, tuple(d.dim_value for d in tt.shape.dim),
                                   str(helper.tensor_dtype_to_np_dtype(tt.elem_type)))
    for k, v in consts.items():
        if k in used:
            g.tensors[k] = Tensor(k, tuple(v.shape), str(v.dtype), v)
    for n in nodes:
        for o in n.output:
            if o:
                g.tensors[o] = Tensor(o, tuple(shapes[o]), dtypes.get(o, "float32"))
    for n, nm in zip(nodes, _node_names(nodes)):
        g.nodes.append(Node(n.op_type, nm, list(n.input), list(n.output), _attr(n)))
    for n in list(g.nodes):
        fn = _NORMALISE.get(n.op)
        if fn is not None:
            try:
                fn(g, n, where)
            except (ValueError, IndexError, KeyError, TypeError) as e:   # a model ONNX itself would reject
                raise QDeployError(f"{where}: node '{n.name}' ({n.op}) does not fit its inputs' shapes or "
                                   f"attributes ({type(e).__name__}: {' '.join(str(e).split())[:120]}); "
                                   "check the model with onnx.checker.check_model(..., full_check=True)") from None
    g.remove_unused()
    _check_weights(g, where)
    _check_sizes(g, where)
    g.log.append(("import", f"imported {len(g.nodes)} nodes at opset {opset}, "
                            f"{len(consts)} constants folded or kept"))
    return g


def _node_names(nodes: Sequence[onnx.NodeProto]) -> list[str]:
    """Unique node names (unnamed nodes become ``<op>_<index>``)."""
    names: list[str] = []
    taken: set[str] = set()
    for k, n in enumerate(nodes):
        nm = n.name or f"{n.op_type}_{k}"
        while nm in taken:
            nm = f"{nm}_{k}"
        taken.add(nm)
        names.append(nm)
    return names


def _check_ops(nodes: Sequence[onnx.NodeProto], where: str) -> None:
    """Refuse, in one message, every node whose op qdeploy does not know
    (custom domains included), after constant folding removed the ops that only
    compute constants."""
    unknown = [(nm, n) for n, nm in zip(nodes, _node_names(nodes))
               if n.domain not in ("", "ai.onnx") or (n.op_type not in OPS and n.op_type not in _NORMALISE)]
    if unknown:
        listed = ", ".join(f"'{nm}' ({n.domain + '.' if n.domain not in ('', 'ai.onnx') else ''}{n.op_type})"
                           for nm, n in unknown)
        raise QDeployError(f"{where}: {len(unknown)} node(s) with ops qdeploy does not know: {listed}; "
                           "replace them with supported ops (see 'qdeploy targets') and re-export")


def _check_names(model: onnx.ModelProto, where: str) -> None:
    """Every tensor name is made once (one initializer, input or node output
    each; old exports may list an initializer as an input too), and no weight
    has a zero-size dimension: onnxruntime would fail on them with its own log."""
    g = model.graph
    inits = [t.name for t in g.initializer]
    made: dict[str, str] = {}

    def once(name: str, by: str) -> None:
        if name in made:
            raise QDeployError(f"{where}: tensor name '{name}' is used twice ({made[name]} and {by}); "
                               "every tensor needs its own name: re-export the model")
        made[name] = by
    for t in inits:
        once(t, "an initializer")
    for i in g.input:
        if i.name not in inits:
            once(i.name, "a graph input")
    for k, n in enumerate(g.node):
        for o in n.output:
            if o:
                once(o, f"node '{n.name or k}' ({n.op_type})")
    outs = [o.name for o in g.output]
    dup = sorted({o for o in outs if outs.count(o) > 1})
    if dup:
        raise QDeployError(f"{where}: graph output '{dup[0]}' is listed twice; re-export the model")
    for t in g.initializer:
        if len(t.dims) >= 2 and 0 in t.dims:
            raise QDeployError(f"{where}: initializer '{t.name}' has shape {'x'.join(map(str, t.dims))} "
                               "(zero elements); a weight needs every dimension >= 1: re-export the model")


def _np_dtype(elem_type: int) -> str | None:
    """numpy's name of an ONNX element type; None for an unknown one."""
    try:
        return str(helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, ValueError, TypeError):
        return None


def _array(t: onnx.TensorProto, where: str, what: str) -> np.ndarray:
    """A tensor's data; one that does not hold what its dims and type say is one line."""
    try:
        return numpy_helper.to_array(t)
    except MemoryError:
        raise
    except Exception as e:
        raise QDeployError(f"{where}: {what} '{t.name}' (type {t.data_type}, dims "
                           f"{'x'.join(map(str, t.dims)) or 'scalar'}) does not hold readable data "
                           f"({type(e).__name__}: {' '.join(str(e).split())[:80]}); re-export the model") from None


def _check_values(model: onnx.ModelProto, where: str) -> None:
    """Graph inputs are float32 tensors, and no float attribute is NaN (nor
    infinite, except a Clip bound): the passes compute integers from them."""
    inits = {t.name for t in model.graph.initializer}
    for i in model.graph.input:
        if i.name in inits or not i.type.HasField("tensor_type"):
            continue
        et = i.type.tensor_type.elem_type
        if et != onnx.TensorProto.FLOAT:
            name = onnx.TensorProto.DataType.Name(et) if et in onnx.TensorProto.DataType.values() else str(et)
            raise QDeployError(f"{where}: input '{i.name}' has element type {name}; qdeploy takes float32 "
                               "inputs (re-export the model with a float32 input)")
    for n in model.graph.node:
        for a in n.attribute:
            vals = [a.f] if a.type == onnx.AttributeProto.FLOAT else \
                list(a.floats) if a.type == onnx.AttributeProto.FLOATS else []
            bad = [v for v in vals if np.isnan(v) or (np.isinf(v) and n.op_type != "Clip")]
            if bad:
                raise QDeployError(f"{where}: node '{n.name}' ({n.op_type}) has attribute {a.name} = {bad[0]}; "
                                   "give a finite value and re-export")


def _check_structure(model: onnx.ModelProto, where: str) -> None:
    _check_names(model, where)
    _check_values(model, where)
    produced = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer} | {""}
    producers: dict[str, onnx.NodeProto] = {}
    for n in model.graph.node:
        for o in n.output:
            producers[o] = n
    produced |= set(producers)
    for n in model.graph.node:
        for i in n.input:
            if i not in produced:
                raise QDeployError(f"{where}: node '{n.name}' ({n.op_type}) reads '{i}', which no "
                                   "node, input or initializer provides (missing initializer?); "
                                   "re-export the model")
    # cycles: ONNX requires topological order; sort and detect
    ready = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer}
    order, stuck = topo_order(model.graph.node, ready, lambda n: n.input, lambda n: n.output)
    if stuck:
        names = ", ".join(f"'{n.name}' ({n.op_type})" for n in stuck[:4])
        raise QDeployError(f"{where}: the graph has a cycle through {names}; "
                           "qdeploy takes acyclic (feed-forward) graphs")
    del model.graph.node[:]
    model.graph.node.extend(order)
    for o in model.graph.output:
        if o.name not in produced:
            raise QDeployError(f"{where}: graph output '{o.name}' is produced by no node; re-export the model")


def _shapes_by_running(model: onnx.ModelProto, names: list[str], where: str) -> dict[str, tuple[int, ...]]:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    known = {o.name for o in m.graph.output}
    for nm in names:
        if nm not in known:
            m.graph.output.append(onnx.ValueInfoProto(name=nm))
    feeds = {}
    for i in m.graph.input:
        tt = i.type.tensor_type
        feeds[i.name] = np.zeros([d.dim_value for d in tt.shape.dim], helper.tensor_dtype_to_np_dtype(tt.elem_type))
    try:
        res = ort_session.create(m.SerializeToString(), ort_session.options()).run(names, feeds)
    except MemoryError:
        raise
    except Exception as e:
        raise QDeployError(f"{where}: shapes could not be inferred ({ort_session.reason(e)}); "
                           "check --input-shape") from None
    return {nm: tuple(r.shape) for nm, r in zip(names, res)}


def _check_sizes(g: Graph, where: str) -> None:
    """No tensor of the imported graph has zero elements (onnxruntime and every
    kernel would fail on it later, less clearly)."""
    for n in g.nodes:
        for t in list(n.inputs) + list(n.outputs):
            if t and 0 in g.shape(t):
                raise QDeployError(f"{where}: tensor '{t}' of node '{n.name}' ({n.op}) has shape "
                                   f"{'x'.join(map(str, g.shape(t)))} (zero elements); fix the model "
                                   "or --input-shape so that every tensor has data")


def _check_weights(g: Graph, where: str) -> None:
    for n in g.nodes:
        for i in n.inputs:
            v = g.const(i)
            if v is not None and v.dtype.kind == "f" and not np.all(np.isfinite(v)):
                bad = int((~np.isfinite(v)).sum())
                raise QDeployError(f"{where}: constant '{i}' of node '{n.name}' ({n.op}) has {bad} "
                                   "NaN/Inf value(s); fix the trained weights before deploying")
        var = g.const(n.inputs[4]) if n.op == "BatchNormalization" and len(n.inputs) > 4 else None
        if var is not None and np.any(var + float(n.attrs.get("epsilon", 1e-5)) <= 0):
            raise QDeployError(f"{where}: node '{n.name}' (BatchNormalization) has variance + epsilon <= 0 "
                               f"in {int(np.sum(var + float(n.attrs.get('epsilon', 1e-5)) <= 0))} channel(s) "
                               "(its scale would be NaN); fix the trained statistics before deploying")


# ---------------------------------------------------------------- normalisation
def _need_const(g: Graph, n: Node, idx: int, what: str, where: str) -> np.ndarray | None:
    if idx >= len(n.inputs) or not n.inputs[idx]:
        return None
    v = g.const(n.inputs[idx])
    if v is None:
        raise QDeployError(f"{where}: node '{n.name}' ({n.op}) has a computed {what}; qdeploy needs "
                           f"it constant (fix the input shape with --input-shape, or re-export)")
    return v


def _to_reshape(g: Graph, n: Node, where: str) -> None:
    n.op, n.inputs = "Reshape", [n.inputs[0]]
    n.attrs = {"shape": tuple(int(d) for d in g.shape(n.outputs[0]))}


def _n_identity(g: Graph, n: Node, where: str) -> None:
    g.bypass(n)


def _n_dropout(g: Graph, n: Node, where: str) -> None:
    if len(n.outputs) > 1 and n.outputs[1] and g.consumers(n.outputs[1]):
        raise QDeployError(f"{where}: node '{n.name}' (Dropout) has its mask used; re-export in eval mode")
    n.outputs = n.outputs[:1]
    g.bypass(n)


def _n_gemm(g: Graph, n: Node, where: str) -> None:
    a = n.attrs
    if a.get("transA", 0):
        raise QDeployError(f"{where}: node '{n.name}' (Gemm) has transA=1; re-export without it")
    w = g.const(n.inputs[1])
    if w is None:
        n.op = "MatMul"  # activation x activation: outside the CNN scope, kept in float
        return
    w = w.astype(np.float32) * np.float32(a.get("alpha", 1.0))
    w = w if a.get("transB", 0) else w.T
    m = w.shape[0]
    c = g.const(n.inputs[2]) if len(n.inputs) > 2 and n.inputs[2] else None
    if len(n.inputs) > 2 and n.inputs[2] and c is None:
        raise QDeployError(f"{where}: node '{n.name}' (Gemm) has a computed bias; re-export with a constant bias")
    b = np.zeros(m, np.float32) if c is None else np.broadcast_to(
        c.astype(np.float32) * np.float32(a.get("beta", 1.0)), (g.shape(n.outputs[0])[0], m))
    if b.ndim == 2:
        if not np.all(b == b[:1]):
            raise QDeployError(f"{where}: node '{n.name}' (Gemm) has a per-row bias; re-export with a per-column bias")
        b = b[0]
    n.inputs = [n.inputs[0], g.add_const(f"{n.name}_W", np.ascontiguousarray(w, np.float32)),
                g.add_const(f"{n.name}_B", np.ascontiguousarray(b, np.float32))]
    n.attrs = {}


def _n_matmul(g: Graph, n: Node, where: str) -> None:
    w = g.const(n.inputs[1])
    if w is None or w.ndim != 2 or len(g.shape(n.inputs[0])) != 2:
        return  # kept as MatMul (float only)
    n.op = "Gemm"
    bias = np.zeros(w.shape[1], np.float32)
    cons = g.consumers(n.outputs[0])
    if len(cons) == 1 and cons[0].op == "Add" and not g.is_graph_output(n.outputs[0]):
        add = cons[0]
        other = [i for i in add.inputs if i != n.outputs[0]]
        c = g.const(other[0]) if len(other) == 1 else None
        if c is not None and c.size == w.shape[1] and g.shape(add.outputs[0]) == g.shape(n.outputs[0]):
            bias = c.reshape(-1).astype(np.float32)
            g.bypass(add, keep=n.outputs[0])
    n.inputs = [n.inputs[0], g.add_const(f"{n.name}_W", np.ascontiguousarray(w.T, np.float32)),
                g.add_const(f"{n.name}_B", bias)]
    n.attrs = {}


def _n_clip(g: Graph, n: Node, where: str) -> None:
    lo = _need_const(g, n, 1, "min", where)
    hi = _need_const(g, n, 2, "max", where)
    lo = n.attrs.get("min", -np.inf) if lo is None else float(lo)
    hi = n.attrs.get("max", np.inf) if hi is None else float(hi)
    n.inputs, n.attrs = [n.inputs[0]], {"min": float(lo), "max": float(hi)}


def _n_pad(g: Graph, n: Node, where: str) -> None:
    rank = len(g.shape(n.inputs[0]))
    pads = _need_const(g, n, 1, "pads", where)
    pads = list(n.attrs.get("pads", [])) if pads is None else [int(p) for p in pads]
    value = _need_const(g, n, 2, "constant value", where)
    value = float(n.attrs.get("value", 0.0)) if value is None else float(np.asarray(value).reshape(-1)[0])
    axes = _need_const(g, n, 3, "axes", where)
    if axes is not None:
        full = [0] * (2 * rank)
        axes = [int(x) % rank for x in axes]
        for k, ax in enumerate(axes):
            full[ax], full[ax + rank] = pads[k], pads[k + len(axes)]
        pads = full
    n.inputs, n.attrs = [n.inputs[0]], {"pads": tuple(pads), "mode": n.attrs.get("mode", "constant"),
                                        "value": value}


def _n_slice(g: Graph, n: Node, where: str) -> None:
    rank = len(g.shape(n.inputs[0]))
    starts = _need_const(g, n, 1, "starts", where)
    ends = _need_const(g, n, 2, "ends", where)
    axes = _need_const(g, n, 3, "axes", where)
    steps = _need_const(g, n, 4, "steps", where)
    axes = list(range(len(starts))) if axes is None else [int(a) % rank for a in axes]
    steps = [1] * len(starts) if steps is None else [int(s) for s in steps]
    shape = g.shape(n.inputs[0])
    norm_s, norm_e = [], []
    for s, e, ax, st in zip(starts, ends, axes, steps):
        sl = slice(int(max(min(s, 2**62), -2**62)), int(max(min(e, 2**62), -2**62)), st)
        s2, e2, _ = sl.indices(shape[ax])
        norm_s.append(s2)
        norm_e.append(e2)
    n.inputs = [n.inputs[0]]
    n.attrs = {"starts": tuple(norm_s), "ends": tuple(norm_e), "axes": tuple(axes), "steps": tuple(steps)}


def _n_split(g: Graph, n: Node, where: str) -> None:
    rank = len(g.shape(n.inputs[0]))
    _need_const(g, n, 1, "split sizes", where)   # a computed split is refused; sizes come from the shapes
    axis = int(n.attrs.get("axis", 0)) % rank
    sizes = [g.shape(o)[axis] for o in n.outputs]
    n.inputs, n.attrs = [n.inputs[0]], {"axis": axis, "split": tuple(int(s) for s in sizes)}


def _n_resize(g: Graph, n: Node, where: str) -> None:
    a = dict(n.attrs)
    if n.op == "Upsample":
        a.setdefault("mode", "nearest")
        a["coordinate_transformation_mode"] = "asymmetric"
    a.setdefault("mode", "nearest")
    a.setdefault("coordinate_transformation_mode", "half_pixel")
    a.setdefault("nearest_mode", "round_prefer_floor")
    if a["mode"] not in ("nearest", "linear"):
        raise QDeployError(f"{where}: node '{n.name}' ({n.op}) uses mode '{a['mode']}'; only nearest "
                           "and (bi)linear resizing are supported")
    keep = {k: a[k] for k in ("mode", "coordinate_transformation_mode", "nearest_mode",
                              "cubic_coeff_a", "exclude_outside") if k in a}
    keep["sizes"] = tuple(int(d) for d in g.shape(n.outputs[0]))
    n.op, n.inputs, n.attrs = "Resize", [n.inputs[0]], keep


def _n_reduce_mean(g: Graph, n: Node, where: str) -> None:
    rank = len(g.shape(n.inputs[0]))
    axes = _need_const(g, n, 1, "axes", where)
    axes = list(n.attrs.get("axes", range(rank))) if axes is None else list(axes)
    n.inputs = [n.inputs[0]]
    n.attrs = {"axes": tuple(sorted(int(a) % rank for a in axes)), "keepdims": int(n.attrs.get("keepdims", 1))}


def _n_sum(g: Graph, n: Node, where: str) -> None:
    if len(n.inputs) == 1:
        g.bypass(n)
        return
    idx, acc = g.nodes.index(n), n.inputs[0]
    new = []
    for k, other in enumerate(n.inputs[1:]):
        last = k == len(n.inputs) - 2
        out = n.outputs[0] if last else g.unique_name(f"{n.name}_sum{k}")
        if not last:
            g.tensors[out] = Tensor(out, g.shape(n.outputs[0]), g.tensor(n.outputs[0]).dtype)
        new.append(Node("Add", n.name if last else g.unique_name(f"{n.name}_add{k}"), [acc, other], [out]))
        acc = out
    g.nodes[idx:idx + 1] = new


def _n_softmax(g: Graph, n: Node, where: str) -> None:
    shape = g.shape(n.inputs[0])
    rank = len(shape)
    axis = int(n.attrs.get("axis", -1 if g.opset >= 13 else 1)) % rank
    if g.opset < 13 and all(d == 1 for d in shape[axis + 1:]):
        pass   # the coerced-2D softmax of opset < 13 is the same as softmax over `axis`
    elif g.opset < 13 and axis != rank - 1:
        raise QDeployError(f"{where}: node '{n.name}' (Softmax) at opset {g.opset} flattens from axis "
                           f"{axis}; re-export with opset 13+ or softmax over the last axis")
    n.attrs = {"axis": axis}


def _n_reshape_attrs(g: Graph, n: Node, where: str) -> None:
    n.attrs = {k: v for k, v in n.attrs.items()}
    _to_reshape(g, n, where)


def _n_auto_pad(g: Graph, n: Node, where: str) -> None:
    """``auto_pad`` (SAME_UPPER/SAME_LOWER/VALID) becomes explicit ``pads``
    from the static input shape, so no later stage has to know ``auto_pad``."""
    auto = n.attrs.pop("auto_pad", "NOTSET")
    in_hw = g.shape(n.inputs[0])[2:]
    kernel = list(n.attrs.get("kernel_shape") or g.shape(n.inputs[1])[2:])   # a Conv's may be implicit
    k = len(kernel)
    if auto in ("NOTSET", ""):
        n.attrs["pads"] = [int(p) for p in n.attrs.get("pads", [0] * (2 * k))]
        return
    if auto == "VALID":
        n.attrs["pads"] = [0] * (2 * k)
        return
    strides = list(n.attrs.get("strides", [1] * k))
    dil = list(n.attrs.get("dilations", [1] * k))
    begin, end = [], []
    for size, kk, st, d in zip(in_hw, kernel, strides, dil):
        total = max(0, (-(-size // st) - 1) * st + (kk - 1) * d + 1 - size)
        small, big = total // 2, total - total // 2
        begin.append(small if auto == "SAME_UPPER" else big)
        end.append(big if auto == "SAME_UPPER" else small)
    n.attrs["pads"] = begin + end


def _n_conv_transpose(g: Graph, n: Node, where: str) -> None:
    """ConvTranspose's ``auto_pad`` and ``output_shape`` become explicit ``pads``
    and ``output_padding`` (ONNX ConvTranspose spec), so that per axis ``out =
    s * (in - 1) + output_padding + (k - 1) * d + 1 - begin - end``. The target
    size is ``output_shape`` if given, else ``in * s`` for SAME_*;
    ``total = begin + end`` is split with the larger half at the end for
    SAME_UPPER and at the start otherwise (SAME_LOWER, or ``output_shape``
    without auto_pad), as the spec says and onnxruntime does. An ``output_shape`` larger than
    the unpadded result is reached by extra ``output_padding``."""
    a = n.attrs
    auto = a.pop("auto_pad", "NOTSET") or "NOTSET"
    out_shape = a.pop("output_shape", None)
    in_hw = g.shape(n.inputs[0])[2:]
    k = len(in_hw)
    kernel = list(a.get("kernel_shape") or g.shape(n.inputs[1])[2:])
    strides = [int(v) for v in a.get("strides", [1] * k)]
    dil = [int(v) for v in a.get("dilations", [1] * k)]
    opad = [int(v) for v in a.get("output_padding", [0] * k)]
    pads = [int(v) for v in a.get("pads", [0] * (2 * k))]
    if auto == "VALID":
        pads = [0] * (2 * k)
    elif out_shape is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        target = ([int(v) for v in out_shape][-k:] if out_shape is not None
                  else [size * st for size, st in zip(in_hw, strides)])
        for i in range(k):
            total = strides[i] * (in_hw[i] - 1) + opad[i] + (kernel[i] - 1) * dil[i] + 1 - target[i]
            if total < 0:
                opad[i], total = opad[i] - total, 0
            big, small = total - total // 2, total // 2
            pads[i], pads[i + k] = (small, big) if auto == "SAME_UPPER" else (big, small)
    elif auto != "NOTSET":
        raise QDeployError(f"{where}: node '{n.name}' (ConvTranspose) has unknown auto_pad '{auto}'")
    a["pads"], a["output_padding"] = pads, opad


_NORMALISE = {
    "Conv": _n_auto_pad, "ConvTranspose": _n_conv_transpose, "MaxPool": _n_auto_pad, "AveragePool": _n_auto_pad,
    "Identity": _n_identity, "Dropout": _n_dropout, "Gemm": _n_gemm, "MatMul": _n_matmul,
    "Clip": _n_clip, "Pad": _n_pad, "Slice": _n_slice, "Split": _n_split,
    "Resize": _n_resize, "Upsample": _n_resize, "ReduceMean": _n_reduce_mean,
    "Sum": _n_sum, "Softmax": _n_softmax,
    "Flatten": _n_reshape_attrs, "Squeeze": _n_reshape_attrs, "Unsqueeze": _n_reshape_attrs,
    "Reshape": _n_reshape_attrs,
}
