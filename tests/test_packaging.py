"""The wheel carries every subpackage, the target profiles and the calibration photos."""
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_declared_in_pyproject():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(cfg["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "qdeploy").rglob("__init__.py")}
    assert found <= declared, f"add to pyproject.toml [tool.setuptools] packages: {sorted(found - declared)}"
    assert cfg["package-dir"] == {"qdeploy.targets": "targets", "qdeploy.calib_images": "calib"}
    data = cfg["package-data"]
    assert {p.suffix for p in (ROOT / "targets").iterdir() if p.name != "__init__.py"} <= \
        {"." + g.split(".")[-1] for g in data["qdeploy.targets"]}
    assert {p.suffix.lower() for p in (ROOT / "calib").iterdir() if p.name != "__init__.py"} <= \
        {"." + g.split(".")[-1] for g in data["qdeploy.calib_images"]}
