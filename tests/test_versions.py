"""Pruning of the versions area and the run record kept on the share, against real Samba."""

from __future__ import annotations

import calendar
import json
import time
from pathlib import Path

import pytest
from helpers import add_profile, run_cli
from samba import SambaServer

from backdown.manifest import parse_stamp, utc_stamp

pytestmark = pytest.mark.usefixtures("transport")


@pytest.fixture
def setup(tmp_path: Path, samba: SambaServer, remote_dir: str) -> tuple[Path, Path, Path]:
    local = tmp_path / "local"
    local.mkdir()
    (local / "a.txt").write_text("a")
    config = tmp_path / "config"
    add_profile(config, "p", local, samba.port, remote_dir, samba.user, samba.password)
    return local, config, samba.share_path("backup") / remote_dir


def _version_folder(samba: SambaServer, share: Path, days_ago: float) -> Path:
    stamp = utc_stamp(time.time() - days_ago * 86400)
    folder = share / ".backdown" / "versions" / stamp
    samba.put_file("backup", str((folder / "old.txt").relative_to(samba.share_path("backup"))),
                   b"kept for a while")  # fmt: skip
    return folder


def test_versions_older_than_the_limit_are_pruned_after_a_clean_run(
    setup: tuple[Path, Path, Path], samba: SambaServer
) -> None:
    local, config, share = setup
    old = _version_folder(samba, share, days_ago=31)
    recent = _version_folder(samba, share, days_ago=29)
    result = run_cli(["upload", "p"], config)
    assert result.code == 0, result
    assert not old.exists()
    assert (recent / "old.txt").read_bytes() == b"kept for a while"


def test_keep_versions_days_zero_keeps_everything(
    setup: tuple[Path, Path, Path], samba: SambaServer
) -> None:
    local, config, share = setup
    assert run_cli(["profile", "edit", "p", "--keep-versions-days", "0"], config).code == 0
    ancient = _version_folder(samba, share, days_ago=3650)
    assert run_cli(["upload", "p"], config).code == 0
    assert (ancient / "old.txt").exists()


def test_nothing_is_pruned_when_a_file_failed(
    setup: tuple[Path, Path, Path], samba: SambaServer
) -> None:
    local, config, share = setup
    old = _version_folder(samba, share, days_ago=90)
    bad = bytes(local / "x") + b"\xff.txt"  # a name that is not UTF-8 cannot be sent
    with open(bad, "wb") as f:
        f.write(b"unsendable")
    result = run_cli(["upload", "p", "--json"], config)
    assert result.code == 1, result
    assert (old / "old.txt").exists()


def test_each_run_is_recorded_on_the_share_for_an_office_report(
    setup: tuple[Path, Path, Path],
) -> None:
    local, config, share = setup
    before = time.time()
    assert run_cli(["upload", "p"], config).code == 0
    records = list((share / ".backdown" / "status").glob("*.p.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["profile"] == "p" and record["ok"] is True
    assert record["files_transferred"] == 1 and record["bytes_transferred"] == 1
    finished = calendar.timegm(time.strptime(record["finished"], "%Y-%m-%dT%H:%M:%SZ"))
    assert int(before) - 1 <= finished <= time.time() + 1
    assert run_cli(["upload", "p"], config).code == 0  # a no-op run is recorded too
    again = json.loads(records[0].read_text())
    assert again["files_transferred"] == 0 and again["finished"] >= record["finished"]


def test_version_folder_names_round_trip() -> None:
    now = 1_796_059_341.982
    assert parse_stamp(utc_stamp(now)) == pytest.approx(now, abs=0.001)
    assert parse_stamp("not-a-stamp") is None
    assert parse_stamp("20261130T172221Z") is None
