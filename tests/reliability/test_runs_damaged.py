"""Damaged or half-purged run folders are named and skipped by status, submit and resubmit; two items that map
to one output are refused at plan time, however the items are given."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from geohpc.errors import InputError
from geohpc.ops import jobctl, status
from relutil import record
from runs_helpers import REPO, clean_env, submit_here

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(300)]


@pytest.fixture
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "runs"
    monkeypatch.setenv("GEOHPC_RUNS_DIR", str(d))
    return d


def _write(name: str, text: str | bytes):
    def damage(run: Path) -> None:
        (run / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    return damage


def _remove(name: str):
    return lambda run: (run / name).unlink()


DAMAGE = {
    "garbage plan.json": (_write("plan.json", "{not json"), "plan.json unreadable"),
    "plan.json a list": (_write("plan.json", "[]"), "plan.json unreadable"),
    "plan.json bad chunk": (_write("plan.json", json.dumps({"stage": "probe", "site": "local", "attempts": [
        {"executor": "local", "chunks": [{"offset": "x"}]}]})), "plan.json unreadable"),
    "plan.json binary": (_write("plan.json", b"\xff\xfe\x00garbage"), "plan.json unreadable"),
    "garbage spec.json": (_write("spec.json", '{"stage": "probe"'), "spec.json unreadable"),
    "spec.json missing keys": (_write("spec.json", "{}"), "spec.json unreadable"),
    "manifest.txt purged": (_remove("manifest.txt"), "manifest.txt missing"),
    "job.env purged": (_remove("job.env"), "job.env missing"),
    "job.env garbage": (_write("job.env", "export A='never closed\n"), "job.env unreadable"),
    "plan.json purged": (_remove("plan.json"), "no plan.json"),
    "plan.json of a stage that is gone": (_write("plan.json", json.dumps({"stage": "nosuch", "site": "local",
                                                                          "attempts": []})),
                                          "unknown stage 'nosuch' in plan.json"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_run_is_named_and_skipped(case: str, runs_dir: Path, tmp_path: Path, capsys) -> None:
    good, _ = submit_here("probe", N="2", EXECUTOR="local", OUT_DIR=str(tmp_path / "out"))
    assert good is not None
    bad = good.path.parent / "20991231-235959"  # the latest by name, so a careless reader would pick it
    shutil.copytree(good.path, bad)
    damage, what = DAMAGE[case]
    damage(bad)
    line = f"runs/probe/{bad.name}: damaged ({what}); skipped"

    rc = status.main(["--all"])
    got = capsys.readouterr()
    ok_status = rc == 0 and line in got.out and f"probe  {good.path.name}" in got.out and "Traceback" not in got.err
    _, printed = submit_here("probe", N="2", EXECUTOR="local", OUT_DIR=str(tmp_path / "out"), DRY_RUN="1")
    ok_submit = line in printed and "nothing to submit" in printed
    rc_latest = jobctl.main(["resubmit", "--stage", "probe"])
    latest = capsys.readouterr()
    ok_latest = rc_latest == 0 and line in latest.out and f"{good.path.name}: nothing to resubmit" in latest.out
    rc_named = jobctl.main(["resubmit", "--stage", "probe", "--run", bad.name])
    named = capsys.readouterr()
    err = named.err.strip().splitlines()
    ok_named = rc_named == 2 and len(err) == 1 and f"runs/probe/{bad.name}: damaged ({what})" in err[0]
    for command, ok in (("status", ok_status), ("submit", ok_submit), ("resubmit", ok_latest),
                        ("resubmit RUN=", ok_named)):
        record("bad_input", command, f"damaged run: {case}", ok)
    assert ok_status, got
    assert ok_submit, printed
    assert ok_latest, latest
    assert ok_named, named


def test_a_damaged_local_task_state_counts_as_missing(runs_dir: Path, tmp_path: Path, capsys) -> None:
    run, _ = submit_here("probe", ITEMS=str(_items(tmp_path, "s0", "s1")), EXECUTOR="local",
                         OUT_DIR=str(tmp_path / "out"))
    assert run is not None
    (tmp_path / "out" / "s1.json").unlink()  # its output is gone too, so the task state decides
    next((run.path / "local").glob("*_1.json")).write_text("{half a state")
    rc = status.main([])
    got = capsys.readouterr()
    ok = rc == 0 and "1/2" in got.out and "missing=1" in got.out and "Traceback" not in got.err
    record("bad_input", "status", "damaged local task state file", ok)
    assert ok, got


def _items(tmp_path: Path, *names: str) -> Path:
    path = tmp_path / "items.txt"
    path.write_text("".join(f"{n}\n" for n in names))
    return path


def _refused(stage: str, needle: list[str], runs_dir: Path, out_dir: Path, case: str, **cli: str) -> None:
    with pytest.raises(InputError) as exc:
        submit_here(stage, OUT_DIR=str(out_dir), **cli)
    msg = str(exc.value)
    ok = all(n in msg for n in needle) and not out_dir.exists() and not list(runs_dir.glob("*/*"))
    record("bad_input", "submit", case, ok)
    assert ok, msg


@pytest.mark.parametrize("dry", ["1", ""])
def test_two_items_one_output_refused_for_an_items_file(dry: str, runs_dir: Path, tmp_path: Path) -> None:
    items = tmp_path / "items.txt"
    items.write_text(f"{tmp_path}/a/x.tif\n{tmp_path}/b/x.tif\n")
    out = tmp_path / "cogs"
    _refused("cog", [f"{tmp_path}/a/x.tif", f"{tmp_path}/b/x.tif", f"{out}/x.tif"], runs_dir, out,
             f"cog ITEMS= two files one stem (DRY_RUN={dry or 0})", ITEMS=str(items), DRY_RUN=dry)


def test_two_items_one_output_refused_for_a_comma_list_and_a_glob(runs_dir: Path, tmp_path: Path) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "x.tif").write_bytes(b"")
    out = tmp_path / "maps"
    both = [f"{tmp_path}/a/x.tif", f"{tmp_path}/b/x.tif", f"{out}/x.tif"]
    _refused("classify", both, runs_dir, out, "classify RASTERS= comma list, one stem",
             RASTERS=f"{tmp_path}/a/x.tif,{tmp_path}/b/x.tif", MODEL="m", SHARDS="1", DRY_RUN="1")
    _refused("classify", both, runs_dir, out, "classify RASTERS= glob, one stem",
             RASTERS=f"{tmp_path}/*/x.tif", MODEL="m", SHARDS="1", DRY_RUN="1")


def test_an_item_listed_twice_is_refused_and_distinct_items_pass(runs_dir: Path, tmp_path: Path) -> None:
    items = tmp_path / "items.txt"
    items.write_text("p1\np2\np1\n")
    _refused("probe", ["item p1 is listed twice", "p1.json"], runs_dir, tmp_path / "o", "probe ITEMS= one item twice",
             ITEMS=str(items), DRY_RUN="1")
    items.write_text("p1\np2\n")
    _, printed = submit_here("probe", ITEMS=str(items), OUT_DIR=str(tmp_path / "o"), DRY_RUN="1")
    assert "2 in manifest" in printed
    _, printed = submit_here("train", SAMPLES="s.parquet", TASKS="3", OUT_DIR=str(tmp_path / "t"), DRY_RUN="1")
    assert "3 in manifest" in printed  # the tuning tasks share model.cbm by design


def test_make_submit_gives_one_line(runs_dir: Path, tmp_path: Path) -> None:
    items = tmp_path / "items.txt"
    items.write_text(f"{tmp_path}/a/x.tif\n{tmp_path}/b/x.tif\n")
    env = {**clean_env(), "GEOHPC_RUNS_DIR": str(runs_dir)}
    proc = subprocess.run(["make", "-s", "submit", "STAGE=cog", "SITE=local", f"ITEMS={items}", "DRY_RUN=1",
                           f"OUT_DIR={tmp_path}/cogs"], cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
    err = [e for e in proc.stderr.strip().splitlines() if not e.startswith("make: ***")]  # make's own line
    ok = proc.returncode == 2 and len(err) == 1 and "would both write" in err[0] and "DRY_RUN" not in proc.stdout
    record("bad_input", "submit", "make submit ITEMS= two items one output: one line, exit 2", ok)
    assert ok, (proc.returncode, proc.stdout, proc.stderr)
