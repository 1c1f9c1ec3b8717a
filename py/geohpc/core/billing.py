"""What a job costs in the site's billing units (``BILLING`` in the site file), for DRY_RUN estimates.

LUMI bills GPU jobs in GPU-hours, one per GCD a wall-hour (emb-lumi.md: 8 GCDs for an hour = 8 GPU-hours);
CPU jobs are counted in CPU core-hours. NRIS (Saga, Betzy) bills against one quota (betzy.md, ``cost -p``);
the guide gives no formula, so GPU jobs count GPU-hours and CPU jobs core-hours, an upper-bound reading.
Minimal version for make run's DRY_RUN; the billing engineer's module may replace it with the same signature.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def estimate(site: Any, resources: Any, n_tasks: int, time_s: int | None) -> tuple[float, str]:
    """(units, unit name) for ``n_tasks`` tasks of ``resources`` running ``time_s`` seconds each (at most)."""
    values: Mapping[str, str] = getattr(site, "values", site)
    hours = (time_s or 0) / 3600 * max(n_tasks, 0)
    gpus = getattr(resources, "gpus", None) or 0
    cpus = getattr(resources, "cpus", None) or 1
    rule = str(values.get("BILLING", "") or "")
    if gpus:
        return gpus * hours, "GPU-hours"
    return cpus * hours, "CPU core-hours" if rule != "nris" else "CPU core-hours (billing hours)"
