"""End to end through `make submit SITE=local EXECUTOR=local`: cog over a folder, a rerun that skips, a mosaic."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import rasterio
from geohpc.products.cog import validate_cog
from testutil import REPO, write_raster


def make(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEOHPC_", "SLURM_", "MAKE"))}
    return subprocess.run(["make", "-s", *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=300)


def test_cog_then_mosaic_through_make_submit(tmp_path: Path) -> None:
    full = np.random.default_rng(7).random((3, 200, 240)).astype("float32")
    for r in (0, 100):
        for c in (0, 120):
            write_raster(tmp_path / "in" / f"t{r}_{c}.tif", full[:, r:r + 100, c:c + 120], tiled=False, blockysize=1,
                         origin=(500000.0 + c * 10, 5000000.0 - r * 10))
    cogs = tmp_path / "cogs"
    common = ["SITE=local", "EXECUTOR=local", "BLOCKSIZE=64"]
    p = make("submit", "STAGE=cog", *common, f"INPUT_DIR={tmp_path / 'in'}", f"OUT_DIR={cogs}")
    assert p.returncode == 0, p.stdout + p.stderr
    outs = sorted(cogs.glob("*.tif"))
    assert [o.name for o in outs] == ["t0_0.tif", "t0_120.tif", "t100_0.tif", "t100_120.tif"]
    assert all(validate_cog(o, 64) == [] for o in outs)
    again = make("submit", "STAGE=cog", *common, f"INPUT_DIR={tmp_path / 'in'}", f"OUT_DIR={cogs}")
    assert again.returncode == 0 and "4 already done" in again.stdout, again.stdout
    mos = tmp_path / "mosaic"
    m = make("submit", "STAGE=mosaic", *common, f"INPUT_DIR={cogs}", f"OUT_DIR={mos}", "NAME=area")
    assert m.returncode == 0, m.stdout + m.stderr
    with rasterio.open(mos / "area.tif") as ds:
        np.testing.assert_array_equal(ds.read(), full)
    assert validate_cog(mos / "area.tif", 64) == [] and (mos / "area.vrt").is_file()
