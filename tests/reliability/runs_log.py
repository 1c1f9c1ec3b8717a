"""Record a reliability case (the runs engineer's tests) in the JSON lines file ``$GEOHPC_RELIABILITY_LOG``."""

from __future__ import annotations

import json
import os

KINDS = ("bad_input", "kill", "secret")


def record(kind: str, command: str, case: str, ok: bool) -> bool:
    """Append ``{"kind", "command", "case", "ok"}`` to $GEOHPC_RELIABILITY_LOG when set; return ``ok``."""
    assert kind in KINDS, kind
    path = os.environ.get("GEOHPC_RELIABILITY_LOG", "")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps({"kind": kind, "command": command, "case": case, "ok": bool(ok)}) + "\n")
    return ok
