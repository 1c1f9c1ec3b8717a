"""make deploy over a real sshd on 127.0.0.1, through an ssh Host alias with throwaway keys."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, make

pytestmark = pytest.mark.ssh
SSHD_DIR = Path(os.environ.get("GEOHPC_SSHD_DIR", "/tmp/geohpc-sshd"))
SSH_CONFIG = SSHD_DIR / "ssh_config"
ALIAS = "geohpc-loopback"


@pytest.fixture(autouse=True)
def _sshd_up() -> None:
    proc = subprocess.run(["ssh", "-F", str(SSH_CONFIG), ALIAS, "true"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"loopback sshd not up (sh/sshd_test.sh up): {proc.stderr}"


def deploy(src: Path, remote_dir: str, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "geohpc", "deploy", "--site", "local", "--src", str(src), "--ssh-config",
           str(SSH_CONFIG), "--set", f"REMOTE={ALIAS}", "--set", f"REMOTE_DIR={remote_dir}", *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO / "py")}
    env.pop("MAKEFLAGS", None)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def test_deploy_mirrors_code_and_never_touches_outputs(tmp_path: Path) -> None:
    src, remote = tmp_path / "src", tmp_path / "remote" / "proj" / "geohpc"
    (src / "py").mkdir(parents=True)
    (src / "py" / "a.py").write_text("A = 1\n")
    (src / "py" / "old.py").write_text("OLD = 1\n")
    (src / "outputs").mkdir()
    (src / "outputs" / "local-only.tif").write_text("local")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref")
    (src / "id_ed25519").write_text("PRIVATE KEY")
    (src / "sites").mkdir()
    (src / "sites" / "lumi.local.env").write_text("ACCOUNT=secret\n")
    first = deploy(src, str(remote))
    assert first.returncode == 0, first.stderr
    assert "3 new" in first.stdout or "new" in first.stdout
    assert (remote / "py" / "a.py").read_text() == "A = 1\n"
    for never in (".git", "id_ed25519", "sites/lumi.local.env", "outputs/local-only.tif"):
        assert not (remote / never).exists(), never
    # the remote side has results and logs of its own
    (remote / "outputs").mkdir()
    (remote / "outputs" / "map.tif").write_text("a month of GPU time")
    (remote / "logs").mkdir()
    (remote / "logs" / "job.out").write_text("log")
    (remote / "data").mkdir()
    (remote / "data" / "s2.tif").write_text("data")
    (src / "py" / "old.py").unlink()
    (src / "py" / "a.py").write_text("A = 2\n")
    dry = deploy(src, str(remote), "--dry-run")
    assert dry.returncode == 0 and "would change" in dry.stdout and "- py/old.py" in dry.stdout
    assert (remote / "py" / "old.py").exists()  # a dry run changes nothing
    second = deploy(src, str(remote))
    assert second.returncode == 0, second.stderr
    assert "1 updated, 1 deleted" in second.stdout
    assert not (remote / "py" / "old.py").exists()
    assert (remote / "py" / "a.py").read_text() == "A = 2\n"
    assert (remote / "outputs" / "map.tif").read_text() == "a month of GPU time"
    assert (remote / "logs" / "job.out").exists() and (remote / "data" / "s2.tif").exists()


@pytest.mark.parametrize("bad", ["/", "", "~", "/scratch", "/a/../b"])
def test_unsafe_remote_dir_refused(tmp_path: Path, bad: str) -> None:
    proc = deploy(tmp_path, bad)
    assert proc.returncode == 2
    assert "REMOTE_DIR=" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_make_deploy_of_the_repo_keeps_remote_outputs(tmp_path: Path) -> None:
    remote = tmp_path / "r" / "s" / "geohpc"
    (remote / "outputs").mkdir(parents=True)
    (remote / "outputs" / "keep.tif").write_text("keep")
    proc = make("deploy", "SITE=local", f"REMOTE={ALIAS}", f"REMOTE_DIR={remote}", env={"SSH_CONFIG": str(SSH_CONFIG)})
    assert proc.returncode == 0, proc.stderr
    assert (remote / "Makefile").is_file() and (remote / "py" / "geohpc" / "ops" / "submit.py").is_file()
    assert not (remote / ".venv").exists() and not (remote / ".git").exists()
    if (REPO / "viewer" / "node_modules" / "leaflet").is_dir():  # the viewer's JS travels (no npm on nodes)
        assert (remote / "viewer" / "node_modules" / "leaflet" / "dist" / "leaflet.js").is_file()
    assert (remote / "outputs" / "keep.tif").read_text() == "keep"


def test_remote_symlinked_data_and_foreign_folders_are_safe(tmp_path: Path) -> None:
    src, remote = tmp_path / "src", tmp_path / "remote" / "proj" / "geohpc"
    (src / "sites").mkdir(parents=True)
    (src / "sites" / "local.env").write_text("SITE_NAME=local\n")
    assert deploy(src, str(remote)).returncode == 0
    real = tmp_path / "project-storage"
    real.mkdir()
    (real / "big.tif").write_text("terabytes")
    (remote / "data").symlink_to(real)  # data/ on the cluster is often a link to project storage
    again = deploy(src, str(remote))
    assert again.returncode == 0, again.stderr
    assert (remote / "data").is_symlink() and (real / "big.tif").read_text() == "terabytes"
    # a folder full of something else (the scratch root, say) is refused before anything is deleted
    foreign = tmp_path / "remote" / "proj" / "scratchlike"
    foreign.mkdir()
    (foreign / "embeddings.tif").write_text("results")
    proc = deploy(src, str(foreign))
    assert proc.returncode == 2 and "no geohpc checkout" in proc.stderr
    assert (foreign / "embeddings.tif").read_text() == "results"


def test_remote_dir_equal_to_scratch_is_refused() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "py")}
    env.pop("MAKEFLAGS", None)
    proc = subprocess.run([sys.executable, "-m", "geohpc", "deploy", "--site", "lumi", "--dry-run", "--set",
                           "REMOTE_DIR=/scratch/project_465002500/romcrop"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "is the site's SCRATCH" in proc.stderr
