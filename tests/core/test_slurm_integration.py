"""make submit / status / resubmit / throttle / cancel against the real local Slurm (make slurm-up)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers import job_ids_from, make, wait_jobs

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(600)]


@pytest.fixture(autouse=True)
def _slurm_up() -> None:
    proc = subprocess.run(["sinfo", "-h", "-o", "%P %a"], capture_output=True, text=True)
    assert proc.returncode == 0 and "small* up" in proc.stdout, "local Slurm is not up: make slurm-up"


def test_probe_gives_one_report_per_task(tmp_path: Path) -> None:
    proc = make("submit", "STAGE=probe", "SITE=local", "N=2", "THROTTLE=2", f"OUT_DIR={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert "(slurm)" in proc.stdout and "THROTTLE=2  (command line)" in proc.stdout
    ids = job_ids_from(proc.stdout)
    assert len(ids) == 1
    wait_jobs(ids)
    reports = sorted(tmp_path.glob("probe-*.json"))
    assert [r.name for r in reports] == ["probe-0000.json", "probe-0001.json"]
    for r in reports:
        data = json.loads(r.read_text())
        assert data["env"]["SLURM_ARRAY_JOB_ID"] == ids[0]
        assert data["cpus_allocated"] == 1
        assert data["mem_bytes_allocated"] == 1 << 30  # the job's #SBATCH --mem=1G, not the machine's
    status = make("status", "STAGE=probe")
    assert "2/2" in status.stdout and "100%" in status.stdout
    # every output exists: a second submit sends nothing
    again = make("submit", "STAGE=probe", "SITE=local", "N=2", f"OUT_DIR={tmp_path}")
    assert "nothing to submit" in again.stdout and job_ids_from(again.stdout) == []


def test_250_items_go_in_as_three_arrays_and_cancel(tmp_path: Path) -> None:
    proc = make("submit", "STAGE=probe", "SITE=local", "N=250", "THROTTLE=1", f"OUT_DIR={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    ids = job_ids_from(proc.stdout)
    try:
        assert len(ids) == 3
        arrays = [line.split("--array=")[1].split()[0] for line in proc.stdout.splitlines() if "--array=" in line]
        assert arrays == ["0-100%1", "0-100%1", "0-47%1"]
        shown = subprocess.run(["scontrol", "show", "job", ids[2]], capture_output=True, text=True).stdout
        assert "ArrayTaskThrottle=1" in shown
        thr = make("throttle", f"JOB={ids[0]}", "N=2")
        assert thr.returncode == 0, thr.stderr
        shown = subprocess.run(["scontrol", "show", "job", ids[0]], capture_output=True, text=True).stdout
        assert "ArrayTaskThrottle=2" in shown
    finally:
        cancel = make("cancel", "STAGE=probe")
    assert cancel.returncode == 0 and all(i in cancel.stdout for i in ids)
    wait_jobs(ids, timeout=60)


def test_throttle_and_cancel_bad_input() -> None:
    proc = make("throttle", "JOB=99999999", "N=2")
    assert proc.returncode == 2 and "JOB=99999999: no such job" in proc.stderr.splitlines()[0]
    proc = make("throttle", "JOB=12;ls", "N=2")
    assert proc.returncode == 2 and "is not a job id" in proc.stderr
    proc = make("throttle", "JOB=1", "N=zero")
    assert proc.returncode == 2 and "not a positive integer" in proc.stderr


def test_resubmit_sends_exactly_the_failed_items(tmp_path: Path) -> None:
    # items under a path that is a file cannot be written: those tasks fail for real
    (tmp_path / "blocked").write_text("not a folder")
    items = tmp_path / "items.txt"
    items.write_text("ok-a\nblocked/b\nok-c\nblocked/d\nok-e\n")
    proc = make("submit", "STAGE=probe", "SITE=local", f"ITEMS={items}", "THROTTLE=2", f"OUT_DIR={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    ids = job_ids_from(proc.stdout)
    wait_jobs(ids)
    status = make("status", "STAGE=probe")
    assert "3/5" in status.stdout and "failed=2" in status.stdout, status.stdout
    assert "make resubmit STAGE=probe" in status.stdout
    (tmp_path / "blocked").unlink()  # the user fixes the cause
    again = make("resubmit", "STAGE=probe", "THROTTLE=3")
    assert again.returncode == 0, again.stderr
    assert "resubmitting 2 item(s)" in again.stdout
    assert "--array=1,3%3" in again.stdout
    wait_jobs(job_ids_from(again.stdout))
    assert (tmp_path / "blocked" / "b.json").is_file() and (tmp_path / "blocked" / "d.json").is_file()
    final = make("status", "STAGE=probe")
    assert "5/5" in final.stdout
    nothing = make("resubmit", "STAGE=probe")
    assert "nothing to resubmit" in nothing.stdout


def test_after_unknown_job_is_refused(tmp_path: Path) -> None:
    proc = make("submit", "STAGE=probe", "SITE=local", "N=1", "AFTER=98765432", f"OUT_DIR={tmp_path}")
    assert proc.returncode == 2 and "AFTER=98765432: no such job" in proc.stderr
    assert not list(tmp_path.iterdir())


def test_waves_respect_max_jobs_and_skip_items_in_flight(tmp_path: Path) -> None:
    first = make("submit", "STAGE=probe", "SITE=local", "N=5", "MAX_JOBS=3", "THROTTLE=1", f"OUT_DIR={tmp_path}")
    assert first.returncode == 0, first.stderr
    ids = job_ids_from(first.stdout)
    try:
        assert "2 item(s) held back by MAX_JOBS=3" in first.stdout
        assert "--array=0-2%1" in first.stdout
        second = make("submit", "STAGE=probe", "SITE=local", "N=5", "MAX_JOBS=3", "THROTTLE=1", f"OUT_DIR={tmp_path}")
        assert second.returncode == 0, second.stderr
        ids += job_ids_from(second.stdout)
        # the first wave is still queued or running: only the held-back items go now
        assert "--array=3-4%1" in second.stdout, second.stdout
    finally:
        make("cancel", f"JOB={ids[0]}")
        if len(ids) > 1:
            make("cancel", f"JOB={ids[1]}")
    wait_jobs(ids, timeout=60)


def test_chunked_arrays_run_every_item_once(tmp_path: Path) -> None:
    items = tmp_path / "items.txt"
    names = [f"c{i:02d}" for i in range(7)]
    items.write_text("\n".join(names) + "\n")
    proc = make("submit", "STAGE=probe", "SITE=local", f"ITEMS={items}", "MAX_ARRAY_SIZE=3", "THROTTLE=2",
                f"OUT_DIR={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    ids = job_ids_from(proc.stdout)
    assert len(ids) == 3
    wait_jobs(ids)
    for i, name in enumerate(names):
        report = json.loads((tmp_path / f"{name}.json").read_text())
        # line i runs as task i % 3 of the (i // 3)-th array
        assert report["env"]["SLURM_ARRAY_JOB_ID"] == ids[i // 3], name
        assert report["env"]["SLURM_ARRAY_TASK_ID"] == str(i % 3), name
    assert "7/7" in make("status", "STAGE=probe").stdout


def test_the_sites_job_env_reaches_a_venv_job_and_is_masked_when_printed(tmp_path: Path) -> None:
    value = "SITE_GREETING:hello-from-the-site,SITE_API_TOKEN:tok-123456789abcdef"
    dry = make("submit", "STAGE=canary", "SITE=local", "CANARY=ok-001", f"OUT_DIR={tmp_path}", f"JOB_ENV={value}",
               "DRY_RUN=1")
    assert dry.returncode == 0, dry.stderr
    assert "SITE_GREETING=hello-from-the-site" in dry.stdout and "tok-123456789abcdef" not in dry.stdout + dry.stderr
    proc = make("submit", "STAGE=canary", "SITE=local", "CANARY=ok-001", f"OUT_DIR={tmp_path}", f"JOB_ENV={value}")
    assert proc.returncode == 0, proc.stderr
    assert "tok-123456789abcdef" not in proc.stdout + proc.stderr
    wait_jobs(job_ids_from(proc.stdout))
    seen = (tmp_path / "ok-001.txt").read_text()  # written by the job's program: what its environment held
    assert "job env: SITE_API_TOKEN=" in seen and "SITE_GREETING=hello-from-the-site" in seen
    assert "tok-123456789abcdef" not in seen
