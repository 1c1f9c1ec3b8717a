"""Preflight speed, side by side with the tools a user would reach for instead.

1. GLIBC needs of every compiled file in a venv: our pure-Python ELF reader vs ``objdump -T`` per file.
2. Purge-age scan of a scratch tree: ``geohpc.purge_guard.scan`` vs ``find -printf`` of the three times.

Usage: python bench/bench_checks.py [--venv PATH] [--files N]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "py"))

from geohpc.preflight.glibc import _read_needs  # noqa: E402  (uncached on purpose)
from geohpc.preflight.purge_guard import scan  # noqa: E402


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def bench_elf(venv: Path) -> str:
    files = [p for p in (venv / "lib").rglob("*.so*") if p.is_file() and not p.is_symlink()]
    ours_s, ours = timed(lambda: {p: _read_needs(str(p)) for p in files})
    objdump = shutil.which("objdump")
    if objdump is None:
        return f"| ELF GLIBC needs, {len(files)} files | {ours_s:.2f} s | objdump not installed | - |"

    def run_objdump() -> int:
        n = 0
        for p in files:
            out = subprocess.run([objdump, "-T", str(p)], capture_output=True, text=True).stdout
            n += out.count("GLIBC_")
        return n

    theirs_s, _ = timed(run_objdump)
    return (f"| GLIBC needs of {len(files)} .so files in a venv | {ours_s:.2f} s | `objdump -T` each: "
            f"{theirs_s:.2f} s | {theirs_s / ours_s:.1f}x |")


def bench_purge(n: int) -> str:
    with tempfile.TemporaryDirectory(dir=".") as d:
        root = Path(d)
        for i in range(n):
            sub = root / f"d{i % 50:02d}"
            sub.mkdir(exist_ok=True)
            (sub / f"f{i}.tif").write_bytes(b"x")
        ours_s, risky = timed(lambda: scan([root], 21, 7, time.time() + 40 * 86400))

        def run_find() -> int:
            out = subprocess.run(["find", str(root), "-type", "f", "-printf", "%A@ %T@ %C@ %s %p\n"],
                                 capture_output=True, text=True).stdout
            now = time.time() + 40 * 86400
            return sum(1 for ln in out.splitlines() if 21 - (now - max(map(float, ln.split()[:3]))) / 86400 <= 7)

        theirs_s, count = timed(run_find)
        assert count == len(risky) == n
    return f"| purge-age scan of {n} files | {ours_s:.2f} s | `find -printf` + parse: {theirs_s:.2f} s | {theirs_s / ours_s:.1f}x |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", type=Path, default=Path(sys.prefix))
    ap.add_argument("--files", type=int, default=20000)
    args = ap.parse_args()
    print(f"machine: {platform.node()} {platform.machine()}, {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d')}")
    print("| task | geohpc | the alternative | alternative / geohpc |\n|---|---|---|---|")
    print(bench_elf(args.venv))
    print(bench_purge(args.files))


if __name__ == "__main__":
    main()
