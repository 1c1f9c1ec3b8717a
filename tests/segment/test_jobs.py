"""jobs/train_lib.sh: processes per site and the ROCm runtime settings (the USR1 path is in test_fit_ddp.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from segment_helpers import REPO  # noqa: E402


@pytest.mark.parametrize("vendor,gpus,expect", [("rocm", "8", "8"), ("cuda", "4", "4"), ("none", "", "2")])
def test_train_nproc_and_rocm_env(vendor: str, gpus: str, expect: str) -> None:
    # a 64-core node: nproc is shadowed by a function (this VM has 2 CPUs and the job caps at what it has)
    # the ROCm settings are the site's GPU_ENV (sites/lumi.env), exported by job_start's gpu_env_start
    script = (f'nproc() {{ echo 64; }}; source "{REPO}/jobs/lib.sh"; source "{REPO}/jobs/train_lib.sh"; '
              'gpu_env_start >/dev/null; n="$(train_nproc)"; gpu_runtime_env "$n" >/dev/null; '
              'echo "$n|${MIOPEN_USER_DB_PATH:-}|${NCCL_SOCKET_IFNAME:-}|$OMP_NUM_THREADS"')
    e = {"PATH": os.environ["PATH"], "GPU_VENDOR": vendor, "GEOHPC_GPUS": gpus, "SLURM_JOB_ID": "77",
         "SLURM_CPUS_PER_TASK": "56", "USER": "u"}
    if vendor == "rocm":
        e.update(GEOHPC_GPU_ENV="MIOPEN_USER_DB_PATH,NCCL_SOCKET_IFNAME",
                 MIOPEN_USER_DB_PATH="/tmp/%u-miopen-cache-%j", NCCL_SOCKET_IFNAME="hsn")
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=e, check=True).stdout.strip()
    n, miopen, ifname, omp = out.split("|")
    assert n == expect and omp == str(56 // int(expect))
    if vendor == "rocm":
        assert miopen == "/tmp/u-miopen-cache-77" and ifname == "hsn"
        os.rmdir(miopen)
    else:
        assert miopen == "" and ifname == ""


def test_threads_capped_at_usable_cpus() -> None:
    script = f'source "{REPO}/jobs/train_lib.sh"; gpu_runtime_env 2 >/dev/null; echo "$OMP_NUM_THREADS"'
    e = {"PATH": os.environ["PATH"], "GPU_VENDOR": "none", "SLURM_CPUS_PER_TASK": "16"}
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=e, check=True).stdout.strip()
    usable = len(os.sched_getaffinity(0))
    assert int(out) == max(1, min(16, usable) // 2)
