"""The embedding COG layout chosen by bench/bench_layout.py (bench/RESULTS-layout.md): band interleave, 512² tiles,
ZSTD level 1, predictor 2 for int8. These pin the defaults of stitch (what it writes), cog (the final file) and their
stages, so a change of any of them has to come with a new measurement."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import rasterio
from geohpc.embed import stitch
from geohpc.plans.cog import STAGE as COG_STAGE
from geohpc.plans.stitch import STAGE as STITCH_STAGE
from geohpc.products.cog import build, cli
from testutil import write_raster


def test_stitch_writes_band_interleaved_512_zstd1() -> None:
    grid = {"width": 1024, "height": 1024, "crs": "EPSG:32635", "res": 10.0, "x0": 500000.0, "y0": 5200000.0}
    assert inspect.signature(stitch.stitch).parameters["tile"].default == 512
    prof = stitch._profile(grid, "int8", 128, 512)
    assert {k: prof[k] for k in ("interleave", "blockxsize", "blockysize", "compress", "zstd_level", "predictor")} == \
        {"interleave": "band", "blockxsize": 512, "blockysize": 512, "compress": "zstd", "zstd_level": 1, "predictor": 2}
    assert stitch._profile(grid, "float32", 128, 512)["predictor"] == 3
    assert STITCH_STAGE.defaults["STITCH_TILE"] == "512"


def test_cog_defaults_band_512_zstd1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = inspect.signature(build.make_cog).parameters
    assert params["blocksize"].default == 512 and params["interleave"].default is None
    assert build.DEFAULT_ZSTD_LEVEL == 1 and build.default_interleave(128) == "BAND" and build.default_interleave(3) == "PIXEL"
    assert COG_STAGE.defaults["BLOCKSIZE"] == "512"
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "internal tile size (default 512)" in " ".join(capsys.readouterr().out.split())
    # and a 128-band int8 file built with no options has that layout
    data = np.random.default_rng(3).integers(-127, 127, (128, 80, 70), dtype=np.int8)
    src = write_raster(tmp_path / "emb.tif", data, nodata=-128)
    out = build.make_cog(src, tmp_path / "emb_cog.tif", blocksize=64)
    with rasterio.open(out) as ds:
        st = ds.tags(ns="IMAGE_STRUCTURE")
        assert ds.profile["interleave"] == "band" and st["COMPRESSION"] == "ZSTD" and st["PREDICTOR"] == "2"
        np.testing.assert_array_equal(ds.read(), data)
