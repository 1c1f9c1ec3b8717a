"""Pipelines as data: the loader's one-line errors, and DRY_RUN of every shipped pipeline through make."""

from __future__ import annotations

from pathlib import Path

import pytest
from geohpc.core.pipelines import load_pipeline, pipeline_names
from geohpc.errors import ConfigError
from helpers import REPO, RUNS_DIR, make

GOOD = """name = "p"
[vars]
OUT = "outputs/p"
[defaults]
RETRIES = 3
MEM = "1G"
[[step]]
name = "a"
stage = "canary"
[step.params]
OUT_DIR = "${OUT}/a"
[[step]]
name = "b"
stage = "canary"
retries = 1
[step.params]
FROM = "${a.OUT_DIR}"
OUT_DIR = "${OUT}/b"
"""


def _write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "p.toml"
    p.write_text(text)
    return str(p)


def test_a_pipeline_resolves_vars_references_defaults_and_the_make_line(tmp_path: Path) -> None:
    pipe = load_pipeline(_write(tmp_path, GOOD), {"OUT": "/x", "MEM": "2G", "SITE": "local"})
    a, b = pipe.steps
    assert a.after == [] and b.after == ["a"] and pipe.order() == ["a", "b"]
    assert b.params["FROM"] == "/x/a" and b.params["MEM"] == "2G" and "SITE" not in b.params
    assert (a.retries, b.retries) == (3, 1)


