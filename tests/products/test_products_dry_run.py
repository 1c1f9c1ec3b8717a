"""`make submit STAGE=cog|mosaic SITE=lumi DRY_RUN=1` renders the array and the job environment."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from geohpc.core.stages import StageContext
from geohpc.plans.cog import memory_bytes
from testutil import REPO, write_raster


def make(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root"}
    return subprocess.run(["make", "-s", *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("stage, extra, needles", [
    ("cog", ["COG_MEM=2G"], ["--array=0-2", "jobs/cog.sbatch", "export COG_MEM=2G", "3 to run"]),
    ("mosaic", ["NAME=romania"], ["--array=0", "jobs/mosaic.sbatch", "export NAME=romania", "1 to run"]),
])
def test_dry_run_on_lumi(tmp_path: Path, stage: str, extra: list[str], needles: list[str]) -> None:
    for n in ("a", "b", "c"):
        write_raster(tmp_path / "in" / f"{n}.tif", np.ones((1, 20, 20), "uint8"))
    proc = make("submit", f"STAGE={stage}", "SITE=lumi", "DRY_RUN=1", f"INPUT_DIR={tmp_path / 'in'}", *extra)
    assert proc.returncode == 0, proc.stderr
    for needle in [*needles, f"export INPUT_DIR={tmp_path / 'in'}", "--partition=small"]:
        assert needle in proc.stdout, (needle, proc.stdout)


def test_cog_memory_estimate_follows_budget(tmp_path: Path) -> None:
    ctx = StageContext("cog", {}, {"COG_MEM": "2G"}, REPO, tmp_path)
    assert memory_bytes("x.tif", ctx) == (2 << 30) + (512 << 20)
