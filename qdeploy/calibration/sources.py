"""Which input files make a calibration set, and reading tensor files.

Decisions where the issue is silent:

* Folders are walked recursively; files and folders whose name starts with a
  dot are skipped silently (editor and OS litter, half-written outputs). A
  folder is taken as users keep them: when it holds images, the images are the
  set and everything else in it (a labels ``.npy``, a ``.csv``, ``Thumbs.db``,
  a PDF) is skipped with one warning line naming what was skipped (notes
  beside the images, ``.md``/``.txt``/``.rst`` and ``__init__.py``, silently); a folder
  without images gives its tensor files (other files skipped the same way). It
  is refused only when neither remains. A file named explicitly must be an
  image or a tensor file.
* The list is sorted by display name; a file inside folder ``imgs`` is named
  ``imgs/sub/a.jpg`` (relative, so the recipe, and the bytes of the set, do
  not depend on where the folder lives). A file given twice counts once.
* Images and tensor files cannot be mixed in one set.
* A tensor file holds the model's preprocessed float input: integer and bool
  arrays (uint8 pixels, ids) are refused by :func:`require_float` (also for
  ``--eval`` and ``run --input``) rather than taken as float values.
* A tensor file holds a *batch*: its first axis counts samples (save a single
  sample with a leading axis of 1, i.e. the model's batch-1 input). A ``.npz``
  must hold one array, or an ``x`` entry (so a qdeploy set can be re-stacked).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import QDeployError
from .images import IMAGE_SUFFIXES

TENSOR_SUFFIXES = (".npy", ".npz")
NOTES = (".md", ".txt", ".rst")      # documentation beside the images: skipped without a word


@dataclass(frozen=True)
class Source:
    path: Path
    name: str

    @property
    def is_image(self) -> bool:
        return self.path.suffix.lower() in IMAGE_SUFFIXES

    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def _wanted(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES + TENSOR_SUFFIXES


def collect(paths, exclude=(), on_warning=None) -> list[Source]:
    """Files named by ``paths`` (files or folders), sorted; ``exclude`` holds
    paths never to read (the output file); ``on_warning(message)`` receives the
    line naming the files a folder's walk skipped."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    skip = {Path(p).resolve() for p in exclude}
    seen, out = set(), []
    for arg in paths:
        arg = Path(arg)
        if arg.is_dir():
            found = _folder_files(arg, skip, on_warning)
            items = [(p, f"{arg.resolve().name}/{p.relative_to(arg).as_posix()}") for p in found]
        elif arg.is_file():
            if arg.resolve() in skip:   # named as an input and as the output: writing would replace it
                raise QDeployError(f"{arg} is an input and also the output -o; qdeploy only reads its inputs: "
                                   "write the set to another file")
            if not _wanted(arg):
                raise QDeployError(f"unsupported file type '{arg.suffix}' ({arg}); give images "
                                   f"({', '.join(IMAGE_SUFFIXES)}) or .npy/.npz tensors")
            items = [(arg, arg.name)]
        else:
            raise QDeployError(f"no such file or folder: {arg}")
        for p, name in items:
            r = p.resolve()
            if r not in seen and r not in skip:
                seen.add(r)
                out.append(Source(p, name))
    if not out:
        raise QDeployError("no input files: give image files, folders of images, or .npy/.npz tensors")
    kinds = {s.is_image for s in out}
    if len(kinds) > 1:
        img = next(s for s in out if s.is_image)
        ten = next(s for s in out if not s.is_image)
        raise QDeployError(f"images ({img.name}) and tensor files ({ten.name}) cannot be mixed "
                           "in one calibration set; build them separately")
    return sorted(out, key=lambda s: s.name)


def _folder_files(folder: Path, skip: set, on_warning) -> list[Path]:
    """The images of ``folder`` (else its tensor files), warning once about the rest."""
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and p.resolve() not in skip
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    imgs = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    kept = imgs or [p for p in files if p.suffix.lower() in TENSOR_SUFFIXES]
    if not kept:
        held = f"; it holds {_names(folder, files)}" if files else ""
        raise QDeployError(f"no images found in folder {folder} (looked for "
                           f"{', '.join(IMAGE_SUFFIXES + TENSOR_SUFFIXES)}){held}")
    rest = [p for p in files if p not in set(kept) and p.suffix.lower() not in NOTES
            and p.name != "__init__.py"]
    if rest and on_warning is not None:
        what = "image" if imgs else "tensor"
        on_warning(f"skipped {len(rest)} non-{what} file(s) in folder {folder.name}: "
                   f"{_names(folder, rest)}; calibrating on its {len(kept)} {what} file(s)")
    return kept


def _names(folder: Path, files: list[Path], show: int = 5) -> str:
    names = [p.relative_to(folder).as_posix() for p in files]
    return ", ".join(names[:show]) + (f" and {len(names) - show} more" if len(names) > show else "")


FLOAT_HINT = ("qdeploy takes the model's preprocessed float input (as in training: resized, scaled "
              "and normalised); convert the array to float32 that way, or give the images to "
              "'qdeploy calib build IMAGES... -o SET.npz', which preprocesses them")


def require_float(a: np.ndarray, where: str) -> None:
    """Refuse samples that are not floats: integer or bool arrays are pixel values
    or ids, which the model would silently take as its normalised float input."""
    if a.dtype.kind != "f":
        raise QDeployError(f"{where} holds {a.dtype} values, not floats; {FLOAT_HINT}")


def read_tensor(src: Source) -> np.ndarray:
    """A tensor file as a float32 batch (N, ...); NaN/Inf and non-numeric data
    are errors naming the file."""
    try:
        loaded = np.load(src.path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            a = loaded
        else:
            with loaded as z:
                if "x" in z.files:
                    a = z["x"]
                elif len(z.files) == 1:
                    a = z[z.files[0]]
                else:
                    raise QDeployError(f"{src.name} holds {len(z.files)} arrays "
                                       f"({', '.join(z.files)}); store one array, or name the "
                                       "samples 'x'")
    except QDeployError:
        raise
    except Exception as e:
        raise QDeployError(f"cannot read tensor file {src.name}: {type(e).__name__}: {e}") from None
    require_float(a, f"tensor file {src.name}")
    if a.ndim < 2:
        raise QDeployError(f"tensor file {src.name} has shape {tuple(a.shape)}; store a batch "
                           "N x ... (one sample: add a leading axis of 1)")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        bad = int(np.argwhere(~np.isfinite(a).reshape(len(a), -1).all(axis=1))[0, 0])
        raise QDeployError(f"tensor file {src.name} contains NaN or Inf (first in sample {bad}); "
                           "clean the data before calibrating")
    return a
