"""The ransomware tripwire in a real upload against Samba: a run that would replace most of
the share's files, or turn documents into random bytes, stops before replacing anything
(exit 2), leaves the share exactly as it was, and goes ahead only with --force."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from helpers import Result, add_profile, run_cli, tree_bytes
from samba import SambaServer

pytestmark = pytest.mark.samba
OLD = 1_600_000_000


def documents(local: Path, count: int) -> None:
    for n in range(count):
        path = local / f"docs/letter-{n:03d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"Dear customer {n},\n" + "thank you for your order. " * 200)
        os.utime(path, (OLD, OLD))


def encrypt(local: Path, numbers: range) -> None:
    rng = random.Random(7)
    for n in numbers:
        path = local / f"docs/letter-{n:03d}.txt"
        path.write_bytes(rng.randbytes(path.stat().st_size + 16))


@pytest.fixture
def office(tmp_path: Path, samba: SambaServer, remote_dir: str) -> tuple[Path, Path, Path]:
    local, config = tmp_path / "local", tmp_path / "config"
    local.mkdir()
    add_profile(config, "p", local, samba.port, remote_dir, samba.user, samba.password)
    return local, config, samba.share_path("backup") / remote_dir


def share_state(share: Path) -> dict:
    return tree_bytes(share, skip=(".backdown",)) | {
        "versions": sorted(os.listdir(share / ".backdown"))
    }


def refused(result: Result, *words: str) -> None:
    assert result.code == 2, result
    line = result.err.strip()
    assert "\n" not in line and "--force" in line, result
    for word in words:
        assert word in line, result


def test_most_files_replaced_stops_the_run_and_the_share_is_unchanged(
    office: tuple[Path, Path, Path],
) -> None:
    local, config, share = office
    documents(local, 50)
    assert run_cli(["upload", "p"], config).code == 0
    before = share_state(share)
    encrypt(local, range(40))  # 80% of the files overwritten with random bytes

    refused(run_cli(["upload", "p"], config), "40 of 50 files on the share (80%)")
    assert share_state(share) == before
    status = run_cli(["status"], config)
    assert status.code == 5 and "FAILING" in status.out, status

    dry = run_cli(["upload", "p", "--dry-run", "--json"], config)
    assert dry.code == 0 and "--force" in " ".join(json.loads(dry.out)["notes"]), dry
    assert share_state(share) == before

    forced = run_cli(["upload", "p", "--force", "--json"], config)
    assert forced.code == 0, forced
    assert json.loads(forced.out)["files_versioned"] == 40
    assert (share / "docs/letter-000.txt").read_bytes() == (
        local / "docs/letter-000.txt"
    ).read_bytes()


def test_documents_turned_into_random_bytes_stop_the_run_below_the_percentage(
    office: tuple[Path, Path, Path],
) -> None:
    local, config, share = office
    documents(local, 100)
    assert run_cli(["upload", "p"], config).code == 0
    before = share_state(share)
    encrypt(local, range(0, 100, 4))  # 25 files: below --max-change, but all random now
    refused(run_cli(["upload", "p"], config), "look encrypted")
    assert share_state(share) == before
    # An ordinary day's edits go through.
    assert run_cli(["upload", "p", "--force"], config).code == 0
    for n in (1, 2, 3):
        (local / f"docs/letter-{n:03d}.txt").write_text("edited by hand")
    assert run_cli(["upload", "p"], config).code == 0


def test_max_change_can_be_raised_and_bad_values_are_refused(
    office: tuple[Path, Path, Path],
) -> None:
    local, config, share = office
    documents(local, 30)
    assert run_cli(["upload", "p"], config).code == 0
    for n in range(20):
        (local / f"docs/letter-{n:03d}.txt").write_text(f"new text {n}")
    refused(run_cli(["upload", "p"], config), "20 of 30")
    assert run_cli(["upload", "p", "--max-change", "70"], config).code == 0
    bad = run_cli(["upload", "p", "--max-change", "120"], config)
    assert bad.code == 2 and "--max-change" in bad.err
