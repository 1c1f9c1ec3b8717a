"""The one ssh argv every site-facing command shares, and the scripts it sends (shellcheck-clean)."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
from geohpc.core.site import load_site
from geohpc.ops import deploy, image, remote, site_setup

SHELLCHECK = Path(sys.executable).parent / "shellcheck"


def saga(**cli: str):
    return load_site("saga", cli=cli, env={})


def test_control_master_options_in_ssh_and_rsync_of_every_command(tmp_path: Path) -> None:
    site = saga(SSH_CONTROL="yes")
    opts = remote.ssh_options(site)
    assert opts[:2] == ["-o", "BatchMode=yes"] and "ControlMaster=auto" in opts
    assert "ControlPath=~/.ssh/sockets/%r@%h-%p" in opts and "ControlPersist=7d" in opts
    assert "ControlMaster=auto" in remote.rsync_shell(site)
    cmd = deploy.rsync_command(tmp_path, "saga", "/cluster/work/x/geohpc", dry_run=True, site=site)
    assert "ControlMaster=auto" in cmd[cmd.index("-e") + 1]
    assert "ControlMaster" not in " ".join(remote.ssh_options(saga(SSH_CONTROL="no")))  # only where the site says yes


def test_prepare_control_makes_the_socket_folder_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    remote.prepare_control(saga(SSH_CONTROL="no"))
    assert not (tmp_path / ".ssh").exists()
    remote.prepare_control(saga(SSH_CONTROL="yes"))
    assert stat.S_IMODE((tmp_path / ".ssh" / "sockets").stat().st_mode) == 0o700


def test_deploy_excludes_are_anchored_and_protect_the_site(tmp_path: Path) -> None:
    cmd = deploy.rsync_command(tmp_path, "saga", "/cluster/work/x/geohpc", dry_run=False)
    excludes = [a.split("=", 1)[1] for a in cmd if a.startswith("--exclude=")]
    assert "/data" in excludes and all(e.startswith("/") for e in excludes)
    assert cmd[-3] == "--filter=P *"  # no list of what an earlier deploy shipped: nothing may be deleted


def test_delete_rules_allow_only_files_no_longer_shipped() -> None:
    rules = deploy.delete_rules(["py/a.py", "py/old/x.py", "py/we[i]rd*.py", "viewer/node_modules/l.js"],
                                ["py/a.py", "py/new.py"])
    assert rules.splitlines() == ["R /py/old/x.py", "R /py/we\\[i]rd\\*.py", "R /py/old/", "P *"]


def test_generated_scripts_are_shellcheck_clean(tmp_path: Path) -> None:
    req = tmp_path / "req.txt"
    req.write_text("numpy\n")
    site = saga(DEPS_ROOT="/cluster/work/x/deps", DEPS_REQUIREMENTS=str(req), CPU_SIF="/cluster/work/x/cpu.sif",
                LINKS="/cluster/projects/nn1/data=/cluster/work/x/data", LOG_DIR="/cluster/work/x/logs",
                IMAGE_SOURCE="/cluster/work/x/cpu.tar.gz")
    scripts = {"site-setup.sh": site_setup.script(site), "image.sh": image.plan(site)[1]}
    local = load_site("local", cli={"VENV": "/tmp/v", "DEPS_ROOT": "/tmp/d", "DEPS_REQUIREMENTS": str(req)}, env={})
    scripts["site-setup-venv.sh"] = site_setup.script(local)
    for name, text in scripts.items():
        (tmp_path / name).write_text(text)
    proc = subprocess.run([str(SHELLCHECK), "-s", "bash", *(str(tmp_path / n) for n in scripts)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    assert "python3 -m venv /tmp/v" in scripts["site-setup-venv.sh"]


def test_a_path_under_project_space_is_refused_lexically() -> None:
    assert remote.is_under("/cluster/projects/nn1/../nn1/models", "/cluster/projects")
    assert not remote.is_under("/cluster/projectsX/models", "/cluster/projects")
    assert not remote.is_under("/cluster/work/models", "")