@pytest.mark.parametrize(("change", "message"), [
    (("stage = \"canary\"\n[step.params]\nOUT_DIR", "stage = \"nosuch\"\n[step.params]\nOUT_DIR"),
     "step a: unknown stage 'nosuch'"),
    (("${a.OUT_DIR}", "${a.NOPE}"), "step b: unknown reference ${a.NOPE}"),
    (("${OUT}/b", "${MISSING}/b"), "step b: unknown reference ${MISSING}"),
    (("name = \"a\"", "name = \"a\"\nafter = [\"b\"]"), "the steps form a cycle (a -> b -> a)"),
    (("retries = 1", "retries = 1\nafter = [\"b\"]"), "cannot run after itself"),
    (("retries = 1", "retry = 1"), "step b: unknown key 'retry'"),
    (("name = \"p\"", "name = \"canary\""), "is a stage name"),
    (("[vars]", "[varz]"), "unknown key 'varz'"),
    (("name = \"p\"", "name = \"../up\""), "pipeline name '../up'"),
    (("retries = 1", "retries = -1"), "retries=-1"),
])
def test_a_bad_pipeline_is_one_line_naming_the_file_the_step_and_the_fix(tmp_path: Path, change: tuple[str, str],
                                                                          message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_pipeline(_write(tmp_path, GOOD.replace(*change, 1)))
    text = str(err.value)
    assert message in text and "p.toml" in text and "\n" not in text


def test_a_reference_to_a_step_not_upstream_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace("FROM = \"${a.OUT_DIR}\"", "FROM = \"${a.OUT_DIR}\"") + (
        "[[step]]\nname = \"c\"\nstage = \"canary\"\nafter = [\"a\"]\n[step.params]\nFROM = \"${b.OUT_DIR}\"\n")
    with pytest.raises(ConfigError, match="does not run after b"):
        load_pipeline(_write(tmp_path, text))


def test_an_empty_required_var_names_the_make_line_value() -> None:
    with pytest.raises(ConfigError, match="INPUT_DIR is empty; give INPUT_DIR=<value> on the make line"):
        load_pipeline("products")


DRY = {
    "demo": [],
    "demo-seg": [],
    "site-check": [],
    "products": ["INPUT_DIR={tifs}"],
    "romcrop": ["STAC={tifs}/items.json", "BBOX=600000,4999360,600640,5000000", "MODEL=m.pt", "POINTS=p.geojson",
                "VAL_POINTS=v.geojson"],
    "emb": ["EMBEDDINGS={tifs}/a.tif", "LABELS={tifs}/a.tif", "CLASSES=1:corn,5:soy"],
    "sure2": ["FIELDS={tifs}/items.json", "STAC={tifs}/items.json", "YEARS=2018-2022"],
}


def _run_folders() -> list[Path]:
    """Every run folder (``runs/<stage or pipeline>/<timestamp>``) there is now."""
    return sorted(RUNS_DIR.glob("*/*")) if RUNS_DIR.exists() else []


@pytest.mark.parametrize("name", sorted(DRY))
def test_dry_run_of_every_shipped_pipeline_prints_the_plan_and_writes_nothing(name: str, tmp_path: Path,
                                                                                make_raster) -> None:  # noqa: ANN001
    import numpy as np

    tifs = tmp_path / "tifs"
    tifs.mkdir()
    make_raster("tifs/a.tif", np.ones((16, 16), dtype="uint8"))
    (tifs / "items.json").write_text('{"type": "FeatureCollection", "features": [{"id": "s2-a"}]}')
    before = _run_folders()
    proc = make("run", f"PIPELINE={name}", "SITE=local", "DRY_RUN=1", *[a.format(tifs=tifs) for a in DRY[name]])
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"DRY_RUN: pipeline {name} on site local" in out and "nothing submitted" in out
    assert "estimated cost" in out
    for step in load_pipeline(name, {a.split("=")[0]: a.split("=", 1)[1].format(tifs=tifs) for a in DRY[name]}).steps:
        assert f"step {step.name}: stage {step.stage}" in out
    assert "items: " in out and ("arrays: " in out or "planned" in out)
    # no run folder made (a planner of an earlier test may still be writing its report into its own folder)
    assert _run_folders() == before


def test_sure2_plan_has_the_stages_dependencies_and_the_make_line_inputs(tmp_path: Path) -> None:
    fields = tmp_path / "fields.geojson"
    fields.write_text('{"type": "FeatureCollection", "features": ['
                      + ", ".join(f'{{"type": "Feature", "properties": {{"field_id": "F{i}"}}, "geometry": null}}'
                                  for i in range(3)) + "]}")
    line = [f"FIELDS={fields}", f"STAC={tmp_path}/items.json", "YEARS=2019-2021", "SHARDS=2", f"OUT={tmp_path}/o",
            "CHIRPS_URL=http://127.0.0.1:1/{year}", "TRUTH=t.csv"]
    pipe = load_pipeline("sure2", dict(a.split("=", 1) for a in line))
    after = {s.name: s.after for s in pipe.steps}
    assert after == {"weather": [], "climatology": ["weather"], "planting": ["weather"], "emergence": ["planting"],
                     "drought": ["climatology", "planting"], "assess": ["emergence", "drought"], "collect": ["assess"]}
    assert pipe.order() == ["weather", "climatology", "planting", "emergence", "drought", "assess", "collect"]
    p = {s.name: s.params for s in pipe.steps}
    o = f"{tmp_path}/o"
    assert p["drought"]["WEATHER"] == f"{o}/weather" and p["drought"]["CLIMATOLOGY"] == f"{o}/climatology"
    assert p["assess"]["EMERGENCE"] == f"{o}/emergence" and p["collect"]["ASSESS"] == f"{o}/assess"
    assert p["weather"]["YEARS"] == p["climatology"]["YEARS"] == "2019-2021" and p["planting"]["SHARDS"] == "2"
    assert p["weather"]["CHIRPS_URL"].startswith("http://127.0.0.1:1/") and p["collect"]["TRUTH"] == "t.csv"
    proc = make("run", "PIPELINE=sure2", "SITE=local", "DRY_RUN=1", *line)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "step weather: stage weather, after nothing (submitted by make run)" in out
    assert "items: 3 (3 to run)" in out  # weather: one item a year
    assert "step drought: stage drought, after climatology, planting" in out
    assert "step assess: stage assess, after emergence, drought" in out
    assert out.index("step climatology") < out.index("step drought") < out.index("step assess") < out.index("step collect")
    missing = make("run", "PIPELINE=sure2", "SITE=local", "DRY_RUN=1", f"STAC={tmp_path}/items.json", "YEARS=2019")
    assert missing.returncode != 0 and "FIELDS is empty; give FIELDS=<value> on the make line" in missing.stderr


def test_every_shipped_pipeline_is_tested() -> None:
    assert sorted(DRY) == pipeline_names(REPO)


def test_make_run_refuses_an_unknown_pipeline() -> None:
    proc = make("run", "PIPELINE=nosuch", "SITE=local")
    assert proc.returncode != 0 and "unknown PIPELINE 'nosuch'" in proc.stderr


def test_the_local_executor_runs_the_steps_in_order_retries_gives_up_and_blocks(tmp_path: Path) -> None:
    out = tmp_path / "out"
    path = tmp_path / "t-local.toml"
    path.write_text(GOOD.replace('name = "p"', 'name = "t-local"').replace('RETRIES = 3', 'RETRIES = 1')
                    .replace('OUT_DIR = "${OUT}/a"', 'OUT_DIR = "${OUT}/a"\nCANARY = "ok-1,ok-2"'))
    proc = make("run", f"PIPELINE={path}", "SITE=local", "EXECUTOR=local", f"OUT={out}")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (out / "b").glob("*.txt")) == ["ok-1.txt", "ok-2.txt"]  # b planned from a's outputs
    folder = Path([ln.split("run folder ", 1)[1] for ln in proc.stdout.splitlines() if "run folder " in ln][0])
    from geohpc.core.piperun import PipelineRun

    assert PipelineRun(folder).states() == {"a": "done", "b": "done"}
    status = make("status", "STAGE=canary")
    assert status.returncode == 0 and "damaged" not in status.stdout  # a pipeline run folder is not a stage run
    bad = tmp_path / "t-fail.toml"
    bad.write_text(path.read_text().replace('name = "t-local"', 'name = "t-fail"').replace("ok-1,ok-2", "ok-1,fail-1"))
    proc = make("run", f"PIPELINE={bad}", "SITE=local", "EXECUTOR=local", f"OUT={tmp_path}/out2")
    assert proc.returncode != 0 and "Error 1" in proc.stderr  # the local run ended with a failed step
    folder = Path([ln.split("run folder ", 1)[1] for ln in proc.stdout.splitlines() if "run folder " in ln][0])
    prun = PipelineRun(folder)
    assert prun.states() == {"a": "failed", "b": "blocked"}
    assert [d["action"] for d in prun.decisions()] == ["retry", "give-up"]
    assert "fails on purpose" in prun.decisions()[-1]["why"]  # the give-up quotes the item's log


