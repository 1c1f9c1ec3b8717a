"""Every recorded site-command output in fixtures/ parses into the numbers it shows."""

from __future__ import annotations

from pathlib import Path

import pytest
from geohpc.preflight.quota import (
    QuotaParseError,
    detect_kind,
    entry_for,
    iec_size,
    parse_df,
    parse_dusage,
    parse_lfs_quota,
    parse_lumi_quota,
    parse_quota_output,
)

FIXTURES = Path(__file__).parent / "fixtures"
KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40


def read(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_every_fixture_is_recognised_and_parses() -> None:
    quota_files = sorted(p for p in FIXTURES.glob("*.txt") if not p.name.startswith("seff"))
    assert len(quota_files) >= 30
    for p in quota_files:
        text = p.read_text()
        if "error" in p.name:
            with pytest.raises(QuotaParseError, match="not on a mounted Lustre"):
                parse_quota_output(text)
            continue
        entries = parse_quota_output(text)
        assert entries, p.name
        assert all(e.used >= 0 for e in entries), p.name


@pytest.mark.parametrize("name,kind", [
    ("lfs-quota-h-p.8.txt", "lfs"), ("lfs-quota.1.txt", "lfs"), ("lumi-workspaces.1.txt", "lumi-quota"),
    ("csc-workspaces.5.txt", "lumi-quota"), ("dusage.1.txt", "dusage"), ("dusage.4.txt", "dusage"),
    ("dusage.6.txt", "dusage"), ("dusage-p.1.txt", "dusage"),
])
def test_detect_kind(name: str, kind: str) -> None:
    assert detect_kind(read(name)) == kind


def test_lfs_human_units_are_binary() -> None:
    (e,) = parse_lfs_quota(read("lfs-quota-h-u.2.txt"))
    assert e.path == "./"
    assert e.used == int(792.3 * MiB)
    assert e.hard == int(9.537 * TiB) and e.soft is None  # 0k = no limit
    assert (e.files, e.files_hard) == (9, 2_000_000)
    assert e.free == e.hard - e.used and not e.over


def test_lfs_over_quota_stars_bytes_and_files() -> None:
    (e,) = parse_lfs_quota(read("lfs-quota-h-p.6.txt"))
    assert e.used == int(700.1 * MiB) and e.soft == 90 * MiB and e.hard == 100 * MiB
    assert e.over and e.files_over and e.files == 2002 and e.files_hard == 1500
    assert e.free == 0
    (e5,) = parse_lfs_quota(read("lfs-quota-h-p.5.txt"))
    assert e5.over and not e5.files_over and e5.used == 200 * MiB


def test_lfs_wrapped_long_path() -> None:
    (e,) = parse_lfs_quota(read("lfs-quota-h-p.2.txt"))
    assert e.path == "/hpc/projects/group.royer"
    assert e.used == int(322.5 * TiB) and e.hard == 327 * TiB and e.files == 18_005_642
    (e3,) = parse_lfs_quota(read("lfs-quota-h-p.3.txt"))
    assert e3.path == "/mnt/storage_5/scratch" and e3.used == int(526.5 * MiB) and e3.hard == TiB


def test_lfs_kbytes_and_brackets() -> None:
    (e,) = parse_lfs_quota(read("lfs-quota.1.txt"))
    assert e.used == 1041408 * KiB and e.soft == 5242880 * KiB and e.hard == 6291456 * KiB
    assert e.files == 0 and e.approximate


def test_lfs_newer_header_and_trailers() -> None:
    (e,) = parse_lfs_quota(read("lfs-quota-h-p.8.txt"))
    assert (e.path, e.used, e.hard, e.files, e.files_hard) == ("/home", int(2.42 * GiB), 50 * GiB, 511, 1_000_000)
    (g,) = parse_lfs_quota(read("lfs-quota-h-g.1.txt"))
    assert g.used == int(5.95 * GiB) and g.hard == 50 * TiB and g.files == 60751
    (u,) = parse_lfs_quota(read("lfs-quota-h-u.4.txt"))
    assert u.used == 0 and u.soft == 8 * TiB and u.hard == 10 * TiB and u.files_hard == 36_000_000
    (m,) = parse_lfs_quota(read("lfs-quota-h-u.5.txt"))
    assert m.path == "/home/mila" and m.hard == 100 * GiB and m.files == 921718


def test_lumi_workspaces_si_units() -> None:
    entries = {e.path: e for e in parse_lumi_quota(read("lumi-workspaces.1.txt"))}
    assert set(entries) == {"/users/alfiolaz", "/projappl/project_465002906", "/scratch/project_465002906",
                            "/flash/project_465002906"}
    home = entries["/users/alfiolaz"]
    assert (home.used, home.hard, home.files, home.files_hard) == (19 * 10**9, 22 * 10**9, 62_000, 100_000)
    scratch = entries["/scratch/project_465002906"]
    assert (scratch.used, scratch.hard, scratch.files, scratch.files_hard) == (8200, 55 * 10**12, 2, 2_000_000)
    assert entries["/flash/project_465002906"].hard == 2.2e12
    assert entry_for(list(entries.values()), "/scratch/project_465002906/romcrop/outputs") is scratch


def test_csc_workspaces_every_layout() -> None:
    over = {e.path: e for e in parse_lumi_quota(read("csc-workspaces.2.txt"))}
    e = over["/scratch/project_2001234"]
    assert e.over and e.used == 7.2e12 and e.hard == 7e12 and e.files == 2_700_000
    hand = {e.path: e for e in parse_lumi_quota(read("csc-workspaces.3.txt"))}
    assert hand["/scratch/project_2001234"].used == 7.2e12 and hand["/scratch/project_2001234"].hard == 10**13
    assert hand["/scratch/project_2000123"].files_hard == 500_000  # lowercase k
    assert hand["/projappl/project_2000123"].over  # 24G/15G with no star
    old = {e.path: e for e in parse_lumi_quota(read("csc-workspaces.4.txt"))}
    assert old["/projappl/project_2012345"].used == 3_056_000_000 and old["/scratch/project_2012345"].files == 150_530
    oldest = {e.path: e for e in parse_lumi_quota(read("csc-workspaces.5.txt"))}
    s = oldest["/scratch/project_2000040"]
    assert s.over and s.used == 1.098e12 and s.hard == 10**12 and s.files == 20
    assert oldest["/users/jdoe"].files == 680


def test_dusage_v03_soft_hard_and_spaced_counts() -> None:
    rows = parse_dusage(read("dusage.1.txt"))
    assert len(rows) == 6
    assert rows[0].path == "/cluster/" and rows[0].limit is None and rows[0].files == 235_068
    home = rows[1]
    assert home.used == round(5.4 * GiB) and home.soft == home.hard == 20 * GiB
    assert (home.files, home.files_soft, home.files_hard) == (39_921, 100_000, 100_000)
    proj = rows[3]
    assert proj.used == round(1.7 * TiB) and proj.hard == 2 * TiB and proj.files == 1_036_089
    assert rows[5].used == round(134.2 * MiB) and rows[5].files == 168


def test_dusage_v02_and_v020_dash_means_none() -> None:
    rows = parse_dusage(read("dusage.2.txt"))
    assert rows[0].limit is None and rows[0].files_limit is None and rows[0].files == 13_243
    assert rows[3].used == round(1.6 * TiB) and rows[3].hard == 2 * TiB and rows[3].files_hard == 2_000_000
    rows3 = parse_dusage(read("dusage.3.txt"))
    assert len(rows3) == 7 and rows3[2].used == 12 * KiB and rows3[6].files == 1_889_937


def test_dusage_legacy_framed_and_nird() -> None:
    legacy = parse_dusage(read("dusage.4.txt"))
    assert [e.path for e in legacy][:2] == ["username_g $HOME", "username username (u)"]
    assert legacy[0].used == GiB and legacy[0].hard == 20 * GiB and legacy[1].limit is None
    assert parse_dusage(read("dusage.5.txt"))[0].used == 0
    framed = parse_dusage(read("dusage.6.txt"))
    assert [e.path for e in framed] == ["/cluster/home/auve", "/cluster/projects/nn9864k"]
    assert framed[1].used == round(35.8 * GiB) and framed[1].hard == 10 * TiB and framed[1].files_hard == 1_048_576
    (nird,) = parse_dusage(read("dusage-p.1.txt"))
    assert nird.path == "NS9864K" and nird.used == 8_844 * 10**9 and nird.hard == 10**13
    assert (nird.files, nird.files_hard) == (150_574, 307_200)


def test_df_and_df_i() -> None:
    text = ("Filesystem     1024-blocks     Used Available Capacity Mounted on\n"
            "/dev/vda         264212084 27642048  78748864      26% /\n"
            "Filesystem       Inodes  IUsed    IFree IUse% Mounted on\n"
            "/dev/vda       16777216 470959 16306257    3% /\n")
    (e,) = parse_df(text)
    assert e.used == 27642048 * KiB and e.free == 78748864 * KiB
    assert e.files == 470959 and e.files_free == 16306257


def test_ansi_colours_and_units() -> None:
    assert parse_dusage("\x1b[1m" + read("dusage.1.txt") + "\x1b[0m")[1].hard == 20 * GiB
    assert iec_size("0 Bytes") == 0 and iec_size("") is None and iec_size("10TB") == 10**13


def test_quota_cli_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    from geohpc.preflight.quota.cli import main

    assert main([str(FIXTURES / "lfs-quota-h-p.7.txt")]) == 0
    assert '"files": 12002' in capsys.readouterr().out
    assert main([str(FIXTURES / "lfs-quota-error.1.txt")]) == 2


def test_variants_from_the_tools_source_formats() -> None:
    """Layouts documented from the tools' code (no public sample): lumi-quota -v, lfs -v, lfs -q."""
    verbose = ("\nFilesystem                                   Used Quota Limit Files Quota Limit\n\n"
               + "-" * 79 + "\n"
               + f"{'/scratch/project_465002906':<40} {'8.2K':>8} {'55T':>5} {'55T':>5} {'2':>5} {'2.0M':>5} "
                 f"{'2.0M':>5}\n")  # lumi-quota.sh: printf "%-40s %8s %5s %5s %5s %5s %5s"
    (e,) = parse_quota_output(verbose)
    assert (e.path, e.used, e.hard, e.files, e.files_hard) == ("/scratch/project_465002906", 8200, 55 * 10**12,
                                                                2, 2_000_000)
    with pytest.raises(QuotaParseError, match="not an active project"):
        parse_lumi_quota("project_1 is not an active project with quota\n")
    lfs_v = ("Disk quotas for usr bob (uid 500):\n"
             "     Filesystem  kbytes   quota   limit   grace   files   quota   limit   grace\n"
             "        /lustre    2048*   1000    1024   6d23h      10       0       0       -\n"
             "lustre-MDT0000_UUID\n"
             "                      0       -       0       -      10       -       0       -\n"
             "lustre-OST0000_UUID\n"
             "                   2048       -    1024       -       -       -       -       -\n")
    (v,) = parse_lfs_quota(lfs_v)
    assert v.path == "/lustre" and v.used == 2 * MiB and v.over and v.hard == MiB
    quiet = "        /lustre  99.98M      0k      0k       -       3       0       0       -\n"
    (q,) = parse_quota_output(quiet, "lfs")
    assert q.used == int(99.98 * MiB) and q.limit is None
