"""Checks for the field guide's pitfalls (issue 11): each with a passing and a failing case.

Site values are built here (the site files are another branch's work); site commands run for real where
this machine has them (sinfo, squeue on the local Slurm) and come from recorded outputs otherwise
(fixtures/commands/, sources in fixtures/SOURCES.md).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
from geohpc.preflight.context import Resources
from geohpc.preflight.site_facts import parse_cost, parse_lumi_allocations, parse_sinfo, parse_squeue_starts
from rasterio.transform import Affine

CMDS = Path(__file__).parent / "fixtures" / "commands"
ROCM_BINDS = ["/var/spool/slurmd", "/opt/cray", "/usr/lib64/libcxi.so.1", "/usr/lib64/libjansson.so.4", "/pfs",
              "/scratch", "/projappl", "/project", "/flash", "/appl"]
LUMI = {"SITE_NAME": "lumi", "GPU_VENDOR": "rocm", "CONTAINER_RUNTIME": "singularity", "ACCOUNT": "project_465002906"}
BETZY = {"SITE_NAME": "betzy", "CONTAINER_RUNTIME": "apptainer", "GPU_VENDOR": "cuda", "ACCOUNT": "nn12037k",
         "PART_NORMAL": "maxtime:4-00:00:00,mem:no,nodes:4-,gpus:0,whole_node:yes,internet:no",
         "PART_PREPROC": "maxtime:1-00:00:00,mem:yes,nodes:1-,gpus:0,whole_node:no",
         "PART_ACCEL": "maxtime:7-00:00:00,mem:yes,nodes:1-4,gpus:4,whole_node:no",
         "QOS_DEVEL": "maxtime:02:00:00,nodes:1-4", "CPUS_PER_NODE": "128"}


def res(**kw: object) -> Resources:
    """Resources with optional ``nodes``/``qos`` (fields the sites branch adds to Resources)."""
    extra = {k: kw.pop(k) for k in ("nodes", "qos") if k in kw}
    r = Resources(**kw)  # type: ignore[arg-type]
    for k, v in extra.items():
        setattr(r, k, v)
    return r


# ------------------------------------------------------------------------------------------ module_compute
def test_module_is_really_missing_in_a_plain_job_shell() -> None:
    """The symptom the check prevents, on this machine: a job shell without Lmod has no module command."""
    run = subprocess.run(["bash", "-c", "module load pytorch/2.7"], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin"})
    assert run.returncode == 127 and "module: command not found" in run.stderr


def test_module_compute_fails_on_lumi_when_the_sif_comes_from_a_module(make_ctx, run_check) -> None:
    ctx = make_ctx(site={**LUMI, "PYTORCH_MODULES": "pytorch/2.7", "PYTORCH_SIF": ""}, stage="infer",
                   runtime="container", launch="singularity exec @SIF@ python3")
    r = run_check("module_compute", ctx)
    assert r.status == "fail" and "lua5.3" in r.message and "SING_IMAGE" in r.message and "PYTORCH_SIF" in r.fix


def test_module_compute_scans_the_stage_script(make_ctx, run_check, tmp_path) -> None:
    jobs = tmp_path / "repo" / "jobs"
    jobs.mkdir(parents=True)
    (jobs / "train.sbatch").write_text("#!/bin/bash\n#SBATCH --time=1:00:00\nsource \"$R/jobs/my_lib.sh\"\n")
    (jobs / "my_lib.sh").write_text("# module load in a comment is fine\nmodule load cray-python\n")
    ctx = make_ctx(site=LUMI, stage="train", repo=tmp_path / "repo", launch="/venv/bin/python")
    r = run_check("module_compute", ctx)
    assert r.status == "fail" and "jobs/my_lib.sh:2" in r.message


def test_module_compute_passes_with_the_sif_known_at_submit(make_ctx, run_check, tmp_path) -> None:
    sif = "/appl/local/containers/sif-images/lumi-pytorch-rocm-6.2.4-python-3.12-pytorch-v2.7.1.sif"
    ctx = make_ctx(site={**LUMI, "PYTORCH_SIF": sif, "PYTORCH_MODULES": "", "MODULES": ""}, stage="infer",
                   runtime="container", launch=f"singularity exec {sif} python3")
    assert run_check("module_compute", ctx).status == "ok"
    # elsewhere: unknown without a probe report, fine when the probe saw module work
    saga = {"SITE_NAME": "saga", "MODULES": "Python/3.10.4-GCCcore-11.3.0"}
    assert run_check("module_compute", make_ctx(site=saga, stage="cog")).status == "warn"
    jobs = tmp_path / "repo" / "jobs"
    jobs.mkdir(parents=True)
    (jobs / "lib.sh").write_text("load_modules() {\n  module purge\n  module load \"$1\"\n}\n")
    works = {"module": {"usable": True}}
    r = run_check("module_compute", make_ctx(site=saga, stage="cog", probe=works, repo=tmp_path / "repo"))
    assert r.status == "ok"
    (jobs / "lib.sh").write_text("load_modules() {\n  module load \"$1\"\n}\n")
    r = run_check("module_compute", make_ctx(site=saga, stage="cog", probe=works, repo=tmp_path / "repo"))
    assert r.status == "warn" and "module purge" in r.message


def test_module_compute_fails_on_the_nris_pytorch_module(make_ctx, run_check) -> None:
    site = {"SITE_NAME": "saga", "MODULES": "PyTorch/1.12.1-foss-2022a-CUDA-11.7.0"}
    r = run_check("module_compute", make_ctx(site=site, stage="cog", probe={"module": {"usable": True}}))
    assert r.status == "fail" and "CUDA stub" in r.message


# ------------------------------------------------------------------------------------------ rocm_binds
def test_rocm_binds_fail_with_lumi_md_old_binds(make_ctx, run_check) -> None:
    old = ["/opt/cray/libfabric", "/scratch/project_465002500", "/projappl/project_465002500"]
    r = run_check("rocm_binds", make_ctx(site=LUMI, stage="fit", runtime="container", binds=old))
    assert r.status == "fail" and "/var/spool/slurmd" in r.message and "libcxi.so.1" in r.message
    assert "No HIP GPUs available" in r.message and "CONTAINER_BIND=/var/spool/slurmd,/opt/cray," in r.fix


def test_rocm_binds_pass_with_the_documented_list(make_ctx, run_check) -> None:
    r = run_check("rocm_binds", make_ctx(site=LUMI, stage="fit", runtime="container", binds=ROCM_BINDS))
    assert r.status == "ok"
    # not a ROCm site, or a venv stage: the list does not apply
    assert run_check("rocm_binds", make_ctx(site=BETZY, stage="fit", runtime="container")).status == "ok"
    assert run_check("rocm_binds", make_ctx(site=LUMI, stage="cog", runtime="venv")).status == "ok"


# ------------------------------------------------------------------------------------------ partition_rules
@pytest.mark.parametrize("part,resources,words", [
    ("normal", res(mem_bytes=8 << 30, time_s=3600, nodes=4), "takes no --mem"),
    ("normal", res(time_s=3600), "no --nodes (1 node) is below partition normal's minimum of 4"),
    ("normal", res(time_s=5 * 86400, nodes=4), "over partition normal's 4-00:00:00"),
    ("preproc", res(time_s=2 * 86400), "over partition preproc's 1-00:00:00"),
    ("preproc", res(time_s=3 * 3600, qos="devel"), "over QOS devel's 02:00:00"),
    ("accel", res(time_s=3600, gpus=8), "8 GPUs a node but partition accel has 4"),
])
def test_partition_rules_fail(make_ctx, run_check, part, resources, words) -> None:
    resources.partition = part
    r = run_check("partition_rules", make_ctx(site=BETZY, stage="cog", resources=resources))
    assert r.status == "fail" and words in r.message and "TIME=" in r.fix


def test_partition_rules_pass_and_unknown(make_ctx, run_check) -> None:
    ok = res(partition="normal", time_s=86400, nodes=4)
    assert run_check("partition_rules", make_ctx(site=BETZY, stage="cog", resources=ok)).status == "ok"
    ok = res(partition="preproc", time_s=3600, mem_bytes=32 << 30, qos="devel")
    assert run_check("partition_rules", make_ctx(site=BETZY, stage="cog", resources=ok)).status == "ok"
    r = run_check("partition_rules", make_ctx(site=BETZY, stage="cog", resources=res(partition="bigmem", time_s=60)))
    assert r.status == "warn" and "PART_BIGMEM" in r.message
    # a site without per-partition data: nothing known, nothing to fail
    assert run_check("partition_rules", make_ctx(stage="cog", resources=res(partition="debug"))).status == "ok"


def test_partition_rules_names_another_sites_partition(make_ctx, run_check) -> None:
    """saga.md: accel, NOT gpu, NOT small-g (those are other clusters'): the site it belongs to is named."""
    from geohpc.core.site import load_site

    saga = dict(load_site("saga", cli={}, env={}).values)
    r = run_check("partition_rules", make_ctx(site=saga, gpu=True, stage="cog", resources=res(partition="small-g",
                                                                                           time_s=60)))
    assert r.status == "warn" and "lumi's" in r.message and "Invalid partition name" in r.message
    assert "(accel)" in r.fix
    r = run_check("partition_rules", make_ctx(site=saga, gpu=True, stage="cog", resources=res(partition="gpu",
                                                                                           time_s=60)))
    assert r.status == "warn" and "PART_GPU" in r.message


# ------------------------------------------------------------------------------------------ proj_mismatch
def _proj_db(folder: Path, minor: int) -> Path:
    import sqlite3

    folder.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(folder / "proj.db")
    con.execute("CREATE TABLE metadata (key TEXT, value TEXT)")
    con.executemany("INSERT INTO metadata VALUES (?, ?)", [("DATABASE.LAYOUT.VERSION.MAJOR", "1"),
                                                            ("DATABASE.LAYOUT.VERSION.MINOR", str(minor))])
    con.commit()
    con.close()
    return folder


def test_proj_unset_in_an_apptainer_job_fails(make_ctx, run_check) -> None:
    r = run_check("proj_mismatch", make_ctx(site={**BETZY, "CPU_SIF": "/c/sure2.sif"}, stage="cog", runtime="venv"))
    assert r.status == "fail" and "PROJ_DATA is unset" in r.message and "PROJ_DATA_FROM=container" in r.fix
    r = run_check("proj_mismatch", make_ctx(site=BETZY, stage="fit", runtime="container"))
    assert r.status == "fail"


def test_proj_old_db_in_an_apptainer_job_fails_with_the_container_fix(make_ctx, run_check, tmp_path) -> None:
    old = _proj_db(tmp_path / "host-proj", 2)
    r = run_check("proj_mismatch", make_ctx(site=BETZY, stage="fit", runtime="container", env={"PROJ_DATA": str(old)}))
    assert r.status == "fail" and "MINOR = 2" in r.message and "rasterio/proj_data" in r.fix


def test_proj_set_from_the_container_passes(make_ctx, run_check) -> None:
    site = {**BETZY, "PROJ_DATA_FROM": "container"}
    assert run_check("proj_mismatch", make_ctx(site=site, stage="fit", runtime="container")).status == "ok"
    saga = {**BETZY, "SITE_NAME": "saga", "CPU_SIF": "/c/romcrop.sif",
            "CONTAINER_ENV": "PROJ_DATA:/usr/local/lib/python3.12/dist-packages/rasterio/proj_data,"
                             "AWS_NO_SIGN_REQUEST:YES"}
    r = run_check("proj_mismatch", make_ctx(site=saga, stage="cog", runtime="venv"))
    assert r.status == "ok" and "container's rasterio proj_data" in r.message
    # LUMI (singularity, its own container) and plain venvs: unset stays right
    assert run_check("proj_mismatch", make_ctx(site=LUMI, stage="fit", runtime="container")).status == "ok"


# ------------------------------------------------------------------------------------------ project_space
def test_project_space_fails_for_outputs_and_logs(make_ctx, run_check) -> None:
    site = {**BETZY, "PROJECT_SPACE": "/cluster/projects", "SCRATCH": "/cluster/projects/nn12037k/emb",
            "REMOTE_DIR": "/cluster/projects/nn12037k/emb/code"}
    r = run_check("project_space", make_ctx(site=site, stage="cog"))
    assert r.status == "fail" and "under project space /cluster/projects" in r.message
    assert "Disk quota exceeded" in r.message and "/cluster/work" in r.fix
    site = {**BETZY, "PROJECT_SPACE": "/cluster/projects", "SCRATCH": "/cluster/work/users/digifarm/emb",
            "REMOTE_DIR": "/cluster/work/users/digifarm/emb/geohpc"}
    r = run_check("project_space", make_ctx(site=site, stage="fit", params={"CKPT_DIR": "/cluster/projects/nn1/ckpt"}))
    assert r.status == "fail" and "CKPT_DIR" in r.message


def test_project_space_passes_through_symlinks_into_work(make_ctx, run_check, tmp_path) -> None:
    """emb-betzy.md: project-space data/ and outputs/ are symlinks into work space; writes land there."""
    proj, work = tmp_path / "projects" / "emb", tmp_path / "work" / "emb"
    for sub in ("data", "outputs"):
        (work / sub).mkdir(parents=True)
    proj.mkdir(parents=True)
    for sub in ("data", "outputs"):
        (proj / sub).symlink_to(work / sub)
    site = {"PROJECT_SPACE": str(tmp_path / "projects"), "SCRATCH": str(proj)}
    r = run_check("project_space", make_ctx(site=site, outputs=[proj / "outputs" / "cog"]))
    assert r.status == "ok"
    (proj / "outputs").unlink()
    (proj / "outputs").mkdir()
    assert run_check("project_space", make_ctx(site=site)).status == "fail"


# ------------------------------------------------------------------------------------------ deps_changed
def test_deps_changed_after_a_running_job_started_fails(make_ctx, run_check, tmp_path) -> None:
    (job, start), = parse_squeue_starts((CMDS / "squeue-running.1.txt").read_text().split("\n", 1)[1])
    deps = tmp_path / "pylibs3"
    (deps / "xarray").mkdir(parents=True)
    os.utime(deps / "xarray", (start + 600, start + 600))
    os.utime(deps, (start - 600, start - 600))
    ctx = make_ctx(site={"DEPS_DIR": str(deps)}, env={"GEOHPC_SQUEUE_OUTPUT": str(CMDS / "squeue-running.1.txt")})
    r = run_check("deps_changed", ctx)
    assert r.status == "fail" and f"running job {job}" in r.message and "Stale file handle" in r.message
    assert "NEW versioned folder" in r.fix
    os.utime(deps / "xarray", (start - 60, start - 60))
    assert run_check("deps_changed", ctx).status == "ok"


def test_deps_unchanged_against_the_real_squeue(make_ctx, run_check, tmp_path) -> None:
    deps = tmp_path / "pylibs3"
    deps.mkdir()
    os.utime(deps, (978307200, 978307200))  # 2001: older than any job the local Slurm runs
    r = run_check("deps_changed", make_ctx(env={"PYTHONPATH": str(deps), "USER": os.environ.get("USER", "root")}))
    assert r.status == "ok", r.message


# ------------------------------------------------------------------------------------------ tmpdir_space
def test_tmpdir_space_against_this_machine(make_ctx, run_check, tmp_path) -> None:
    site = {"JOB_TMPDIR": str(tmp_path), "MIN_TMP_GB": "0.001"}
    assert run_check("tmpdir_space", make_ctx(site=site)).status == "ok"
    r = run_check("tmpdir_space", make_ctx(site={**site, "MIN_TMP_GB": "1000000"}))
    assert r.status == "fail" and "No space left on device" in r.message and "JOB_TMPDIR" in r.fix


def test_tmpdir_space_betzy_tmp_from_the_probe(make_ctx, run_check) -> None:
    probe = {"host": "b1101", "tmpdir": {"path": "/tmp", "free_bytes": 1_500_000_000}}
    r = run_check("tmpdir_space", make_ctx(site={**BETZY, "JOB_TMPDIR": "/tmp", "MIN_TMP_GB": "10"}, probe=probe))
    assert r.status == "fail" and "1.4 GiB" in r.message
    # node-local /tmp of a remote site and no probe report: unknown
    assert run_check("tmpdir_space", make_ctx(site={**BETZY, "JOB_TMPDIR": "/dev/shm"})).status == "warn"


# ------------------------------------------------------------------------------------------ raster_orientation
def _raster(path: Path, south_up: bool) -> Path:
    t = Affine(10, 0, 500000, 0, 10, 4000000) if south_up else Affine(10, 0, 500000, 0, -10, 4000640)
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint8",
                       crs="EPSG:32635", transform=t) as ds:
        ds.write(np.zeros((1, 64, 64), "uint8"))
    return path


