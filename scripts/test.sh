#!/usr/bin/env bash
# The one test command: set up (idempotent), then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-dev.sh
# real pre-trained models for the tests that use them (skipped cleanly when unavailable)
if [ -z "${QDEPLOY_REALMODELS:-}" ] && [ -f ../shared/realmodels/get.sh ] && [ ! -f .cache/realmodels/ppocr_v5_cls.onnx ]; then
  timeout 600 bash ../shared/realmodels/get.sh .cache/realmodels >/dev/null 2>&1 || echo "real models unavailable: their tests will skip"
fi
export QDEPLOY_REALMODELS="${QDEPLOY_REALMODELS:-$PWD/.cache/realmodels}"
# tflite-runtime 2.14 needs numpy<2: its own cached venv, for tests/emit/test_tflite_runtime.py
VENV_TRT=.cache/venv-tflite-runtime
if [ -z "${QDEPLOY_TFLITE_RUNTIME_PYTHON:-}" ]; then
  if ! "$VENV_TRT/bin/python" -c "import tflite_runtime.interpreter" 2>/dev/null; then
    { python3 -m venv "$VENV_TRT" && "$VENV_TRT/bin/pip" install -q --disable-pip-version-check "numpy<2" \
        "tflite-runtime==2.14.0"; } >/dev/null 2>&1 || echo "tflite-runtime venv unavailable: its test will skip"
  fi
  if "$VENV_TRT/bin/python" -c "import tflite_runtime.interpreter" 2>/dev/null; then
    export QDEPLOY_TFLITE_RUNTIME_PYTHON="$PWD/$VENV_TRT/bin/python"
  fi
fi
exec python3 -m pytest -q "$@"
