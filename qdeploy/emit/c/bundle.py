"""Assemble the C bundle: schedule, arena, memory limits, rendered files."""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import jinja2
import numpy as np

from ...errors import QDeployError
from . import layout
from .lower import LOWER, SCRATCH, Builder, Ref, find_flattens
from .names import comment
from ..arena import Buffer, int_io, schedule
from ..arena import plan as place

RUNTIME = ("qd_fixedpoint.h", "qd_kernels.h", "qd_conv.c", "qd_eltwise.c", "qd_pool.c", "qd_softmax.c", "qd_move.c")
RUNTIME_SOURCES = tuple(f for f in RUNTIME if f.endswith(".c"))
CODE_ESTIMATE = {"base": 6 * 1024, "per_step": 48}   # bytes of flash for code (Cortex-M4 -Os estimate)


@dataclass
class Bundle:
    files: dict          # path in OUT -> bytes
    arena: int           # MODEL_ARENA_BYTES
    lower_bound: int
    weights: int         # bytes of const data
    flash: int           # weights + code estimate
    ram: int             # arena + inputs + outputs
    steps: int


def _schedule(qg):
    """(body nodes, int8 inputs, int8 outputs) as the C API sees them (arena.schedule/int_io),
    or one error naming what the bundle cannot take."""
    body = schedule(qg)
    missing = [f"'{n.name}' ({n.op})" for n in body if n.op not in LOWER]
    if missing:
        raise QDeployError(f"{len(missing)} node(s) have no C kernel: {', '.join(missing)}; "
                           f"the C bundle runs {', '.join(sorted(LOWER))} (drop 'c' from --emit)")
    quantized = {n.inputs[0] for n in qg.nodes if n.op == "Quantize"}
    dequantized = {n.outputs[0] for n in qg.nodes if n.op == "Dequantize"}
    for name in qg.inputs:
        if name not in quantized:
            raise QDeployError(f"graph input '{comment(name, 60)}' has no Quantize node; the C bundle takes int8 inputs")
    for name in qg.outputs:
        if name not in dequantized:
            raise QDeployError(f"graph output '{comment(name, 60)}' has no Dequantize node; the C bundle gives int8 outputs")
    ins, outs = int_io(qg)
    for t in ins + outs:
        if qg.tensors[t].dtype != "int8":
            raise QDeployError(f"tensor '{comment(t, 60)}' is {qg.tensors[t].dtype}; the C bundle is int8 only")
    return body, ins, outs


def _io(qg, names, float_names):
    from ...quant.float_tail import branch_notes
    notes = branch_notes(qg.metadata.get("float_tail"))   # outputs the float tail assembles (quant/float_tail.py)
    res, off = [], 0
    for k, (t, f) in enumerate(zip(names, float_names)):
        q = qg.tensors[t]
        shape = list(q.shape)
        mem = [shape[i] for i in layout.perm_of(shape)]
        size = int(np.prod(shape))
        res.append({"k": k, "tensor": t, "name": comment(f, 60), "shape": shape, "mem_shape": mem,
                    "layout": "NHWC" if len(shape) == 4 else "row-major", "bytes": size, "offset": off,
                    "scale": float(q.s), "zp": q.zp, "note": comment(notes.get(f, ""), 400)})
        off += size
    return res, off


