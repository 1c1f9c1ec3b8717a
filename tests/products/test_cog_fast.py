"""geohpc.cog's one-read fast path: valid COG (ours + rio-cogeo), exact full resolution, GDAL-like overviews."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from geohpc.products.cog import assemble as assembly
from geohpc.products.cog import fast, make_cog, validate_cog
from geohpc.tiff import read_raw_tags
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rio_cogeo.cogeo import cog_validate
from testutil import write_raster


def striped(path: Path, data: np.ndarray, **kw: object) -> Path:
    return write_raster(path, data, tiled=False, blockysize=1, interleave="pixel", **kw)


def gdal_overviews(src: Path, tmp: Path, n: int) -> Path:
    """The same input with GDAL's own average overviews (the reference)."""
    ref = tmp / "gdal_ref.tif"
    shutil.copy(src, ref)
    with rasterio.open(ref, "r+") as ds:
        ds.build_overviews([2**k for k in range(1, n + 1)], Resampling.average)
    return ref


def levels(path: Path) -> list[np.ndarray]:
    """Every overview level of ``path`` exactly as stored (read through GDAL's overview datasets)."""
    out = []
    with warnings.catch_warnings(), rasterio.open(path) as ds:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # GDAL's overview datasets carry no georeferencing
        for k in range(len(ds.overviews(1))):
            with rasterio.open(path, overview_level=k) as ov:
                out.append(ov.read())
    return out


def check_cog(src: Path, out: Path, blocksize: int) -> None:
    assert validate_cog(out, blocksize) == []
    valid, errors, _ = cog_validate(str(out))
    assert valid and not errors, errors
    with rasterio.open(src) as a, rasterio.open(out) as b:
        assert (a.count, a.width, a.height, a.crs, a.transform, a.dtypes) == (b.count, b.width, b.height, b.crs, b.transform, b.dtypes)
        np.testing.assert_array_equal(a.read(), b.read())
        assert a.nodata == b.nodata or (np.isnan(a.nodata) and np.isnan(b.nodata))


@pytest.mark.parametrize(("bands", "dtype", "nodata"), [(12, "float32", None), (3, "uint8", None),
                                                       (2, "int16", -9999), (6, "float32", float("nan")),
                                                       (1, "uint16", 0), (5, "float64", -1.0)])
