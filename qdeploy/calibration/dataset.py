"""Calibration sets: build, save, load, inspect, and check them against a model.

The format (version 1) is an uncompressed .npz with two entries:

``x``
    float32, the samples stacked on axis 0: N x C x H x W (``nchw``) or
    N x H x W x C (``nhwc``) for images; N x <sample shape> for tensors.
``recipe``
    a one-element unicode array holding JSON: ``format`` ("qdeploy-calib-set"),
    ``version``, ``kind`` (images | tensors) and, for images, ``size`` [H, W],
    ``resize`` (stretch | crop | letterbox), ``pad``, ``interpolation``,
    ``channels`` (rgb | bgr | gray), ``layout``, ``preset``, ``scale``,
    ``mean``, ``std`` (``x = (pixel * scale - mean) / std``, see
    :mod:`.recipe`), ``dtype``; ``sources`` (name and sha256 of each file
    read, in sample order; tensor files also carry their sample ``count``),
    ``limit`` and ``seed``.

The bytes depend only on the inputs and options (sorted entries, fixed zip
timestamps, file names relative to the folders given), and a set is written
atomically: an error leaves no file behind.

Decisions where the issue is silent:

* default resize is ``crop`` (shorter side + centre crop: no distortion and
  no padding, the ImageNet evaluation habit); no ``size`` keeps the images'
  own size and then they must all be equal.
* ``limit`` draws a seeded random permutation of the sorted files and keeps
  the first ``limit`` that decode, then restores sorted order; for tensor sets
  it draws samples.
* an unreadable image is skipped with a warning (fatal with ``strict``); a
  set of one sample is a warning (fatal with ``strict``); no readable image at
  all is an error.
* :func:`check_against_model` never resizes: a mismatch is an error that says
  which option to rebuild with.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import QDeployError
from ..fsutil import dumps_json, write_npz
from .. import memory
from . import images
from .recipe import (CHANNELS, DEFAULT_PAD, FORMAT, LAYOUTS, RESIZE_MODES, VERSION,
                     check_recipe, describe, image_recipe, tensor_recipe)
from .set_stats import inspect_set  # noqa: F401  (part of this module's API)
from .sources import Source, collect, read_tensor, require_float
from .stream import ImageSamples, all_finite, open_samples


@dataclass
class CalibSet:
    """A calibration set: stacked float32 samples and the recipe that made them."""
    x: np.ndarray
    recipe: dict

    @property
    def count(self) -> int:
        return int(self.x.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x.shape[1:])

    def batches(self, batch_size: int):
        """The samples in order, ``batch_size`` at a time (views, no copies)."""
        for i in range(0, self.count, batch_size):
            yield self.x[i:i + batch_size]


def parse_size(size) -> tuple[int, int] | None:
    """``"224x160"``, ``"224"``, ``(224, 160)`` or None -> (H, W) or None."""
    if size is None:
        return None
    if isinstance(size, str):
        parts = size.lower().replace("*", "x").split("x")
        try:
            dims = [int(p) for p in parts]
        except ValueError:
            raise QDeployError(f"--size '{size}' is not HxW (e.g. 224x224)") from None
    else:
        dims = [int(d) for d in size]
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or min(dims) < 1 or max(dims) > 16384:
        raise QDeployError(f"--size '{size}' is not HxW with 1..16384 pixels (e.g. 224x224)")
    return dims[0], dims[1]


def _choice(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Indices in the order to try: all in order, or a seeded permutation."""
    if limit is not None and limit < 1:
        raise QDeployError(f"--limit must be at least 1, got {limit}")
    if limit is None or limit >= n:
        return np.arange(n)
    return np.random.default_rng(seed).permutation(n)


def _warn(on_warning, msg: str, strict: bool) -> None:
    if strict:
        raise QDeployError(f"{msg} (--strict)")
    if on_warning is not None:
        on_warning(msg)


