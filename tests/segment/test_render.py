"""DRY_RUN renderings of the fit job for Betzy, LUMI and local, and what the job would make of them.

The job environment printed by ``make submit ... DRY_RUN=1`` is fed to jobs/train_lib.sh to get
the torchrun process count and the runtime settings a real task would use.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def make(*args: str) -> str:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root"}
    p = subprocess.run(["make", "-s", *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def job_view(out: str, slurm_gpus: str = "") -> dict[str, str]:
    """Source the rendered job.env lines, export the site's GPU_ENV as job_start does, then ask
    train_lib.sh what the fit job would launch."""
    exports = "\n".join(line.strip() for line in out.splitlines() if line.startswith("  export "))
    script = (f"{exports}\nexport SLURM_JOB_ID=123 SLURM_CPUS_PER_TASK=56 USER=me {slurm_gpus}\n"
              "nproc() { echo 64; }\n"  # a 64-core GPU node (the job caps threads at the CPUs it can use)
              f'source "{REPO}/jobs/lib.sh"; source "{REPO}/jobs/train_lib.sh"\n'
              'gpu_env_start >/dev/null; n="$(train_nproc)"; gpu_runtime_env "$n" >/dev/null; rmdir "${MIOPEN_USER_DB_PATH:-/nonexistent}" 2>/dev/null\n'
              'echo "nproc=$n"; echo "ifname=${NCCL_SOCKET_IFNAME:-}"; echo "miopen=${MIOPEN_USER_DB_PATH:-}"\n'
              'echo "omp=$OMP_NUM_THREADS"; echo "launch=$GEOHPC_LAUNCH"')
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    return dict(line.split("=", 1) for line in res.stdout.splitlines())


def sbatch_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.strip().startswith("sbatch "))


def test_fit_script_directives() -> None:
    from geohpc.core.jobspec import sbatch_directives

    d = sbatch_directives(REPO / "jobs" / "fit.sbatch")
    assert d["job-name"] == "fit" and d["signal"] == "B:USR1@300" and "requeue" in d
    assert d["nodes"] == "1" and d["output"] == "logs/%x_%A_%a.out" and d["open-mode"] == "append"
    text = (REPO / "jobs" / "fit.sbatch").read_text()
    assert "torch.distributed.run --standalone --nproc_per_node=" in text and "-m geohpc fit" in text


def test_lumi_fit_rendering() -> None:
    out = make("submit", "STAGE=fit", "SITE=lumi", "DRY_RUN=1", "EPOCHS=40")
    sb = sbatch_line(out)
    assert "--partition=small-g" in sb and "--gpus-per-node=8" in sb and sb.endswith("jobs/fit.sbatch")
    assert "--rocm" not in out
    assert "GEOHPC_LAUNCH='singularity exec /appl/local/containers/sif-images/lumi-pytorch-rocm-6.2.4-python-3.12-" \
           "pytorch-v2.7.1.sif python3'" in out
    assert "SINGULARITY_BIND=/var/spool/slurmd,/opt/cray," in out
    assert "export EPOCHS=40" in out
    # fit asks 128G of a node: within small-g's 480G, so not capped
    assert "--mem" not in sb
    v = job_view(out)
    assert v["nproc"] == "8" and v["omp"] == "7"
    assert v["ifname"] == "hsn" and v["miopen"] == "/tmp/me-miopen-cache-123"


def test_betzy_fit_rendering() -> None:
    out = make("submit", "STAGE=fit", "SITE=betzy", "DRY_RUN=1", "ACCOUNT=nn9999k",
               "SCRATCH=/cluster/work/users/me", "PYTORCH_SIF=/cluster/sif/t.sif")
    sb = sbatch_line(out)
    assert "--account=nn9999k" in sb and "--gpus-per-node=4" in sb and "--partition=accel" in sb
    assert "apptainer exec --nv --bind /cluster --env PYTHONPATH=" in out and "/cluster/sif/t.sif python3" in out
    v = job_view(out)
    assert v["nproc"] == "4" and v["omp"] == "14" and v["ifname"] == "" and v["miopen"] == ""
    # GPUS=2 on the make line: Slurm sets SLURM_GPUS_ON_NODE=2 and torchrun follows it
    out2 = make("submit", "STAGE=fit", "SITE=betzy", "DRY_RUN=1", "GPUS=2", "ACCOUNT=nn9999k",
                "SCRATCH=/cluster/work/users/me", "PYTORCH_SIF=/cluster/sif/t.sif")
    assert "--gpus-per-node=2" in sbatch_line(out2)
    assert job_view(out2, "SLURM_GPUS_ON_NODE=2")["nproc"] == "2"


def test_local_fit_rendering() -> None:
    out = make("submit", "STAGE=fit", "SITE=local", "DRY_RUN=1")
    assert "--gpus-per-node" not in sbatch_line(out)
    v = job_view(out)
    assert v["nproc"] == "2" and re.search(r"python3?$", v["launch"])


@pytest.mark.parametrize("stage,params", [
    ("prep", ["EMBEDDINGS=data/e.tif", "LABELS=data/l.tif", "CLASSES=1:corn"]),
    ("predict", ["EMBEDDINGS=/scratch/project_465002500/x.tif", "SHARDS=4"]),
])
def test_prep_and_predict_render_on_lumi(stage: str, params: list[str]) -> None:
    out = make("submit", f"STAGE={stage}", "SITE=lumi", "DRY_RUN=1", *params)
    sb = sbatch_line(out)
    assert sb.endswith(f"jobs/{stage}.sbatch")
    if stage == "prep":
        assert "--partition=small" in sb and "--gpus-per-node" not in sb and "export CLASSES=1:corn" in out
    else:
        assert "--array=0-3%200" in sb and "export SHARDS=4" in out
