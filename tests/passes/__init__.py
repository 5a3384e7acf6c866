"""One test module per graph pass (helpers: ``tests/passes/build.py``)."""
