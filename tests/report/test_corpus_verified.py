"""Issue 15's must-show: ``qdeploy quantize --target fpga`` and ``--target cortex-m`` on
every corpus model either succeed with every emitted artefact verified against the
reference interpreter (bit-exact, within 1 LSB, or a checked per-op drift), with a
report, or stop with one specific line (exit 2, nothing written). Calibrated on the
first 10 bundled photographs; the report evaluates on the 2 held out."""
from __future__ import annotations

import json

import pytest

from qdeploy.corpus import CORPUS, save
from tests.cli_helpers import assert_verdict_exit, cli

pytestmark = pytest.mark.slow
OK = ("bit-exact", "within 1 LSB", "drifts")


@pytest.mark.parametrize("target", ["fpga", "cortex-m"])
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_model_verified_or_refused(name, target, tmp_path):
    model = tmp_path / f"{name}.onnx"
    save(name, model)
    out = tmp_path / "out"
    res = cli("quantize", model, "--target", target, "--limit", "10", "-o", out, "--json")
    if res.exit_code == 2:      # a specific refusal: one line naming what and where
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "'" in lines[0], res.stderr
        assert not out.exists()
        print(f"{name} {target}: refused: {lines[0]}")
        return
    rep = assert_verdict_exit(res, out)   # random-weight nets on 2 photos: FAIL verdicts are expected
    manifest = json.loads((out / "manifest.json").read_text())
    backends = {v["backend"]: v["status"] for v in rep["verification"]}
    assert all(s in OK for s in backends.values()), backends
    assert len(rep["verification"]) >= sum(1 for _ in manifest["emitted"])
    assert (out / "report.html").is_file() and rep["eval"]["samples"] == 2
    print(f"{name} {target}: {backends or 'no artefact emitted'}; {rep['verdict']['text']}")
