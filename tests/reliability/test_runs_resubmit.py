"""make resubmit replays the run (local executor, no Slurm needed): its MEM, CPUS, THROTTLE and the
make-line MAX_ARRAY_SIZE it was chunked with; only the item list changes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from geohpc.ops.jobctl import resubmit
from relutil import record
from runs_helpers import REPO, clean_env, submit_here

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(300)]


def test_resubmit_keeps_the_runs_chunking_resources_and_throttle(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GEOHPC_RUNS_DIR", str(tmp_path / "runs"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "blocked").write_text("a file where a folder should be: these items fail for real")
    items = tmp_path / "items.txt"
    items.write_text("e0\nblocked/b1\ne2\ne3\nblocked/b4\n")
    run, _ = submit_here("probe", ITEMS=str(items), OUT_DIR=str(out), EXECUTOR="local", MAX_ARRAY_SIZE="2",
                         THROTTLE="1", MEM="200M", CPUS="1")
    assert run is not None
    buf = io.StringIO()
    resubmit(REPO, "probe", run.path.name, {"DRY_RUN": "1"}, clean_env(), out=buf)
    text = buf.getvalue()
    cmds = [line for line in text.splitlines() if line.strip().startswith("sbatch")]
    ok = ("resubmitting 2 item(s)" in text and "override" not in text and len(cmds) == 2
          and "--array=1%1" in cmds[0] and "GEOHPC_OFFSET=0" in cmds[0]
          and "--array=0%1" in cmds[1] and "GEOHPC_OFFSET=4" in cmds[1]
          and all("--mem=200M" in c and "--cpus-per-task=1" in c for c in cmds))
    record("bad_input", "resubmit", "replays make-line MAX_ARRAY_SIZE, MEM, CPUS, THROTTLE (local executor)", ok)
    assert ok, text
