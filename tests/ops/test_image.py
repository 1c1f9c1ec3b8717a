"""make image: the build commands for both source kinds, the site-provided case, and the refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from ops_helpers import closed_port_config, geohpc, make, one_line_error, sshd_up

SIF = "/cluster/work/users/me/containers/cpu.sif"


def test_docker_archive_dry_run(tmp_path: Path) -> None:
    proc = geohpc("image", "--dry-run", CONTAINER_RUNTIME="apptainer", CPU_SIF=SIF,
                  IMAGE_SOURCE="/cluster/work/users/me/containers/cpu.tar.gz", REMOTE_DIR=str(tmp_path / "a" / "b"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("ssh -o BatchMode=yes -F ") and "geohpc-loopback bash -s" in out.splitlines()[0]
    assert f"apptainer build {SIF}.building.sif docker-archive:///cluster/work/users/me/containers/cpu.tar.gz" in out
    assert f"mv -f -- {SIF}.building.sif {SIF}" in out  # built under a temporary name, then renamed
    assert "previous image kept as" in out and "nothing changed" in out


def test_definition_file_dry_run_uses_fakeroot_and_the_site_runtime(tmp_path: Path) -> None:
    proc = geohpc("image", "--dry-run", CONTAINER_RUNTIME="singularity", CPU_SIF=SIF, IMAGE_SOURCE="containers/cpu.def",
                  REMOTE_DIR="/cluster/work/users/me/geohpc")
    assert proc.returncode == 0, proc.stderr
    # a relative source is the deployed checkout's
    assert f"singularity build --fakeroot {SIF}.building.sif /cluster/work/users/me/geohpc/containers/cpu.def" in proc.stdout


def test_site_provided_image_is_nothing_to_build() -> None:
    proc = geohpc("image", CONTAINER_RUNTIME="singularity", CPU_SIF="/appl/local/containers/sif-images/cpu.sif",
                  IMAGE_SOURCE="")
    assert proc.returncode == 0, proc.stderr
    assert "provided by the site" in proc.stdout and "nothing to build" in proc.stdout


@pytest.mark.parametrize(("values", "needle"), [
    ({"CPU_SIF": "", "IMAGE_SOURCE": "x.def"}, "CPU_SIF is empty in sites/local.env"),
    ({"CPU_SIF": SIF, "IMAGE_SOURCE": ""}, "IMAGE_SOURCE is empty in sites/local.env"),
    ({"CPU_SIF": SIF, "IMAGE_SOURCE": "image.zip"}, "IMAGE_SOURCE=image.zip is neither"),
    ({"CPU_SIF": SIF, "IMAGE_SOURCE": "x.def", "CONTAINER_RUNTIME": "none"}, "CONTAINER_RUNTIME is none"),
])
def test_refusals(values: dict[str, str], needle: str) -> None:
    values = {"CONTAINER_RUNTIME": "apptainer", "REMOTE_DIR": "/cluster/work/users/me/geohpc", **values}
    assert needle in one_line_error(geohpc("image", "--dry-run", **values))


@pytest.mark.ssh
def test_missing_runtime_on_the_site_is_one_line_naming_it(tmp_path: Path) -> None:
    sshd_up()
    archive = tmp_path / "cpu.tar"
    archive.write_bytes(b"not really an image")
    sif = tmp_path / "containers" / "cpu.sif"
    proc = geohpc("image", CONTAINER_RUNTIME="apptainer", CPU_SIF=str(sif), IMAGE_SOURCE=str(archive),
                  REMOTE_DIR=str(tmp_path / "a" / "b"))
    line = one_line_error(proc)  # the test machine has no apptainer: exactly what a login node without it says
    assert "apptainer not found on the site" in line and "geohpc-loopback" in line
    assert not sif.exists() and not sif.parent.exists()
    missing = geohpc("image", CONTAINER_RUNTIME="apptainer", CPU_SIF=str(sif), IMAGE_SOURCE=str(tmp_path / "no.tar"),
                     REMOTE_DIR=str(tmp_path / "a" / "b"), ssh_config=closed_port_config(tmp_path), remote="geohpc-closed")
    assert "check 'ssh geohpc-closed' works" in one_line_error(missing)


def test_make_image_guard_and_dry_run() -> None:
    bad = make("image", "SITE=nowhere")
    assert bad.returncode != 0 and "unknown SITE" in bad.stderr
    proc = make("image", "SITE=local", "DRY_RUN=1", "REMOTE=geohpc-loopback", "REMOTE_DIR=/x/y/geohpc",
                "CONTAINER_RUNTIME=apptainer", f"CPU_SIF={SIF}", "IMAGE_SOURCE=/x/cpu.tar")
    assert proc.returncode == 0, proc.stderr
    assert "docker-archive:///x/cpu.tar" in proc.stdout