def test_raster_orientation_fails_on_south_up_input(make_ctx, run_check, tmp_path) -> None:
    src = _raster(tmp_path / "aef.tif", south_up=True)
    r = run_check("raster_orientation", make_ctx(stage="tiles", params={"SRC": str(src)}))
    assert r.status == "fail" and "transform.e = 10 > 0" in r.message and "gdalwarp" in r.fix


def test_raster_orientation_passes_north_up_or_pixel_stages(make_ctx, run_check, tmp_path) -> None:
    src = _raster(tmp_path / "n.tif", south_up=False)
    assert run_check("raster_orientation", make_ctx(stage="tiles", params={"SRC": str(src)})).status == "ok"
    south = _raster(tmp_path / "s.tif", south_up=True)
    assert run_check("raster_orientation", make_ctx(stage="sample", params={"SRC": str(south)})).status == "ok"


# ------------------------------------------------------------------------------------------ billing
def test_recorded_allocation_outputs_parse() -> None:
    lumi = parse_lumi_allocations((CMDS / "lumi-allocations.1.txt").read_text())
    assert lumi["project_465002906"]["gpu-hours"].left == 300
    assert lumi["project_465002906"]["cpu-hours"].allocated == 1000
    nris = parse_cost((CMDS / "cost.1.txt").read_text())
    assert list(nris) == ["PROJECT-ID-HERE"] and nris["PROJECT-ID-HERE"].left == pytest.approx(131916.65)
    assert parse_cost((CMDS / "cost.2.txt").read_text())["nnXXXXk"].left == pytest.approx(-110086.75)


