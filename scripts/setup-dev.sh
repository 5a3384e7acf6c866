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
# apt: the C bundle's compilers and the Cortex-M toolchain + QEMU (tests/emit/, examples/firmware/),
# headless Chromium (tests/report/test_report_html.py renders report.html).
# Only what is missing is installed; `apt-get update` once, waiting for another apt's lock.
APT_PKGS="make cmake gcc clang valgrind gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm chromium"
missing=""
for p in $APT_PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get -o DPkg::Lock::Timeout=900 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends $missing
fi
"$PY" -c "import qdeploy, onnxruntime, hypothesis, torch"
command -v make cmake gcc clang valgrind arm-none-eabi-gcc qemu-system-arm chromium >/dev/null
