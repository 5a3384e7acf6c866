"""Calibration sets (qdeploy/calibration/dataset.py, qdeploy calib build|inspect).

References are independent: pixel values are recomputed here with Pillow and
numpy from the formulas written in this file, synthetic images have known
colours, and the CLI is judged by exit code, stderr and the file system.
"""
import hashlib
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from qdeploy.calibration.dataset import (CalibSet, build_set, bundled_images, check_against_model,
                                         images_for_model, inspect_set, load_set, save_set)
from qdeploy.cli import main
from qdeploy.errors import QDeployError
from tests.helpers import ROOT

CALIB = ROOT / "calib"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def _solid(path, colour, size=(40, 30), mode="RGB"):
    Image.new(mode, size, colour).save(path)
    return path


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _build(paths, **kw):
    warnings = []
    cs = build_set(paths, on_warning=warnings.append, **kw)
    return cs, warnings


# ---- the bundled photographs ------------------------------------------------

def test_bundled_images_are_real_and_documented():
    files = bundled_images()
    assert len(files) >= 16
    assert sum(f.stat().st_size for f in CALIB.iterdir()) < 1_000_000
    provenance = (CALIB / "PROVENANCE.md").read_text()
    for f in files:
        with Image.open(f) as im:
            assert max(im.size) <= 320 and im.mode == "RGB"
        assert f"| {f.name} |" in provenance


def test_build_on_bundled_images_round_trips(tmp_path):
    cs, warnings = _build([CALIB], size="48x64")
    assert warnings == []
    names = sorted(p.name for p in bundled_images())
    assert cs.x.shape == (len(names), 3, 48, 64) and cs.x.dtype == np.float32
    assert [s["name"] for s in cs.recipe["sources"]] == [f"calib/{n}" for n in names]
    for s in cs.recipe["sources"]:
        assert s["sha256"] == hashlib.sha256((ROOT / s["name"]).read_bytes()).hexdigest()
    save_set(cs, tmp_path / "s.npz")
    back = load_set(tmp_path / "s.npz")
    assert back.recipe == cs.recipe
    np.testing.assert_array_equal(back.x, cs.x)
    # the file is a plain npz: readable without qdeploy
    with np.load(tmp_path / "s.npz") as z:
        assert json.loads(str(z["recipe"][0]))["size"] == [48, 64]


def test_deterministic_bytes_also_when_the_folder_moves(tmp_path):
    for out in ("a.npz", "b.npz"):
        assert _cli("calib", "build", CALIB, "--size", "32x32", "-q", "-o", tmp_path / out).exit_code == 0
    moved = tmp_path / "elsewhere" / "calib"
    shutil.copytree(CALIB, moved)
    assert _cli("calib", "build", moved, "--size", "32x32", "-q", "-o", tmp_path / "c.npz").exit_code == 0
    a, b, c = ((tmp_path / n).read_bytes() for n in ("a.npz", "b.npz", "c.npz"))
    assert a == b == c
    r = _cli("calib", "build", CALIB, "--size", "32x32", "-o", tmp_path / "d.npz")  # with progress
    assert r.exit_code == 0 and "wrote" in r.stdout and "16 x 3x32x32" in r.stdout
    assert (tmp_path / "d.npz").read_bytes() == a


# ---- numbers against a hand computation ---------------------------------------

def _hand_pixels(path, w, h, mode="RGB"):
    with Image.open(path) as im:
        return np.asarray(im.convert(mode).resize((w, h), Image.BILINEAR), dtype=np.float64)


@pytest.mark.parametrize("preset,mean,std", [
    ("imagenet", IMAGENET_MEAN * 255, IMAGENET_STD * 255),
    ("unit", np.zeros(3), np.full(3, 255.0)),
    ("symmetric", np.full(3, 127.5), np.full(3, 127.5)),
    ("raw", np.zeros(3), np.ones(3)),
])
def test_presets_match_hand_computation(preset, mean, std):
    img = CALIB / "coffee.jpg"
    cs, _ = _build([img], size="30x40", preset=preset, resize="stretch")
    want = ((_hand_pixels(img, 40, 30) - mean) / std).transpose(2, 0, 1)
    np.testing.assert_allclose(cs.x[0], want, atol=2e-6 * max(1, np.abs(want).max()))


