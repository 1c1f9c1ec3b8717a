"""tilecells: every layout decoded by hand gives GDAL's values, each touched block decoded once, memory by budget."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from geohpc.classify import tilecells
from geohpc.classify.sample import read_cells
from geohpc.classify.tilecells import tiff_layout, workers_for
from rasterio.windows import Window
from testutil import write_raster

TILED = {"tiled": True, "blockxsize": 32, "blockysize": 32}
PROFILES = [
    pytest.param({**TILED, "interleave": il, **codec}, id=f"{il}-{name}")
    for il in ("pixel", "band")
    for name, codec in (("none", {}), ("deflate", {"compress": "deflate"}), ("zstd", {"compress": "zstd"}),
                        ("deflate-pred2", {"compress": "deflate", "predictor": 2}), ("zstd-pred2", {"compress": "zstd", "predictor": 2}))
] + [pytest.param({"interleave": "pixel", "compress": "deflate", "blockysize": 7}, id="strips-pixel-deflate"),
     pytest.param({"interleave": "band", "compress": "zstd", "blockysize": 5}, id="strips-band-zstd")]


def _gdal_values(path, rows, cols) -> np.ndarray:
    with rasterio.open(path) as ds:
        return np.stack([ds.read(window=Window(int(c), int(r), 1, 1))[:, 0, 0] for r, c in zip(rows, cols, strict=True)], axis=1)


def _data(dtype: str, rng) -> np.ndarray:
    a = rng.integers(-100, 100, (5, 70, 90)) if dtype != "float32" else rng.normal(size=(5, 70, 90)) * 10
    return a.astype(dtype)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("dtype", ["int8", "float32", "int16"])
def test_every_layout_decodes_to_gdal_values(tmp_path, profile, dtype):
    rng = np.random.default_rng(3)
    if dtype == "float32" and profile.get("predictor") == 2:
        profile = {**profile, "predictor": 3}  # the float predictor
    tif = write_raster(tmp_path / "e.tif", _data(dtype, rng), **profile)
    lay = tiff_layout(tif)
    assert lay is not None and lay.bands == 5 and lay.dtype == np.dtype(dtype)
    rows, cols = rng.integers(0, 70, 300), rng.integers(0, 90, 300)  # edge tiles and edge strips included
    got = read_cells(rasterio.open(tif), rows, cols, method="tiles")
    np.testing.assert_array_equal(got, _gdal_values(tif, rows, cols))


def test_each_touched_block_is_decoded_once(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    real = tilecells.decode_block
    for il in ("pixel", "band"):
        tif = write_raster(tmp_path / f"{il}.tif", _data("int8", rng), interleave=il, compress="deflate", **TILED)
        calls = []
        monkeypatch.setattr(tilecells, "decode_block", lambda lay, raw, n, calls=calls: calls.append(1) or real(lay, raw, n))
        rows, cols = rng.integers(0, 70, 400), rng.integers(0, 64, 400)  # 3 x 2 of the 3 x 3 tiles
        read_cells(rasterio.open(tif), rows, cols, method="auto")
        touched = len(set(zip((rows // 32).tolist(), (cols // 32).tolist(), strict=True)))
        assert touched == 6 and len(calls) == touched * (5 if il == "band" else 1)


def test_budget_bounds_blocks_decoded_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOHPC_THREADS", "8")
    tif = write_raster(tmp_path / "e.tif", _data("float32", np.random.default_rng(5)), compress="zstd", **TILED)
    lay = tiff_layout(tif)
    one = lay.block_bytes() + int(lay.counts.max())
    assert lay.block_bytes() == 32 * 32 * 5 * 4
    assert [workers_for(lay, b) for b in (1, one, 3 * one + 1, 100 * one)] == [1, 1, 3, 8]


def test_sparse_blocks_read_as_nodata_and_other_codecs_fall_back_to_gdal(tmp_path):
    rng = np.random.default_rng(6)
    tif = tmp_path / "sparse.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=64, height=64, count=3, dtype="int8", nodata=-128, compress="zstd",
                       crs="EPSG:32635", transform=rasterio.transform.from_origin(0, 640, 10, 10), SPARSE_OK=True, **TILED) as ds:
        ds.write(np.ones((3, 32, 32), np.int8), window=Window(0, 0, 32, 32))
    rows, cols = np.array([1, 40, 40]), np.array([1, 1, 40])
    np.testing.assert_array_equal(read_cells(rasterio.open(tif), rows, cols, method="tiles"), [[1, -128, -128]] * 3)
    lzw = write_raster(tmp_path / "lzw.tif", _data("int8", rng), compress="lzw", **TILED)
    assert tiff_layout(lzw) is None
    r, c = rng.integers(0, 70, 50), rng.integers(0, 90, 50)
    np.testing.assert_array_equal(read_cells(rasterio.open(lzw), r, c), _gdal_values(lzw, r, c))


def test_deflate_without_libdeflate_falls_back_to_zlib(tmp_path, monkeypatch):
    rng = np.random.default_rng(7)
    tif = write_raster(tmp_path / "e.tif", _data("float32", rng), interleave="band", compress="deflate", predictor=3, **TILED)
    rows, cols = rng.integers(0, 70, 100), rng.integers(0, 90, 100)
    assert tilecells.libdeflate() is not None  # rasterio's wheel ships it: the fast path is the one tested above
    monkeypatch.setattr(tilecells, "libdeflate", lambda: None)
    np.testing.assert_array_equal(read_cells(rasterio.open(tif), rows, cols, method="tiles"), _gdal_values(tif, rows, cols))
