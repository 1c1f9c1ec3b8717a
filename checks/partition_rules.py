"""partition_rules: the job's request against the site's per-partition and per-QOS facts (PART_*, QOS_*).

The rules come from the guide: Betzy ``normal`` takes no ``--mem`` and at least 4 nodes, 4-day limit
(emb-betzy.md, howto-betzy.md); ``preproc`` 1 day; LUMI ``small-g`` 3 days, ``standard-g`` 2 days
(lumi.md); Saga's ``devel`` QOS 2 hours (feedback-sigma2-nris.md). The values live in the site file.
A partition the site file does not know but another site's file does is named as that site's (saga.md:
"``--partition=accel`` (NOT ``gpu``, NOT ``small-g`` -- those are for other clusters)").
"""

from __future__ import annotations

from geohpc.core.partitions import has_partition_data, partition_facts, qos_facts, rule_problems
from geohpc.core.site import SITES_DIR
from geohpc.preflight.context import PreflightContext, Result, fail, ok, warn

NAME = "partition_rules"
DESCRIPTION = "walltime, --mem, node count, GPUs and internet vs the site's PART_<partition> and QOS_<qos> facts"
STAGES = "all"


def _partition(ctx: PreflightContext) -> str:
    given = ctx.resources.partition or ctx.params.get("PARTITION_GPU" if ctx.gpu else "PARTITION_CPU", "")
    return given or ctx.site.get("PARTITION_GPU" if ctx.gpu else "PARTITION_CPU", "")


def _qos(ctx: PreflightContext) -> str:
    return str(getattr(ctx.resources, "qos", "") or ctx.params.get("QOS") or ctx.site.get("QOS") or "")


def broken_rules(ctx: PreflightContext, where: str, facts: dict[str, str]) -> list[str]:
    """Each rule of ``facts`` the job breaks (the same judgement make submit applies), plus internet."""
    res = ctx.resources
    broken = rule_problems(where, facts, nodes=getattr(res, "nodes", None), time=res.time_s, gpus=res.gpus or 0,
                           mem=res.mem_bytes is not None)
    if facts.get("internet", "").lower() == "no" and ctx.downloads:
        broken.append(f"stage {ctx.stage} downloads, and {where}'s nodes have no internet")
    return broken


def other_sites_with(part: str, site: str) -> list[str]:
    """The other sites (sites/*.env, the local test bed left out) whose file has ``PART_<part>`` facts."""
    key = f"PART_{part.upper().replace('-', '_')}="
    return sorted(p.stem for p in SITES_DIR.glob("*.env") if p.stem not in (site, "local")
                  and any(line.startswith(key) for line in p.read_text().splitlines()))


def _partial_node(ctx: PreflightContext, part: str, facts: dict[str, str]) -> str:
    """A job asking part of a node's GPUs on a whole-node partition (lumi.md #7: it sat in the queue)."""
    gpus = facts.get("gpus", "")
    want = ctx.resources.gpus or 0
    if facts.get("whole_node", "").lower() == "yes" and gpus.isdigit() and 0 < want < int(gpus):
        return (f"the job asks {want} of {gpus} GPUs on whole-node partition {part}: it is billed the whole node "
                "and queues behind full-node jobs")
    return ""


def check(ctx: PreflightContext) -> Result:
    """Fail when the request breaks a partition or QOS rule; warn when the partition's rules are unknown."""
    site = ctx.site.get("SITE_NAME", "?")
    part, qos = _partition(ctx), _qos(ctx)
    if not has_partition_data(ctx.site):
        return ok(f"site {site} has no PART_*/QOS_* facts: partition rules unknown, nothing to compare")
    if not part:
        return warn(f"no partition for this job on {site}: Slurm picks its default, whose rules are unknown here",
                    f"set PARTITION_{'GPU' if ctx.gpu else 'CPU'} in sites/{site}.env")
    facts = partition_facts(ctx.site, part)
    broken = broken_rules(ctx, f"partition {part}", facts) if facts else []
    qfacts = qos_facts(ctx.site, qos) if qos else None
    if qfacts:
        broken += broken_rules(ctx, f"QOS {qos}", qfacts)
    if broken:
        return fail(f"{'; '.join(broken)} (sites/{site}.env PART_/QOS_ facts)",
                    "ask what the partition allows: TIME= within its limit, no MEM= on whole-node partitions, "
                    "--nodes within its range; or PARTITION_CPU=/PARTITION_GPU= another partition on the make line")
    partial = _partial_node(ctx, part, facts or {})
    if partial:
        return warn(partial, f"PARTITION_GPU={ctx.site.get('PARTITION_GPU') or 'small-g'} (partial nodes) on the make "
                             "line, or ask the whole node (GPUS=<all of them>)")
    unknown = [f"PART_{part.upper().replace('-', '_')}"] if facts is None else []
    unknown += [f"QOS_{qos.upper()}"] if qos and qfacts is None else []
    others = other_sites_with(part, site) if facts is None else []
    if others:
        mine = ctx.site.get("PARTITION_GPU" if ctx.gpu else "PARTITION_CPU", "")
        return warn(f"partition {part} is {', '.join(others)}'s (sites/{others[0]}.env), not {site}'s: sbatch answers "
                    "'Invalid partition name specified' (saga.md: partitions differ per cluster)",
                    f"leave PARTITION_{'GPU' if ctx.gpu else 'CPU'} to sites/{site}.env"
                    + (f" ({mine})" if mine and mine != part else ""))
    if unknown:
        return warn(f"{' and '.join(unknown)} not in sites/{site}.env: the rules of {part}"
                    f"{' / QOS ' + qos if qos else ''} are unknown", f"add {unknown[0]}=maxtime:...,mem:yes|no,nodes:min-max "
                    "from the site's documentation")
    return ok(f"partition {part}{' QOS ' + qos if qos else ''}: walltime, --mem, nodes and GPUs within its rules")
