"""Helpers for the integration tests: run make like a user, wait for Slurm jobs."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# the tests' run records stay out of the user's runs/ (conftest sets GEOHPC_RUNS_DIR)
RUNS_DIR = Path(os.environ.get("GEOHPC_RUNS_DIR") or tempfile.mkdtemp(prefix="geohpc-test-runs-"))


def make(*args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """``make -s ARGS`` in the repo with a clean environment (no stray GEOHPC_/SLURM_ variables)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GEOHPC_", "SLURM_", "MAKE"))}
    base["GEOHPC_RUNS_DIR"] = str(RUNS_DIR)
    base.update(env or {})
    return subprocess.run(["make", "-s", *args], cwd=REPO, capture_output=True, text=True, env=base, timeout=timeout)


def wait_jobs(job_ids: list[str], timeout: float = 300) -> None:
    """Wait until squeue shows none of ``job_ids`` and sacct has caught up."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run(["squeue", "-h", "-j", ",".join(job_ids)], capture_output=True, text=True).stdout
        if not out.strip():
            time.sleep(3)  # sacct lags squeue by ~2 s
            return
        time.sleep(1)
    raise TimeoutError(f"jobs {job_ids} still queued after {timeout}s")


def job_ids_from(stdout: str) -> list[str]:
    """Job ids from make submit's '  job N: --array=...' lines."""
    return [line.split()[1].rstrip(":") for line in stdout.splitlines() if line.startswith("  job ")]
