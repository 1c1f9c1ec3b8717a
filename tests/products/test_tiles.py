"""geohpc.tiles: tile sets, colours, rescaling, pyramids from children, PMTiles, reruns and shards."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import mercantile
import numpy as np
import pytest
import rasterio
from geohpc.errors import ConfigError
from geohpc.products.tiles import build
from geohpc.products.tiles.core import tile_range
from geohpc.products.tiles.pyramid import downsample
from PIL import Image
from rasterio.warp import transform_bounds
from tiles_helpers import write_raster

CLASS_COLOURS = {0: (230, 25, 75, 255), 1: (60, 180, 75, 255), 2: (0, 130, 200, 255), 3: (255, 225, 25, 255)}


def rgb_array(h: int = 150, w: int = 200) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x * 7 + y * 3) % 256]).astype(np.uint8)


def class_raster(path: Path, **kw: object) -> Path:
    y, x = np.mgrid[0:160, 0:240]
    cls = ((x // 40 + y // 40) % 4).astype(np.uint8)
    cls[:16] = 255  # a nodata strip
    write_raster(path, cls, nodata=255, **kw)
    with rasterio.open(path, "r+") as ds:
        ds.write_colormap(1, CLASS_COLOURS)
    return path


def files(out: Path, ext: str = "png") -> set[tuple[int, int, int]]:
    return {(int(p.parent.name), int(p.stem), int(p.parent.parent.name)) for p in out.glob(f"*/*/*.{ext}")}


def expected_tiles(src: Path, zooms: range) -> set[tuple[int, int, int]]:
    with rasterio.open(src) as ds:
        b = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
    return {(t.x, t.y, t.z) for t in mercantile.tiles(*b, zooms=list(zooms))}


def read(out: Path, x: int, y: int, z: int, ext: str = "png") -> np.ndarray:
    with Image.open(out / f"{z}/{x}/{y}.{ext}") as im:
        return np.asarray(im.convert("RGBA"))


@pytest.mark.parametrize(
    "crs,origin,res",
    [("EPSG:32635", (500000.0, 5000000.0), 10.0), ("EPSG:4326", (25.0, 45.0), 0.0001)],
)
def test_tile_set_matches_mercantile(tmp_path: Path, crs: str, origin: tuple[float, float], res: float) -> None:
    src = write_raster(tmp_path / "rgb.tif", rgb_array(), crs=crs, origin=origin, res=res)
    out = tmp_path / "tiles"
    summary = build(str(src), out, zoom=(8, 15), processes=1, viewer=False)
    assert files(out) == expected_tiles(src, range(8, 16))
    assert summary["tiles"] == len(expected_tiles(src, range(8, 16)))
    assert summary["mode"] == "rgb"
    # XYZ, not TMS: the tile holding the raster's north-west corner is where mercantile puts it
    with rasterio.open(src) as ds:
        w, _s, _e, n = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    nw = mercantile.tile(w + 1e-7, n - 1e-7, 15)
    tile = read(out, nw.x, nw.y, 15)
    assert tile[..., 3].any(), "north-west tile has no data: rows flipped (TMS?)"


def test_class_colours_preserved_and_nodata_transparent(tmp_path: Path) -> None:
    src = class_raster(tmp_path / "classes.tif")
    out = tmp_path / "tiles"
    summary = build(str(src), out, zoom=(9, 16), processes=1, viewer=False)
    assert summary["mode"] == "classes"
    palette = {c[:3] for c in CLASS_COLOURS.values()}
    seen: set[tuple[int, ...]] = set()
    transparent = 0
    for x, y, z in files(out):
        t = read(out, x, y, z)
        opaque = t[t[..., 3] == 255][:, :3]
        seen |= {tuple(int(v) for v in c) for c in np.unique(opaque, axis=0)}
        assert set(np.unique(t[..., 3])) <= {0, 255}, "class map tiles must not blend (nearest/mode only)"
        transparent += int((t[..., 3] == 0).sum())
    assert seen == palette  # every class colour, and nothing in between, at every zoom
    assert transparent > 0
    # the nodata strip (top 16 rows) is transparent at the base zoom
    with rasterio.open(src) as ds:
        lon, lat = rasterio.warp.transform(ds.crs, "EPSG:4326", [ds.bounds.left + 1200], [ds.bounds.top - 50])
    t = mercantile.tile(lon[0], lat[0], 16)
    ul = mercantile.xy_bounds(t)
    mx, my = rasterio.warp.transform("EPSG:4326", "EPSG:3857", lon, lat)
    px = int((mx[0] - ul.left) / (ul.right - ul.left) * 256)
    py = int((ul.top - my[0]) / (ul.top - ul.bottom) * 256)
    assert read(out, t.x, t.y, 16)[py, px, 3] == 0


def test_float_is_rescaled_not_clamped(tmp_path: Path) -> None:
    y, x = np.mgrid[0:150, 0:200]
    data = (1000.0 + 4000.0 * x / 199.0 + 0.5 * y).astype(np.float32)  # 1000..5000: gdal2tiles clamps to 255
    data[:5, :5] = np.nan
    src = write_raster(tmp_path / "float.tif", data, crs="EPSG:4326", origin=(25.0, 45.0), res=0.0001)
    out = tmp_path / "tiles"
    summary = build(str(src), out, zoom=(15, 15), processes=1, viewer=False)
    assert summary["mode"] == "percentile"
    grey = np.concatenate([read(out, x, y, z)[..., 0][read(out, x, y, z)[..., 3] == 255] for x, y, z in files(out)])
    assert grey.min() <= 5 and grey.max() >= 250  # stretched over the full range
    assert 0.3 < (grey > 127).mean() < 0.7  # a linear ramp stays a ramp (not all 255)
    assert (grey == 255).mean() < 0.1


def test_pca_mode_for_many_bands(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:120, 0:160]
    base = np.stack([np.sin(x / 20.0), np.cos(y / 15.0), (x + y) / 280.0])
    data = (rng.normal(size=(8, 3)) @ base.reshape(3, -1)).reshape(8, 120, 160).astype(np.float32)
    src = write_raster(tmp_path / "emb.tif", data)
    out = tmp_path / "tiles"
    summary = build(str(src), out, zoom=(14, 15), processes=1, viewer=False)
    assert summary["mode"] == "pca" and summary["bands"] == list(range(1, 9))
    tiles = [read(out, x, y, z) for x, y, z in files(out)]
    px = np.concatenate([t[t[..., 3] == 255][:, :3] for t in tiles])
    assert px.std(axis=0).min() > 20  # three informative components, each stretched


def test_lower_zooms_are_built_from_children(tmp_path: Path) -> None:
    src = write_raster(tmp_path / "rgb.tif", rgb_array(300, 400), nodata=None)
    out = tmp_path / "tiles"
    build(str(src), out, zoom=(8, 16), processes=1, viewer=False)  # metatiles at 13: 15..13 in memory, 12..8 from files
    have = files(out)
    checked = 0
    for x, y, z in have:
        if z == 16:
            continue
        canvas = np.zeros((512, 512, 4), dtype=np.uint8)
        for c in mercantile.children(x, y, z):
            if (c.x, c.y, c.z) in have:
                canvas[(c.y - 2 * y) * 256:(c.y - 2 * y + 1) * 256, (c.x - 2 * x) * 256:(c.x - 2 * x + 1) * 256] = read(out, c.x, c.y, c.z)
        assert np.array_equal(read(out, x, y, z), downsample(canvas, classes=False)), (x, y, z)
        checked += 1
    assert checked >= 9


def test_pmtiles_archive_reads_back(tmp_path: Path) -> None:
    from pmtiles.reader import MmapSource, Reader, all_tiles

    src = class_raster(tmp_path / "classes.tif", crs="EPSG:4326", origin=(25.0, 45.0), res=0.0001)
    out = tmp_path / "tiles"
    summary = build(str(src), out, zoom=(10, 15), processes=1, viewer=False, make_pmtiles=True)
    archive = Path(summary["pmtiles"])
    assert archive == out / "classes.pmtiles"
    on_disk = files(out)
    with open(archive, "rb") as f:
        get = MmapSource(f)
        header = Reader(get).header()
        tiles = {(x, y, z): data for (z, x, y), data in all_tiles(get)}
        meta = Reader(get).metadata()
    assert set(tiles) == on_disk and summary["pmtiles_tiles"] == len(on_disk)
    assert (header["min_zoom"], header["max_zoom"]) == (10, 15)
    assert meta["name"] == "classes"
    for (x, y, z), data in tiles.items():
        assert data == (out / f"{z}/{x}/{y}.png").read_bytes()


def test_rerun_skips_finished_tiles(tmp_path: Path) -> None:
    src = write_raster(tmp_path / "rgb.tif", rgb_array())
    out = tmp_path / "tiles"
    first = build(str(src), out, zoom=(10, 15), processes=1, viewer=False)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/*/*.png")}
    gone = sorted((out / "15").glob("*/*.png"))[0]
    gone.unlink()
    second = build(str(src), out, zoom=(10, 15), processes=1, viewer=False)
    assert first["written"] > 0
    assert second["written"] == 1  # only the deleted tile comes back
    assert second["skipped"] == first["written"] - 1
    assert second["lower_written"] == 0
    after = {p: p.stat().st_mtime_ns for p in out.glob("*/*/*.png")}
    assert gone.is_file()
    assert [p for p in stamps if p != gone and after[p] != stamps[p]] == []
    assert not list(out.rglob("*.tmp"))


def test_other_settings_in_same_folder_refused(tmp_path: Path) -> None:
    src = write_raster(tmp_path / "rgb.tif", rgb_array())
    out = tmp_path / "tiles"
    build(str(src), out, zoom=(12, 14), processes=1, viewer=False)
    with pytest.raises(ConfigError, match="other settings"):
        build(str(src), out, zoom=(12, 14), mode="percentile", processes=1, viewer=False)


def test_shards_then_finalize_without_the_source(tmp_path: Path) -> None:
    src = write_raster(tmp_path / "rgb.tif", rgb_array(300, 400))
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    build(str(src), whole, zoom=(8, 16), processes=1, viewer=False, make_pmtiles=True)
    s0 = build(str(src), sharded, zoom=(8, 16), processes=1, shard=(0, 2), no_finalize=True)
    s1 = build(str(src), sharded, zoom=(8, 16), processes=1, shard=(1, 2), no_finalize=True)
    assert s0["metatiles"] > 0 and s1["metatiles"] > 0
    assert not (sharded / "8").exists()  # lower zooms wait for finalize
    moved = src.rename(tmp_path / "elsewhere.tif")  # finalize must not need the source
    summary = build(str(src), sharded, zoom=(8, 16), processes=1, finalize_only=True, make_pmtiles=True)
    assert summary["lower_written"] > 0
    assert files(sharded) == files(whole)
    for x, y, z in files(whole):
        assert (sharded / f"{z}/{x}/{y}.png").read_bytes() == (whole / f"{z}/{x}/{y}.png").read_bytes()
    assert (sharded / "index.html").is_file()
    moved.rename(src)


def test_last_shard_finalizes(tmp_path: Path) -> None:
    src = write_raster(tmp_path / "rgb.tif", rgb_array())
    out = tmp_path / "tiles"
    first = build(str(src), out, zoom=(9, 14), processes=1, shard=(1, 2))
    assert first["finalize"].startswith("waiting for shards [0]")
    assert not (out / "index.html").exists()
    second = build(str(src), out, zoom=(9, 14), processes=1, shard=(0, 2), make_pmtiles=True)
    assert "viewer" in second and Path(second["pmtiles"]).is_file()
    assert files(out) == expected_tiles(src, range(9, 15))


def test_finalize_refuses_unfinished_shards(tmp_path: Path) -> None:
    from geohpc.errors import InputError

    src = write_raster(tmp_path / "rgb.tif", rgb_array())
    out = tmp_path / "tiles"
    build(str(src), out, zoom=(9, 14), processes=1, shard=(0, 3), no_finalize=True)
    with pytest.raises(InputError, match="not every shard"):
        build(str(src), out, zoom=(9, 14), processes=1, finalize_only=True)


def test_processes_give_identical_tiles_and_webp(tmp_path: Path) -> None:
    src = class_raster(tmp_path / "classes.tif")
    one, two = tmp_path / "one", tmp_path / "two"
    build(str(src), one, zoom=(12, 16), processes=1, viewer=False, fmt="webp")
    build(str(src), two, zoom=(12, 16), processes=2, viewer=False, fmt="webp")
    assert files(one, "webp") == files(two, "webp") == expected_tiles(src, range(12, 17))
    for x, y, z in files(one, "webp"):
        assert (one / f"{z}/{x}/{y}.webp").read_bytes() == (two / f"{z}/{x}/{y}.webp").read_bytes()
    colours = {tuple(int(v) for v in c) for x, y, z in files(one, "webp")
               for c in np.unique(read(one, x, y, z, "webp").reshape(-1, 4), axis=0) if c[3] == 255}
    assert {c[:3] for c in colours} <= {c[:3] for c in CLASS_COLOURS.values()}  # lossless for classes


def test_skip_empty_writes_only_tiles_with_data(tmp_path: Path) -> None:
    data = np.zeros((300, 400), dtype=np.uint8)
    data[:60, :60] = 7  # data only in the north-west corner, nodata elsewhere
    src = write_raster(tmp_path / "sparse.tif", data, nodata=0)
    out = tmp_path / "tiles"
    build(str(src), out, zoom=(15, 16), processes=1, viewer=False, skip_empty=True, mode="classes")
    tiles = files(out)
    assert tiles and tiles < expected_tiles(src, range(15, 17))
    assert all(read(out, x, y, z)[..., 3].any() for x, y, z in tiles)


def test_tile_range_equals_mercantile() -> None:
    for bounds in [(25.0, 45.0, 25.3, 45.2), (-0.5, -0.5, 0.5, 0.5), (179.0, 80.0, 180.0, 89.0)]:
        for z in (0, 3, 9, 14):
            r = tile_range(bounds, z)
            assert set(r) == {(t.x, t.y, t.z) for t in mercantile.tiles(*bounds, zooms=z)}


def test_memory_bounded_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No read asks for more than one metatile's worth of pixels, whatever the source size."""
    src = write_raster(tmp_path / "big.tif", np.zeros((3, 3000, 3000), dtype=np.uint8) + 90, tiled=True,
                       blockxsize=256, blockysize=256)
    biggest = [0]
    real_read = rasterio.io.DatasetReader.read

    def spy(self, indexes=None, out=None, window=None, *a, **kw):  # noqa: ANN001, ANN002, ANN003
        shape = kw.get("out_shape")
        px = (shape[-1] * shape[-2]) if shape is not None else (
            int(window.width * window.height) if window is not None else self.width * self.height)
        biggest[0] = max(biggest[0], px)
        return real_read(self, indexes, out, window, *a, **kw)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", spy)
    build(str(src), tmp_path / "tiles", zoom=(6, 12), processes=1, viewer=False)
    assert biggest[0] <= 2048 * 2048 < 3000 * 3000  # bounded by the metatile, not the source
    assert os.path.getsize(tmp_path / "tiles" / "tiles.json") > 0
    shutil.rmtree(tmp_path / "tiles")