def test_billing_lumi_gpu_hours(make_ctx, run_check) -> None:
    site = {**LUMI, "BILLING": "lumi", "ALLOC_CMD": "lumi-allocations"}
    env = {"GEOHPC_ALLOC_OUTPUT": str(CMDS / "lumi-allocations.1.txt")}
    big = res(gpus=8, time_s=3 * 86400, array_size=1, account="project_465002906", partition="small-g")
    r = run_check("billing", make_ctx(site=site, env=env, resources=big))
    assert r.status == "fail" and "576 gpu-hours" in r.message and "300 of 300 left" in r.message
    small = res(gpus=1, time_s=2 * 3600, array_size=1, account="project_465002906")
    assert run_check("billing", make_ctx(site=site, env=env, resources=small)).status == "ok"


def test_billing_nris_cost(make_ctx, run_check) -> None:
    site = {**BETZY, "BILLING": "nris", "ALLOC_CMD": "cost", "ACCOUNT": "PROJECT-ID-HERE"}
    env = {"GEOHPC_ALLOC_OUTPUT": str(CMDS / "cost.1.txt")}
    job = res(cpus=16, time_s=24 * 3600, array_size=10, partition="preproc")
    r = run_check("billing", make_ctx(site=site, env=env, resources=job))
    assert r.status == "ok" and "at least 3,840 billing-hours" in r.message
    whole = res(cpus=1, time_s=4 * 86400, nodes=4, array_size=100, partition="normal")  # 128 cores x 4 nodes
    assert run_check("billing", make_ctx(site=site, env=env, resources=whole)).status == "fail"
    over = {"GEOHPC_ALLOC_OUTPUT": str(CMDS / "cost.2.txt")}
    r = run_check("billing", make_ctx(site={**site, "ACCOUNT": "nnXXXXk"}, env=over, resources=job))
    assert r.status == "fail" and "AssocGrpBillingMinutes" in r.message


