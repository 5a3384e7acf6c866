"""The whole-model check's decision on each trained-model draw, against what it did on the evaluation.

    OMP_NUM_THREADS=1 python bench/clip_check_draws.py [--models a,b] [--draws 3] [--draws-per m=N,...]

For each draw of bench/sqnr_real.py (same calibration and evaluation inputs) it quantizes
with the default and reads what calibration/clip_check.py recorded: each candidate's
scores on each jittered copy (``heavy``: tailclip's ranges; ``all``: every tail at its
99.999th percentiles; ``entropy``: every clippable tensor at its KL window), each gain
over ``heavy``, its standard error and the choice. Then it quantizes the graph with each
candidate's ranges and runs the integer interpreter on the evaluation inputs: each
candidate's realized gain there (worst output SQNR, float tail replayed, as sqnr_real.py
measures it).

Printed per draw, and summed over the draws per rule: what each rule's choices gained on
evaluation over never clipping. The rules are the check's margin alone (``MARGIN_DB``) and
the margin with ``k`` standard errors (k = 1 is the check's rule, ``SE_FACTOR``), with
both clipping candidates (the check) or with ``all`` only (the check before the entropy
candidate), all read from the same recorded copies, so they are compared on the same numbers.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import sqnr_real as R  # noqa: E402
from sqnr import ort_run, qdeploy_run, worst_sqnr  # noqa: E402

RULES = {"margin only": (0.0, None), "margin + 1 s.e. (the check)": (1.0, None), "margin + 2 s.e.": (2.0, None),
         "percentile only, margin + 1 s.e. (the check before entropy)": (1.0, ("heavy", "all"))}


def picks(check: dict, k: float, cands=None) -> str:
    """The candidate the recorded copies pick with the check's margin and ``k`` standard errors
    (``cands``: only these of the recorded candidates)."""
    from qdeploy.calibration.clip_check import choose
    copies = check["copies_db"]
    return choose({c: v for c, v in copies.items() if cands is None or c in cands}, k)[0]


def picks_margin(check: dict, k: float, margin: float) -> str:
    """:func:`picks` with another margin than the check's ``MARGIN_DB``."""
    import qdeploy.calibration.clip_check as CC
    kept = CC.MARGIN_DB
    CC.MARGIN_DB = margin
    try:
        return picks(check, k)
    finally:
        CC.MARGIN_DB = kept


def best_copy(check: dict, cand: str) -> int:
    """The index of ``cand``'s jittered copy that scored best on the calibration samples."""
    return int(max(range(len(check["copies_db"][cand])), key=lambda j: check["copies_db"][cand][j]))


def spied(quantize) -> tuple:
    """``(quantize(), seen)``: the call run with calibration/clip_check.py's check spied on;
    ``seen`` holds each candidate's range set (``heavy`` and those of ``CANDIDATES``), the
    Ranges (``ranges``, with the check's record), the target and ``per_tensor``."""
    import qdeploy.calibration.clip_check as CC
    seen = {}
    real = CC.check_clipping

    def spy(g, x, ranges, bounds, target, per_tensor, progress=False):
        seen.update({c: {**bounds, **CC.clip_all(ranges, bounds, m)} for c, m in CC.CANDIDATES.items()},
                    ranges=ranges, heavy=dict(bounds), target=target, per_tensor=per_tensor)
        return real(g, x, ranges, bounds, target, per_tensor, progress)
    CC.check_clipping = spy     # pipeline.quantize_samples imports it at call time
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return quantize(), seen
    finally:
        CC.check_clipping = real


