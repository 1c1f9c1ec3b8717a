"""No secret leaves: one redaction for every form, run files that carry values owner-only, a SAS token in a STAC
URL given to make submit never in clear in its output, DRY_RUN, plan.json, commands or the job's log."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest
from geohpc.util import redact
from relutil import record
from runs_helpers import REPO, clean_env, submit_here

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(300)]

S = "S3CR3Tv4lue9xQ"  # the secret part of every case below
FORMS = {
    "SAS sig= last": f"https://acct.blob.core.windows.net/c/x.tif?sv=2024-01-01&se=2030-01-01&sp=r&sig={S}",
    "SAS sig= first": f"https://acct.blob.core.windows.net/c/x.tif?sig={S}&sv=2024-01-01",
    "SAS sig= middle, /vsicurl/": f"/vsicurl/https://acct.blob.core.windows.net/c/x.tif?sv=1&sig={S}&sp=r",
    "SAS sig= bare argument": f"--token-arg sig={S}",
    "SAS sig= URL-encoded": f"https://x/y.tif%3Fsv%3D1%26sig%3D{S}",
    "X-Amz-Signature": f"https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature={S}",
    "X-Amz-Credential": f"https://b.s3.amazonaws.com/k?X-Amz-Credential={S}%2F20240101&X-Amz-Date=20240101T000000Z",
    "X-Amz-Security-Token": f"https://b.s3.amazonaws.com/k?X-Amz-Security-Token={S}",
    "token= query": f"https://api.example.com/items?limit=5&token={S}",
    "access_token= query": f"https://api.example.com/items?access_token={S}",
    "key= query": f"https://api.example.com/tiles?key={S}&z=3",
    "apikey= query": f"https://api.example.com/tiles?apikey={S}",
    "api_key= query": f"https://api.example.com/tiles?api_key={S}",
    "user:password@host": f"https://alice:{S}@data.example.com/stac.json",
    "s3 user:password@host": f"s3://AKID:{S}@minio.local/bucket",
    "Authorization: Bearer": f"curl -H 'Authorization: Bearer {S}' https://x",
    "Authorization: Basic": f"Authorization: Basic {S}",
    "bare Bearer": f"sent Bearer {S}abcdef to the server",
    "AWS access key id AKIA": "key AKIA" + "ABCDEFGHIJKLMNOP" + " in a message",
    "AWS session key id ASIA": "ASIA" + "QRSTUVWXYZ234567",
    "env AWS_SECRET_ACCESS_KEY": f"export AWS_SECRET_ACCESS_KEY='{S}/abc+def'",
    "env AWS_SESSION_TOKEN": f"AWS_SESSION_TOKEN={S}",
    "env AZURE_STORAGE_SAS_TOKEN": f"export AZURE_STORAGE_SAS_TOKEN='sv=2024&sig={S}'",
    "env *_PASSWORD": f"DB_PASSWORD={S}",
    "env *_KEY": f"AZURE_STORAGE_KEY={S}",
    "credentials file": f"aws_secret_access_key = {S}",
    "JSON token": f'{{"access_token": "{S}", "expires": 3600}}',
    "Azure connection string": f"DefaultEndpointsProtocol=https;AccountName=a;AccountKey={S};EndpointSuffix=x",
    "GitHub token ghp_": "ghp_" + S + "a" * 22,
    "GitHub fine-grained token": "github_pat_" + S + "_" + "b" * 40,
    "GitLab token glpat-": "glpat-" + S + "cdefgh",
    "Slack token": "xoxb-1234-" + S,
    "Hugging Face token": "hf_" + S + "A" * 24,
    "JWT": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0." + S + "sigpart",
    "PEM private key": f"-----BEGIN PRIVATE KEY-----\nMIIE{S}\n-----END PRIVATE KEY-----",
}
SECRET_OF = {"AWS access key id AKIA": "ABCDEFGHIJKLMNOP", "AWS session key id ASIA": "QRSTUVWXYZ234567"}


@pytest.mark.parametrize("form", list(FORMS))
def test_each_secret_form_is_redacted(form: str) -> None:
    text = FORMS[form]
    out = redact(text)
    ok = SECRET_OF.get(form, S) not in out and "REDACTED" in out and redact(out) == out
    record("secret", "redact", form, ok)
    assert ok, out


@pytest.mark.parametrize("text", [
    "/scratch/project_465002500/outputs/tokens/x.tif", "export GEOHPC_OUT=/scratch/p/outputs/cog",
    "MIN_TMP_GB=10 TIME=04:00:00 MEM=8G", "no tokens: check the path", "https://earth-search.aws/v1/search?limit=5",
    "BLOCKSIZE=512 COG_MEM=1G keyboard=us", "ss=3 st=4 sp=r (not a query string)",
])
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def _submit_sas(tmp_path: Path, **extra: str):
    items = tmp_path / "items.txt"
    items.write_text("S2A_T35_20240601\n")
    stac = f"http://127.0.0.1:9/stac/items.json?sv=2024-01-01&se=2030-01-01&sp=r&sig={S}"
    return submit_here("download", ITEMS=str(items), STAC=stac, BBOX="500000,5000000,500500,5000500",
                       OUT_DIR=str(tmp_path / "dl"), **extra)


def test_sas_in_a_stac_url_stays_out_of_dry_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOHPC_RUNS_DIR", str(tmp_path / "runs"))
    run, printed = _submit_sas(tmp_path, DRY_RUN="1")
    ok = run is None and S not in printed and "sig=REDACTED" in printed and "STAC=" in printed
    record("secret", "submit DRY_RUN=1", "SAS in STAC URL", ok)
    assert ok, printed


def test_sas_in_a_stac_url_never_in_clear_and_run_files_owner_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GEOHPC_RUNS_DIR", str(tmp_path / "runs"))
    run, printed = _submit_sas(tmp_path, EXECUTOR="local", FORCE="1")
    assert run is not None
    states = [json.loads(p.read_text()) for p in (run.path / "local").glob("*.json")]
    assert [s["state"] for s in states] == ["FAILED"]  # the URL is unreachable: the job ran and failed
    log = Path(states[0]["log"]).read_text()
    leaks = {"submit output": printed, "job log": log}
    for name in ("plan.json", "commands.sh", "sources.txt", "manifest.txt"):
        leaks[name] = (run.path / name).read_text()
    for where, text in leaks.items():
        record("secret", "submit", f"SAS in STAC URL: {where}", S not in text)
    assert {k for k, v in leaks.items() if S in v} == set()
    assert "python -m geohpc download --items" in log and "sig=REDACTED" in log  # the job's line, redacted
    # the job still needs the real value: job.env and spec.json keep it, readable by the owner only
    assert S in (run.path / "job.env").read_text() and S in (run.path / "spec.json").read_text()
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in run.path.iterdir() if p.is_file()}
    private = {n: m for n, m in modes.items() if n in ("job.env", "spec.json", "commands.sh", "plan.json", "sources.txt")}
    ok = len(private) == 5 and set(private.values()) == {0o600}
    record("secret", "submit", "run files that carry values are mode 0600", ok)
    assert ok, modes


def test_python_m_geohpc_redacts_its_job_log_line_and_argparse_errors(tmp_path: Path) -> None:
    env = {**clean_env(), "PYTHONPATH": str(REPO / "py"), "GEOHPC_JOB_LOG": "1"}
    proc = subprocess.run([str(REPO / ".venv/bin/python"), "-m", "geohpc", "probe", "--out", str(tmp_path / "p.json"),
                           "--bogus", FORMS["SAS sig= last"]], capture_output=True, text=True, env=env, timeout=60)
    lines = proc.stderr.splitlines()
    ok = proc.returncode == 2 and S not in proc.stderr and lines[0].startswith("== ") and \
        "python -m geohpc probe --out" in lines[0] and "sig=REDACTED" in lines[0]
    record("secret", "python -m geohpc", "job log line and argparse error", ok)
    assert ok, proc.stderr
