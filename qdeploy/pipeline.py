"""The main job, end to end: ``qdeploy quantize`` as a Python function.

    model.onnx -> import -> passes [-> CLE] -> calibrate -> quantize [-> bias correction]
               -> OUT/ (model.qgraph, model.float.onnx, ranges.json, manifest.json)

``OUT`` is built in a temporary sibling folder and moved into place only when
everything succeeded (no partial output); the input model is only read.
Identical inputs and options give byte-identical files (the manifest records
inputs' sha256 and versions, never times or absolute paths).

Files in OUT (the emitters add their artefacts beside them):

- ``model.qgraph``      the quantized graph: every integer (see ``qdeploy/quant/qgraph.py``)
- ``model.float.onnx``  the pass-processed float graph (rung 1 of the verification ladder;
                        ``qdeploy run --backend float``)
- ``ranges.json``       the calibration result (reusable with ``--ranges``)
- ``manifest.json``     inputs' sha256, options, versions, artefact sizes
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .errors import QDeployError
from .fsutil import atomic_dir, dumps_json, write_bytes
from .ir import Graph
from .onnx_export import export_bytes
from .onnx_import import import_onnx
from .passes import run_passes

QGRAPH, FLOAT, RANGES, MANIFEST = "model.qgraph", "model.float.onnx", "ranges.json", "manifest.json"


@dataclass
class QuantizeOptions:
    target: str = "arm"
    calib: str | None = None          # SET.npz, an image folder, or None: the bundled calib/ photos
    ranges: str | None = None         # a ranges.json to reuse instead of calibrating
    method: str = "minmax"            # minmax | percentile | entropy | mse
    per_tensor: bool = False
    preset: str = "imagenet"          # preprocessing of images (folder or bundled calib/)
    input_shape: tuple | dict | None = None
    # None = automatic: cross-layer equalization when the weights are per-tensor (per-channel
    # weight scales already absorb the channel imbalance CLE fixes); bias correction always
    cle: bool | None = None           # cross-layer equalization (float graph, re-calibrated after)
    bias_correction: bool | None = None   # empirical bias correction (after quantization)
    batch_size: int = 8
    limit: int | None = None          # at most this many calibration samples
    progress: bool = True


@dataclass
class QuantizeResult:
    out: Path
    graph: Graph                       # the float graph that was quantized
    qgraph: object                     # QGraph
    ranges: object                     # calibration Ranges
    calib_x: np.ndarray
    log: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def prepare_float(model, input_shape=None) -> Graph:
    """Import and run the pass pipeline."""
    return run_passes(import_onnx(model, input_shape), copy=False)


def calibration_samples(g: Graph, calib: str | None, preset: str = "imagenet",
                        limit: int | None = None, on_warning=None) -> tuple[np.ndarray, dict | None]:
    """The calibration tensor for the graph's (single) input, and its recipe:
    a saved set (``.npz``) checked against the input, a folder of images, or
    the bundled ``calib/`` photographs preprocessed for the input's shape."""
    from .calibration.dataset import build_set, check_against_model, images_for_model, load_set
    if len(g.inputs) != 1:
        raise QDeployError(f"model '{g.name}' has {len(g.inputs)} inputs; qdeploy quantizes "
                           "single-input models")
    inp = g.inputs[0]
    shape = g.shape(inp)
    if calib is not None and Path(calib).suffix.lower() in (".npz", ".npy") and Path(calib).is_file():
        if _is_calib_set(calib):
            cs = load_set(calib)
        else:   # plain tensors (non-image models, or data preprocessed elsewhere)
            cs = build_set([calib], on_warning=on_warning)
        check_against_model(cs, shape, inp)
    elif calib is not None and not Path(calib).exists():
        raise QDeployError(f"--calib {calib}: no such file or folder; give a set made by "
                           "'qdeploy calib build' (.npz) or a folder of images")
    else:
        cs = images_for_model(None if calib is None else calib, shape, preset=preset, name=inp,
                              on_warning=on_warning)
    x = cs.x
    if limit is not None:
        x = x[:limit]
    return np.ascontiguousarray(x, np.float32), cs.recipe


def _is_calib_set(path) -> bool:
    if Path(path).suffix.lower() != ".npz":
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            return "recipe" in z.files
    except Exception:
        return False   # load_set reports unreadable files with a clear message


