"""Calibration: sets of preprocessed samples (``dataset``, ``recipe``, ``images``,
``sources``, ``set_stats``), the streaming calibrator (``calibrate``, ``observers``)
and its result, ``ranges.json`` (``ranges``)."""
