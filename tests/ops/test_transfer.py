"""make push and make fetch over the loopback sshd: nothing deleted, nothing different overwritten silently."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ops_helpers import closed_port_config, geohpc, make, one_line_error, sshd_up

pytestmark = pytest.mark.ssh


@pytest.fixture(autouse=True)
def _sshd() -> None:
    sshd_up()


def test_push_sends_a_model_and_keeps_a_different_old_one(tmp_path: Path) -> None:
    models = tmp_path / "site" / "models"
    model = tmp_path / "local" / "tessera.pt"
    model.parent.mkdir()
    model.write_bytes(b"weights v1")
    first = geohpc("push", "--file", str(model), MODELS_DIR=str(models), REMOTE_DIR=str(tmp_path / "site" / "code"))
    assert first.returncode == 0, first.stderr
    assert (models / "tessera.pt").read_bytes() == b"weights v1" and "1 new, 0 replaced" in first.stdout
    (models / "other.pt").write_bytes(b"someone else's model")
    same = geohpc("push", "--file", str(model), MODELS_DIR=str(models))
    assert same.returncode == 0 and "0 new, 0 replaced" in same.stdout and "same bytes" in same.stdout
    assert sorted(p.name for p in models.iterdir()) == ["other.pt", "tessera.pt"]
    model.write_bytes(b"weights v2")  # same size: only the contents say it differs
    os.utime(model, (0, (models / "tessera.pt").stat().st_mtime))
    second = geohpc("push", "--file", str(model), MODELS_DIR=str(models))
    assert second.returncode == 0, second.stderr
    assert "1 replaced" in second.stdout and "old one is kept as tessera.pt." in second.stdout
    assert (models / "tessera.pt").read_bytes() == b"weights v2"
    (kept,) = [p for p in models.iterdir() if p.name.startswith("tessera.pt.")]
    assert kept.read_bytes() == b"weights v1" and kept.name.endswith("Z")
    assert (models / "other.pt").read_bytes() == b"someone else's model"  # never deleted


def test_push_a_checkpoint_folder_and_refusals(tmp_path: Path) -> None:
    ckpt = tmp_path / "run7"
    (ckpt / "shards").mkdir(parents=True)
    (ckpt / "shards" / "0.bin").write_bytes(b"0")
    models = tmp_path / "site" / "models"
    proc = geohpc("push", "--file", str(ckpt), MODELS_DIR=str(models))
    assert proc.returncode == 0, proc.stderr
    assert (models / "run7" / "shards" / "0.bin").read_bytes() == b"0"
    assert "MODELS_DIR is empty in sites/local.env" in one_line_error(geohpc("push", "--file", str(ckpt), MODELS_DIR=""))
    line = one_line_error(geohpc("push", "--file", str(ckpt), MODELS_DIR="/cluster/projects/nn1/models",
                                 PROJECT_SPACE="/cluster/projects"))
    assert "under PROJECT_SPACE=/cluster/projects" in line
    assert "does not exist here" in one_line_error(geohpc("push", "--file", str(tmp_path / "nope.pt"), MODELS_DIR=str(models)))
    line = one_line_error(geohpc("push", "--file", str(ckpt), MODELS_DIR=str(models), remote="geohpc-closed",
                                 ssh_config=closed_port_config(tmp_path)))
    assert "check 'ssh geohpc-closed' works" in line


def test_push_dry_run_prints_commands_and_sends_nothing(tmp_path: Path) -> None:
    model = tmp_path / "m.pt"
    model.write_bytes(b"w")
    proc = geohpc("push", "--file", str(model), "--dry-run", MODELS_DIR=str(tmp_path / "models"), SSH_CONTROL="yes")
    assert proc.returncode == 0, proc.stderr
    mkdir, rsync = proc.stdout.splitlines()[:2]
    assert mkdir.startswith("ssh -o BatchMode=yes") and "ControlMaster=auto" in mkdir
    assert rsync.startswith("rsync ") and "--backup" in rsync and "--delete" not in rsync and "ControlMaster=auto" in rsync
    assert not (tmp_path / "models").exists()


def _outputs(scratch: Path) -> Path:
    out = scratch / "outputs" / "validate"
    (out / "report" / "img").mkdir(parents=True)
    (out / "report" / "report.html").write_text("<html>")
    (out / "report" / "img" / "confusion.png").write_bytes(b"png")
    (out / "metrics.json").write_text('{"oa": 0.9}')
    (out / "per_class.csv").write_text("class,f1\n")
    (out / "map" / "tiles").mkdir(parents=True)
    (out / "map" / "tiles" / "cropmap.tif").write_bytes(b"big raster")
    return out


def test_fetch_reports_only_with_nested_folders(tmp_path: Path) -> None:
    scratch, dest = tmp_path / "site" / "work", tmp_path / "fetched"
    _outputs(scratch)
    proc = geohpc("fetch", "--stage", "validate", "--only", "reports", "--dest", str(dest), SCRATCH=str(scratch))
    assert proc.returncode == 0, proc.stderr
    got = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert got == ["metrics.json", "per_class.csv", "report/img/confusion.png", "report/report.html"]
    assert (dest / "map" / "tiles").is_dir()  # folders kept, the raster not fetched
    every = geohpc("fetch", "--stage", "validate", "--only", "*.tif", "--dest", str(tmp_path / "tifs"), SCRATCH=str(scratch))
    assert every.returncode == 0, every.stderr
    assert [p.name for p in (tmp_path / "tifs").rglob("*") if p.is_file()] == ["cropmap.tif"]


def test_fetch_never_deletes_and_keeps_a_changed_local_file(tmp_path: Path) -> None:
    scratch, dest = tmp_path / "site" / "work", tmp_path / "fetched"
    out = _outputs(scratch)
    assert geohpc("fetch", "--stage", "validate", "--dest", str(dest), SCRATCH=str(scratch)).returncode == 0
    (dest / "my-notes.md").write_text("mine")  # a local file the site does not have
    (dest / "metrics.json").write_text('{"oa": "edited locally"}')
    (out / "metrics.json").write_text('{"oa": 0.95}')
    (out / "per_class.csv").unlink()  # gone on the site: stays here
    proc = geohpc("fetch", "--stage", "validate", "--dest", str(dest), SCRATCH=str(scratch))
    assert proc.returncode == 0, proc.stderr
    assert (dest / "metrics.json").read_text() == '{"oa": 0.95}'
    (kept,) = [p for p in dest.iterdir() if p.name.startswith("metrics.json.")]
    assert kept.read_text() == '{"oa": "edited locally"}' and "your copy is kept as metrics.json." in proc.stdout
    assert (dest / "my-notes.md").read_text() == "mine" and (dest / "per_class.csv").is_file()
    assert (out / "report" / "report.html").is_file()  # the site side is only read


def test_fetch_out_dir_dry_run_and_errors(tmp_path: Path) -> None:
    proc = geohpc("fetch", "--stage", "cog", "--out-dir", "outputs/cog-v2", "--only", "reports", "--dry-run",
                  "--dest", str(tmp_path / "d"), SCRATCH="/cluster/work/users/me/w")
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.splitlines()[0]
    assert "geohpc-loopback:/cluster/work/users/me/w/outputs/cog-v2/" in line and "--delete" not in line
    assert "--include=*.json" in line and "--exclude=*" in line and not (tmp_path / "d").exists()
    missing = geohpc("fetch", "--stage", "cog", "--dest", str(tmp_path / "d"), SCRATCH=str(tmp_path / "nowhere"))
    line = one_line_error(missing)
    assert "geohpc-loopback" in line and "check 'ssh geohpc-loopback' works" in line


def test_make_push_and_fetch_guards() -> None:
    assert "FILE='' does not exist here" in make("push", "SITE=local").stderr
    assert "unknown STAGE ''" in make("fetch", "SITE=local").stderr
    proc = make("fetch", "SITE=saga", "STAGE=validate", "ONLY=reports", "DRY_RUN=1")
    assert proc.returncode == 0, proc.stderr
    assert "saga:/cluster/work/users/digifarm/sure/v1/outputs/validate/" in proc.stdout
    assert "fetched/saga/validate/" in proc.stdout


def test_make_push_and_fetch_over_ssh_read_the_make_line(tmp_path: Path) -> None:
    model = tmp_path / "m.pt"
    model.write_bytes(b"weights")
    models = tmp_path / "site" / "models"
    proc = make("push", "SITE=local", "REMOTE=geohpc-loopback", f"MODELS_DIR={models}", f"FILE={model}")
    assert proc.returncode == 0, proc.stderr
    assert (models / "m.pt").read_bytes() == b"weights"
    scratch = tmp_path / "site" / "work"
    _outputs(scratch)
    dry = make("fetch", "SITE=local", "REMOTE=geohpc-loopback", f"SCRATCH={scratch}", "STAGE=validate",
               "ONLY=*.csv,*.md", "OUT_DIR=outputs/validate", "DRY_RUN=1")
    assert dry.returncode == 0, dry.stderr
    assert "'--include=*.csv' '--include=*.md' '--exclude=*'" in dry.stdout
    assert f"geohpc-loopback:{scratch}/outputs/validate/" in dry.stdout


def test_local_site_without_remote_copies_here(tmp_path: Path) -> None:
    model = tmp_path / "m.pt"
    model.write_bytes(b"w")
    proc = geohpc("push", "--file", str(model), remote="", MODELS_DIR=str(tmp_path / "models"))
    assert proc.returncode == 0, proc.stderr
    assert "this machine" in proc.stdout and (tmp_path / "models" / "m.pt").read_bytes() == b"w"
