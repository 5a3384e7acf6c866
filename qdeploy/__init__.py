"""qdeploy: post-training INT8 quantization and deployment of CNNs.

Python API (everything the command line does):

- :func:`qdeploy.onnx_import.import_onnx` — ONNX file -> float :class:`qdeploy.ir.Graph`
- :func:`qdeploy.passes.run_passes` — the ordered graph-pass pipeline
- :func:`qdeploy.onnx_export.export_onnx` — Graph -> float ONNX (for checks)
- :func:`qdeploy.inspect.inspect_model` — the ``qdeploy inspect`` analysis
"""
__version__ = "0.1.0"
