"""Calibration method ``auto``: ranges chosen by their effect on the model output.

Per-tensor observers judge a range by the tensor alone. Whether clipping a
tensor's tail pays depends on what the network does with it: clipping the
sparse tail of a mid-network depthwise output buys resolution for the bulk;
clipping the tail of a tensor near the output (logits, a detection head, a
residual branch) removes signal and can cost 10 dB (squeezenet with
percentile ranges, bench/RESULTS.md). ``auto`` measures it, on the
calibration samples only:

1. **Split** the samples into two contiguous halves (sets are usually ordered
   by source, so contiguous halves share fewer near-duplicates than
   interleaved ones) and observe each half once (:class:`~.observers.MSE`
   histograms, which merge exactly).
2. **Candidates** per tensor, from one half's histogram: ``minmax``,
   ``p99.999``, ``p99.99`` (percentiles of the signed values), ``mse``
   (:data:`CANDIDATES`).
3. **Score** a choice (a candidate name per tensor) by the output SQNR (worst
   output, vs the float model) of the fake-quantized model, 2-fold: ranges
   fitted on one half, SQNR measured on the other, both ways, each also with
   ``jitters - 1`` copies whose range bounds are widened by a random
   0-0.2 %, and averaged. The jitter copies matter: on the corpus models a
   0.2 % change of every range moves the output SQNR by 0.3-0.9 dB (std), and
   that "realization noise" is uncorrelated between two sets of inputs
   (measured correlation -0.3..0.3), so a single evaluation would select
   noise.
4. **Select**: the best uniform choice (every tensor ``minmax``, or every
   tensor ``p99.999``, ...), where anything but ``minmax`` must win by
   ``margin_db``; when a clipping candidate wins, each tensor whose scale
   comes from its range (``prepare.out_rule == "range"``), output side first,
   goes back to ``minmax`` when that raises the score by ``margin_db``
   (clipping near the output is what hurts).
5. **Refit** each tensor's chosen candidate on *all* samples (the two halves'
   histograms merged).

Measured (bench/RESULTS.md, "arm auto"): on the random-weight corpus the
gain over ``minmax`` is within that realization noise (per model -0.7..+0.7
dB over 3 draws): the systematic effects (percentile clipping costs 3-10 dB
on squeezenet/he2014/seg_head) are avoided, the sub-dB ones cannot be
resolved from 32 calibration samples. Hence ``auto`` is opt-in, not the default.

Evaluation (decision): the target's fake-quant float model
(:func:`~qdeploy.quant.interpreter.fake_quant_graph`: integer weights
dequantized, a QuantizeLinear/DequantizeLinear pair after every quantized
activation) on onnxruntime, built once per half with every activation's
scale and zero point as graph *inputs*, so a candidate costs one batched run
and no re-quantization (10-60 ms on the corpus models). The scales fed are
exactly the quantizer's (:func:`activation_qparams` applies its rules: fused
clamps, tied, fixed and Concat-shared outputs). The fake-quant model tracks
the integer interpreter's output SQNR to 0.1-0.7 dB (``arm`` vs ``arm fq``).

Result: :class:`~.ranges.Ranges` with method ``"auto"``; its observers are
the all-sample histograms (power-of-two targets still get their MSE
histograms), every tensor's range is an explicit ``fixed`` value (so
``ranges.json`` round-trips through its ``lo``/``hi``), and ``options``
records the choice per tensor (``choices``), the settings and the scores.
With fewer than 2 samples there is nothing to hold out: every tensor keeps
``minmax``.
"""
from __future__ import annotations

import numpy as np

from ..errors import QDeployError
from ..ir import Graph
from . import observers as obs
from .ranges import Ranges

CANDIDATES = {"minmax": ("minmax", None), "p99.999": ("percentile", 99.999),
              "p99.99": ("percentile", 99.99), "mse": ("mse", None)}
MARGIN_DB = 0.1
JITTER = 0.002         # relative widening of the jittered copies
JITTERS = 3


def candidate_range(o: obs.Histogram, kind: str) -> tuple[float, float]:
    """The range candidate ``kind`` (a key of :data:`CANDIDATES`) of the data
    in histogram observer ``o``."""
    method, pct = CANDIDATES[kind]
    d = {**o.to_dict(), "method": method}
    if pct is not None:
        d["percentile"] = pct
    return obs.from_dict(d).range()


