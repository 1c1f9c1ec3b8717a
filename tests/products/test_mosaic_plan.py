"""The mosaic stage plan and its job script run for real on a small tile folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from geohpc.core.stages import StageContext, get_stage
from geohpc.errors import ConfigError
from testutil import REPO, job_values_for, write_raster


def ctx(tmp_path: Path, **params: str) -> StageContext:
    return StageContext(stage="mosaic", site={}, params=params, repo=REPO, work=tmp_path)


def test_plan(tmp_path: Path) -> None:
    stage = get_stage("mosaic")
    with pytest.raises(ConfigError, match="INPUT_DIR"):
        stage.build_manifest(ctx(tmp_path))
    with pytest.raises(ConfigError, match="NAME"):
        stage.build_manifest(ctx(tmp_path, INPUT_DIR="x", NAME="a b/c"))
    c = ctx(tmp_path, INPUT_DIR="tiles", NAME="romania")
    assert stage.build_manifest(c) == ["romania"]
    assert stage.output_for("romania", c) == tmp_path / "outputs" / "mosaic" / "romania.tif"
    assert stage.output_for("romania", ctx(tmp_path, INPUT_DIR="t", COG="no")).suffix == ".vrt"
    assert not stage.done("romania", c)


def test_job_script_builds_vrt_and_cog(tmp_path: Path) -> None:
    full = np.random.default_rng(0).random((1, 80, 80)).astype("float32")
    for r in (0, 40):
        for c in (0, 40):
            write_raster(tmp_path / "tiles" / f"{r}_{c}.tif", full[:, r:r + 40, c:c + 40],
                         origin=(500000.0 + c * 10, 5000000.0 - r * 10))
    manifest = tmp_path / "manifest.txt"
    manifest.write_text("m1\n")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "GEOHPC_"))}
    env.update(GEOHPC_REPO=str(REPO), GEOHPC_STAGE="mosaic", GEOHPC_LAUNCH=sys.executable,
               GEOHPC_MANIFEST=str(manifest), SLURM_ARRAY_TASK_ID="0", GEOHPC_OUT=str(out),
               INPUT_DIR=str(tmp_path / "tiles"), BLOCKSIZE="64")
    env.update(job_values_for("mosaic", tmp_path, INPUT_DIR=str(tmp_path / "tiles"), BLOCKSIZE="64"))
    r = subprocess.run(["bash", str(REPO / "jobs" / "mosaic.sbatch")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    with rasterio.open(out / "m1.tif") as ds:
        np.testing.assert_array_equal(ds.read(), full)
    assert get_stage("mosaic").done("m1", StageContext("mosaic", {}, {"INPUT_DIR": "x", "OUT_DIR": str(out)}, REPO, tmp_path))
