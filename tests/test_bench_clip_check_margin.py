"""bench/clip_check_margin.py: the choice at each margin, read from recorded copies as the check reads them."""
from qdeploy.calibration import clip_check as CC
from tests.helpers import bench_module

ccm = bench_module("clip_check_margin")


def test_choices_per_margin():
    h = [20.0, 20.0, 20.0]
    # +0.22 with a small standard error: taken from margin 0.2 down; the check (0.25) keeps heavy
    assert ccm.choices({"heavy": h, "all": [20.21, 20.22, 20.23]}) == {0.25: "heavy", 0.2: "all", 0.1: "all", 0.0: "all"}
    # +0.15: only 0.1 and 0; a loss is never taken
    assert ccm.choices({"heavy": h, "entropy": [20.14, 20.15, 20.16]})[0.2] == "heavy"
    assert ccm.choices({"heavy": h, "entropy": [20.14, 20.15, 20.16]})[0.1] == "entropy"
    assert set(ccm.choices({"heavy": h, "all": [19.0, 19.5, 19.9]}).values()) == {"heavy"}
    assert ccm.choices({"heavy": h, "all": [20.6, 20.5, 20.7]})[0.25] == CC.choose({"heavy": h, "all": [20.6, 20.5, 20.7]})[0]
    assert CC.MARGIN_DB == 0.25    # restored
