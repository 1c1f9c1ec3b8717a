"""env_override, proj_mismatch, glibc, container and token_expiry checks."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from geohpc.preflight.context import Resources
from geohpc.preflight.glibc import glibc_needs, scan_tree

DEBIAN_PROJ = Path("/usr/share/proj")


# ------------------------------------------------------------------------------------------ env_override
def test_env_override_ok_fail_warn(make_ctx, run_check, tmp_path) -> None:
    assert run_check("env_override", make_ctx()).status == "ok"
    site = {"SCRATCH": str(tmp_path / "scratch")}
    res = run_check("env_override", make_ctx(site=site, env={"SCRATCH": "/old/scratch"}))
    assert res.status == "fail"
    assert "/old/scratch" in res.message and str(tmp_path / "scratch") in res.message and "unset SCRATCH" in res.fix
    # the same value given on the make line is deliberate
    res = run_check("env_override", make_ctx(site=site, env={"SCRATCH": "/old/scratch"},
                                             make_line={"SCRATCH": "/old/scratch"}))
    assert res.status == "ok"
    res = run_check("env_override", make_ctx(site={"VENV": "/proj/venv"},
                                             env={"PYBIN_PREPROC": "/home/me/old/bin/python3"}))
    assert res.status == "fail" and "/proj/venv/bin/python3" in res.message
    same = make_ctx(site={"VENV": ".venv"}, env={"VENV": str(make_ctx().repo / ".venv"),
                                                 "PYBIN_PREPROC": str(make_ctx().repo / ".venv/bin/python")})
    assert run_check("env_override", same).status == "ok"
    res = run_check("env_override", make_ctx(env={"GDAL_DATA": "/usr/share/gdal"}))
    assert res.status == "warn" and "GDAL_DATA='/usr/share/gdal'" in res.message


# ------------------------------------------------------------------------------------------ proj_mismatch
def fake_proj_db(folder: Path, major: int, minor: int, version: str = "9.0.0") -> Path:
    """A proj.db with only the metadata table PROJ checks at open (a real SQLite file)."""
    folder.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(folder / "proj.db")
    con.execute("CREATE TABLE metadata (key TEXT, value TEXT)")
    con.executemany("INSERT INTO metadata VALUES (?, ?)", [
        ("DATABASE.LAYOUT.VERSION.MAJOR", str(major)), ("DATABASE.LAYOUT.VERSION.MINOR", str(minor)),
        ("PROJ.VERSION", version)])
    con.commit()
    con.close()
    return folder


def test_proj_ok_when_unset_or_bundled(make_ctx, run_check) -> None:
    from rasterio.env import PROJDataFinder

    assert run_check("proj_mismatch", make_ctx()).status == "ok"
    res = run_check("proj_mismatch", make_ctx(env={"PROJ_DATA": PROJDataFinder().search_wheel()}))
    assert res.status == "ok" and "matches" in res.message


def test_proj_fail_on_older_layout_and_warn_on_newer(make_ctx, run_check, tmp_path) -> None:
    old = fake_proj_db(tmp_path / "old", 1, 2, "9.1.1")
    res = run_check("proj_mismatch", make_ctx(env={"PROJ_LIB": str(old)}))
    assert res.status == "fail" and "layout 1.2" in res.message and "DATABASE.LAYOUT.VERSION.MINOR" in res.message
    assert "unset PROJ_LIB" in res.fix
    new = fake_proj_db(tmp_path / "new", 1, 99, "99.0")
    res = run_check("proj_mismatch", make_ctx(env={"PROJ_DATA": str(new)}))
    assert res.status == "warn" and "PROJ 99.0" in res.message


def test_proj_probe_env_is_checked_too(make_ctx, run_check, tmp_path) -> None:
    old = fake_proj_db(tmp_path / "container-proj", 1, 0)
    res = run_check("proj_mismatch", make_ctx(probe={"env": {"PROJ_DATA": str(old)}}))
    assert res.status == "fail"


@pytest.mark.skipif(not (DEBIAN_PROJ / "proj.db").is_file(), reason="apt-get install proj-data")
def test_proj_debian_db_fails_and_rasterio_really_breaks(make_ctx, run_check, tmp_path) -> None:
    res = run_check("proj_mismatch", make_ctx(env={"PROJ_DATA": str(DEBIAN_PROJ)}))
    assert res.status == "fail" and "PROJ 9.1.1" in res.message
    code = "from rasterio.crs import CRS; CRS.from_epsg(32635)"
    run = subprocess.run([sys.executable, "-c", code], env={"PROJ_DATA": str(DEBIAN_PROJ), "PATH": "/usr/bin"},
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode != 0 and "It comes from another PROJ installation" in run.stderr


# ------------------------------------------------------------------------------------------ glibc
@pytest.fixture(scope="module")
def fake_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[int, int]]:
    """A venv-shaped folder holding copies of the real compiled file with the newest GLIBC need."""
    needs = scan_tree([Path(sys.prefix) / "lib"], limit=400)
    assert needs, "the test venv has no compiled files?"
    path, top = max(needs.items(), key=lambda kv: kv[1])
    venv = tmp_path_factory.mktemp("venv")
    dest = venv / "lib/python3/site-packages/pkg"
    dest.mkdir(parents=True)
    shutil.copy(path, dest / path.name)
    return venv, top


def test_elf_reader_agrees_with_objdump() -> None:
    objdump = shutil.which("objdump")
    lib = Path(sys.executable).resolve()
    if objdump is None:
        pytest.skip("objdump not installed")
    out = subprocess.run([objdump, "-T", str(lib)], capture_output=True, text=True).stdout
    import re

    want = {tuple(int(x) for x in m.split(".")[:2]) for m in re.findall(r"GLIBC_(\d+\.\d+(?:\.\d+)?)", out)}
    assert glibc_needs(lib) == want and want


def test_glibc_ok_fail_warn(make_ctx, run_check, fake_venv) -> None:
    venv, top = fake_venv
    ok = run_check("glibc", make_ctx(site={"VENV": str(venv), "SITE_NAME": "saga"},
                                     probe={"glibc": f"{top[0]}.{top[1] + 1}"}))
    assert ok.status == "ok" and f"GLIBC_{top[0]}.{top[1]}" in ok.message
    res = run_check("glibc", make_ctx(site={"VENV": str(venv), "SITE_NAME": "saga"}, probe={"glibc": "2.17"}))
    assert res.status == "fail" and f"needs GLIBC_{top[0]}.{top[1]}" in res.message and "2.17" in res.message
    res = run_check("glibc", make_ctx(site={"VENV": str(venv), "SITE_NAME": "saga"}))
    assert res.status == "warn" and "STAGE=probe" in res.fix


# ------------------------------------------------------------------------------------------ container
LUMI = {"SITE_NAME": "lumi", "GPU_VENDOR": "rocm", "CONTAINER_RUNTIME": "singularity",
        "PYTORCH_SIF": "/appl/local/containers/pytorch.sif", "SCRATCH": "/scratch/project_465002500/romcrop",
        "PROJECT_DIR": "/project/project_465002500", "VENV": "/projappl/project_465002500/venvs/romcrop",
        "REMOTE_DIR": "/projappl/project_465002500/geohpc"}


def test_container_ok_for_venv_stage_and_full_binds(make_ctx, run_check) -> None:
    assert run_check("container", make_ctx(site=LUMI, stage="cog", runtime="venv")).status == "ok"
    ctx = make_ctx(site=LUMI, stage="infer", runtime="container", binds=["/pfs", "/scratch", "/projappl", "/project"],
                   launch="singularity exec /appl/local/containers/pytorch.sif python3")
    assert run_check("container", ctx).status == "ok"


def test_container_fail_on_rocm_flag_and_missing_bind(make_ctx, run_check) -> None:
    ctx = make_ctx(site=LUMI, stage="infer", runtime="container", binds=["/pfs", "/scratch", "/projappl", "/project"],
                   launch="singularity exec --rocm /appl/local/containers/pytorch.sif python3")
    res = run_check("container", ctx)
    assert res.status == "fail" and "--rocm" in res.message and "drop --rocm" in res.fix
    ctx = make_ctx(site=LUMI, stage="infer", runtime="container", binds=["/scratch"])
    res = run_check("container", ctx)
    assert res.status == "fail" and "/projappl/project_465002500/geohpc" in res.message
    assert "/project/project_465002500" in res.message
    assert "add /pfs,/projappl,/project to CONTAINER_BIND" in res.fix


def test_container_follows_symlinks(make_ctx, run_check, tmp_path) -> None:
    real = tmp_path / "pfs/lustrep3/scratch"
    real.mkdir(parents=True)
    link = tmp_path / "scratchlink"
    link.symlink_to(real)
    site = dict(LUMI, SCRATCH=str(link), PROJECT_DIR="", VENV="")
    res = run_check("container", make_ctx(site=site, stage="infer", runtime="container", binds=[str(link)]))
    assert res.status == "fail" and str(real) in res.message


def test_container_warn_without_sif(make_ctx, run_check) -> None:
    site = dict(LUMI, PYTORCH_SIF="")
    res = run_check("container", make_ctx(site=site, binds=["/pfs", "/scratch", "/projappl", "/project"]))
    assert res.status == "warn" and "PYTORCH_SIF" in res.message


# ------------------------------------------------------------------------------------------ token_expiry
def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_token_expiry_ok_warn_fail_and_redaction(make_ctx, run_check, tmp_path) -> None:
    now = time.time()
    assert run_check("token_expiry", make_ctx(now=now)).status == "ok"
    secret = "sig=TOPSECRETSIGNATURE"
    url = lambda t: f"https://acct.blob.core.windows.net/c?sv=2022-11-02&se={_iso(t).replace(':', '%3A')}&sp=r&{secret}"  # noqa: E731
    res = run_check("token_expiry", make_ctx(now=now, env={"AZURE_SAS_URL": url(now + 3600)},
                                             resources=Resources(time_s=4 * 3600)))
    assert res.status == "fail" and "$AZURE_SAS_URL" in res.message and "before the job" in res.message
    assert "TOPSECRET" not in res.message + res.fix
    res = run_check("token_expiry", make_ctx(now=now, env={"SAS": url(now - 60)}))
    assert res.status == "fail" and "already expired" in res.message
    res = run_check("token_expiry", make_ctx(now=now, env={"SAS": url(now + 6 * 3600)},
                                             resources=Resources(time_s=4 * 3600)))
    assert res.status == "warn"
    assert run_check("token_expiry", make_ctx(now=now, env={"SAS": url(now + 30 * 86400)})).status == "ok"
    conf = tmp_path / "rclone.conf"
    conf.write_text(f"[blob]\ntype = azureblob\nsas_url = {url(now + 60)}\n")
    res = run_check("token_expiry", make_ctx(now=now, config_files=[conf], resources=Resources(time_s=3600)))
    assert res.status == "fail" and "rclone.conf:3" in res.message and "TOPSECRET" not in res.message


def test_proj_without_libraries_to_compare_warns(make_ctx, run_check, checks, tmp_path, monkeypatch) -> None:
    """Off-site (no probe report, no rasterio/pyproj importable) the check cannot compare: warn, not ok."""
    db = fake_proj_db(tmp_path / "p", 1, 2)
    monkeypatch.setattr(checks["proj_mismatch"].module, "bundled", lambda ctx: {})
    res = run_check("proj_mismatch", make_ctx(env={"PROJ_DATA": str(db)}))
    assert res.status == "warn" and "no rasterio/pyproj here" in res.message and "STAGE=probe" in res.fix


def test_container_lumi_needs_pfs_and_sees_rocm_in_job_scripts(make_ctx, run_check, tmp_path) -> None:
    res = run_check("container", make_ctx(site=LUMI, binds=["/scratch", "/projappl", "/project", "/flash"]))
    assert res.status == "fail" and "symlinks into /pfs" in res.message and "/pfs" in res.fix
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs/infer.sbatch").write_text(
        "#!/usr/bin/env bash\n#SBATCH --gpus-per-node=8\nsingularity exec --rocm \"$SIF\" python3 -m x  # old\n")
    res = run_check("container", make_ctx(site=LUMI, repo=tmp_path, binds=["/pfs", "/scratch", "/projappl",
                                                                             "/project"]))
    assert res.status == "fail" and "jobs/infer.sbatch:3" in res.message
