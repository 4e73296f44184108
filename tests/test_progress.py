"""The progress bar: shown on a terminal while a run lasts over a second, never otherwise.

Driven through a pseudo-terminal (pexpect) against the real Samba server; a SlowRelay makes
the transfer last a few seconds.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pexpect
from helpers import REPO, SlowRelay, add_profile, assert_same_tree, run_cli
from samba import SambaServer

from backdown.progress import Recording, Tally
from backdown.report import RunReport


def _spawn(args: list[str], config: Path, password: str) -> pexpect.spawn:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKDOWN_")}
    env.update(BACKDOWN_PASSWORD=password, PYTHONPATH=str(REPO), COLUMNS="120", TERM="xterm")
    return pexpect.spawn(
        sys.executable,
        ["-m", "backdown", "--config-dir", str(config), *args],
        env=env,
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 120),
    )


def test_progress_bar_on_a_terminal_and_not_with_quiet(
    tmp_path: Path, samba: SambaServer, remote_dir: str
) -> None:
    local = tmp_path / "local"
    local.mkdir()
    (local / "big.bin").write_bytes(os.urandom(6 << 20))
    (local / "small.txt").write_text("x")
    config = tmp_path / "config"
    with SlowRelay(samba.port, rate=2 << 20) as relay:
        add_profile(config, "p", local, relay.port, remote_dir, samba.user, samba.password)
        child = _spawn(["upload", "p"], config, samba.password)
        child.expect("Backing up")  # the bar, once the run passed a second
        child.expect(r"\d+/2 files")
        child.expect("Backed up 'p': 2 files")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        assert "Traceback" not in (child.before or "")
        assert_same_tree(local, samba.share_path("backup") / remote_dir)

        (local / "big.bin").write_bytes(os.urandom(6 << 20))
        child = _spawn(["upload", "p", "--quiet"], config, samba.password)
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        assert child.before.strip() == ""  # quiet: nothing at all on success


def test_no_progress_bar_when_output_is_not_a_terminal(
    tmp_path: Path, samba: SambaServer, remote_dir: str
) -> None:
    local = tmp_path / "local"
    local.mkdir()
    (local / "big.bin").write_bytes(os.urandom(4 << 20))
    config = tmp_path / "config"
    with SlowRelay(samba.port, rate=2 << 20) as relay:
        add_profile(config, "p", local, relay.port, remote_dir, samba.user, samba.password)
        result = run_cli(["upload", "p"], config, environ={"BACKDOWN_PASSWORD": samba.password})
    assert result.code == 0, result
    assert "Backing up" not in result.out and "\x1b[" not in result.out
    assert result.out.startswith("Backed up 'p': 1 file sent")


def test_subscribers_hear_every_file_and_byte(
    tmp_path: Path, samba: SambaServer, remote_dir: str
) -> None:
    """The engine reports through subscribers: a recording one sees each file and byte."""
    from backdown import engine
    from backdown.profile import Profile
    from backdown.run_options import RunOptions

    local = tmp_path / "local"
    (local / "d").mkdir(parents=True)
    sizes = {"a.bin": 200_000, "d/b.bin": 70_000, "d/c.txt": 5}
    for rel, size in sizes.items():
        (local / rel).write_bytes(os.urandom(size))
    profile = Profile(
        name="p", local=str(local), server="127.0.0.1", share="backup", port=samba.port,
        remote_folder=remote_dir, user=samba.user,
    )  # fmt: skip
    recording = Recording()
    report: RunReport = engine.backup(profile, samba.password, RunOptions(), recording, tmp_path)
    assert report.ok and report.files_transferred == 3
    assert recording.bytes == sum(sizes.values()) == report.bytes_transferred
    finished = [value for kind, value in recording.events if kind == "done"]
    assert sorted(finished) == sorted((path, None) for path in sizes)


def test_the_rate_and_time_left_are_smoothed_over_the_last_seconds() -> None:
    now = [0.0]
    tally = Tally(clock=lambda: now[0])
    tally.bytes_total = 400_000_000
    rates = []
    for tick in range(80):  # 20 s of bursts: 4 MB in one quarter second, nothing in the next
        now[0] = tick * 0.25
        tally.on_progress(4_000_000 if tick % 2 == 0 else 0)
        tally.sample()
        if now[0] >= Tally.WINDOW:
            rates.append(tally.rate())
    # Each quarter second alone swings between 16 MB/s and 0; the rate shown stays near 8.
    assert rates and all(7.5e6 <= rate <= 8.9e6 for rate in rates), rates
    eta = tally.eta()
    assert eta is not None and abs(eta - (400e6 - tally.bytes_done) / tally.rate()) < 1e-6
    assert Tally().eta() is None, "no time left before a rate is known"


def test_summaries_count_in_words_and_show_a_rate_only_when_it_means_something() -> None:
    tiny = RunReport("p", "upload", files_transferred=1, bytes_transferred=6_000, seconds=0.02,
                     files_new=1)  # fmt: skip
    (first, *_rest) = tiny.summary_lines()
    assert first.startswith("Backed up 'p': 1 file sent (6.0 KB) in 0.0 s; 1 new"), first
    assert "MB/s" not in first and "/s" not in first, "no 0.0 MB/s for a run this short"
    big = RunReport("p", "download", files_transferred=3, bytes_transferred=40_000_000,
                    seconds=4.0, files_versioned=1)  # fmt: skip
    lines = big.summary_lines()
    assert lines[0].startswith("Restored 'p': 3 files received (40.0 MB) in 4.0 s, 10.0 MB/s")
    assert lines[1] == "  1 local file that differed kept aside (the folder is named below)."
    dry = RunReport("p", "download", dry_run=True, files_new=2, files_changed=1,
                    files_versioned=1)  # fmt: skip
    assert (
        "would restore 2 new and 1 changed file, 0 unchanged; would keep aside 1 local "
        "file that differs" in dry.summary_lines()[1]
    )
