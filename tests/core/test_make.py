"""The Make layer: help lists every target, guards stop at once on bad SITE/STAGE, DRY_RUN renderings."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def make(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root"}
    return subprocess.run(["make", "-s", *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=120)


def test_help_lists_every_target() -> None:
    out = make("help").stdout
    targets = re.findall(r"^([a-z-]+):.*## ", (REPO / "Makefile").read_text(), re.M)
    assert len(targets) >= 15
    for t in targets:
        assert re.search(rf"^  {t}\s+\S", out, re.M), t


@pytest.mark.parametrize(
    "args, needle",
    [
        (["submit", "STAGE=probe", "SITE=nowhere"], "unknown SITE 'nowhere': valid sites are betzy local lumi saga"),
        (["submit", "STAGE=nope", "SITE=local"], "unknown STAGE 'nope': valid stages are"),
        (["submit", "STAGE=probe;touch /tmp/geohpc-pwned", "SITE=local"], "unknown STAGE"),
        (["submit", "STAGE=probe", "SITE=lumi x"], "unknown SITE"),
        (["submit", "SITE=local"], "unknown STAGE ''"),
    ],
)
def test_guards(args: list[str], needle: str) -> None:
    proc = make(*args)
    assert proc.returncode != 0
    assert needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not Path("/tmp/geohpc-pwned").exists()


def test_bad_throttle_submits_nothing(tmp_path: Path) -> None:
    proc = make("submit", "STAGE=probe", "SITE=local", "THROTTLE=0", f"OUT_DIR={tmp_path}")
    assert proc.returncode == 2
    # our one line, then make's own "*** [submit] Error 2"
    assert proc.stderr.splitlines()[0] == "geohpc.submit: error: THROTTLE='0' is not a positive integer (e.g. THROTTLE=20)"


def test_missing_and_blank_manifest(tmp_path: Path) -> None:
    proc = make("submit", "STAGE=probe", "SITE=local", f"ITEMS={tmp_path}/none.txt")
    assert proc.returncode == 2 and "manifest not found" in proc.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    proc = make("submit", "STAGE=probe", "SITE=local", f"ITEMS={empty}")
    assert proc.returncode == 2 and "manifest is empty" in proc.stderr
    blank = tmp_path / "blank.txt"
    blank.write_text("a\n\nb\n")
    proc = make("submit", "STAGE=probe", "SITE=local", f"ITEMS={blank}")
    assert proc.returncode == 2 and "blank.txt:2: blank manifest line" in proc.stderr


LUMI_SIF = "/appl/local/containers/sif-images/lumi-pytorch-rocm-6.2.4-python-3.12-pytorch-v2.7.1.sif"


def test_lumi_dry_run_rendering() -> None:
    proc = make("submit", "STAGE=probe", "SITE=lumi", "DRY_RUN=1", "GPUS=8")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    sb = next(line for line in out.splitlines() if line.strip().startswith("sbatch "))
    # small-g, the users' working partition, takes a one-node 8-GCD job (emb-lumi.md); standard-g is not chosen
    assert "--account=project_465002500" in sb and "--partition=small-g" in sb
    assert "--gpus-per-node=8" in sb and "--array=0-1%200" in sb
    assert "--chdir=/scratch/project_465002500/romcrop/geohpc" in sb
    # the container is fixed at submit time: no module, no @SIF@ placeholder, no --rocm
    assert f"GEOHPC_LAUNCH='singularity exec {LUMI_SIF} python3'" in out
    assert ("SINGULARITY_BIND=/var/spool/slurmd,/opt/cray,/usr/lib64/libcxi.so.1,/usr/lib64/libjansson.so.4,"
            "/pfs,/scratch,/projappl,/project,/flash,/appl") in out
    assert "GEOHPC_MODULES" not in out and "module load" not in out and "@SIF@" not in out
    assert "--rocm" not in out
    assert "PYTORCH_HIP_ALLOC_CONF=expandable_segments:True" in out and "WANDB_MODE=disabled" in out
    assert "MIOPEN_USER_DB_PATH=/tmp/%u-miopen-cache-%j" in out and "NCCL_SOCKET_IFNAME=hsn" in out
    assert "DRY_RUN=1  (command line)" in out
    assert "ACCOUNT=project_465002500  (site file)" in out


def test_lumi_multi_node_job_goes_to_standard_g_and_says_why(tmp_path: Path) -> None:
    proc = make("submit", "STAGE=probe", "SITE=lumi", "DRY_RUN=1", "PARTITION_GPU=dev-x,standard-g", "GPUS=8",
                "PART_DEV_X=maxtime:00:05:00")
    assert proc.returncode == 0, proc.stderr
    sb = next(line for line in proc.stdout.splitlines() if line.strip().startswith("sbatch "))
    assert "--partition=standard-g" in sb  # the probe's 10 minutes do not fit dev-x's 5
    assert "first of PARTITION_GPU=dev-x,standard-g whose rules fit" in proc.stdout


def test_saga_and_betzy_dry_run_rendering() -> None:
    saga = make("submit", "STAGE=probe", "SITE=saga", "DRY_RUN=1", "PYTORCH_SIF=/cluster/sif/torch.sif").stdout
    assert "--account=nn12037k" in saga and "--gpus-per-node" not in saga
    # sure2.md's apptainer exec line: project bound, PYTHONPATH with the deps folder, its --env set
    assert ("GEOHPC_LAUNCH='apptainer exec --bind /cluster --env PYTHONPATH=/cluster/work/users/digifarm/sure/v1/"
            "geohpc/py:/cluster/work/users/digifarm/sure/v1/geohpc-deps/current --env AWS_NO_SIGN_REQUEST=YES "
            "--env GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR /cluster/sif/torch.sif python3'") in saga
    assert "GEOHPC_PROJ_FROM_RASTERIO=1" in saga
    assert "PYTORCH_SIF=/cluster/sif/torch.sif  (command line)" in saga
    betzy = make("submit", "STAGE=probe", "SITE=betzy", "DRY_RUN=1", "GPUS=4", "ACCOUNT=nn9999k",
                 "SCRATCH=/cluster/work/users/me", "PYTORCH_SIF=/cluster/sif/t.sif").stdout
    assert "--account=nn9999k" in betzy and "--gpus-per-node=4" in betzy and "--partition=accel" in betzy
    assert "apptainer exec --nv --bind /cluster --env PYTHONPATH=" in betzy and "/cluster/sif/t.sif python3" in betzy


def test_betzy_normal_partition_refuses_mem_and_one_node(tmp_path: Path) -> None:
    proc = make("submit", "STAGE=probe", "SITE=betzy", "PARTITION_CPU=normal", "FOR=stack", f"OUT_DIR={tmp_path}")
    assert proc.returncode == 2
    assert "partition normal takes no --mem" in proc.stderr and "below partition normal's minimum of 4" in proc.stderr
    ours = [line for line in proc.stderr.splitlines() if not line.startswith("make")]
    assert len(ours) == 1 and not list(tmp_path.iterdir())


def test_a_site_value_a_stage_needs_is_refused_by_name(tmp_path: Path) -> None:
    proc = make("submit", "STAGE=fit", "SITE=saga", "DRY_RUN=1", "GPUS=1")
    assert proc.returncode == 2 and "PYTORCH_SIF is empty in sites/saga.env" in proc.stderr
    proc = make("submit", "STAGE=probe", "FOR=infer", "SITE=saga", "DRY_RUN=1", "PYTORCH_SIF=/c/t.sif")
    assert proc.returncode == 2 and "GPUS_PER_NODE is empty in sites/saga.env" in proc.stderr
    proc = make("submit", "STAGE=probe", "SITE=betzy", "DRY_RUN=1", "REMOTE_DIR=")
    assert proc.returncode == 2 and "REMOTE_DIR is empty in sites/betzy.env" in proc.stderr


def test_walltime_over_the_partition_limit_is_capped_or_refused(tmp_path: Path) -> None:
    # the probe's script asks 10 minutes; a partition allowing 5: the script's default is capped, and said
    capped = make("submit", "STAGE=probe", "SITE=saga", "DRY_RUN=1", "QOS=devel", "PART_NORMAL=maxtime:00:05:00",
                  "PYTORCH_SIF=/c/t.sif")
    assert capped.returncode == 0, capped.stderr
    assert "--qos=devel" in capped.stdout and "--time=00:05:00" in capped.stdout
    assert "adjusted: --time capped at partition normal's limit 00:05:00" in capped.stdout
    asked = make("submit", "STAGE=probe", "SITE=saga", "DRY_RUN=1", "QOS=devel", "TIME=03:00:00",
                 "PYTORCH_SIF=/c/t.sif")
    assert asked.returncode == 2 and "--time 3 h is over QOS devel's 02:00:00" in asked.stderr


def test_secrets_are_redacted_and_stray_shell_params_ignored() -> None:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "THROTTLE": "5", "MEM": "2G"}
    proc = subprocess.run(["make", "-s", "submit", "STAGE=probe", "SITE=lumi", "DRY_RUN=1",
                           "ARGS=--url https://acct.blob.core.windows.net/c/x.tif?sv=2024&se=2030-01-01&sig=SECRETSIG"],
                          cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "SECRETSIG" not in proc.stdout + proc.stderr and "sig=REDACTED" in proc.stdout
    # THROTTLE/MEM from the shell do not steer the submit; the user is told
    assert "shell variable THROTTLE=5 ignored" in proc.stderr and "%5" not in proc.stdout
    assert "--mem=2G" not in proc.stdout


def test_container_stages_import_the_deps_folder_fixed_at_submit(tmp_path: Path) -> None:
    base = ["submit", "STAGE=predict", "SITE=lumi", "DRY_RUN=1", "EMBEDDINGS=x.tif", "MODEL=m.pt"]
    plain = make(*base)
    assert plain.returncode == 0, plain.stderr
    assert "GEOHPC_DEPS=/projappl/project_465002500/venvs/geohpc-deps/current" in plain.stdout
    root = tmp_path / "deps"
    (root / "v3").mkdir(parents=True)
    (root / "current").symlink_to(root / "v3")
    pinned = make(*base, f"DEPS_ROOT={root}", "CONTAINER_PYTHONPATH=/projappl/p/extra")
    assert f"GEOHPC_DEPS={root / 'v3'}" in pinned.stdout  # the versioned folder, not the moving link
    assert "GEOHPC_CONTAINER_PYTHONPATH=/projappl/p/extra" in pinned.stdout



def test_download_on_a_partition_without_internet_is_refused(tmp_path: Path) -> None:
    items = tmp_path / "items.json"
    items.write_text('{"type": "FeatureCollection", "features": [{"id": "S2A_1"}]}')
    for site in ("saga", "betzy"):
        proc = make("submit", "STAGE=download", f"SITE={site}", "DRY_RUN=1", f"STAC={items}",
                    "BBOX=600000,4999360,600640,5000000")
        assert proc.returncode == 2 and "nodes have no internet" in proc.stderr, site
    ok = make("submit", "STAGE=download", "SITE=lumi", "DRY_RUN=1", f"STAC={items}", "BBOX=600000,4999360,600640,5000000")
    assert ok.returncode == 0, ok.stderr


def test_probe_runs_in_the_cpu_environment_where_a_site_has_no_pytorch_container() -> None:
    proc = make("submit", "STAGE=probe", "SITE=saga", "DRY_RUN=1")
    assert proc.returncode == 0, proc.stderr
    assert "runtime: CPU environment (rasterio, GDAL): apptainer /cluster/work/users/digifarm/sure/v0/containers/" \
           "romcrop.sif" in proc.stdout
    gpu = make("submit", "STAGE=probe", "SITE=betzy", "DRY_RUN=1", "FOR=fit")
    assert "--partition=accel" in gpu.stdout and "--gpus-per-node=4" in gpu.stdout and "--nv" in gpu.stdout
