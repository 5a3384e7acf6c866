"""Calibration sets are read from disk a batch at a time (calibration/stream.py):
the lazy samples give exactly the saved values, and calibrating from them gives
the same ranges as from the loaded array."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

from qdeploy.calibration.calibrate import calibrate
from qdeploy.calibration.dataset import CalibSet, load_set, save_set
from qdeploy.calibration.recipe import tensor_recipe
from qdeploy.calibration.stream import NpzSamples, open_samples
from qdeploy.errors import QDeployError
from qdeploy.onnx_import import import_onnx
from qdeploy.passes import run_passes
from tests.helpers import model
from onnx import helper

RNG = np.random.default_rng(4)


def _set(tmp_path, n=13, shape=(3, 5, 4)):
    x = RNG.standard_normal((n, *shape)).astype(np.float32)
    rec = tensor_recipe(sample_shape=shape, layout="nchw", sources=[], limit=None, seed=0)
    path = tmp_path / "set.npz"
    save_set(CalibSet(x, rec), path)
    return path, x


def test_lazy_rows_are_the_saved_values(tmp_path):
    path, x = _set(tmp_path)
    cs = load_set(path, lazy=True)
    assert isinstance(cs.x, NpzSamples) and cs.x.shape == x.shape and len(cs.x) == 13
    np.testing.assert_array_equal(cs.x[2:7], x[2:7])
    np.testing.assert_array_equal(cs.x[-1], x[-1])
    np.testing.assert_array_equal(cs.x[[0, 5]], x[[0, 5]])
    np.testing.assert_array_equal(np.asarray(cs.x), x)
    h = cs.x.head(4)
    assert isinstance(h, NpzSamples) and len(h) == 4
    np.testing.assert_array_equal(h[1:9], x[1:4])
    np.testing.assert_array_equal(np.concatenate(list(cs.x.chunks(max_bytes=x[0].nbytes * 3))), x)


def test_compressed_member_is_loaded_whole(tmp_path):
    x = RNG.standard_normal((3, 2, 2)).astype(np.float32)
    np.savez_compressed(tmp_path / "c.npz", x=x)
    got = open_samples(tmp_path / "c.npz")
    assert isinstance(got, np.ndarray)
    np.testing.assert_array_equal(got, x)


def test_nan_in_a_lazy_set_is_refused(tmp_path):
    path, x = _set(tmp_path)
    x[9, 1, 2, 3] = np.nan
    save_set(CalibSet(x, load_set(path).recipe), path)
    with pytest.raises(QDeployError, match="NaN or Inf"):
        load_set(path, lazy=True)


def test_calibrating_from_disk_equals_calibrating_from_memory(tmp_path):
    m = model([helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
               helper.make_node("Relu", ["c"], ["y"])],
              {"x": (1, 3, 5, 4)}, ["y"], {"w": RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)})
    g = run_passes(import_onnx(m))
    path, x = _set(tmp_path)
    for method in ("minmax", "percentile"):
        a = calibrate(g, x, method=method, batch_size=4, progress=False).bounds()
        b = calibrate(g, load_set(path, lazy=True).x, method=method, batch_size=4, progress=False).bounds()
        assert a == b


def test_stored_member_offset_points_at_the_data(tmp_path):
    path, x = _set(tmp_path)
    with zipfile.ZipFile(path) as z:
        assert z.getinfo("x.npy").compress_type == zipfile.ZIP_STORED
    s = open_samples(path)
    raw = path.read_bytes()[s.offset:s.offset + x.nbytes]
    assert raw == x.tobytes()


def test_image_folder_is_decoded_when_read(tmp_path):
    from PIL import Image
    from qdeploy.calibration.dataset import images_for_model
    from qdeploy.calibration.stream import ImageSamples
    for k in range(5):
        Image.fromarray(RNG.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(tmp_path / f"{k}.png")
    (tmp_path / "labels.csv").write_text("x")
    warned = []
    eager = images_for_model(tmp_path, (1, 3, 16, 16), on_warning=warned.append)
    lazy = images_for_model(tmp_path, (1, 3, 16, 16), lazy=True)
    assert isinstance(lazy.x, ImageSamples) and lazy.x.shape == eager.x.shape == (5, 3, 16, 16)
    assert lazy.recipe == eager.recipe and len(warned) == 1
    np.testing.assert_array_equal(lazy.x[1:4], eager.x[1:4])
    np.testing.assert_array_equal(np.asarray(lazy.x.head(2)), eager.x[:2])


def test_numpy_style_indexing_of_lazy_samples(tmp_path):
    path, x = _set(tmp_path)
    lazy = load_set(path, lazy=True).x
    np.testing.assert_array_equal(lazy[:4, ..., ::-1], x[:4, ..., ::-1])
    np.testing.assert_array_equal(lazy[2, :, 1], x[2, :, 1])
    np.testing.assert_array_equal(lazy[..., 0], x[..., 0])
