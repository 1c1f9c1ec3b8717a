"""geohpc.mosaic: a grid of tiles -> VRT (+ COG) equal to the source; mismatches refused naming the file."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from geohpc.errors import InputError
from geohpc.products.cog import validate_cog
from geohpc.products.mosaic import build_mosaic
from rasterio.windows import Window
from testutil import REPO, write_raster

X0, Y0, RES = 500000.0, 5000000.0, 10.0


def run_cli(*args: str, nofile: int | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "py"))

    def limit() -> None:
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    return subprocess.run([sys.executable, "-m", "geohpc", "mosaic", *args], capture_output=True, text=True, env=env,
                          timeout=300, preexec_fn=limit)


def tile_grid(folder: Path, full: np.ndarray, th: int, tw: int, skip: set[tuple[int, int]] = frozenset(),
              **kw: object) -> list[Path]:
    paths = []
    _, h, w = full.shape
    for r in range(0, h, th):
        for c in range(0, w, tw):
            if (r // th, c // tw) in skip:
                continue
            paths.append(write_raster(folder / f"t_{r:05d}_{c:05d}.tif", full[:, r:r + th, c:c + tw],
                                      origin=(X0 + c * RES, Y0 - r * RES), res=RES, **kw))
    return paths


def test_grid_mosaic_equals_source_and_cog(tmp_path: Path) -> None:
    full = np.random.default_rng(3).integers(1, 1000, (2, 120, 150)).astype("int16")
    tiles = tile_grid(tmp_path / "tiles", full, 40, 50, nodata=0)
    vrt = tmp_path / "out" / "m.vrt"
    cog = build_mosaic([str(p) for p in tiles[::-1]], vrt, cog=tmp_path / "out" / "m.tif", blocksize=64)
    for path in (vrt, cog):
        with rasterio.open(path) as ds:
            assert (ds.width, ds.height, ds.count) == (150, 120, 2)
            assert ds.transform.c == X0 and ds.transform.f == Y0 and ds.transform.a == RES
            assert ds.crs.to_epsg() == 32635 and ds.nodata == 0
            np.testing.assert_array_equal(ds.read(), full)
    assert validate_cog(cog, 64) == []


def test_gaps_are_nodata_and_colour_table_kept(tmp_path: Path) -> None:
    full = np.random.default_rng(4).integers(1, 5, (1, 60, 60)).astype("uint8")
    tiles = tile_grid(tmp_path / "tiles", full, 30, 30, skip={(1, 1)}, nodata=255)
    cmap = {1: (255, 0, 0, 255), 2: (0, 255, 0, 255), 3: (0, 0, 255, 255), 4: (9, 9, 9, 255)}
    for p in tiles:
        with rasterio.open(p, "r+") as ds:
            ds.write_colormap(1, cmap)
    r = run_cli("--out", str(tmp_path / "m.vrt"), "--cog", str(tmp_path / "m.tif"), "--blocksize", "64",
                *map(str, tiles))
    assert r.returncode == 0, r.stderr
    with rasterio.open(tmp_path / "m.tif") as ds:
        a = ds.read(1)
        assert (a[30:, 30:] == 255).all() and (a[:30, :30] == full[0, :30, :30]).all()
        assert ds.nodata == 255 and ds.colormap(1)[2] == (0, 255, 0, 255)


@pytest.mark.parametrize("odd", ["crs", "res", "bands", "dtype", "grid"])
def test_mismatched_input_refused_naming_it(tmp_path: Path, odd: str) -> None:
    full = np.ones((1, 40, 40), "float32")
    tiles = tile_grid(tmp_path / "tiles", full, 20, 20)
    kw: dict[str, object] = {"origin": (X0 + 400, Y0)}
    data = np.ones((1, 20, 20), "float32")
    if odd == "crs":
        kw["crs"] = "EPSG:32634"
    elif odd == "res":
        kw["res"] = 20.0
    elif odd == "bands":
        data = np.ones((2, 20, 20), "float32")
    elif odd == "dtype":
        data = data.astype("float64")
    else:
        kw["origin"] = (X0 + 403.0, Y0)
    bad = write_raster(tmp_path / "tiles" / "odd.tif", data, **kw)
    out = tmp_path / "out"
    r = run_cli("--out", str(out / "m.vrt"), *map(str, tiles), str(bad))
    assert r.returncode == 2
    err = [ln for ln in r.stderr.splitlines() if not ln.startswith("[")]
    assert len(err) == 1 and str(bad) in err[0] and str(tiles[0]) in err[0], r.stderr
    assert not out.exists() or not any(out.iterdir())
    with pytest.raises(InputError, match="odd.tif"):
        build_mosaic([str(p) for p in tiles] + [str(bad)], out / "m.vrt")


def test_bad_inputs(tmp_path: Path) -> None:
    r = run_cli("--out", str(tmp_path / "m.vrt"), str(tmp_path / "missing.tif"))
    assert r.returncode == 2 and "missing.tif" in r.stderr and "no such file" in r.stderr
    r = run_cli("--out", str(tmp_path / "m.vrt"))
    assert r.returncode == 2 and "no inputs" in r.stderr
    nocrs = write_raster(tmp_path / "nocrs.tif", np.ones((1, 5, 5), "uint8"), crs=None)
    r = run_cli("--out", str(tmp_path / "m.vrt"), str(nocrs))
    assert r.returncode == 2 and "no CRS" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m.vrt").exists()


def test_thousands_of_inputs_under_a_low_open_file_limit(tmp_path: Path) -> None:
    n_rows, n_cols, px = 40, 50, 4  # 2,000 inputs of 4x4 pixels
    full = np.arange(n_rows * px * n_cols * px, dtype="uint16").reshape(1, n_rows * px, n_cols * px) % 4000 + 1
    tiles = tile_grid(tmp_path / "tiles", full, px, px)
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(map(str, tiles)) + "\n")
    r = run_cli("--out", str(tmp_path / "m.vrt"), "--cog", str(tmp_path / "m.tif"), "--blocksize", "64",
                "--list", str(lst), nofile=64)
    assert r.returncode == 0, r.stderr[-2000:]
    with rasterio.open(tmp_path / "m.tif") as ds:
        np.testing.assert_array_equal(ds.read(), full)
    assert validate_cog(tmp_path / "m.tif") == []


def test_reproject_when_asked(tmp_path: Path) -> None:
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    yy, xx = np.mgrid[0:100, 0:100]
    full = (xx * 2.0 + yy).astype("float32")[None]
    left = write_raster(tmp_path / "left.tif", full[:, :, :50], nodata=-9999)
    right32635 = write_raster(tmp_path / "r35.tif", full[:, :, 50:], origin=(X0 + 500, Y0), nodata=-9999)
    # the right half, moved into the neighbouring UTM zone
    with rasterio.open(right32635) as ds:
        t, w, h = calculate_default_transform(ds.crs, "EPSG:32634", ds.width, ds.height, *ds.bounds, resolution=10)
        data = np.full((1, h, w), -9999, "float32")
        reproject(ds.read(), data, src_transform=ds.transform, src_crs=ds.crs, dst_transform=t, dst_crs="EPSG:32634",
                  resampling=Resampling.bilinear, dst_nodata=-9999)
    right = tmp_path / "right34.tif"
    with rasterio.open(right, "w", driver="GTiff", width=w, height=h, count=1, dtype="float32", crs="EPSG:32634",
                       transform=t, nodata=-9999) as out:
        out.write(data)
    refused = run_cli("--out", str(tmp_path / "m.vrt"), str(left), str(right))
    assert refused.returncode == 2 and "--reproject" in refused.stderr and str(right) in refused.stderr
    r = run_cli("--out", str(tmp_path / "m.vrt"), "--cog", str(tmp_path / "m.tif"), "--blocksize", "64",
                "--reproject", str(left), str(right))
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "m.warped").glob("*.tif"))) == 1
    with rasterio.open(tmp_path / "m.tif") as ds:
        assert ds.crs.to_epsg() == 32635 and ds.transform.a == RES
        col, row = (X0 - ds.transform.c) / RES, (ds.transform.f - Y0) / RES
        assert col == int(col) and row == int(row)  # still on the first input's pixel grid
        a = ds.read(1, window=Window(int(col), int(row), 100, 100))
        np.testing.assert_array_equal(a[:, :50], full[0, :, :50])  # the reference input untouched
        inner = a[5:95, 55:95]  # the warped half, away from its edges: within bilinear noise of the original
        assert np.abs(inner - full[0, 5:95, 55:95]).max() < 3.0


def test_nodata_option_fills_gaps_of_inputs_without_nodata(tmp_path: Path) -> None:
    full = np.full((1, 40, 40), 3, "uint8")
    tiles = tile_grid(tmp_path / "tiles", full, 20, 20, skip={(0, 1)})
    vrt = build_mosaic([str(p) for p in tiles], tmp_path / "m.vrt", nodata=7)
    with rasterio.open(vrt) as ds:
        a = ds.read(1)
        assert ds.nodata == 7 and (a[:20, 20:] == 7).all() and (a[20:] == 3).all()


def test_mosaic_never_overwrites_an_input(tmp_path: Path) -> None:
    a = write_raster(tmp_path / "md" / "a.tif", np.ones((1, 8, 8), np.uint8))
    write_raster(tmp_path / "md" / "b.tif", np.ones((1, 8, 8), np.uint8), origin=(500080.0, 5000000.0))
    before = a.read_bytes()
    env = {"PYTHONPATH": str(REPO / "py"), "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "-m", "geohpc", "mosaic"]
    proc = subprocess.run([*run, "--out", str(tmp_path / "m.vrt"), "--cog", str(a), str(a), str(tmp_path / "md" / "b.tif")],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "is both an input and the mosaic's output" in proc.stderr
    assert a.read_bytes() == before
    # a mosaic COG written into the input folder is not picked up as an input by the next run
    for _ in range(2):
        proc = subprocess.run([*run, "--out", str(tmp_path / "md" / "all.vrt"), "--cog", str(tmp_path / "md" / "all.tif"),
                               "--input-dir", str(tmp_path / "md")], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "md" / "all.vrt").read_text().count("<SourceFilename") == 2
