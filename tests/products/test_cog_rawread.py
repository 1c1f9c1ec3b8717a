"""geohpc.cog's reads: straight from the file (uncompressed strips), decoded once (compressed pixel interleave), the freeing copy."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from geohpc.errors import InputError
from geohpc.products.cog import assemble as assembly
from geohpc.products.cog import build, make_cog
from geohpc.products.cog.overviews import reduce2, reduce_into
from geohpc.products.cog.rawread import raw_reader
from geohpc.products.cog.spill import needs_spill, spill_reader
from rasterio.windows import Window
from testutil import write_raster


def data(bands: int, rows: int, cols: int, dtype: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.normal(0, 100, (bands, rows, cols)).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, (bands, rows, cols), endpoint=True).astype(dtype)


LAYOUTS = [
    ("float32", dict(interleave="pixel", blockysize=1)),
    ("int16", dict(interleave="pixel", blockysize=5)),  # 5-row strips, the last one short (23 rows)
    ("uint8", dict(interleave="band", blockysize=3)),
    ("float64", dict(interleave="band", blockysize=1, ENDIANNESS="BIG")),
    ("uint16", dict(interleave="pixel", blockysize=4, ENDIANNESS="BIG")),
]


@pytest.mark.parametrize(("dtype", "layout"), LAYOUTS)
def test_every_window_and_band_choice_reads_what_gdal_reads(tmp_path: Path, dtype: str, layout: dict) -> None:
    src = write_raster(tmp_path / "s.tif", data(7, 23, 37, dtype), tiled=False, **layout)
    with rasterio.open(src) as ds:
        read = raw_reader(ds, bounce=3 * 37 * 7 * np.dtype(dtype).itemsize)  # 3 rows at a time: chunked
        assert read is not None
        for w in (Window(0, 0, 37, 23), Window(0, 5, 37, 11), Window(9, 3, 17, 20), Window(36, 22, 1, 1)):
            for idx in ([1, 2, 3, 4, 5, 6, 7], [3, 4, 5], [7, 2, 5], [6]):
                out = np.full((len(idx), int(w.height), int(w.width)), 1, dtype)
                got = read(w, out, idx)
                assert got is out
                np.testing.assert_array_equal(out, ds.read(idx, window=w), err_msg=f"{w} {idx}")


@pytest.mark.parametrize("kind", ["deflate", "tiled", "nbits", "vsimem"])
def test_anything_but_one_array_on_disk_is_left_to_gdal(tmp_path: Path, kind: str) -> None:
    arr = data(3, 32, 32, "uint16")
    opts = {"deflate": dict(tiled=False, compress="deflate"), "tiled": dict(tiled=True, blockxsize=16, blockysize=16),
            "nbits": dict(tiled=False, nbits=12), "vsimem": dict(tiled=False)}[kind]
    src = write_raster(tmp_path / "s.tif", arr, **opts)
    name = str(src)
    if kind == "vsimem":
        name = "/vsimem/raw_s.tif"
        rasterio.shutil.copy(src, name, driver="GTiff")
    with rasterio.open(name) as ds:
        assert raw_reader(ds) is None


def test_a_file_shorter_than_its_strips_is_left_to_gdal_and_one_that_shrinks_is_a_one_line_error(tmp_path: Path) -> None:
    src = write_raster(tmp_path / "s.tif", data(4, 40, 30, "float32"), tiled=False, interleave="pixel", blockysize=1)
    with rasterio.open(src) as ds:
        read = raw_reader(ds)
        assert read is not None
        with open(src, "r+b") as f:  # the strips end at the pixel data's end: cut into the last rows
            f.truncate(os.path.getsize(src) - 30 * 4 * 4 * 5)
        with pytest.raises(InputError) as exc:
            read(Window(0, 32, 30, 8), np.empty((4, 8, 30), "float32"), [1, 2, 3, 4])
        msg = str(exc.value)
        assert "\n" not in msg and "s.tif" in msg and "rows 32-40" in msg and "re-create" in msg
    with rasterio.open(src) as ds:
        assert raw_reader(ds) is None  # a truncated file is not taken as one array on disk


def test_the_cog_of_a_striped_source_is_the_same_read_either_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capfd: pytest.CaptureFixture[str]) -> None:
    src = write_raster(tmp_path / "s.tif", data(9, 1100, 1600, "float32"), tiled=False, interleave="pixel", blockysize=1)
    raw = make_cog(src, tmp_path / "raw.tif", mem_budget=64 << 20)  # a tile row of 9 bands x2 > 48 MiB: band groups
    err = capfd.readouterr().err
    assert "read straight from the file" in err and "2 band group(s)" in err
    monkeypatch.setattr(build, "raw_reader", lambda ds: None)
    via_gdal = make_cog(src, tmp_path / "gdal.tif", mem_budget=64 << 20)
    assert "read straight from the file" not in capfd.readouterr().err
    with rasterio.open(raw) as a, rasterio.open(via_gdal) as b:
        assert a.overviews(1) == b.overviews(1) == [2, 4]
        np.testing.assert_array_equal(a.read(), b.read())
        for k in range(len(a.overviews(1))):
            with rasterio.open(raw, overview_level=k) as x, rasterio.open(via_gdal, overview_level=k) as y:
                np.testing.assert_array_equal(x.read(), y.read())


def test_copy_hands_the_copied_source_ranges_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = os.urandom(100_003)
    src, dst = tmp_path / "level.tmp", tmp_path / "cog.tif"
    src.write_bytes(b"H" * 4096 + payload)
    dst.write_bytes(b"")
    monkeypatch.setattr(assembly, "COPY_CHUNK", 8192)  # 13 chunks
    with open(src, "r+b") as s, open(dst, "r+b") as d:
        assembly._copy_range(s.fileno(), d.fileno(), 4096, 10, len(payload))
    assert dst.read_bytes()[10:] == payload
    left = src.read_bytes()
    assert left[:4096] == b"H" * 4096  # what was not copied is untouched
    assert left[4096:] == bytes(len(payload))  # what was copied is released (a hole reads as zeros)


def test_reduce_into_matches_the_band_by_band_reduction(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    for shape in ((3, 40, 22), (2, 64, 64)):
        x = rng.normal(0, 10, shape).astype("float32")
        fast_out = reduce_into(x, np.empty((shape[0], shape[1] // 2, shape[2] // 2), "float32"), None)
        slow = np.stack([reduce2(b, None) for b in x])
        np.testing.assert_allclose(fast_out, slow, rtol=2e-7, atol=1e-6)
    odd = rng.integers(0, 1000, (2, 9, 7)).astype("int16")  # odd sizes, integers: band by band, exact
    out = reduce_into(odd, np.empty((2, 5, 4), "int16"), -1)
    np.testing.assert_array_equal(out, np.stack([reduce2(b, -1) for b in odd]))


def test_a_compressed_pixel_interleaved_source_is_decoded_once_and_builds_the_same_cog(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    src = write_raster(tmp_path / "s.tif", data(9, 1100, 1600, "float32"), tiled=False, interleave="pixel",
                       blockysize=3, compress="deflate", predictor=3)
    decodes: list[list[int]] = []
    real = build.read_window

    def counted(ds, w, out, idx):  # noqa: ANN001, ANN202 - the GDAL read, counting the bands asked of it
        decodes.append(list(idx))
        return real(ds, w, out, idx)

    monkeypatch.setattr(build, "read_window", counted)
    spilled = make_cog(src, tmp_path / "spilled.tif", mem_budget=64 << 20)
    err = capfd.readouterr().err
    assert "decoded once, later groups from a scratch copy" in err and "2 band group(s)" in err
    assert decodes and all(idx == list(range(1, 10)) for idx in decodes)  # every GDAL read takes all bands
    assert sum(1 for _ in tmp_path.glob(".*spill*")) == 0  # the scratch copy is gone
    monkeypatch.setattr(build, "needs_spill", lambda ds, groups: False)
    plain = make_cog(src, tmp_path / "plain.tif", mem_budget=64 << 20)
    with rasterio.open(spilled) as a, rasterio.open(plain) as b:
        assert a.overviews(1) == b.overviews(1) == [2, 4]
        np.testing.assert_array_equal(a.read(), b.read())
    for k in range(2):
        with rasterio.open(spilled, overview_level=k) as x, rasterio.open(plain, overview_level=k) as y:
            np.testing.assert_array_equal(x.read(), y.read())


def test_a_scratch_copy_that_lost_its_rows_is_a_one_line_error(tmp_path: Path) -> None:
    src = write_raster(tmp_path / "s.tif", data(4, 20, 16, "int16"), tiled=False, interleave="pixel", compress="lzw")
    scratch = tmp_path / ".out.tif.1.spill.tmp.tif"
    with rasterio.open(src) as ds:
        assert needs_spill(ds, [[1, 2], [3, 4]]) and not needs_spill(ds, [[1, 2, 3, 4]])
        with spill_reader(ds, [[1, 2], [3, 4]], scratch, lambda w, out, idx: ds.read(idx, window=w, out=out), 700) as read:
            first = read(Window(0, 0, 16, 20), np.empty((2, 20, 16), "int16"), [1, 2])
            np.testing.assert_array_equal(first, ds.read([1, 2]))
            later = read(Window(0, 0, 16, 10), np.empty((2, 10, 16), "int16"), [3, 4])
            np.testing.assert_array_equal(later, ds.read([3, 4], window=Window(0, 0, 16, 10)))
            os.truncate(scratch, 0)
            with pytest.raises(InputError) as exc:
                read(Window(0, 10, 16, 10), np.empty((2, 10, 16), "int16"), [3, 4])
            assert "\n" not in str(exc.value) and "rows 10-20" in str(exc.value) and "rerun" in str(exc.value)
        assert not scratch.exists()
    plain = write_raster(tmp_path / "p.tif", data(4, 20, 16, "int16"), tiled=False, interleave="pixel")
    banded = write_raster(tmp_path / "b.tif", data(4, 20, 16, "int16"), tiled=False, interleave="band", compress="lzw")
    for path in (plain, banded):
        with rasterio.open(path) as ds:
            assert not needs_spill(ds, [[1, 2], [3, 4]])
