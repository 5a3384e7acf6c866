"""pytest fixtures: ``realmodels``, the folder of the real pre-trained ONNX models
(the test is skipped when they are unavailable)."""
import pytest

from tests.helpers import realmodels_dir


@pytest.fixture
def realmodels():
    d = realmodels_dir()
    if d is None:
        pytest.skip("real models unavailable (run ../shared/realmodels/get.sh .cache/realmodels)")
    return d
