"""``qdeploy inspect``: what a model costs and what will get in the way of deploying it.

:func:`inspect_model` returns one JSON-able dict (no printing; the command line
in ``qdeploy/cli/inspect_cmd.py`` renders it). Its parts:

* ``model``, ``inputs``, ``outputs``, ``ops`` (histogram), ``params``;
* ``layers``: every conv / fully-connected / pooling node with its MACs,
  parameters, receptive field (``rf``) and cumulative stride (``jump``, the
  distance in input pixels between two neighbouring outputs), both as
  ``[h, w]`` in input pixels;
* ``macs``: totals by kind. The He & Sun (2014) time complexity
  ``sum_l n(l-1) * s(l)^2 * n(l) * m(l)^2`` (input channels, kernel size,
  filters, output map size) *is* the conv MACs (grouped convs divide it by the
  group count), so it is reported as ``macs.conv`` and not computed twice;
* ``stages``: the spatial layers grouped by cumulative stride, i.e. the
  layers between two downsamplings (decoder layers that come back to a
  stride join that stage), with the receptive field at the stage's end and
  its share of the MACs; non-spatial layers (FC heads) form a last stage
  with resolution ``None``;
* ``passes`` and ``shortcuts``: what the pass pipeline would change (run on a
  copy) and its records of Add/Concat merges;
* ``unsupported``: every node the target cannot run, all at once, including
  the nodes an artefact of the target's default ``emit`` cannot express (the
  emitter's own ``limits`` table, ``qdeploy.emit.ARTEFACTS``: what ``quantize``
  would refuse);
* ``advice``: deploy lint drawn from ``../shared/SEED-NOTES.md``, each entry
  naming the nodes it concerns.

Receptive field rules (per spatial axis; ``k`` the dilated kernel extent):
conv/pool ``rf += (k-1)*jump; jump *= stride``; transposed conv
``jump /= stride; rf += (ceil(k/stride)-1)*jump_in``; global pooling and
spatial reductions take the whole map; resize scales the jump (linear adds one
input step to the rf); DepthToSpace/SpaceToDepth divide/multiply the jump;
merges and every other op take the maximum over their activation inputs, so a
layer's values are those of its longest path — except that a broadcast operand
of an element-wise op (the 1x1 scale of an SE block) is a side path and does
not count: the RF reported is the main path's, not the global context an SE
block adds.

Decisions where the issue is silent: MACs count multiply-accumulates of
conv/FC/MatMul only (element-wise ops and pooling are memory-bound, not MAC-bound);
``params.int8_bytes`` counts weights at 1 byte and conv/FC biases at 4 bytes
(int32), on the graph after the passes (BatchNorm folded).
"""
from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from .ir import Graph, Node
from .ops import OPS
from .quant.targets import Target, load_target

# ---------------------------------------------------------------- target limits
# What a target cannot run comes from three places, all plain data: ops whose
# ``OPS[op].cnn`` is False (no target quantizes them), the target file's
# ``unsupported`` list (targets/*.toml), and the rules below, per numerics
# profile: (op, attribute match, why); an empty match applies to every node
# of that op. They are attribute-level limits the TOML format cannot say yet.
# A fourth source, per artefact, is the emitter's own table (``emit.limit_rows``).
PROFILE_LIMITS: dict[str, list[tuple[str, dict, str]]] = {
    "arm": [],
    "ort": [],
    "fpga": [
        ("Resize", {"mode": "linear"}, "bilinear resize needs multipliers off the power-of-two grid: "
                                       "use nearest + conv"),
        ("Gemm", {}, "fully-connected layer: the accelerator runs convolutions; it falls back to the CPU"),
        ("MatMul", {}, "matrix product of activations: not on the fabric"),
        ("ConvTranspose", {}, "transposed conv: use nearest upsample + conv"),
    ],
}
SPATIAL_KINDS = ("conv", "pool")
LUT_ACTS = ("Sigmoid", "Tanh", "SiLU", "HardSigmoid", "HardSwish")
EXOTIC_ACTS = ("Mish", "Gelu", "Elu", "Selu", "Softplus", "Erf")
HE_SUN_NOTE = ("He & Sun's time complexity sum n(l-1)*s(l)^2*n(l)*m(l)^2 over conv layers is exactly "
               "macs.conv (divided by the group count for grouped convs)")


