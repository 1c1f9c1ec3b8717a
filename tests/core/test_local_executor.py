"""SITE=local without Slurm: the same job scripts run directly, THROTTLE at a time; status still works."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import make


def test_local_executor_runs_job_scripts(tmp_path: Path) -> None:
    proc = make("submit", "STAGE=probe", "SITE=local", "EXECUTOR=local", "N=3", "THROTTLE=2", f"OUT_DIR={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert "(local)" in proc.stdout
    reports = sorted(tmp_path.glob("probe-*.json"))
    assert len(reports) == 3
    data = json.loads(reports[0].read_text())
    assert data["env"]["SLURM_ARRAY_TASK_ID"] == "0" and data["cpus_allocated"] == 1
    run_dir = Path(next(line.split()[-1] for line in proc.stdout.splitlines() if line.startswith("recorded in")))
    states = [json.loads(p.read_text()) for p in (run_dir / "local").glob("*.json")]
    assert sorted(s["state"] for s in states) == ["COMPLETED"] * 3
    assert all(s["max_rss"] > 10 << 20 for s in states)
    log = Path(states[0]["log"])
    assert log.name.startswith("probe_") and "== geohpc probe job" in log.read_text()
    status = make("status", "STAGE=probe")
    assert "3/3" in status.stdout and "MaxRSS" in status.stdout


def test_local_executor_runs_every_chunk(tmp_path: Path) -> None:
    items = tmp_path / "items.txt"
    items.write_text("e0\ne1\ne2\ne3\ne4\n")
    proc = make("submit", "STAGE=probe", "SITE=local", "EXECUTOR=local", f"ITEMS={items}", "MAX_ARRAY_SIZE=2",
                f"OUT_DIR={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    for i in range(5):
        report = json.loads((tmp_path / f"e{i}.json").read_text())
        assert report["env"]["SLURM_ARRAY_TASK_ID"] == str(i % 2)
