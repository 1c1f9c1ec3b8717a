"""RUNBOOK.md: the daily make targets are there, and every error entry names a check that exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOPICS = ["GradScaler", "BatchNorm", "GLIBC", "PROJ", "Quota", "SAS token", "Environment variable",
          "Download timeouts", "File extension", "CatBoost", "Purge", "MaxArraySize", "OOM", "--rocm"]


def probe_fields() -> set[str]:
    """Top-level keys of the probe report (the dict ``collect()`` in preflight/probe.py returns)."""
    src = (REPO / "py" / "geohpc" / "preflight" / "probe.py").read_text()
    bodies = [b.split("\ndef ", 1)[0] for b in re.split(r"\ndef _?collect\(", src)[1:]]
    pairs = [m for b in bodies for m in re.findall(r'^\s+"([a-z_]+)":|report\["([a-z_]+)"\]\s*=', b, re.M)]
    return {key or assigned for key, assigned in pairs}


def entries() -> dict[str, dict[str, str]]:
    """Entries of every ``## Known errors...`` section (the original one and the field guide's)."""
    text = (REPO / "RUNBOOK.md").read_text()
    sections = [s for s in re.split(r"\n## ", text) if s.startswith("Known errors")]
    out: dict[str, dict[str, str]] = {}
    for block in [b for sec in sections for b in re.split(r"\n### ", sec)[1:]]:
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
    probe = probe_fields()
    assert {"gpus", "glibc", "env"} <= probe
    assert len(found) >= 14
    for title, fields in found.items():
        assert set(fields) == {"Symptom", "Cause", "Fix", "Check"}, title
        names = re.findall(r"`([a-z_]+(?::[a-z_]+)?)`", fields["Check"])
        assert names, f"{title}: Check names no check"
        for name in names:
            if name.startswith("probe:"):
                assert name.split(":", 1)[1] in probe, f"{title}: {name!r} is not a field of the probe report"
            else:
                assert name in existing, f"{title}: check {name!r} is not in checks/"


GUIDE_TOPICS = ["lua5.3", "No HIP GPUs available", "libfabric", "~40 GB", "WandB", "standard-g",
                "vcloud.data", "GLIBC_2.33", "EPSG:5070", "No module named 'src'", "Disk quota exceeded",
                "--mem", "--nodes", "devel", "/tmp", "cpu_count", "down or drained", "billing", "WebLoader",
                "val_loss=NaN", "DDP", "NCCL", "bottom-up", "module purge", "PyTorch module"]


def test_the_field_guide_errors_are_covered() -> None:
    """Every error the guide's chapters list has an entry (sure2.md's ten bugs live in their own section)."""
    text = " | ".join(f"{t} {f.get('Symptom', '')}" for t, f in entries().items())
    missing = [t for t in GUIDE_TOPICS if t.lower() not in text.lower()]
    assert not missing, missing


def test_proj_entry_says_set_it_in_containers() -> None:
    proj = next(f for t, f in entries().items() if t.startswith("PROJ"))
    assert "PROJ_DATA_FROM=container" in proj["Fix"] and "silently wrong" in proj["Symptom"]
    rocm = next(f for t, f in entries().items() if "--rocm" in t)
    assert "libdrm.so.2: version `GLIBC_2.33' not found" in rocm["Symptom"]


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


def test_sure2_ten_bugs_are_covered() -> None:
    """sure2.md's bugs: 1, 2, 3, 5, 7, 9, 10 as entries with checks; 4, 6, 8 in the run-time table."""
    text = (REPO / "RUNBOOK.md").read_text()
    titles = " | ".join(entries())
    for words in ("HDF error", "ThreadPoolExecutor", "Stale file handle", "0 bytes", "--containall", "empty for hours"):
        assert words in titles, words
    for bug in (4, 6, 8):
        assert f"sure2.md bug {bug})" in text, bug
