"""``make logs STAGE=x [ITEM=...] [RUN=] [TAIL=20]``: the failed items' log paths and last lines.

Works per item for packed runs (each item's own log, from its record) and unpacked ones (the array task's
log, from the job script's ``--output`` pattern); ``ITEM=`` shows one item's log whatever its state.
Log lines are redacted like everything geohpc prints.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TextIO

from geohpc.core.jobspec import sbatch_directives
from geohpc.core.runs import DamagedRun, Run, find_run
from geohpc.core.site import REPO, parse_makeflags
from geohpc.errors import ConfigError, run_cli
from geohpc.ops.pack_run import item_log
from geohpc.ops.status import RunStatus, run_status
from geohpc.util import human_bytes, redact

BAD = ("failed", "timeout", "oom", "cancelled")
MAX_ITEMS = 20  # items shown in full; the rest are counted


def tail(path: Path, n: int, max_bytes: int = 64 << 10) -> list[str]:
    """The last ``n`` lines of ``path`` (reading at most its last ``max_bytes``)."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - max_bytes))
        data = fh.read()
    return data.decode("utf-8", "replace").splitlines()[-n:] if n > 0 else []


def log_path(status: RunStatus, line: int, repo: Path) -> Path | None:
    """Where manifest ``line``'s latest attempt logged: its item log (packed), else its array task's log."""
    run = status.run
    owner = status.run.line_owner().get(line) if status.owner is None else status.owner.get(line)
    if owner is None:
        return None
    _, job, idx = owner
    key = f"{job}_{idx}"
    script = repo / "jobs" / f"{run.stage}.sbatch"
    if key in status.packed:
        rec = status.records.get(key, {}).get(line)
        return Path(str(rec["log"])) if rec and rec.get("log") else item_log(script, run.stage, job, idx, line, repo)
    directives = sbatch_directives(script)
    pattern = directives.get("output", "slurm-%A_%a.out")
    name = directives.get("job-name", run.stage)
    path = Path(pattern.replace("%x", name).replace("%A", job).replace("%a", idx).replace("%j", job))
    return path if path.is_absolute() else repo / path


def show_logs(run: Run, item: str = "", n_lines: int = 20, repo: Path = REPO, out: TextIO = sys.stdout) -> int:
    """Print the failed items' (or one item's) log paths and tails; the number of items shown."""
    status = run_status(run)
    items = run.items()
    if item:
        lines = [i for i, name in enumerate(items) if name == item]
        if not lines:
            raise ConfigError(f"ITEM={item!r} is not in the manifest of {run.path.name} ({len(items)} items); "
                              f"make status STAGE={run.stage} lists the run's states")
    else:
        lines = status.lines_in(*BAD)
        if not lines:
            print(f"{run.stage} {run.path.name}: no failed items ({len(items)} items); ITEM=<name> shows one "
                  "item's log", file=out)
            return 0
        print(f"{run.stage} {run.path.name}: {len(lines)} failed item(s)", file=out)
    for line in lines[:MAX_ITEMS]:
        info = status.item_info(line)
        measured = ""
        if info is not None:
            measured = f", exit {info.exit_code}, {info.elapsed_s}s, MaxRSS {human_bytes(info.max_rss)}"
        path = log_path(status, line, repo)
        print(f"== {items[line]} (line {line + 1}, {status.states[line]}{measured})", file=out)
        if path is None:
            print("   never ran: no log", file=out)
        elif not path.is_file():
            print(f"   log {path} (not there: never started, or LOG_DIR was cleaned)", file=out)
        else:
            print(f"   log {path}", file=out)
            for text in tail(path, n_lines):
                print("   | " + redact(text), file=out)
    if len(lines) > MAX_ITEMS:
        print(f"... and {len(lines) - MAX_ITEMS} more failed item(s): ITEM=<name> for one", file=out)
    return len(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc logs --stage X [--item NAME] [--run TS] [--tail N]`` (make logs)."""
    ap = argparse.ArgumentParser(prog="python -m geohpc logs", description=__doc__.splitlines()[0])
    ap.add_argument("--stage", required=True)
    ap.add_argument("--item", default=None, help="one item's log (default: ITEM= from the make line)")
    ap.add_argument("--run", default=None, help="a run folder name (default: RUN= from the make line, else the latest)")
    ap.add_argument("--tail", default=None, help="lines of each log (default 20; TAIL= on the make line)")
    args = ap.parse_args(argv)

    def work() -> int:
        make = parse_makeflags(os.environ.get("MAKEFLAGS", ""))  # ITEM= may hold any character: never via the shell
        item = args.item if args.item is not None else make.get("ITEM", "")
        run_name = args.run if args.run is not None else make.get("RUN", "")
        n = args.tail if args.tail is not None else make.get("TAIL", "20")
        if not str(n).isdigit():
            raise ConfigError(f"TAIL={n!r} is not a number of lines")
        damaged: list[DamagedRun] = []
        run = find_run(REPO, args.stage, run_name, report=damaged)
        for bad in damaged:
            print(bad.skipped())
        show_logs(run, item, int(n))
        return 0

    return run_cli(work, "geohpc.logs")


if __name__ == "__main__":
    sys.exit(main())
