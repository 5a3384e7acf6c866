"""Fuzz the importer for longer than the test suite does.

    python bench/fuzz_import.py [--cases 20000] [--seed 0] [--write]

The mutations of tests/badinput/mutations.py (dropped inputs, renamed outputs,
wrong dtypes and dims, shuffled/dropped/duplicated nodes, perturbed attributes,
changed ops and opsets, truncated and flipped bytes) applied to the digits model
and three corpus models, one seeded draw per case; each mutated model is
imported and run through the passes (what `qdeploy inspect`/`quantize` do
first). Every case must end in success or one QDeployError line: anything
else is a crash, printed with its traceback's last frame. Prints the counts
per mutation; ``--write`` puts them into bench/RESULTS.md ("## Importer fuzz").
"""
from __future__ import annotations

import argparse
import collections
import datetime as _dt
import platform
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.results import write_section  # noqa: E402

from tests.badinput.mutations import MUTATIONS, base_models, outcome  # noqa: E402


def fuzz(cases: int, seed: int) -> tuple[dict, list[str], float]:
    bases = base_models()
    counts: dict[str, collections.Counter] = {m.__name__: collections.Counter() for m in MUTATIONS}
    crashes: list[str] = []
    start = time.time()
    with tempfile.TemporaryDirectory() as d:
        for k in range(cases):
            rng = random.Random(seed * 1_000_003 + k)
            base, mut = rng.choice(sorted(bases)), rng.choice(MUTATIONS)
            path = Path(d) / "m.onnx"
            path.write_bytes(mut(bases[base], rng))
            try:
                kind = "ok" if outcome(path) == "ok" else "error"
            except BaseException as e:   # noqa: BLE001 - a crash is what we count
                if isinstance(e, KeyboardInterrupt):
                    raise
                last = traceback.extract_tb(e.__traceback__)[-1]
                crashes.append(f"case {k} ({base}, {mut.__name__}): {type(e).__name__}: {e} "
                               f"at {Path(last.filename).name}:{last.lineno}")
                kind = "crash"
            counts[mut.__name__][kind] += 1
    return counts, crashes, time.time() - start


def table(counts: dict, crashes: list[str], cases: int, seconds: float, seed: int) -> str:
    import onnx
    import onnxruntime
    rows = ["| mutation | cases | imported | one-line error | crash |", "|---|---|---|---|---|"]
    for name, c in counts.items():
        rows.append(f"| {name} | {sum(c.values())} | {c['ok']} | {c['error']} | {c['crash']} |")
    total = collections.Counter()
    for c in counts.values():
        total.update(c)
    rows.append(f"| **all** | **{cases}** | {total['ok']} | {total['error']} | **{total['crash']}** |")
    return "\n".join([
        f"Command: `python bench/fuzz_import.py --cases {cases} --seed {seed} --write`  ",
        f"Date: {_dt.date.today().isoformat()}  ",
        f"Versions: python {platform.python_version()}, onnx {onnx.__version__}, "
        f"onnxruntime {onnxruntime.__version__}",
        "",
        f"{cases} mutated models (digits, mobilenet_v2, shufflenet_v2, tiny_yolo; mutations from "
        "tests/badinput/mutations.py) imported and run through the passes in "
        f"{seconds:.0f} s: " + ("every case ended in success or one `error:` line, **none crashed**. "
                                if not total["crash"] else f"**{total['crash']} crashed** (listed below). ")
        + 
        "(The test suite runs 100 hypothesis examples of the same mutations: "
        "tests/badinput/test_fuzz_import.py.)",
        "",
        *rows,
        *([""] + [f"- crash: {c}" for c in crashes[:20]] if crashes else []),
        "",
    ])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = ap.parse_args()
    counts, crashes, seconds = fuzz(args.cases, args.seed)
    section = table(counts, crashes, args.cases, seconds, args.seed)
    print(section)
    if args.write:
        write_section("Importer fuzz", section)
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
