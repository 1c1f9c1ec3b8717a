"""Helpers of the reliability walk: hostile runs of ``python -m geohpc``, kills, the outcome log.

``fill`` leaves no byte free on a file system (the ``full_disk`` fixture's tmpfs). ``run_geohpc`` runs
``python -m geohpc <command>`` from this checkout as a subprocess. ``record`` appends one case's outcome to the
JSON lines file named by ``GEOHPC_RELIABILITY_LOG``. ``kill_at_first_temporary`` SIGKILLs a run as soon as a
temporary of an output appears.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def fill(folder: Path, leave: int = 0) -> None:
    """Fill the file system of ``folder`` with ``.filler`` until a write fails with ENOSPC, then free ``leave`` bytes."""
    with open(folder / ".filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
        if leave:
            fh.truncate(max(0, fh.tell() - leave))


def geohpc_env(**extra: str) -> dict[str, str]:
    """The environment of a geohpc subprocess: this checkout's package, no terminal progress bars."""
    return {**os.environ, "PYTHONPATH": str(REPO / "py"), "GEOHPC_THREADS": "1", **extra}


def run_geohpc(*args: object, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m geohpc <args>`` from this checkout."""
    return subprocess.run([sys.executable, "-m", "geohpc", *map(str, args)], capture_output=True, text=True,
                          env=geohpc_env(), timeout=timeout, cwd=REPO)


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``roots`` with its size and mtime, and every folder (nothing new or changed may be left)."""
    out = {}
    for root in roots:
        for p in [root] if root.is_file() else sorted(root.rglob("*")) if root.exists() else []:
            if p.is_file() and p.name != ".filler":
                st = p.stat()
                out[str(p)] = (st.st_size, st.st_mtime_ns)
            elif p.is_dir():  # a folder counts by its presence (its mtime moves with any temporary)
                out[str(p) + "/"] = (-1, 0)
    return out


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    """'' when ``r`` failed the way a user error must (exit 2, one ``error:`` line, no traceback), else why not."""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    if r.returncode != 2:
        return f"exit {r.returncode}, stderr {r.stderr[-800:]!r}"
    if "Traceback" in r.stderr:
        return f"traceback: {r.stderr[-800:]!r}"
    errors = [ln for ln in lines if ": error: " in ln]
    if len(errors) != 1 or lines[-1] != errors[0]:
        return f"not one error line at the end: {lines[-6:]!r}"
    return ""


def record(kind: str, command: str, case: str, ok: bool) -> None:
    """Append ``{"kind", "command", "case", "ok"}`` to $GEOHPC_RELIABILITY_LOG when it is set."""
    log = os.environ.get("GEOHPC_RELIABILITY_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(json.dumps({"kind": kind, "command": command, "case": case, "ok": bool(ok)}) + "\n")


def temporaries(*roots: Path) -> list[Path]:
    """Leftover temporaries (``.<name>.<x>.tmp...``) under ``roots``."""
    return [p for root in roots if root.exists() for p in root.rglob(".*") if ".tmp" in p.name]


def kill_at_first_temporary(args: list[object], watch: Path, timeout: float = 300) -> bool:
    """Start ``python -m geohpc <args>``, SIGKILL it as soon as a temporary appears under ``watch``.

    Returns True when it was killed that way, False when it ended before any temporary was seen.
    """
    proc = subprocess.Popen([sys.executable, "-m", "geohpc", *map(str, args)], env=geohpc_env(), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    end = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < end:
            if watch.exists() and any(".tmp" in e.name for e in _walk(watch)):
                os.killpg(proc.pid, signal.SIGKILL)  # the whole group, as a node failure or scancel does
                proc.wait()
                return True
            time.sleep(0.0005)
        return False
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _walk(root: Path) -> Iterator[os.DirEntry[str]]:
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for e in entries:
        yield e
        if e.is_dir(follow_symlinks=False):
            yield from _walk(Path(e.path))
