"""Quantization: the quantizer (float Graph + ranges + target -> QGraph), its
arithmetic (``scales``, ``fixedpoint``, ``recipes``), the QGraph format, the
integer reference interpreter, and the accuracy tools (CLE, bias correction,
error metrics)."""
