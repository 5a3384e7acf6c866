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
exec python3 -m pytest -q "$@"
