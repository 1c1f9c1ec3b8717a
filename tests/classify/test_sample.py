"""sample: point readers, block-grouped and direct reads vs rasterio.sample, dropped points, int8 dequantisation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from geohpc.classify import sample as sample_mod
from geohpc.classify.points import read_points, write_gpkg_points
from geohpc.classify.sample import direct_layout, sample
from testutil import write_raster

ORIGIN = (500000.0, 5000000.0)


def _pts_csv(path: Path, xs, ys, labels, ids=None) -> Path:
    df = pd.DataFrame({"id": ids if ids is not None else range(1, len(xs) + 1), "x": xs, "y": ys, "label": labels})
    df.to_csv(path, index=False)
    return path


def _random_points(rng, n, size, res=10.0):
    cols, rows = rng.integers(0, size, n), rng.integers(0, size, n)
    return ORIGIN[0] + (cols + 0.5) * res, ORIGIN[1] - (rows + 0.5) * res, rows, cols


def _rasterio_values(path: Path, xs, ys) -> np.ndarray:
    with rasterio.open(path) as ds:
        return np.array(list(ds.sample(zip(xs, ys, strict=True))), dtype=np.float32)


@pytest.mark.parametrize("profile", [
    {"tiled": True, "blockxsize": 64, "blockysize": 64, "interleave": "pixel"},
    {"tiled": True, "blockxsize": 64, "blockysize": 64, "interleave": "pixel", "compress": "deflate"},
    {"interleave": "band"},
])
def test_values_match_rasterio_sample(tmp_path, profile):
    rng = np.random.default_rng(1)
    data = rng.normal(size=(12, 150, 170)).astype(np.float32)
    tif = write_raster(tmp_path / "emb.tif", data, **profile)
    xs, ys, _, _ = _random_points(rng, 200, 150)
    pts = read_points(_pts_csv(tmp_path / "p.csv", xs, ys, ["a", "b"] * 100), crs="EPSG:32635")
    out = tmp_path / "s.parquet"
    summary = sample(pts, [tif], out)
    got = pd.read_parquet(out)
    assert summary["sampled"] == 200 and list(got.columns[:6]) == ["id", "label", "x", "y", "crs", "raster"]
    want = _rasterio_values(tif, xs, ys)
    np.testing.assert_array_equal(got[[f"b{i:03d}" for i in range(1, 13)]].to_numpy(), want)
    with rasterio.open(tif) as ds:
        assert direct_layout(ds) == ("compress" not in profile and profile.get("interleave") == "pixel")


def test_block_and_direct_paths_agree_and_read_each_block_once(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    data = rng.normal(size=(8, 256, 256)).astype(np.float32)
    tif = write_raster(tmp_path / "emb.tif", data, tiled=True, blockxsize=64, blockysize=64, interleave="pixel")
    xs, ys, rows, cols = _random_points(rng, 300, 256)
    pts = read_points(_pts_csv(tmp_path / "p.csv", xs, ys, ["a"] * 300), crs="EPSG:32635")
    reads = []
    real_read = rasterio.io.DatasetReader.read

    def counting_read(self, *a, **kw):
        reads.append(kw.get("window"))
        return real_read(self, *a, **kw)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", counting_read)
    sample(pts, [tif], tmp_path / "block.parquet", method="block")
    n_blocks = len({(r // 64, c // 64) for r, c in zip(rows, cols, strict=True)})
    assert len(reads) == n_blocks  # one windowed read per block that holds points
    assert all(w.height <= 64 and w.width <= 64 for w in reads)  # never more than one block
    reads.clear()
    sample(pts, [tif], tmp_path / "direct.parquet", method="direct")
    assert reads == []  # byte-offset reads, no GDAL decode
    a, b = pd.read_parquet(tmp_path / "block.parquet"), pd.read_parquet(tmp_path / "direct.parquet")
    pd.testing.assert_frame_equal(a, b)


def test_outside_and_nodata_points_are_dropped_and_listed(tmp_path):
    data = np.ones((4, 64, 64), dtype=np.float32)
    data[:, :10, :10] = np.nan
    tif = write_raster(tmp_path / "emb.tif", data, nodata=float("nan"), tiled=True, blockxsize=32, blockysize=32)
    xs = [ORIGIN[0] + 5, ORIGIN[0] + 300, ORIGIN[0] - 50, ORIGIN[0] + 5000]
    ys = [ORIGIN[1] - 5, ORIGIN[1] - 300, ORIGIN[1] - 50, ORIGIN[1] - 50]
    pts = read_points(_pts_csv(tmp_path / "p.csv", xs, ys, ["a", "b", "c", "d"], ids=[11, 12, 13, 14]), crs="EPSG:32635")
    s = sample(pts, [tif], tmp_path / "s.parquet")
    assert (s["sampled"], s["nodata"], s["outside"]) == (1, 1, 2)
    dropped = pd.read_csv(tmp_path / "s.dropped.csv")
    assert dict(zip(dropped["id"], dropped["reason"], strict=True)) == {11: "nodata", 13: "outside", 14: "outside"}


def test_a_raster_where_every_point_is_nodata_then_one_that_has_them(tmp_path):
    """The first raster covers the points only with nodata, the second holds them: one table, typed columns."""
    a = write_raster(tmp_path / "a.tif", np.full((3, 32, 32), np.nan, np.float32), nodata=float("nan"))
    b = write_raster(tmp_path / "b.tif", np.full((3, 32, 32), 2, np.float32), nodata=float("nan"))
    xs, ys = [ORIGIN[0] + 15, ORIGIN[0] + 35], [ORIGIN[1] - 15, ORIGIN[1] - 15]
    pts = read_points(_pts_csv(tmp_path / "p.csv", xs, ys, ["a", "b"], ids=[7, 8]), crs="EPSG:32635")
    s = sample(pts, [a, b], tmp_path / "s.parquet")
    got = pd.read_parquet(tmp_path / "s.parquet").sort_values("id")
    assert s["sampled"] == 2 and got["id"].tolist() == [7, 8] and got["label"].tolist() == ["a", "b"]
    assert got["b003"].dtype == np.float32 and got["b003"].tolist() == [2.0, 2.0]
    assert [Path(r).name for r in got["raster"]] == ["b.tif", "b.tif"] and list(got.columns[:6]) == [
        "id", "label", "x", "y", "crs", "raster"]


def test_many_rasters_and_reprojected_points(tmp_path):
    from pyproj import Transformer

    a = write_raster(tmp_path / "a.tif", np.full((3, 32, 32), 1, np.float32))
    b = write_raster(tmp_path / "b.tif", np.full((3, 32, 32), 2, np.float32), origin=(ORIGIN[0] + 320, ORIGIN[1]))
    xs, ys = [ORIGIN[0] + 15, ORIGIN[0] + 335], [ORIGIN[1] - 15, ORIGIN[1] - 15]
    lon, lat = Transformer.from_crs("EPSG:32635", "EPSG:4326", always_xy=True).transform(xs, ys)
    gj = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lo, la]}, "properties": {"id": i, "label": f"c{i}"}}
        for i, (lo, la) in enumerate(zip(lon, lat, strict=True))]}
    (tmp_path / "p.geojson").write_text(json.dumps(gj))
    sample(read_points(tmp_path / "p.geojson"), [a, b], tmp_path / "s.parquet")
    got = pd.read_parquet(tmp_path / "s.parquet").sort_values("id")
    assert got["b001"].tolist() == [1.0, 2.0]
    assert [Path(r).name for r in got["raster"]] == ["a.tif", "b.tif"]
    np.testing.assert_allclose(got["x"], xs, atol=1e-3)


def test_int8_with_scale_sidecar_is_dequantised(tmp_path):
    q = np.arange(-60, 60, dtype=np.int8).reshape(1, 1, 120).repeat(4, 0).repeat(8, 1)[:, :, :64]
    tif = write_raster(tmp_path / "e.tif", q.copy(), nodata=-128)
    write_raster(tmp_path / "e_scale.tif", np.full((1, 8, 64), 0.5, np.float32))
    pts = read_points(_pts_csv(tmp_path / "p.csv", [ORIGIN[0] + 35], [ORIGIN[1] - 5], ["x"]), crs="EPSG:32635")
    sample(pts, [tif], tmp_path / "s.parquet")
    assert pd.read_parquet(tmp_path / "s.parquet")["b001"].tolist() == [q[0, 0, 3] * 0.5]
    (tmp_path / "e_scale.tif").unlink()
    with pytest.raises(Exception, match="int8 embedding without a scale"):
        sample(pts, [tif], tmp_path / "t.parquet")


def test_point_formats_agree(tmp_path):
    xs, ys = np.array([ORIGIN[0] + 5.0, ORIGIN[0] + 95]), np.array([ORIGIN[1] - 5.0, ORIGIN[1] - 95])
    write_gpkg_points(tmp_path / "p.gpkg", xs, ys, {"id": [1, 2], "label": ["wheat", "maize"]}, 32635)
    _pts_csv(tmp_path / "p.csv", xs, ys, ["wheat", "maize"])
    pd.DataFrame({"id": [1, 2], "x": xs, "y": ys, "label": ["wheat", "maize"]}).to_parquet(tmp_path / "p.parquet")
    a = read_points(tmp_path / "p.gpkg")
    b = read_points(tmp_path / "p.csv", crs="EPSG:32635")
    c = read_points(tmp_path / "p.parquet", crs="EPSG:32635")
    for p in (a, b, c):
        assert p.crs == "EPSG:32635" and list(p.labels) == ["wheat", "maize"]
        np.testing.assert_allclose(p.x, xs)
        np.testing.assert_allclose(p.y, ys)


@pytest.mark.parametrize("case, message", [
    ("nan_label", "NaN or empty 'label'"),
    ("no_crs_csv", "points have no CRS"),
    ("no_crs_gpkg", "points have no CRS"),
    ("utm_geojson_without_crs", "points have no CRS"),
    ("missing_label_col", "no label column 'crop'"),
])
def test_bad_points_exit_2_one_line_no_output(tmp_path, capsys, case, message):
    tif = write_raster(tmp_path / "e.tif", np.ones((2, 16, 16), np.float32))
    xs, ys = [ORIGIN[0] + 5, ORIGIN[0] + 15], [ORIGIN[1] - 5, ORIGIN[1] - 15]
    extra: list[str] = ["--crs", "EPSG:32635"]
    if case == "nan_label":
        pts = _pts_csv(tmp_path / "p.csv", xs, ys, ["a", None])
    elif case == "no_crs_csv":
        pts, extra = _pts_csv(tmp_path / "p.csv", xs, ys, ["a", "b"]), []
    elif case == "no_crs_gpkg":
        pts = tmp_path / "p.gpkg"
        write_gpkg_points(pts, np.array(xs), np.array(ys), {"label": ["a", "b"]}, None)
        extra = []
    elif case == "utm_geojson_without_crs":
        pts = tmp_path / "p.geojson"
        pts.write_text(json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [x, y]}, "properties": {"label": "a"}}
            for x, y in zip(xs, ys, strict=True)]}))
        extra = []
    else:
        pts = _pts_csv(tmp_path / "p.csv", xs, ys, ["a", "b"])
        extra += ["--label-col", "crop"]
    out = tmp_path / "out" / "s.parquet"
    rc = sample_mod.main(["--points", str(pts), "--rasters", str(tif), "--out", str(out), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_vrt_of_tiles_is_sampled_like_its_sources(tmp_path):
    import subprocess

    rng = np.random.default_rng(5)
    a = write_raster(tmp_path / "a.tif", rng.normal(size=(4, 40, 40)).astype(np.float32), compress="deflate")
    b = write_raster(tmp_path / "b.tif", rng.normal(size=(4, 40, 40)).astype(np.float32), origin=(ORIGIN[0] + 400, ORIGIN[1]))
    vrt = tmp_path / "m.vrt"
    subprocess.run(["gdalbuildvrt", "-q", str(vrt), str(a), str(b)], check=True)
    xs, ys, _, _ = _random_points(rng, 60, 40)
    xs = np.concatenate([xs, xs + 400])
    ys = np.concatenate([ys, ys])
    pts = read_points(_pts_csv(tmp_path / "p.csv", xs, ys, ["k"] * 120), crs="EPSG:32635")
    sample(pts, [vrt], tmp_path / "v.parquet")
    got = pd.read_parquet(tmp_path / "v.parquet").sort_values("id")
    want = np.concatenate([_rasterio_values(a, xs[:60], ys[:60]), _rasterio_values(b, xs[60:], ys[60:])])
    np.testing.assert_array_equal(got.filter(regex=r"^b\d{3}$").to_numpy(), want)


def test_geoparquet_points_with_wkb_geometry(tmp_path):
    import struct

    import pyarrow as pa
    import pyarrow.parquet as pq

    wkb = [struct.pack("<BIdd", 1, 1, ORIGIN[0] + 5, ORIGIN[1] - 5), struct.pack("<BIdd", 1, 1, ORIGIN[0] + 25, ORIGIN[1] - 5)]
    geo = {"version": "1.0.0", "primary_column": "geometry", "columns": {"geometry": {
        "encoding": "WKB", "geometry_types": ["Point"], "crs": {"id": {"authority": "EPSG", "code": 32635}}}}}
    table = pa.table({"id": [7, 8], "label": ["oats", "maize"], "geometry": wkb})
    pq.write_table(table.replace_schema_metadata({b"geo": json.dumps(geo).encode()}), tmp_path / "p.parquet")
    pts = read_points(tmp_path / "p.parquet")
    assert pts.crs == "EPSG:32635" and list(pts.ids) == [7, 8]
    np.testing.assert_allclose(pts.x, [ORIGIN[0] + 5, ORIGIN[0] + 25])
