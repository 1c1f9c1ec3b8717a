"""jobs/fit.sbatch run as a job would run it (bash, SLURM_* set, 2 gloo ranks): SIGUSR1 -> checkpoint -> resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import REPO, env, make_prepped  # noqa: E402


def _job_env(tmp: Path, prep: Path, extra: str) -> dict[str, str]:
    manifest = tmp / "manifest.txt"
    manifest.write_text("run1\n")
    e = env()
    e.update({"GEOHPC_REPO": str(REPO), "GEOHPC_STAGE": "fit", "GEOHPC_LAUNCH": sys.executable,
              "GEOHPC_MANIFEST": str(manifest), "GEOHPC_OUT": str(tmp / "out"), "GEOHPC_WORK": str(tmp),
              "SLURM_ARRAY_TASK_ID": "0", "SLURM_CPUS_PER_TASK": "2", "GPU_VENDOR": "none",
              "DATA": str(prep), "ARCH": "mlp", "EPOCHS": "400", "BATCH": "4", "GEOHPC_ARGS": extra})
    e.pop("SLURM_JOB_ID", None)
    return e


def test_fit_job_usr1_checkpoints_then_resumes(tmp_path: Path) -> None:
    prep = make_prepped(tmp_path)
    e = _job_env(tmp_path, prep, "--width 8 --log-every 1")
    p = subprocess.Popen(["bash", str(REPO / "jobs" / "fit.sbatch")], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=e, cwd=tmp_path)
    assert p.stdout is not None
    lines, deadline = [], time.monotonic() + 90
    for line in p.stdout:
        lines.append(line)
        if line.startswith("fit: step 4/") or time.monotonic() > deadline:
            break
    os.kill(p.pid, signal.SIGUSR1)  # what '#SBATCH --signal=B:USR1@300' does: the batch shell only
    lines += p.stdout.readlines()
    assert p.wait(timeout=90) == 0, "".join(lines)[-3000:]
    log = "".join(lines)
    assert "== ranks 2" in log and "world 2 (gloo)" in log
    assert "SIGUSR1 (walltime near)" in log and "resubmit to resume" in log
    run = tmp_path / "out" / "run1"
    s = json.loads((run / "status.json").read_text())
    assert s["state"] == "stopped" and s["step"] >= 4
    assert not (run / "STOP").exists() and (run / "last.pt").exists()

    e2 = _job_env(tmp_path, prep, f"--width 8 --log-every 1 --stop-at-step {s['step'] + 2}")
    e2["SLURM_RESTART_COUNT"] = "1"
    r = subprocess.run(["bash", str(REPO / "jobs" / "fit.sbatch")], capture_output=True, text=True, env=e2,
                       cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"at step {s['step']} " in r.stderr and "SLURM_RESTART_COUNT=1" in r.stderr
    s2 = json.loads((run / "status.json").read_text())
    assert s2["step"] == s["step"] + 2 and s2["resumed_from"] == s["step"] and s2["slurm_restart_count"] == 1


@pytest.mark.parametrize("vendor,gpus,expect", [("rocm", "8", "8"), ("cuda", "4", "4"), ("none", "", "2")])
def test_train_nproc_and_rocm_env(vendor: str, gpus: str, expect: str) -> None:
    script = (f'source "{REPO}/jobs/train_lib.sh"; n="$(train_nproc)"; gpu_runtime_env "$n" >/dev/null; '
              'echo "$n|${MIOPEN_USER_DB_PATH:-}|${NCCL_SOCKET_IFNAME:-}|$OMP_NUM_THREADS"')
    e = {"PATH": os.environ["PATH"], "GPU_VENDOR": vendor, "GPUS_PER_NODE": gpus, "SLURM_JOB_ID": "77",
         "SLURM_CPUS_PER_TASK": "56", "USER": "u"}
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=e, check=True).stdout.strip()
    n, miopen, ifname, omp = out.split("|")
    assert n == expect and omp == str(56 // int(expect))
    if vendor == "rocm":
        assert miopen == "/tmp/u-miopen-77" and ifname == "hsn"
        os.rmdir(miopen)
    else:
        assert miopen == "" and ifname == ""
