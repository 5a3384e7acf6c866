#!/usr/bin/env bash
# The main job on the bundled examples, on a fresh machine: install qdeploy, then
# inspect and quantize the example MobileNetV3-small with the bundled calib/ photographs,
# and quantize the digits CNN (trained on real data) and measure its accuracy drop.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check -e . 2>&1 | grep -v "WARNING: Location\|Running pip as the 'root'" || true
set -x
qdeploy targets
qdeploy inspect examples/mobilenet_v3_small.onnx --target arm
qdeploy quantize examples/mobilenet_v3_small.onnx --target arm -o out/mobilenet_v3_small
qdeploy quantize examples/digits/digits_cnn.onnx --target arm --calib examples/digits/calib.npz --eval examples/digits/eval.npz -o out/digits
python3 examples/digits/evaluate.py out/digits
