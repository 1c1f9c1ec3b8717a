"""Per-partition and per-QOS facts of a site, and the rules make submit applies to a request.

A site file states each partition's rules as data (``PART_SMALL_G=maxtime:3-00:00:00,mem:yes,nodes:1-4,gpus:8``,
``QOS_DEVEL=maxtime:02:00:00``): walltime limit, whether ``--mem`` is allowed, node range, GPUs a node,
whole-node billing, internet, CPUs and memory a node. ``pick_partition`` takes the first partition of a
``PARTITION_GPU=small-g,standard-g`` list whose rules fit the job; ``apply_rules`` adjusts what may be
adjusted (a script's default walltime over the limit is capped) and refuses the rest with one line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from geohpc.core.slurm import parse_mem_request, parse_time_limit


def _slug(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", name.upper())


def parse_facts(text: str) -> dict[str, str]:
    """``maxtime:3-00:00:00,mem:yes,nodes:1-4`` -> ``{'maxtime': '3-00:00:00', 'mem': 'yes', 'nodes': '1-4'}``."""
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition(":")
        if sep and key:
            out[key.strip().lower()] = value.strip()
    return out


def partition_facts(site: Mapping[str, str], partition: str) -> dict[str, str] | None:
    """The ``PART_<NAME>`` facts of ``partition`` (None when the site has no such key or it is empty)."""
    value = str(site.get(f"PART_{_slug(partition)}", "")).strip()
    return parse_facts(value) if value else None


def qos_facts(site: Mapping[str, str], qos: str) -> dict[str, str] | None:
    """The ``QOS_<NAME>`` facts of ``qos`` (None when unknown)."""
    value = str(site.get(f"QOS_{_slug(qos)}", "")).strip()
    return parse_facts(value) if value else None


def has_partition_data(site: Mapping[str, str]) -> bool:
    """True when the site file carries any ``PART_*`` or ``QOS_*`` facts."""
    return any(k.startswith(("PART_", "QOS_")) and str(v).strip() for k, v in site.items())


def time_s(text: str) -> int | None:
    """A Slurm time in seconds, None when empty or not a time."""
    try:
        return parse_time_limit(text) if text.strip() else None
    except (ValueError, IndexError):
        return None


def node_range(text: str) -> tuple[int | None, int | None]:
    """``1-4`` -> (1, 4); ``4-`` -> (4, None); ``4`` -> (4, 4); junk -> (None, None)."""
    m = re.fullmatch(r"\s*(\d*)\s*(-?)\s*(\d*)\s*", text or "")
    if not m or not (m.group(1) or m.group(3)):
        return None, None
    lo = int(m.group(1)) if m.group(1) else None
    hi = int(m.group(3)) if m.group(3) else (lo if not m.group(2) else None)
    return lo, hi


def hours(seconds: int) -> str:
    """``90000`` -> ``'25 h'`` (walltimes in messages)."""
    return f"{seconds / 3600:g} h"


def candidates(site: Mapping[str, str], gpu: bool) -> list[str]:
    """The partitions a site offers a CPU or GPU job, in order of preference (``PARTITION_GPU=a,b``)."""
    value = str(site.get("PARTITION_GPU" if gpu else "PARTITION_CPU", "") or "")
    return [p.strip() for p in value.split(",") if p.strip()]


def fits(facts: Mapping[str, str] | None, *, nodes: int, time: int | None, gpus: int, mem: bool) -> bool:
    """True when a request fits a partition's rules (unknown rules fit)."""
    if not facts:
        return True
    limit = time_s(facts.get("maxtime", ""))
    lo, hi = node_range(facts.get("nodes", ""))
    has = facts.get("gpus", "")
    return not ((limit and time and time > limit) or (lo and nodes < lo) or (hi and nodes > hi)
                or (has.isdigit() and gpus > int(has)) or (mem and facts.get("mem", "").lower() == "no"))


def pick_partition(site: Mapping[str, str], gpu: bool, *, nodes: int, time: int | None, gpus: int,
                   mem: bool) -> tuple[str, str]:
    """(partition, why): the first candidate whose rules fit the request, else the first one."""
    names = candidates(site, gpu)
    if not names:
        return "", ""
    for name in names:
        if fits(partition_facts(site, name), nodes=nodes, time=time, gpus=gpus, mem=mem):
            why = "" if len(names) == 1 else f"first of PARTITION_{'GPU' if gpu else 'CPU'}={','.join(names)} " \
                                             f"whose rules fit {nodes} node(s), {gpus} GPU(s) a node"
            return name, why
    return names[0], ""


def node_caps(site: Mapping[str, str], partition: str) -> tuple[int, int]:
    """(CPUs, memory MB) a node of ``partition`` offers: its ``cpus:``/``memory:`` facts, else 0 (unknown)."""
    facts = partition_facts(site, partition) or {}
    cpus = facts.get("cpus", "")
    mem = facts.get("memory", "")
    return (int(cpus) if cpus.isdigit() else 0), (parse_mem_request(mem) >> 20 if mem else 0)


def rule_problems(where: str, facts: Mapping[str, str], *, nodes: int | None, time: int | None, gpus: int,
                  mem: bool) -> list[str]:
    """Each rule of ``facts`` the request breaks, as one phrase naming the value and the limit.

    ``nodes`` is None when the job gives no ``--nodes`` (one node). Used by make submit (refuse) and by the
    ``partition_rules`` check (report), so both judge a request the same way.
    """
    out = []
    limit = time_s(facts.get("maxtime", ""))
    if limit and time and time > limit:
        out.append(f"--time {hours(time)} is over {where}'s {facts['maxtime']} ({hours(limit)})")
    if mem and facts.get("mem", "").lower() == "no":
        out.append(f"{where} takes no --mem (whole nodes; the job is rejected), but the job asks --mem")
    lo, hi = node_range(facts.get("nodes", ""))
    n = nodes or 1
    if lo and n < lo:
        shown = f"--nodes={nodes}" if nodes else "no --nodes (1 node)"
        out.append(f"{shown} is below {where}'s minimum of {lo} nodes")
    if hi and n > hi:
        out.append(f"--nodes={n} is above {where}'s maximum of {hi} nodes")
    has = facts.get("gpus", "")
    if has.isdigit() and gpus > int(has):
        out.append(f"{gpus} GPUs a node but {where} has {has}" if int(has) else
                   f"{where} has no GPUs, but the job asks {gpus}")
    return out