def test_shards_and_reruns_reuse_the_fitted_rendering(tmp_path: Path) -> None:
    import json

    y, x = np.mgrid[0:150, 0:200]
    src = write_raster(tmp_path / "f.tif", (100.0 + x).astype(np.float32))
    out = tmp_path / "tiles"
    build(str(src), out, zoom=(15, 15), processes=1, viewer=False)
    settings = json.loads((out / "tiles.json").read_text())
    settings["render"]["lo"], settings["render"]["hi"] = [0.0], [1e6]  # everything maps to ~0
    (out / "tiles.json").write_text(json.dumps(settings))
    tile = sorted(out.glob("15/*/*.png"))[0]
    before = np.asarray(Image.open(tile).convert("RGBA"))
    tile.unlink()
    build(str(src), out, zoom=(15, 15), processes=1, viewer=False)
    after = np.asarray(Image.open(tile).convert("RGBA"))
    opaque = after[..., 3] == 255
    assert before[opaque][:, 0].max() >= 20 and after[opaque][:, 0].max() <= 1


@pytest.mark.parametrize("layout", [dict(tiled=True, blockxsize=64, blockysize=64, interleave="pixel"),
                                    dict(interleave="pixel")])  # tiled, and striped
def test_pca_block_reader_matches_band_reader(tmp_path: Path, layout: dict) -> None:
    from geohpc.products.tiles.paint import _pca_by_band_groups, _pca_by_blocks, fit_render
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    rng = np.random.default_rng(3)
    data = rng.normal(size=(6, 200, 230)).astype(np.float32)
    data[:, :3, :3] = -9999.0
    src = write_raster(tmp_path / "emb.tif", data, nodata=-9999.0, **layout)
    with rasterio.open(src) as ds:
        params = fit_render(ds, "pca", list(range(1, 7)))
        win = Window(37, 1, 150, 170)
        a, va = _pca_by_blocks(ds, params, win, budget=64 * 1024)  # tiny budget: many chunks
        b, vb = _pca_by_band_groups(ds, params, win, (170, 150), Resampling.nearest, budget=1 << 30)
        full, vf = _pca_by_blocks(ds, params, Window(0, 0, 230, 200), budget=1 << 30)
    assert np.allclose(a, b, atol=1e-4) and np.array_equal(va, vb)
    assert not vf[:3, :3].any() and vf[3:, 3:].all()


