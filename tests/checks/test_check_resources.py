"""memory, array and internet checks."""

from __future__ import annotations

import numpy as np
from geohpc.preflight.context import Resources

MiB, GiB = 1 << 20, 1 << 30


def test_memory_ok_warn_fail_from_declared_estimate(make_ctx, run_check) -> None:
    assert run_check("memory", make_ctx(mem_estimate=1 * GiB, resources=Resources(mem_bytes=4 * GiB))).status == "ok"
    res = run_check("memory", make_ctx(mem_estimate=3 * GiB, resources=Resources(mem_bytes=4 * GiB)))
    assert res.status == "warn" and "2x headroom" in res.message and "MEM=6G" in res.fix
    res = run_check("memory", make_ctx(mem_estimate=5 * GiB, resources=Resources(mem_bytes=4 * GiB)))
    assert res.status == "fail" and "OOM" in res.message


def test_memory_whole_raster_read_vs_window(make_ctx, run_check, make_raster) -> None:
    tif = make_raster("scratch/emb.tif", np.zeros((4, 300, 200), dtype="float32"))
    whole = 4 * 300 * 200 * 4  # 960,000 bytes
    ctx = make_ctx(items=[str(tif)], reads="raster", resources=Resources(mem_bytes=whole - 1))
    res = run_check("memory", ctx)
    assert res.status == "fail" and "whole raster" in res.message
    ctx = make_ctx(items=[str(tif)], reads="raster", window=100, resources=Resources(mem_bytes=whole - 1))
    res = run_check("memory", ctx)
    assert res.status == "ok" and "window 100px" in res.message


def test_memory_catboost_twice_the_dataset(make_ctx, run_check, tmp_path) -> None:
    data = tmp_path / "points.npy"
    np.save(data, np.zeros((1000, 128), dtype="float32"))
    res = run_check("memory", make_ctx(catboost_dataset=data, resources=Resources(mem_bytes=MiB // 2)))
    assert res.status == "fail" and "CatBoost" in res.message


def test_array_ok_warn_fail(make_ctx, run_check) -> None:
    assert run_check("array", make_ctx(resources=Resources(array_size=10))).status == "ok"
    res = run_check("array", make_ctx(resources=Resources(array_size=400)))
    assert res.status == "warn" and "no %N throttle" in res.message
    assert run_check("array", make_ctx(resources=Resources(array_size=400, throttle=20))).status == "ok"
    res = run_check("array", make_ctx(resources=Resources(array_size=2500, throttle=20)))
    assert res.status == "warn" and "3 arrays" in res.message
    # indices 0..1000 fit MaxArraySize 1001; one more task needs a second array
    assert run_check("array", make_ctx(resources=Resources(array_size=1001, throttle=20))).status == "ok"
    assert run_check("array", make_ctx(resources=Resources(array_size=1002, throttle=20))).status == "warn"
    res = run_check("array", make_ctx(resources=Resources(array_size=2500, throttle=20, chunked=False)))
    assert res.status == "fail" and "Invalid job array specification" in res.message
    lumi = {"MAX_JOBS": "200", "SITE_NAME": "lumi"}
    res = run_check("array", make_ctx(site=lumi, resources=Resources(array_size=500, throttle=20)))
    assert res.status == "warn" and "200-job cap" in res.message and "waves" in res.fix


def test_internet_ok_warn_fail(make_ctx, run_check) -> None:
    assert run_check("internet", make_ctx(stage="download", downloads=True)).status == "ok"
    res = run_check("internet", make_ctx(site={"INTERNET": "no", "SITE_NAME": "saga"}, stage="download",
                                         downloads=True))
    assert res.status == "fail" and "no internet" in res.message and "pre-stage" in res.fix
    res = run_check("internet", make_ctx(site={"INTERNET": "no"}, stage="cog",
                                         params={"INPUT": "https://example.org/a.tif"}))
    assert res.status == "warn" and "https://example.org/a.tif" in res.message
    assert run_check("internet", make_ctx(site={"INTERNET": "no"}, stage="cog")).status == "ok"