def test_fast_path_is_a_valid_exact_cog_with_gdal_average_overviews(tmp_path: Path, bands: int, dtype: str,
                                                                   nodata: float | None, capfd: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(3)
    data = rng.normal(0, 1, (bands, 256, 512)) * 100 + (1000 if dtype.startswith("u") else 0)
    data = np.clip(data, 0, 255) if dtype == "uint8" else data
    data = data.astype(dtype)
    if nodata is not None:
        data[:, 10:70, 33:91] = nodata  # whole and partial 2x2 blocks of nodata
        data[:, 101, 7] = nodata
    if dtype.startswith("float"):
        data[:, 200:203, 300:305] = np.nan  # NaN: skipped when nodata is NaN, propagated otherwise (as GDAL)
    src = striped(tmp_path / "in.tif", data, nodata=nodata)
    out = make_cog(src, tmp_path / "out.tif", blocksize=64)
    assert "one read + level files" in capfd.readouterr().err  # the fast path ran
    check_cog(src, out, 64)
    with rasterio.open(out) as ds:
        assert ds.overviews(1) == [2, 4, 8]
        st = ds.tags(ns="IMAGE_STRUCTURE")
        assert st["COMPRESSION"] == "ZSTD" and st["INTERLEAVE"] == ("PIXEL" if 1 < bands <= 4 else "BAND")
        assert st["PREDICTOR"] == ("3" if dtype.startswith("float") else "2")
    ours, ref = levels(out), levels(gdal_overviews(src, tmp_path, 3))
    for a, b in zip(ours, ref, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(np.isnan(a.astype("f8")), np.isnan(b.astype("f8")))
        if dtype.startswith("float"):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-3, equal_nan=True)
        else:
            assert np.abs(a.astype("i8") - b.astype("i8")).max() <= 1
        if nodata is not None and not np.isnan(nodata):
            np.testing.assert_array_equal(a == nodata, b == nodata)  # all-nodata blocks stay nodata, no others


def test_odd_sizes_average_the_pixels_that_exist(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    data = (rng.normal(0, 1, (5, 301, 203)) * 50).astype("int16")
    src = striped(tmp_path / "odd.tif", data, nodata=None)
    out = make_cog(src, tmp_path / "odd_cog.tif", blocksize=64)
    check_cog(src, out, 64)
    ovs = levels(out)
    assert [o.shape[1:] for o in ovs] == [(151, 102), (76, 51), (38, 26)]  # ceil(size / 2**l), as GDAL's
    prev = data.astype("f8")
    for ov in ovs:  # each level: 2x2 average of the level before; edge pixels average what exists
        h, w = prev.shape[1:]
        pad = np.full((prev.shape[0], h + h % 2, w + w % 2), np.nan)
        pad[:, :h, :w] = prev
        q = np.nanmean(pad.reshape(prev.shape[0], pad.shape[1] // 2, 2, pad.shape[2] // 2, 2), axis=(2, 4))
        q = np.trunc(q + np.copysign(0.5, q))
        np.testing.assert_array_equal(ov, q)
        prev = ov.astype("f8")


def test_band_groups_give_the_same_file_as_one_pass(tmp_path: Path) -> None:
    data = (np.random.default_rng(5).random((16, 300, 260)) * 1000).astype("float32")
    src = striped(tmp_path / "in.tif", data)
    with rasterio.open(src) as ds:
        groups, _ = fast.band_groups(ds, 64 << 20, 128)
        assert groups == [list(range(1, 17))]
        small, k = fast.band_groups(ds, 3 * 260 * 128 * 4 * 2 * 4 // 3 + 1, 128)  # room for 3 bands x 2 tile rows
        assert [len(g) for g in small] == [3, 3, 3, 3, 3, 1] and k == 1
        assert fast.band_groups(ds, 1000, 128) is None
    one = make_cog(src, tmp_path / "one.tif", blocksize=128)
    prof = dict(rasterio.open(src).profile)
    with rasterio.open(src) as ds:
        levels_ = [tmp_path / f"l{k}.tif" for k in range(3)]
        opts = dict(driver="GTiff", tiled=True, blockxsize=128, blockysize=128, interleave="BAND", compress="ZSTD",
                    predictor=3, zstd_level=1, bigtiff="IF_SAFER")
        prof.update(opts)
        for key in ("blockysize", "photometric"):
            prof.pop(key, None)
        prof.update(blockysize=128)
        fast.write_levels(ds, levels_, prof, 128, 3 * 260 * 128 * 4 * 2 * 4 // 3 + 1,
                          lambda w, out, idx: ds.read(idx, window=w, out=out), lambda a: True)
    assembly.assemble(levels_, tmp_path / "grouped.tif")
    assert validate_cog(tmp_path / "grouped.tif", 128) == []
    for a, b in zip(levels(one), levels(tmp_path / "grouped.tif"), strict=True):
        np.testing.assert_array_equal(a, b)
    with rasterio.open(one) as x, rasterio.open(tmp_path / "grouped.tif") as y:
        np.testing.assert_array_equal(x.read(), y.read())


@pytest.mark.parametrize("in_place", [True, False])
def test_bigtiff_layout_when_forced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_place: bool) -> None:
    data = (np.random.default_rng(6).random((7, 200, 330)) * 1000).astype("float32")
    src = striped(tmp_path / "in.tif", data, nodata=-1.0)
    monkeypatch.setattr(assembly, "BIGTIFF_LIMIT", 0)
    monkeypatch.setattr(assembly, "IN_PLACE", in_place)
    out = make_cog(src, tmp_path / "big.tif", blocksize=64)
    big, _, ifds = read_raw_tags(out)
    assert big and len(ifds) == 4
    check_cog(src, out, 64)
    with rasterio.open(out) as ds:
        assert ds.nodata == -1.0 and ds.overviews(1) == [2, 4, 8]


@pytest.mark.parametrize("in_place", [True, False])
def test_level0_in_place_and_copied_give_the_same_cog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_place: bool) -> None:
    data = (np.random.default_rng(10).normal(0, 1, (9, 300, 260)) * 100).astype("int16")
    src = striped(tmp_path / "in.tif", data, nodata=-32768)
    monkeypatch.setattr(assembly, "IN_PLACE", in_place)
    calls: list[int] = []
    real = assembly._insert_front
    monkeypatch.setattr(assembly, "_insert_front", lambda p, n: calls.append(r := real(p, n)) or r)
    out = make_cog(src, tmp_path / "c.tif", blocksize=64)
    check_cog(src, out, 64)
    assert bool(calls) == in_place and (not in_place or calls[0] % 512 == 0)  # whole blocks inserted (ext4/XFS)
    ref = tmp_path / "ref"
    ref.mkdir()
    monkeypatch.setattr(assembly, "IN_PLACE", False)
    other = make_cog(src, ref / "c.tif", blocksize=64)
    for a, b in zip(levels(out), levels(other), strict=True):
        np.testing.assert_array_equal(a, b)


def test_ghost_header_and_directories_match_gdal_cog_layout(tmp_path: Path) -> None:
    data = (np.random.default_rng(7).random((2, 200, 200)) * 100).astype("uint8")
    src = striped(tmp_path / "in.tif", data, nodata=0)
    with rasterio.open(src, "r+") as ds:
        ds.update_tags(PRODUCT="emb", VERSION="3")
        ds.set_band_description(1, "first")
    out = make_cog(src, tmp_path / "c.tif", blocksize=64)
    head = out.read_bytes()[:200]
    assert head[8:51] == b"GDAL_STRUCTURAL_METADATA_SIZE=000077 bytes\n"
    assert b"LAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\nKNOWN_INCOMPATIBLE_EDITION=NO\n" in head
    assert b"BLOCK_LEADER" not in head  # not claimed: we write no leaders
    _, _, ifds = read_raw_tags(out)
    main, *ovs = [{t[0]: t for t in d} for d in ifds]
    assert 254 not in main and 34735 in main and 42112 in main and 42113 in main  # geokeys, metadata, nodata
    for ov in ovs:
        assert ov[254][3] == b"\x01\x00\x00\x00" and 34735 not in ov and 33550 not in ov and 42113 in ov
    with rasterio.open(out) as ds:
        assert ds.tags()["PRODUCT"] == "emb" and ds.descriptions[0] == "first"


def test_class_map_and_mask_take_the_gdal_path(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    data = np.zeros((1, 200, 200), "uint8")
    data[:, ::2] = 3
    src = write_raster(tmp_path / "cls.tif", data)
    with rasterio.open(src, "r+") as ds:
        ds.write_colormap(1, {0: (0, 0, 0, 255), 3: (0, 255, 0, 255)})
    make_cog(src, tmp_path / "cls_cog.tif", blocksize=64)
    assert "mode overviews: the three-pass GDAL path" in capfd.readouterr().err
    rgb = np.random.default_rng(8).integers(0, 255, (3, 200, 200)).astype("uint8")
    src = write_raster(tmp_path / "rgb.tif", rgb)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(src, "r+") as ds:
        ds.write_mask(np.full((200, 200), 255, "uint8"))
    out = make_cog(src, tmp_path / "rgb_cog.tif", blocksize=64)
    assert "an internal mask: the three-pass GDAL path" in capfd.readouterr().err
    assert validate_cog(out) == []
    out = make_cog(src, tmp_path / "rgb_avg.tif", blocksize=64, overview_resampling="nearest")
    assert "nearest overviews" in capfd.readouterr().err


def test_leftover_level_files_of_a_killed_run_are_swept(tmp_path: Path) -> None:
    data = (np.random.default_rng(9).random((2, 130, 130)) * 100).astype("float32")
    src = striped(tmp_path / "in.tif", data)
    dst = tmp_path / "o.tif"
    stale = [tmp_path / f".o.tif.4242.l{k}.tmp.tif" for k in range(3)]
    for p in stale:
        p.write_bytes(b"x" * 100)
    make_cog(src, dst, blocksize=64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "o.tif"]


def test_pixel_interleave_asked_of_a_row_too_wide_takes_the_gdal_path(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Band groups fill band tiles one group at a time; a pixel tile holds every band, so it must not be grouped."""
    data = (np.random.default_rng(8).random((16, 256, 2048)) * 1000).astype("float32")
    src = striped(tmp_path / "in.tif", data)
    band = make_cog(src, tmp_path / "band.tif", mem_budget=64 << 20)
    assert "three-pass" not in capfd.readouterr().err  # grouped, on the fast path
    pixel = make_cog(src, tmp_path / "pixel.tif", mem_budget=64 << 20, interleave="pixel")
    assert "pixel-interleaved tile row of all bands too wide" in capfd.readouterr().err
    for out, want in ((band, "band"), (pixel, "pixel")):
        check_cog(src, out, 512)
        with rasterio.open(out) as ds:
            assert ds.profile["interleave"] == want


def test_the_next_window_read_ahead_gives_the_same_file(tmp_path: Path) -> None:
    data = (np.random.default_rng(9).random((6, 700, 300)) * 1000).astype("float32")
    data[:, 10:40, 20:90] = -9999
    src = striped(tmp_path / "in.tif", data, nodata=-9999)
    per_row = 300 * 128 * 4 * 6  # one tile row of all 6 bands
    budget = 4 * per_row * 4 // 3 + 1  # room for 4 tile rows: 2 windows + overviews, or 3-row windows alone
    with rasterio.open(src) as ds:
        groups, k, ahead = fast.read_plan(ds, budget, 128)
        assert groups == [list(range(1, 7))] and k == 1 and ahead
        assert fast.band_groups(ds, budget, 128) == (groups, 3)
        # room for 2 windows of 2 bands: 3 passes reading ahead rather than 2 passes of 3 bands without
        assert fast.read_plan(ds, 6 * per_row // 6 * 4 // 3 + 1, 128) == ([[1, 2], [3, 4], [5, 6]], 1, True)
        # no room for two windows of one band: one window at a time
        assert fast.read_plan(ds, 2 * per_row // 6 * 4 // 3 + 1, 128) == ([[b] for b in range(1, 7)], 1, False)
    one = make_cog(src, tmp_path / "one.tif", blocksize=128)  # 64M: one window of the whole file, nothing to read ahead
    with rasterio.open(src) as ds:  # the read-ahead path at this budget (make_cog's smallest is 64M)
        paths = [tmp_path / f"l{i}.tif" for i in range(4)]
        prof = dict(ds.profile, driver="GTiff", tiled=True, blockxsize=128, blockysize=128, interleave="BAND",
                    compress="ZSTD", predictor=3, zstd_level=1, bigtiff="IF_SAFER")
        prof.pop("photometric", None)
        calls: list[int] = []

        def read(w: object, out: np.ndarray, idx: list[int]) -> np.ndarray:
            calls.append(1)
            return ds.read(idx, window=w, out=out)

        assert fast.write_levels(ds, paths, prof, 128, budget, read, lambda a: True)
        assert len(calls) == 6  # ceil(700 / 128) windows of one tile row, each read once
    other = tmp_path / "ahead.tif"
    assembly.assemble(paths, other)
    assert validate_cog(other, 128) == []
    for a, b in zip(levels(one), levels(other), strict=True):
        np.testing.assert_array_equal(a, b)
    with rasterio.open(one) as x, rasterio.open(other) as y:
        np.testing.assert_array_equal(x.read(), y.read())


def test_a_read_error_ahead_stops_the_pass_with_that_error(tmp_path: Path) -> None:
    from geohpc.errors import InputError

    src = striped(tmp_path / "in.tif", np.ones((6, 700, 300), "float32"))
    budget = 4 * 300 * 128 * 4 * 6 * 4 // 3 + 1
    with rasterio.open(src) as ds:
        assert fast.read_plan(ds, budget, 128)[2]
        prof = dict(ds.profile, driver="GTiff", tiled=True, blockxsize=128, blockysize=128, interleave="BAND",
                    compress="ZSTD", predictor=3, bigtiff="IF_SAFER")
        calls: list[int] = []

        def read(w: object, out: np.ndarray, idx: list[int]) -> np.ndarray:
            calls.append(1)
            if len(calls) == 3:
                raise InputError(f"{src}: read error at window 3; check the input")
            return ds.read(idx, window=w, out=out)

        with pytest.raises(InputError, match="window 3"):
            fast.write_levels(ds, [tmp_path / f"l{i}.tif" for i in range(4)], prof, 128, budget, read, lambda a: True)
        assert len(calls) == 3  # nothing read after the error
