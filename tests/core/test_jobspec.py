"""One job spec: what submit sends is what DRY_RUN prints, what resubmit replays and what preflight judges."""

from __future__ import annotations

import json
from pathlib import Path

from geohpc.core.jobspec import JobSpec, render
from geohpc.core.site import load_site
from geohpc.core.stages import StageContext, get_stage
from geohpc.preflight.context import build_context

ENV = {"HOME": "/tmp", "PATH": "/usr/bin:/bin"}


def _spec(tmp_path: Path, stage: str = "infer", **cli: str) -> tuple[JobSpec, object]:
    site = load_site("local", cli=cli, env=ENV)
    st = get_stage(stage)
    params = {k: v for k, v in cli.items() if k not in site.values}
    ctx = StageContext(stage, site.values, params, tmp_path, tmp_path)
    return render(site, st, tmp_path, tmp_path / "run", params, ctx.out_dir, tmp_path), site


def test_node_caps_are_in_the_spec_and_in_what_preflight_judges(tmp_path: Path) -> None:
    spec, site = _spec(tmp_path, MEM_PER_NODE="2G", CPUS_PER_NODE="2", MODEL="m.pt")
    assert spec.directives["mem"] == "64G" and spec.options["mem"] == "2048M"  # jobs/infer.sbatch asks 64G
    assert spec.resources.mem_bytes == 2 << 30 and spec.resources.cpus == 2
    cmd = spec.command("/run/job.env", "0-3%2", ["11"], 4)
    assert "--mem=2048M" in cmd and "--cpus-per-task=2" in cmd and "--dependency=afterok:11" in cmd
    assert "GEOHPC_OFFSET=4" in " ".join(cmd) and cmd[-1].endswith("jobs/infer.sbatch")
    ctx = build_context("local", "infer", params={"MODEL": "m.pt", "THROTTLE": "50", "BBOX": "0,0,320,320"},
                        env=ENV, items=["block_a"], site=site, spec=spec, throttle=5)
    # the gate judges the capped --mem and the throttle that is sent, not the script's 64G or THROTTLE=50
    assert ctx.resources.mem_bytes == 2 << 30 and ctx.resources.throttle == 5 and ctx.resources.array_size == 1


def test_make_line_overrides_and_the_json_round_trip(tmp_path: Path) -> None:
    spec, _ = _spec(tmp_path, "probe")
    again = JobSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert again == spec
    new, changed = again.with_overrides({"MEM": "3G", "TIME": "01:00:00", "ACCOUNT": "proj9"})
    assert new.options["mem"] == "3G" and new.resources.time_s == 3600 and new.resources.account == "proj9"
    assert any(line.startswith("mem:") for line in changed) and spec.options.get("mem") != "3G"


def test_stage_defaults_and_paths_reach_the_job_env(tmp_path: Path) -> None:
    spec, _ = _spec(tmp_path, "infer", MODEL="models/m.pt")
    env = spec.env
    assert env["MODEL"] == str(tmp_path / "models/m.pt")  # one rule for relative paths: under the work dir
    assert env["PATCH_DIR"] == str(tmp_path / "outputs/retile") and env["BLOCK"] == "2000"
    assert env["EMB_DTYPE"] == "float32" and env["INFER_BATCH"] == "4096"
