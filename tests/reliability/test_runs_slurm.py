"""Runs are what was submitted, against the real local Slurm: an item is its input and its output, and
make resubmit replays the run's spec (MEM, CPUS, THROTTLE, make-line ACCOUNT and partition)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from relutil import record
from runs_helpers import REPO, clean_env

pytestmark = [pytest.mark.slurm, pytest.mark.reliability, pytest.mark.timeout(600)]


@pytest.fixture(autouse=True)
def _slurm_up() -> None:
    proc = subprocess.run(["sinfo", "-h", "-o", "%P %a"], capture_output=True, text=True)
    assert proc.returncode == 0 and "small* up" in proc.stdout, "local Slurm is not up: make slurm-up"


def _make(runs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**clean_env(), "GEOHPC_RUNS_DIR": str(runs)}
    return subprocess.run(["make", "-s", *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=300)


def _ids(stdout: str) -> list[str]:
    return [line.split()[1].rstrip(":") for line in stdout.splitlines() if line.startswith("  job ")]


def _wait(ids: list[str], timeout: float = 240) -> None:
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        if not subprocess.run(["squeue", "-h", "-j", ",".join(ids)], capture_output=True, text=True).stdout.strip():
            time.sleep(3)  # sacct lags squeue
            return
        time.sleep(1)
    raise TimeoutError(f"jobs {ids} still queued")


def test_same_items_with_another_out_dir_are_submitted(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    held = subprocess.run(["sbatch", "--parsable", "--hold", "--wrap", "true", "-o", "/dev/null"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ids = [held]
    try:
        base = ("submit", "STAGE=probe", "SITE=local", "N=2", f"AFTER={held}")
        first = _make(runs, *base, f"OUT_DIR={tmp_path}/a")
        assert first.returncode == 0, first.stderr
        ids += _ids(first.stdout)
        again = _make(runs, *base, f"OUT_DIR={tmp_path}/a")  # the same work, still pending: not sent twice
        assert again.returncode == 0, again.stderr
        ids += _ids(again.stdout)
        assert "2 still queued or running in earlier runs, 0 to run" in again.stdout, again.stdout
        other = _make(runs, *base, f"OUT_DIR={tmp_path}/b")  # the same items, another output: other work
        assert other.returncode == 0, other.stderr
        ids += _ids(other.stdout)
        ok = "0 still queued or running in earlier runs, 2 to run" in other.stdout and len(_ids(other.stdout)) == 1
        record("bad_input", "submit", "same items, another OUT_DIR, first run still queued", ok)
        assert ok, other.stdout
    finally:
        subprocess.run(["scancel", *ids], capture_output=True)


def _sacct(job: str) -> str:
    return subprocess.run(["sacct", "-X", "-n", "-P", "-j", job, "-o", "Partition,Account,ReqMem,ReqCPUS"],
                          capture_output=True, text=True).stdout


def test_resubmit_replays_the_spec_and_prints_overrides(tmp_path: Path) -> None:
    runs, out = tmp_path / "runs", tmp_path / "out"
    out.mkdir()
    (out / "blocked").write_text("a file where a folder should be: that item fails for real")
    items = tmp_path / "items.txt"
    items.write_text("ok-a\nblocked/b\nok-c\n")
    first = _make(runs, "submit", "STAGE=probe", "SITE=local", f"ITEMS={items}", f"OUT_DIR={out}", "MEM=700M",
                  "CPUS=1", "THROTTLE=2", "ACCOUNT=root", "PARTITION_CPU=standard-g")
    assert first.returncode == 0, first.stderr
    _wait(_ids(first.stdout))
    again = _make(runs, "resubmit", "STAGE=probe")  # nothing on the make line: the run's own values
    assert again.returncode == 0, again.stderr
    assert "resubmitting 1 item(s)" in again.stdout and "override" not in again.stdout, again.stdout
    job = _ids(again.stdout)
    assert len(job) == 1 and "--array=1%2" in again.stdout, again.stdout
    _wait(job)
    run = next(runs.glob("probe/*"))
    last = (run / "commands.sh").read_text().splitlines()[-1]
    replayed = all(o in last for o in ("--account=root", "--partition=standard-g", "--mem=700M", "--cpus-per-task=1",
                                       "--array=1%2"))
    slurm_got = _sacct(job[0]).splitlines()[0].split("|")
    ok = replayed and slurm_got[0] == "standard-g" and slurm_got[1] == "root" and slurm_got[2].startswith("700M") \
        and slurm_got[3] == "1"
    record("bad_input", "resubmit", "replays MEM, CPUS, THROTTLE, make-line ACCOUNT and partition", ok)
    assert ok, (last, slurm_got)
    over = _make(runs, "resubmit", "STAGE=probe", "MEM=800M", "THROTTLE=1", "PARTITION_CPU=small", "DRY_RUN=1")
    assert over.returncode == 0, over.stderr
    for line in ("override from the make line: mem: 700M -> 800M", "override from the make line: throttle: 2 -> 1",
                 "override from the make line: partition: standard-g -> small"):
        assert line in over.stdout, over.stdout
    assert "--mem=800M" in over.stdout and "--array=1%1" in over.stdout and "--account=root" in over.stdout
