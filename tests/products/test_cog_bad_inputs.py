"""geohpc.cog bad inputs: one stderr line naming the file and a fix, exit 2, nothing left behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from testutil import REPO, write_raster


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "py"))
    return subprocess.run([sys.executable, "-m", "geohpc", "cog", *args], capture_output=True, text=True, env=env, timeout=120)


def assert_refused(src: Path, out_dir: Path, *words: str) -> None:
    out_dir.mkdir(exist_ok=True)
    before = sorted(out_dir.iterdir())
    r = run_cli(str(src), str(out_dir / "cog.tif"), "--blocksize", "64")
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if not ln.startswith(("[progress]", "[cog]"))]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("geohpc.cog: error: ")
    for w in words:
        assert w in lines[0], lines[0]
    assert r.stdout == ""
    assert sorted(out_dir.iterdir()) == before  # no partial output, no temp files


def test_corrupt_tiff(tmp_path: Path) -> None:
    good = write_raster(tmp_path / "good.tif", np.ones((3, 200, 200), "uint16"), compress="deflate")
    bad = tmp_path / "corrupt.tif"
    raw = good.read_bytes()
    bad.write_bytes(raw[: len(raw) // 2])  # directory survives, the data is cut off
    assert_refused(bad, tmp_path / "out", str(bad), "corrupt or truncated")
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II*\x00garbage" * 10)
    assert_refused(junk, tmp_path / "out", str(junk), "re-download or re-create")


def test_rotated_geotransform(tmp_path: Path) -> None:
    src = write_raster(tmp_path / "rot.tif", np.ones((1, 50, 50), "uint8"),
                       transform=Affine(10, 2, 500000, 2, -10, 5000000))
    assert_refused(src, tmp_path / "out", str(src), "rotated", "warp")


def test_no_crs(tmp_path: Path) -> None:
    src = write_raster(tmp_path / "nocrs.tif", np.ones((1, 50, 50), "uint8"), crs=None)
    assert_refused(src, tmp_path / "out", str(src), "no CRS", "assign one")


def test_all_nodata(tmp_path: Path) -> None:
    src = write_raster(tmp_path / "empty.tif", np.zeros((2, 80, 70), "float32"), nodata=0)
    assert_refused(src, tmp_path / "out", str(src), "nodata")
    nan = write_raster(tmp_path / "nan.tif", np.full((1, 30, 30), np.nan, "float32"))
    assert_refused(nan, tmp_path / "out", str(nan), "nodata")


def test_missing_path(tmp_path: Path) -> None:
    assert_refused(tmp_path / "nope.tif", tmp_path / "out", str(tmp_path / "nope.tif"), "no such file")


def test_read_only_output_folder(tmp_path: Path) -> None:
    src = write_raster(tmp_path / "ok.tif", np.ones((1, 50, 50), "uint8"))
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:  # root ignores mode bits: make the folder immutable instead
        if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(ro)], capture_output=True).returncode:
            pytest.skip("running as root without chattr +i: cannot make a read-only folder")
    else:
        ro.chmod(0o555)
    try:
        assert_refused(src, ro, str(ro))
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(ro)], check=False)
        ro.chmod(0o755)


def test_leftovers_of_a_killed_build_are_removed(tmp_path: Path) -> None:
    src = write_raster(tmp_path / "ok.tif", np.ones((1, 50, 50), "uint8"))
    out = tmp_path / "out"
    out.mkdir()
    stale = [out / ".cog.tif.12345.tiled.tif", out / ".cog.tif.abc123.tmp.tif"]
    for p in stale:
        p.write_bytes(b"x" * 1000)
    keep = out / ".other.tif.1.tiled.tif"  # another output's temporaries are not ours to touch
    keep.write_bytes(b"y")
    r = run_cli(str(src), str(out / "cog.tif"), "--blocksize", "64")
    assert r.returncode == 0, r.stderr
    assert not any(p.exists() for p in stale) and keep.exists()
    assert "interrupted earlier build" in r.stderr
