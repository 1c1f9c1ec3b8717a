"""CLI: ``python -m geohpc quota FILE`` parses a recorded quota output and prints entries as JSON lines."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from geohpc.errors import InputError, run_cli
from geohpc.preflight.quota import PARSERS, parse_quota_output, read_quota


def main(argv: list[str] | None = None) -> int:
    """CLI: parse a recorded quota output file (or run the command) and print entries as JSON lines."""
    ap = argparse.ArgumentParser(prog="python -m geohpc quota", description="Parse lfs quota / lumi-quota / dusage / df output.")
    ap.add_argument("file", nargs="?", help="recorded output of lfs quota / lumi-quota / dusage / df")
    ap.add_argument("--kind", choices=sorted(PARSERS), help="parser to use (detected when omitted)")
    ap.add_argument("--path", default=".", help="path to ask about when running the command")
    args = ap.parse_args(argv)

    def work() -> int:
        if args.file:
            entries = parse_quota_output(Path(args.file).read_text(), args.kind)
            if not entries:  # empty is an error: a quota check that reads nothing would pass silently
                raise InputError(f"{args.file}: no quota entry found (is it the output of "
                                 f"{args.kind or 'lumi-quota, dusage, lfs quota or df'}?)")
        else:
            entries = read_quota(args.kind or "df", args.path)
        for e in entries:
            print(json.dumps(asdict(e)))
        return 0

    return run_cli(work, "geohpc.quota")


if __name__ == "__main__":
    sys.exit(main())
