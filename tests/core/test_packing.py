"""Packing without Slurm: stride packs, the packed spec's resources, and a packed run on the local executor
(items recorded one by one, a memory share enforced, status / logs / resubmit per item)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from geohpc.core.jobspec import render
from geohpc.core.packing import pack_params, pack_spec, plan_packs, read_item_records, with_item_overrides
from geohpc.core.site import load_site
from geohpc.core.stages import get_stage
from geohpc.errors import ConfigError
from helpers import REPO, RUNS_DIR, make


def test_packs_split_by_stride() -> None:
    lines = list(range(10))
    assert plan_packs(lines, 4) == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert plan_packs([5, 9], 50) == [[5, 9]] and plan_packs([], 3) == []
    assert pack_params({}) is None and pack_params({"PACK": "50", "WORKERS": "2"}) == (50, 2)
    assert pack_params({"PACK": "3", "WORKERS": "8"}) == (3, 3)  # never more workers than items
    for bad in ({"PACK": "0"}, {"PACK": "x"}, {"WORKERS": "2"}):
        with pytest.raises(ConfigError):
            pack_params(bad)
    # a stage with its own process pool (Sure2's WORKERS) takes WORKERS alone as its pool size
    assert pack_params({"WORKERS": "2"}, own=get_stage("planting").defaults) is None
    with pytest.raises(ConfigError):
        pack_params({"WORKERS": "2"}, own=get_stage("noop").defaults)


def _spec(tmp_path: Path, **cli: str):  # type: ignore[no-untyped-def]
    site = load_site("local", cli={"CPUS_PER_NODE": "16", "MEM_PER_NODE": "4G", **cli}, env={})
    stage = get_stage("noop")
    params = {k: v for k, v in cli.items() if not k.startswith("PART_")}
    spec = render(site, stage, Path.cwd(), tmp_path, params, tmp_path, tmp_path)
    pack, workers = pack_params(params) or (1, 1)
    return pack_spec(spec, site, params, pack, workers)


def test_packed_spec_asks_for_w_items_and_n_over_w_rounds(tmp_path: Path) -> None:
    spec = _spec(tmp_path, PACK="50", WORKERS="4")
    res = spec.resources
    # noop asks 1 CPU, 256M, 5 min an item: 4 at once, 13 rounds
    assert res.cpus == 4 and res.mem_bytes == 1 << 30 and res.time_s == 13 * 300 + 60
    assert spec.script.endswith("jobs/pack.sbatch") and spec.env["GEOHPC_PACK_SCRIPT"].endswith("jobs/noop.sbatch")
    assert spec.env["GEOHPC_ITEM_MEM"] == str(256 << 20) and spec.options["job-name"] == "noop"
    # capped at the node (4G) and at the partition's limit, each said in the notes
    big = _spec(tmp_path, PACK="100", WORKERS="20")
    assert big.resources.mem_bytes == 4 << 30 and big.resources.cpus == 16 and big.resources.time_s == 5 * 300 + 60
    assert any("capped at the node's 4096M" in n for n in big.notes)
    long = _spec(tmp_path, PACK="100", WORKERS="2", PART_SMALL="maxtime:01:00:00")
    assert long.resources.time_s == 3600  # 50 rounds of 5 min, over the partition's hour
    assert any("capped at partition small's limit 01:00:00" in n for n in long.notes)
    # MEM= is the task's, shared by the workers; ITEM_MEM= an item's share
    shared = _spec(tmp_path, PACK="10", WORKERS="2", MEM="3G")
    assert shared.resources.mem_bytes == 3 << 30 and shared.env["GEOHPC_ITEM_MEM"] == str(3 << 29)
    raised, changed = with_item_overrides(spec, {"ITEM_MEM": "1G", "ITEM_TIME": "00:20:00"})
    assert raised.env["GEOHPC_ITEM_MEM"] == str(1 << 30) and raised.resources.mem_bytes == 4 << 30
    assert raised.resources.time_s == 13 * 1200 + 60 and len(changed) == 2


def _local(*args: str) -> object:
    return make(*args, "SITE=local", "EXECUTOR=local", "FORCE=1")


def test_packed_run_on_the_local_executor_records_and_retries_per_item(tmp_path: Path) -> None:
    items = tmp_path / "items.txt"
    names = ["ok-a", "fail-b", "mem500-c", "ok-d", "blocked/e"]
    items.write_text("\n".join(names) + "\n")
    (tmp_path / "blocked").write_text("a file where a folder should be")
    proc = _local("submit", "STAGE=noop", f"ITEMS={items}", "PACK=3", "WORKERS=2", f"OUT_DIR={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert "5 item(s) in 2 array task(s) of up to 3, 2 at once" in proc.stdout
    run = sorted((RUNS_DIR / "noop").iterdir(), key=lambda p: p.stat().st_mtime)[-1]
    recs = {line: r for per in read_item_records(run).values() for line, r in per.items()}
    assert sorted(recs) == [0, 1, 2, 3, 4]
    assert [recs[i]["state"] for i in range(5)] == ["COMPLETED", "FAILED", "OUT_OF_MEMORY", "COMPLETED", "FAILED"]
    assert recs[2]["max_rss"] > 256 << 20 and recs[2]["rc"] < 0  # killed past its 256M share, measured
    assert "fail-b fails on purpose" in Path(recs[1]["log"]).read_text()
    # the items source the run's job.env with the runner's own interpreter as launcher (no container in a container)
    item_envs = sorted((run / "packs").glob("*.env"))
    assert len(item_envs) == 2 and all(e.stat().st_mode & 0o777 == 0o600 for e in item_envs)
    text = item_envs[0].read_text()
    assert text.startswith(f"source {run / 'job.env'}\n") and "GEOHPC_LAUNCH=/" in text  # no copy of job.env's values
    status = make("status", "STAGE=noop")
    assert "2/5" in status.stdout and "failed=2" in status.stdout and "oom=1" in status.stdout, status.stdout
    assert "packed: 2 task(s)" in status.stdout
    assert "ITEM_MEM=" in status.stdout  # the hint names the per-item knob
    logs = make("logs", "STAGE=noop")
    assert "3 failed item(s)" in logs.stdout and "fails on purpose" in logs.stdout, logs.stdout
    one = make("logs", "STAGE=noop", "ITEM=ok-a")
    assert "== ok-a (line 1, completed" in one.stdout and "failed" not in one.stdout.split("\n")[0]
    assert make("logs", "STAGE=noop", "ITEM=nope").returncode == 2
    (tmp_path / "blocked").unlink()
    again = _local("resubmit", "STAGE=noop", "ITEM_MEM=1G")
    assert again.returncode == 0, again.stderr
    assert "resubmitting 3 item(s)" in again.stdout and "in 1 pack(s)" in again.stdout
    assert sorted(int(x) for x in (run / "packs" / "1.txt").read_text().split()) == [1, 2, 4]
    final = make("status", "STAGE=noop")
    assert "4/5" in final.stdout and "failed=1" in final.stdout, final.stdout
    plan = json.loads((run / "plan.json").read_text())
    assert [a["packs"] for a in plan["attempts"]] == ["packs/0.txt", "packs/1.txt"]


def test_item_time_limit_kills_only_that_item(tmp_path: Path) -> None:
    items = tmp_path / "items.txt"
    items.write_text("sleep20-slow\nok-fast\n")
    proc = _local("submit", "STAGE=noop", f"ITEMS={items}", "PACK=2", "WORKERS=2", "ITEM_TIME=00:00:02",
                  f"OUT_DIR={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    run = sorted((RUNS_DIR / "noop").iterdir(), key=lambda p: p.stat().st_mtime)[-1]
    recs = {line: r for per in read_item_records(run).values() for line, r in per.items()}
    assert recs[0]["state"] == "TIMEOUT" and 2 <= recs[0]["elapsed_s"] < 10
    assert recs[1]["state"] == "COMPLETED" and (tmp_path / "ok-fast.done").is_file()
    assert "timeout=1" in make("status", "STAGE=noop").stdout


def _procs_with(marker: bytes) -> list[int]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker in Path(f"/proc/{pid}/environ").read_bytes():
                out.append(int(pid))
        except OSError:
            continue
    return out


def _proc_file(pid: int, name: str) -> bytes:
    """A /proc file of a process that may exit while we look: empty once it is gone."""
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    stat = _proc_file(pid, "stat")
    return bool(stat) and stat.split(b") ")[1][:1] != b"Z"


def test_a_terminated_pack_takes_its_items_with_it(tmp_path: Path) -> None:
    items = tmp_path / "items.txt"
    items.write_text("sleep60-a\nsleep60-b\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEOHPC_", "SLURM_", "MAKE"))}
    env["GEOHPC_RUNS_DIR"] = str(RUNS_DIR)
    before = set((RUNS_DIR / "noop").iterdir()) if (RUNS_DIR / "noop").is_dir() else set()
    proc = subprocess.Popen(["make", "-s", "submit", "STAGE=noop", "SITE=local", "EXECUTOR=local", "FORCE=1",
                             f"ITEMS={items}", "PACK=2", "WORKERS=2", f"OUT_DIR={tmp_path}"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    runner: list[int] = []
    items_up: list[int] = []
    while time.time() < deadline and (not runner or len(items_up) < 2):
        time.sleep(0.2)
        new = set((RUNS_DIR / "noop").iterdir()) - before if (RUNS_DIR / "noop").is_dir() else set()
        envs = [e for r in new for e in (r / "packs").glob("*.env")]
        if envs:
            key = envs[0].stem.encode()
            runner = [p for p in _procs_with(b"GEOHPC_PACKS=") if b"pack-run" in _proc_file(p, "cmdline")
                      and str(envs[0].parent).encode() in _proc_file(p, "cmdline")]
            items_up = [p for p in _procs_with(b"GEOHPC_PACK_TASK=" + key) if p not in runner]
    assert runner and items_up, "the pack runner and its items did not start"
    os.kill(runner[0], signal.SIGTERM)  # what scancel or the task's time limit sends first
    proc.wait(timeout=60)
    time.sleep(0.5)
    assert not [p for p in items_up if _alive(p)]
