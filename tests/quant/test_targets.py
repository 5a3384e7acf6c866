"""Target profiles: the bundled TOML files, user files, one-line errors for bad ones."""
import pytest

from qdeploy.errors import QDeployError
from qdeploy.quant.targets import list_targets, load_target


def test_bundled_targets_load_with_their_numerics():
    t = {x.name: x for x in list_targets()}
    assert set(t) >= {"arm", "cortex-m", "fpga", "ort"}
    assert t["arm"].qrange == (-128, 127) and t["arm"].numerics.weight_per_channel
    assert (t["cortex-m"].flash_kib, t["cortex-m"].ram_kib) == (1024, 256)
    assert t["cortex-m"].numerics == t["arm"].numerics
    f = t["fpga"].numerics
    assert f.pow2_scales and f.activation_symmetric and f.requant == "shift" and not f.weight_per_channel
    assert t["ort"].qrange == (0, 255)


def test_bundled_targets_emit_artefacts_that_serve_their_profile():
    from qdeploy.emit import ARTEFACTS, parse_emit
    for t in list_targets():
        assert parse_emit(None, t) == t.emit
        assert all(t.profile in ARTEFACTS[a].profiles for a in t.emit)


def test_user_toml_path(tmp_path):
    p = tmp_path / "board.toml"
    p.write_text((load_target("arm").path and open(load_target("arm").path).read())
                 .replace('name = "arm"', 'name = "board"').replace("flash_kib = 0", "flash_kib = 512"))
    t = load_target(str(p))
    assert t.name == "board" and t.flash_kib == 512 and t.profile == "arm"


@pytest.mark.parametrize("text, words", [
    ('name = "x"', "missing"),
    ('name = "x"\ndescription = "d"\nprofile = "gpu"', "profile"),
    ('name = "x"\ndescription = "d"\nprofile = "fpga"\n[numerics]\nrequant = "q31"', "fpga"),
    ('name = "x"\ndescription = "d"\nprofile = "arm"\ncolour = 1', "unknown key"),
    ('name = [', "TOML"),
])
def test_bad_target_files_fail_in_one_line(tmp_path, text, words):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(QDeployError) as e:
        load_target(str(p))
    assert words in str(e.value) and "\n" not in str(e.value)


def test_unknown_name_lists_known_targets():
    with pytest.raises(QDeployError, match="arm, cortex-m, fpga, ort"):
        load_target("tpu")
    with pytest.raises(QDeployError, match="no such file"):
        load_target("missing.toml")
