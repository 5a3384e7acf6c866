"""Target profiles: small declarative TOML files that decide the numerics.

The bundled targets live in the repository's ``targets/`` folder (installed as
the package ``qdeploy.targets``); users add their own by writing a file with
the same keys and passing its path (``--target ./my_board.toml``).

Keys (all required unless a default is given)::

    name        = "arm"                 # how the target is called on the command line
    description = "..."                 # one line, shown by `qdeploy targets`
    profile     = "arm"                 # numerics family: "arm" | "fpga" | "ort"
    emit        = ["tflite", "c"]       # artefacts written by default: qdq, tflite, c
    unsupported = ["Softmax"]           # ops this target refuses (default: none)

    [numerics]
    activation_dtype     = "int8"       # "int8" | "uint8"
    activation_symmetric = false        # true: zero point 0 (int8 only)
    weight_per_channel   = true         # false: one weight scale per tensor
    pow2_scales          = false        # true: every scale is a power of two
    requant              = "q31"        # "q31": Q31 multiplier + shift, double rounding
                                        # (TFLite); "shift": rounding arithmetic shift;
                                        # "float32" (ort): onnxruntime's float32 scale,
                                        # round half to even
    leaky                = "recipe"     # LeakyRelu: "recipe" (TFLite's, as a table)
                                        # or "shift" ((x * m) >> s from the leaky_shift pass)
    luts = ["Sigmoid", "Tanh", ...]     # activations lowered to 256-entry tables
    weight_bits          = 8            # 7: weights in [-63, 63], onnxruntime's reduce_range (ort only)
    weight_dtype         = "int8"       # "uint8" (ort only): the QDQ model stores the same weights
                                        # + 128 with zero point 128, so onnxruntime runs its
                                        # uint8 x uint8 kernels, exact on every x86 CPU (targets/ort.toml)
    float_grouped        = false        # true (ort only): grouped convs that are not depthwise run
                                        # in float between DQ and Q (quant/float_island.py)

    [memory]                            # 0 = no limit; enforced by the C emitter
    flash_kib = 1024
    ram_kib   = 256

Every key's type and allowed values are checked (``SCHEMA`` below): a quoted
``"false"`` is refused, not read as true. Profiles and their invariants (checked when a file is loaded): ``fpga``
needs ``pow2_scales``, symmetric int8 activations, ``requant = "shift"``;
``arm`` needs int8 activations and ``requant = "q31"``; ``ort`` needs
``requant = "q31"`` (onnxruntime's QDQ kernels requantise in float; the
reference interpreter uses the Q31 form, within 1 LSB of them).
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import QDeployError
from ..schema import Key, check

PROFILES = ("arm", "fpga", "ort")
EMITTERS = ("qdq", "tflite", "c")
LUT_ACTIVATIONS = ("Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "SiLU", "LeakyRelu")


@dataclass(frozen=True)
class Numerics:
    activation_dtype: str = "int8"
    activation_symmetric: bool = False
    weight_per_channel: bool = True
    pow2_scales: bool = False
    requant: str = "q31"
    leaky: str = "recipe"
    luts: tuple[str, ...] = LUT_ACTIVATIONS
    # 7: weights in [-63, 63] (onnxruntime's reduce_range; ort profile only)
    weight_bits: int = 8
    # how the QDQ model stores the weights (ort profile only): "uint8" = the same integers + 128 with
    # zero point 128, which onnxruntime runs on its uint8 x uint8 kernels; with "int8" its uint8 x int8
    # kernels add pairs of products in int16 on x86 CPUs with AVX2 but without VNNI, and saturate
    weight_dtype: str = "int8"
    # grouped convs that are not depthwise as float layers (ort profile only: quant/float_island.py)
    float_grouped: bool = False

    @property
    def weight_max(self) -> int:
        """Weights are symmetric in ``[-weight_max, weight_max]`` (127; 63 for 7 bits)."""
        return (1 << (self.weight_bits - 1)) - 1


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    profile: str
    emit: tuple[str, ...]
    numerics: Numerics
    flash_kib: int = 0
    ram_kib: int = 0
    unsupported: tuple[str, ...] = ()
    path: str = ""

    @property
    def qrange(self) -> tuple[int, int]:
        """The activation integer range (qmin, qmax)."""
        return (0, 255) if self.numerics.activation_dtype == "uint8" else (-128, 127)

    @property
    def argument(self) -> str:
        """What ``--target`` takes to load this target again: a bundled target's name, else
        its .toml file's name (a user's copy: ``my_arm.toml``, without the folder it was in,
        so that outputs do not depend on where it lies)."""
        if not self.path or any(f.resolve() == Path(self.path).resolve() for f in _bundled_files()):
            return self.name
        return Path(self.path).name

    def summary(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("path")
        return d


def _bundled_dir() -> Path:
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "targets" / "arm.toml").is_file():
        return root / "targets"    # a source checkout: its own targets, whatever is installed
    try:
        d = Path(str(resources.files("qdeploy.targets")))
        if any(d.glob("*.toml")):
            return d
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parents[2] / "targets"


def _bundled_files() -> list[Path]:
    return sorted(_bundled_dir().glob("*.toml"))


def list_targets() -> list[Target]:
    """The bundled targets, sorted by name."""
    return sorted((_parse(p) for p in _bundled_files()), key=lambda t: t.name)


def load_target(name_or_path: "str | Path | Target") -> Target:
    """A bundled target by name (``arm``) or a user's TOML file by path."""
    if isinstance(name_or_path, Target):
        return name_or_path
    text = str(name_or_path)
    p = Path(text)
    if text.endswith(".toml") or p.is_file():
        if not p.is_file():
            raise QDeployError(f"target file {p}: no such file; give a bundled target "
                               f"({_known()}) or the path of a .toml target file")
        return _parse(p)
    for f in _bundled_files():
        if f.stem == text:
            return _parse(f)
    raise QDeployError(f"unknown target '{text}'; known targets: {_known()} "
                       "(or give the path of your own .toml target file)")


