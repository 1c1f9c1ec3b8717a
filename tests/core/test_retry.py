"""The retry rules (core.retry.decide) on recorded TaskInfo values: right-sized, capped, bounded."""

from __future__ import annotations

from geohpc.core.retry import MAX_REQUEUES, decide, fmt_time
from geohpc.core.slurm import TaskInfo

MB = 1 << 20


def _d(info: TaskInfo | None, category: str, **kw: object):  # noqa: ANN202
    args = dict(req_mem=256 * MB, req_time_s=600, mem_cap=4096 * MB, time_cap_s=3 * 86400, retries_used=0,
                retries=2, requeues_used=0, log_tail="")
    args.update(kw)
    return decide(info, category, **args)  # type: ignore[arg-type]


def test_oom_takes_twice_the_measured_maxrss() -> None:
    d = _d(TaskInfo("1_1", "OUT_OF_MEMORY", "0:125", 3, 300 * MB, 256 * MB), "oom")
    assert d.action == "retry" and d.mem_mb == 600 and "MaxRSS 300M" in d.why


def test_oom_without_a_sample_doubles_the_request() -> None:
    d = _d(TaskInfo("1_1", "OUT_OF_MEMORY", "0:125", 1, 0, 256 * MB), "oom")
    assert d.action == "retry" and d.mem_mb == 512 and "not sampled" in d.why


def test_oom_is_capped_at_the_node_then_gives_up() -> None:
    d = _d(TaskInfo("1_1", "OUT_OF_MEMORY", "", 3, 3000 * MB), "oom", req_mem=2048 * MB)
    assert d.action == "retry" and d.mem_mb == 4096 and "cap" in d.why
    d = _d(TaskInfo("1_1", "OUT_OF_MEMORY", "", 3, 4000 * MB), "oom", req_mem=4096 * MB)
    assert d.action == "give-up" and "split the item or use a bigger node" in d.why


def test_timeout_doubles_the_elapsed_rounded_to_minutes_capped_at_the_partition() -> None:
    d = _d(TaskInfo("1_1", "TIMEOUT", "0:0", 61), "timeout", req_time_s=60)
    assert d.action == "retry" and d.time_s == 180 and fmt_time(d.time_s) == "00:03:00"
    d = _d(TaskInfo("1_1", "TIMEOUT", "0:0", 2 * 86400), "timeout", req_time_s=2 * 86400)
    assert d.action == "retry" and d.time_s == 3 * 86400 and fmt_time(d.time_s) == "3-00:00:00"
    d = _d(TaskInfo("1_1", "TIMEOUT", "0:0", 3 * 86400), "timeout", req_time_s=3 * 86400)
    assert d.action == "give-up" and "partition's limit" in d.why


def test_node_fail_and_preemption_requeue_without_spending_retries_but_bounded() -> None:
    d = _d(TaskInfo("1_1", "NODE_FAIL"), "failed", retries_used=2)
    assert d.action == "requeue" and d.mem_mb is None
    d = _d(TaskInfo("1_1", "PREEMPTED"), "failed", requeues_used=MAX_REQUEUES)
    assert d.action == "give-up"


def test_other_failures_retry_while_retries_last_then_give_up_with_the_log() -> None:
    d = _d(TaskInfo("1_1", "FAILED", "2:0"), "failed", retries_used=1)
    assert d.action == "retry" and d.mem_mb is None and d.time_s is None and "retry 2 of 2" in d.why
    d = _d(TaskInfo("1_1", "FAILED", "2:0"), "failed", retries_used=2, log_tail="boom: bad input")
    assert d.action == "give-up" and "boom: bad input" in d.why
    d = _d(TaskInfo("1_1", "OUT_OF_MEMORY", "", 1, 300 * MB), "oom", retries_used=2)
    assert d.action == "give-up" and "retries spent" in d.why


def test_the_local_site_caps_a_timeout_retry_at_its_partition_limit() -> None:
    from geohpc.core.partitions import partition_facts, time_s
    from geohpc.core.site import load_site

    site = load_site("local", cli={}, env={})
    cap = time_s((partition_facts(site.values, site.get("PARTITION_CPU")) or {}).get("maxtime", ""))
    assert cap == 3 * 86400  # the test bed's small partition (sites/local.env PART_SMALL)
    info = TaskInfo("1_1", "TIMEOUT", "0:0", 2 * 86400)
    d = decide(info, "timeout", req_mem=0, req_time_s=2 * 86400, mem_cap=None, time_cap_s=cap, retries_used=0,
               retries=2)
    assert d.action == "retry" and d.time_s == cap and "over the partition's limit, so the limit 3-00:00:00" in d.why
    d = decide(TaskInfo("1_1", "TIMEOUT", "0:0", cap), "timeout", req_mem=0, req_time_s=cap, mem_cap=None,
               time_cap_s=cap, retries_used=1, retries=2)
    assert d.action == "give-up" and "timed out at the partition's limit 3-00:00:00" in d.why