def measure(name: str, draw: int, copies: bool = False) -> dict:
    """The check's record and both candidates' integer SQNR on the evaluation inputs of one draw
    (``copies``: of every jittered copy the check scored, in ``row["eval_copies"]``)."""
    from qdeploy.quant.quantizer import quantize_graph
    model = R.load(name)
    cal, ev, _ = R.data(name, draw)
    (g, _), seen = spied(lambda: R.qdeploy_quantize(model, R.CASES[name][1], cal, R.DEFAULT))
    row = {"model": name, "draw": draw, "check": seen["ranges"].options.get("clip_check", {})}
    if "copies_db" not in row["check"]:
        return row          # not run (no clippable tensor, too few samples)
    ref = ort_run(model.SerializeToString(), ev)
    from qdeploy.calibration.auto import jittered
    row["eval"], row["eval_copies"] = {}, {}
    for k, scored in row["check"]["copies_db"].items():
        row["eval_copies"][k] = []
        for j in range(len(scored) if copies else 1):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                qg = quantize_graph(g, jittered(seen[k], j), seen["target"], per_tensor=seen["per_tensor"])
            row["eval_copies"][k].append(worst_sqnr(ref, R.assembled(g, qdeploy_run(qg, ev))))
        row["eval"][k] = row["eval_copies"][k][0]
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(m for m in R.CASES if m != "ppocr_v5_rec_cnn"))
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--draws-per", default="", metavar="MODEL=N,...", help="draws for some models")
    ap.add_argument("--copies", action="store_true",
                    help="also run every jittered copy on the evaluation inputs: the rules that ship the copy "
                         "that scored best on calibration, and other margins")
    ap.add_argument("--save", metavar="JSON", help="write the measured rows to this file")
    a = ap.parse_args(argv)
    per_model = dict((k, int(v)) for k, v in (kv.split("=") for kv in a.draws_per.split(",") if kv))
    rows = []
    print("| model | draw | chosen | gain on calibration (dB): all, entropy | its s.e.: all, entropy | "
          "on evaluation (dB): heavy, all, entropy |")
    print("|---|---|---|---|---|---|")
    for name in a.models.split(","):
        for d in range(per_model.get(name, a.draws)):
            r = measure(name, d, a.copies)
            c = r["check"]
            if "eval" not in r:
                print(f"| {name} | {d} | {c.get('chosen')} ({c.get('reason', 'not run')}) | - | - | - |", flush=True)
                continue
            rows.append(r)
            cands = ("all", "entropy")
            gain = ", ".join(f"{c['scores_db'][k] - c['scores_db']['heavy']:+.2f}" if k in c["scores_db"] else "-"
                             for k in cands)
            se = ", ".join(f"{c['gain_se_db'][k]:.2f}" if k in c["gain_se_db"] else "-" for k in cands)
            ev = ", ".join(f"{r['eval'][k]:.2f}" if k in r["eval"] else "-" for k in ("heavy", *cands))
            print(f"| {name} | {d} | {c['chosen']} | {gain} | {se} | {ev} |", flush=True)
            if a.copies:
                print("|  | copies | " + "; ".join(
                    f"{k}: cal {', '.join(f'{v:.2f}' for v in c['copies_db'][k])} / eval "
                    f"{', '.join(f'{v:.2f}' for v in r['eval_copies'][k])}" for k in c["copies_db"]) + " | | | |",
                    flush=True)
    if a.save:
        Path(a.save).write_text(json.dumps(rows, indent=1))
    print("\n| rule | draws clipped (all / entropy) | summed evaluation gain over never clipping (dB) |\n|---|---|---|")
    for label, (k, only) in RULES.items():
        took = [(r, picks(r["check"], k, only)) for r in rows]
        total = sum(r["eval"][c] - r["eval"]["heavy"] for r, c in took)
        n_all, n_ent = (sum(1 for _, c in took if c == w) for w in ("all", "entropy"))
        print(f"| {label} | {n_all} / {n_ent} of {len(rows)} | {total:+.2f} |")
    if a.copies:
        print(copy_rules(rows))
    return 0


def copy_rules(rows: list[dict]) -> str:
    """Summed evaluation gain over never clipping (tailclip's own ranges, copy 0) of the check's
    rule with margins 0.25 (the check), 0.2, 0.1 and 0, each shipping copy 0 of its choice or the
    copy of its choice that scored best on calibration."""
    lines = ["\n| rule (1 s.e.) | draws clipped | summed gain, copy 0 (dB) | summed gain, best copy on calibration (dB) |",
             "|---|---|---|---|"]
    for margin in (0.25, 0.2, 0.1, 0.0):
        took = [(r, picks_margin(r["check"], 1.0, margin)) for r in rows]
        g0 = sum(r["eval"][c] - r["eval"]["heavy"] for r, c in took)
        gb = sum(r["eval_copies"][c][best_copy(r["check"], c)] - r["eval"]["heavy"] for r, c in took)
        lines.append(f"| margin {margin:g} | {sum(c != 'heavy' for _, c in took)} of {len(rows)} | {g0:+.2f} | {gb:+.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
