"""quantize re-runs the shortcut check with the measured ranges: the manifest
records what each merge's shared scale costs, and the CLI says it."""
import json

from click.testing import CliRunner

from qdeploy.cli import main
from qdeploy.corpus import save


def test_quantize_reports_measured_shortcut_costs(tmp_path):
    model = tmp_path / "squeezenet.onnx"
    save("squeezenet", model)
    r = CliRunner().invoke(main, ["quantize", str(model), "--limit", "8", "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    recs = json.loads((tmp_path / "out" / "manifest.json").read_text())["shortcuts"]
    concats = [x for x in recs if x["op"] == "Concat"]
    assert concats and all(x["ratio"] >= 1.0 and x["advice"] for x in concats)
    costly = [x for x in concats if x["max_bits_lost"] >= 1.0]
    assert costly, "the corpus squeezenet's Fire concats differ by >2x in range"
    for x in costly:
        assert f"note: Concat '{x['node']}': concat of branches" in r.output
