"""The probe report: every field the preflight checks read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_probe_report_fields(tmp_path: Path, repo: Path) -> None:
    out = tmp_path / "r.json"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(repo / "py"), "SLURM_CPUS_PER_TASK": "3",
           "PROJ_DATA": "/nowhere/proj", "ROCR_VISIBLE_DEVICES": "0,1"}
    proc = subprocess.run([sys.executable, "-m", "geohpc", "probe", "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    assert r["cpus_allocated"] == 3
    assert r["gpus"]["visible"] == {"ROCR_VISIBLE_DEVICES": "0,1"}
    assert r["python"]["version"].startswith("3.")
    assert r["glibc"].count(".") == 1
    assert r["torch"]["version"].startswith("2.13") and r["torch"]["device"] == "cpu"
    assert r["rasterio"]["gdal"].startswith("3.") and r["rasterio"]["proj"].startswith("9.")
    assert r["pyproj"]["data_dir"]
    assert r["env"]["PROJ_DATA"] == "/nowhere/proj"