def test_custom_mean_std_caffe_style_and_gray_imagenet():
    img = CALIB / "chelsea.jpg"
    caffe_mean, caffe_std = [103.53, 116.28, 123.675], [57.375, 57.12, 58.395]
    cs, _ = _build([img], size="16x16", resize="stretch", preset="raw", channels="bgr",
                   mean=caffe_mean, std=caffe_std)
    want = (_hand_pixels(img, 16, 16)[:, :, ::-1] - caffe_mean) / caffe_std
    np.testing.assert_allclose(cs.x[0], want.transpose(2, 0, 1), atol=1e-5)
    gray, _ = _build([img], size="16x16", resize="stretch", channels="gray")
    want = (_hand_pixels(img, 16, 16, "L") / 255 - IMAGENET_MEAN.mean()) / IMAGENET_STD.mean()
    np.testing.assert_allclose(gray.x[0, 0], want, atol=1e-5)


def test_mean_in_pixel_units_with_a_scaled_preset_is_refused():
    with pytest.raises(QDeployError, match="pixel units"):
        build_set([CALIB / "coffee.jpg"], preset="unit", mean=[123.675, 116.28, 103.53])


# ---- resize modes --------------------------------------------------------------

def test_stretch_gives_the_requested_size(tmp_path):
    cs, _ = _build([CALIB / "rocket.jpg"], size="17x23", resize="stretch")
    assert cs.x.shape == (1, 3, 17, 23)


def test_letterbox_pads_with_the_pad_value(tmp_path):
    img = _solid(tmp_path / "wide.png", (255, 0, 0), size=(100, 50))
    cs, _ = _build([img], size="64x64", resize="letterbox", pad=7, preset="raw")
    x = cs.x[0]
    assert x.shape == (3, 64, 64)
    assert (x[:, :16, :] == 7).all() and (x[:, 48:, :] == 7).all()
    np.testing.assert_array_equal(x[:, 17:47, :], np.array([255, 0, 0])[:, None, None] * np.ones((30, 64)))
    assert cs.recipe["pad"] == 7


def test_crop_takes_the_centre(tmp_path):
    a = np.zeros((100, 200, 3), np.uint8)
    a[:, :50] = (255, 0, 0)
    a[:, 50:150] = (0, 255, 0)
    a[:, 150:] = (0, 0, 255)
    Image.fromarray(a).save(tmp_path / "bands.png")
    cs, _ = _build([tmp_path / "bands.png"], size="50x50", resize="crop", preset="raw")
    x = cs.x[0]
    assert x.shape == (3, 50, 50)
    np.testing.assert_array_equal(x[1, :, 2:48], 255)
    assert x[0, :, 2:48].max() == 0 and x[2, :, 2:48].max() == 0
    assert x[0].mean() < 10 and x[2].mean() < 10  # neither side band made it in


def test_no_size_keeps_size_and_mixed_sizes_need_size(tmp_path):
    _solid(tmp_path / "a.png", (1, 2, 3), size=(40, 30))
    _solid(tmp_path / "b.png", (4, 5, 6), size=(40, 30))
    cs, _ = _build([tmp_path], preset="raw")
    assert cs.x.shape == (2, 3, 30, 40) and cs.recipe["size"] == [30, 40]
    _solid(tmp_path / "c.png", (7, 8, 9), size=(41, 30))
    with pytest.raises(QDeployError, match="differ in size.*--size"):
        build_set([tmp_path])


# ---- decoding ------------------------------------------------------------------