def jittered(bounds: dict, j: int) -> dict:
    """Copy ``j`` of ``bounds``: as given for 0, else every bound widened by a random
    0-``JITTER`` (seeded by ``j``), the "realization noise" a choice is averaged over."""
    if j == 0:
        return bounds
    rng = np.random.default_rng(j)
    return {t: (lo * (1 + JITTER * rng.random()), hi * (1 + JITTER * rng.random())) for t, (lo, hi) in bounds.items()}


def activation_qparams(g: Graph, bounds: dict, target) -> dict[str, tuple[float, int]]:
    """``{tensor: (scale, zero_point)}`` of every activation of ``g`` as
    :func:`~qdeploy.quant.quantizer.quantize_graph` chooses them from
    ``bounds`` (without preparing any node)."""
    from ..quant import quantizer as qz
    from ..quant.prepare import Ctx
    qt = qz._activation_params(g, bounds, target, {})
    qz._share_concat_scales(g, Ctx(g, target, False, qt))
    return {k: (float(t.s), int(t.zp)) for k, t in qt.items()}


class FakeQuantEvaluator:
    """Output SQNR of ``g`` fake-quantized with given activation ranges, on a
    fixed batch of samples: one onnxruntime session, scales fed as inputs."""

    def __init__(self, g: Graph, x: np.ndarray, target, per_tensor: bool, bounds: dict, assemble=None,
                 threads: int = 1):
        import warnings

        import onnx
        from ..float_run import session
        from ..onnx_export import export_onnx
        from ..quant.interpreter import fake_quant_graph
        from ..quant.quantizer import quantize_graph
        from .calibrate import batched
        self.g, self.target = g, target
        # the model's own outputs from the graph's (a float tail replayed), or the graph's as they are
        self.assemble = assemble or (lambda outs: outs)
        self.x = np.ascontiguousarray(x, np.float32)
        big = batched(g, len(self.x)) if len(self.x) > 1 else None
        self.one_at_a_time = big is None
        run_g = g if big is None else big
        self.ref = self.assemble(self._run_float(session(run_g, (), threads)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qg = quantize_graph(g, bounds, target, per_tensor=per_tensor)
        fq = fake_quant_graph(qg, run_g)
        self.feeds: dict[str, tuple[str, str, np.dtype]] = {}     # tensor -> (scale input, zp input, zp dtype)
        acts = set(g.activations())
        for n in fq.nodes:   # (a SiLU's sigmoid, on its fixed grid, is not an activation of g)
            if n.op == "QuantizeLinear" and n.inputs[0] in acts:
                self.feeds[n.inputs[0]] = (n.inputs[1], n.inputs[2], np.dtype(fq.tensor(n.inputs[2]).dtype))
        mp = export_onnx(fq)
        fed = {name for s, z, _ in self.feeds.values() for name in (s, z)}
        kept = [i for i in mp.graph.initializer if i.name not in fed]
        for init in [i for i in mp.graph.initializer if i.name in fed]:
            mp.graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, []))
        del mp.graph.initializer[:]
        mp.graph.initializer.extend(kept)
        import onnxruntime as ort
        from .. import ort_session
        # graph optimizations off: the QDQ pairs stay float ops; threads 0: every core
        self.sess = ort.InferenceSession(mp.SerializeToString(), ort_session.options(threads, optimize=False),
                                         providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.sess.get_outputs()]
        self.evaluations = 0

    def _run_float(self, sess) -> list[np.ndarray]:
        names = [o.name for o in sess.get_outputs()]
        return self._run(sess, names, {})

    def _run(self, sess, names, extra: dict) -> list[np.ndarray]:
        inp = self.g.inputs[0]
        if not self.one_at_a_time:
            return sess.run(names, {inp: self.x, **extra})
        runs = [sess.run(names, {inp: self.x[i:i + 1], **extra}) for i in range(len(self.x))]
        return [np.concatenate([r[k] for r in runs]) for k in range(len(names))]

    def sqnr(self, qparams: dict[str, tuple[float, int]]) -> float:
        """Worst output SQNR (dB) vs the float model with these activation
        scales and zero points."""
        from ..quant.error import sqnr_db
        feed = {}
        for t, (s_name, z_name, zdt) in self.feeds.items():
            s, zp = qparams[t]
            feed[s_name] = np.array(s, np.float32)
            feed[z_name] = np.array(zp, zdt)
        self.evaluations += 1
        outs = self.assemble(self._run(self.sess, self.outputs, feed))
        return min(sqnr_db(r, o) for r, o in zip(self.ref, outs))


