"""bench/clip_check_draws.py: its rules read the check's recorded copies as the check does."""
import pytest

from qdeploy.calibration import clip_check as CC
from tests.helpers import bench_module

ccd = bench_module("clip_check_draws")

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


def test_copy_rules_ship_the_copy_best_on_calibration():
    """--copies: the rules that ship copy 0 of the choice or its copy best on calibration,
    at other margins, summed against tailclip's own ranges (copy 0 of heavy)."""
    rows = [
        # all passes every margin: +0.6 on calibration; its copy 2 scored best there
        {"check": {"copies_db": {"heavy": H, "all": [20.6, 20.5, 20.7]}},
         "eval": {"heavy": 10.0, "all": 11.0}, "eval_copies": {"heavy": [10.0, 9.0, 9.5], "all": [11.0, 10.5, 12.0]}},
        # +0.2 with a small s.e.: only margins below 0.2 take it
        {"check": {"copies_db": {"heavy": H, "all": [20.21, 20.22, 20.23]}},
         "eval": {"heavy": 5.0, "all": 6.0}, "eval_copies": {"heavy": [5.0, 7.0, 4.0], "all": [6.0, 5.5, 4.0]}},
    ]
    assert ccd.best_copy(rows[0]["check"], "all") == 2 and ccd.best_copy(rows[1]["check"], "heavy") in (0, 1, 2)
    assert ccd.picks_margin(rows[1]["check"], 1.0, 0.25) == "heavy" == CC.choose(rows[1]["check"]["copies_db"])[0]
    assert ccd.picks_margin(rows[1]["check"], 1.0, 0.1) == "all"
    assert CC.MARGIN_DB == 0.25    # restored
    table = ccd.copy_rules(rows).splitlines()
    margin = {ln.split("|")[1].strip(): ln.split("|")[2:5] for ln in table if ln.startswith("| margin")}
    # 0.25: row 0 takes all (+1.0 with copy 0, +2.0 with its best copy), row 1 keeps heavy (its copies tie: copy 0)
    assert [c.strip() for c in margin["margin 0.25"]] == ["1 of 2", "+1.00", "+2.00"]
    # 0.1: row 1 takes all too: copy 0 +1.0; its best copy on calibration is copy 2 (20.23): -1.0
    assert [c.strip() for c in margin["margin 0.1"]] == ["2 of 2", "+2.00", "+1.00"]
