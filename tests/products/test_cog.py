"""geohpc.cog: striped many-band input -> valid COG, lossless, right codec/predictor/overviews; rerun skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from geohpc.errors import ConfigError
from geohpc.products.cog import make_cog, overview_factors, validate_cog
from geohpc.products.cog.gdal_path import windows
from rio_cogeo.cogeo import cog_validate
from testutil import REPO, write_raster


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "py"))
    return subprocess.run([sys.executable, "-m", "geohpc", "cog", *args], capture_output=True, text=True, env=env, timeout=120)


def striped(tmp_path: Path, bands: int = 12, h: int = 300, w: int = 260, dtype: str = "float32", **kw: object) -> Path:
    rng = np.random.default_rng(1)
    data = (rng.normal(0, 1, (bands, h, w)) * 100).astype(dtype)
    return write_raster(tmp_path / "striped.tif", data, tiled=False, blockysize=1, interleave="pixel", **kw)


def assert_same_pixels(a: Path, b: Path) -> None:
    with rasterio.open(a) as x, rasterio.open(b) as y:
        assert (x.count, x.width, x.height, x.crs, x.transform) == (y.count, y.width, y.height, y.crs, y.transform)
        np.testing.assert_array_equal(x.read(), y.read())
        assert x.nodata == y.nodata or (np.isnan(x.nodata) and np.isnan(y.nodata))


def test_striped_float_becomes_valid_lossless_cog(tmp_path: Path) -> None:
    src = striped(tmp_path)
    out = make_cog(src, tmp_path / "out" / "cog.tif", blocksize=128)
    assert validate_cog(out, 128) == []
    valid, errors, _ = cog_validate(str(out))
    assert valid and not errors
    assert_same_pixels(src, out)
    with rasterio.open(out) as ds:
        assert ds.block_shapes[0] == (128, 128)
        assert ds.overviews(1) == overview_factors(260, 300, 128) == [2, 4]
        st = ds.tags(ns="IMAGE_STRUCTURE")
        assert st["COMPRESSION"] == "ZSTD" and st["PREDICTOR"] == "3" and st["INTERLEAVE"] == "BAND"
        # continuous data: overviews are averages of 2x2 blocks
        ov = ds.read(1, out_shape=(150, 130))
        full = ds.read(1)
        np.testing.assert_allclose(ov[0, 0], full[:2, :2].mean(), rtol=1e-5)
    assert sorted(p.name for p in out.parent.iterdir()) == ["cog.tif"]  # no temp files left
    assert out.stat().st_mode & 0o044  # readable by others, not mkstemp's 0600


def test_integer_uses_horizontal_predictor_and_keeps_nodata(tmp_path: Path) -> None:
    data = np.arange(200 * 180, dtype="int16").reshape(1, 200, 180)
    data[0, :10] = -9999
    src = write_raster(tmp_path / "int.tif", data, nodata=-9999)
    out = make_cog(src, tmp_path / "int_cog.tif", blocksize=64, compress="DEFLATE")
    assert validate_cog(out) == []
    assert_same_pixels(src, out)
    with rasterio.open(out) as ds:
        st = ds.tags(ns="IMAGE_STRUCTURE")
        assert st["COMPRESSION"] == "DEFLATE" and st["PREDICTOR"] == "2"
        assert ds.nodata == -9999


def test_class_map_keeps_colour_table_and_mode_overviews(tmp_path: Path) -> None:
    # 1-pixel checkerboard of classes 0 and 10: any averaging would invent class 5
    yy, xx = np.mgrid[0:256, 0:256]
    data = np.where((yy + xx) % 2 == 0, 0, 10).astype("uint8")
    data[:, :128] = 3
    src = write_raster(tmp_path / "classes.tif", data)
    cmap = {0: (0, 0, 0, 255), 3: (0, 255, 0, 255), 10: (255, 0, 0, 255)}
    with rasterio.open(src, "r+") as ds:
        ds.write_colormap(1, cmap)
    out = make_cog(src, tmp_path / "classes_cog.tif", blocksize=64)
    assert validate_cog(out) == []
    assert_same_pixels(src, out)
    with rasterio.open(out) as ds:
        assert ds.colormap(1)[10] == (255, 0, 0, 255) and ds.colormap(1)[3] == (0, 255, 0, 255)
        for f in ds.overviews(1):
            ov = ds.read(1, out_shape=(256 // f, 256 // f))
            assert set(np.unique(ov)) <= {0, 3, 10}


def test_nan_nodata_and_rio_cogeo_agree(tmp_path: Path) -> None:
    data = np.ones((2, 130, 140), "float32")
    data[:, :20] = np.nan
    src = write_raster(tmp_path / "nan.tif", data, nodata=float("nan"))
    out = make_cog(src, tmp_path / "nan_cog.tif", blocksize=64)
    assert cog_validate(str(out))[0]
    assert_same_pixels(src, out)


def test_rerun_skips_valid_output_and_force_rebuilds(tmp_path: Path) -> None:
    src = striped(tmp_path, bands=2, h=100, w=90)
    dst = tmp_path / "c.tif"
    r1 = run_cli(str(src), str(dst), "--blocksize", "64")
    assert r1.returncode == 0, r1.stderr
    assert r1.stdout.strip() == str(dst)
    mtime = dst.stat().st_mtime_ns
    r2 = run_cli(str(src), str(dst), "--blocksize", "64")
    assert r2.returncode == 0 and "skipped" in r2.stderr
    assert dst.stat().st_mtime_ns == mtime
    r3 = run_cli(str(src), str(dst), "--blocksize", "64", "--force")
    assert r3.returncode == 0 and dst.stat().st_mtime_ns != mtime


def test_check_mode(tmp_path: Path) -> None:
    src = striped(tmp_path, bands=1, h=100, w=90)
    dst = make_cog(src, tmp_path / "c.tif", blocksize=64)
    ok = run_cli("--check", str(dst))
    assert ok.returncode == 0 and ok.stdout.strip() == f"ok {dst}"
    bad = run_cli("--check", str(src))
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "not tiled" in bad.stderr and str(src) in bad.stderr


def test_validator_catches_layout_problems(tmp_path: Path) -> None:
    data = np.random.default_rng(0).random((1, 600, 600)).astype("float32")
    # tiled but no overviews on an image larger than one tile
    plain = write_raster(tmp_path / "plain.tif", data, tiled=True, blockxsize=256, blockysize=256)
    assert any("no overviews" in p for p in validate_cog(plain))
    # overviews added afterwards land after the image data: IFD order broken
    with rasterio.open(plain, "r+") as ds:
        ds.build_overviews([2, 4], rasterio.enums.Resampling.average)
    problems = validate_cog(plain)
    assert any("after image data" in p or "comes before" in p for p in problems), problems
    assert not cog_validate(str(plain))[0]  # the independent validator agrees
    # wrong block size is reported when one is expected
    out = make_cog(plain, tmp_path / "ok.tif", blocksize=256)
    assert validate_cog(out, 256) == [] and any("expected 512" in p for p in validate_cog(out, 512))
    # not a TIFF at all
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"hello world, not a tiff")
    assert validate_cog(junk)[0].startswith("not a readable TIFF")


def test_windows_cover_the_raster_once_within_budget(tmp_path: Path) -> None:
    src = striped(tmp_path, bands=8, h=300, w=260)
    with rasterio.open(src) as ds:
        budget = 260 * 8 * 4 * 37  # 37 rows of all bands
        wins = windows(ds, budget, 64)
        hits = np.zeros((300, 260), int)
        for w in wins:
            assert w.height * w.width * 8 * 4 <= budget
            hits[w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width] += 1
        assert (hits == 1).all() and wins[0].width == 260
        narrow = windows(ds, 64 * 8 * 4, 64)  # one row of all bands is over budget: column chunks
        assert {w.width for w in narrow} == {64, 260 - 256} and len(narrow) == 300 * 5


@pytest.mark.parametrize("bad", ["bs", "mem", "comp"])
def test_bad_settings_are_config_errors(tmp_path: Path, bad: str) -> None:
    src = striped(tmp_path, bands=1, h=40, w=40)
    args = {"bs": ["--blocksize", "100"], "mem": ["--mem", "lots"], "comp": ["--compress", "jpeg2000"]}[bad]
    r = run_cli(str(src), str(tmp_path / "o.tif"), *args)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.tif").exists()


def test_jpeg_rgb_with_internal_mask_keeps_mask_and_folder_output(tmp_path: Path) -> None:
    rgb = np.random.default_rng(5).integers(0, 255, (3, 300, 280)).astype("uint8")
    src = write_raster(tmp_path / "rgb.tif", rgb, tiled=True, blockxsize=128, blockysize=128,
                       compress="jpeg", photometric="ycbcr")
    mask = np.full((300, 280), 255, "uint8")
    mask[:50] = 0
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(src, "r+") as ds:
        ds.write_mask(mask)
    (tmp_path / "out").mkdir()
    out = make_cog(src, tmp_path / "out", blocksize=128)  # a folder: <folder>/<stem>.tif
    assert out == tmp_path / "out" / "rgb.tif"
    assert validate_cog(out, 128) == [] and cog_validate(str(out))[0]
    assert_same_pixels(src, out)  # the decoded JPEG pixels, kept losslessly
    with rasterio.open(out) as ds:
        np.testing.assert_array_equal(ds.read_masks(1), mask)
        assert ds.tags(ns="IMAGE_STRUCTURE")["INTERLEAVE"] == "PIXEL"
        assert (ds.read_masks(1, out_shape=(75, 70))[:12] == 0).all()  # overview masks too


def test_interleave_option_reaches_the_final_file(tmp_path: Path) -> None:
    src = striped(tmp_path, bands=6, h=130, w=140, dtype="int8")
    default = make_cog(src, tmp_path / "default.tif", blocksize=64)
    pixel = make_cog(src, tmp_path / "pixel.tif", blocksize=64, interleave="pixel")
    for out, want in ((default, "band"), (pixel, "pixel")):
        assert validate_cog(out, 64) == []
        assert_same_pixels(src, out)
        with rasterio.open(out) as ds:
            assert ds.profile["interleave"] == want and ds.block_shapes[0] == (64, 64)
            assert ds.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "2"
    with pytest.raises(ConfigError, match="interleave"):
        make_cog(src, tmp_path / "bad.tif", interleave="line")
