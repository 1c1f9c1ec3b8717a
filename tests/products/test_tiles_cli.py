"""geohpc.tiles command line: bad inputs give one line on stderr, exit 2 and no output left behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from geohpc.core.stages import StageContext, get_stage
from geohpc.products.tiles.cli import main
from testutil import job_values_for
from tiles_helpers import REPO, write_raster


def rgb(tmp_path: Path, name: str = "rgb.tif", **kw: object) -> Path:
    return write_raster(tmp_path / name, np.full((3, 40, 50), 120, dtype=np.uint8), **kw)


def fails(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("geohpc.tiles: error: ")
    for n in needles:
        assert n in err, err
    return err


@pytest.mark.parametrize("zoom,needle", [("0-25", "0 to 24"), ("14-3", "reversed"), ("a-b", "range like"),
                                         ("-1", "range like"), ("30", "0 to 24")])
def test_bad_zoom(tmp_path: Path, capsys: pytest.CaptureFixture[str], zoom: str, needle: str) -> None:
    out = tmp_path / "out"
    fails(capsys, [str(rgb(tmp_path)), str(out), "--zoom", zoom], needle)
    assert not out.exists()


def test_missing_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    fails(capsys, [str(tmp_path / "nope.tif"), str(out), "--zoom", "5-8"], "nope.tif", "no such file")
    assert not out.exists()


def test_corrupt_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00" + os.urandom(200))
    out = tmp_path / "out"
    fails(capsys, [str(bad), str(out), "--zoom", "5-8"], "bad.tif", "not a readable raster")
    assert not out.exists()


def test_no_crs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = rgb(tmp_path, "nocrs.tif", crs=None)
    out = tmp_path / "out"
    fails(capsys, [str(src), str(out), "--zoom", "5-8"], "nocrs.tif", "no CRS")
    assert not out.exists()


def test_rotated_geotransform(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from affine import Affine

    src = rgb(tmp_path, "rot.tif")
    import rasterio

    with rasterio.open(src, "r+") as ds:
        ds.transform = Affine(10.0, 2.0, 500000.0, 2.0, -10.0, 5000000.0)
    out = tmp_path / "out"
    fails(capsys, [str(src), str(out), "--zoom", "5-8"], "rot.tif", "rotated")
    assert not out.exists()


def test_all_nodata(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_raster(tmp_path / "empty.tif", np.zeros((30, 30), dtype=np.float32), nodata=0.0)
    out = tmp_path / "out"
    fails(capsys, [str(src), str(out), "--zoom", "5-8"], "empty.tif", "nodata")
    assert not out.exists()


def test_bad_mode_bands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    fails(capsys, [str(rgb(tmp_path)), str(out), "--bands", "1,9"], "bands 1..3")
    fails(capsys, [str(rgb(tmp_path)), str(out), "--mode", "pca", "--bands", "1,2"], "at least 3 bands")
    src = write_raster(tmp_path / "f.tif", np.ones((2, 20, 20), dtype=np.float32))
    fails(capsys, [str(src), str(out), "--mode", "rgb"], "Byte")
    assert not out.exists()


def _make_read_only(path: Path) -> bool:
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        return True
    return shutil.which("chattr") is not None and subprocess.run(["chattr", "+i", str(path)]).returncode == 0


def test_read_only_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ro"
    if not _make_read_only(out):
        pytest.skip("cannot make a read-only folder here (root without chattr)")
    try:
        fails(capsys, [str(rgb(tmp_path)), str(out), "--zoom", "5-8"], "ro", "not writable")
        assert list(out.iterdir()) == []
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(out)], check=False)
        out.chmod(0o755)


def test_module_cli_runs_and_prints_json(tmp_path: Path) -> None:
    src = rgb(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO / "py"))
    help_ = subprocess.run([sys.executable, "-m", "geohpc", "tiles", "--help"], capture_output=True, text=True, env=env)
    assert help_.returncode == 0 and "--shard" in help_.stdout and "--pmtiles" in help_.stdout
    run = subprocess.run([sys.executable, "-m", "geohpc", "tiles", str(src), str(tmp_path / "t"), "--zoom", "13-15",
                          "--processes", "1", "--pmtiles"], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["tiles"] == summary["written"] + summary["lower_written"] > 0
    assert Path(summary["pmtiles"]).is_file() and Path(summary["viewer"]).is_file()


def test_plan_manifest_and_done(tmp_path: Path) -> None:
    stage = get_stage("tiles")
    src = rgb(tmp_path)
    ctx = StageContext("tiles", {}, {"SRC": str(src), "SHARDS": "2", "ZOOM": "12-14"}, REPO, tmp_path)
    items = stage.build_manifest(ctx)
    assert items == ["0/2", "1/2"]
    assert stage.output_for("1/2", ctx) == tmp_path / "outputs/tiles/rgb/.shards/1-of-2.done"
    assert stage.output_bytes is not None and stage.output_bytes("0/2", ctx) == src.stat().st_size
    from geohpc.plans.tiles import memory_bytes

    assert 1 << 30 < memory_bytes("0/2", ctx) < 4 << 30
    assert not stage.done("0/2", ctx)
    out = tmp_path / "outputs/tiles/rgb"
    assert main([str(src), str(out), "--zoom", "12-14", "--shard", "0/2", "--processes", "1"]) == 0
    assert stage.done("0/2", ctx) and not stage.done("1/2", ctx)
    (out / ".shards/1-of-2.done").write_text("{}")  # every shard done but never finalized
    assert not stage.done("0/2", ctx)  # -> a resubmit reruns them and one finalizes
    assert main([str(src), str(out), "--zoom", "12-14", "--shard", "1/2", "--processes", "1"]) == 0
    assert stage.done("0/2", ctx) and stage.done("1/2", ctx)
    with pytest.raises(Exception, match="SHARDS"):
        stage.build_manifest(StageContext("tiles", {}, {"SRC": str(src), "SHARDS": "0"}, REPO, tmp_path))


def test_job_script_runs_each_shard_and_the_last_finalizes(tmp_path: Path) -> None:
    rgb(tmp_path)  # SRC=rgb.tif, relative to GEOHPC_WORK
    manifest = tmp_path / "manifest"
    manifest.write_text("0/2\n1/2\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEOHPC_", "SLURM_"))}
    env.update(GEOHPC_REPO=str(REPO), GEOHPC_STAGE="tiles", GEOHPC_LAUNCH=sys.executable, GEOHPC_MANIFEST=str(manifest),
               GEOHPC_OUT=str(tmp_path / "outputs/tiles"), GEOHPC_WORK=str(tmp_path), SRC="rgb.tif", ZOOM="10-14",
               SLURM_CPUS_PER_TASK="1", PMTILES="yes")
    env.update(job_values_for("tiles", tmp_path, SRC="rgb.tif", ZOOM="10-14", PMTILES="yes"))  # as make submit does
    logs = []
    for task in ("1", "0"):
        run = subprocess.run(["bash", str(REPO / "jobs/tiles.sbatch")], env=dict(env, SLURM_ARRAY_TASK_ID=task),
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        logs.append(run.stdout + run.stderr)  # the command line is logged by python on stderr
    out = tmp_path / "outputs/tiles/rgb"
    assert "--shard 1/2" in logs[0] and "waiting for shards [0]" in logs[0]
    assert (out / ".shards/finalized").is_file() and (out / "rgb.pmtiles").is_file() and (out / "index.html").is_file()
    bad = subprocess.run(["bash", str(REPO / "jobs/tiles.sbatch")], env=dict(env, SLURM_ARRAY_TASK_ID="5"),
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "line 6" in bad.stderr


def test_make_submit_dry_run_renders_the_tiles_array() -> None:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    proc = subprocess.run(["make", "-s", "submit", "STAGE=tiles", "SITE=lumi", "DRY_RUN=1", "SHARDS=3", "ZOOM=0-16",
                           "SRC=/scratch/project_465002500/romcrop/maps/crop.tif"],
                          cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "--array=0-2" in out and "jobs/tiles.sbatch" in out and "--partition=small" in out
    assert "export SRC=/scratch/project_465002500/romcrop/maps/crop.tif" in out
    assert "export ZOOM=0-16" in out
    assert "export GEOHPC_OUT=/scratch/project_465002500/romcrop/outputs/tiles" in out
    missing = subprocess.run(["make", "-s", "submit", "STAGE=tiles", "SITE=lumi", "DRY_RUN=1"],
                             cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
    assert missing.returncode != 0 and "SRC=<path>" in missing.stderr


def test_make_submit_local_executor_builds_everything(tmp_path: Path) -> None:
    if not (REPO / ".venv/bin/python").exists():
        pytest.skip("SITE=local runs jobs with the repo's .venv (make setup)")
    src = rgb(tmp_path)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    proc = subprocess.run(["make", "-s", "submit", "STAGE=tiles", "SITE=local", "EXECUTOR=local", f"SRC={src}",
                           "SHARDS=2", "ZOOM=9-14", f"OUT_DIR={tmp_path / 'out'}"],
                          cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (proc.stdout + proc.stderr).count("COMPLETED") == 2
    out = tmp_path / "out/rgb"
    assert (out / ".shards/finalized").is_file() and (out / "rgb.pmtiles").is_file()
    again = subprocess.run(["make", "-s", "submit", "STAGE=tiles", "SITE=local", "EXECUTOR=local", f"SRC={src}",
                            "SHARDS=2", "ZOOM=9-14", f"OUT_DIR={tmp_path / 'out'}"],
                           cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and "0 to run" in again.stdout  # every shard done and finalized


@pytest.mark.parametrize("args,needle", [(["--bands", "x"], "--bands"), (["--shard", "3/2"], "--shard"),
                                         (["--percentiles", "90,10"], "--percentiles"), (["--mem", "lots"], "--mem"),
                                         (["--processes", "0"], "--processes")])
def test_bad_options_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str) -> None:
    fails(capsys, [str(rgb(tmp_path)), str(tmp_path / "out"), *args], needle)
    assert not (tmp_path / "out").exists()
