"""The retry rules of a pipeline step, as one pure function of what Slurm measured for an item.

OUT_OF_MEMORY: ``--mem`` = 2x the measured MaxRSS (the users' rule; 2x the request when MaxRSS was not
sampled or was sampled below the request), capped at the node; already at the cap: give up ("split the
item or use a bigger node"). TIMEOUT: ``--time`` = 2x the measured elapsed, rounded up to minutes, capped at
the partition's limit; already at the limit: give up. NODE_FAIL / PREEMPTED / BOOT_FAIL: requeued as is, not
counted against RETRIES, at most ``MAX_REQUEUES`` times. Any other failure: the same resources while RETRIES
lasts, then give up with the last lines of the item's log. Memory and time retries count against RETRIES.
"""

from __future__ import annotations

from dataclasses import dataclass

from geohpc.core.slurm import TaskInfo

MAX_REQUEUES = 3
REQUEUE_STATES = ("NODE_FAIL", "PREEMPTED", "BOOT_FAIL")
MB = 1 << 20


@dataclass
class Decision:
    """What to do with one failed item: ``retry`` (with ``mem_mb``/``time_s`` when they change), ``requeue``,
    or ``give-up``; ``why`` says it in words."""

    action: str
    why: str
    mem_mb: int | None = None
    time_s: int | None = None


def fmt_time(seconds: int) -> str:
    """Seconds as a Slurm ``--time`` (``HH:MM:SS``, ``D-HH:MM:SS`` from a day)."""
    d, rest = divmod(int(seconds), 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return f"{d}-{h:02d}:{m:02d}:{s:02d}" if d else f"{h:02d}:{m:02d}:{s:02d}"


def decide(info: TaskInfo | None, category: str, *, req_mem: int, req_time_s: int | None, mem_cap: int | None,
           time_cap_s: int | None, retries_used: int, retries: int, requeues_used: int = 0,
           log_tail: str = "") -> Decision:
    """The decision for one item whose latest attempt ended ``category`` (oom | timeout | failed | cancelled |
    missing, as make status counts it). Sizes in bytes, times in seconds; a cap of None is unknown (no cap)."""
    state = info.state if info else ""
    if state in REQUEUE_STATES:
        if requeues_used < MAX_REQUEUES:
            return Decision("requeue", f"{state}: requeued as is ({requeues_used + 1} of {MAX_REQUEUES}, not "
                                       "counted against RETRIES)")
        return Decision("give-up", f"{state} {requeues_used} times: the site keeps losing this item's node; "
                                   "ask the site's support")
    spent = retries_used >= retries
    if category == "oom":
        rss = info.max_rss if info else 0
        want = 2 * rss if 2 * rss > req_mem else 2 * req_mem
        basis = f"2 x MaxRSS {rss // MB}M" if 2 * rss > req_mem else \
            f"2 x the request {req_mem // MB}M (MaxRSS {'not sampled' if not rss else f'{rss // MB}M'})"
        if mem_cap and req_mem >= mem_cap:
            return Decision("give-up", f"out of memory at the node's cap {mem_cap // MB}M: split the item or use "
                                       "a bigger node")
        if spent:
            return Decision("give-up", f"out of memory, retries spent (RETRIES={retries})")
        mem_mb = -(-want // MB)
        if mem_cap and want > mem_cap:
            return Decision("retry", f"out of memory: {basis} is over the node, so the cap {mem_cap // MB}M",
                            mem_mb=mem_cap // MB)
        return Decision("retry", f"out of memory: --mem {mem_mb}M = {basis}", mem_mb=mem_mb)
    if category == "timeout":
        elapsed = info.elapsed_s if info else 0
        base = max(elapsed, req_time_s or 0)
        want = -(-2 * base // 60) * 60
        if time_cap_s and req_time_s and req_time_s >= time_cap_s:
            return Decision("give-up", f"timed out at the partition's limit {fmt_time(time_cap_s)}: split the item "
                                       "(more SHARDS) or use a partition with a longer limit")
        if spent:
            return Decision("give-up", f"timed out, retries spent (RETRIES={retries})")
        if time_cap_s and want > time_cap_s:
            return Decision("retry", f"timed out after {elapsed}s: 2x is over the partition's limit, so the limit "
                                     f"{fmt_time(time_cap_s)}", time_s=time_cap_s)
        return Decision("retry", f"timed out after {elapsed}s: --time {fmt_time(want)} = 2 x elapsed, "
                                 "rounded up to minutes", time_s=want)
    what = f"{state or category}" + (f" (exit {info.exit_code})" if info and info.exit_code else "")
    if spent:
        tail = f"; log: {log_tail.strip()}" if log_tail.strip() else ""
        return Decision("give-up", f"{what}, retries spent (RETRIES={retries}){tail}")
    return Decision("retry", f"{what}: the same resources, retry {retries_used + 1} of {retries}")