def test_exif_orientation_is_honoured(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = (250, 0, 0)
    a[:, 20:] = (0, 0, 250)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored image must be rotated 90 degrees clockwise for display
    Image.fromarray(a).save(tmp_path / "phone.jpg", quality=95, exif=exif)
    cs, _ = _build([tmp_path / "phone.jpg"], preset="raw", layout="nhwc")
    stored = np.asarray(Image.open(tmp_path / "phone.jpg").convert("RGB"), np.float32)
    upright = np.rot90(stored, k=-1)  # clockwise
    assert cs.x.shape == (1, 40, 20, 3)
    np.testing.assert_array_equal(cs.x[0], upright)
    assert cs.x[0, :15, :, 0].min() > 200 and cs.x[0, 25:, :, 2].min() > 200  # red on top


def test_gray_rgba_and_palette_are_converted(tmp_path):
    _solid(tmp_path / "g.png", 100, mode="L")
    Image.new("RGBA", (40, 30), (10, 20, 30, 0)).save(tmp_path / "t.png")
    pal = Image.new("P", (40, 30), 1)
    pal.putpalette([0, 0, 0, 200, 150, 50] + [0] * 762)
    pal.save(tmp_path / "p.png")
    cs, _ = _build([tmp_path], preset="raw")
    assert [s["name"].split("/")[-1] for s in cs.recipe["sources"]] == ["g.png", "p.png", "t.png"]
    np.testing.assert_array_equal(cs.x[0], np.full((3, 30, 40), 100))
    np.testing.assert_array_equal(cs.x[1], np.array([200, 150, 50])[:, None, None] * np.ones((30, 40)))
    np.testing.assert_array_equal(cs.x[2], np.array([10, 20, 30])[:, None, None] * np.ones((30, 40)))
    gray, _ = _build([tmp_path / "p.png"], preset="raw", channels="gray")
    assert gray.x.shape == (1, 1, 30, 40)
    assert abs(gray.x[0, 0, 0, 0] - (0.299 * 200 + 0.587 * 150 + 0.114 * 50)) <= 1


def test_bgr_swaps_channels_and_nhwc_transposes():
    img = [CALIB / "flower.jpg", CALIB / "china.jpg"]
    rgb, _ = _build(img, size="24x24", preset="raw")
    bgr, _ = _build(img, size="24x24", preset="raw", channels="bgr")
    np.testing.assert_array_equal(bgr.x, rgb.x[:, ::-1])
    rgb_in, _ = _build(img, size="24x24")
    bgr_in, _ = _build(img, size="24x24", channels="bgr")
    np.testing.assert_allclose(bgr_in.x, rgb_in.x[:, ::-1], atol=1e-6)  # mean/std follow the swap
    nhwc, _ = _build(img, size="24x24", layout="nhwc")
    np.testing.assert_array_equal(nhwc.x, rgb_in.x.transpose(0, 2, 3, 1))


def test_limit_and_seed_choose_a_sorted_reproducible_subset():
    all_names = [s["name"] for s in _build([CALIB], size="8x8")[0].recipe["sources"]]
    picks = []
    for seed in (0, 0, 1, 2, 3):
        cs, _ = _build([CALIB], size="8x8", limit=5, seed=seed)
        names = [s["name"] for s in cs.recipe["sources"]]
        assert len(names) == 5 and names == sorted(names) and set(names) <= set(all_names)
        assert cs.recipe["limit"] == 5 and cs.recipe["seed"] == seed
        picks.append(tuple(names))
    assert picks[0] == picks[1]
    assert len(set(picks)) >= 3
    assert len(_build([CALIB], size="8x8", limit=100)[0].x) == len(all_names)


def test_corrupt_image_is_skipped_with_a_warning_named(tmp_path):
    _solid(tmp_path / "a.png", (1, 2, 3))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    _solid(tmp_path / "c.png", (4, 5, 6))
    cs, warnings = _build([tmp_path], preset="raw")
    assert len(cs.x) == 2 and len(warnings) == 1 and "broken.jpg" in warnings[0]
    with pytest.raises(QDeployError, match="broken.jpg"):
        build_set([tmp_path], strict=True)


def test_folder_as_users_keep_it_calibrates_on_its_images(tmp_path):
    """Images beside a labels .npy, a .csv and Thumbs.db: the images are the set,
    one warning line names what was skipped (dot files stay silent)."""
    _solid(tmp_path / "a.png", (1, 2, 3))
    (tmp_path / "sub").mkdir()
    _solid(tmp_path / "sub" / "b.jpg", (4, 5, 6))
    np.save(tmp_path / "labels.npy", np.arange(2))
    (tmp_path / "labels.csv").write_text("a.png,cat\n")
    (tmp_path / "Thumbs.db").write_bytes(b"\0" * 16)
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "README.md").write_text("cats")
    cs, warnings = _build([tmp_path], preset="raw", size=(8, 8))
    assert cs.count == 2 and [s["name"].split("/", 1)[1] for s in cs.recipe["sources"]] == ["a.png", "sub/b.jpg"]
    assert len(warnings) == 1
    assert warnings[0].startswith("skipped 3 non-image file(s)") and "Thumbs.db, labels.csv, labels.npy" in warnings[0]
    r = _cli("calib", "build", tmp_path, "--size", "8x8", "-q", "-o", tmp_path.parent / "litter_set.npz")
    assert r.exit_code == 0 and r.stderr.count("warning: ") == 1 and "Thumbs.db" in r.stderr


