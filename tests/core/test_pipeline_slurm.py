"""make run PIPELINE= on the real local Slurm: right-sized retries, MAX_JOBS waves, a planned downstream step,
make cancel PIPELINE= -- each with no command typed after make run (the planner jobs do the rest)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from geohpc.core.piperun import PipelineRun
from helpers import RUNS_DIR, make

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(600)]

STEP = """[[step]]
name = "{name}"
stage = "canary"
{extra}
[step.params]
{params}
"""


@pytest.fixture(autouse=True)
def _slurm_up() -> None:
    proc = subprocess.run(["sinfo", "-h", "-o", "%P %a"], capture_output=True, text=True)
    assert proc.returncode == 0 and "small* up" in proc.stdout, "local Slurm is not up: make slurm-up"


def _pipeline(tmp_path: Path, name: str, *steps: tuple[str, str, dict[str, str]]) -> Path:
    text = f'name = "{name}"\n[defaults]\nRETRIES = 2\n'
    for step, extra, params in steps:
        text += STEP.format(name=step, extra=extra, params="".join(f'{k} = "{v}"\n' for k, v in params.items()))
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def _run(path: Path, *args: str) -> PipelineRun:
    start = time.monotonic()
    proc = make("run", f"PIPELINE={path}", "SITE=local", *args)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - start < 30  # returns at once: the planner jobs do the rest
    folder = [ln.split("run folder ", 1)[1] for ln in proc.stdout.splitlines() if "run folder " in ln][0]
    return PipelineRun(Path(folder))


def _wait(prun: PipelineRun, timeout: float = 300) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # ended, and its last planner gone from the queue (it writes the report after the last state)
        if prun.ended() and not _queued(prun.job_ids()):
            return prun.states()
        time.sleep(2)
    raise TimeoutError(f"{prun.path}: still running: {prun.states()}")


def _queued(ids: list[str]) -> str:
    return subprocess.run(["squeue", "-h", "-j", ",".join(ids)], capture_output=True, text=True).stdout.strip()


def test_an_oom_item_comes_back_with_more_memory_and_the_next_step_is_planned_from_the_outputs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    path = _pipeline(tmp_path, "t-oom",
                     ("check", "", {"CANARY": "ok-001,mem-400", "OUT_DIR": f"{out}/check"}),
                     ("again", "", {"FROM": "${check.OUT_DIR}", "MEM": "1G", "OUT_DIR": f"{out}/again"}))
    prun = _run(path)
    assert prun.meta["schema"] == "geohpc.pipeline-run/1" and (prun.path / "pipeline.toml").is_file()
    assert _wait(prun) == {"check": "done", "again": "done"}
    (oom,) = [d for d in prun.decisions() if d["item"] == "mem-400"]
    assert oom["action"] == "retry" and oom["step"] == "check"
    assert int(oom["new"]["mem"].rstrip("M")) > 400 > oom["measured"]["req_mem"] >> 20
    assert sorted(p.name for p in (out / "again").glob("*.txt")) == ["mem-400.txt", "ok-001.txt"]
    again = prun.step("again")
    assert again["items"] == 2 and Path(again["run"], "pipeline.txt").read_text().strip() == str(prun.path)
    kinds = [ln.split()[2] for ln in (prun.path / "jobs.txt").read_text().splitlines()]
    assert kinds.count("retry") == 1 and "planner" in kinds
    status = make("status", "STAGE=canary")
    assert "damaged" not in status.stdout + status.stderr


def test_a_timed_out_item_comes_back_with_a_longer_time(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # slurmctld enforces time limits every 30 s: a 1-minute job is killed 60-90 s in, so 95 s always times out
    path = _pipeline(tmp_path, "t-time", ("check", "", {"CANARY": "sleep-95", "TIME": "1", "OUT_DIR": f"{out}"}))
    prun = _run(path)
    assert _wait(prun) == {"check": "done"}
    (dec,) = prun.decisions()
    assert dec["action"] == "retry" and dec["state"] == "TIMEOUT"
    assert dec["new"]["time"] >= "00:02:00" and (out / "sleep-95.txt").is_file()


def test_max_jobs_5_over_60_items_finishes_in_waves_with_no_command_after_make_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    path = _pipeline(tmp_path, "t-waves", ("check", "", {"N": "60", "OUT_DIR": f"{out}"}))
    prun = _run(path, "MAX_JOBS=5")
    assert _wait(prun, timeout=540) == {"check": "done"}  # 15 waves: ~3 min on an idle test bed
    assert len(list(out.glob("ok-*.txt"))) == 60
    plan = json.loads(Path(prun.step("check")["run"], "plan.json").read_text())
    sizes = [sum(len(c["indices"]) for c in a["chunks"]) for a in plan["attempts"]]
    # make run sends 4 (the 5th slot: the planner it queues); a planner job sends 3 (itself + the next planner)
    assert sum(sizes) == 60 and sizes[0] == 4 and max(sizes[1:]) == 3
    assert prun.step("check")["waves_sent"] == len(sizes) == 1 + 56 // 3 + 1


def test_make_cancel_pipeline_leaves_nothing_queued(tmp_path: Path) -> None:
    path = _pipeline(tmp_path, "t-cancel", ("check", "", {"CANARY": "sleep-120,sleep-121", "OUT_DIR": f"{tmp_path}"}),
                     ("again", "", {"FROM": "${check.OUT_DIR}", "OUT_DIR": f"{tmp_path}/again"}))
    prun = _run(path)
    ids = prun.job_ids()
    assert len(ids) == 2 and _queued(ids)  # the array and its planner
    proc = make("cancel", f"PIPELINE={path}")
    assert proc.returncode == 0, proc.stderr
    assert all(i in proc.stdout for i in ids)
    time.sleep(8)
    assert _queued(prun.job_ids()) == ""
    assert (prun.path / "cancelled").exists() and set(prun.states().values()) == {"cancelled"}
    assert RUNS_DIR.exists()


def test_packed_waves_send_max_jobs_tasks_of_pack_items_each(tmp_path: Path) -> None:
    out = tmp_path / "out"
    path = tmp_path / "t-packw.toml"
    path.write_text(f'name = "t-packw"\n[[step]]\nname = "check"\nstage = "noop"\n[step.params]\nN = "14"\n'
                    f'OUT_DIR = "{out}"\n')
    prun = _run(path, "PACK=2", "MAX_JOBS=4")
    assert _wait(prun, timeout=300) == {"check": "done"}
    assert len(list(out.glob("*.done"))) == 14
    run_dir = Path(prun.step("check")["run"])
    plan = json.loads((run_dir / "plan.json").read_text())
    tasks = [sum(len(c["indices"]) for c in a["chunks"]) for a in plan["attempts"]]
    packs = [(run_dir / a["packs"]).read_text().split() for a in plan["attempts"]]
    # make run: 3 tasks (MAX_JOBS less the planner it queues); each planner job 2 (itself and the next planner)
    assert tasks == [3, 2, 2] and [len(p) for p in packs] == [6, 4, 4]
    assert sorted(int(x) for p in packs for x in p) == list(range(14))  # every item once, each in a pack of 2
    assert prun.step("check")["waves_sent"] == prun.step("check")["waves_total"] == 3
    records = [ln for p in (run_dir / "items").glob("*.jsonl") for ln in p.read_text().splitlines()]
    assert len(records) == 14


def test_the_local_site_file_states_the_test_bed_partitions_limits() -> None:
    from geohpc.core.partitions import partition_facts, time_s
    from geohpc.core.site import load_site

    site = load_site("local", cli={}, env={})
    for part in ("small", "standard-g"):
        shown = subprocess.run(["scontrol", "show", "partition", part], capture_output=True, text=True).stdout
        maxtime = shown.split("MaxTime=", 1)[1].split()[0]
        assert time_s((partition_facts(site.values, part) or {}).get("maxtime", "")) == time_s(maxtime), part


def test_a_timeout_at_the_partitions_limit_gives_up_with_the_rules_message(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # the cap of the partition as a site value on the make line (the test bed's own is 3 days): TIME=1 is the
    # limit, so the item that timed out at it is not retried longer
    path = _pipeline(tmp_path, "t-cap", ("check", "", {"CANARY": "sleep-95", "TIME": "1", "OUT_DIR": f"{out}"}))
    prun = _run(path, "PART_SMALL=maxtime:00:01:00,mem:yes")
    assert _wait(prun) == {"check": "failed"}
    (dec,) = prun.decisions()
    assert dec["action"] == "give-up" and dec["state"] == "TIMEOUT"
    assert "timed out at the partition's limit 00:01:00" in dec["why"] and not (out / "sleep-95.txt").exists()


def test_a_packed_item_out_of_memory_comes_back_alone_with_a_bigger_share(tmp_path: Path) -> None:
    out = tmp_path / "out"
    items = tmp_path / "items.txt"
    items.write_text("ok-1\nmem300-a\nok-2\nok-3\n")
    path = tmp_path / "t-packoom.toml"
    path.write_text(f'name = "t-packoom"\n[[step]]\nname = "check"\nstage = "noop"\n[step.params]\nITEMS = "{items}"\n'
                    f'OUT_DIR = "{out}"\n')
    prun = _run(path, "PACK=2", "WORKERS=1", "ITEM_MEM=150M")
    assert _wait(prun) == {"check": "done"}
    assert sorted(p.name for p in out.glob("*.done")) == ["mem300-a.done", "ok-1.done", "ok-2.done", "ok-3.done"]
    (dec,) = prun.decisions()
    assert dec["action"] == "retry" and dec["item"] == "mem300-a" and dec["state"] == "OUT_OF_MEMORY"
    assert dec["measured"]["req_mem"] == 150 << 20 and int(dec["new"]["mem"].rstrip("M")) > 300  # the item's share
    run_dir = Path(prun.step("check")["run"])
    plan = json.loads((run_dir / "plan.json").read_text())
    assert len(plan["attempts"]) == 2 and (run_dir / plan["attempts"][1]["packs"]).read_text().split() == ["1"]
    (cmd,) = [c["command"] for c in plan["attempts"][1]["chunks"]]
    export = next(a for a in cmd if a.startswith("--export="))
    assert f"GEOHPC_PACKS={run_dir}/packs/1.txt" in export and f"GEOHPC_PACK_ITEM_MEM={int(dec['new']['mem'][:-1]) << 20}" in export
