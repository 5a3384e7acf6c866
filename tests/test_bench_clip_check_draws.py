"""bench/clip_check_draws.py: its rules read the check's recorded copies as the check does."""
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
_spec = importlib.util.spec_from_file_location("bench_clip_check_draws", ROOT / "bench" / "clip_check_draws.py")
ccd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ccd)


@pytest.mark.parametrize("copies, margin_only, one_se, two_se", [
    ({"heavy": [20.0, 20.0, 20.0], "all": [20.6, 20.5, 20.7]}, True, True, True),    # every copy agrees
    ({"heavy": [20.0, 20.0, 20.0], "all": [23.0, 19.0, 19.5]}, True, False, False),  # one copy makes the mean
    ({"heavy": [20.0, 20.0, 20.0], "all": [21.5, 20.0, 20.5]}, True, True, False),   # +0.67, s.e. 0.44
    ({"heavy": [20.0, 20.0, 20.0], "all": [20.2, 20.2, 20.2]}, False, False, False),  # below the margin
])
def test_rules_read_the_recorded_copies(copies, margin_only, one_se, two_se):
    check = {"copies_db": copies}
    assert [ccd.picks(check, k) for k in ccd.RULES.values()] == [margin_only, one_se, two_se]
    assert list(ccd.RULES.values())[1] == __import__("qdeploy.calibration.clip_check", fromlist=["x"]).SE_FACTOR
