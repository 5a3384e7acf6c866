"""``qdeploy targets FILE`` on bad target files (every key type-checked) and
click's own usage errors on every command: one line, exit 2."""
import pytest

from tests.badinput.check import run_cases
from tests.badinput.files import target_with


def _t(old, new):
    return lambda w: ["targets", target_with(w, "t.toml", old, new)]


TARGETS = {
    "missing file": (lambda w: ["targets", "no.toml"], ["no.toml"]),
    "symmetric as a string": (_t("activation_symmetric = false", 'activation_symmetric = "false"'),
                              ["activation_symmetric = 'false'", "true or false"]),
    "per-channel as a number": (_t("weight_per_channel = true", "weight_per_channel = 1"),
                                ["weight_per_channel = 1"]),
    "emit = 5": (_t("emit = []", "emit = 5"), ["emit = 5", "list of strings"]),
    "emit unknown artefact": (_t("emit = []", 'emit = ["onnx"]'), ["emit", "'onnx'"]),
    "numerics = 3": (_t("[numerics]", "numerics = 3\n[other]"), ["t.toml"]),
    "numerics a value": (lambda w: (w / "n.toml").write_text(
        'name = "n"\ndescription = "d"\nprofile = "arm"\nnumerics = 3\n') and ["targets", "n.toml"],
        ["numerics = 3", "table"]),
    "unknown numerics key": (_t("leaky =", "leak = 1\nleaky ="), ["leak"]),
    "dtype int4": (_t('activation_dtype = "int8"', 'activation_dtype = "int4"'), ["'int4'", "uint8"]),
    "requant float": (_t('requant = "q31"', 'requant = "float"'), ["requant"]),
    "luts not a list": (_t("luts = [", 'luts = "Sigmoid"\nx = ['), ["luts"]),
    "luts unknown op": (_t('luts = ["Sigmoid"', 'luts = ["Gelu"'), ["'Gelu'"]),
    "unsupported a string": (_t("unsupported = []", 'unsupported = "Softmax"'), ["unsupported"]),
    "profile gpu": (_t('profile = "arm"', 'profile = "gpu"'), ["'gpu'", "fpga"]),
    "name empty": (_t('name = "arm"', 'name = ""'), ["name"]),
    "name missing": (_t('name = "arm"', ""), ["'name'", "missing"]),
    "flash negative": (_t("flash_kib = 0", "flash_kib = -1"), ["flash_kib"]),
    "ram a float": (_t("ram_kib = 0", "ram_kib = 2.5"), ["ram_kib"]),
    "ram a bool": (_t("ram_kib = 0", "ram_kib = true"), ["ram_kib"]),
    "memory a value": (_t("[memory]", "memory = 1\n[x]"), ["t.toml"]),
    "unknown top key": (_t("unsupported = []", "colour = 1"), ["colour"]),
    "fpga without shifts": (_t('profile = "arm"', 'profile = "fpga"'), ["fpga profile"]),
    "uint8 symmetric": (lambda w: ["targets", target_with(w, "t.toml", 'activation_dtype = "int8"\n'
                                                          "activation_symmetric = false",
                                                          'activation_dtype = "uint8"\nactivation_symmetric = true')],
                        ["activation_symmetric"]),
    "not TOML": (_t("[memory]", "[memory"), ["TOML"]),
    "not UTF-8": (lambda w: (w / "b.toml").write_bytes(b"name = \"\xff\xfe\"") and ["targets", "b.toml"],
                  ["b.toml"]),
    "unknown option": (lambda w: ["targets", "--yaml"], ["--yaml"]),
}

USAGE = {
    "no command": (lambda w: ["frobnicate"], ["No such command", "frobnicate"]),
    "unknown top option": (lambda w: ["--bogus"], ["--bogus"]),
    "calib unknown command": (lambda w: ["calib", "merge"], ["'merge'"]),
    "calib build unknown option": (lambda w: ["calib", "build", "imgs", "-o", "s.npz", "--fast"], ["--fast"]),
    "option without value": (lambda w: ["calib", "build", "imgs", "-o"], ["-o", "requires an argument"]),
    "run extra argument": (lambda w: ["run", "out", "extra", "--input", "x.npy", "-o", "y.npy"], ["extra"]),
}


@pytest.mark.parametrize("case", TARGETS.values(), ids=TARGETS.keys())
def test_targets_refuses(w, case):
    run_cases(w, case)


@pytest.mark.parametrize("case", USAGE.values(), ids=USAGE.keys())
def test_usage_errors_are_one_line(w, case):
    run_cases(w, case)
