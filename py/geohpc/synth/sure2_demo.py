"""The Sure2 demo: a synthetic county through weather -> climatology -> planting -> emergence -> drought -> assess
-> collect on the local site, chained as Slurm dependencies (AFTER=), ending with where the report is.

- the county (``geohpc.synth.county``): ``--clusters`` x ``--fields-per-cluster`` fields a year over a wet
  year (2021) and a drought year (2022), known planting dates and not-emerged patches, clouds on every
  acquisition with chance ``--cloud``; baseline weather 2018-2020 for the climatology;
- its Sentinel-2 COGs and a STAC ItemCollection on the local S3 server (``make s3-up``: moto on
  ``GEOHPC_S3_ENDPOINT``, default 127.0.0.1:9000) in a public-read bucket, read through ``/vsis3/`` unsigned
  (``AWS_NO_SIGN_REQUEST=YES``, ``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR``); without an S3 server, from files;
- ERA5-Land and CHIRPS served by a local weather server (``geohpc.synth.wxserver``: the CDS API for
  ``cdsapi``, CHIRPS ``.tif.gz`` over HTTP) for as long as the demo runs;
- every stage submitted at once through ``python -m geohpc submit`` with ``AFTER=`` the job ids it reads
  (no polling between stages); the demo then waits for the chain to end and prints the report's path. On the
  local executor (no Slurm) each stage runs before the next is submitted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from geohpc.errors import ConfigError, InputError, ServiceError, run_cli
from geohpc.util import REPO, write_json_atomic

YEARS, CLIM_YEARS = (2021, 2022), (2018, 2019, 2020, 2021, 2022)
BUCKET = "geohpc-sure2"
TOKEN = "demo-cds-key"  # the local weather server's key (not a secret: it serves synthetic data)
CHAIN = ("weather", "climatology", "planting", "emergence", "drought", "assess", "collect")


def publish_s2(county: Any, endpoint: str) -> Path:
    """Upload the county's S2 COGs to ``s3://BUCKET/s2/`` (public read); write ``stac/items_s3.json``."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    stac = json.loads(county.stac.read_text())
    keys = {} if os.environ.get("AWS_ACCESS_KEY_ID") else {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"), **keys)
    try:
        if BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
            s3.create_bucket(Bucket=BUCKET)
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                                                           "Resource": f"arn:aws:s3:::{BUCKET}/*"}]}
        s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(policy))
        for feat in stac["features"]:
            for asset in feat["assets"].values():
                local = (county.stac.parent / asset["href"]).resolve()
                key = str(local.relative_to(county.root.resolve()))
                s3.upload_file(str(local), BUCKET, key)
                asset["href"] = f"s3://{BUCKET}/{key}"
    except (BotoCoreError, ClientError) as exc:
        raise ServiceError(f"upload to the S3 server at {endpoint} failed ({exc}); make s3-up, or run without it") from exc
    out = county.stac.with_name("items_s3.json")
    write_json_atomic(out, stac)
    return out


