"""Retention on the real Samba share: three weeks of daily backups on an injected clock,
with keep_versions_days 1, keep_daily 3 and keep_weekly 2, keep exactly the snapshots the
rules name and the versions those snapshots need (and the last copy of a removed file);
the folder then still restores as of every kept snapshot."""

from __future__ import annotations

import calendar
import json
import os
from pathlib import Path

import pytest
from helpers import add_profile, run_cli, tree_bytes
from samba import SambaServer

from backdown import engine
from backdown.engine import Collaborators
from backdown.profile_store import ProfileStore
from backdown.progress import Fanout
from backdown.run_options import RunOptions

pytestmark = pytest.mark.samba


def noon(day: int) -> float:
    """November `day` 2026, 12:00 UTC (1 November is a Sunday)."""
    return float(calendar.timegm((2026, 11, day, 12, 0, 0)))


def stamp(day: int) -> str:
    return f"202611{day:02d}T120000.000Z"


@pytest.fixture
def weeks(tmp_path: Path, samba: SambaServer, remote_dir: str) -> tuple[Path, Path, Path]:
    local, config = tmp_path / "local", tmp_path / "config"
    local.mkdir()
    add_profile(config, "p", local, samba.port, remote_dir, samba.user, samba.password,
                extra=["--mode", "mirror", "--keep-versions-days", "1", "--keep-daily", "3",
                       "--keep-weekly", "2"])  # fmt: skip
    store = ProfileStore.load(config)
    profile = store.get("p")
    for day in range(1, 22):
        report = local / "report.txt"
        report.write_text(f"report of day {day}")
        os.utime(report, (noon(day) - 60, noon(day) - 60))
        if day == 1:
            (local / "old-plan.txt").write_text("removed on day 5")
        if day == 5:
            (local / "old-plan.txt").unlink()
        clock = noon(day)
        result = engine.backup(profile, samba.password, RunOptions(), Fanout(), config,
                               Collaborators(clock=lambda clock=clock: clock,
                                             clock_checked_by_server=False))  # fmt: skip
        assert result.ok, result
    return local, config, samba.share_path("backup") / remote_dir


def test_the_rules_keep_exactly_these_snapshots_and_versions(
    weeks: tuple[Path, Path, Path],
) -> None:
    local, config, share = weeks
    snapshots = sorted(os.listdir(share / ".backdown" / "snapshots"))
    assert [name.split(".")[0][:8] for name in snapshots] == [
        "20261115", "20261119", "20261120", "20261121"
    ]  # fmt: skip
    versions = share / ".backdown" / "versions"
    kept = {s: sorted(p.relative_to(versions / s).as_posix() for p in (versions / s).rglob("*"))
            for s in os.listdir(versions)}  # fmt: skip
    assert kept == {
        stamp(5): ["old-plan.txt"],  # the last copy of a removed file
        stamp(16): ["report.txt"],  # day 15's report: the kept snapshot of 15 needs it
        stamp(20): ["report.txt"],  # day 19's: not older than one day... and needed
        stamp(21): ["report.txt"],  # day 20's
    }, kept
    assert (versions / stamp(16) / "report.txt").read_text() == "report of day 15"


def test_every_kept_snapshot_restores_and_a_dry_run_prunes_nothing_more(
    weeks: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    local, config, share = weeks
    for day in (15, 19, 20, 21):
        target = tmp_path / f"as-of-{day}"
        when = f"2026-11-{day:02d} 23:00"
        result = run_cli(["download", "p", "--to", str(target), "--as-of", when], config)
        assert result.code == 0, result
        assert tree_bytes(target) == {"report.txt": f"report of day {day}".encode()}
    dry = run_cli(["prune", "p", "--dry-run", "--json"], config)
    assert dry.code == 0, dry
    data = json.loads(dry.out)
    assert data["versions_removed"] == [] and data["snapshots_forgotten"] == []
    reasons = {k["id"][:8]: k["reasons"] for k in data["snapshots_kept"]}
    assert reasons["20261115"] == ["weekly"] and "daily" in reasons["20261119"]
    assert reasons["20261121"][0] == "newest"
