"""The DEMO=full segmentation branch end to end through make submit's code path on the local site:
synth_seg -> prep -> fit (torchrun, 2 gloo ranks) -> predict (2 strips), as sh/demo.sh would run it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from segment_helpers import REPO, env  # noqa: E402

pytestmark = pytest.mark.slow


def _step(stage: str, *kv: str) -> None:
    e = env()
    sets = [a for pair in kv for a in ("--set", pair)]
    sub = subprocess.run([str(REPO / "sh" / "run.sh"), "submit", "--site", "local", "--stage", stage, *sets,
                          "--set", "FORCE=1"], capture_output=True, text=True, env=e, cwd=REPO, timeout=120)
    assert sub.returncode == 0, sub.stderr[-2000:]
    st = subprocess.run([str(REPO / "sh" / "run.sh"), "status", "--stage", stage, "--wait"], capture_output=True,
                        text=True, env=e, cwd=REPO, timeout=600)
    failed = re.findall(r"failed=(\d+)", st.stdout)
    assert st.returncode == 0 and failed and failed[-1] == "0" and "100%" in st.stdout, st.stdout[-2000:] + st.stderr[-2000:]


def test_prep_fit_predict_chain(tmp_path: Path) -> None:
    if not (REPO / ".venv" / "bin" / "python").exists():
        pytest.skip("needs the repo's .venv (make setup)")
    from geohpc.synth.seg import make_seg_scene

    info = make_seg_scene(tmp_path / "scene", size=128, channels=16)
    seg = tmp_path
    _step("prep", f"EMBEDDINGS={info['embeddings']}", f"LABELS={info['labels']}", f"CLASSES={info['classes']}",
          "CHIP=32", "BLOCK_CHIPS=1", f"OUT_DIR={seg}/prep", "CPUS=1", "MEM=2G")
    _step("fit", "RUN=demo", f"DATA={seg}/prep", "ARCH=mlp", "EPOCHS=3", "BATCH=4", f"OUT_DIR={seg}/fit",
          "CPUS=2", "MEM=4G", "TIME=00:20:00")
    status = json.loads((seg / "fit" / "demo" / "status.json").read_text())
    assert status["state"] == "done" and status["world_size"] == 2 and status["step_fraction"] == 1.0
    _step("predict", f"EMBEDDINGS={info['embeddings']}", f"MODEL={seg}/fit/demo/model.pt", "SHARDS=2", "TILE=32",
          "OVERLAP=8", f"OUT_DIR={seg}/predict", "CPUS=1", "MEM=2G")
    outs = sorted(p.name for p in (seg / "predict").glob("*.tif"))
    assert outs == ["embeddings.part000of002.tif", "embeddings.part001of002.tif"]
