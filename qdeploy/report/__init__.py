"""Verification and the accuracy-drop report of a quantize OUT folder.

One idea per module:

- :mod:`.evalset`   the evaluation samples: ``--eval SET [--labels L]`` or a seeded
                    held-out split of the calibration samples
- :mod:`.verify`    every emitted artefact's backends against the reference
                    interpreter, on each output's int8 grid
- :mod:`.measure`   metrics against the user's original ONNX on onnxruntime
                    (per output, per backend) and per-layer SQNR
- :mod:`.advice`    quantize options that address what the measurements show
- :mod:`.build`     report.json (the numbers, versioned keys)
- :mod:`.html`      report.html (jinja2 template + matplotlib plots, one file)
- :mod:`.summary`   the one-screen terminal summary
"""