# ------------------------------------------------------------------------------------------ node_availability
def test_sinfo_recorded_outputs_parse() -> None:
    rows = parse_sinfo((CMDS / "sinfo.1.txt").read_text())
    assert {r.partition for r in rows} == {"cpu", "gpu", "debug", "idle", "highmem"}
    assert not any(r.usable for r in rows if r.partition == "cpu")
    assert [r.state for r in rows if r.partition == "gpu" and r.usable] == ["mix"]


@pytest.mark.parametrize("fixture,part", [("sinfo.1.txt", "cpu"), ("sinfo.2.txt", "compute")])
def test_node_availability_fails_when_all_nodes_are_out(make_ctx, run_check, fixture, part) -> None:
    ctx = make_ctx(env={"GEOHPC_SINFO_OUTPUT": str(CMDS / fixture)}, resources=res(partition=part))
    r = run_check("node_availability", ctx)
    assert r.status == "fail" and f"partition {part} are unavailable" in r.message and f"sinfo -R -p {part}" in r.fix


def test_node_availability_real_sinfo(make_ctx, run_check) -> None:
    part = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, check=True).stdout.split()[0]
    r = run_check("node_availability", make_ctx(resources=res(partition=part)))
    assert r.status == "ok" and f"partition {part}:" in r.message
    ctx = make_ctx(env={"GEOHPC_SINFO_OUTPUT": str(CMDS / "sinfo.1.txt")}, resources=res(partition="gpu"))
    assert run_check("node_availability", ctx).status == "ok"