def _build_images(srcs: list[Source], recipe: dict, limit, seed, strict, on_warning,
                  on_progress, lazy: bool = False) -> tuple[np.ndarray, list[Source]]:
    """The stacked images and the sources used; with ``lazy`` every image is
    decoded once to check it and dropped, and the samples are an
    :class:`~.stream.ImageSamples` that decodes them again when read."""
    order = _choice(len(srcs), limit, seed)
    want = len(srcs) if limit is None else min(limit, len(srcs))
    kept: list[tuple[int, np.ndarray]] = []
    failed = []
    for i in order:
        if len(kept) == want:
            break
        try:
            x = images.load(srcs[i].path, recipe)
        except QDeployError as e:
            failed.append(srcs[i].name)
            _warn(on_warning, f"skipped unreadable image {srcs[i].name}: {str(e).split(': ', 1)[-1]}",
                  strict)
            continue
        if kept and x.shape != first.shape:
            hw = lambda a: "x".join(map(str, a.shape[1:] if recipe["layout"] == "nchw" else a.shape[:2]))
            raise QDeployError(f"images differ in size: {srcs[kept[0][0]].name} is {hw(first)} and "
                               f"{srcs[i].name} is {hw(x)} (HxW); give --size HxW to resize them")
        if not kept:
            first = x
        kept.append((int(i), x if not (lazy and kept) else x[:0]))
        if on_progress is not None:
            on_progress(len(kept), want)
    if not kept:
        raise QDeployError(f"none of the {len(failed)} image(s) could be read "
                           f"(first: {failed[0]}); check the files")
    kept.sort(key=lambda t: t[0])
    if lazy:
        shape = next(x.shape for _, x in kept if x.size)
        return ImageSamples([srcs[i].path for i, _ in kept], recipe, shape), [srcs[i] for i, _ in kept]
    return np.stack([x for _, x in kept]), [srcs[i] for i, _ in kept]


def _check_memory(srcs: list[Source], hw, limit, channels: int) -> None:
    """Refuse up front a set that cannot fit: N x C x H x W float32, held about
    four times over while it is stacked and written (samples, stack, .npz bytes)."""
    n = len(srcs) if limit is None else min(limit, len(srcs))
    if hw is None:
        try:
            from PIL import Image
            with Image.open(srcs[0].path) as im:   # the header only: the size, no pixels
                hw = (im.size[1], im.size[0])
        except Exception:
            return   # unreadable: reported (or skipped) when it is decoded
    h, w = hw
    set_bytes = n * channels * h * w * 4
    memory.need(4 * set_bytes, f"a calibration set of {n}x{channels}x{h}x{w} float32 "
                f"({memory.fmt(set_bytes)})", "use a smaller --size, --limit N or fewer images")


def _build_tensors(srcs: list[Source], limit, seed, on_progress) -> tuple[np.ndarray, list[int]]:
    arrays = []
    for k, s in enumerate(srcs):
        a = read_tensor(s)
        if arrays and a.shape[1:] != arrays[0].shape[1:]:
            dims = lambda a: "x".join(map(str, a.shape[1:]))
            raise QDeployError(f"mixed tensor shapes: {srcs[0].name} has samples {dims(arrays[0])} "
                               f"but {s.name} has {dims(a)}; every sample must have one shape")
        arrays.append(a)
        if on_progress is not None:
            on_progress(k + 1, len(srcs))
    x = np.concatenate(arrays)
    if len(x) == 0:
        raise QDeployError(f"the tensor files ({srcs[0].name}, ...) hold no samples")
    idx = np.sort(_choice(len(x), limit, seed)[:limit])
    return x[idx], [len(a) for a in arrays]


