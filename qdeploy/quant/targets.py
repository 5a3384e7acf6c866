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
                                        # (TFLite); "shift": rounding arithmetic shift
    leaky                = "recipe"     # LeakyRelu: "recipe" (TFLite's, as a table)
                                        # or "shift" ((x * m) >> s from the leaky_shift pass)
    luts = ["Sigmoid", "Tanh", ...]     # activations lowered to 256-entry tables

    [memory]                            # 0 = no limit; enforced by the C emitter
    flash_kib = 1024
    ram_kib   = 256

Profiles and their invariants (checked when a file is loaded): ``fpga``
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

    def summary(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("path")
        return d


def _bundled_dir() -> Path:
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


def _parse(path: Path) -> Target:
    where = f"target file {path}"
    try:
        d = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise QDeployError(f"{where}: not valid TOML ({e}); fix the file (known targets: {_known()})") from None
    known_top = {"name", "description", "profile", "emit", "unsupported", "numerics", "memory"}
    extra = sorted(set(d) - known_top)
    if extra:
        raise QDeployError(f"{where}: unknown key(s) {', '.join(extra)}; allowed: {', '.join(sorted(known_top))}")
    for k in ("name", "description", "profile"):
        if not isinstance(d.get(k), str) or not d[k]:
            raise QDeployError(f"{where}: missing or empty string key '{k}'")
    if d["profile"] not in PROFILES:
        raise QDeployError(f"{where}: profile '{d['profile']}' is not one of {', '.join(PROFILES)}")
    emit = tuple(d.get("emit", ()))
    bad = [e for e in emit if e not in EMITTERS]
    if bad:
        raise QDeployError(f"{where}: emit has unknown artefact(s) {', '.join(map(str, bad))}; "
                           f"choose from {', '.join(EMITTERS)}")
    num = d.get("numerics", {})
    fields = {f.name for f in dataclasses.fields(Numerics)}
    extra = sorted(set(num) - fields)
    if extra:
        raise QDeployError(f"{where}: unknown [numerics] key(s) {', '.join(extra)}; allowed: {', '.join(sorted(fields))}")
    if "luts" in num:
        num = dict(num, luts=tuple(num["luts"]))
    numerics = Numerics(**num)
    _check_numerics(numerics, d["profile"], where)
    mem = d.get("memory", {})
    extra = sorted(set(mem) - {"flash_kib", "ram_kib"})
    if extra:
        raise QDeployError(f"{where}: unknown [memory] key(s) {', '.join(extra)}; allowed: flash_kib, ram_kib")
    for k, v in mem.items():
        if not isinstance(v, int) or v < 0:
            raise QDeployError(f"{where}: [memory] {k} must be a non-negative integer (KiB; 0 = no limit)")
    return Target(name=d["name"], description=d["description"], profile=d["profile"], emit=emit,
                  numerics=numerics, flash_kib=mem.get("flash_kib", 0), ram_kib=mem.get("ram_kib", 0),
                  unsupported=tuple(d.get("unsupported", ())), path=str(path))


def _check_numerics(n: Numerics, profile: str, where: str) -> None:
    def need(cond, what):
        if not cond:
            raise QDeployError(f"{where}: [numerics] {what}")
    need(n.activation_dtype in ("int8", "uint8"), "activation_dtype must be \"int8\" or \"uint8\"")
    need(n.requant in ("q31", "shift"), "requant must be \"q31\" or \"shift\"")
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
        need(n.requant == "q31" and not n.pow2_scales,
             f"the {profile} profile needs requant = \"q31\" and pow2_scales = false (use profile = \"fpga\" for shifts)")
    if profile == "arm":
        need(n.activation_dtype == "int8", "the arm profile (TFLite int8) needs activation_dtype = \"int8\"")