def test_partition_rules_warn_on_part_of_a_whole_node(make_ctx, run_check) -> None:
    """lumi.md #7: one GPU on standard-g (whole nodes) sat in the queue; small-g is the users' choice."""
    site = {**LUMI, "PARTITION_GPU": "small-g", "PART_STANDARD_G": "maxtime:2-00:00:00,gpus:8,whole_node:yes",
            "PART_SMALL_G": "maxtime:3-00:00:00,mem:yes,nodes:1-4,gpus:8,whole_node:no"}
    r = run_check("partition_rules", make_ctx(site=site, gpu=True, resources=res(partition="standard-g", gpus=1,
                                                                                 time_s=3600)))
    assert r.status == "warn" and "1 of 8 GPUs on whole-node partition standard-g" in r.message
    assert "PARTITION_GPU=small-g" in r.fix
    r = run_check("partition_rules", make_ctx(site=site, gpu=True, resources=res(partition="small-g", gpus=1,
                                                                                 time_s=3 * 86400)))
    assert r.status == "ok"


# ------------------------------------------------------------------------------------------ gpu_env
def test_gpu_env_fails_without_the_allocator_setting(make_ctx, run_check, tmp_path) -> None:
    (tmp_path / "repo" / "jobs").mkdir(parents=True)
    ctx = make_ctx(site=LUMI, stage="fit", gpu=True, repo=tmp_path / "repo", resources=res(gpus=8),
                   job_env={"WANDB_MODE": "disabled"})
    r = run_check("gpu_env", ctx)
    assert r.status == "fail" and "expandable_segments:True" in r.message and "~40 GB" in r.message
    ctx.job_env = {"PYTORCH_HIP_ALLOC_CONF": "expandable_segments:True"}
    r = run_check("gpu_env", ctx)
    assert r.status == "fail" and "wandb hangs" in r.message