def build_set(paths, size=None, preset: str = "imagenet", mean=None, std=None,
              layout: str = "nchw", channels: str = "rgb", resize: str = "crop",
              pad: int = DEFAULT_PAD, limit: int | None = None, seed: int = 0,
              strict: bool = False, on_warning: Callable[[str], None] | None = None,
              on_progress: Callable[[int, int], None] | None = None,
              exclude=(), lazy: bool = False) -> CalibSet:
    """Build a calibration set from image files/folders or .npy/.npz tensor files.

    ``size`` is (H, W) or "HxW"; ``mean``/``std`` override the preset's (see
    :mod:`.recipe`); ``on_warning(message)`` receives each non-fatal problem;
    ``on_progress(done, total)`` is called per sample file; ``exclude`` lists
    paths never read (the output); ``lazy`` keeps images on disk (decoded when
    read, :class:`~.stream.ImageSamples`). Raises :class:`QDeployError` on bad input.
    """
    for val, allowed, what in ((layout, LAYOUTS, "layout"), (channels, CHANNELS, "channels"),
                               (resize, RESIZE_MODES, "resize")):
        if val not in allowed:
            raise QDeployError(f"unknown {what} '{val}'; choose one of {', '.join(allowed)}")
    if not 0 <= int(pad) <= 255:
        raise QDeployError(f"--pad must be a pixel value 0..255, got {pad}")
    hw = parse_size(size)
    srcs = collect(paths, exclude, on_warning)
    if srcs[0].is_image:
        recipe = image_recipe(size=hw or (0, 0), resize=resize, pad=pad, channels=channels,
                              layout=layout, preset=preset, mean=mean, std=std, sources=[],
                              limit=limit, seed=seed)
        if hw is None:
            recipe["size"] = None
        _check_memory(srcs, hw, limit, 1 if channels == "gray" else 3)
        x, used = _build_images(srcs, recipe, limit, seed, strict, on_warning, on_progress, lazy)
        recipe["size"] = list(x.shape[2:4] if layout == "nchw" else x.shape[1:3])
        recipe["sources"] = [{"name": s.name, "sha256": s.sha256()} for s in used]
    else:
        if hw is not None or mean is not None or std is not None:
            raise QDeployError("--size, --mean and --std apply to images; tensor files are "
                               "used as they are (preprocess them before saving)")
        x, counts = _build_tensors(srcs, limit, seed, on_progress)
        recipe = tensor_recipe(sample_shape=x.shape[1:], layout=layout, sources=[],
                               limit=limit, seed=seed)
        recipe["sources"] = [{"name": s.name, "sha256": s.sha256(), "count": c}
                             for s, c in zip(srcs, counts)]
    if len(x) < 2:
        _warn(on_warning, f"only {len(x)} sample: too few to calibrate (use 100 or more "
              "representative inputs)", strict)
    return CalibSet(x if isinstance(x, ImageSamples) else np.ascontiguousarray(x, dtype=np.float32), recipe)


