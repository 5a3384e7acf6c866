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


def test_c_bundle_runtime_and_templates_are_package_data():
    """Every runtime kernel and template of qdeploy/emit/c matches a package-data glob
    (else an installed qdeploy emits bundles without them)."""
    import fnmatch
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["qdeploy.emit.c"]
    pkg = ROOT / "qdeploy" / "emit" / "c"
    files = [p.relative_to(pkg).as_posix() for sub in ("runtime", "templates") for p in (pkg / sub).iterdir()]
    assert files and all(any(fnmatch.fnmatch(f, g) for g in globs) for f in files), files