# ---- tensors -------------------------------------------------------------------

def test_tensor_files_are_stacked(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 3, 8, 8)), rng.normal(size=(3, 3, 8, 8)).astype(np.float16)
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "b.npz", x=b)
    cs, _ = _build([tmp_path])
    np.testing.assert_array_equal(cs.x, np.concatenate([a, b]).astype(np.float32))
    assert cs.recipe["kind"] == "tensors" and cs.recipe["sample_shape"] == [3, 8, 8]
    assert [s["count"] for s in cs.recipe["sources"]] == [2, 3]
    report = inspect_set(cs)
    assert report["count"] == 5 and len(report["channels"]) == 3
    sub, _ = _build([tmp_path], limit=2, seed=4)
    assert len(sub.x) == 2
    check_against_model(cs, (1, 3, 8, 8), "x")
    with pytest.raises(QDeployError, match="3x8x8"):
        check_against_model(cs, (1, 3, 9, 8), "x")


# ---- inspect -------------------------------------------------------------------

def test_inspect_statistics_match_numpy():
    cs, _ = _build([CALIB], size="16x16")
    rep = inspect_set(cs)
    x = cs.x.astype(np.float64)
    for c in rep["channels"]:
        xc = x[:, c["channel"]]
        assert c["mean"] == pytest.approx(xc.mean(), abs=1e-9)
        assert c["std"] == pytest.approx(xc.std(), rel=1e-9)
        assert (c["min"], c["max"]) == (xc.min(), xc.max())
    assert rep["warnings"] == [] and rep["duplicates"] == [] and rep["count"] == len(x)


def test_inspect_warns_when_values_do_not_look_like_the_recipe(tmp_path):
    imgs = [CALIB / "coffee.jpg", CALIB / "rocket.jpg"]
    raw, _ = _build(imgs, size="16x16", preset="raw")
    unit, _ = _build(imgs, size="16x16", preset="unit")
    imagenet, _ = _build(imgs, size="16x16", preset="imagenet")
    save_set(CalibSet(raw.x, unit.recipe), tmp_path / "bad.npz")
    r = _cli("calib", "inspect", tmp_path / "bad.npz")
    assert r.exit_code == 0 and "never scaled" in r.stderr and "0..255" in r.stderr
    assert any("never scaled" in w for w in inspect_set(CalibSet(raw.x, imagenet.recipe))["warnings"])
    assert any("no negative" in w for w in inspect_set(CalibSet(unit.x, imagenet.recipe))["warnings"])
    assert any("scaled twice" in w for w in inspect_set(CalibSet(unit.x, raw.recipe))["warnings"])
    for good in (raw, unit, imagenet):
        assert inspect_set(good)["warnings"] == []


