"""preflight: run every check in ``checks/`` before a submit and print a table (or JSON).

Each ``checks/<name>.py`` exposes ``NAME``, ``DESCRIPTION``, ``STAGES`` (``"all"`` or a tuple of stage
names) and ``check(ctx) -> Result``. Checks are loaded by path, so adding one never edits a list. A
check that raises is reported as ``crashed``, never as passed. The exit status is 1 when any check
fails or crashes, so ``make submit`` can stop (``FORCE=1`` skips it).

Usage: ``python -m geohpc preflight --site lumi [--stage infer] [--list] [--only quota] [--json]``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TextIO

from geohpc.core.jobspec import JobSpec
from geohpc.errors import ConfigError, GeohpcError, run_cli
from geohpc.preflight.context import (
    REPO,
    STATUSES,
    PreflightContext,
    Resources,
    Result,
    build_context,
)

CHECKS_DIR = REPO / "checks"


@dataclass
class Check:
    """A loaded check module."""

    name: str
    description: str
    stages: str | tuple[str, ...]
    module: ModuleType
    path: Path
    load_error: str = ""

    def applies_to(self, stage: str | None) -> bool:
        """True when the check runs for ``stage`` (every check runs when no stage is given)."""
        return stage is None or self.stages == "all" or stage in self.stages


def load_checks(checks_dir: Path = CHECKS_DIR) -> list[Check]:
    """Import every ``checks/*.py`` by path; a module that cannot even load becomes a crashing check."""
    found: list[Check] = []
    for path in sorted(checks_dir.glob("*.py")):
        if path.name.startswith("_"):
            continue
        spec = importlib.util.spec_from_file_location(f"geohpc_checks.{path.stem}", path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(mod)
            stages = mod.STAGES
            found.append(Check(mod.NAME, mod.DESCRIPTION, stages if stages == "all" else tuple(stages),
                               mod, path))
        except Exception as exc:  # noqa: BLE001 - a broken check must show up, not vanish
            found.append(Check(path.stem, f"(failed to load {path.name})", "all", mod, path,
                               load_error=f"failed to load {path.name}: {type(exc).__name__}: {exc}"))
    return found


def run_checks(ctx: PreflightContext, checks: Iterable[Check], only: Sequence[str] = ()) -> list[Result]:
    """Run the checks that apply to ``ctx.stage`` (or those named in ``only``); never raises."""
    checks = list(checks)
    if only:
        unknown = sorted(set(only) - {c.name for c in checks})
        if unknown:
            raise ConfigError(f"unknown check(s) {', '.join(unknown)}: see --list for the names")
        checks = [c for c in checks if c.name in only]
    else:
        checks = [c for c in checks if c.applies_to(ctx.stage)]
    results = []
    for c in checks:
        try:
            if c.load_error:
                raise ImportError(c.load_error)
            res = c.module.check(ctx)
            if not isinstance(res, Result) or res.status not in ("ok", "warn", "fail"):
                raise TypeError(f"check returned {res!r}, not a Result with status ok|warn|fail")
        except Exception as exc:  # noqa: BLE001 - reported as crashed, never as passed
            tb = traceback.extract_tb(exc.__traceback__)
            where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb and not c.load_error else ""
            if isinstance(exc, GeohpcError):  # the check could not run, for a reason the user can fix
                res = Result("crashed", str(exc), "fix that and rerun; or skip: --only <other checks>")
            else:
                res = Result("crashed", f"{type(exc).__name__}: {exc}{where}",
                             f"a bug in checks/{c.path.name}: report it, or skip with --only")
        res.check = c.name
        res.message = " ".join(str(res.message).split())
        res.fix = " ".join(str(res.fix).split())
        results.append(res)
    return results


def run_preflight(
    site_values: Mapping[str, str],
    stage: str | None,
    items: Sequence[str] | None = None,
    resources: Resources | None = None,
    env: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    only: Sequence[str] = (),
) -> list[Result]:
    """Run the preflight checks for ``stage`` on the resolved ``site_values`` (the call ``make submit`` makes).

    Parameters
    ----------
    site_values : the resolved site values (site file + make-line overrides); SITE_NAME names the site.
    stage : stage name, or None for every check.
    items : the manifest, when the caller already built it (else the stage builds it).
    resources : the planned sbatch resources (mem, time, array size, throttle), when known.
    env : the environment the job will get (default: ``os.environ``).
    params : stage parameters from the make line (INPUT_DIR=..., N=...).
    only : check names to run (all applicable when empty).

    Returns
    -------
    list[Result] : one per check; stop the submit when any has status ``fail`` or ``crashed``.
    """
    ctx = build_context(site_values.get("SITE_NAME", "local"), stage, params=params, env=env,
                        site_values=site_values, items=None if items is None else list(items))
    if resources is not None:
        if resources.array_size is None:
            resources.array_size = ctx.resources.array_size
        ctx.resources = resources
    return run_checks(ctx, load_checks(), only)


def gate(site, stage, items: Sequence[str], params: Mapping[str, str], env: Mapping[str, str],  # noqa: ANN001
         out: TextIO | None = None, *, spec: JobSpec | None = None, throttle: int | None = None) -> list[Result]:
    """The ``make submit`` hook: run the stage's checks, print the table, raise on a fail or crash.

    Parameters
    ----------
    site : :class:`geohpc.core.site.Site` (resolved values, the site file, the make line).
    stage : :class:`geohpc.core.stages.Stage` being submitted.
    items : the items about to be submitted.
    params : the stage parameters from the make line.
    env : the environment of the submitting shell.
    out : where the table goes (default stderr: stdout is for data).
    spec : the rendered :class:`geohpc.core.jobspec.JobSpec` that will be submitted (rendered here when None).
    throttle : the ``%N`` the arrays will carry.

    Raises
    ------
    ConfigError : naming the first failing check, its message and fix, and ``FORCE=1``.
    """
    ctx = build_context(site.name, stage.name, params=params, env=env, items=list(items), site=site, spec=spec,
                        throttle=throttle)
    results = run_checks(ctx, load_checks())
    print(format_table(results), file=out or sys.stderr)
    bad = [r for r in results if r.status in ("fail", "crashed")]
    if bad:
        names = ", ".join(r.check for r in bad)
        raise ConfigError(f"preflight failed ({names}): {bad[0].check}: {bad[0].message}; fix: {bad[0].fix} "
                          "(or FORCE=1 to submit anyway)")
    return results


def blocking(results: Iterable[Result]) -> bool:
    """True when any result is ``fail`` or ``crashed``."""
    return any(r.status in ("fail", "crashed") for r in results)


def format_table(results: Sequence[Result]) -> str:
    """A fixed-width table: STATUS, CHECK, MESSAGE, FIX (one row per check), then a summary line."""
    rows = [("STATUS", "CHECK", "MESSAGE", "FIX")] + [(r.status, r.check, r.message, r.fix) for r in results]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = min(90, max(len(r[2]) for r in rows))
    lines = [f"{a:<{w0}}  {b:<{w1}}  {c:<{w2}}  {d}".rstrip() for a, b, c, d in rows]
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI: parse arguments and run the checks; exit 1 on any fail or crash, 2 on a usage error."""
    ap = argparse.ArgumentParser(prog="python -m geohpc preflight",
                                 description="Run the preflight checks in checks/ for a site (and stage).")
    ap.add_argument("--site", default="local", help="site name (sites/<name>.env)")
    ap.add_argument("--stage", default=None, help="stage to check for (default: every check)")
    ap.add_argument("--only", action="append", default=[], metavar="NAME", help="run only this check (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the checks and exit")
    ap.add_argument("--json", action="store_true", help="print results as JSON")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="stage parameter as given on the make line (repeatable)")
    ap.add_argument("--checks-dir", type=Path, default=CHECKS_DIR, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    def work() -> int:
        checks = load_checks(args.checks_dir)
        if args.list:
            for c in checks:
                stages = "all" if c.stages == "all" else ",".join(c.stages)
                print(f"{c.name:<16} [{stages}] {c.description}")
            return 0
        params = dict(p.split("=", 1) for p in args.param if "=" in p)
        stage = args.stage or None
        ctx = build_context(args.site, stage, params=params)
        results = run_checks(ctx, checks, args.only)
        if args.json:
            print(json.dumps([r.as_dict() for r in results], indent=2))
        else:
            print(format_table(results))
        return 1 if blocking(results) else 0

    return run_cli(work, "geohpc.preflight")


if __name__ == "__main__":
    sys.exit(main())
