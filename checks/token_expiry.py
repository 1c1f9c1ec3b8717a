"""token_expiry: SAS tokens (se=) and other expiring credentials that end before the job does."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

from geohpc.preflight.context import PreflightContext, Result, fail, ok, warn

NAME = "token_expiry"
DESCRIPTION = "SAS se= expiry (env values, config files) before now + walltime"
STAGES = "all"
QUEUE_SLACK_S = 2 * 86400  # a job can wait in the queue: warn when the token ends within 2 days of that
_SE = re.compile(r"(?:^|[?&\s\"'])se=([0-9]{4}-[0-9]{2}-[0-9]{2}(?:T[0-9:%A-Za-z.]+)?)")
_EXPIRY_VARS = ("AWS_CREDENTIAL_EXPIRATION", "AWS_SESSION_EXPIRATION", "TOKEN_EXPIRY")


def parse_expiry(text: str) -> float | None:
    """``2026-11-28T18:00:00Z`` (URL-encoded or not, date only allowed) as a UTC timestamp."""
    s = unquote(text).strip().rstrip("Z").replace("z", "")
    for fmt in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(s.split(".")[0].split("+")[0], fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return None


def find_expiries(ctx: PreflightContext) -> list[tuple[str, float]]:
    """``(where, expiry)`` for every SAS ``se=`` or expiry variable in the environment and config files."""
    found = []
    for key, value in ctx.env.items():
        for m in _SE.finditer(value):
            t = parse_expiry(m.group(1))
            if t:
                found.append((f"${key}", t))
        if key in _EXPIRY_VARS:
            t = parse_expiry(value)
            if t:
                found.append((f"${key}", t))
    for path in ctx.config_files:
        p = Path(path)
        if not p.is_file():
            continue
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
            for m in _SE.finditer(line):
                t = parse_expiry(m.group(1))
                if t:
                    found.append((f"{p}:{n}", t))
    return found


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def check(ctx: PreflightContext) -> Result:
    """Fail when a token expires before now + walltime; warn when it leaves under 2 days of queue time."""
    found = find_expiries(ctx)
    if not found:
        return ok("no SAS tokens or expiring credentials found")
    walltime = ctx.resources.time_s or 0
    end = ctx.now + walltime
    where, first = min(found, key=lambda f: f[1])
    fix = "create a token valid past the job's end (now + walltime + queue time), export it, and resubmit"
    if first <= ctx.now:
        return fail(f"token in {where} already expired at {_when(first)} (signature redacted)", fix)
    if first < end:
        return fail(f"token in {where} expires {_when(first)}, before the job's walltime ends ({_when(end)})", fix)
    if first < end + QUEUE_SLACK_S:
        return warn(f"token in {where} expires {_when(first)}, less than 2 days after the walltime ends", fix)
    return ok(f"{len(found)} token(s); the first expires {_when(first)}")
