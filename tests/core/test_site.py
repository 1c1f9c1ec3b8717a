"""Site files: parsing, precedence (command line > site file > shell), shadowing, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from geohpc.core.site import REQUIRED_KEYS, SITES_DIR, load_site, parse_env_file, parse_makeflags, site_names
from geohpc.errors import ConfigError


def _site_dir(tmp_path: Path, extra: str = "", drop: str = "") -> Path:
    lines = [f"{k}=" for k in REQUIRED_KEYS if k != drop]
    text = "\n".join(lines).replace("SITE_NAME=", "SITE_NAME=t").replace("ACCOUNT=", "ACCOUNT=proj_1")
    (tmp_path / "t.env").write_text("# test site\n" + text + "\n" + extra)
    return tmp_path


def test_real_sites_load_with_known_values(clean_env: None) -> None:
    assert {"local", "lumi", "saga", "betzy"} <= set(site_names())
    lumi = load_site("lumi", cli={}, env={})
    assert lumi.get("ACCOUNT") == "project_465002500"
    assert lumi.get("PARTITION_GPU") == "small-g,standard-g"  # small-g first (lumi.md error 7, emb-lumi.md)
    assert lumi.int("GPUS_PER_NODE") == 8
    assert lumi.get("REMOTE") == "lumi2"
    assert "--rocm" not in lumi.get("CONTAINER_BIND")
    saga = load_site("saga", cli={}, env={})
    assert saga.get("ACCOUNT") == "nn12037k" and saga.get("INTERNET") == "no" and saga.int("PURGE_DAYS") == 21
    assert saga.int("MAX_ARRAY_SIZE") == 1000
    betzy = load_site("betzy", cli={}, env={})
    assert betzy.get("GPU_VENDOR") == "cuda" and betzy.int("GPUS_PER_NODE") == 4
    assert betzy.get("ACCOUNT") == "nn12037k" and betzy.get("PARTITION_CPU") == "preproc"
    assert betzy.get("PART_NORMAL").startswith("maxtime:4-00:00:00,mem:no,nodes:4-")
    assert saga.get("GPUS_PER_NODE") == "" and saga.get("PYTORCH_SIF") == ""  # unknown stays empty, never invented


def test_every_site_file_line_names_its_source_chapter() -> None:
    """Each non-local site file says which field-guide chapters its values come from."""
    for name in ("lumi", "saga", "betzy"):
        head = (SITES_DIR / f"{name}.env").read_text().split("SITE_NAME", 1)[0]
        assert ".md" in head, name


def test_precedence_and_sources(tmp_path: Path) -> None:
    d = _site_dir(tmp_path, extra="PARTITION_CPU=small\n")
    site = load_site(
        "t", cli={"PARTITION_CPU": "big"}, env={"ACCOUNT": "stray", "SCRATCH": "/from/shell"}, sites_dir=d
    )
    assert site.values["PARTITION_CPU"] == "big" and site.sources["PARTITION_CPU"] == "command line"
    # a shell variable never beats a non-empty site value, but it is reported
    assert site.values["ACCOUNT"] == "proj_1" and site.sources["ACCOUNT"] == "site file"
    assert site.shadowed["ACCOUNT"] == ("stray", "proj_1")
    assert "shell variable ACCOUNT=stray ignored" in site.report()
    # an empty site value may be filled from the shell, and says so
    assert site.values["SCRATCH"] == "/from/shell" and site.sources["SCRATCH"] == "shell variable"


def test_missing_required_key(tmp_path: Path) -> None:
    d = _site_dir(tmp_path, drop="MAX_ARRAY_SIZE")
    with pytest.raises(ConfigError, match=r"t.env: missing required key\(s\) MAX_ARRAY_SIZE"):
        load_site("t", cli={}, env={}, sites_dir=d)


@pytest.mark.parametrize(
    "line, match",
    [
        ('ACCOUNT="quoted"', "quotes"),
        ("ACCOUNT=$HOME", "shell characters"),
        ("export ACCOUNT=x", "not a KEY=value"),
        ("ACCOUNT=a b", "spaces"),
    ],
)
def test_bad_lines(tmp_path: Path, line: str, match: str) -> None:
    f = tmp_path / "x.env"
    f.write_text(line + "\n")
    with pytest.raises(ConfigError, match=match):
        parse_env_file(f)


def test_bad_values(tmp_path: Path) -> None:
    d = _site_dir(tmp_path, extra="INTERNET=maybe\n")
    with pytest.raises(ConfigError, match="INTERNET=maybe is not one of no, yes"):
        load_site("t", cli={}, env={}, sites_dir=d)
    d = _site_dir(tmp_path, extra="MAX_ARRAY_SIZE=lots\n")
    with pytest.raises(ConfigError, match="must be a non-negative integer"):
        load_site("t", cli={}, env={}, sites_dir=d)


def test_unknown_and_hostile_site_names(tmp_path: Path) -> None:
    for name in ("nowhere", "lumi;rm -rf /", "../lumi", ""):
        with pytest.raises(ConfigError, match="valid SITEs are"):
            load_site(name, cli={}, env={})


def test_parse_makeflags() -> None:
    assert parse_makeflags("w -- SITE=lumi THROTTLE=4") == {"SITE": "lumi", "THROTTLE": "4"}
    assert parse_makeflags(r" -- ARGS=--a\ --b DRY_RUN=1") == {"ARGS": "--a --b", "DRY_RUN": "1"}
    assert parse_makeflags("w") == {}
