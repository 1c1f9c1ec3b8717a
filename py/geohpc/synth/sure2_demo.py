"""The Sure2 demo: a synthetic county through weather -> climatology -> planting -> emergence -> drought -> assess
-> collect on the local site through the pipeline runner (``pipelines/sure2.toml``, as ``make run PIPELINE=sure2
SITE=local``), ending with the portfolio's summary and where the report is.

- the county (``geohpc.synth.county``): ``--clusters`` x ``--fields-per-cluster`` fields a year over a wet
  year (2021) and a drought year (2022), known planting dates and not-emerged patches, clouds on every
  acquisition with chance ``--cloud``; baseline weather 2018-2020 for the climatology;
- its Sentinel-2 COGs and a STAC ItemCollection on the local S3 server (``make s3-up``: moto on
  ``GEOHPC_S3_ENDPOINT``, default 127.0.0.1:9000) in a public-read bucket, read through ``/vsis3/`` unsigned
  (``AWS_NO_SIGN_REQUEST=YES``, ``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR``); without an S3 server, from files;
- ERA5-Land and CHIRPS served by a local weather server (``geohpc.synth.wxserver``: the CDS API for
  ``cdsapi``, CHIRPS ``.tif.gz`` over HTTP) for as long as the demo runs;
- ``python -m geohpc run --pipeline sure2`` with the county's FIELDS, STAC, CHIRPS_URL and TRUTH on its make
  line: make run submits weather, planner jobs plan each later step once the steps it reads are done (retries
  included); the demo waits for the run to end (``run --wait``) and prints the summary. On the local executor
  (no Slurm) make run itself runs the steps in order.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from geohpc.errors import ConfigError, InputError, ServiceError, run_cli
from geohpc.util import REPO, write_json_atomic

YEARS, CLIM_YEARS = (2021, 2022), (2018, 2019, 2020, 2021, 2022)
BUCKET = "geohpc-sure2"
TOKEN = "demo-cds-key"  # the local weather server's key (not a secret: it serves synthetic data)
PIPELINE = "sure2"  # pipelines/sure2.toml
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


def _pipeline(sets: dict[str, str], env: dict[str, str]) -> Path:
    """``make run PIPELINE=sure2 SITE=local`` with ``sets`` on its make line; the pipeline run folder."""
    cmd = [sys.executable, "-m", "geohpc", "run", "--pipeline", PIPELINE, "--site", "local"]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    for line in proc.stdout.splitlines():
        print(f"== sure2 demo: {line}", file=sys.stderr, flush=True)
    folder = re.search(r"run folder (\S+)", proc.stdout)
    if proc.returncode != 0 or folder is None:
        raise ConfigError(f"make run PIPELINE={PIPELINE} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return Path(folder.group(1))


def run_demo(out: str | Path, clusters: int = 6, per: int = 25, cloud: float = 0.3, shards: int = 4,
             s3: str = "auto", seed: int = 0) -> dict[str, Any]:
    """Make the county, publish it, run pipelines/sure2.toml on it, wait for its end; the paths and the summary."""
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
    with WeatherServer(county.raw, token=TOKEN) as srv:  # up until the pipeline ended: its weather jobs fetch from it
        env["CDSAPI_URL"] = srv.cds_url
        sets = {"FIELDS": str(county.fields), "STAC": str(stac), "YEARS": f"{CLIM_YEARS[0]}-{CLIM_YEARS[-1]}",
                "MONTHS": "4-7", "SHARDS": str(shards), "OUT": str(out), "CHIRPS_URL": srv.chirps_url,
                "TRUTH": str(county.truth), "CPUS": "1", "MEM": "2G"}
        folder = _pipeline(sets, env)
        proc = subprocess.run([sys.executable, "-m", "geohpc", "run", "--wait", "--pipeline", PIPELINE, "--run",
                               str(folder)], env=env, cwd=REPO)
    if proc.returncode != 0:
        states = {p.stem: json.loads(p.read_text()).get("state") for p in sorted((folder / "steps").glob("*.json"))}
        bad = [s for s in CHAIN if states.get(s) != "done"]
        raise InputError(f"{folder}: step {bad[0] if bad else '?'} did not finish ({states.get(bad[0]) if bad else '?'}): "
                         f"make status PIPELINE={PIPELINE}, logs/<stage>_*.out")
    summary = json.loads((out / "collect" / "summary.json").read_text())
    return {"report": str(out / "collect" / "report.html"), "run": str(folder), "summary": summary}


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
