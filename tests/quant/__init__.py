"""Quantizer, recipes, interpreter and accuracy-tool tests (one-op pipeline:
``tests/quant/oneop.py``; TFLite Micro judge: ``tests/quant/tflite_oneop.py``)."""