def test_gpu_env_passes_when_the_job_sets_it(make_ctx, run_check, tmp_path) -> None:
    jobs = tmp_path / "repo" / "jobs"
    jobs.mkdir(parents=True)
    (jobs / "gpu_env.sh").write_text("export PYTORCH_HIP_ALLOC_CONF=expandable_segments:True\n"
                                     "export WANDB_MODE=disabled\nexport NCCL_SOCKET_IFNAME=hsn\n"
                                     "export MIOPEN_USER_DB_PATH=\"/tmp/${USER}-miopen-cache-${SLURM_JOB_ID}\"\n")
    ctx = make_ctx(site=LUMI, stage="fit", gpu=True, repo=tmp_path / "repo", resources=res(gpus=8))
    assert run_check("gpu_env", ctx).status == "ok"
    assert run_check("gpu_env", make_ctx(site=BETZY, stage="fit", gpu=True)).status == "ok"  # CUDA: not these rules


# ------------------------------------------------------------------------------------------ deploy_excludes
def _pkg_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "src" / "vcloud" / "data").mkdir(parents=True)
    (repo / "src" / "vcloud" / "data" / "__init__.py").write_text("")
    (repo / "data" / "big").mkdir(parents=True)
    (repo / "src" / "vcloud" / "__pycache__").mkdir()
    return repo


