"""The whole-model check's margin on the random-weight corpus: which draws' choice depends on it.

    OMP_NUM_THREADS=1 python bench/clip_check_margin.py [--models a,b] [--draws 3]

For every corpus model and calibration draw of bench/sqnr.py (the `arm` column's inputs and
settings) it quantizes with the default and reads the scores calibration/clip_check.py recorded
for its jittered copies, then asks ``choose`` again with margins 0.25 (``MARGIN_DB``), 0.2, 0.1 and
0. Where the choice depends on the margin, every choice made is run through the integer
interpreter on the evaluation inputs (worst output SQNR against the float model), so the cost or
gain of a smaller margin is measured, not guessed. The trained-model side of the same question is
``bench/clip_check_draws.py --copies``.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import sqnr as S  # noqa: E402
from clip_check_draws import picks_margin, spied  # noqa: E402

MARGINS = (0.25, 0.2, 0.1, 0.0)


def choices(copies: dict) -> dict[float, str]:
    """The check's choice from recorded copies at each of ``MARGINS``."""
    import qdeploy.calibration.clip_check as CC
    return {m: picks_margin({"copies_db": copies}, CC.SE_FACTOR, m) for m in MARGINS}


def main(argv=None) -> int:
    from qdeploy.quant.quantizer import quantize_graph
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", help="comma-separated subset (default: all corpus models + digits)")
    ap.add_argument("--draws", type=int, default=3)
    a = ap.parse_args(argv)
    allm = S.models()
    print("| model | draw | choice at margin " + " / ".join(f"{m:g}" for m in MARGINS)
          + " | integer SQNR on evaluation of each choice (dB) |\n|---|---|---|---|")
    for name in a.models.split(",") if a.models else list(allm):
        model = allm[name]
        for d in range(a.draws):
            cal, ev, _ = S.datasets(name, model, d)
            (g, _), seen = spied(lambda: S.qdeploy_quantize(model, cal, "arm", False, "auto", False))
            rec = seen["ranges"].options.get("clip_check", {}) if "ranges" in seen else {}
            if "copies_db" not in rec:
                print(f"| {name} | {d} | {rec.get('chosen', '-')} ({rec.get('reason', 'not run')}) | - |", flush=True)
                continue
            ch = choices(rec["copies_db"])
            evals = "-"
            if len(set(ch.values())) > 1:
                ref = S.ort_run(model.SerializeToString(), ev)
                got = {}
                for c in dict.fromkeys(ch.values()):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        qg = quantize_graph(g, seen[c], seen["target"], per_tensor=seen["per_tensor"])
                    got[c] = S.worst_sqnr(ref, S.qdeploy_run(qg, ev))
                evals = ", ".join(f"{c} {v:.2f}" for c, v in got.items())
            print(f"| {name} | {d} | {' / '.join(ch.values())} | {evals} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
