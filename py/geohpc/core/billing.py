"""Billing units: what a job costs by the site's billing rule (``BILLING=`` in sites/*.env), and what is left.

The rules, from the users' field guide:
- ``lumi``: on a GPU partition (``-g``: small-g, standard-g, dev-g) one GCD for one wall-hour is one
  GPU-hour ("1 wall-hour on small-g with 8 GCDs = 8 GPU-hours billed", emb-lumi.md "Billing note",
  howto-lumi.md, feedback-lumi-csc.md 6); elsewhere CPU core-hours. A whole-node partition (standard-g)
  bills the node's every GCD (``whole_node:yes``).
- ``nris`` (Saga and Betzy share one account and quota, betzy.md "Shared Billing with SAGA"; ``cost -p``
  shows it, saga.md): billing hours; the guide gives no conversion factor, so a GPU job counts its GPU-hours
  and a CPU job its core-hours (a whole-node partition every core of the node): a lower bound.
``ALLOCATION`` (with ``ALLOCATION_UNIT``) is the project's budget where the guide states one (LUMI: 100,000
GPU-hours, lumi.md); ``ALLOC_CMD`` shows what is left on the login node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from geohpc.core.jobspec import Resources
from geohpc.core.partitions import partition_facts
from geohpc.core.site import Site

GPU_HOURS, CPU_HOURS, BILLING_HOURS = "gpu-hours", "cpu-hours", "billing-hours"


def _values(site: Site | Mapping[str, str]) -> Mapping[str, str]:
    return site.values if isinstance(site, Site) else site


def rule(site: Site | Mapping[str, str]) -> str:
    """The site's billing rule: ``lumi``, ``nris`` or ``""`` (unknown: core-hours, said as such)."""
    return str(_values(site).get("BILLING", "") or "").strip().lower()


def _int(values: Mapping[str, str], key: str) -> int:
    value = str(values.get(key, "") or "")
    return int(value) if value.isdigit() else 0


def rate(site: Site | Mapping[str, str], resources: Resources) -> tuple[float, str]:
    """(units per wall-hour, unit) of one task asking ``resources`` on the site."""
    values = _values(site)
    facts = partition_facts(values, resources.partition or "") or {}
    whole = facts.get("whole_node", "").lower() == "yes"
    nodes = resources.nodes or 1
    gpus = resources.gpus or 0
    gpu_partition = resources.partition.endswith("-g") or bool(gpus)
    if rule(values) == "lumi" and gpu_partition:
        per_node = _int(values, "GPUS_PER_NODE") or gpus or 1
        return float((per_node if whole else max(gpus, 1)) * nodes), GPU_HOURS
    if rule(values) == "nris" and gpus:
        per_node = _int(values, "GPUS_PER_NODE") or gpus
        return float((per_node if whole else gpus) * nodes), BILLING_HOURS
    cpus = resources.cpus or 1
    if whole:
        cpus = int(facts.get("cpus", "") or 0) or _int(values, "CPUS_PER_NODE") or cpus
    return float(cpus * nodes), BILLING_HOURS if rule(values) == "nris" else CPU_HOURS


def estimate(site: Site | Mapping[str, str], resources: Resources, n_tasks: int, time_s: float) -> tuple[float, str]:
    """(units, unit) ``n_tasks`` tasks asking ``resources`` cost if each runs ``time_s`` seconds (DRY_RUN's plan)."""
    per_hour, unit = rate(site, resources)
    return per_hour * max(n_tasks, 0) * max(time_s, 0.0) / 3600, unit


@dataclass
class Spent:
    """Units spent so far, per unit (a LUMI pipeline may spend GPU-hours and CPU core-hours)."""

    units: dict[str, float]

    def add(self, amount: float, unit: str) -> None:
        """Add ``amount`` of ``unit``."""
        self.units[unit] = self.units.get(unit, 0.0) + amount

    def text(self) -> str:
        """``12.3 gpu-hours + 4.5 cpu-hours`` (``0`` when nothing ran)."""
        return " + ".join(f"{v:,.2f} {k}" for k, v in sorted(self.units.items()) if v) or "0"


def spent(site: Site | Mapping[str, str], resources: Resources, elapsed_s: Iterable[float],
          spent_so_far: Spent | None = None) -> Spent:
    """What tasks that ran ``elapsed_s`` seconds each with ``resources`` have cost (sacct Elapsed)."""
    out = spent_so_far or Spent({})
    per_hour, unit = rate(site, resources)
    out.add(per_hour * sum(elapsed_s) / 3600, unit)
    return out


def allocation(site: Site | Mapping[str, str]) -> tuple[float, str] | None:
    """(budget, unit) from ``ALLOCATION``/``ALLOCATION_UNIT``; None where the guide gives no figure."""
    values = _values(site)
    raw = str(values.get("ALLOCATION", "") or "").replace("_", "")
    if not raw:
        return None
    try:
        amount = float(raw)
    except ValueError:
        return None
    default = GPU_HOURS if rule(values) == "lumi" else BILLING_HOURS if rule(values) == "nris" else CPU_HOURS
    return amount, str(values.get("ALLOCATION_UNIT", "") or default)


def against_allocation(site: Site | Mapping[str, str], used: Spent) -> str:
    """``12.3 gpu-hours spent of 100,000 (0.01%)``; or where to look when the budget is not known."""
    alloc = allocation(site)
    values = _values(site)
    where = values.get("ALLOC_CMD", "") or "the site's allocation command"
    if alloc is None:
        return f"{used.text()} spent (rule {rule(values) or 'none: core-hours'}); allocation unknown here: run {where}"
    amount, unit = alloc
    share = used.units.get(unit, 0.0) / amount * 100 if amount else 0.0
    return f"{used.text()} spent; {used.units.get(unit, 0.0):,.2f} of {amount:,.0f} {unit} allocated ({share:.3f}%); " \
           f"what is left: {where}"