def test_deploy_excludes_fail_when_data_is_not_anchored(make_ctx, run_check, checks, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(checks["deploy_excludes"].module, "deploy_excludes", lambda repo: ["data", "__pycache__/"])
    r = run_check("deploy_excludes", make_ctx(repo=_pkg_repo(tmp_path)))
    assert r.status == "fail" and "src/vcloud/data/" in r.message and "--exclude=/data" in r.fix


def test_deploy_excludes_pass_when_anchored(make_ctx, run_check, checks, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(checks["deploy_excludes"].module, "deploy_excludes", lambda repo: ["/data", "__pycache__/"])
    assert run_check("deploy_excludes", make_ctx(repo=_pkg_repo(tmp_path))).status == "ok"
    # the real make deploy command is read, and it excludes the top-level data folder one way or the other
    found = checks["deploy_excludes"].module.deploy_excludes(make_ctx().repo)
    assert {"data", "/data"} & {p.rstrip("/") for p in found}


def test_env_override_leaves_proj_data_to_proj_mismatch_on_apptainer_sites(make_ctx, run_check) -> None:
    """sure2.md: on apptainer sites PROJ_DATA is set on purpose; only a plain venv should not carry one."""
    env = {"PROJ_DATA": "/usr/local/lib/python3.12/dist-packages/rasterio/proj_data"}
    assert run_check("env_override", make_ctx(site=BETZY, env=env)).status == "ok"
    assert run_check("env_override", make_ctx(env=env)).status == "warn"


# ------------------------------------------------------------------------------------------ probe answers
def test_checks_read_the_probe_answers(make_ctx, run_check) -> None:
    """The probe report's ``answers`` (module, tmpdir, gpus, the PROJ transforms) feed the checks."""
    answers = {"module": {"ok": True, "usable": False, "detail": "module on the host: no: module: command not found"},
               "tmpdir": {"ok": False, "path": "/tmp", "free_bytes": 1_500_000_000},
               "gpus": {"ok": False, "asked": 8, "visible": 0, "detail": "0 of 8 GPUs visible"},
               "utm_rasterio": {"ok": False, "detail": "rasterio: lon/lat (10.75, 59.91) -> EPSG:32632 (0.0, 0.0)"}}
    probe = {"host": "nid005001", "answers": answers}
    r = run_check("module_compute", make_ctx(site={"SITE_NAME": "saga", "MODULES": "x/1"}, stage="cog", probe=probe))
    assert r.status == "fail" and "command not found" in r.message
    r = run_check("tmpdir_space", make_ctx(site={**BETZY, "JOB_TMPDIR": "/tmp", "MIN_TMP_GB": "10"}, probe=probe))
    assert r.status == "fail" and "nid005001" in r.message
    r = run_check("rocm_binds", make_ctx(site=LUMI, stage="fit", runtime="container", binds=ROCM_BINDS, probe=probe))
    assert r.status == "fail" and "0 of 8" in r.message
    r = run_check("proj_mismatch", make_ctx(site={**BETZY, "PROJ_DATA_FROM": "container"}, stage="fit",
                                            runtime="container", probe=probe))
    assert r.status == "fail" and "EPSG:32632" in r.message and "1 of 3 PROJ answers wrong" in r.message
