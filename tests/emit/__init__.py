"""Tests of the emitters and what they share (arena planning, firmware builds). TFLite:
``tests/emit/tflite_judge.py`` runs QGraphs and single QGraph nodes as TFLite files on TFLite
Micro (bit-exact judge) and LiteRT."""
