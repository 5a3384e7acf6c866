#!/usr/bin/env bash
# Installs qdeploy (editable) with its test extras, and whatever the tests need from apt.
# Idempotent: quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
"$PY" -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 | grep -v "WARNING: Location\|Running pip as the 'root'" || true
# torch is the independent reference of some tests (MACs, receptive fields). Installed by its
# exact version: on these machines that takes the local CPU wheel, not the registry's CUDA build.
"$PY" -c "import torch" 2>/dev/null || "$PY" -m pip install -q --disable-pip-version-check torch==2.13.0 2>&1 \
  | grep -v "WARNING: Location\|Running pip as the 'root'" || true
"$PY" -c "import qdeploy, onnxruntime, hypothesis, torch"
