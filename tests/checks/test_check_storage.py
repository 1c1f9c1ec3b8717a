"""quota, purge and file_extensions: ok, warn and fail on real files and recorded quota outputs."""

from __future__ import annotations

import os
import time
from pathlib import Path

from geohpc.preflight.context import Resources

FIXTURES = Path(__file__).parent / "fixtures"

DAY = 86400
TB = 10**12


def test_quota_ok_with_lfs_output(make_ctx, run_check) -> None:
    ctx = make_ctx(site={"QUOTA_CMD": "lfs"}, quota_output=(FIXTURES / "lfs-quota-h-u.3.txt").read_text(),
                   output_bytes=[1 << 20] * 3, pending=3)
    res = run_check("quota", ctx)
    assert res.status == "ok", res
    assert "3.0 MiB planned" in res.message


def test_quota_fail_when_planned_output_exceeds_lumi_quota(make_ctx, run_check) -> None:
    ctx = make_ctx(site={"QUOTA_CMD": "lumi-quota", "SCRATCH": "/scratch/project_465002906/romcrop"},
                   quota_output=(FIXTURES / "lumi-workspaces.1.txt").read_text(),
                   output_bytes=[30 * TB, 30 * TB], pending=2)
    res = run_check("quota", ctx)
    assert res.status == "fail" and "does not fit" in res.message
    assert "/scratch/project_465002906" in res.message and res.fix


def test_quota_fail_already_over_from_star(make_ctx, run_check) -> None:
    ctx = make_ctx(site={"QUOTA_CMD": "lfs"}, output_bytes=[0], pending=1,
                   env={"GEOHPC_QUOTA_OUTPUT": str(FIXTURES / "lfs-quota-h-p.6.txt")})
    res = run_check("quota", ctx)
    assert res.status == "fail" and "already over" in res.message


def test_quota_command_missing_or_failing_is_crashed_not_ok(make_ctx, run_check) -> None:
    res = run_check("quota", make_ctx(site={"QUOTA_CMD": "lfs"},
                                      quota_output=(FIXTURES / "lfs-quota-error.1.txt").read_text()))
    assert res.status == "crashed" and "not on a mounted Lustre filesystem" in res.message


def test_quota_fail_on_inodes_from_dusage(make_ctx, run_check) -> None:
    ctx = make_ctx(site={"QUOTA_CMD": "dusage", "SCRATCH": "/cluster/home/****/run"},
                   quota_output=(FIXTURES / "dusage.1.txt").read_text(), output_bytes=[10] * 70_000,
                   pending=70_000)
    res = run_check("quota", ctx)
    assert res.status == "fail" and "60079 files left" in res.message


def test_quota_warn_near_the_limit(make_ctx, run_check) -> None:
    ctx = make_ctx(site={"QUOTA_CMD": "lfs"}, quota_output=(FIXTURES / "lfs-quota-h-u.5.txt").read_text(),
                   output_bytes=[1 << 20], pending=1)
    res = run_check("quota", ctx)
    assert res.status == "warn" and "90%" in res.message


def test_quota_df_fallback_fails_for_a_petabyte(make_ctx, run_check) -> None:
    res = run_check("quota", make_ctx(output_bytes=[10**16], pending=1))
    assert res.status == "fail" and "(df)" in res.message
    assert run_check("quota", make_ctx(output_bytes=[10], pending=1)).status in ("ok", "warn")


def _aged(path: Path, days_ago: float, now: float) -> Path:
    """A file whose atime/mtime lie ``days_ago`` before ``now`` (ctime is the real creation time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * 1000)
    t = now - days_ago * DAY
    os.utime(path, (t, t))
    return path


def test_purge_ok_without_purge_days(make_ctx, run_check) -> None:
    assert run_check("purge", make_ctx()).status == "ok"


def test_purge_fail_on_old_inputs_warn_on_old_outputs(make_ctx, run_check, tmp_path) -> None:
    # ctime cannot be set back, so the clock moves forward: "now" is 30 days ahead, and files that
    # must look fresh get atime/mtime close to that future now (the NRIS age is the newest of c/m/atime).
    now = time.time() + 30 * DAY
    inp, out = tmp_path / "scratch/data/in", tmp_path / "scratch/outputs/x"
    _aged(inp / "old.tif", 30, now)
    _aged(inp / "fresh.tif", 1, now)
    _aged(out / "result.tif", 1, now)
    ctx = make_ctx(site={"PURGE_DAYS": "21"}, inputs=[inp], outputs=[out], now=now,
                   resources=Resources(time_s=DAY))
    res = run_check("purge", ctx)
    assert res.status == "fail" and "1 files, 1000 B in 1 folders" in res.message
    assert "make rescue" in res.fix
    os.utime(inp / "old.tif", (now - DAY, now - DAY))
    _aged(out / "stale.tif", 18, now)
    res = run_check("purge", make_ctx(site={"PURGE_DAYS": "21"}, inputs=[inp], outputs=[out], now=now))
    assert res.status == "warn" and "1 files" in res.message and "days left" in res.message
    os.utime(out / "stale.tif", (now, now))
    assert run_check("purge", make_ctx(site={"PURGE_DAYS": "21"}, inputs=[inp], outputs=[out], now=now)).status == "ok"


def test_file_extensions_ok_fail_and_case(make_ctx, run_check, tmp_path) -> None:
    d = tmp_path / "scratch/tiles"
    d.mkdir(parents=True)
    for n in ("a.tif", "b.tif"):
        (d / n).write_bytes(b"")
    assert run_check("file_extensions", make_ctx(items=[str(d / "a.tif"), str(d / "b.tif")])).status == "ok"
    (d / "c.tiff").write_bytes(b"")
    (d / "D.TIF").write_bytes(b"")
    res = run_check("file_extensions", make_ctx(items=[str(d / "a.tif"), str(d / "c.tif"), str(d / "d.tif")]))
    assert res.status == "fail" and "2 of 3" in res.message and "c.tif -> c.tiff" in res.message


def test_file_extensions_warn_on_mixed_input_folder(make_ctx, run_check, tmp_path) -> None:
    d = tmp_path / "scratch/in"
    d.mkdir(parents=True)
    for n in ("a.tif", "b.tif", "c.tiff"):
        (d / n).write_bytes(b"")
    res = run_check("file_extensions", make_ctx(inputs=[d]))
    assert res.status == "warn" and "2 .tif, 1 .tiff" in res.message


def test_quota_command_not_installed_warns(make_ctx, run_check) -> None:
    res = run_check("quota", make_ctx(site={"QUOTA_CMD": "lumi-quota", "REMOTE": "lumi"}))
    assert res.status == "warn" and "not installed here" in res.message and "ssh lumi" in res.fix


def test_purge_warns_off_site(make_ctx, run_check) -> None:
    res = run_check("purge", make_ctx(site={"PURGE_DAYS": "21", "SCRATCH": "/cluster/work/users/nobody"}))
    assert res.status == "warn" and "not on this machine" in res.message
