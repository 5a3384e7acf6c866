"""pytest fixtures: ``realmodels``, the folder of the real pre-trained ONNX models
(the test is skipped when they are unavailable).

In CI (``CI=true``) a skip is a failure: every runtime the tests judge with (TFLite
Micro, LiteRT, tflite-runtime's venv, gcc/clang, arm-none-eabi + QEMU, chromium, the
real models) is installed by scripts/test.sh, so a skip there means a missing install
step, not an optional extra."""
import os

import pytest

from tests.helpers import realmodels_dir

IN_CI = os.environ.get("CI") == "true"


def _skip_fails(report) -> None:
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (CI=true), which counts as a failure: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _skip_fails(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _skip_fails(outcome.get_result())


@pytest.fixture
def realmodels():
    d = realmodels_dir()
    if d is None:
        pytest.skip("real models unavailable (run ../shared/realmodels/get.sh .cache/realmodels)")
    return d