# ---------------------------------------------------------------- entry point
def inspect_model(path_or_graph, target: str | None = None, input_shape=None) -> dict[str, Any]:
    """Analyse a model (path to an .onnx file, ``onnx.ModelProto`` or an
    imported :class:`Graph`) for ``target`` (a bundled target name or a
    target .toml path; ``None``: no target limits).
    ``input_shape`` is what :func:`qdeploy.onnx_import.import_onnx` takes."""
    tgt = load_target(target) if target is not None else None
    file = None
    if isinstance(path_or_graph, Graph):
        g = path_or_graph
    else:
        from .onnx_import import import_onnx
        if isinstance(path_or_graph, (str, os.PathLike)):
            file = str(path_or_graph)
        g = import_onnx(path_or_graph, input_shape)
    deploy, passes, shortcuts = _passes(g)
    layers = layer_table(g)
    total = sum(l["macs"] for l in layers)
    for l in layers:
        l["macs_share"] = round(l["macs"] / total, 4) if total else 0.0
    return {
        "model": {"name": g.name, "file": file, "opset": g.opset,
                  "size_bytes": Path(file).stat().st_size if file else None},
        "target": tgt.name if tgt else None,
        "inputs": [_io(g, i) for i in g.inputs],
        "outputs": [_io(g, o) for o in g.outputs],
        "nodes": len(g.nodes),
        "ops": g.op_counts(),
        "params": _params(g, deploy),
        "macs": _macs(layers),
        "layers": layers,
        "stages": stage_table(layers),
        "passes": passes,
        "shortcuts": shortcuts,
        "unsupported": unsupported_ops(g, tgt),
        "advice": advice(g, layers, tgt, deploy),
    }


def _io(g: Graph, name: str) -> dict:
    t = g.tensor(name)
    return {"name": name, "shape": list(t.shape), "dtype": t.dtype}


# ---------------------------------------------------------------- passes
def _passes(g: Graph):
    """The passes that would apply (on a copy): messages by pass, and the
    shortcut records. Returns the deploy-ready graph too."""
    from .passes import pass_names, run_passes
    start = len(g.log)
    deploy = run_passes(g)              # works on a copy: the caller's graph is untouched
    by_pass: dict[str, list[str]] = {nm: [] for nm in pass_names()}
    for name, msg in deploy.log[start:]:
        by_pass.setdefault(name, []).append(msg)
    shortcuts = [{k: _jsonable(v) for k, v in r.items()} for r in deploy.records.get("shortcut", [])]
    return deploy, {"available": True, "changes": sum(map(len, by_pass.values())), "by_pass": by_pass}, shortcuts


