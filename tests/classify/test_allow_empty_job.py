"""ALLOW_EMPTY=1 on the make line reaches the stage: an all-nodata strip (all sea) is then not an error."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _job_argv(stage: str, tmp_path: Path, **values: str) -> str:
    (tmp_path / "manifest.txt").write_text("a.tif::0/1\n")
    env = {"PATH": os.environ["PATH"], "GEOHPC_REPO": str(REPO), "GEOHPC_STAGE": stage, "GEOHPC_LAUNCH": "echo",
           "GEOHPC_MANIFEST": str(tmp_path / "manifest.txt"), "SLURM_ARRAY_TASK_ID": "0",
           "GEOHPC_OUT": str(tmp_path / "out"), "MODEL": "m", **values}
    run = subprocess.run(["bash", str(REPO / "jobs" / f"{stage}.sbatch")], capture_output=True, text=True, env=env,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    return next(line for line in run.stdout.splitlines() if line.startswith(f"-m geohpc {stage} "))


def test_classify_and_predict_pass_allow_empty_only_when_asked(tmp_path: Path) -> None:
    base = {"MEM_BUDGET": "512M", "CONFIDENCE": "0", "TILE": "256", "OVERLAP": "64"}
    for stage in ("classify", "predict"):
        assert "--allow-empty" not in _job_argv(stage, tmp_path, **base, ALLOW_EMPTY="0")
        assert "--allow-empty" in _job_argv(stage, tmp_path, **base, ALLOW_EMPTY="1")
