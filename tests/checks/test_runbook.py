"""RUNBOOK.md: the daily make targets are there, and every error entry names a check that exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOPICS = ["GradScaler", "BatchNorm", "GLIBC", "PROJ", "Quota", "SAS token", "Environment variable",
          "Download timeouts", "File extension", "CatBoost", "Purge", "MaxArraySize", "OOM", "--rocm"]


def entries() -> dict[str, dict[str, str]]:
    text = (REPO / "RUNBOOK.md").read_text()
    errors = text.split("\n## Known errors", 1)[1].split("\n## ", 1)[0]
    out: dict[str, dict[str, str]] = {}
    for block in re.split(r"\n### ", errors)[1:]:
        title, _, body = block.partition("\n")
        fields = {}
        for m in re.finditer(r"^- \*\*(Symptom|Cause|Fix|Check):\*\*\s*(.+?)(?=^- \*\*|\Z)", body, re.M | re.S):
            fields[m.group(1)] = " ".join(m.group(2).split())
        out[title.strip()] = fields
    return out


def test_every_entry_is_complete_and_names_an_existing_check() -> None:
    existing = {}
    for p in (REPO / "checks").glob("*.py"):
        m = re.search(r'^NAME = "([a-z_]+)"', p.read_text(), re.M)
        assert m and m.group(1) == p.stem, p
        existing[p.stem] = p
    found = entries()
    assert len(found) >= 14
    for title, fields in found.items():
        assert set(fields) == {"Symptom", "Cause", "Fix", "Check"}, title
        names = re.findall(r"`([a-z_]+)`", fields["Check"])
        assert names, f"{title}: Check names no check"
        for name in names:
            assert name in existing, f"{title}: check {name!r} is not in checks/"


def test_the_fourteen_known_errors_are_covered() -> None:
    titles = " | ".join(entries())
    missing = [t for t in TOPICS if t.lower() not in titles.lower()]
    assert not missing, missing


def test_daily_operations_use_the_make_targets() -> None:
    text = (REPO / "RUNBOOK.md").read_text().split("## Known errors")[0]
    for target in ["make deploy SITE=", "make preflight SITE=", "make submit STAGE=", "make status",
                   "make throttle JOB=", "make resubmit STAGE=", "make cancel", "make purge-guard SITE=",
                   "make rescue SITE="]:
        assert target in text, target
    for site in ("### LUMI", "### Saga and Betzy", "### local"):
        assert site in text