def auto_ranges(graph: Graph, calib_x: np.ndarray, target="arm", per_tensor: bool = False,
                batch_size: int = 8, progress: bool = True, recipe: dict | None = None,
                margin_db: float = MARGIN_DB, jitters: int = JITTERS, tensors=None) -> Ranges:
    """Ranges of method ``auto`` (module docstring) for ``graph`` from the
    calibration samples ``calib_x`` (N x <sample shape>) only, for ``target``
    (name, .toml path or Target) with per-channel or ``per_tensor`` weights."""
    from ..quant.prepare import out_rule
    from ..quant.targets import load_target
    from .calibrate import _progress, calibrate
    target = load_target(target)
    x = np.ascontiguousarray(np.asarray(calib_x), np.float32)
    if x.ndim == 0 or len(x) == 0:
        raise QDeployError("the calibration set is empty; give at least one sample")
    kw = dict(method="mse", tensors=tensors, batch_size=batch_size, progress=False)
    if len(x) < 2:
        full = calibrate(graph, x, **kw)
        return _result(graph, full.observers, {t: "minmax" for t in full.observers}, len(x), recipe,
                       {"margin_db": margin_db, "jitters": jitters, "reason": "fewer than 2 samples"})
    halves = (x[:len(x) // 2], x[len(x) // 2:])
    seen = [calibrate(graph, h, **kw).observers for h in halves]
    names = list(seen[0])
    searched = [t for t in names if t in graph.inputs or
                (graph.producer(t) is not None and out_rule(graph.producer(t).op, target) == "range")]
    # fold k: ranges fitted on half k, scored on the other half
    folds = []
    for k in range(2):
        cands = {t: {c: candidate_range(o, c) for c in CANDIDATES} for t, o in seen[k].items()}
        bounds = {t: cands[t]["minmax"] for t in names}
        folds.append((cands, FakeQuantEvaluator(graph, halves[1 - k], target, per_tensor, bounds)))

    def score(ch: dict) -> float:
        vals = []
        for cands, ev in folds:
            b = {t: cands[t][ch[t]] for t in names}
            for j in range(jitters):
                vals.append(ev.sqnr(activation_qparams(graph, jittered(b, j), target)))
        return float(np.mean(vals))

    total = len(CANDIDATES) + len(searched)
    with _progress(progress, total) as bar:
        task = bar.add_task("choosing ranges (auto)", total=total) if bar else None
        uniform = {}
        for k in CANDIDATES:
            uniform[k] = score({t: k for t in names})
            if bar:
                bar.advance(task)
        start = max(uniform, key=lambda k: (uniform[k] - (margin_db if k != "minmax" else 0.0), k == "minmax"))
        choice = {t: start for t in names}
        best = uniform[start]
        if start != "minmax":
            for t in reversed(searched):
                    s = score({**choice, t: "minmax"})
                    if s > best + margin_db:
                        choice[t], best = "minmax", s
                    if bar:
                        bar.advance(task)
    full = {t: obs.merge(seen[0][t], seen[1][t]) for t in names}
    return _result(graph, full, choice, len(x), recipe,
                   {"margin_db": margin_db, "jitters": jitters,
                    "score_db": {**{k: round(v, 3) for k, v in uniform.items()}, "auto": round(best, 3)},
                    "evaluations": sum(ev.evaluations for _, ev in folds)})


def _result(graph: Graph, observers: dict, choice: dict, samples: int, recipe, info: dict) -> Ranges:
    from .ranges import fingerprint
    fixed = {t: candidate_range(o, choice[t]) for t, o in observers.items()}
    return Ranges(model=graph.name, fingerprint=fingerprint(graph), method="auto", samples=samples,
                  observers=dict(observers), recipe=recipe,
                  options={"choices": dict(choice), "candidates": list(CANDIDATES), **info}, fixed=fixed)