def _check_npz_path(path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise QDeployError(f"output {path} must end in .npz (a calibration set is an .npz file)")
    return path


def save_set(cs: CalibSet, path) -> None:
    """Write ``cs`` to ``path`` (.npz) atomically with deterministic bytes."""
    path = _check_npz_path(path)
    write_npz(path, {"x": np.ascontiguousarray(cs.x, dtype=np.float32),
                     "recipe": np.array([dumps_json(cs.recipe)])})


def load_set(path, lazy: bool = False) -> CalibSet:
    """Read a set written by :func:`save_set`; a file that is not one, a newer
    format version or NaN/Inf in the samples is a :class:`QDeployError`. With
    ``lazy`` the samples stay on disk (:class:`~.stream.NpzSamples`, read a batch
    at a time) when the set is stored uncompressed, as qdeploy writes it."""
    path = Path(path)
    if not path.is_file():
        raise QDeployError(f"no such calibration set: {path}")
    hint = "build one with: qdeploy calib build IMAGES... -o SET.npz"
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):     # a bare .npy tensor: no recipe to check it against
            raise QDeployError(f"{path} is a bare tensor file, not a qdeploy calibration set; build one "
                               f"with: qdeploy calib build {path} -o SET.npz (quantize --calib takes it as is)")
        with loaded as z:
            if hasattr(z, "files") and "x" in z.files and "recipe" not in z.files:   # tensors, no recipe
                raise QDeployError(f"{path} holds samples 'x' but no 'recipe' entry, so it is not a qdeploy "
                                   f"calibration set; make one with: qdeploy calib build {path} -o SET.npz "
                                   "(quantize --calib takes it as is)")
            if not hasattr(z, "files") or "x" not in z.files or "recipe" not in z.files:
                raise QDeployError(f"{path} is not a qdeploy calibration set (needs entries "
                                   f"'x' and 'recipe'); {hint}")
            x, r = (None if lazy else z["x"]), z["recipe"]
            text = str(r.reshape(-1)[0]) if r.size == 1 and r.dtype.kind == "U" else ""
    except QDeployError:
        raise
    except Exception as e:
        raise QDeployError(f"cannot read calibration set {path}: {type(e).__name__}: {e}") from None
    try:
        recipe = json.loads(text)
    except json.JSONDecodeError:
        raise QDeployError(f"{path}: the recipe entry is not valid JSON; {hint}") from None
    if not isinstance(recipe, dict) or recipe.get("format") != FORMAT:
        raise QDeployError(f"{path} is not a qdeploy calibration set (format "
                           f"{recipe.get('format') if isinstance(recipe, dict) else '?'}); {hint}")
    if not isinstance(recipe.get("version"), int) or recipe["version"] > VERSION:
        raise QDeployError(f"{path} has calibration-set format version {recipe.get('version')}; this "
                           f"qdeploy reads up to {VERSION}: upgrade qdeploy or rebuild the set")
    check_recipe(recipe, str(path), hint)
    if x is None:
        try:
            x = open_samples(path)
        except QDeployError:
            raise
        except Exception as e:
            raise QDeployError(f"cannot read calibration set {path}: {type(e).__name__}: {e}") from None
    require_float(x, str(path))
    if x.dtype != np.float32 or x.ndim < 2 or len(x) == 0:
        raise QDeployError(f"{path}: samples must be a non-empty float32 N x ... array, got "
                           f"{x.dtype} {tuple(x.shape)}; {hint}")
    if not all_finite(x):
        raise QDeployError(f"{path} contains NaN or Inf values; rebuild the set from clean data")
    return CalibSet(x, recipe)


def _known(d) -> bool:
    return isinstance(d, (int, np.integer)) and d > 0


def _fmt(shape) -> str:
    return "x".join(str(d) if _known(d) else "?" for d in shape)


def check_against_model(cs: CalibSet, input_shape, name: str = "input") -> None:
    """Raise :class:`QDeployError` unless the set's samples fit a model input
    of ``input_shape`` (batch first; NCHW for image models, unknown dims as
    None/0/-1/str). An image set is checked for layout, channels and H/W, in
    that order, and the message names the ``calib build`` option to fix it."""
    shape = list(input_shape)
    sample = cs.sample_shape
    rec = cs.recipe
    what = f"model input '{name}' ({_fmt(shape)})"
    if rec.get("kind") != "images":
        if len(shape) != len(sample) + 1 or any(_known(m) and m != s for m, s in zip(shape[1:], sample)):
            raise QDeployError(f"calibration samples are {_fmt(sample)} but {what} takes "
                               f"{_fmt(shape[1:])} per sample; rebuild the set with that shape")
        return
    if len(shape) != 4:
        raise QDeployError(f"{what} is not an image input N x C x H x W; calibrate it with "
                           ".npy tensors of its shape instead of images")
    nchw = rec["layout"] == "nchw"
    c, h, w = sample if nchw else (sample[2], sample[0], sample[1])
    mc, mh, mw = shape[1:] if nchw else (shape[3], shape[1], shape[2])
    fits = lambda dims, want: all(not _known(m) or m == v for m, v in zip(dims, want))
    if not fits((mc, mh, mw), (c, h, w)):
        other = shape[1:] if not nchw else [shape[3], shape[1], shape[2]]
        if fits(other, (c, h, w)):
            lay, fix = ("NCHW", "nhwc") if nchw else ("NHWC", "nchw")
            raise QDeployError(f"calibration set is {lay} ({_fmt(sample)}) but {what} is "
                               f"{fix.upper()}; rebuild with --layout {fix}")
        if _known(mc) and mc != c:
            fix = "gray" if mc == 1 else "rgb (or bgr)" if mc == 3 else None
            todo = f"rebuild with --channels {fix}" if fix else "use .npy tensors with that many channels"
            raise QDeployError(f"calibration set has {c} channel(s) ({rec['channels']}) but {what} "
                               f"takes {mc}; {todo}")
        raise QDeployError(f"calibration images are {h}x{w} but {what} takes {_fmt((mh, mw))} "
                           f"(HxW); rebuild with --size {mh}x{mw} (qdeploy never resizes silently)")


