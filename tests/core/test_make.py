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


def test_lumi_dry_run_rendering() -> None:
    proc = make("submit", "STAGE=probe", "SITE=lumi", "DRY_RUN=1", "GPUS=8")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    sb = next(line for line in out.splitlines() if line.strip().startswith("sbatch "))
    assert "--account=project_465002500" in sb and "--partition=standard-g" in sb
    assert "--gpus-per-node=8" in sb and "--array=0-1%200" in sb
    assert "--chdir=/scratch/project_465002500/romcrop/geohpc" in sb
    assert "GEOHPC_LAUNCH='singularity exec @SIF@ python3'" in out
    assert "SINGULARITY_BIND=/pfs,/scratch,/projappl,/project,/flash" in out
    assert "GEOHPC_MODULES=pytorch/2.7" in out
    assert "--rocm" not in out
    assert "DRY_RUN=1  (command line)" in out
    assert "ACCOUNT=project_465002500  (site file)" in out


def test_saga_and_betzy_dry_run_rendering() -> None:
    saga = make("submit", "STAGE=probe", "SITE=saga", "DRY_RUN=1", "PYTORCH_SIF=/cluster/sif/torch.sif").stdout
    assert "--account=nn12037k" in saga and "--gpus-per-node" not in saga
    assert "GEOHPC_LAUNCH='apptainer exec /cluster/sif/torch.sif python3'" in saga
    assert "APPTAINER_BIND=/cluster" in saga
    assert "PYTORCH_SIF=/cluster/sif/torch.sif  (command line)" in saga
    betzy = make("submit", "STAGE=probe", "SITE=betzy", "DRY_RUN=1", "GPUS=4", "ACCOUNT=nn9999k",
                 "SCRATCH=/cluster/work/users/me", "PYTORCH_SIF=/cluster/sif/t.sif").stdout
    assert "--account=nn9999k" in betzy and "--gpus-per-node=4" in betzy
    assert "apptainer exec --nv /cluster/sif/t.sif python3" in betzy


def test_betzy_real_submit_refuses_unknown_account(tmp_path: Path) -> None:
    proc = make("submit", "STAGE=probe", "SITE=betzy", f"OUT_DIR={tmp_path}")
    assert proc.returncode == 2
    assert "is empty in betzy.env: pass" in proc.stderr
    assert not list(tmp_path.iterdir())


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


def test_container_stage_that_reads_rasters_needs_a_deps_path() -> None:
    base = ["submit", "STAGE=predict", "SITE=lumi", "DRY_RUN=1", "EMBEDDINGS=x.tif", "MODEL=m.pt"]
    plain = make(*base)
    assert "predict needs rasterio inside the PyTorch container" in plain.stdout
    deps = make(*base, "CONTAINER_PYTHONPATH=/projappl/p/deps/site-packages")
    assert "GEOHPC_CONTAINER_PYTHONPATH=/projappl/p/deps/site-packages" in deps.stdout
    assert "needs rasterio" not in deps.stdout