def _jsonable(v):
    if isinstance(v, (np.generic,)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


# ---------------------------------------------------------------- parameters
def _param_counts(g: Graph) -> tuple[int, int]:
    """(elements, int8 bytes) of the constants the nodes read."""
    seen: set[str] = set()
    count = int8 = 0
    for n in g.nodes:
        for k, i in enumerate(n.inputs):
            v = g.const(i)
            if v is None or i in seen:
                continue
            seen.add(i)
            count += v.size
            bias = k == 2 and OPS.get(n.op) is not None and OPS[n.op].kind in ("conv", "fc")
            int8 += v.size * (4 if bias else 1)
    return int(count), int(int8)


def _params(g: Graph, deploy: Graph) -> dict:
    count, _ = _param_counts(g)
    d_count, d_int8 = _param_counts(deploy)
    return {"count": count, "fp32_bytes": 4 * count, "deploy_count": d_count,
            "int8_bytes": d_int8, "int8_counted_on": "after passes"}


# ---------------------------------------------------------------- layers
def _pair(v, default) -> tuple[int, int]:
    if v is None:
        return default
    v = [int(x) for x in v]
    return (v[0], v[1]) if len(v) >= 2 else (v[0], 1)


def geometry(g: Graph, n: Node) -> dict | None:
    """Kernel, stride, dilation, groups of a 2-D conv/pool node (None for
    other ops and for non-2-D ones)."""
    a = n.attrs
    shp = g.shape(n.inputs[0])
    if len(shp) != 4:
        return None
    if n.op in ("GlobalAveragePool", "GlobalMaxPool"):
        return {"kernel": (shp[2], shp[3]), "stride": (1, 1), "dilation": (1, 1), "group": 1}
    if n.op in ("Conv", "ConvTranspose", "DeformConv"):
        w = g.tensor(n.inputs[1]).shape
        kernel = _pair(a.get("kernel_shape"), (w[2], w[3]) if len(w) == 4 else (1, 1))
    elif n.op in ("MaxPool", "AveragePool"):
        kernel = _pair(a.get("kernel_shape"), (1, 1))
    else:
        return None
    return {"kernel": kernel, "stride": _pair(a.get("strides"), (1, 1)),
            "dilation": _pair(a.get("dilations"), (1, 1)), "group": int(a.get("group", 1))}


def node_macs(g: Graph, n: Node) -> int:
    """Multiply-accumulates of one node (0 for ops that do none)."""
    out = g.shape(n.outputs[0])
    if n.op in ("Conv", "DeformConv"):
        w = g.tensor(n.inputs[1]).shape          # [Cout, Cin/group, kh, kw]
        return int(np.prod(out, dtype=np.int64) * np.prod(w[1:], dtype=np.int64))
    if n.op == "ConvTranspose":
        w = g.tensor(n.inputs[1]).shape          # [Cin, Cout/group, kh, kw]
        return int(np.prod(g.shape(n.inputs[0]), dtype=np.int64) * np.prod(w[1:], dtype=np.int64))
    if n.op in ("Gemm", "MatMul"):
        k = g.shape(n.inputs[0])[-1]
        return int(np.prod(out, dtype=np.int64) * k)
    return 0


def receptive_fields(g: Graph) -> dict[str, tuple[tuple[float, float], tuple[float, float]]]:
    """``{tensor: ((rf_h, rf_w), (jump_h, jump_w))}`` for every activation
    reachable from a 4-D graph input (rules in the module docstring)."""
    info = {i: ((1.0, 1.0), (1.0, 1.0)) for i in g.inputs if len(g.shape(i)) == 4}
    for n in g.nodes:
        ins = [info[i] for i in n.inputs if i in info]
        if not ins:
            continue
        out_hw = g.shape(n.outputs[0])[2:]
        full = [info[i] for i in n.inputs if i in info and g.shape(i)[2:] == out_hw]
        if n.op in ("Mul", "Add", "Sub", "Div") and full:
            ins = full     # a broadcast 1x1 operand (SE scale) is a side path
        rf = tuple(max(x[0][a] for x in ins) for a in (0, 1))
        jump = tuple(max(x[1][a] for x in ins) for a in (0, 1))
        geo = geometry(g, n)
        in_shape, out_shape = g.shape(n.inputs[0]), g.shape(n.outputs[0])
        if geo is not None and n.op == "ConvTranspose":
            ext = [geo["dilation"][a] * (geo["kernel"][a] - 1) + 1 for a in (0, 1)]
            rf = tuple(rf[a] + (math.ceil(ext[a] / geo["stride"][a]) - 1) * jump[a] for a in (0, 1))
            jump = tuple(jump[a] / geo["stride"][a] for a in (0, 1))
        elif geo is not None:
            ext = [geo["dilation"][a] * (geo["kernel"][a] - 1) + 1 for a in (0, 1)]
            rf = tuple(rf[a] + (ext[a] - 1) * jump[a] for a in (0, 1))
            jump = tuple(jump[a] * geo["stride"][a] for a in (0, 1))
        elif n.op == "ReduceMean" and len(in_shape) == 4 and {2, 3} <= set(n.attrs.get("axes", ())):
            rf = tuple(rf[a] + (in_shape[2 + a] - 1) * jump[a] for a in (0, 1))
        elif n.op == "Resize" and len(in_shape) == 4 and len(out_shape) == 4:
            scale = [in_shape[2 + a] / out_shape[2 + a] for a in (0, 1)]
            if n.attrs.get("mode") == "linear":
                rf = tuple(rf[a] + jump[a] for a in (0, 1))
            jump = tuple(jump[a] * scale[a] for a in (0, 1))
        elif n.op == "DepthToSpace":
            jump = tuple(j / int(n.attrs["blocksize"]) for j in jump)
        elif n.op == "SpaceToDepth":
            b = int(n.attrs["blocksize"])
            rf = tuple(r + (b - 1) * j for r, j in zip(rf, jump))
            jump = tuple(j * b for j in jump)
        for o in n.outputs:
            if o:
                info[o] = (rf, jump)
    return info


def _num(x: float):
    return int(x) if float(x).is_integer() else round(float(x), 3)


def layer_table(g: Graph) -> list[dict]:
    """One row per conv / fully-connected / pooling node, in graph order."""
    rfs = receptive_fields(g)
    rows = []
    for n in g.nodes:
        info = OPS.get(n.op)
        if info is None or info.kind not in ("conv", "fc", "pool"):
            continue
        geo = geometry(g, n)
        out = g.shape(n.outputs[0])
        rf, jump = rfs.get(n.outputs[0], (None, None))
        # an FC/MatMul on a 4-D tensor (attention) has no spatial meaning
        spatial = rf is not None and len(out) == 4 and info.kind in SPATIAL_KINDS
        weights = [g.const(i) for i in n.inputs[1:] if i and g.const(i) is not None]
        rows.append({
            "name": n.name, "op": n.op, "kind": info.kind,
            "in_shape": list(g.shape(n.inputs[0])), "out_shape": list(out),
            "kernel": list(geo["kernel"]) if geo else None,
            "stride": list(geo["stride"]) if geo else None,
            "dilation": list(geo["dilation"]) if geo else None,
            "group": geo["group"] if geo else None,
            "depthwise": bool(geo and n.op == "Conv" and geo["group"] > 1
                              and geo["group"] == g.shape(n.inputs[0])[1]),
            "macs": node_macs(g, n),
            "params": int(sum(w.size for w in weights)),
            "rf": [_num(r) for r in rf] if spatial else None,
            "jump": [_num(j) for j in jump] if spatial else None,
        })
    return rows


def _macs(layers: list[dict]) -> dict:
    by = Counter()
    for l in layers:
        by["conv" if l["op"] in ("Conv", "DeformConv") else
           "conv_transpose" if l["op"] == "ConvTranspose" else l["kind"]] += l["macs"]
    return {"total": int(sum(l["macs"] for l in layers)), "conv": int(by["conv"]),
            "conv_transpose": int(by["conv_transpose"]), "fc": int(by["fc"]), "note": HE_SUN_NOTE}


def stage_table(layers: list[dict]) -> list[dict]:
    """Spatial layers grouped by cumulative stride (the layers between two
    downsamplings; an SE block's 1x1 convs stay in their stage), in order of
    first appearance, plus a last group for non-spatial layers (FC heads).
    ``resolution`` is the stage's largest output map, ``rf_end`` the largest
    receptive field reached in it by a layer with a map larger than 1x1 (a
    global pool on a side branch, as in SE blocks, would report the whole
    input)."""
    total = sum(l["macs"] for l in layers) or 1
    stages: dict[Any, dict] = {}
    for l in layers:
        spatial = l["rf"] is not None
        key = tuple(l["jump"]) if spatial else None
        s = stages.get(key)
        if s is None:
            s = stages[key] = {"index": len(stages), "resolution": l["out_shape"][2:] if spatial else None,
                               "jump": l["jump"], "layers": 0, "macs": 0, "macs_share": 0.0,
                               "rf_end": l["rf"], "first": l["name"], "last": l["name"],
                               "channels": None}
        s["layers"] += 1
        s["macs"] += l["macs"]
        s["last"] = l["name"]
        s["channels"] = l["out_shape"][1] if len(l["out_shape"]) > 1 else l["out_shape"][0]
        if spatial:
            hw = l["out_shape"][2:]
            if hw[0] * hw[1] > s["resolution"][0] * s["resolution"][1]:
                s["resolution"] = hw
            if hw[0] * hw[1] > 1 or s["layers"] == 1:   # global-pool side branches see everything
                s["rf_end"] = [max(a, b) for a, b in zip(s["rf_end"], l["rf"])] if s["layers"] > 1 \
                    else l["rf"]
    out = sorted(stages.values(), key=lambda s: (s["resolution"] is None, s["index"]))
    for k, s in enumerate(out):
        s["index"] = k
        s["macs_share"] = round(s["macs"] / total, 4)
    return out


# ---------------------------------------------------------------- target support
def unsupported_ops(g: Graph, target: Target | None) -> list[dict]:
    """Every node the target cannot run (all of them, with the reason);
    ``target`` None: only the ops outside the int8 CNN scope."""
    from .emit import ARTEFACTS, limit_rows
    rules, limits = [], []
    if target is not None:
        limits = limit_rows([a for a in target.emit if target.profile in ARTEFACTS[a].profiles])
        rules = [(op, {}, f"target '{target.name}' does not run {op} (its target file lists it)")
                 for op in target.unsupported] + PROFILE_LIMITS.get(target.profile, [])
    rows = []
    for n in g.nodes:
        info = OPS.get(n.op)
        if info is not None and not info.cnn:
            rows.append({"node": n.name, "op": n.op,
                         "reason": info.note or "outside the int8 CNN scope: stays float"})
            continue
        for op, match, why in rules:
            if n.op == op and all(n.attrs.get(k) == v for k, v in match.items()):
                rows.append({"node": n.name, "op": n.op, "reason": why})
                break
        else:
            for art, op, check in limits:   # the emitters' own checks of the default artefacts
                why = check(n.attrs) if n.op == op else None
                if why:
                    rows.append({"node": n.name, "op": n.op, "reason": f"{ARTEFACTS[art].path}: {why} (or "
                                 f"leave {art} out of quantize --emit)"})
                    break
    return rows


# ---------------------------------------------------------------- advice
def _tip(code: str, message: str, nodes: list[str]) -> dict:
    return {"code": code, "message": message, "nodes": nodes}


def se_blocks(g: Graph, depth: int = 8) -> list[list[str]]:
    """Squeeze-and-excitation blocks: a GlobalAveragePool (or spatial
    ReduceMean) whose result, through at most ``depth`` single-input ops,
    scales the pooled tensor with a Mul. Each block is listed as its node names
    (pool ... Mul)."""
    blocks = []
    for n in g.nodes:
        pooled = n.op == "GlobalAveragePool" or (
            n.op == "ReduceMean" and len(g.shape(n.inputs[0])) == 4
            and {2, 3} <= set(n.attrs.get("axes", ())))
        if not pooled:
            continue
        x, path, frontier = n.inputs[0], [n.name], [n]
        for _ in range(depth):
            nxt = [c for f in frontier for o in f.outputs for c in g.consumers(o)]
            mul = [c for c in nxt if c.op == "Mul" and x in c.inputs]
            if mul:
                blocks.append(path + [mul[0].name])
                break
            frontier = [c for c in nxt if c.op != "Mul" or x not in c.inputs]
            if len(frontier) != 1:
                break
            path.append(frontier[0].name)
    return blocks


def _list(names: list[str], limit: int = 4) -> str:
    head = ", ".join(f"'{n}'" for n in names[:limit])
    return head + (f" and {len(names) - limit} more" if len(names) > limit else "")


def advice(g: Graph, layers: list[dict], target: Target | None, deploy: Graph | None = None) -> list[dict]:
    """Deploy lint drawn from the seed notes; each tip names its nodes."""
    tips: list[dict] = []
    fpga = target is not None and target.profile == "fpga"
    se = se_blocks(g)
    if se:
        where = ("on an FPGA-style target each one leaves the fabric for the CPU and back "
                 "(EfficientNet-B4 on a Zynq: 6 fps instead of 80): drop them or check the "
                 "accelerator runs global pooling and broadcast Mul" if fpga else
                 "they cost little compute but a global pool, two tiny convs and a broadcast Mul each; "
                 "check the target runs them all (an accelerator that cannot sends each to the CPU)")
        tips.append(_tip("se_block", f"{len(se)} squeeze-and-excitation block(s): {where}",
                         [nm for b in se for nm in b]))
    fc = [l["name"] for l in layers if l["kind"] == "fc"]
    if fc and fpga:
        tips.append(_tip("fc_on_fpga", f"{len(fc)} fully-connected layer(s) {_list(fc)}: an FPGA "
                         "conv accelerator runs them on the CPU, crossing the CPU/fabric boundary; "
                         "use a 1x1 conv on the pooled map instead", fc))
    big = [l["name"] for l in layers if l["op"] == "Conv" and l["kernel"] and min(l["kernel"]) >= 5]
    if big:
        tips.append(_tip("large_kernel", f"{len(big)} conv(s) with 5x5 or larger kernels ({_list(big)}): "
                         "two stacked 3x3 convs see as far as one 5x5 for 18 instead of 25 MACs per "
                         "weight position and add a nonlinearity", big))
    tips += _downsampling_tips(g, layers)
    odd = _odd_channels(g)
    if odd:
        tips.append(_tip("channels_not_x8", f"{len(odd)} conv(s) with output channels not a multiple "
                         f"of 8 ({_list(odd)}): parallel hardware and SIMD kernels work in groups of "
                         "8 (or 16); round the widths up", odd))
    cat = [n.name for n in g.nodes if n.op == "Concat" and len(g.shape(n.outputs[0])) == 4
           and int(n.attrs.get("axis", 1)) % 4 == 1
           and sum(1 for i in n.inputs if g.const(i) is None) >= 2]
    if cat:
        tips.append(_tip("concat_shortcut", f"{len(cat)} channel concat(s) ({_list(cat)}): int8 forces "
                         "all branches onto one shared scale, so a branch with a small range loses "
                         "precision; an Add (each input rescaled) quantizes better where the design "
                         "allows (see the shortcut report)", cat))
    exotic = [n.name for n in g.nodes if n.op in EXOTIC_ACTS]
    if exotic:
        tips.append(_tip("exotic_activation", f"{len(exotic)} exotic activation node(s) ({_list(exotic)}): "
                         "they make little difference over ReLU/ReLU6 and are harder to deploy; "
                         "retrain with ReLU6, leaky ReLU or h-swish", exotic))
    deform = [n.name for n in g.nodes if n.op == "DeformConv"]
    if deform:
        tips.append(_tip("deformable_conv", f"{len(deform)} deformable conv(s) ({_list(deform)}): only "
                         "GPUs run them well; not supported on embedded targets: use plain Conv", deform))
    lut = [n.name for n in g.nodes if n.op in LUT_ACTS]
    if deploy is not None:
        lut += [n.name for n in deploy.nodes if n.op in LUT_ACTS and n.name not in lut]
    if lut:
        tips.append(_tip("lut_activation", f"{len(lut)} sigmoid/tanh-family activation(s) ({_list(lut)}) "
                         "become 256-entry int8 lookup tables (sigmoid saturates beyond about +-8, so "
                         "the table costs no accuracy)" + ("; h-sigmoid/h-swish are the cheaper "
                                                          "piecewise-linear forms" if fpga else ""), lut))
    leaky = [n for n in (deploy or g).nodes if n.op == "LeakyRelu"]
    if leaky:
        alphas = sorted({round(float(n.attrs.get("alpha", 0.01)), 6) for n in leaky})
        approx = sorted({str(n.attrs["q_leaky"]) for n in leaky if "q_leaky" in n.attrs})
        tips.append(_tip("leaky_relu", f"{len(leaky)} LeakyRelu(s) with alpha {alphas}: computed in "
                         "integers as a multiply and shift (0.1 ~= 13>>7, what Xilinx DPUs use)"
                         + (f"; chosen: {', '.join(approx)}" if approx else ""),
                         [n.name for n in leaky]))
    return tips


def _downsampling_tips(g: Graph, layers: list[dict]) -> list[dict]:
    tips = []
    spatial = [l for l in layers if l["rf"] is not None]
    if not spatial or not g.inputs or len(g.shape(g.inputs[0])) != 4:
        return tips
    total = sum(l["macs"] for l in layers) or 1
    h, w = g.shape(g.inputs[0])[2:]
    early = [l for l in spatial if max(l["jump"]) <= 2]
    share = sum(l["macs"] for l in early) / total
    if share > 0.3 and len(early) > 2:
        names = [l["name"] for l in early]
        tips.append(_tip("late_downsampling", f"{share:.0%} of the MACs are spent at stride <= 2 "
                         f"(maps of {h // 2}x{w // 2} or larger) in {len(early)} layers: downsample "
                         "earlier (stride-2 stem, then deepen in the middle stages)", names))
    maps = [l for l in spatial if l["out_shape"][2] * l["out_shape"][3] > 1] or spatial
    deepest = max(reversed(maps), key=lambda l: max(l["jump"]))
    fh, fw = deepest["out_shape"][2:]
    rf = deepest["rf"]
    msg = (f"final feature map {fh}x{fw} for a {h}x{w} input (stride {_num(max(deepest['jump']))}, "
           f"receptive field {rf[0]}x{rf[1]} at '{deepest['name']}'); classifiers typically end at "
           "7x7 for 224 (5 downsamplings)")
    if max(deepest["jump"]) < 16:
        msg += ": few downsamplings keep the maps large and expensive"
    if rf[0] < h or rf[1] < w:
        msg += f"; the deepest layer sees {rf[0]}x{rf[1]} of the input: objects larger than that are seen only in parts"
    tips.append(_tip("final_feature_map", msg, [deepest["name"]]))
    return tips


def _odd_channels(g: Graph) -> list[str]:
    """Convs whose output channel count is not a multiple of 8, except heads
    (whose width is the number of classes/boxes: output or one op before it)."""
    odd = []
    for n in g.nodes:
        if n.op not in ("Conv", "ConvTranspose") or len(g.shape(n.outputs[0])) != 4:
            continue
        if g.shape(n.outputs[0])[1] % 8 == 0:
            continue
        near_out = g.is_graph_output(n.outputs[0]) or any(
            g.is_graph_output(o) for c in g.consumers(n.outputs[0]) for o in c.outputs)
        if not near_out:
            odd.append(n.name)
    return odd