def bundled_images() -> list[Path]:
    """The photographs shipped in ``calib/`` (package ``qdeploy.calib_images``;
    from a source checkout, the repository's ``calib/`` folder)."""
    found: list[Path] = []
    try:
        from importlib import resources
        root = resources.files("qdeploy.calib_images")
        found = [Path(str(p)) for p in root.iterdir()
                 if Path(str(p)).suffix.lower() in images.IMAGE_SUFFIXES]
    except (ModuleNotFoundError, TypeError, FileNotFoundError):
        pass
    if not found:
        repo = Path(__file__).resolve().parents[2] / "calib"
        if repo.is_dir():
            found = [p for p in repo.iterdir() if p.suffix.lower() in images.IMAGE_SUFFIXES]
    if not found:
        raise QDeployError("the bundled calibration images are missing (qdeploy.calib_images); "
                           "reinstall qdeploy or pass --calib SET.npz|DIR")
    return sorted(found)


def images_for_model(folder_or_paths, input_shape, preset: str = "imagenet", *,
                     layout: str = "nchw", resize: str = "crop", name: str = "input",
                     limit: int | None = None, seed: int = 0,
                     on_warning: Callable[[str], None] | None = None, lazy: bool = False) -> CalibSet:
    """A calibration set for a model input of ``input_shape`` (N x C x H x W,
    or N x H x W x C with ``layout='nhwc'``) from images in ``folder_or_paths``
    (None: the bundled ``calib/`` photographs): resized to H x W, ``gray`` when
    C == 1 and ``rgb`` when C == 3; other channel counts are an error."""
    shape = list(input_shape)
    if len(shape) != 4:
        raise QDeployError(f"model input '{name}' ({_fmt(shape)}) is not an image input "
                           "N x C x H x W; give --calib with .npy tensors of its shape")
    c, h, w = shape[1:] if layout == "nchw" else (shape[3], shape[1], shape[2])
    if not (_known(h) and _known(w)):
        raise QDeployError(f"model input '{name}' has a dynamic size ({_fmt(shape)}); give "
                           "--input-shape 1xCxHxW")
    if c not in (1, 3):
        raise QDeployError(f"model input '{name}' ({_fmt(shape)}) takes {c} channels; images give "
                           "1 (gray) or 3 (rgb): give --calib with .npy tensors")
    cs = build_set(bundled_images() if folder_or_paths is None else folder_or_paths,
                   size=(int(h), int(w)), preset=preset, layout=layout,
                   channels="gray" if c == 1 else "rgb", resize=resize, limit=limit, seed=seed,
                   on_warning=on_warning, lazy=lazy)
    check_against_model(cs, shape, name)
    return cs


__all__ = ["CalibSet", "build_set", "save_set", "load_set", "inspect_set", "check_against_model",
           "images_for_model", "bundled_images", "parse_size", "describe"]
