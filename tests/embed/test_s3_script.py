"""sh/s3.sh: the demo's local S3 server (moto) starts on loopback, answers S3 calls, and stops."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(repo: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GEOHPC_S3_ENDPOINT": f"127.0.0.1:{port}"}
    return subprocess.run(["bash", str(repo / "sh" / "s3.sh"), *args], capture_output=True, text=True, env=env,
                          timeout=60)


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """sh/ in a scratch repo (its logs/ is where the pid file goes), with this checkout's venv."""
    shutil.copytree(REPO / "sh", tmp_path / "sh")
    venv = REPO / ".venv"
    if venv.exists():
        (tmp_path / ".venv").symlink_to(venv.resolve())
    return tmp_path


@pytest.mark.s3
def test_up_serves_s3_and_down_stops_it(repo_copy: Path) -> None:
    import boto3

    port = _free_port()
    up = _run(repo_copy, port, "up")
    pidfile = repo_copy / "logs" / "s3" / "moto_server.pid"
    try:
        assert up.returncode == 0, up.stderr
        assert f"127.0.0.1:{port}" in up.stdout and pidfile.exists()
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
        s3.create_bucket(Bucket="demo")
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["demo"]
        again = _run(repo_copy, port, "up")
        assert again.returncode == 0 and "already up" in again.stdout
    finally:
        down = _run(repo_copy, port, "down")
    assert down.returncode == 0 and "stopped" in down.stdout and not pidfile.exists()
    assert "down" in _run(repo_copy, port, "status").stdout


def test_a_port_someone_else_holds_is_a_one_line_error(repo_copy: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        r = _run(repo_copy, held.getsockname()[1], "up")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "GEOHPC_S3_ENDPOINT" in r.stderr
    assert not (repo_copy / "logs" / "s3" / "moto_server.pid").exists()


def test_bad_endpoint_and_usage(repo_copy: Path) -> None:
    env = {**os.environ, "GEOHPC_S3_ENDPOINT": "localhost:notaport"}
    r = subprocess.run(["bash", str(repo_copy / "sh" / "s3.sh"), "up"], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "host:port" in r.stderr
    assert _run(repo_copy, 9, "sideways").returncode == 2
