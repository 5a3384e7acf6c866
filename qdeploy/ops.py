"""The op table: which ONNX ops qdeploy knows, and what each one is.

This is the single place that says which ops exist for qdeploy. The importer
refuses (all at once, with node names) any op that is not a key of ``OPS``;
later stages keep their own per-op handler tables keyed by the same names
(``qdeploy/quant/`` for quantization and the reference interpreter), and the
error for an op a target cannot run is built from those tables.

``kind`` groups ops for analysis (MACs, receptive field, deploy advice):
  conv, fc, eltwise, act, pool, shape, norm, reduce, other
``cnn`` is False for ops outside the INT8 CNN scope: they import, export and
run in float (so ``inspect`` works on the whole model), but no target
quantizes them.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OpInfo:
    kind: str
    cnn: bool = True
    note: str = ""


_HOST = "element-wise math outside the int8 CNN op set; keep this part of the model on the host in float"

OPS: dict[str, OpInfo] = {
    # compute
    "Conv": OpInfo("conv"),
    "ConvTranspose": OpInfo("conv"),
    "Gemm": OpInfo("fc"),
    "MatMul": OpInfo("fc", cnn=False, note="MatMul of two activations (attention) is outside the CNN scope"),
    "BatchNormalization": OpInfo("norm", note="folded into the preceding conv by the fold_bn pass"),
    # element-wise
    "Add": OpInfo("eltwise"),
    "Sub": OpInfo("eltwise"),
    "Mul": OpInfo("eltwise"),
    "Div": OpInfo("eltwise"),
    "Max": OpInfo("eltwise"),
    "Min": OpInfo("eltwise"),
    # activations
    "Relu": OpInfo("act"),
    "Clip": OpInfo("act"),
    "LeakyRelu": OpInfo("act"),
    "PRelu": OpInfo("act"),
    "Sigmoid": OpInfo("act"),
    "HardSigmoid": OpInfo("act"),
    "HardSwish": OpInfo("act"),
    "SiLU": OpInfo("act", note="x*sigmoid(x), recognised by the recognize_activation pass"),
    "Tanh": OpInfo("act"),
    "Softmax": OpInfo("act"),
    "Elu": OpInfo("act", cnn=False, note="replace with ReLU/ReLU6 or leaky ReLU for int8 targets"),
    "Selu": OpInfo("act", cnn=False, note="replace with ReLU/ReLU6 or leaky ReLU for int8 targets"),
    "Softplus": OpInfo("act", cnn=False, note="replace with ReLU for int8 targets"),
    "Mish": OpInfo("act", cnn=False, note="replace with SiLU or h-swish for int8 targets"),
    "Gelu": OpInfo("act", cnn=False, note="replace with SiLU or h-swish for int8 targets"),
    "Exp": OpInfo("act", cnn=False, note=_HOST), "Log": OpInfo("act", cnn=False, note=_HOST),
    "Sqrt": OpInfo("act", cnn=False, note=_HOST), "Pow": OpInfo("act", cnn=False, note=_HOST),
    "Erf": OpInfo("act", cnn=False, note=_HOST), "Neg": OpInfo("act", cnn=False, note=_HOST),
    "Abs": OpInfo("act", cnn=False, note=_HOST), "Reciprocal": OpInfo("act", cnn=False, note=_HOST),
    # pooling / reductions
    "MaxPool": OpInfo("pool"),
    "AveragePool": OpInfo("pool"),
    "GlobalAveragePool": OpInfo("pool"),
    "GlobalMaxPool": OpInfo("pool"),
    "ReduceMean": OpInfo("reduce"),
    "ReduceMax": OpInfo("reduce", cnn=False, note=_HOST), "ReduceSum": OpInfo("reduce", cnn=False, note=_HOST),
    "LRN": OpInfo("norm", cnn=False, note="retrain without local response normalisation (BatchNorm folds away)"),
    "InstanceNormalization": OpInfo("norm", cnn=False, note="use BatchNorm (it folds into the conv) or run it on the host"),
    "LayerNormalization": OpInfo("norm", cnn=False, note="use BatchNorm (it folds into the conv) or run it on the host"),
    # data movement
    "Concat": OpInfo("shape"),
    "Split": OpInfo("shape"),
    "Slice": OpInfo("shape"),
    "Reshape": OpInfo("shape"),
    "Transpose": OpInfo("shape"),
    "Pad": OpInfo("shape"),
    "Resize": OpInfo("shape"),
    "DepthToSpace": OpInfo("shape"),
    "SpaceToDepth": OpInfo("shape"),
    "Gather": OpInfo("shape", cnn=False, note="Gather on activations has no int8 CNN kernel here"),
    "Cast": OpInfo("other", cnn=False, note="a Cast on activations has no meaning in an int8 graph; remove it from the export"),
    "DeformConv": OpInfo("conv", cnn=False, note="deformable convolution is only well optimised on GPUs: replace it with a plain Conv for embedded targets"),
}

# ops the importer removes or folds away; they are never in an imported Graph
IMPORT_ONLY = {"Identity", "Dropout", "Constant", "ConstantOfShape", "Shape", "Flatten",
               "Squeeze", "Unsqueeze", "Sum", "Upsample", "Range", "Expand", "Equal",
               "Where", "Floor", "Ceil", "Size", "Not", "NonZero"}

# ops that keep one scale from input to output under int8 (the spec ties them)
SCALE_PRESERVING = {"MaxPool", "GlobalMaxPool", "Reshape", "Transpose", "Pad", "Slice",
                    "Split", "DepthToSpace", "SpaceToDepth", "Concat"}
