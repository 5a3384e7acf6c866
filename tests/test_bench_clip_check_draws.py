"""bench/clip_check_draws.py: its rules read the check's recorded copies as the check does."""
import importlib.util
import sys
from pathlib import Path

import pytest

from qdeploy.calibration import clip_check as CC

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
_spec = importlib.util.spec_from_file_location("bench_clip_check_draws", ROOT / "bench" / "clip_check_draws.py")
ccd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ccd)

H = [20.0, 20.0, 20.0]


@pytest.mark.parametrize("copies, picked", [
    # margin only, 1 s.e. (the check), 2 s.e., percentile only with 1 s.e.
    ({"heavy": H, "all": [20.6, 20.5, 20.7]}, ["all", "all", "all", "all"]),            # every copy agrees
    ({"heavy": H, "all": [23.0, 19.0, 19.5]}, ["all", "heavy", "heavy", "heavy"]),      # one copy makes the mean
    ({"heavy": H, "all": [21.5, 20.0, 20.5]}, ["all", "all", "heavy", "all"]),          # +0.67, s.e. 0.44
    ({"heavy": H, "all": [20.2, 20.2, 20.2]}, ["heavy"] * 4),                           # below the margin
    ({"heavy": H, "all": [20.6, 20.5, 20.7], "entropy": [21.5, 21.4, 21.6]},
     ["entropy", "entropy", "entropy", "all"]),                                          # the larger gain
    ({"heavy": H, "all": [19.0] * 3, "entropy": [21.5, 20.0, 20.5]},
     ["entropy", "entropy", "heavy", "heavy"]),
])
def test_rules_read_the_recorded_copies(copies, picked):
    check = {"copies_db": copies}
    assert [ccd.picks(check, k, only) for k, only in ccd.RULES.values()] == picked
    # the check's own rule is the second: the same choice calibration/clip_check.py makes
    assert list(ccd.RULES.values())[1] == (CC.SE_FACTOR, None)
    assert ccd.picks(check, CC.SE_FACTOR) == CC.choose(copies)[0]