def test_inspect_reports_duplicates_and_constant_images(tmp_path):
    shutil.copy(CALIB / "coffee.jpg", tmp_path / "a.jpg")
    shutil.copy(CALIB / "coffee.jpg", tmp_path / "b.jpg")
    _solid(tmp_path / "black.png", (0, 0, 0))
    cs, _ = _build([tmp_path], size="16x16")
    rep = inspect_set(cs)
    assert rep["duplicates"] == [[f"{tmp_path.name}/a.jpg", f"{tmp_path.name}/b.jpg"]]
    assert [c["sample"] for c in rep["constant"]] == [f"{tmp_path.name}/black.png"]
    assert sum("duplicates" in w for w in rep["warnings"]) == 1
    assert sum("flat image" in w for w in rep["warnings"]) == 1


def test_inspect_json_is_stable(tmp_path):
    assert _cli("calib", "build", CALIB, "--size", "8x8", "-q", "-o", tmp_path / "s.npz").exit_code == 0
    a = _cli("calib", "inspect", tmp_path / "s.npz", "--json")
    b = _cli("calib", "inspect", tmp_path / "s.npz", "--json")
    assert a.exit_code == 0 and a.stdout == b.stdout
    rep = json.loads(a.stdout)
    assert rep["count"] == 16 and rep["shape"] == [16, 3, 8, 8] and rep["recipe"]["preset"] == "imagenet"
    text = _cli("calib", "inspect", tmp_path / "s.npz")
    assert text.exit_code == 0 and "16 samples" in text.stdout


# ---- the model check -------------------------------------------------------------

def test_check_against_model():
    cs, _ = _build([CALIB / "coffee.jpg", CALIB / "rocket.jpg"], size="32x48")
    check_against_model(cs, (1, 3, 32, 48), "images")
    check_against_model(cs, ("N", 3, None, -1), "images")  # dynamic dims fit
    with pytest.raises(QDeployError, match="--layout nhwc"):
        check_against_model(cs, (1, 32, 48, 3), "images")
    with pytest.raises(QDeployError, match="--channels gray"):
        check_against_model(cs, (1, 1, 32, 48), "images")
    with pytest.raises(QDeployError, match="--size 64x64"):
        check_against_model(cs, (1, 3, 64, 64), "images")
    with pytest.raises(QDeployError, match="'images'"):
        check_against_model(cs, (1, 3, 32), "images")
    nhwc, _ = _build([CALIB / "coffee.jpg", CALIB / "rocket.jpg"], size="32x48", layout="nhwc")
    check_against_model(nhwc, (1, 32, 48, 3), "images")
    with pytest.raises(QDeployError, match="--layout nchw"):
        check_against_model(nhwc, (1, 3, 32, 48), "images")


def test_images_for_model_uses_the_bundled_photographs():
    gray = images_for_model(None, (1, 1, 28, 28), preset="unit")
    assert gray.x.shape == (len(bundled_images()), 1, 28, 28) and gray.recipe["channels"] == "gray"
    assert 0 <= gray.x.min() and gray.x.max() <= 1
    rgb = images_for_model(None, [1, 3, 20, 30], limit=4)
    assert rgb.x.shape == (4, 3, 20, 30)
    with pytest.raises(QDeployError, match="4 channels"):
        images_for_model(None, (1, 4, 20, 30))
    with pytest.raises(QDeployError, match="--input-shape"):
        images_for_model(None, (1, 3, "h", "w"))


# ---- bad input via the CLI: exit 2, one line, nothing written --------------------

