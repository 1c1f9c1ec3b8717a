"""Parsers for squeue/sacct output (recorded from the local Slurm 22.05) and status classification."""

from __future__ import annotations

from geohpc.core.slurm import TaskInfo, parse_duration, parse_mem, parse_sacct, parse_squeue
from geohpc.ops.status import bar, classify

SACCT = """1_0|COMPLETED|0:0|00:00:07||1G
1_0.batch|COMPLETED|0:0|00:00:07|289856K|
1_1|FAILED|1:0|00:00:03||1G
1_1.batch|FAILED|1:0|00:00:03|1024K|
1_2|FAILED|0:9|00:00:05||512M
1_2.batch|FAILED|0:9|00:00:05|520000K|
1_3|TIMEOUT|0:0|00:01:01||1G
1_4|CANCELLED by 0|0:0|00:00:00||1G
"""


def test_parse_sacct_folds_steps_into_tasks() -> None:
    tasks = parse_sacct(SACCT)
    assert tasks["1_0"].state == "COMPLETED" and tasks["1_0"].max_rss == 289856 * 1024
    assert tasks["1_0"].req_mem == 1 << 30 and tasks["1_0"].elapsed_s == 7
    assert tasks["1_4"].state == "CANCELLED"
    assert classify(tasks["1_0"], None) == "completed"
    assert classify(tasks["1_1"], None) == "failed"
    assert classify(tasks["1_2"], None) == "oom"  # OverMemoryKill: FAILED 0:9 at the memory limit
    assert classify(tasks["1_3"], None) == "timeout"
    assert classify(tasks["1_4"], None) == "cancelled"
    assert classify(None, "PENDING") == "pending" and classify(None, "RUNNING") == "running"
    assert classify(None, None) == "missing"
    assert classify(TaskInfo("x", state="OUT_OF_MEMORY"), None) == "oom"


def test_parse_squeue_and_units() -> None:
    assert parse_squeue("7_3|RUNNING\n7_4|PENDING\n") == {"7_3": "RUNNING", "7_4": "PENDING"}
    assert parse_duration("1-02:03:04") == 93784 and parse_duration("05:30") == 330
    assert parse_mem("4000Mn") == 4000 << 20 and parse_mem("2G") == 2 << 30 and parse_mem("") == 0
    assert bar(1, 4, width=8) == "[##......]  25%"


def test_parse_sacct_reads_cpu_time_and_times() -> None:
    text = ("7_0|COMPLETED|0:0|00:00:06||512M|00:00.551|2|2026-12-07T12:41:40|2026-12-07T12:41:46\n"
            "7_0.batch|COMPLETED|0:0|00:00:06|42792K||00:00.551|2|2026-12-07T12:41:40|2026-12-07T12:41:46\n"
            "7_1|PENDING|0:0|00:00:00||512M|00:00:00|2|Unknown|Unknown\n")
    tasks = parse_sacct(text)
    assert tasks["7_0"].total_cpu_s == 0.551 and tasks["7_0"].alloc_cpus == 2
    assert tasks["7_0"].end - tasks["7_0"].start == 6 and tasks["7_0"].max_rss == 42792 * 1024
    assert tasks["7_1"].start == 0 and tasks["7_1"].end == 0
