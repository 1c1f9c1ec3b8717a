"""The per-task batch driver every Sure2 field stage shares (sure2.md, Batch CLI -- resumable).

A task takes one shard of the field list (``shard_0003_of_0040`` -> ``fields[3::40]``), skips each field
whose output is already a valid JSON, runs the rest in a process pool (fork: the workers inherit the
task's pre-loaded context read-only; never threads, bug 3), writes each result atomically, logs one line
a field and a summary for the task (stderr, unbuffered in jobs), and a summary JSON under ``_tasks/``.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from geohpc.errors import GeohpcError
from geohpc.sure2.fields import Field, load_fields, shard_fields
from geohpc.util import write_json_atomic

FieldFn = Callable[[Field, Any], dict[str, Any]]
_CTX: Any = None  # the task's context; set before the pool forks so workers share it


def valid_output(path: Path, field_id: str) -> bool:
    """True when ``path`` is a JSON object for ``field_id`` (a torn or foreign file is not done)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("field_id") == field_id


def _one(fn: FieldFn, field: Field) -> tuple[str, dict[str, Any] | None, str, float]:
    t0 = time.perf_counter()
    try:
        return field.field_id, fn(field, _CTX), "", time.perf_counter() - t0
    except GeohpcError as exc:
        return field.field_id, None, str(exc), time.perf_counter() - t0


def run_shard(stage: str, fields_path: str | Path, item: str, out: str | Path, fn: FieldFn,
              load_context: Callable[[list[Field]], Any], workers: int = 1,
              describe: Callable[[dict[str, Any]], str] = lambda r: "") -> dict[str, Any]:
    """Run ``fn`` on every not-yet-done field of shard ``item``; return (and write) the task summary."""
    global _CTX
    out = Path(out)
    t0 = time.perf_counter()
    mine = shard_fields(load_fields(fields_path), item)
    todo = [f for f in mine if not valid_output(out / f"{f.field_id}.json", f.field_id)]
    summary: dict[str, Any] = {"stage": stage, "item": item, "fields": len(mine), "skipped": len(mine) - len(todo),
                               "done": 0, "failed": {}, "workers": workers}
    log = lambda msg: print(f"{stage} {item}: {msg}", file=sys.stderr, flush=True)  # noqa: E731
    log(f"{len(mine)} fields, {summary['skipped']} already done, {len(todo)} to run with {workers} worker(s)")
    if todo:
        _CTX = load_context(todo)
        try:
            if workers <= 1:
                results = (_one(fn, f) for f in todo)
                _collect(results, out, summary, log, describe)
            else:
                with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                    futs = [pool.submit(_one, fn, f) for f in todo]
                    _collect((fu.result() for fu in as_completed(futs)), out, summary, log, describe)
        finally:
            _CTX = None
    secs = time.perf_counter() - t0
    summary["seconds"] = round(secs, 3)
    summary["fields_per_s"] = round(summary["done"] / secs, 2) if secs > 0 else None
    write_json_atomic(out / "_tasks" / f"{item}.json", summary)
    log(f"summary: {summary['done']} done, {summary['skipped']} skipped, {len(summary['failed'])} failed "
        f"in {secs:.1f} s ({summary['fields_per_s']} fields/s)")
    if summary["failed"]:
        raise GeohpcError(f"{len(summary['failed'])} of {len(mine)} fields of {item} failed (their lines above); "
                          "a resubmit runs only the fields without output")
    return summary


def _collect(results: Any, out: Path, summary: dict[str, Any], log: Callable[[str], None],
             describe: Callable[[dict[str, Any]], str]) -> None:
    for fid, res, err, secs in results:
        if res is None:
            summary["failed"][fid] = err
            log(f"{fid} FAILED {secs:.2f} s: {err}")
            continue
        write_json_atomic(out / f"{fid}.json", res)
        summary["done"] += 1
        log(f"{fid} ok {secs:.2f} s {describe(res)}")
