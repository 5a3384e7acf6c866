"""A tiny ONNX graph writer for the corpus builders (onnx.helper + numpy only).

:class:`Net` appends nodes and initializers, names them uniquely, tracks the
channel count of every activation (so a builder says ``net.conv(x, 32, 3)``
rather than repeating input widths) and writes the ops the way exporters do:

* weights are He-initialised (std ``sqrt(2 / fan_in)``), so activations keep
  their scale through the network instead of vanishing or exploding;
* BatchNorm stays a separate node with the statistics training would leave:
  :meth:`Net.model` runs the graph once on onnxruntime with every BN in
  training mode on a few seeded standard-normal inputs, and stores each BN's
  pooled mean and variance (perturbed by 10% of a std and ~20% of the
  variance, rounded to float16 precision so the bytes do not depend on the
  last bits of the run) as its running statistics. Its gamma has a
  root-mean-square of 1 but about one channel in eight is 4-8x larger than
  the rest -- the per-channel range spread that makes per-tensor int8
  quantization lose precision. So activations keep an RMS near 1 (growing
  only through residual adds, as in trained nets) on standard-normal inputs;
* activations come in their exported forms (``Clip`` with min/max *inputs*
  for ReLU6, ``x*Sigmoid(x)`` for SiLU, the decomposed and single-op
  h-swish/h-sigmoid forms, ``LeakyRelu``);
* :meth:`Net.torch_flatten` writes the ``Shape -> Gather -> Unsqueeze ->
  Concat -> Reshape`` subgraph that ``x.view(x.size(0), -1)`` exports.

Everything random comes from one ``numpy.random.default_rng(seed)``, so a
builder returns byte-identical models on every call.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


PROBE_RUNS = 8   # seeded standard-normal inputs that BN statistics are fitted on


class Net:
    def __init__(self, name: str, input_shape, seed: int, opset: int = 13,
                 input_name: str = "input", const_nodes: bool = False):
        """``input_shape`` may hold a string for a dynamic dim (e.g. ``"batch"``);
        ``const_nodes`` writes scalars and int64 shape constants as ``Constant``
        nodes (as the TorchScript exporter does) instead of initializers."""
        self.name, self.opset, self.const_nodes = name, opset, const_nodes
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.input = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(input_shape))
        self.ch: dict[str, int] = {input_name: int(input_shape[1])}
        self._used: Counter = Counter()
        self.x = input_name
        self._bn_stats: list[tuple[str, str, str]] = []   # (BN output, mean name, var name)

    # ---- plumbing ------------------------------------------------------------
    def fresh(self, base: str) -> str:
        self._used[base] += 1
        return f"{base}_{self._used[base]}"

    def const(self, base: str, value, dtype=np.float32) -> str:
        value = np.asarray(value, dtype=dtype)
        name = self.fresh(base)
        if self.const_nodes and (value.ndim == 0 or value.dtype == np.int64):
            self.nodes.append(helper.make_node("Constant", [], [name], name=name + "_const",
                                               value=numpy_helper.from_array(value, name)))
        else:
            self.inits.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, ch: int | None = None, **attrs):
        """Append one node; returns its output name (or list of names when
        ``n_out > 1``). The output inherits the first input's channel count
        unless ``ch`` is given."""
        base = self.fresh(op_type)
        outs = [f"{base}_out{k}" if n_out > 1 else base for k in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=base, **attrs))
        c = ch if ch is not None else self.ch.get(inputs[0]) if inputs else None
        if c is not None:
            for o in outs:
                self.ch[o] = c
        return outs if n_out > 1 else outs[0]

    # ---- layers --------------------------------------------------------------
    def conv(self, x: str, cout: int, k, stride=1, group: int = 1, dilation=1, pad=None,
             bias: bool = False) -> str:
        cin = self.ch[x]
        kh, kw = (k, k) if isinstance(k, int) else k
        if pad is None:
            pad = (dilation * (kh - 1) // 2, dilation * (kw - 1) // 2)
        pads = [pad, pad, pad, pad] if isinstance(pad, int) else [pad[0], pad[1], pad[0], pad[1]]
        fan_in = cin // group * kh * kw
        w = self.rng.standard_normal((cout, cin // group, kh, kw)) * np.sqrt(2.0 / fan_in)
        ins = [x, self.const("W", w)]
        if bias:
            ins.append(self.const("B", self.rng.normal(0, 0.1, cout)))
        return self.op("Conv", ins, ch=cout, kernel_shape=[kh, kw], strides=_pair(stride),
                       dilations=_pair(dilation), pads=pads, group=group)

    def conv_transpose(self, x: str, cout: int, k: int, stride: int, pad: int, bias=False) -> str:
        cin = self.ch[x]
        # each output pixel sums k*k/stride**2 taps of cin channels on average
        w = self.rng.standard_normal((cin, cout, k, k)) * np.sqrt(2.0 * stride ** 2 / (cin * k * k))
        ins = [x, self.const("W", w)]
        if bias:
            ins.append(self.const("B", self.rng.normal(0, 0.1, cout)))
        return self.op("ConvTranspose", ins, ch=cout, kernel_shape=[k, k], strides=[stride, stride],
                       pads=[pad] * 4)

    def bn(self, x: str) -> str:
        c = self.ch[x]
        gamma = self.rng.lognormal(0.0, 0.3, c)
        big = self.rng.random(c) < 0.125
        gamma[big] *= self.rng.uniform(4.0, 8.0, big.sum())
        gamma /= np.sqrt(np.mean(gamma ** 2))
        beta = self.rng.normal(0.0, 0.2, c)
        mean, var = np.zeros(c), np.ones(c)   # placeholders: model() fits them to the data
        ins = [x] + [self.const(n, v) for n, v in
                     (("bn_gamma", gamma), ("bn_beta", beta), ("bn_mean", mean), ("bn_var", var))]
        y = self.op("BatchNormalization", ins, epsilon=1e-5)
        self._bn_stats.append((y, ins[3], ins[4]))
        return y

    def gemm(self, x: str, k: int, m: int) -> str:
        """Fully connected as torch exports ``nn.Linear``: Gemm with transB=1."""
        w = self.rng.standard_normal((m, k)) * np.sqrt(1.0 / k)
        return self.op("Gemm", [x, self.const("fc_W", w), self.const("fc_B", self.rng.normal(0, 0.1, m))],
                       ch=m, alpha=1.0, beta=1.0, transB=1)

    def concat(self, xs: list[str], axis: int = 1) -> str:
        return self.op("Concat", xs, ch=sum(self.ch[x] for x in xs), axis=axis)

    # ---- activations, in exported forms -------------------------------------------
    def relu(self, x: str) -> str:
        return self.op("Relu", [x])

    def clip(self, x: str, lo: float, hi: float) -> str:
        return self.op("Clip", [x, self.const("clip_min", lo), self.const("clip_max", hi)])

    def relu6(self, x: str) -> str:
        return self.clip(x, 0.0, 6.0)

    def leaky(self, x: str, alpha: float = 0.1) -> str:
        return self.op("LeakyRelu", [x], alpha=alpha)

    def silu(self, x: str) -> str:
        """SiLU as exported: ``x * Sigmoid(x)``."""
        return self.op("Mul", [x, self.op("Sigmoid", [x])])

    def hsigmoid_decomposed(self, x: str, div: bool = True) -> str:
        """``Clip(x + 3, 0, 6) / 6`` (``div=False``: ``* (1/6)``, as Paddle writes it)."""
        r6 = self.relu6(self.op("Add", [x, self.const("three", 3.0)]))
        if div:
            return self.op("Div", [r6, self.const("six", 6.0)])
        return self.op("Mul", [r6, self.const("sixth", 1.0 / 6.0)])

    def hswish_decomposed(self, x: str) -> str:
        """``x * Clip(x + 3, 0, 6) / 6`` as the TorchScript exporter wrote it before HardSwish."""
        r6 = self.relu6(self.op("Add", [x, self.const("three", 3.0)]))
        return self.op("Div", [self.op("Mul", [x, r6]), self.const("six", 6.0)])

    def hsigmoid(self, x: str) -> str:
        return self.op("HardSigmoid", [x], alpha=1.0 / 6.0, beta=0.5)

    def hswish(self, x: str) -> str:
        assert self.opset >= 14, "HardSwish needs opset 14"
        return self.op("HardSwish", [x])

    # ---- shape plumbing --------------------------------------------------------
    def flatten(self, x: str) -> str:
        return self.op("Flatten", [x], axis=1)

    def torch_flatten(self, x: str) -> str:
        """``x.view(x.size(0), -1)`` as exported: the batch size is read at run time."""
        shape = self.op("Shape", [x], ch=0)
        n = self.op("Gather", [shape, self.const("idx0", 0, np.int64)], ch=0, axis=0)
        n1 = self.unsqueeze0(n)
        target = self.op("Concat", [n1, self.const("minus1", [-1], np.int64)], ch=0, axis=0)
        return self.op("Reshape", [x, target], ch=self.ch[x])

    def unsqueeze0(self, x: str) -> str:
        if self.opset >= 13:
            return self.op("Unsqueeze", [x, self.const("axes0", [0], np.int64)], ch=0)
        return self.op("Unsqueeze", [x], ch=0, axes=[0])

    def reshape(self, x: str, shape, ch: int | None = None) -> str:
        return self.op("Reshape", [x, self.const("shape", shape, np.int64)], ch=ch)

    def resize(self, x: str, scale: float, mode: str, coord: str, nearest_mode: str = "floor") -> str:
        """Resize by ``scale`` in H and W with a ``scales`` input (opset 11+ form)."""
        roi = self.const("roi", [], np.float32) if self.opset < 13 else ""
        scales = self.const("scales", [1.0, 1.0, scale, scale])
        attrs = dict(mode=mode, coordinate_transformation_mode=coord)
        if mode == "nearest":
            attrs["nearest_mode"] = nearest_mode
        return self.op("Resize", [x, roi, scales], **attrs)

    # ---- output --------------------------------------------------------------------
    def model(self, outputs: list[str]) -> onnx.ModelProto:
        """The finished model; output types and shapes come from ONNX shape inference."""
        graph = helper.make_graph(self.nodes, self.name, [self.input],
                                  [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
                                  initializer=self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                              producer_name="qdeploy.corpus", ir_version=8)
        inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
        del m.graph.output[:]
        m.graph.output.extend(inferred.graph.output)
        if self._bn_stats:
            self._fit_bn_stats(m)
        return m

    def _fit_bn_stats(self, m: onnx.ModelProto) -> None:
        """Replace every BN's running mean/var by its input's statistics on
        ``PROBE_RUNS`` seeded standard-normal inputs (BN in training mode,
        momentum 0: each run normalises with its own batch statistics)."""
        import onnxruntime as ort
        probe = onnx.ModelProto()
        probe.CopyFrom(m)
        probe.opset_import[0].version = max(14, self.opset)   # training_mode needs opset 14
        stats = []
        for node in probe.graph.node:
            if node.op_type == "BatchNormalization":
                node.output.extend([node.output[0] + "_mean", node.output[0] + "_var"])
                node.attribute.extend([helper.make_attribute("training_mode", 1),
                                       helper.make_attribute("momentum", 0.0)])
                stats += [node.output[1], node.output[2]]
        probe.graph.output.extend(helper.make_tensor_value_info(s, TensorProto.FLOAT, None) for s in stats)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
        shape = [d if isinstance(d, int) else 1 for d in _dims(self.input)]
        # several batch-1 runs pooled: late 2x2 maps give too few samples in one
        runs = [dict(zip(stats, sess.run(stats, {self.input.name: self.rng.standard_normal(shape)
                                                 .astype(np.float32)})))
                for _ in range(PROBE_RUNS)]
        inits = {t.name: t for t in m.graph.initializer}
        for y, mean_name, var_name in self._bn_stats:
            means = np.array([r[y + "_mean"] for r in runs], np.float64)
            second = np.array([r[y + "_var"] for r in runs], np.float64) + means ** 2
            mean = means.mean(0)
            var = second.mean(0) - mean ** 2
            var = np.maximum(var, 0.05 * max(float(np.median(var)), 1e-6))   # dead channels stay tame
            mean = mean + self.rng.normal(0.0, 0.1, mean.shape) * np.sqrt(var)
            var = var * self.rng.lognormal(0.0, 0.2, var.shape)
            for name, v in ((mean_name, mean), (var_name, var)):
                v = v.astype(np.float16).astype(np.float32)
                inits[name].CopyFrom(numpy_helper.from_array(v, name))


def _dims(vi: onnx.ValueInfoProto) -> list:
    return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]


def _pair(v) -> list[int]:
    return [v, v] if isinstance(v, int) else list(v)