def quantize_model(model, out, opts: QuantizeOptions | None = None) -> QuantizeResult:
    """Quantize ``model`` (an ONNX path) for ``opts.target`` into the folder ``out``."""
    from .calibration.calibrate import calibrate
    from .calibration.ranges import load_ranges, save_ranges
    from .quant.qgraph import qgraph_bytes
    from .quant.quantizer import quantize_graph
    from .quant.targets import load_target

    opts = opts or QuantizeOptions()
    model = Path(model)
    target = load_target(opts.target)
    g = prepare_float(model, opts.input_shape)
    x, recipe = calibration_samples(g, opts.calib, opts.preset, opts.limit)
    per_tensor = opts.per_tensor or not target.numerics.weight_per_channel
    cle = per_tensor if opts.cle is None else opts.cle
    if cle and opts.ranges:
        raise QDeployError("--ranges cannot be combined with --cle: equalization changes the "
                           "activation ranges (drop --ranges, or pass --no-cle)")
    if cle:
        # CLE needs the observed maxima of ReLU6 outputs (see quant/cle.py), then the
        # equalized graph is calibrated again: its activation ranges changed
        from .quant.cle import equalize
        first = calibrate(g, x, method="minmax", batch_size=opts.batch_size, progress=False)
        for msg in equalize(g, first):
            g.log.append(("cle", msg))
    if opts.ranges:
        ranges = load_ranges(opts.ranges, g)
    else:
        ranges = calibrate(g, x, method=opts.method, batch_size=opts.batch_size,
                           progress=opts.progress, recipe=recipe)
    range_dict = {t: ranges.range(t) for t in ranges.names()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qg = quantize_graph(g, range_dict, target, per_tensor=per_tensor)
        if opts.bias_correction is None or opts.bias_correction:
            from .quant.bias_correction import correct_bias
            for msg in correct_bias(g, qg, x):
                g.log.append(("bias_correction", msg))
    warn = [str(w.message) for w in caught]

    files = {QGRAPH: qgraph_bytes(qg), FLOAT: export_bytes(g)}
    from .fsutil import dumps_json as _dj
    files[RANGES] = _dj(ranges.to_dict()).encode()
    manifest = {
        "format": "qdeploy-manifest", "version": 1, "qdeploy": __version__,
        "model": {"file": model.name, "sha256": _sha256(model.read_bytes())},
        "calibration": {"source": "bundled calib/" if opts.calib is None else Path(opts.calib).name,
                        "sha256": None if opts.calib is None or not Path(opts.calib).is_file()
                        else _sha256(Path(opts.calib).read_bytes()),
                        "samples": int(len(x)), "method": ranges.method,
                        "ranges_file": None if not opts.ranges else Path(opts.ranges).name},
        "target": target.summary(),
        "options": {**{k: v for k, v in asdict(opts).items() if k not in ("calib", "ranges", "progress")},
                    "cle": cle, "per_tensor": per_tensor},
        "versions": _versions(),
        "passes": [f"{p}: {m}" for p, m in g.log],
        "warnings": warn,
        "artefacts": {name: {"bytes": len(data), "sha256": _sha256(data)} for name, data in sorted(files.items())},
    }
    files[MANIFEST] = dumps_json(manifest).encode()
    with atomic_dir(out) as tmp:
        for name, data in files.items():
            write_bytes(tmp / name, data)
    return QuantizeResult(Path(out), g, qg, ranges, x, list(g.log), warn)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _versions() -> dict:
    import onnx
    import onnxruntime
    return {"numpy": np.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


# ---------------------------------------------------------------- run
BACKENDS = ("float", "ref")


def run_artifact(out, backend: str, x: np.ndarray | dict) -> dict[str, np.ndarray]:
    """Run the artefact of ``backend`` in ``out`` on a batch of inputs (N
    samples of a batch-1 model along the first axis, in the model's own layout);
    returns the outputs by name, stacked the same way."""
    out = Path(out)
    if not (out / MANIFEST).is_file():
        raise QDeployError(f"{out}: not a qdeploy output folder (no {MANIFEST}); make one with "
                           "'qdeploy quantize MODEL -o OUT'")
    if backend == "float":
        import onnx
        from .float_run import session
        g = import_onnx(onnx.load(str(out / FLOAT)), name="model")
        inputs = _as_inputs(g.inputs, x)
        sess = session(g)
        n = _batch(inputs)
        res = [sess.run(list(g.outputs), {k: v[i:i + 1] for k, v in inputs.items()}) for i in range(n)]
        return {o: np.concatenate([r[j] for r in res]) for j, o in enumerate(g.outputs)}
    if backend == "ref":
        from .quant.interpreter import run
        from .quant.qgraph import load_qgraph
        qg = load_qgraph(out / QGRAPH)
        return run(qg, _as_inputs(qg.inputs, x))
    raise QDeployError(f"backend '{backend}' is not available in this build; choose from "
                       f"{', '.join(BACKENDS)}")


def _as_inputs(names, x) -> dict[str, np.ndarray]:
    if isinstance(x, dict):
        missing = [n for n in names if n not in x]
        if missing:
            raise QDeployError(f"input file lacks the model input(s) {missing}")
        return {n: np.asarray(x[n], np.float32) for n in names}
    if len(names) != 1:
        raise QDeployError(f"the model has {len(names)} inputs; give them as an .npz with arrays "
                           f"named {names}")
    return {names[0]: np.asarray(x, np.float32)}


def _batch(inputs: dict[str, np.ndarray]) -> int:
    sizes = {len(v) for v in inputs.values()}
    if len(sizes) != 1:
        raise QDeployError("the inputs have different batch sizes")
    return sizes.pop()
