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


def git_checkout(src: Path, *tracked: str) -> Path:
    """Make ``src`` a git repo whose index holds ``tracked`` (paths or folders): deploy ships only these."""
    src.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(src)], check=True)
    if tracked:
        subprocess.run(["git", "-C", str(src), "add", "--", *tracked], check=True)
    return src


def test_deploy_mirrors_code_and_never_touches_outputs(tmp_path: Path) -> None:
    src, remote = tmp_path / "src", tmp_path / "remote" / "proj" / "geohpc"
    (src / "py").mkdir(parents=True)
    (src / "py" / "a.py").write_text("A = 1\n")
    (src / "py" / "old.py").write_text("OLD = 1\n")
    (src / "outputs").mkdir()
    (src / "outputs" / "local-only.tif").write_text("local")
    (src / "id_ed25519").write_text("PRIVATE KEY")
    (src / "sites").mkdir()
    (src / "sites" / "lumi.local.env").write_text("ACCOUNT=secret\n")
    (src / "sites" / "local.env").write_text("SITE_NAME=local\n")
    git_checkout(src, "py", "sites/local.env")
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
    proc = deploy(git_checkout(tmp_path / "src"), bad)
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
    git_checkout(src, "sites")
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


def test_nested_data_folder_arrives_and_top_level_data_is_never_touched(tmp_path: Path) -> None:
    src, remote = tmp_path / "src", tmp_path / "remote" / "proj" / "geohpc"
    (src / "py" / "pkg" / "data").mkdir(parents=True)
    (src / "py" / "pkg" / "data" / "x.py").write_text("X = 1\n")
    (src / "py" / "pkg" / "data" / "classes.json").write_text("{}\n")
    (src / "sites").mkdir()
    (src / "sites" / "local.env").write_text("SITE_NAME=local\n")
    git_checkout(src, "py", "sites")
    (src / "data").mkdir()  # the local top-level data is neither sent nor used to delete the site's
    (src / "data" / "local.tif").write_text("local data")
    (remote / "data").mkdir(parents=True)
    (remote / "data" / "s2.tif").write_text("site data")
    (remote / "sites").mkdir()
    (remote / "sites" / "local.env").write_text("SITE_NAME=local\n")
    proc = deploy(src, str(remote))
    assert proc.returncode == 0, proc.stderr
    assert (remote / "py" / "pkg" / "data" / "x.py").read_text() == "X = 1\n"
    assert (remote / "py" / "pkg" / "data" / "classes.json").is_file()
    assert sorted(p.name for p in (remote / "data").iterdir()) == ["s2.tif"]
    assert (remote / "data" / "s2.tif").read_text() == "site data"
    # removing a nested data file locally removes it remotely; the top-level data is still untouched
    subprocess.run(["git", "-C", str(src), "rm", "-qf", "py/pkg/data/classes.json"], check=True)
    again = deploy(src, str(remote))
    assert again.returncode == 0 and "1 deleted" in again.stdout, again.stdout + again.stderr
    assert not (remote / "py" / "pkg" / "data" / "classes.json").exists()
    assert (remote / "data" / "s2.tif").read_text() == "site data"
    rsync = deploy(src, str(remote), "--dry-run").stdout.splitlines()[0]
    assert "--exclude=/data" in rsync and "--exclude=data " not in rsync + " "


SECRETS = [  # 30 kinds of secret files users keep in a checkout, none tracked
    ".envrc", ".env", ".env.production", "sites/lumi.local.env", ".git-credentials", ".s3cfg", "rclone.conf",
    ".config/rclone/rclone.conf", "cert.p12", "client.pfx", "gcp-sa.json", "token", ".netrc", ".pgpass", "id_rsa",
    "id_ed25519", "server.pem", "tls.key", ".aws/credentials", "kubeconfig", ".kube/config", ".docker/config.json",
    "secrets.yaml", ".npmrc", ".pypirc", "wandb/.netrc", "credentials.json", "vault.kdbx", ".htpasswd",
    "py/pkg/.env", "py/pkg/data/api_token.txt", ".ssh/config", "sas_url.txt",
]