def test_the_run_record_claims_a_step_once_and_appends_jobs_and_decisions(tmp_path: Path) -> None:
    from geohpc.core.piperun import PipelineRun

    prun = PipelineRun(tmp_path)
    assert prun.claim("classify") and not prun.claim("classify")  # two upstreams ending: one starts it
    prun.add_job("12", "a", "array")
    prun.add_job("13", "a", "planner")
    assert prun.job_ids() == ["12", "13"] and (tmp_path / "jobs.txt").read_text() == "12 a array\n13 a planner\n"
    prun.add_decision({"step": "a", "line": 0, "action": "retry"})
    prun.add_decision({"step": "b", "line": 1, "action": "give-up"})
    assert [d["line"] for d in prun.decisions("a")] == [0] and len(prun.decisions()) == 2
    assert prun.step("a")["state"] == "waiting"  # never written: waiting
    prun.set_step("a", "canary", state="running", items=3)
    assert prun.step("a")["state"] == "running" and prun.step("a")["items"] == 3
    with pytest.raises(ValueError):
        prun.set_step("a", "canary", state="exploded")


def test_a_step_whose_planning_fails_ends_failed_with_the_reason_and_blocks_the_rest(tmp_path: Path) -> None:
    from geohpc.core.piperun import PipelineRun

    text = GOOD.replace('name = "p"', 'name = "t-plan"').replace('FROM = "${a.OUT_DIR}"', 'CANARY = "oops-1"')
    text += '[[step]]\nname = "c"\nstage = "canary"\n[step.params]\nOUT_DIR = "${OUT}/c"\n'
    path = tmp_path / "t-plan.toml"
    path.write_text(text)
    proc = make("run", f"PIPELINE={path}", "SITE=local", "EXECUTOR=local", f"OUT={tmp_path}/out")
    assert proc.returncode != 0
    folder = Path([ln.split("run folder ", 1)[1] for ln in proc.stdout.splitlines() if "run folder " in ln][0])
    prun = PipelineRun(folder)
    assert prun.states() == {"a": "done", "b": "failed", "c": "blocked"}
    assert "canary item 'oops-1'" in prun.step("b")["message"]


def test_packed_waves_are_sized_in_array_tasks_of_pack_items(tmp_path: Path) -> None:
    from geohpc.ops.pipeline_waves import tasks_of, waves

    # MAX_JOBS=4: make run sends 3 tasks, each planner 2; PACK=2 -> 14 items are 7 tasks: 3 + 2 + 2
    assert waves(14, 3, 4, 2) == 3 and waves(14, 3, 4) == 1 + -(-11 // 2)
    assert waves(6, 3, 4, 2) == 1 and waves(7, 3, 4, 2) == 2 and waves(0, 3, 4, 2) == 0
    assert tasks_of({"a": [1, 2, 3], "b": [4]}, 2) == 3 and tasks_of({"a": [1, 2, 3]}, 1) == 3
    path = tmp_path / "t-pack.toml"
    path.write_text('name = "t-pack"\n[[step]]\nname = "check"\nstage = "noop"\n[step.params]\nN = "14"\n'
                    f'OUT_DIR = "{tmp_path}/out"\n')
    proc = make("run", f"PIPELINE={path}", "SITE=local", "DRY_RUN=1", "PACK=2", "MAX_JOBS=4")
    assert proc.returncode == 0, proc.stderr
    assert "items: 14 (14 to run)" in proc.stdout and "waves: 3 (3 tasks of 2 items, then 2 a wave" in proc.stdout
