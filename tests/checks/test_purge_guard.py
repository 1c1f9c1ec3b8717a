"""purge_guard: at-risk files by the NRIS age rule, grouped by folder; rescue with rsync + verify;
access times are never touched."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from geohpc.preflight.purge_guard import age_days, group_by_folder, main, purge_days_for, rescue, scan

DAY = 86400


def _file(path: Path, size: int, atime: float, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    os.utime(path, (atime, mtime))
    return path


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, float]:
    """A scratch tree seen 40 days from now: ctime is today, so untouched files are 40 days old."""
    now = time.time() + 40 * DAY
    root = tmp_path / "scratch"
    _file(root / "outputs/cog/a.tif", 3000, now - 50 * DAY, now - 50 * DAY)   # age 40 (ctime wins)
    _file(root / "outputs/cog/b.tif", 2000, now - 50 * DAY, now - 50 * DAY)
    _file(root / "outputs/tiles/z/1.png", 100, now - 60 * DAY, now - 60 * DAY)
    _file(root / "data/recent.tif", 500, now - 2 * DAY, now - 30 * DAY)       # read 2 days ago: age 2
    _file(root / "data/edge.tif", 10, now - 60 * DAY, now - 16 * DAY)         # modified 16 days ago
    return root, now


def test_age_is_newest_of_ctime_mtime_atime(tree) -> None:
    root, now = tree
    assert round(age_days(os.lstat(root / "data/recent.tif"), now)) == 2
    assert round(age_days(os.lstat(root / "data/edge.tif"), now)) == 16
    assert round(age_days(os.lstat(root / "outputs/cog/a.tif"), now)) == 40


def test_scan_and_group(tree) -> None:
    root, now = tree
    risky = scan([root], purge_days=21, margin_days=7, now=now)
    assert sorted(f.path.name for f in risky) == ["1.png", "a.tif", "b.tif", "edge.tif"]
    groups = group_by_folder(risky)
    cog = groups[root / "outputs/cog"]
    assert cog[0] == 2 and cog[1] == 5000 and round(cog[2]) == -19
    assert round(groups[root / "data"][2]) == 5  # 21 - 16 days
    assert list(groups)[-1] == root / "data"  # sorted by fewest days left first
    assert scan([root], purge_days=90, margin_days=7, now=now) == []


def test_flash_uses_its_own_purge_age() -> None:
    site = {"PURGE_DAYS": "90", "FLASH_PURGE_DAYS": "30"}
    assert purge_days_for(Path("/flash/project_1/x"), site) == 30
    assert purge_days_for(Path("/scratch/project_1/x"), site) == 90
    assert purge_days_for(Path("/x"), {"PURGE_DAYS": "0"}) is None


def test_rescue_copies_verifies_and_keeps_atimes(tree, tmp_path) -> None:
    root, now = tree
    risky = scan([root], 21, 7, now)
    before = {f.path: os.lstat(f.path).st_atime_ns for f in risky}
    dest = tmp_path / "project/rescue"
    assert rescue(risky, root, dest) == 4
    for f in risky:  # atimes first: the byte comparison below reads the sources itself
        assert os.lstat(f.path).st_atime_ns == before[f.path], f"atime of {f.path} changed"
    for f in risky:
        assert (dest / f.path.relative_to(root)).read_bytes() == f.path.read_bytes()
    assert not (dest / "data/recent.tif").exists()  # not at risk, not copied
    assert rescue(risky, root, dest) == 4  # idempotent, no --delete


def test_rescue_detects_a_corrupted_copy(tree, tmp_path, monkeypatch) -> None:
    root, now = tree
    risky = scan([root], 21, 7, now)
    import subprocess

    real = subprocess.run

    def corrupting(cmd, **kw):  # the copy works, then something damages one file before the verify
        out = real(cmd, **kw)
        if "--checksum" not in cmd:
            target = tmp_path / "dest/outputs/cog/a.tif"
            target.write_bytes(b"y" * 3000)
            os.utime(target, (now, now))
        return out

    monkeypatch.setattr(subprocess, "run", corrupting)
    with pytest.raises(Exception, match="verify"):
        rescue(risky, root, tmp_path / "dest")


def test_cli_list_json_and_rescue(tree, tmp_path, capsys) -> None:
    root, _ = tree
    site = tmp_path / "saga.env"
    site.write_text(f"SITE_NAME=saga\nSCRATCH={root}\nPROJECT_DIR={tmp_path / 'project'}\nPURGE_DAYS=21\n")
    # the CLI uses the real clock: files whose atime/mtime are in the past age from their ctime (today),
    # so nothing is at risk yet with a 21-day purge...
    assert main(["--site", str(site), "--json", "list"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    # ...but a 7-day margin on a 5-day purge puts every file at risk
    site.write_text(site.read_text().replace("PURGE_DAYS=21", "PURGE_DAYS=5"))
    assert main(["--site", str(site), "list"]) == 0
    captured = capsys.readouterr()
    assert "outputs/cog" in captured.out and "3 files" in captured.err  # data/ was read "in the future"
    assert main(["--site", str(site), "rescue"]) == 0
    assert (tmp_path / "project/rescue/outputs/tiles/z/1.png").is_file()
    assert "rescued and verified 3 files" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync not installed")
def test_cli_no_purge_site(tmp_path, capsys) -> None:
    site = tmp_path / "local.env"
    site.write_text(f"SITE_NAME=local\nSCRATCH={tmp_path}\nPURGE_DAYS=0\n")
    assert main(["--site", str(site)]) == 0
    assert "nothing is purged" in capsys.readouterr().err


# ------------------------------------------------------------------ rescue target (never under PROJECT_SPACE)
def _site(tmp_path: Path, root: Path, **values: str) -> Path:
    site = tmp_path / "saga.env"
    lines = ["SITE_NAME=saga", f"SCRATCH={root}", "PURGE_DAYS=5", *(f"{k}={v}" for k, v in values.items())]
    site.write_text("\n".join(lines) + "\n")
    return site


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_rescue_goes_to_rescue_dir(tree, tmp_path, capsys) -> None:
    root, _ = tree
    space = tmp_path / "cluster" / "projects"
    site = _site(tmp_path, root, RESCUE_DIR=str(tmp_path / "safe" / "rescue"), PROJECT_DIR=str(space / "nn1"),
                 PROJECT_SPACE=str(space))
    assert main(["--site", str(site), "rescue"]) == 0
    assert (tmp_path / "safe" / "rescue" / "outputs" / "tiles" / "z" / "1.png").is_file()
    assert _files(space) == []
    assert f"into {tmp_path / 'safe' / 'rescue'}" in capsys.readouterr().err


def test_project_dir_fallback_only_outside_project_space(tree, tmp_path, capsys) -> None:
    root, _ = tree
    site = _site(tmp_path, root, PROJECT_DIR=str(tmp_path / "home-project"), PROJECT_SPACE=str(tmp_path / "cluster"))
    assert main(["--site", str(site), "rescue"]) == 0
    assert (tmp_path / "home-project" / "rescue" / "outputs" / "cog" / "a.tif").is_file()


def test_no_safe_target_is_one_line_suggesting_fetch(tree, tmp_path, capsys) -> None:
    root, _ = tree
    space = tmp_path / "cluster" / "projects"
    (space / "nn1").mkdir(parents=True)
    site = _site(tmp_path, root, PROJECT_DIR=str(space / "nn1"), PROJECT_SPACE=str(space), RESCUE_DIR="")
    capsys.readouterr()
    assert main(["--site", str(site), "rescue"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no safe rescue target" in err[0] and "make fetch SITE=" in err[0]
    assert _files(space) == [] and list(space.rglob("*")) == [space / "nn1"]  # nothing written there


def test_rescue_dir_through_a_symlink_into_project_space_is_refused(tree, tmp_path, capsys) -> None:
    root, _ = tree
    space = tmp_path / "cluster" / "projects"
    (space / "nn1").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "keep").symlink_to(space / "nn1")  # looks like work space, lands in project space
    site = _site(tmp_path, root, RESCUE_DIR=str(tmp_path / "work" / "keep" / "rescue"), PROJECT_SPACE=str(space))
    capsys.readouterr()
    assert main(["--site", str(site), "rescue"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "resolves under PROJECT_SPACE" in err[0] and "make fetch" in err[0]
    assert _files(space) == []
    assert main(["--site", str(site), "rescue", "--dest", str(tmp_path / "work" / "keep")]) == 2  # --dest too
    assert _files(space) == []


def test_make_rescue_on_nris_without_a_target_refuses(tmp_path) -> None:
    import subprocess

    from geohpc.util import REPO

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "GEOHPC_"))}
    proc = subprocess.run(["make", "-s", "rescue", "SITE=saga", "PROJECT_SPACE=/cluster/projects", "RESCUE_DIR="],
                          cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0
    assert "no safe rescue target" in proc.stderr and "make fetch SITE=saga STAGE=" in proc.stderr
