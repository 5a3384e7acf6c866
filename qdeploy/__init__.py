"""qdeploy: post-training INT8 quantization and deployment of CNNs.

The two calls most users need (the command line's ``quantize`` and ``run``):

- :func:`quantize` — ``qdeploy quantize``: ONNX -> verified int8 artefacts + report in OUT
- :func:`run` — ``qdeploy run``: run one backend of an OUT folder on a batch of inputs

The stages, each a documented function:

- :func:`qdeploy.onnx_import.import_onnx` — ONNX file -> float :class:`qdeploy.ir.Graph`
- :func:`qdeploy.passes.run_passes` — the ordered graph-pass pipeline
- :func:`qdeploy.onnx_export.export_onnx` — Graph -> float ONNX (for checks)
- :func:`qdeploy.inspect.inspect_model` — the ``qdeploy inspect`` analysis

Imports are lazy: ``import qdeploy`` loads nothing heavy.
"""
__version__ = "0.1.0"


def quantize(model, target: str = "arm", calib=None, out=None, **options):
    """Quantize the ONNX file ``model`` for ``target`` into the folder ``out`` (default
    ``<model stem>_<target>/`` in the current folder), verify every emitted artefact
    and write the report, exactly as ``qdeploy quantize`` does. ``options`` are
    :class:`qdeploy.pipeline.QuantizeOptions` fields (``method``, ``eval``, ``labels``,
    ``emit``, ``verify``, ``max_drop``, ...). Returns a
    :class:`qdeploy.pipeline.QuantizeResult`: ``.out``, ``.artefacts`` (name -> path),
    ``.report`` (report.json's dict: ``["verdict"]``, ``["metrics"]``, ...)."""
    from pathlib import Path

    from .pipeline import QuantizeOptions, quantize_model
    if out is None:
        name = Path(target).stem if str(target).endswith(".toml") else target
        out = f"{Path(model).stem}_{name}"
    opts = QuantizeOptions(target=target, calib=None if calib is None else str(calib),
                           **{"verify": True, "report": True, "progress": False, **options})
    return quantize_model(model, out, opts)


def run(out, x, backend: str = "ref"):
    """Run ``backend`` (``float``, ``ref``, or an emitted artefact's: ``qdq``, ``tflite``,
    ``tflm``, ``c``) of the quantize folder ``out`` on ``x`` (N samples along axis 0,
    the model's own layout; an array or a dict by input name); returns the outputs
    by name, stacked the same way (``qdeploy run``)."""
    from .pipeline import run_artifact
    return run_artifact(out, backend, x)
