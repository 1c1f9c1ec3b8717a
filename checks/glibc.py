"""glibc: compiled wheels in the venv that need a newer GLIBC than the node (from the probe report)."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

from geohpc.preflight.context import PreflightContext, Result, fail, ok, warn
from geohpc.preflight.glibc import parse_version, scan_tree

NAME = "glibc"
DESCRIPTION = "GLIBC_x.y needs of the venv's .so files vs the glibc the probe found on the node"
STAGES = "all"


def check(ctx: PreflightContext) -> Result:
    """Fail when any ``.so`` under VENV needs a GLIBC newer than the node's."""
    site = ctx.site.get("SITE_NAME", "?")
    node = parse_version(str((ctx.probe or {}).get("glibc") or ""))
    source = "probe report"
    if node is None and ctx.is_local:
        node, source = parse_version(platform.libc_ver()[1]), "this machine"
    if node is None:
        return warn(f"no probe report with glibc for {site}",
                    f"make submit STAGE=probe SITE={site}, then rerun make preflight")
    venv = ctx.path("VENV")
    if (venv is None or not venv.is_dir()) and ctx.is_local and sys.prefix != sys.base_prefix:
        venv = Path(sys.prefix)  # the local site runs jobs with the venv running this check
    if venv is None or not venv.is_dir():
        return warn(f"venv {venv} not found here: cannot read its compiled files",
                    f"make deploy SITE={site}, or run make preflight on the login node")
    needs = scan_tree(dict.fromkeys(p.resolve() for p in (venv / "lib", venv / "lib64") if p.is_dir()))
    if not needs:
        return ok(f"no compiled files under {venv}")
    too_new = sorted(((v, p) for p, v in needs.items() if v > node), reverse=True)
    node_s = f"{node[0]}.{node[1]}"
    if too_new:
        v, p = too_new[0]
        others = sorted({q.name for _, q in too_new} - {p.name})[:3]
        also = f" (also {', '.join(others)})" if others else ""
        return fail(f"{len(too_new)} compiled files need a GLIBC newer than the node's {node_s} ({source}): "
                    f"{p.name} needs GLIBC_{v[0]}.{v[1]}{also}",
                    "rebuild the venv on the site (make deploy) with wheels for an older manylinux, "
                    "or run the stage in the container")
    top = max(needs.values())
    return ok(f"{len(needs)} compiled files need at most GLIBC_{top[0]}.{top[1]}; node has {node_s} ({source})")
