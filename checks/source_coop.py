"""source_coop: more downloads at once from Source Cooperative than it serves (AEF COGs, HTTP 502).

emb-errors.md ("Source Cooperative rate limits (AEF)") and emb-betzy.md: ``data.source.coop`` allows about
12-20 concurrent HTTP connections; more and it answers ``HTTP 502 Bad Gateway`` (``CPLE_HttpError: HTTP error
code: 502``). The users' fix: at most 12 workers. Here a download runs one connection a process: the tasks
running at once (``THROTTLE``, else every array task) times ``WORKERS`` when items are packed (``PACK``).
"""

from __future__ import annotations

import json

from geohpc.preflight.context import PreflightContext, Result, fail, ok, warn

NAME = "source_coop"
DESCRIPTION = "more than 12 downloads at once from data.source.coop (AEF: HTTP 502 past ~12-20 connections)"
STAGES = ("download",)
HOST = "source.coop"
SAFE, LIMIT = 12, 20  # emb-errors.md: limit workers to 12; the server allows ~12-20


def _hrefs(ctx: PreflightContext) -> list[str]:
    """The hrefs of the STAC's first items, and the make-line values, that name Source Cooperative."""
    path = ctx.params.get("STAC", "")
    found = [v for v in ctx.params.values() if HOST in v and v != path]
    try:
        feats = json.loads(open(path).read()).get("features", [])[:5] if path else []
    except (OSError, ValueError, AttributeError):
        feats = []
    for f in feats:
        found += [str(a.get("href", "")) for a in (f.get("assets") or {}).values() if HOST in str(a.get("href", ""))]
    return found


def _int(text: str, default: int) -> int:
    return int(text) if text.strip().isdigit() and int(text) > 0 else default


def at_once(ctx: PreflightContext) -> int:
    """Downloads running at the same time: tasks at once (throttle, else the whole array) x packed workers."""
    tasks = ctx.resources.array_size or ctx.pending or len(ctx.items) or 1
    thr = ctx.resources.throttle
    running = min(tasks, thr) if thr else tasks
    workers = _int(ctx.params.get("WORKERS", ""), 1) if ctx.params.get("PACK", "") not in ("", "0") else 1
    return running * workers


def check(ctx: PreflightContext) -> Result:
    """Fail above ~20 connections at once, warn above the users' 12."""
    hrefs = _hrefs(ctx)
    if not hrefs:
        return ok("no reads from data.source.coop")
    n = at_once(ctx)
    thr = ctx.resources.throttle
    how = f"throttle %{thr}" if thr else "no throttle"
    packed = ctx.params.get("PACK", "") not in ("", "0")
    fix = (f"THROTTLE={max(1, SAFE // _int(ctx.params.get('WORKERS', ''), 1)) if packed else SAFE} on the make line "
           f"(at most {SAFE} downloads at once, emb-errors.md); make throttle JOB=<id> N=<n> for a running array")
    msg = (f"up to {n} downloads at once from data.source.coop ({how}"
           + (f", WORKERS={ctx.params.get('WORKERS')}" if packed else "") + ")")
    if n > LIMIT:
        return fail(f"{msg}: Source Cooperative serves ~12-20 connections and answers HTTP 502 past that "
                    "(emb-errors.md)", fix)
    if n > SAFE:
        return warn(f"{msg}: above the {SAFE} the users settled on; 502s start between 12 and 20 (emb-errors.md)", fix)
    return ok(f"{msg}: within the {SAFE} Source Cooperative takes")
