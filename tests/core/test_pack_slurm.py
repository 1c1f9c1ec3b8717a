"""Packed runs (PACK=n WORKERS=w) on the real local Slurm: per-item status, records, logs, kill and resubmit."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from helpers import RUNS_DIR, job_ids_from, make, wait_jobs

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(900)]


@pytest.fixture(autouse=True)
def _slurm_up() -> None:
    proc = subprocess.run(["sinfo", "-h", "-o", "%P %a"], capture_output=True, text=True)
    assert proc.returncode == 0 and "small* up" in proc.stdout, "local Slurm is not up: make slurm-up"


def _latest_run(stage: str) -> Path:
    runs = sorted((RUNS_DIR / stage).iterdir(), key=lambda p: p.stat().st_mtime)
    return runs[-1]


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for f in sorted((run / "items").glob("*.jsonl")) for line in f.read_text().splitlines()]


def test_pack_50_workers_2_over_1000_items(tmp_path: Path) -> None:
    proc = make("submit", "STAGE=noop", "SITE=local", "N=1000", "PACK=50", "WORKERS=2", f"OUT_DIR={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert "1000 item(s) in 20 array task(s) of up to 50, 2 at once" in proc.stdout
    ids = job_ids_from(proc.stdout)
    wait_jobs(ids, timeout=800)
    run = _latest_run("noop")
    # 20 tasks go in as one array of jobs/pack.sbatch, each asking 2 items' CPUs and memory
    command = (run / "commands.sh").read_text()
    assert "--array=0-19" in command and "--cpus-per-task=2" in command and "--mem=512M" in command
    assert command.rstrip().endswith("jobs/pack.sbatch")
    packs = [line.split() for line in (run / "packs" / "0.txt").read_text().splitlines()]
    assert len(packs) == 20 and [int(x) for x in packs[3]] == list(range(3, 1000, 20))  # split by stride
    recs = _records(run)
    assert sorted(r["line"] for r in recs) == list(range(1000))
    assert {r["state"] for r in recs} == {"COMPLETED"}
    assert all(Path(r["log"]).is_file() and r["max_rss"] > 0 for r in recs)
    assert len(list(tmp_path.glob("ok-*.done"))) == 1000
    status = make("status", "STAGE=noop")
    assert "1000/1000" in status.stdout and "100%" in status.stdout, status.stdout
    nothing = make("resubmit", "STAGE=noop")
    assert "nothing to resubmit" in nothing.stdout
    # the run as a pipeline step: sacct's TotalCPU/AllocCPUS/Start/End reach status and the report
    pipe = RUNS_DIR / "packpipe" / "20261207-000000"
    (pipe / "steps").mkdir(parents=True)
    (pipe / "pipeline.json").write_text(json.dumps({"schema": "geohpc.pipeline-run/1", "pipeline": "packpipe",
                                                    "site": "local", "steps": [{"name": "many", "stage": "noop"}]}))
    (pipe / "steps" / "many.json").write_text(json.dumps({"step": "many", "stage": "noop", "state": "done",
                                                          "run": str(run), "waves_sent": 1, "waves_total": 1}))
    shown = make("status", "PIPELINE=packpipe")
    assert shown.returncode == 0 and "1000/1000" in shown.stdout, shown.stderr
    eff = shown.stdout.split("cpu efficiency ", 1)[1].split("%", 1)[0]
    assert eff.isdigit() and 0 < int(eff) <= 100, shown.stdout  # sum TotalCPU / sum(Elapsed x AllocCPUS)
    from geohpc.ops.pipeline_report import write_report

    text = write_report(pipe).read_text()
    assert (pipe / "timeline-many.png").is_file() and "1000/1000" in text


def test_packed_failures_kill_and_resubmit_redo_only_what_did_not_finish(tmp_path: Path) -> None:
    items = tmp_path / "items.txt"
    names = [f"sleep1-{i:02d}" for i in range(40)] + ["fail-x", "mem600-y"]
    items.write_text("\n".join(names) + "\n")
    proc = make("submit", "STAGE=noop", "SITE=local", f"ITEMS={items}", "PACK=14", "WORKERS=2", "THROTTLE=1",
                f"OUT_DIR={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    ids = job_ids_from(proc.stdout)
    run = _latest_run("noop")
    deadline = time.time() + 240
    while time.time() < deadline and len(_records(run)) < 6:
        time.sleep(0.5)
    cancel = make("cancel", "STAGE=noop")  # the user kills the run part-way
    assert cancel.returncode == 0, cancel.stderr
    wait_jobs(ids, timeout=120)
    done_before = {r["line"]: r for r in _records(run) if r["state"] == "COMPLETED"}
    assert 0 < len(done_before) < 42
    mtimes = {n: (tmp_path / f"{names[n]}.done").stat().st_mtime_ns for n in done_before}
    status = make("status", "STAGE=noop")
    assert f"{len(done_before)}/42" in status.stdout and "cancelled=" in status.stdout, status.stdout
    again = make("resubmit", "STAGE=noop", "ITEM_MEM=1G")
    assert again.returncode == 0, again.stderr
    assert f"resubmitting {42 - len(done_before)} item(s)" in again.stdout
    wait_jobs(job_ids_from(again.stdout), timeout=300)
    repacked = {int(x) for line in (run / "packs" / "1.txt").read_text().splitlines() for x in line.split()}
    assert repacked == set(range(42)) - set(done_before)  # only what did not finish, repacked
    for n, ns in mtimes.items():  # nothing finished is redone
        assert (tmp_path / f"{names[n]}.done").stat().st_mtime_ns == ns
    final = make("status", "STAGE=noop")
    assert "41/42" in final.stdout and "failed=1" in final.stdout, final.stdout
    latest = {r["line"]: r for r in _records(run) if r["line"] in repacked and r["log"].count(f"_{ids[0]}_") == 0}
    assert latest[41]["state"] == "COMPLETED" and latest[41]["max_rss"] > 600 << 20  # mem600 fits its 1G share
    assert latest[40]["state"] == "FAILED" and latest[40]["rc"] == 3
    logs = make("logs", "STAGE=noop")
    assert "fail-x" in logs.stdout and "fails on purpose" in logs.stdout, logs.stdout