def _bad_cases(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.jpg").write_bytes(b"garbage")
    (broken / "y.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    np.save(mixed / "a.npy", np.zeros((2, 3, 8, 8)))
    np.save(mixed / "b.npy", np.zeros((2, 3, 9, 8)))
    nan = tmp_path / "nan.npy"
    np.save(nan, np.array([[[1.0, np.nan]]]))
    one = _solid(tmp_path / "one.png", (1, 2, 3))
    both = tmp_path / "both"
    both.mkdir()
    np.save(both / "a.npy", np.zeros((2, 3)))
    _solid(both / "b.png", (1, 2, 3))
    litter = tmp_path / "litter"
    litter.mkdir()
    (litter / "labels.csv").write_text("a,1\n")
    (litter / "Thumbs.db").write_bytes(b"\0")
    two = tmp_path / "two"
    two.mkdir()
    _solid(two / "a.png", (1, 2, 3))
    _solid(two / "b.png", (3, 2, 1))
    (two / "c.jpg").write_bytes(b"garbage")
    return {
        "empty folder": ([empty], "no images found"),
        "all unreadable": ([broken], "none of the 2"),
        "mixed tensor sizes": ([mixed], "mixed tensor shapes"),
        "nan in tensors": ([nan], "NaN"),
        "one image with --strict": ([one, "--strict"], "too few"),
        "unreadable with --strict": ([two, "--strict"], "c.jpg"),
        "missing path": ([tmp_path / "nope"], "no such file"),
        "images and tensors": ([both / "a.npy", both / "b.png"], "cannot be mixed"),
        "folder of no image": ([litter], "it holds Thumbs.db, labels.csv"),
        "wrong channel count of mean": ([one, "--mean", "0.1,0.2"], "2 values"),
        "gray with three means": ([one, "--channels", "gray", "--mean", "0.1,0.2,0.3"], "1 channel"),
        "bad size": ([one, "--size", "big"], "HxW"),
        "pixel-unit mean with unit preset": ([one, "--preset", "unit", "--mean", "123,116,103"],
                                             "pixel units"),
        "limit zero": ([one, "--limit", "0"], "--limit"),
        "size with tensors": ([mixed / "a.npy", "--size", "8x8"], "apply to images"),
    }


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path):
    for what, (args, msg) in _bad_cases(tmp_path).items():
        out = tmp_path / "out" / "set.npz"
        r = _cli("calib", "build", *args, "-q", "-o", out)
        assert r.exit_code == 2, (what, r.output)
        lines = r.stderr.strip().splitlines()  # warnings may name skipped files first
        errors = [ln for ln in lines if not ln.startswith("warning: ")]
        assert errors == lines[-1:] and errors[0].startswith("error: ") and msg in errors[0], (what, lines)
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir()), what
    r = _cli("calib", "build", CALIB, "-o", tmp_path / "set.npy")
    assert r.exit_code == 2 and ".npz" in r.stderr and not (tmp_path / "set.npy").exists()


def test_soft_problems_warn_and_still_build(tmp_path):
    cases = _bad_cases(tmp_path)
    for i, what in enumerate(("one image with --strict", "unreadable with --strict")):
        args = [a for a in cases[what][0] if a != "--strict"]
        out = tmp_path / f"soft{i}.npz"
        r = _cli("calib", "build", *args, "-q", "-o", out)
        assert r.exit_code == 0 and r.stderr.startswith("warning: "), (what, r.output)
        assert load_set(out).count >= 1


def test_load_set_rejects_what_is_not_a_set(tmp_path):
    np.savez(tmp_path / "plain.npz", x=np.zeros((2, 3), np.float32))
    for path, msg in ((tmp_path / "plain.npz", "not a qdeploy calibration set"),
                      (tmp_path / "none.npz", "no such")):
        r = _cli("calib", "inspect", path)
        assert r.exit_code == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1
    cs, _ = _build([CALIB / "coffee.jpg", CALIB / "rocket.jpg"], size="8x8")
    save_set(CalibSet(cs.x, {**cs.recipe, "version": 99}), tmp_path / "future.npz")
    with pytest.raises(QDeployError, match="version 99"):
        load_set(tmp_path / "future.npz")
    bad = cs.x.copy()
    bad[0, 0, 0, 0] = np.nan
    save_set(CalibSet(bad, cs.recipe), tmp_path / "nan.npz")
    with pytest.raises(QDeployError, match="NaN"):
        load_set(tmp_path / "nan.npz")
