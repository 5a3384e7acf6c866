"""qdeploy's tests (shared helpers: ``tests/helpers.py``)."""
