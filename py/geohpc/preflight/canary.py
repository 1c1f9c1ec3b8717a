"""canary: run one tiny test item (``ok-1``, ``mem-<MB>``, ``sleep-<s>``, ``fail-<n>``) and write its output.

``mem-400`` allocates 400 MB and touches every page (so MaxRSS and OverMemoryKill see it) and holds it 3 s;
``sleep-70`` sleeps 70 s; ``fail-1`` exits 1 without an output. The output ``<out-dir>/<item>.txt`` says
where and when the item ran, and the site's JOB_ENV as the job saw it (``job env: K=v ...``, secrets masked).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path

from geohpc.errors import InputError, run_cli
from geohpc.util import redact, write_text_atomic


def run_item(item: str, out_dir: Path) -> Path:
    """Do what ``item`` asks, then write ``<out_dir>/<item>.txt``."""
    kind, _, num = item.partition("-")
    if kind not in ("ok", "mem", "sleep", "fail") or not num.isdigit():
        raise InputError(f"canary item {item!r}: use ok-<n>, mem-<MB>, sleep-<seconds> or fail-<n>")
    if kind == "fail":
        raise InputError(f"canary item {item}: fails on purpose (a fail- item)")
    if kind == "mem":
        buf = bytearray(int(num) << 20)
        for i in range(0, len(buf), 4096):
            buf[i] = 1
        time.sleep(3)  # long enough for the accounting sampler to see the peak
        del buf
    if kind == "sleep":
        time.sleep(int(num))
    out = out_dir / f"{item}.txt"
    job = f"{os.environ.get('SLURM_ARRAY_JOB_ID', '')}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    text = f"{item} ran on {socket.gethostname()} job {job} at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n"
    names = [n for n in os.environ.get("GEOHPC_JOB_ENV", "").split(",") if n]
    if names:  # what the site's JOB_ENV gave this job (a site check: it reached the program), secrets masked
        text += redact("job env: " + " ".join(f"{n}={os.environ.get(n, '(unset)')}" for n in names)) + "\n"
    write_text_atomic(out, text)
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc canary --item ok-1 --out-dir DIR``."""
    ap = argparse.ArgumentParser(prog="python -m geohpc canary", description=__doc__.splitlines()[0])
    ap.add_argument("--item", required=True)
    ap.add_argument("--out-dir", required=True, type=Path)
    args = ap.parse_args(argv)

    def work() -> int:
        out = run_item(args.item, args.out_dir)
        print(f"canary {args.item}: ok -> {out}", file=sys.stderr)
        return 0

    return run_cli(work, "geohpc.canary")


if __name__ == "__main__":
    sys.exit(main())
