#!/usr/bin/env bash
# Installs qdeploy (editable) with its test extras, and whatever the tests need from apt.
# Idempotent: quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
"$PY" -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 | grep -v "WARNING: Location\|Running pip as the 'root'" || true
"$PY" -c "import qdeploy, onnxruntime, hypothesis" 
