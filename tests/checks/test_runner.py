"""The preflight runner: loading by path, crashes, --list/--only/--json, the table, exit codes,
and a site seeded with one pitfall making exactly the matching check fail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from geohpc.preflight.context import PreflightContext, Result, build_context
from geohpc.preflight.runner import blocking, format_table, load_checks, main, run_checks, run_preflight

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
ROCM_BINDS = ("/var/spool/slurmd,/opt/cray,/usr/lib64/libcxi.so.1,/usr/lib64/libjansson.so.4,/pfs,/scratch,"
              "/projappl,/project,/flash,/appl")
EXPECTED = {"quota", "purge", "memory", "env_override", "internet", "proj_mismatch", "glibc", "container",
            "token_expiry", "file_extensions", "array", "training_lints", "manifest",
            # issue 11: the field guide's pitfalls
            "module_compute", "rocm_binds", "partition_rules", "project_space", "deps_changed", "tmpdir_space",
            "raster_orientation", "billing", "node_availability", "gpu_env", "deploy_excludes", "cache_leftovers", "cog_env",
            "source_coop",
            "thread_safety"}


def test_every_check_module_is_well_formed() -> None:
    checks = load_checks()
    assert {c.name for c in checks} == EXPECTED
    for c in checks:
        assert c.path.stem == c.name and c.description and callable(c.module.check)
        assert c.stages == "all" or (isinstance(c.stages, tuple) and c.stages)


def _checks_dir(tmp_path: Path, **bodies: str) -> Path:
    d = tmp_path / "checks"
    d.mkdir()
    for name, body in bodies.items():
        (d / f"{name}.py").write_text(
            "from geohpc.preflight.context import ok, warn, fail\n"
            f"NAME = {name!r}\nDESCRIPTION = 'test {name}'\nSTAGES = 'all'\n" + body)
    return d


def test_crashing_check_is_reported_as_crashed_never_passed(tmp_path) -> None:
    d = _checks_dir(tmp_path, good="def check(ctx):\n    return ok('fine')\n",
                    boom="def check(ctx):\n    return 1 / 0\n",
                    wrong="def check(ctx):\n    return 'ok'\n")
    (d / "broken.py").write_text("def (:\n")
    results = {r.check: r for r in run_checks(PreflightContext(site={}), load_checks(d))}
    assert results["good"].status == "ok"
    assert results["boom"].status == "crashed" and "ZeroDivisionError" in results["boom"].message
    assert "boom.py" in results["boom"].message
    assert results["wrong"].status == "crashed"
    assert results["broken"].status == "crashed" and "SyntaxError" in results["broken"].message
    assert blocking(results.values())


def test_table_and_json_output_and_exit_codes(tmp_path, capsys) -> None:
    site = tmp_path / "mini.env"
    site.write_text(f"SITE_NAME=mini\nSCRATCH={tmp_path}\nQUOTA_CMD=df\n")
    d = _checks_dir(tmp_path, a="def check(ctx):\n    return ok('all good')\n",
                    b="def check(ctx):\n    return warn('hmm', 'look at it')\n",
                    c="def check(ctx):\n    return fail('bad thing', 'do X')\n")
    args = ["--site", str(site), "--checks-dir", str(d)]
    assert main([*args, "--only", "a", "--only", "b"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["STATUS", "CHECK", "MESSAGE", "FIX"]
    assert out[1].split()[:2] == ["ok", "a"] and out[2].split()[:2] == ["warn", "b"] and "look at it" in out[2]
    assert out[-1] == "1 ok, 1 warn, 0 fail, 0 crashed"
    assert main([*args, "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [(r["check"], r["status"]) for r in data] == [("a", "ok"), ("b", "warn"), ("c", "fail")]
    assert data[2] == {"check": "c", "status": "fail", "message": "bad thing", "fix": "do X"}
    assert main([*args, "--list"]) == 0
    assert "test c" in capsys.readouterr().out
    assert main([*args, "--only", "nope"]) == 2
    assert "unknown check" in capsys.readouterr().err


def test_stage_filter(make_ctx) -> None:
    checks = load_checks()
    names = {r.check for r in run_checks(make_ctx(stage="probe"), checks)}
    assert "training_lints" not in names and "quota" in names
    assert "training_lints" in {r.check for r in run_checks(make_ctx(stage="train"), checks)}


def test_format_table_long_messages_stay_on_one_line() -> None:
    table = format_table([Result("fail", "x" * 200, "fix it", "quota")])
    assert len(table.splitlines()) == 3


def test_unknown_site_is_one_line_error(capsys) -> None:
    assert main(["--site", "no-such-site"]) == 2
    err = capsys.readouterr().err
    assert "unknown SITE 'no-such-site'" in err and len(err.splitlines()) == 1


def test_cli_help_runs() -> None:
    run = subprocess.run([sys.executable, "-m", "geohpc", "preflight", "--help"], capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO / "py"), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0 and "--only" in run.stdout


# ------------------------------------------------------------------ seeded pitfalls through the real CLI path
def _site(tmp_path: Path, **over: str) -> Path:
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    values = {"SITE_NAME": "saga", "ACCOUNT": "nn0000k", "SCRATCH": str(scratch),
              "PROJECT_DIR": str(tmp_path / "project"), "VENV": sys.prefix, "CONTAINER_RUNTIME": "none",
              "REMOTE_DIR": str(tmp_path / "checkout"),
              "INTERNET": "no", "PURGE_DAYS": "21", "MAX_ARRAY_SIZE": "1001", "MAX_JOBS": "400",
              "QUOTA_CMD": "df", "GPU_VENDOR": "none"}
    values.update({k: v for k, v in over.items() if not k.startswith("_")})
    path = tmp_path / "saga.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    probe = scratch / "outputs/probe/probe-0000.json"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text(json.dumps({"glibc": over.get("_GLIBC", "2.99"), "env": {}}))
    return path


def _failing(tmp_path: Path, env: dict[str, str], stage: str | None = None, params: dict | None = None,
             **site: str) -> set[str]:
    path = _site(tmp_path, **site)
    ctx = build_context(str(path), stage, params=params, env={"HOME": str(tmp_path), **env})
    results = run_checks(ctx, load_checks())
    assert not [r for r in results if r.status == "crashed"], results
    return {r.check for r in results if r.status == "fail"}


def test_clean_site_passes(tmp_path) -> None:
    assert _failing(tmp_path, {}) == set()
    assert _failing(tmp_path, {}, stage="probe") == set()


def test_seeded_pitfalls_fail_exactly_their_check(tmp_path) -> None:
    old_db = tmp_path / "oldproj"
    old_db.mkdir()
    import sqlite3

    con = sqlite3.connect(old_db / "proj.db")
    con.execute("CREATE TABLE metadata (key TEXT, value TEXT)")
    con.executemany("INSERT INTO metadata VALUES (?, ?)", [("DATABASE.LAYOUT.VERSION.MAJOR", "1"),
                                                            ("DATABASE.LAYOUT.VERSION.MINOR", "2")])
    con.commit()
    con.close()
    bad_train = tmp_path / "train.py"
    bad_train.write_text("import torch\ns = torch.amp.GradScaler()\nd = torch.bfloat16\n")
    assert _failing(tmp_path, {"SCRATCH": "/somewhere/else"}) == {"env_override"}
    assert _failing(tmp_path, {"PROJ_DATA": str(old_db)}) == {"proj_mismatch"}
    assert _failing(tmp_path, {"SAS_URL": "https://a.blob/c?sv=1&se=2020-01-01T00:00:00Z&sig=abc"}) == {"token_expiry"}
    assert _failing(tmp_path, {"GEOHPC_QUOTA_OUTPUT": str(FIXTURES / "lfs-quota-h-p.7.txt")},
                    QUOTA_CMD="lfs") == {"quota"}
    assert _failing(tmp_path, {}, _GLIBC="2.17") == {"glibc"}
    assert _failing(tmp_path, {}, params={"TRAIN_CODE": str(bad_train)}) == {"training_lints"}
    # an array over the job cap is sent in waves by make submit: a warning, and nothing else fails
    assert _failing(tmp_path, {}, stage="probe", params={"N": "500"}, MAX_JOBS="200") == set()
    assert _failing(tmp_path, {}, stage="probe", params={"MEM_ESTIMATE": "3G"}) == {"memory"}
    assert _failing(tmp_path, {"GEOHPC_LAUNCH": "singularity exec --rocm /c/pt.sif python3"}, SITE_NAME="lumi",
                    GPU_VENDOR="rocm", CONTAINER_RUNTIME="singularity", PYTORCH_SIF="/c/pt.sif",
                    CONTAINER_BIND=f"{ROCM_BINDS},{tmp_path},{sys.prefix}") == {"container"}
    assert _failing(tmp_path, {}, SITE_NAME="lumi", GPU_VENDOR="rocm", CONTAINER_RUNTIME="singularity",
                    PYTORCH_SIF="/c/pt.sif", CONTAINER_BIND=f"/pfs,/scratch,{tmp_path},{sys.prefix}") == {"rocm_binds"}


def test_run_preflight_api_for_submit(tmp_path, monkeypatch) -> None:
    path = _site(tmp_path)
    from geohpc.preflight.context import read_site_file

    values = read_site_file(path)
    monkeypatch.chdir(tmp_path)
    results = run_preflight(values, "probe", env={"HOME": str(tmp_path)}, params={"N": "3"})
    assert {r.check for r in results} == EXPECTED - {"training_lints", "cog_env", "source_coop"}
    assert not blocking(results)
    results = run_preflight(values, "probe", env={"HOME": str(tmp_path), "SCRATCH": "/x"}, only=["env_override"])
    assert [r.status for r in results] == ["fail"]
    from geohpc.preflight.context import Resources

    results = run_preflight(values, "probe", items=[f"probe-{i:04d}" for i in range(1, 501)],
                            resources=Resources(mem_bytes=1 << 30, time_s=600), env={"HOME": str(tmp_path)},
                            only=["array"])
    assert results[0].status == "warn" and "500 array tasks exceed the site's 400-job cap" in results[0].message


@pytest.mark.parametrize("flags", [["--only", "array", "--stage", "probe", "--param", "N=3"]])
def test_cli_in_subprocess(tmp_path, flags) -> None:
    path = _site(tmp_path)
    run = subprocess.run([sys.executable, "-m", "geohpc", "preflight", "--site", str(path), *flags, "--json"],
                         capture_output=True, text=True, env={"PYTHONPATH": str(REPO / "py"), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    # probe-0000.json exists (written by _site), so only 2 of the 3 items are pending
    assert json.loads(run.stdout)[0]["message"].startswith("2 array tasks")


def test_manifest_check(make_ctx, run_check) -> None:
    assert run_check("manifest", make_ctx()).status == "ok"
    res = run_check("manifest", make_ctx(stage="cog", manifest_error="stage cog needs INPUT_DIR=<path>"))
    assert res.status == "fail" and "INPUT_DIR" in res.message
    assert run_check("manifest", make_ctx(stage="cog", items=["a"], pending=0)).status == "warn"
    assert run_check("manifest", make_ctx(stage="cog", items=["a", "b"], pending=1)).message == "1 of 2 items to run"


def test_make_line_vars_from_makeflags() -> None:
    from geohpc.preflight.context import make_line_vars

    assert make_line_vars({"MAKEFLAGS": r"s -- STAGE=cog X=a\ b SITE=lumi"}) == {"STAGE": "cog", "X": "a b",
                                                                                 "SITE": "lumi"}
    assert make_line_vars({"MAKEFLAGS": " -j2 --jobserver-auth=3,4 -- N=3"}) == {"N": "3"}
    assert make_line_vars({"MAKEFLAGS": "s"}) == {} and make_line_vars({}) == {}


def test_sbatch_resources_from_job_script(tmp_path) -> None:
    from geohpc.core.slurm import parse_time_limit as parse_time
    from geohpc.preflight.context import sbatch_resources

    script = tmp_path / "x.sbatch"
    script.write_text("#!/usr/bin/env bash\n#SBATCH --job-name=x\n#SBATCH --mem=8G\n#SBATCH --time=1-02:00:00\n"
                      "#SBATCH --cpus-per-task=4\n#SBATCH --gpus-per-node=8\nset -o errexit\n#SBATCH --mem=1G\n")
    res = sbatch_resources(script, {})
    assert (res.mem_bytes, res.time_s, res.cpus, res.gpus) == (8 << 30, 26 * 3600, 4, 8)
    res = sbatch_resources(script, {"MEM": "16000", "TIME": "30:00", "THROTTLE": "5"})
    assert (res.mem_bytes, res.time_s, res.throttle) == (16000 << 20, 1800, 5)
    assert parse_time("90") == 5400 and parse_time("2-00") == 2 * 86400


def test_gate_for_make_submit(tmp_path) -> None:
    import io
    import sqlite3

    from geohpc.core.site import load_site
    from geohpc.core.stages import get_stage
    from geohpc.errors import ConfigError

    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    site, stage = load_site("local", cli={}, env=env), get_stage("probe")
    out = io.StringIO()
    from geohpc.preflight.runner import gate

    results = gate(site, stage, ["probe-0000"], {"N": "1"}, env, out=out)
    assert "manifest" in {r.check for r in results} and out.getvalue().startswith("STATUS")
    (tmp_path / "proj").mkdir()
    con = sqlite3.connect(tmp_path / "proj/proj.db")
    con.execute("CREATE TABLE metadata (key TEXT, value TEXT)")
    con.executemany("INSERT INTO metadata VALUES (?, ?)", [("DATABASE.LAYOUT.VERSION.MAJOR", "1"),
                                                            ("DATABASE.LAYOUT.VERSION.MINOR", "0")])
    con.commit()
    con.close()
    with pytest.raises(ConfigError, match=r"preflight failed \(proj_mismatch\).*FORCE=1"):
        gate(site, stage, ["probe-0000"], {}, {**env, "PROJ_DATA": str(tmp_path / "proj")}, out=io.StringIO())


def test_plan_memory_bytes_hook(tmp_path, monkeypatch) -> None:
    """A plan's module-level memory_bytes(item, ctx) feeds the memory check (probe here, patched in)."""
    import geohpc.plans.probe as probe_plan

    monkeypatch.setattr(probe_plan, "memory_bytes", lambda item, ctx: 3 << 30, raising=False)
    path = _site(tmp_path)
    ctx = build_context(str(path), "probe", env={"HOME": str(tmp_path)})
    assert ctx.mem_estimate == 3 << 30
    (res,) = run_checks(ctx, [c for c in load_checks() if c.name == "memory"])
    assert res.status == "fail" and "3.0 GiB" in res.message  # jobs/probe.sbatch asks --mem=1G
