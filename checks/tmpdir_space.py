"""tmpdir_space: the job's TMPDIR on a filesystem with less free space than MIN_TMP_GB.

Betzy's /tmp is 1.5 GB ("useless for most workloads"; use /dev/shm or work space; howto-betzy.md,
feedback-sigma2-nris.md); LUMI's /tmp in the container is tiny and on compute nodes it is RAM that counts
against --mem (lumi.md, FACTS.md). Free space comes from the probe report (where the job ran) or, for the
local site or a shared path, from this machine.
"""

from __future__ import annotations

import shutil

from geohpc.preflight.context import PreflightContext, Result, fail, ok, warn
from geohpc.preflight.site_facts import probe_answer
from geohpc.util import human_bytes as human

NAME = "tmpdir_space"
DESCRIPTION = "free space of the job's TMPDIR (JOB_TMPDIR, else /tmp) vs MIN_TMP_GB, from the probe report or df"
STAGES = "all"
NODE_LOCAL = ("/tmp", "/dev/shm", "/var/tmp")
ASSUMED_MIN_GB = 10.0


def free_bytes(ctx: PreflightContext, path: str) -> tuple[int | None, str]:
    """(free bytes, where the number comes from) for the job's TMPDIR."""
    tmp = probe_answer(ctx.probe, "tmpdir")
    if isinstance(tmp.get("free_bytes"), int):
        return tmp["free_bytes"], f"probe report ({tmp.get('path', path)} on {(ctx.probe or {}).get('host', 'the node')})"
    node_local = path == "/tmp" or path.startswith(tuple(p + "/" for p in NODE_LOCAL)) or path in NODE_LOCAL
    if ctx.is_local or not node_local:
        try:
            return shutil.disk_usage(path).free, "this machine"
        except OSError:
            return None, f"{path} is not on this machine"
    return None, f"{path} is node-local and no probe report gives its free space"


def check(ctx: PreflightContext) -> Result:
    """Fail when TMPDIR has less free space than MIN_TMP_GB; warn when the minimum or the space is unknown."""
    site = ctx.site.get("SITE_NAME", "?")
    path = ctx.site.get("JOB_TMPDIR") or ctx.env.get("TMPDIR") or "/tmp"
    given = (ctx.site.get("MIN_TMP_GB") or "").strip()
    try:
        minimum = float(given) if given else None
    except ValueError:
        minimum = None
    free, source = free_bytes(ctx, path)
    if free is None:
        return warn(f"free space of TMPDIR {path} unknown: {source}",
                    f"make submit STAGE=probe SITE={site}, then rerun make preflight")
    need = (minimum if minimum is not None else ASSUMED_MIN_GB) * 2**30  # GiB, as the probe reads MIN_TMP_GB
    msg = f"TMPDIR {path}: {human(free)} free ({source})"
    fix = (f"point JOB_TMPDIR in sites/{site}.env at a roomy place (/dev/shm for many small files, a work-space "
           "tmp/ folder for big ones), or lower MIN_TMP_GB if the stage needs little")
    if free < need:
        if minimum is None:
            return warn(msg + f", under {ASSUMED_MIN_GB:g} GiB (MIN_TMP_GB unset: the minimum is unknown)", fix)
        return fail(msg + f", under MIN_TMP_GB={given} GiB: temp files fill it ('No space left on device')", fix)
    return ok(msg + (f", MIN_TMP_GB={given}" if minimum is not None else ""))
