"""Runtimes as the users run them: what each site's launcher is, and what a job does with it on this machine.

Job scripts run here for real (bash, the venv's python); where the site's container runtime is not on this
machine, its launcher is echoed or replaced by the venv's python, so what runs is the job script's own logic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from geohpc.core.runtime import deps_dir, launch_for, pairs
from geohpc.core.site import load_site
from geohpc.core.stages import get_stage
from geohpc.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
LUMI_SIF = "/appl/local/containers/sif-images/lumi-pytorch-rocm-6.2.4-python-3.12-pytorch-v2.7.1.sif"


def site(name: str, **cli: str):  # noqa: ANN201 - a Site
    return load_site(name, cli=cli, env={})


def test_pairs_keep_colons_in_values() -> None:
    assert pairs("PYTORCH_HIP_ALLOC_CONF:expandable_segments:True, WANDB_MODE:disabled,bad") == {
        "PYTORCH_HIP_ALLOC_CONF": "expandable_segments:True", "WANDB_MODE": "disabled"}


def test_each_site_provides_each_runtime() -> None:
    cpu, torch_stage = get_stage("stack"), get_stage("infer")
    lumi = site("lumi")
    launch = launch_for(lumi, cpu, Path("/r"), {}, 0)
    assert launch.argv == ["singularity", "exec", LUMI_SIF, "python3"] and "--rocm" not in launch.argv
    assert launch.env["SINGULARITY_BIND"].split(",")[:2] == ["/var/spool/slurmd", "/opt/cray"]
    assert "CPU environment" in launch.provided_by
    betzy = site("betzy")
    gpu = launch_for(betzy, torch_stage, Path("/r"), {}, 4)
    assert gpu.argv[:5] == ["apptainer", "exec", "--nv", "--bind", "/cluster"]
    assert "--env" in gpu.argv and "PYTHONPATH=/r/py" in gpu.argv and "GDAL_HTTP_MAX_RETRY=3" in gpu.argv
    assert "--nv" not in launch_for(betzy, cpu, Path("/r"), {}, 0).argv  # CPU work gets no GPU passthrough
    saga = site("saga")
    cpu_saga = launch_for(saga, cpu, Path("/r"), {}, 0)
    assert cpu_saga.argv[-2:] == ["/cluster/work/users/digifarm/sure/v0/containers/romcrop.sif", "python3"]
    assert "AWS_NO_SIGN_REQUEST=YES" in cpu_saga.argv and "GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR" in cpu_saga.argv
    local = launch_for(site("local"), cpu, REPO, {}, 0)
    assert local.argv == [f"{(REPO / '.venv').resolve()}/bin/python"]


def test_a_missing_runtime_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="PYTORCH_SIF is empty in sites/saga.env"):
        launch_for(site("saga"), get_stage("fit"), Path("/r"), {}, 1)
    with pytest.raises(ConfigError, match="CPU_SIF is empty in sites/betzy.env"):
        launch_for(site("betzy", CPU_SIF=""), get_stage("stack"), Path("/r"), {}, 0)
    # a site without a CPU container may give a venv on the site instead
    venv = launch_for(site("betzy", CPU_SIF="", VENV="/cluster/work/v"), get_stage("stack"), Path("/r"), {}, 0)
    assert venv.argv == ["/cluster/work/v/bin/python"]


def test_isolated_mode_binds_every_path_and_passes_every_variable(tmp_path: Path) -> None:
    s = site("betzy")
    launch = launch_for(s, get_stage("stack"), Path("/cluster/work/users/digifarm/emb/geohpc"), {"ISOLATED": "1"}, 0)
    assert launch.argv[:4] == ["apptainer", "exec", "--containall", "--cleanenv"] and launch.isolated
    assert launch.env["GEOHPC_ISOLATED"] == "1"
    # the job script passes the job-time variables too: run it with an echoed launcher
    env_lines = {"GEOHPC_LAUNCH": "echo " + " ".join(launch.argv), **launch.env, "GEOHPC_REPO": str(REPO),
                 "GEOHPC_STAGE": "stack", "SLURM_JOB_ID": "77", "SLURM_ARRAY_TASK_ID": "3",
                 "TMPDIR": str(tmp_path), "PATH": os.environ["PATH"]}
    script = f'source "{REPO}/jobs/lib.sh"; run_py stack --help'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env_lines, timeout=30)
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("apptainer exec"))
    envfile = tmp_path / "geohpc-env-77-3"
    assert f"--env-file {envfile} {s.get('CPU_SIF')} python3 -m geohpc stack" in line  # options before the image
    passed = envfile.read_text()
    assert "SLURM_JOB_ID=77\n" in passed and "SLURM_ARRAY_TASK_ID=3\n" in passed and "GEOHPC_LAUNCH" not in passed
    assert envfile.stat().st_mode & 0o077 == 0


def test_job_env_is_in_every_jobs_env_and_reaches_an_isolated_container(tmp_path: Path) -> None:
    from geohpc.core.jobspec import job_env

    s = site("betzy", JOB_ENV="SITE_GREETING:hi,SITE_URL:http://h:1/x")
    env, launch = job_env(s, get_stage("stack"), Path("/cluster/work/users/digifarm/emb/geohpc"), tmp_path, {"ISOLATED": "1"},
                          tmp_path, tmp_path)
    assert env["SITE_GREETING"] == "hi" and env["SITE_URL"] == "http://h:1/x"
    assert env["GEOHPC_JOB_ENV"] == "SITE_GREETING,SITE_URL"
    venv = site("local", JOB_ENV="SITE_GREETING:hi")
    assert job_env(venv, get_stage("stack"), REPO, tmp_path, {}, tmp_path, tmp_path)[0]["SITE_GREETING"] == "hi"
    env_lines = {"GEOHPC_LAUNCH": "echo " + " ".join(launch.argv), **{k: v for k, v in env.items() if k.startswith(
                 ("GEOHPC_ISOLATED", "GEOHPC_JOB_ENV", "SITE_"))}, "GEOHPC_REPO": str(REPO), "SLURM_JOB_ID": "78",
                 "SLURM_ARRAY_TASK_ID": "0", "TMPDIR": str(tmp_path), "PATH": os.environ["PATH"]}
    out = subprocess.run(["bash", "-c", f'source "{REPO}/jobs/lib.sh"; run_py stack --help'], capture_output=True,
                         text=True, env=env_lines, timeout=30)
    assert out.returncode == 0, out.stderr
    passed = (tmp_path / "geohpc-env-78-0").read_text()
    assert "SITE_GREETING=hi\n" in passed and "SITE_URL=http://h:1/x\n" in passed  # --cleanenv: the env file


def test_deps_folder_is_pinned_to_the_version_current_points_at(tmp_path: Path) -> None:
    root = tmp_path / "deps"
    (root / "v1").mkdir(parents=True)
    (root / "v2").mkdir()
    (root / "current").symlink_to(root / "v2")
    assert deps_dir({"DEPS_ROOT": str(root)}) == str(root / "v2")
    assert deps_dir({"DEPS_ROOT": str(root), "DEPS_DIR": "/given"}) == "/given"
    assert deps_dir({"DEPS_ROOT": "/not/here"}) == "/not/here/current"


def _job_env(site_name: str, stage: str, *params: str) -> dict[str, str]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root"}
    proc = subprocess.run(["make", "-s", "submit", f"STAGE={stage}", f"SITE={site_name}", "DRY_RUN=1", *params],
                          cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    import shlex

    out = {}
    for line in proc.stdout.splitlines():
        if line.startswith("  export "):
            key, _, value = line[len("  export "):].partition("=")
            out[key] = shlex.split(value)[0] if value else ""
    return out


def test_a_gpu_job_that_sees_no_gpu_stops_instead_of_running_on_cpu(tmp_path: Path) -> None:
    """Betzy's infer job, run here with the venv as its runtime: torch sees no GPU, the job exits 2 at once."""
    env = _job_env("betzy", "infer", "BBOX=600000,4999360,600640,5000000", "MODEL=m.pt")
    (tmp_path / "manifest.txt").write_text("block_r000000_c000000\n")
    env.update({"GEOHPC_LAUNCH": sys.executable, "GEOHPC_REPO": str(REPO), "PATH": os.environ["PATH"],
                "GEOHPC_MANIFEST": str(tmp_path / "manifest.txt"), "SLURM_ARRAY_TASK_ID": "0",
                "SLURM_JOB_ID": "5", "JOB_TMPDIR": str(tmp_path / "tmp"), "CUDA_VISIBLE_DEVICES": ""})
    run = subprocess.run(["bash", str(REPO / "jobs" / "infer.sbatch")], capture_output=True, text=True, env=env,
                         timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "the job asked 4 GPU(s) but torch" in run.stderr and "sees 0" in run.stderr
    both = run.stdout + run.stderr
    assert "python -m geohpc gpu-check --expect 4" in both and "-m geohpc infer" not in both  # infer never started
    assert "== WANDB_MODE=disabled" in run.stdout and (tmp_path / "tmp" / "geohpc-5").is_dir()


def test_gpu_check_cli() -> None:
    py = [sys.executable, "-m", "geohpc", "gpu-check"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "py"), "CUDA_VISIBLE_DEVICES": ""}
    ok = subprocess.run([*py, "--expect", "0"], capture_output=True, text=True, env=env, timeout=60)
    assert ok.returncode == 0 and "0 GPU(s) visible, 0 asked" in ok.stderr
    bad = subprocess.run([*py, "--expect", "2"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "CUDA_VISIBLE_DEVICES=" in bad.stderr


def test_modules_on_a_node_without_module_stop_the_job(tmp_path: Path) -> None:
    script = f'source "{REPO}/jobs/lib.sh"; MODULES=Python/3.10.4 load_modules; echo survived'
    run = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin"}, timeout=30)
    assert run.returncode == 2 and "survived" not in run.stdout
    assert "'module' does not work on this node" in run.stderr


def _probe(env_extra: dict[str, str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO / "py"), **env_extra}
    env.pop("GEOHPC_PROJ_FROM_RASTERIO", None) if "GEOHPC_PROJ_FROM_RASTERIO" not in env_extra else None
    run = subprocess.run([sys.executable, "-m", "geohpc", "probe", "--module", "no: no module command",
                          "--host-glibc", "2.28", "--asked-gpus", "1"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_probe_catches_the_old_proj_db_and_the_container_fix_cures_it() -> None:
    """FACTS: Debian's /usr/share/proj is an older proj.db layout than rasterio's: the sure2.md bug, here."""
    assert Path("/usr/share/proj/proj.db").is_file()
    broken = _probe({"PROJ_DATA": "/usr/share/proj"})["answers"]
    assert broken["utm_rasterio"]["ok"] is False and "MINOR = 2" in broken["utm_rasterio"]["detail"]
    fixed = _probe({"PROJ_DATA": "/usr/share/proj", "GEOHPC_PROJ_FROM_RASTERIO": "1"})
    assert all(fixed["answers"][k]["ok"] for k in ("utm_rasterio", "utm_pyproj", "epsg_lookup"))
    assert fixed["env"]["PROJ_DATA"].endswith("rasterio/proj_data")
    answers = fixed["answers"]
    assert answers["gpus"] == {"ok": False, "visible": 0, "asked": 1, "detail": answers["gpus"]["detail"]}
    assert answers["module"]["usable"] is False and answers["glibc"]["host"] == "2.28"
    assert answers["tmpdir"]["free_bytes"] > 0 and answers["cpus"]["cpu_count"] == os.cpu_count()
