"""make submit DRY_RUN=1 renderings of the embedding stages, side by side for LUMI, Betzy, Saga and local.

Each rendering's job environment is then fed to the real job script with the launcher prefixed by
``echo``, so the test reads the exact command each site's job would run.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BBOX = "600000,4999360,600640,5000000"  # 64 x 64 px: one block
LUMI_SIF = "/appl/local/containers/sif-images/lumi-pytorch-rocm-6.2.4-python-3.12-pytorch-v2.7.1.sif"


def make(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    return subprocess.run(["make", "-s", "submit", *args], cwd=REPO, capture_output=True, text=True, env=env,
                          timeout=120)


def dry_run(site: str, stage: str, *params: str) -> tuple[str, dict[str, str]]:
    proc = make(f"STAGE={stage}", f"SITE={site}", "DRY_RUN=1", f"BBOX={BBOX}", *params)
    assert proc.returncode == 0, proc.stderr
    sbatch = next(line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("sbatch "))
    env = {}
    for line in proc.stdout.splitlines():
        if line.startswith("  export "):
            key, _, value = line[len("  export "):].partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return sbatch, env


def job_command(stage: str, env: dict[str, str], sbatch: str, tmp: Path, item: str) -> str:
    """Run jobs/<stage>.sbatch with the rendered environment, the launcher echoed; return the command."""
    (tmp / "manifest.txt").write_text(item + "\n")
    cpus = next(line.split("=")[1] for line in (REPO / "jobs" / f"{stage}.sbatch").read_text().splitlines()
                if line.startswith("#SBATCH --cpus-per-task="))
    run_env = {**env, "PATH": os.environ["PATH"], "GEOHPC_REPO": str(REPO), "GEOHPC_MANIFEST": str(tmp / "manifest.txt"),
               "GEOHPC_LAUNCH": "echo " + env["GEOHPC_LAUNCH"], "SLURM_ARRAY_TASK_ID": "0",
               "SLURM_CPUS_PER_TASK": cpus}
    if "--gpus-per-node=" in sbatch:  # what Slurm sets for the allocation
        run_env["SLURM_GPUS_ON_NODE"] = sbatch.split("--gpus-per-node=")[1].split()[0]
    r = subprocess.run(["bash", str(REPO / "jobs" / f"{stage}.sbatch")], capture_output=True, text=True,
                       env=run_env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "module" not in r.stderr  # the container path comes from the site: no 'module' on this machine, none needed
    if env.get("GPU_VENDOR") in ("cuda", "rocm") and env.get("GEOHPC_GPUS", "0") != "0":
        assert f"-m geohpc gpu-check --expect {env['GEOHPC_GPUS']}" in r.stdout  # a GPU job checks its GPUs first
    return next(line for line in r.stdout.splitlines()
                if " -m geohpc " in line and not line.startswith("==") and "gpu-check" not in line)


def test_infer_side_by_side(tmp_path: Path) -> None:
    block = "block_r000000_c000000"
    lumi_sb, lumi = dry_run("lumi", "infer", "MODEL=models/tessera.pt")
    betzy_sb, betzy = dry_run("betzy", "infer", "MODEL=models/tessera.pt", "ACCOUNT=nn9999k",
                              "SCRATCH=/cluster/work/users/me", "PYTORCH_SIF=/cluster/sif/t.sif")
    saga_sb, saga = dry_run("saga", "infer", "MODEL=models/tessera.pt", "PYTORCH_SIF=/cluster/sif/torch.sif", "GPUS=1")
    local_sb, local = dry_run("local", "infer", "MODEL=models/tessera.pt")

    # LUMI: all 8 GCDs of a node on small-g (the users' partition), singularity without --rocm, the
    # container from the site file (no module), emb-lumi.md's bind list.
    assert "--partition=small-g" in lumi_sb and "--gpus-per-node=8" in lumi_sb
    assert lumi["SINGULARITY_BIND"].startswith("/var/spool/slurmd,/opt/cray,/usr/lib64/libcxi.so.1,")
    cmd = job_command("infer", lumi, lumi_sb, tmp_path, block)
    assert cmd.startswith(f"singularity exec {LUMI_SIF} python3 -m geohpc infer ")
    assert "--rocm" not in cmd and "--gpus 8 --gpu-vendor rocm" in cmd
    assert f"--block {block}" in cmd and "--model /scratch/project_465002500/romcrop/models/tessera.pt" in cmd
    assert "--out /scratch/project_465002500/romcrop/outputs/infer" in cmd

    # Betzy: 4 A100s on accel, apptainer --nv, /cluster bound, emb-betzy.md's --env set.
    assert "--gpus-per-node=4" in betzy_sb and "--partition=accel" in betzy_sb
    cmd = job_command("infer", betzy, betzy_sb, tmp_path, block)
    assert cmd.startswith("apptainer exec --nv --bind /cluster --env PYTHONPATH=/cluster/work/users/digifarm/emb/"
                          "geohpc/py --env PYTHONUNBUFFERED=1 --env GDAL_HTTP_TIMEOUT=60 ")
    assert "/cluster/sif/t.sif python3 -m geohpc infer " in cmd
    assert "--gpus 4 --gpu-vendor cuda" in cmd and "--patches /cluster/work/users/me/outputs/retile" in cmd

    # Saga: one P100 on accel (GPUS= given: the guide has no GPUS_PER_NODE), apptainer --nv.
    assert "--gpus-per-node=1" in saga_sb and "--partition=accel" in saga_sb
    cmd = job_command("infer", saga, saga_sb, tmp_path, block)
    assert cmd.startswith("apptainer exec --nv --bind /cluster ") and "/cluster/sif/torch.sif python3 -m geohpc infer " in cmd
    assert "--gpus 1 --gpu-vendor cuda" in cmd

    # local: the venv, CPU shards.
    cmd = job_command("infer", local, local_sb, tmp_path, block)
    assert cmd.startswith(f"{(REPO / '.venv').resolve()}/bin/python -m geohpc infer ") and "--cpu-shards 4 --threads 16" in cmd


@pytest.mark.parametrize("stage", ["stack", "retile", "stitch"])
def test_cpu_stages_use_the_cpu_container_on_lumi(stage: str, tmp_path: Path) -> None:
    sb, env = dry_run("lumi", stage)
    assert "--partition=small " in sb and "--gpus-per-node" not in sb
    assert env["GEOHPC_LAUNCH"] == f"singularity exec {LUMI_SIF} python3"
    assert env["GEOHPC_DEPS"] == "/projappl/project_465002500/venvs/geohpc-deps/current"
    item = {"stack": "aoi", "retile": "block_r000000_c000000", "stitch": "embeddings"}[stage]
    cmd = job_command(stage, env, sb, tmp_path, item)
    assert cmd.startswith(f"singularity exec {LUMI_SIF} python3 -m geohpc {stage} ")
    assert "/scratch/project_465002500/romcrop/outputs/" in cmd


def test_download_plans_one_task_per_item(tmp_path: Path) -> None:
    items = tmp_path / "items.json"
    items.write_text('{"type": "FeatureCollection", "features": [{"id": "S2A_1"}, {"id": "S1A_2"}]}')
    sb, env = dry_run("lumi", "download", f"STAC={items}")
    assert "--array=0-1%200" in sb and env["STAC"] == str(items)
    cmd = job_command("download", env, sb, tmp_path, "S1A_2")
    assert f"--items {items} --bbox {BBOX} --crs EPSG:32635 --res 10" in cmd and "--item S1A_2" in cmd