def test_rgba_alpha_band_and_a_global_lonlat_raster(tmp_path: Path) -> None:
    y, x = np.mgrid[0:100, 0:120]
    rgba = np.stack([x * 2, y * 2, (x + y) % 255, np.where(x >= 60, 255, 0)]).astype(np.uint8)
    src = write_raster(tmp_path / "rgba.tif", rgba, photometric="RGB", alpha="YES")
    s = build(str(src), tmp_path / "a", zoom=(15, 15), processes=1, viewer=False)
    assert s["mode"] == "rgb" and s["bands"] == [1, 2, 3]
    with rasterio.open(src) as ds:
        for col, alpha in ((20, 0), (100, 255)):  # the alpha band hides the western half
            e, n = ds.xy(50, col)
            (lon,), (lat,) = rasterio.warp.transform(ds.crs, "EPSG:4326", [e], [n])
            t = mercantile.tile(lon, lat, 15)
            b = mercantile.xy_bounds(t)
            (mx,), (my,) = rasterio.warp.transform("EPSG:4326", "EPSG:3857", [lon], [lat])
            px, py = int((mx - b.left) / (b.right - b.left) * 256), int((b.top - my) / (b.top - b.bottom) * 256)
            assert read(tmp_path / "a", t.x, t.y, 15)[py, px, 3] == alpha
    ramp = np.tile(np.linspace(0, 255, 360).astype(np.uint8), (180, 1))  # whole world, 1 degree
    glob = write_raster(tmp_path / "world.tif", ramp, crs="EPSG:4326", origin=(-180.0, 90.0), res=1.0)
    s = build(str(glob), tmp_path / "w", zoom=(0, 3), processes=1, viewer=False)
    assert s["tiles"] == 1 + 4 + 16 + 64 == len(files(tmp_path / "w"))
    z0 = read(tmp_path / "w", 0, 0, 0)
    assert z0[..., 3].all()  # the world fills tile 0/0/0 (clipped at +-85.05 degrees)
    assert z0[128, 2, 0] < 10 and z0[128, 253, 0] > 245  # west dark, east bright
