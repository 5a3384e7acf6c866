"""Tests of the emitters and what they share (arena planning, firmware builds)."""