def test_no_untracked_secret_reaches_the_remote(tmp_path: Path) -> None:
    src, remote = tmp_path / "src", tmp_path / "remote" / "proj" / "geohpc"
    (src / "py" / "pkg" / "data").mkdir(parents=True)
    (src / "py" / "pkg" / "__init__.py").write_text("")
    (src / "sites").mkdir()
    (src / "sites" / "local.env").write_text("SITE_NAME=local\n")
    (src / "Makefile").write_text("all:\n")
    git_checkout(src, "py", "sites", "Makefile")
    for name in SECRETS:
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        body = '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----"}' if name.endswith(".json") \
            else "machine example.org login u password hunter2\n"
        path.write_text(body)
    assert len(SECRETS) >= 24
    proc = deploy(src, str(remote))
    assert proc.returncode == 0, proc.stderr
    found = sorted(str(p.relative_to(remote)) for p in remote.rglob("*") if p.is_file() or p.is_symlink())
    assert found == [".geohpc-deployed", ".geohpc-deployed.files", "Makefile", "py/pkg/__init__.py", "sites/local.env"]
    shipped = (remote / ".geohpc-deployed.files").read_text().split()
    assert sorted(shipped) == ["Makefile", "py/pkg/__init__.py", "sites/local.env"]
    leaked = [name for name in SECRETS if (remote / name).exists()]
    assert leaked == []
    assert f"{len(SECRETS)} untracked files stay here" in proc.stdout
    assert "hunter2" not in proc.stdout + proc.stderr


def test_deploy_of_a_folder_that_is_not_a_checkout_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "plain"
    (src / "py").mkdir(parents=True)
    (src / "py" / "a.py").write_text("A = 1\n")
    env = {"GIT_CEILING_DIRECTORIES": str(tmp_path)}
    cmd = [sys.executable, "-m", "geohpc", "deploy", "--site", "local", "--src", str(src), "--ssh-config",
           str(SSH_CONFIG), "--set", f"REMOTE={ALIAS}", "--set", f"REMOTE_DIR={tmp_path / 'r' / 's' / 'g'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO / "py"), **env})
    assert proc.returncode == 2 and "not a git checkout" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_delete_removes_only_what_an_earlier_deploy_shipped(tmp_path: Path) -> None:
    src, remote = tmp_path / "src", tmp_path / "remote" / "proj" / "geohpc"
    (src / "py" / "gone").mkdir(parents=True)
    (src / "py" / "a.py").write_text("A = 1\n")
    (src / "py" / "gone" / "g.py").write_text("G = 1\n")
    (src / "sites").mkdir()
    (src / "sites" / "local.env").write_text("SITE_NAME=local\n")
    git_checkout(src, "py", "sites")
    assert deploy(src, str(remote)).returncode == 0
    # what the site has of its own: secrets made there, notes, a site override, caches
    for name, text in {".env": "TOKEN=x", "notes/todo.md": "mine", "sites/lumi.local.env": "ACCOUNT=x",
                       "py/__pycache__/a.cpython-311.pyc": "pyc", "py/gone/scratch.txt": "mine too"}.items():
        (remote / name).parent.mkdir(parents=True, exist_ok=True)
        (remote / name).write_text(text)
    subprocess.run(["git", "-C", str(src), "rm", "-qf", "py/gone/g.py"], check=True)
    proc = deploy(src, str(remote))
    assert proc.returncode == 0, proc.stderr
    assert "0 updated, 1 deleted" in proc.stdout and "- py/gone/g.py" in proc.stdout
    assert not (remote / "py" / "gone" / "g.py").exists()
    for name in (".env", "notes/todo.md", "sites/lumi.local.env", "py/__pycache__/a.cpython-311.pyc",
                 "py/gone/scratch.txt"):
        assert (remote / name).is_file(), name
