"""The cog stage plan (manifest, outputs, done-check) and its job script run for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from geohpc.core.stages import StageContext, get_stage
from geohpc.errors import ConfigError, InputError
from geohpc.products.cog import validate_cog
from testutil import REPO, job_values_for, write_raster


def ctx(tmp_path: Path, **params: str) -> StageContext:
    return StageContext(stage="cog", site={}, params=params, repo=REPO, work=tmp_path / "work")


def test_manifest_outputs_and_done(tmp_path: Path) -> None:
    inp = tmp_path / "in"
    for name in ("b.tif", "a.TIFF", "c.tif"):
        write_raster(inp / name, np.ones((1, 40, 40), "uint8"))
    (inp / "notes.txt").write_text("x")
    stage = get_stage("cog")
    c = ctx(tmp_path, INPUT_DIR=str(inp), OUT_DIR=str(tmp_path / "out"))
    items = stage.build_manifest(c)
    assert [Path(i).name for i in items] == ["a.TIFF", "b.tif", "c.tif"]
    assert stage.output_for(items[0], c) == tmp_path / "out" / "a.tif"
    assert not stage.done(items[0], c)
    # a striped file at the output path is not "done": it is not a COG
    write_raster(tmp_path / "out" / "a.tif", np.ones((1, 40, 40), "uint8"), tiled=False, blockysize=1)
    assert not stage.done(items[0], c)
    listed = tmp_path / "items.txt"
    listed.write_text(f"{items[2]}\n")
    assert stage.build_manifest(ctx(tmp_path, ITEMS=str(listed))) == [items[2]]


def test_manifest_errors(tmp_path: Path) -> None:
    stage = get_stage("cog")
    with pytest.raises(ConfigError, match="INPUT_DIR"):
        stage.build_manifest(ctx(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no \\*.tif"):
        stage.build_manifest(ctx(tmp_path, INPUT_DIR=str(tmp_path / "empty")))
    listed = tmp_path / "items.txt"
    listed.write_text("/x/one/a.tif\n/y/two/a.tiff\n")
    with pytest.raises(InputError, match="both write a.tif"):
        stage.build_manifest(ctx(tmp_path, ITEMS=str(listed)))


def test_job_script_runs_one_item(tmp_path: Path) -> None:
    src = write_raster(tmp_path / "in" / "scene.tif", np.random.default_rng(0).random((3, 90, 80)).astype("float32"),
                       tiled=False, blockysize=1)
    manifest = tmp_path / "manifest.txt"
    manifest.write_text(f"{src}\n")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "GEOHPC_"))}
    env.update(GEOHPC_REPO=str(REPO), GEOHPC_STAGE="cog", GEOHPC_LAUNCH=sys.executable, GEOHPC_MANIFEST=str(manifest),
               SLURM_ARRAY_TASK_ID="0", GEOHPC_OUT=str(out), BLOCKSIZE="64", SLURM_CPUS_PER_TASK="1")
    env.update(job_values_for("cog", tmp_path, BLOCKSIZE="64"))  # what make submit writes into job.env
    r = subprocess.run(["bash", str(REPO / "jobs" / "cog.sbatch")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert validate_cog(out / "scene.tif", 64) == []
    assert get_stage("cog").done(str(src), ctx(tmp_path, OUT_DIR=str(out)))
