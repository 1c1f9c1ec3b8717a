"""Helpers for the site-facing ops tests: the loopback sshd alias and a geohpc runner like make's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SSHD_DIR = Path(os.environ.get("GEOHPC_SSHD_DIR", "/tmp/geohpc-sshd"))
SSH_CONFIG = SSHD_DIR / "ssh_config"
ALIAS = "geohpc-loopback"


def sshd_up() -> None:
    """Assert the loopback sshd answers (sh/sshd_test.sh up)."""
    proc = subprocess.run(["ssh", "-F", str(SSH_CONFIG), ALIAS, "true"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"loopback sshd not up (sh/sshd_test.sh up): {proc.stderr}"


def geohpc(command: str, *args: str, remote: str = ALIAS, ssh_config: Path = SSH_CONFIG,
           **sets: str) -> subprocess.CompletedProcess[str]:
    """``python -m geohpc COMMAND --site local --ssh-config ... --set REMOTE=<alias> --set K=V ... ARGS``."""
    cmd = [sys.executable, "-m", "geohpc", command, "--site", "local", "--ssh-config", str(ssh_config)]
    for key, value in {"REMOTE": remote, **sets}.items():
        cmd += ["--set", f"{key}={value}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "GEOHPC_"))}
    env["PYTHONPATH"] = str(REPO / "py")
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=300)


def make(*args: str) -> subprocess.CompletedProcess[str]:
    """``make -s ARGS`` in the repo, as a user types it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "GEOHPC_"))}
    env["SSH_CONFIG"] = str(SSH_CONFIG)
    return subprocess.run(["make", "-s", *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=300)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """Assert exit 2 with exactly one line on stderr; return it."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, (proc.returncode, proc.stdout, proc.stderr)
    return lines[0]


def closed_port_config(tmp: Path) -> Path:
    """An ssh config whose alias ``geohpc-closed`` points at a closed port: ssh fails at once."""
    cfg = tmp / "ssh_config_closed"
    cfg.write_text("Host geohpc-closed\n  HostName 127.0.0.1\n  Port 1\n  BatchMode yes\n  ConnectTimeout 5\n")
    return cfg
