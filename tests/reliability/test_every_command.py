"""Every command of ``python -m geohpc`` answers bad input with one line and exit 2, never a traceback.

The stage walks (test_hostile_b.py, test_integrity_a.py) go deep per stage; this one goes wide: each command
in ``cli.COMMANDS`` with no arguments, with a bogus option, and the tool commands with an output that is a
folder or an input that is not what they read. Each case is recorded for the reliability figure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from geohpc.cli import COMMANDS
from relutil import record

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "py")}


def geohpc(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "geohpc", *args], capture_output=True, text=True, env=ENV,
                          cwd=cwd, timeout=120)


def one_line(run: subprocess.CompletedProcess[str]) -> bool:
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    return run.returncode == 2 and "Traceback" not in run.stderr and any("error" in line for line in lines[-1:])


@pytest.mark.reliability
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_bogus_option_is_one_line(command: str, tmp_path: Path) -> None:
    run = geohpc(command, "--no-such-option", cwd=tmp_path)
    ok = one_line(run) and not list(tmp_path.iterdir())
    record("bad_input", command, "unknown option", ok)
    assert ok, run.stderr


CASES = [  # (argv, what is wrong); "d" is an existing folder, "bad.tif" garbage bytes
    (["tessera-model", "--out", "d"], "output is a folder"),
    (["probe", "--out", "d"], "output is a folder"),
    (["fit-curves", "bad.tif"], "input is not a metrics table"),
    (["fit-curves", "d"], "input is a folder"),
    (["quota", "--kind", "lumi-quota", "bad.tif"], "garbage quota output"),
    (["tiles-serve", "bad.tif"], "not a tile folder"),
    (["scene", "--out-dir", "bad.tif"], "output folder is a file"),
    (["pack-run", "--packs", "bad.tif", "--task", "0"], "outside a packed task"),
    (["pipeline-report", "--run", "d"], "not a pipeline run folder"),
    (["pipeline-status", "--pipeline", "nope"], "no such pipeline run"),
    (["synth-seg", "--out", "bad.tif"], "output folder is a file"),
]


@pytest.mark.reliability
@pytest.mark.parametrize(("argv", "case"), CASES, ids=[f"{a[0]}-{c}" for a, c in CASES])
def test_tool_commands_bad_paths_are_one_line(argv: list[str], case: str, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "bad.tif").write_bytes(b"garbage\n")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    run = geohpc(*argv, cwd=tmp_path)
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    ok = one_line(run) and before == after and (tmp_path / "bad.tif").read_bytes() == b"garbage\n"
    record("bad_input", argv[0], case, ok)
    assert ok, (run.returncode, run.stderr, set(after) - set(before))
