"""Planning and watching a 100,000-item stage: ``make submit ... PACK=50 DRY_RUN=1`` and ``make status``.

1. Plan and render (the DRY_RUN of make submit, as a user runs it: a new process) of a 100,000-item manifest
   with PACK=50 WORKERS=4, a tenth of the items already done; beside it the same manifest unpacked (100,000
   array tasks), the submit a user has without PACK. Target: < 10 s.
2. ``make status`` of that run once recorded, every item with its record (90% completed, some failed, the
   rest running); beside it the count a user gets by hand, ``find OUT_DIR -name '*.done' | wc -l``
   (which knows nothing of failures). Target: < 5 s.
The run record is written the way make submit writes it (plan, render, packs, then records as pack tasks
append them), under a temporary GEOHPC_RUNS_DIR; nothing is submitted.

Usage: python bench/bench_pipeline.py [--items 100000] [--pack 50] [--workers 4] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "py"))

from geohpc.core.arrays import plan_chunks  # noqa: E402
from geohpc.core.jobspec import render  # noqa: E402
from geohpc.core.packing import pack_spec, plan_packs, records_dir, write_packs  # noqa: E402
from geohpc.core.runs import Attempt, new_run  # noqa: E402
from geohpc.ops.submit import plan_submission, record_run  # noqa: E402


def geohpc(env: dict[str, str], *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    """``python -m geohpc ARGS`` in a new process, timed (what make's recipe runs)."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "geohpc", *args], capture_output=True, text=True, env=env, cwd=REPO)
    return time.perf_counter() - t, proc


def fake_records(run_path: Path, items: list[str], todo: list[int], packs: list[list[int]], chunks: list,
                 out_dir: Path) -> dict[str, int]:
    """Item records as the pack tasks append them: 90% completed (with their outputs), 1% failed, rest running."""
    folder = records_dir(run_path)
    folder.mkdir(parents=True, exist_ok=True)
    counts = {"completed": 0, "failed": 0, "running": 0}
    now = time.time()
    for chunk in chunks:
        for idx in chunk.indices:
            lines = packs[chunk.offset + idx]
            with open(folder / f"{chunk.job_id}_{idx}.jsonl", "w") as fh:
                for n, line in enumerate(lines):
                    if n >= int(len(lines) * 0.92):
                        counts["running"] += 1
                        continue
                    state = "FAILED" if line % 100 == 7 else "COMPLETED"
                    if state == "COMPLETED":
                        (out_dir / f"{items[line]}.done").write_text(items[line] + "\n")
                    counts["completed" if state == "COMPLETED" else "failed"] += 1
                    fh.write(json.dumps({"line": line, "item": items[line], "state": state, "rc": 0 if state ==
                                         "COMPLETED" else 3, "elapsed_s": 1.5, "max_rss": 20 << 20,
                                         "req_mem": 256 << 20, "log": f"logs/noop_{chunk.job_id}_{idx}/{line}.out",
                                         "start": now, "end": now + 1.5}) + "\n")
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--pack", type=int, default=50)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (printed)")
    args = ap.parse_args(argv)
    (REPO / "build").mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-", dir=REPO / "build"))
    try:
        runs, out_dir = tmp / "runs", tmp / "out"
        out_dir.mkdir()
        items = [f"ok-{i:06d}" for i in range(args.items)]
        manifest = tmp / "items.txt"
        manifest.write_text("\n".join(items) + "\n")
        for i in range(0, args.items, 10):  # a tenth already done: the done-checks are real work
            (out_dir / f"{items[i]}.done").write_text("x\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GEOHPC_", "SLURM_", "MAKE"))}
        env.update({"GEOHPC_RUNS_DIR": str(runs), "PYTHONPATH": str(REPO / "py")})
        common = ["submit", "--site", "local", "--stage", "noop", "--set", f"ITEMS={manifest}", "--set",
                  f"OUT_DIR={out_dir}", "--set", "DRY_RUN=1", "--set", "EXECUTOR=slurm"]
        packed_s, proc = geohpc(env, *common, "--set", f"PACK={args.pack}", "--set", f"WORKERS={args.workers}")
        assert proc.returncode == 0, proc.stderr
        assert f"{args.items - args.items // 10} item(s) in" in proc.stdout, proc.stdout[-2000:]
        plain_s, proc = geohpc(env, *common)
        assert proc.returncode == 0, proc.stderr

        # the run as make submit records it, then the records as the pack tasks append them
        os.environ["GEOHPC_RUNS_DIR"] = str(runs)
        cli = {"ITEMS": str(manifest), "OUT_DIR": str(out_dir), "PACK": str(args.pack), "WORKERS": str(args.workers),
               "EXECUTOR": "local"}
        plan = plan_submission("noop", "local", cli, env, REPO)
        run = new_run(REPO, "noop", "local")
        spec = pack_spec(render(plan.site, plan.stage, REPO, run.path, plan.params, plan.ctx.out_dir, plan.ctx.work),
                         plan.site, plan.params, args.pack, args.workers)
        record_run(run, plan, spec, REPO)
        packs = plan_packs(plan.todo, args.pack)
        chunks = plan_chunks(list(range(len(packs))), plan.site.int("MAX_ARRAY_SIZE") or None)
        for n, chunk in enumerate(chunks):
            chunk.job_id = str(9_000_000_000 + n)
        run.attempts = [Attempt(executor="local", throttle=None, chunks=chunks, packs=write_packs(run.path, 0, packs))]
        run.save()
        counts = fake_records(run.path, plan.items, plan.todo, packs, chunks, out_dir)
        status_s, proc = geohpc(env, "status", "--stage", "noop")
        assert proc.returncode == 0, proc.stderr
        done = args.items // 10 + counts["completed"]
        assert f"{done}/{args.items}" in proc.stdout and f"failed={counts['failed']}" in proc.stdout, proc.stdout
        pipe = runs / "benchpipe" / "20261207-000000"  # a pipeline run record around it (ARCHITECTURE.md)
        (pipe / "steps").mkdir(parents=True)
        (pipe / "pipeline.json").write_text(json.dumps({"schema": "geohpc.pipeline-run/1", "pipeline": "benchpipe",
                                                        "site": "local", "started": "", "file": "", "params": {},
                                                        "steps": [{"name": "many", "stage": "noop", "after": []}]}))
        (pipe / "steps" / "many.json").write_text(json.dumps({"step": "many", "stage": "noop", "state": "running",
                                                              "run": str(run.path), "waves_sent": 1, "waves_total": 1}))
        pipe_s, proc = geohpc(env, "pipeline-status", "--pipeline", "benchpipe")
        assert proc.returncode == 0 and f"{done}/{args.items}" in proc.stdout, proc.stderr + proc.stdout
        t = time.perf_counter()
        found = subprocess.run(f"find {out_dir} -name '*.done' | wc -l", shell=True, capture_output=True, text=True)
        find_s = time.perf_counter() - t
        assert int(found.stdout) == done
        load = os.getloadavg()[0]
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {load:.1f}, Python {platform.python_version()}")
        print(f"{args.items:,} items, PACK={args.pack} WORKERS={args.workers}: {len(packs):,} array tasks "
              f"in {len(chunks)} arrays (MAX_ARRAY_SIZE {plan.site.int('MAX_ARRAY_SIZE')})")
        print(f"| plan + render (DRY_RUN of make submit), PACK={args.pack} | {packed_s:.2f} s | unpacked, "
              f"{args.items - args.items // 10:,} tasks: {plain_s:.2f} s | {packed_s / plain_s:.2f}x | < 10 s |")
        print(f"| make status of the packed run, {args.items:,} items with records | {status_s:.2f} s | "
              f"`find -name '*.done' | wc -l`: {find_s:.2f} s (counts outputs only) | {status_s / find_s:.1f}x | < 5 s |")
        print(f"| make status PIPELINE= over that run (one step) | {pipe_s:.2f} s | - | - | < 5 s |")
        ok = packed_s < 10 and status_s < 5 and pipe_s < 5
        print("targets: " + ("met" if ok else "NOT met"))
        return 0 if ok else 1
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
