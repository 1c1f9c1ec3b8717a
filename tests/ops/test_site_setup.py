"""make site-setup over the loopback sshd: folders, links, a new versioned deps folder each time."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ops_helpers import REPO, closed_port_config, geohpc, make, one_line_error, sshd_up

pytestmark = pytest.mark.ssh


@pytest.fixture(autouse=True)
def _sshd() -> None:
    sshd_up()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny local package built into a wheel (nothing is installed into the project's venv)."""
    tmp = tmp_path_factory.mktemp("tinypkg")
    (tmp / "pkg" / "tinypkg").mkdir(parents=True)
    (tmp / "pkg" / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools"]\n'
                                                'build-backend = "setuptools.build_meta"\n'
                                                '[project]\nname = "tinypkg"\nversion = "0.1"\n')
    (tmp / "pkg" / "tinypkg" / "__init__.py").write_text("VALUE = 42\n")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(tmp / "wheels"), str(tmp / "pkg")], check=True, capture_output=True)
    (whl,) = (tmp / "wheels").glob("tinypkg-*.whl")
    return whl


@pytest.fixture(scope="module")
def site_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real venv on the 'site' (its own, not the project's)."""
    venv = tmp_path_factory.mktemp("site") / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    return venv


def site(tmp_path: Path, venv: Path, wheel: Path) -> dict[str, str]:
    """A site layout under tmp_path: a deployed checkout, work space, project space with links."""
    checkout, work = tmp_path / "proj" / "geohpc", tmp_path / "work"
    checkout.mkdir(parents=True)
    shutil.copy(REPO / "pyproject.toml", checkout / "pyproject.toml")  # as deployed
    want = hashlib.sha256((checkout / "pyproject.toml").read_bytes()).hexdigest()[:16]
    (venv / ".geohpc-installed").write_text(want + "\n")  # the venv is up to date with the checkout
    req = tmp_path / "deps.txt"
    req.write_text(f"--no-index\n{wheel}\n")
    return {"REMOTE_DIR": str(checkout), "SCRATCH": str(work), "VENV": str(venv), "CONTAINER_RUNTIME": "none",
            "DEPS_ROOT": str(work / "deps"), "DEPS_REQUIREMENTS": str(req), "LOG_DIR": str(work / "logs"),
            "JOB_TMPDIR": str(work / "tmp"), "MODELS_DIR": str(work / "models"),
            "LINKS": f"{tmp_path}/project/data={work}/data,{tmp_path}/project/kept={work}/elsewhere,"
                     f"{tmp_path}/project/real={work}/real"}


def test_site_setup_twice_makes_v1_then_v2_and_keeps_v1(tmp_path: Path, site_venv: Path, wheel: Path) -> None:
    values = site(tmp_path, site_venv, wheel)
    deps, work, project = Path(values["DEPS_ROOT"]), Path(values["SCRATCH"]), tmp_path / "project"
    project.mkdir()
    (project / "kept").symlink_to(tmp_path / "somewhere")  # a link that exists is never recreated
    (project / "real").mkdir()  # a real folder is never replaced by a link
    (project / "real" / "notes.txt").write_text("mine")
    first = geohpc("site-setup", **values)
    assert first.returncode == 0, first.stderr
    for folder in ("logs", "tmp", "models", "outputs"):
        assert (work / folder).is_dir(), folder
    assert os.readlink(project / "data") == f"{work}/data" and (work / "data").is_dir()
    assert os.readlink(project / "kept") == str(tmp_path / "somewhere")
    assert (project / "real" / "notes.txt").read_text() == "mine" and not (project / "real").is_symlink()
    assert "real file or folder: left as it is" in first.stderr
    assert "venv" in first.stdout and "up to date" in first.stdout
    assert os.readlink(deps / "current") == "v1"
    assert (deps / "v1" / "tinypkg" / "__init__.py").read_text() == "VALUE = 42\n"
    assert f"deps installed in {deps}/v1" in first.stdout and "running jobs keep" in first.stdout
    v1_inode = (deps / "v1" / "tinypkg" / "__init__.py").stat().st_ino

    second = geohpc("site-setup", **values)
    assert second.returncode == 0, second.stderr
    assert os.readlink(deps / "current") == "v2"
    assert (deps / "v2" / "tinypkg" / "__init__.py").is_file()
    assert (deps / "v1" / "tinypkg" / "__init__.py").stat().st_ino == v1_inode  # v1 untouched
    assert sorted(p.name for p in deps.iterdir()) == ["current", "v1", "v2"]
    probe = subprocess.run([str(site_venv / "bin" / "python"), "-c", "import tinypkg; print(tinypkg.__file__)"],
                           env={"PYTHONPATH": str(deps / "current")}, capture_output=True, text=True)
    assert probe.stdout.strip() == f"{deps}/current/tinypkg/__init__.py"

    # a failing install leaves current on v2 and says where pip's log is, in one line
    Path(values["DEPS_REQUIREMENTS"]).write_text("--no-index\nno-such-package-geohpc==9\n")
    bad = geohpc("site-setup", **values)
    line = one_line_error(bad)
    assert "pip install --target" in line and ".v3.partial/.geohpc-pip.log" in line
    assert os.readlink(deps / "current") == "v2" and (deps / "v2" / "tinypkg").is_dir()
    assert (deps / ".v3.partial" / ".geohpc-pip.log").is_file()


def test_dry_run_prints_the_script_and_changes_nothing(tmp_path: Path, site_venv: Path, wheel: Path) -> None:
    values = site(tmp_path, site_venv, wheel)
    proc = geohpc("site-setup", "--dry-run", SSH_CONTROL="yes", **values)
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("ssh -o BatchMode=yes -F ") and "-o ControlMaster=auto" in first
    assert "ControlPath=~/.ssh/sockets/%r@%h-%p" in first and "ControlPersist=7d" in first
    assert "geohpc-loopback bash -s <<'GEOHPC_EOF'" in first
    assert f"{site_venv}/bin/python -m pip install" in proc.stdout and "--target" in proc.stdout
    assert 'mv -T -- "$root/.current.$$" "$root/current"' in proc.stdout
    assert "nothing changed" in proc.stdout
    assert not Path(values["SCRATCH"]).exists()


def test_container_site_installs_with_the_cpu_container(tmp_path: Path, site_venv: Path, wheel: Path) -> None:
    values = {**site(tmp_path, site_venv, wheel), "CONTAINER_RUNTIME": "apptainer", "CONTAINER_BIND": "/cluster"}
    line = one_line_error(geohpc("site-setup", "--dry-run", **values))
    assert "CPU_SIF is empty in sites/local.env" in line
    proc = geohpc("site-setup", "--dry-run", CPU_SIF="/cluster/containers/cpu.sif", **values)
    assert proc.returncode == 0, proc.stderr
    assert "apptainer exec --bind /cluster /cluster/containers/cpu.sif python3 -m pip install" in proc.stdout
    assert "venv" not in proc.stdout.split("root=")[0]  # no venv step on a container site


def test_refusals_are_one_line_naming_the_key(tmp_path: Path, site_venv: Path, wheel: Path) -> None:
    values = site(tmp_path, site_venv, wheel)
    line = one_line_error(geohpc("site-setup", **{**values, "DEPS_ROOT": ""}))
    assert "DEPS_ROOT is empty in sites/local.env" in line
    line = one_line_error(geohpc("site-setup", **{**values, "PROJECT_SPACE": str(tmp_path / "work" / "logs")}))
    assert "LOG_DIR=" in line and "PROJECT_SPACE" in line
    line = one_line_error(geohpc("site-setup", **{**values, "LINKS": "nolink"}))
    assert "LINKS item 'nolink'" in line
    assert not Path(values["SCRATCH"]).exists()  # nothing was made


def test_ssh_failure_names_the_alias(tmp_path: Path, site_venv: Path, wheel: Path) -> None:
    values = site(tmp_path, site_venv, wheel)
    proc = geohpc("site-setup", remote="geohpc-closed", ssh_config=closed_port_config(tmp_path), **values)
    line = one_line_error(proc)
    assert "geohpc-closed" in line and "check 'ssh geohpc-closed' works" in line


def test_make_site_setup_dry_run_and_guard() -> None:
    proc = make("site-setup", "SITE=saga", "DRY_RUN=1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ssh -o BatchMode=yes") and " saga bash -s" in proc.stdout.splitlines()[0]
    bad = make("site-setup", "SITE=nowhere")
    assert bad.returncode != 0 and "unknown SITE 'nowhere'" in bad.stderr
