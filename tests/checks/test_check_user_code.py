"""cache_leftovers and thread_safety: a passing and a failing case each (sure2.md bugs 2, 3 and 7)."""

from __future__ import annotations

from pathlib import Path


def test_cache_leftovers_fail_on_zero_byte_and_download_files(make_ctx, run_check, tmp_path: Path) -> None:
    cache = tmp_path / "scratch" / "cache" / "drought"
    cache.mkdir(parents=True)
    (cache / "era5_2022_05.nc").write_bytes(b"CDF\x01" + b"\0" * 100)
    ctx = make_ctx()
    assert run_check("cache_leftovers", ctx).status == "ok"
    (cache / "era5_2022_06.nc_download").write_bytes(b"half")
    (cache / "era5_2022_07.nc").write_bytes(b"")
    r = run_check("cache_leftovers", ctx)
    assert r.status == "fail" and "2 leftover(s)" in r.message and "era5_2022_06.nc_download" in r.message
    assert "-name '*_download'" in r.fix
    assert (cache / "era5_2022_07.nc").exists()  # a check reports, it never deletes


def test_cache_leftovers_scan_cache_dirs_and_inputs(make_ctx, run_check, tmp_path: Path) -> None:
    other = tmp_path / "s2cache"
    other.mkdir()
    (other / "T33UVP.tif.part").write_bytes(b"x")
    assert run_check("cache_leftovers", make_ctx(params={"CACHE_DIRS": str(other)})).status == "fail"
    inputs = tmp_path / "emb"
    inputs.mkdir()
    (inputs / "a.tif").write_bytes(b"")
    assert run_check("cache_leftovers", make_ctx(inputs=[inputs])).status == "fail"
    (inputs / "a.tif").write_bytes(b"II*\0")
    assert run_check("cache_leftovers", make_ctx(inputs=[inputs])).status == "ok"


def test_thread_safety_fails_on_threads_around_rasterio(make_ctx, run_check, tmp_path: Path) -> None:
    bad = tmp_path / "read_cogs.py"
    bad.write_text("import rasterio\nfrom concurrent.futures import ThreadPoolExecutor\n"
                   "def run(items):\n    with ThreadPoolExecutor(max_workers=8) as pool:\n"
                   "        return list(pool.map(rasterio.open, items))\n")
    r = run_check("thread_safety", make_ctx(params={"USER_CODE": str(bad)}))
    assert r.status == "fail" and "read_cogs.py:4: ThreadPoolExecutor" in r.message and "ProcessPoolExecutor" in r.fix
    good = tmp_path / "good.py"
    good.write_text("import rasterio\nfrom concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor\n"
                    "def run(items):\n    with ProcessPoolExecutor(4) as pool:\n"
                    "        return list(pool.map(rasterio.open, items))\n")
    assert run_check("thread_safety", make_ctx(params={"USER_CODE": str(good)})).status == "ok"
    # threads without GDAL are fine (an HTTP pool, say)
    web = tmp_path / "web.py"
    web.write_text("from concurrent.futures import ThreadPoolExecutor\nThreadPoolExecutor(4)\n")
    assert run_check("thread_safety", make_ctx(params={"USER_CODE": str(web)})).status == "ok"


def test_thread_safety_fails_on_lazy_xarray_concat(make_ctx, run_check, tmp_path: Path) -> None:
    code = tmp_path / "pkg"
    code.mkdir()
    (code / "clim.py").write_text("import xarray as xr\n"
                                  "def load(files):\n    return xr.concat([xr.open_dataset(f) for f in files], dim='time')\n")
    r = run_check("thread_safety", make_ctx(params={"USER_CODE": str(code)}))
    assert r.status == "fail" and "clim.py:3: xr.concat of datasets not loaded" in r.message
    (code / "clim.py").write_text("import xarray as xr\n"
                                  "def load(files):\n"
                                  "    return xr.concat([xr.open_dataset(f).load() for f in files], dim='time')\n")
    assert run_check("thread_safety", make_ctx(params={"USER_CODE": str(code)})).status == "ok"
    (code / "mf.py").write_text("import xarray as xr\nds = xr.open_mfdataset('era5_*.nc')\n")
    assert run_check("thread_safety", make_ctx(params={"USER_CODE": str(code)})).status == "fail"