def _submit(stage: str, sets: dict[str, str], env: dict[str, str]) -> str:
    """``python -m geohpc submit`` one stage; its job ids joined by ':' ('' on the local executor)."""
    cmd = [sys.executable, "-m", "geohpc", "submit", "--site", "local", "--stage", stage]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    shown = [ln for ln in proc.stdout.splitlines() if ln.startswith(("  job", "  items", "nothing", "recorded"))]
    print(f"== sure2 demo: {stage}: " + ("; ".join(s.strip() for s in shown) or "submitted"), file=sys.stderr, flush=True)
    if proc.returncode != 0:
        raise ConfigError(f"submit {stage} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    m = re.search(r"chain the next stage with AFTER=(\S+)", proc.stdout)
    return m.group(1) if m else ""


def _wait(stage: str, env: dict[str, str]) -> bool:
    proc = subprocess.run([sys.executable, "-m", "geohpc", "status", "--stage", stage, "--wait"], env=env, cwd=REPO,
                          capture_output=True, text=True)
    return proc.returncode == 0


def run_demo(out: str | Path, clusters: int = 6, per: int = 25, cloud: float = 0.3, shards: int = 4,
             s3: str = "auto", seed: int = 0) -> dict[str, Any]:
    """Make the county, publish it, submit the chain, wait for it; the paths and the summary."""
    from geohpc.synth.county import make_county
    from geohpc.synth.s12 import endpoint_up
    from geohpc.synth.wxserver import WeatherServer

    out = Path(out).resolve()
    county = make_county(out / "county", clusters=clusters, fields_per_cluster=per, years=YEARS, clim_years=CLIM_YEARS,
                         cloud=cloud, seed=seed)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEOHPC_", "SLURM_"))}
    env.update({"PYTHONPATH": str(REPO / "py"), "PYTHONUNBUFFERED": "1", "CDSAPI_KEY": TOKEN,
                "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"})
    if os.environ.get("GEOHPC_RUNS_DIR"):
        env["GEOHPC_RUNS_DIR"] = os.environ["GEOHPC_RUNS_DIR"]
    endpoint = os.environ.get("GEOHPC_S3_ENDPOINT", "127.0.0.1:9000")
    endpoint = endpoint if "://" in endpoint else f"http://{endpoint}"
    stac = county.stac
    if s3 == "yes" or (s3 == "auto" and endpoint_up(endpoint)):
        stac = publish_s2(county, endpoint)
        env.update({"AWS_S3_ENDPOINT": endpoint.split("://", 1)[1], "AWS_HTTPS": "NO", "AWS_VIRTUAL_HOSTING": "FALSE",
                    "AWS_NO_SIGN_REQUEST": "YES"})
        print(f"== sure2 demo: S2 COGs on the local S3 server {endpoint} (s3://{BUCKET}/s2), read unsigned", file=sys.stderr)
    else:
        print("== sure2 demo: no S3 server answers (make s3-up starts one); S2 read from files", file=sys.stderr)
    o = {s: str(out / s) for s in CHAIN}
    fields, yrs = str(county.fields), f"{CLIM_YEARS[0]}-{CLIM_YEARS[-1]}"
    common = {"FIELDS": fields, "SHARDS": str(shards), "CPUS": "1", "MEM": "2G"}
    with WeatherServer(county.raw, token=TOKEN) as srv:
        env["CDSAPI_URL"] = srv.cds_url
        plan = [
            ("weather", {"YEARS": yrs, "FIELDS": fields, "MONTHS": "4-7", "CHIRPS_URL": srv.chirps_url, "CPUS": "1",
                         "MEM": "2G"}, ()),
            ("climatology", {"YEARS": yrs, "WEATHER": o["weather"], "CPUS": "1", "MEM": "2G"}, ("weather",)),
            ("planting", {**common, "STAC": str(stac), "WEATHER": o["weather"]}, ("weather",)),
            ("emergence", {**common, "STAC": str(stac), "PLANTING": o["planting"]}, ("planting",)),
            ("drought", {**common, "WEATHER": o["weather"], "CLIMATOLOGY": o["climatology"], "PLANTING": o["planting"]},
             ("climatology", "planting")),
            ("assess", {**common, "PLANTING": o["planting"], "EMERGENCE": o["emergence"], "DROUGHT": o["drought"]},
             ("emergence", "drought")),
            ("collect", {"ASSESS": o["assess"], "TRUTH": str(county.truth), "CPUS": "1", "MEM": "2G"}, ("assess",)),
        ]
        slurm = shutil.which("sbatch") is not None  # as submit decides: Slurm when sbatch is here
        ids: dict[str, str] = {}
        for stage, sets, after in plan:
            dep = ":".join(ids[a] for a in after if ids.get(a))
            ids[stage] = _submit(stage, {**sets, "OUT_DIR": o[stage], **({"AFTER": dep} if dep else {})}, env)
            if not slurm and not _wait(stage, env):
                raise InputError(f"stage {stage} failed: python -m geohpc status --stage {stage}")
        for stage in CHAIN if slurm else ():  # the chain runs on its own; wait for its end to show the report
            if not _wait(stage, env):
                rest = [ids[s] for s in CHAIN[CHAIN.index(stage) + 1:] if ids.get(s)]
                if rest:
                    subprocess.run(["scancel", *":".join(rest).split(":")], check=False)
                raise InputError(f"stage {stage} failed (its dependants cancelled): python -m geohpc status --stage {stage}, "
                                 f"logs/{stage}_*.out")
    summary = json.loads((out / "collect" / "summary.json").read_text())
    return {"report": str(out / "collect" / "report.html"), "jobs": ids, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="geohpc demo-sure2", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="outputs/demo-sure2", help="folder for the county and every stage's output")
    p.add_argument("--clusters", type=int, default=6, help="S2 tiles of fields (default 6)")
    p.add_argument("--fields-per-cluster", type=int, default=25, help="fields a tile a year (default 25: 300 field-years)")
    p.add_argument("--cloud", type=float, default=0.3, help="chance a cloud cell is cloudy on an acquisition")
    p.add_argument("--shards", type=int, default=4, help="array tasks of each field stage")
    p.add_argument("--s3", choices=("auto", "yes", "no"), default="auto", help="S2 through the local S3 server")
    a = p.parse_args(argv)

    def _run() -> int:
        res = run_demo(REPO / a.out if not Path(a.out).is_absolute() else a.out, a.clusters, a.fields_per_cluster,
                       a.cloud, a.shards, a.s3)
        s, acc = res["summary"]["all"], res["summary"]["accuracy"] or {}
        pl, em, dr = acc.get("planting", {}), acc.get("emergence", {}), acc.get("drought", {})
        print(f"sure2 demo: {res['summary']['fields']} field-years; PASS {s['pass_rate_pct']}%, claims {s['claim_rate_pct']}% "
              f"of PASS, drought gate {s['drought_gate_rate_pct']}%, mean D {s['mean_D']}")
        print(f"sure2 demo: planting MAE {pl.get('mae_days')} d, RMSE {pl.get('rmse_days')} d, detected "
              f"{pl.get('detection_rate')}; not-emerged error {em.get('mae_pp')} pp; drought-gate agreement "
              f"{dr.get('gate_agreement')}")
        print(f"sure2 demo: report {res['report']}")
        return 0

    return run_cli(_run, "geohpc demo-sure2")


if __name__ == "__main__":
    raise SystemExit(main())
