"""Progress reporting: tqdm on a terminal, plain periodic lines in job logs."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], total: int | None = None, desc: str = "", every_s: float = 30.0) -> Iterator[T]:
    """Yield ``items`` while showing progress on stderr.

    On a terminal this is a tqdm bar; in a batch job (stderr not a tty) it prints one
    plain line every ``every_s`` seconds and a final line, so job logs stay readable.
    """
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(items, total=total, desc=desc, file=sys.stderr)
        return
    start = last = time.monotonic()
    n = 0
    for item in items:
        yield item
        n += 1
        now = time.monotonic()
        if now - last >= every_s:
            last = now
            _line(desc, n, total, now - start)
    _line(desc, n, total, time.monotonic() - start)


def _line(desc: str, n: int, total: int | None, elapsed: float) -> None:
    of = f"/{total}" if total is not None else ""
    rate = n / elapsed if elapsed > 0 else 0.0
    print(f"[progress] {desc} {n}{of} done, {elapsed:.0f}s elapsed, {rate:.2f}/s", file=sys.stderr, flush=True)