def build(qg, ctx) -> Bundle:
    profile = qg.profile
    if profile not in ("arm", "fpga"):
        raise QDeployError(f"the C bundle expresses the arm and fpga arithmetic; target '{qg.target}' uses "
                           f"'{profile}' (drop 'c' from --emit)")
    body, ins, outs = _schedule(qg)
    readers = qg.readers()
    b = Builder(qg, profile, flat=find_flattens(qg), readers=readers)
    b.used.update({"model_invoke", "model_invoke_arena", "model_arena"})
    layer_names = set()
    from .names import identifier
    for i, n in enumerate(body):
        b.node_index = i
        b.layer = identifier(n.name, f"L{i}", layer_names)
        LOWER[n.op](b, n)

    # where each tensor lives: the caller's input/output blocks, const arrays, the arena
    in_io, in_bytes = _io(qg, ins, qg.inputs)
    out_io, out_bytes = _io(qg, outs, qg.outputs)
    loc: dict[str, tuple] = {}
    for d in in_io:
        loc.setdefault(d["tensor"], ("in", d["offset"]))
    produced = {t for n in body for t in n.outputs}
    copies = []   # output slots filled by a copy at the end
    for d in out_io:
        t = d["tensor"]
        if t in produced and t not in loc:
            loc[t] = ("out", d["offset"])
        else:
            copies.append(d)
    # lifetimes from the buffers the kernel calls touch (a tensor that data movement was
    # fused through is never touched, so never placed)
    first, last = {}, {}
    for s in b.steps:
        for a in s.args:
            if isinstance(a, Ref) and a != SCRATCH:
                first.setdefault(a.tensor, s.node)
                last[a.tensor] = max(last.get(a.tensor, s.node), s.node)
    end = len(body)
    for d in copies:
        if d["tensor"] in first:
            last[d["tensor"]] = end
    buffers = []
    for t in first:
        if t in loc or qg.tensors[t].is_const:
            continue
        src = b.inplace.get(t)
        ok = src is not None and src in first and src not in loc
        buffers.append(Buffer(t, int(np.prod(qg.tensors[t].shape)), first[t], last[t], src if ok else None))
    for k, s in enumerate(b.steps):   # kernel scratch: live during its own step only
        if s.scratch:
            buffers.append(Buffer(f"\0scratch{k}", s.scratch, s.node, s.node))
    plan = place(buffers)
    for buf in buffers:
        loc[buf.name] = ("arena", plan.offsets[buf.name])

    def expr(a):
        if not isinstance(a, Ref):
            return a
        if a.tensor not in loc:
            t = qg.tensors[a.tensor]
            if t.is_const:
                return b.const(a.tensor) + (f" + {a.offset}" if a.offset else "")
            raise QDeployError(f"tensor '{comment(a.tensor, 60)}' is read before any node writes it")
        kind, off = loc[a.tensor]
        off += a.offset
        return f"{kind} + {off}" if off else kind

    steps = []
    for k, s in enumerate(b.steps):
        if s.skip_if_same is not None and loc.get(s.skip_if_same[0]) == loc.get(s.skip_if_same[1]):
            continue
        args = [expr(Ref(f"\0scratch{k}")) if a == SCRATCH else expr(a) for a in s.args]
        steps.append({"kernel": s.kernel, "struct": s.struct, "fields": s.fields, "what": comment(s.what, 100),
                      "args": args, "node": s.node, "layer": s.layer})
    for d in copies:
        src = Ref(d["tensor"])
        steps.append({"kernel": "qd_copy", "struct": "qd_walk",
                      "fields": {"ndim": 1, "dims": [d["bytes"]], "s": [[1], [1], [0]]},
                      "what": f"output {d['k']}: copy", "args": [expr(src), f"out + {d['offset']}"], "node": end,
                      "layer": f"output{d['k']}"})
    for k, s in enumerate(steps):
        s["name"] = f"P{k}"

    weights = sum(a.values.nbytes for a in b.arrays)
    code = CODE_ESTIMATE["base"] + CODE_ESTIMATE["per_step"] * len(steps)
    ram = plan.size + in_bytes + out_bytes
    _check_memory(ctx.target, plan, {x.name: x.size for x in buffers}, ram, weights + code, in_bytes, out_bytes, b)
    info = {"version": ctx.version, "model": comment(ctx.model_name, 60), "target": comment(ctx.target.name, 40),
            "target_argument": comment(ctx.target.argument, 80),
            "profile": profile, "fpga": profile == "fpga", "arena": plan.size, "lower_bound": plan.lower_bound,
            "algorithm": plan.algorithm, "weights": weights, "flash": weights + code, "code": code, "ram": ram,
            "inputs": in_io, "outputs": out_io, "in_bytes": in_bytes, "out_bytes": out_bytes,
            "recipe": _recipe_lines(ctx.recipe), "recipe_defines": _recipe_defines(ctx.recipe), "steps": steps, "arrays": b.arrays,
            "runtime_sources": list(RUNTIME_SOURCES), "cstruct": cstruct, "carray": carray}
    env = jinja2.Environment(loader=jinja2.PackageLoader("qdeploy.emit.c", "templates"), keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    files = {}
    for tpl in ("model.h", "model.c", "model_weights.h", "model_weights.c", "qd_profile.h", "Makefile",
                "CMakeLists.txt", "example_main.c"):
        files[f"c/{tpl}"] = env.get_template(tpl + ".j2").render(**info).encode()
    rt = resources.files("qdeploy.emit.c") / "runtime"
    for f in RUNTIME:
        files[f"c/{f}"] = (rt / f).read_bytes()
    return Bundle(files, plan.size, plan.lower_bound, weights, weights + code, ram, len(steps))


def emit(qg, ctx) -> dict[str, bytes]:
    b = build(qg, ctx)
    ctx.report["memory"] = {"arena_bytes": b.arena, "arena_lower_bound": b.lower_bound, "ram_bytes": b.ram,
                            "weights_bytes": b.weights, "code_bytes": b.flash - b.weights, "flash_bytes": b.flash,
                            "kernel_calls": b.steps, "artefact": "c"}
    return b.files


def _recipe_lines(recipe) -> list[str]:
    if not recipe:
        return []
    from ...calibration.recipe import describe
    lines = [f"preprocessing: {comment(describe(recipe), 90)}"]
    for k in ("mean", "std", "scale", "preset", "channels", "layout"):
        if k in recipe and recipe[k] is not None:
            lines.append(f"{k}: {comment(recipe[k], 90)}")
    return lines


def _recipe_defines(recipe) -> list[tuple[str, str]]:
    """The numbers of the input recipe as C defines: x = (pixel * SCALE - MEAN[c]) / STD[c]."""
    out = []
    if not recipe:
        return out
    if recipe.get("size"):
        out += [("MODEL_INPUT_IMAGE_HEIGHT", str(int(recipe["size"][0]))), ("MODEL_INPUT_IMAGE_WIDTH", str(int(recipe["size"][1])))]
    if isinstance(recipe.get("scale"), (int, float)):
        out.append(("MODEL_INPUT_PIXEL_SCALE", f"{float(recipe['scale']):.9g}f"))
    for k in ("mean", "std"):
        v = recipe.get(k)
        if isinstance(v, (list, tuple)) and all(isinstance(e, (int, float)) for e in v):
            out.append((f"MODEL_INPUT_{k.upper()}", "{" + ", ".join(f"{float(e):.9g}f" for e in v) + "}"))
    return out


def _check_memory(target, plan, sizes, ram, flash, in_bytes, out_bytes, b):
    problems = []
    if target.ram_kib and ram > target.ram_kib * 1024:
        peak = ", ".join(("a convolution's scratch" if t.startswith("\0") else f"'{comment(t, 40)}'") + f" {sizes[t]} B"
                         for t in list(plan.peak)[:3])
        problems.append(f"RAM {ram / 1024:.1f} KiB (arena {plan.size} B + input {in_bytes} B + output {out_bytes} B) "
                        f"> ram_kib {target.ram_kib}; live together at the peak: {peak}")
    if target.flash_kib and flash > target.flash_kib * 1024:
        big = sorted(b.arrays, key=lambda a: -a.values.nbytes)[:3]
        problems.append(f"flash {flash / 1024:.1f} KiB > flash_kib {target.flash_kib}; largest constants: "
                        + ", ".join(f"{a.what} {a.values.nbytes} B" for a in big))
    if problems:
        raise QDeployError(f"the C bundle does not fit target '{target.name}': {'; '.join(problems)}; try a smaller "
                           "input (--input-shape), a width multiplier, earlier downsampling, or a target with more memory")


def cvalue(v) -> str:
    """A C initializer for a field value: int, identifier/expression, list, or struct."""
    if isinstance(v, dict):
        return "{" + ", ".join(f".{k} = {cvalue(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "{" + ", ".join(cvalue(x) for x in v) + "}"
    if isinstance(v, (bool, np.bool_)):
        return "1" if v else "0"
    if isinstance(v, (int, np.integer)):
        v = int(v)
        return "INT32_MIN" if v == -(1 << 31) else str(v)
    return str(v)


def cstruct(fields: dict, width: int = 100) -> str:
    """A struct initializer, its fields wrapped at ``width`` columns."""
    lines, line = [], "   "
    for k, v in fields.items():
        item = f" .{k} = {cvalue(v)},"
        if len(line) + len(item) > width and line.strip():
            lines.append(line)
            line = "   "
        line += item
    lines.append(line.rstrip(","))
    return "{\n" + "\n".join(lines) + "\n}"


def carray(values, per_line: int = 24) -> str:
    """Array contents, ``per_line`` values a line."""
    vals = [("INT32_MIN" if v == -(1 << 31) else str(v)) for v in np.asarray(values).reshape(-1).tolist()]
    return ",\n".join("    " + ", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line))