def _known() -> str:
    return ", ".join(f.stem for f in _bundled_files())


# The schema of a target file (qdeploy/schema.py): every key's type and allowed values.
SCHEMA = {
    "name": Key("str"), "description": Key("str"), "profile": Key("str", PROFILES),
    "emit": Key("strs", EMITTERS, required=False), "unsupported": Key("strs", required=False),
    "numerics": Key("dict", required=False), "memory": Key("dict", required=False),
}
NUMERICS_SCHEMA = {
    "activation_dtype": Key("str", ("int8", "uint8")), "activation_symmetric": Key("bool"),
    "weight_per_channel": Key("bool"), "pow2_scales": Key("bool"),
    "requant": Key("str", ("q31", "shift", "float32")), "leaky": Key("str", ("recipe", "shift")),
    "luts": Key("strs", LUT_ACTIVATIONS), "weight_bits": Key("int", (7, 8)),
    "weight_dtype": Key("str", ("int8", "uint8")), "float_grouped": Key("bool"),
}
NUMERICS_SCHEMA = {k: dataclasses.replace(v, required=False) for k, v in NUMERICS_SCHEMA.items()}
MEMORY_SCHEMA = {"flash_kib": Key("int", required=False), "ram_kib": Key("int", required=False)}


def _parse(path: Path) -> Target:
    where = f"target file {path}"
    try:
        d = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise QDeployError(f"{where}: not valid TOML ({e}); fix the file (known targets: {_known()})") from None
    except OSError as e:
        raise QDeployError(f"{where}: cannot be read ({e.strerror or e})") from None
    check(d, SCHEMA, where, fix="see the keys in targets/arm.toml")
    num = check(d.get("numerics", {}), NUMERICS_SCHEMA, where, "[numerics]")
    mem = check(d.get("memory", {}), MEMORY_SCHEMA, where, "[memory]")
    numerics = Numerics(**{k: tuple(v) if isinstance(v, list) else v for k, v in num.items()})
    _check_numerics(numerics, d["profile"], where)
    return Target(name=d["name"], description=d["description"], profile=d["profile"],
                  emit=tuple(d.get("emit", ())), numerics=numerics, flash_kib=mem.get("flash_kib", 0),
                  ram_kib=mem.get("ram_kib", 0), unsupported=tuple(d.get("unsupported", ())), path=str(path))


def _check_numerics(n: Numerics, profile: str, where: str) -> None:
    def need(cond, what):
        if not cond:
            raise QDeployError(f"{where}: [numerics] {what}")
    need(n.activation_dtype in ("int8", "uint8"), "activation_dtype must be \"int8\" or \"uint8\"")
    need(n.requant in ("q31", "shift", "float32"), "requant must be \"q31\", \"shift\" or \"float32\"")
    need(n.leaky in ("recipe", "shift"), "leaky must be \"recipe\" or \"shift\"")
    need(not (n.activation_symmetric and n.activation_dtype == "uint8"),
         "activation_symmetric needs activation_dtype = \"int8\"")
    bad = [a for a in n.luts if a not in LUT_ACTIVATIONS]
    need(not bad, f"luts has unknown activation(s) {', '.join(map(str, bad))}; choose from {', '.join(LUT_ACTIVATIONS)}")
    if profile == "fpga":
        need(n.pow2_scales and n.activation_symmetric and n.activation_dtype == "int8" and n.requant == "shift",
             "the fpga profile needs pow2_scales = true, activation_symmetric = true, "
             "activation_dtype = \"int8\" and requant = \"shift\"")
    else:
        need(n.requant in (("q31", "float32") if profile == "ort" else ("q31",)) and not n.pow2_scales,
             f"the {profile} profile needs requant = \"q31\" and pow2_scales = false (use profile = \"fpga\" for shifts)")
    need(n.weight_bits == 8 or profile == "ort",
         "weight_bits = 7 (onnxruntime's reduce_range) is for the ort profile only")
    need(n.weight_dtype == "int8" or profile == "ort",
         "weight_dtype = \"uint8\" (weights stored for onnxruntime's uint8 x uint8 kernels) is for the ort profile only")
    need(not n.float_grouped or profile == "ort",
         "float_grouped = true (float layers between DequantizeLinear and QuantizeLinear) is for the ort profile only")
    if profile == "arm":
        need(n.activation_dtype == "int8", "the arm profile (TFLite int8) needs activation_dtype = \"int8\"")
