"""Scheduled backups from the command line, for real: `schedule set | list | remove |
run-due`, `status`, `history`, `report`, `profile export | import`, against the real Samba
server and the real `crontab` (whose content each test leaves as it found it)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from helpers import Result, add_profile, assert_same_tree, crontab_text, make_tree, run_cli
from samba import SambaServer
from test_credentials import MemoryKeyring

from backdown.engine import local_user
from backdown.history import OK, History
from backdown.profile_store import ProfileStore
from backdown.scheduled_runs import fingerprint

pytestmark = pytest.mark.samba


def json_of(result: Result) -> object:
    return json.loads(result.out.strip().splitlines()[-1])


def one_line_error(result: Result, code: int, *words: str) -> None:
    assert result.code == code, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err, result
    for word in words:
        assert word in lines[0], result


@pytest.fixture
def keyring_only(tmp_path: Path, samba: SambaServer, remote_dir: str) -> Iterator[Path]:
    """A config folder with profile 'docs' whose password is only in a keyring (a real
    backend keeping it in memory, as the system keyring would), and that keyring."""
    ring = MemoryKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(ring)
    try:
        config = tmp_path / "config"
        (tmp_path / "local").mkdir()
        add_profile(config, "docs", tmp_path / "local", samba.port, remote_dir, samba.user,
                    samba.password)  # fmt: skip
        assert ring.entries, "the password went to the keyring"
        yield config
    finally:
        keyring.set_keyring(previous)


class Rig:
    """Profile 'docs' from a local tree into a fresh folder on the test share."""

    def __init__(self, tmp: Path, samba: SambaServer, remote_dir: str) -> None:
        self.tmp, self.samba, self.remote_dir = tmp, samba, remote_dir
        self.local = tmp / "local"
        self.local.mkdir()
        make_tree(self.local)
        self.config = tmp / "config"
        self.share = samba.share_path("backup") / remote_dir
        add_profile(self.config, "docs", self.local, samba.port, remote_dir, samba.user,
                    samba.password)  # fmt: skip

    def cli(self, *args: str, stdin: str = "", environ: dict[str, str] | None = None) -> Result:
        return run_cli(list(args), self.config, stdin=stdin, environ=environ)

    def set_schedule_directly(self, name: str = "docs", every: str = "24h") -> None:
        """The profile's schedule without installing the OS job (for run-due tests)."""
        store = ProfileStore.load(self.config)
        profile = store.get(name)
        profile.schedule_every = every
        store.replace(name, profile)
        store.save()

    def history(self) -> History:
        return History.open(Path(os.environ["BACKDOWN_DATA_DIR"]))


@pytest.fixture
def rig(tmp_path: Path, samba: SambaServer, remote_dir: str) -> Rig:
    return Rig(tmp_path, samba, remote_dir)


# --------------------------------------------------------------------------- history, status


def test_history_records_success_partial_failure_and_connection_failure(rig: Rig) -> None:
    assert rig.cli("upload", "docs").code == 0
    (rig.local / "locked").mkdir()
    (rig.local / "locked" / "refused.txt").write_text("r")
    assert rig.cli("upload", "docs").code == 0
    os.chown(rig.share / "locked", 0, 0)  # the SMB user may not create files there
    try:
        (rig.local / "locked" / "second.txt").write_text("s")
        assert rig.cli("upload", "docs").code == 1
    finally:
        rig.samba.chown(rig.share / "locked")
    assert rig.cli("profile", "edit", "docs", "--port", "9").code == 0  # nothing listens
    assert rig.cli("upload", "docs").code == 3

    runs = json_of(rig.cli("history", "docs", "--json"))
    assert isinstance(runs, list)
    assert [(r["operation"], r["outcome"], r["trigger"]) for r in runs] == [
        ("upload", "unreachable", "manual"),
        ("upload", "partial", "manual"),
        ("upload", "ok", "manual"),
        ("upload", "ok", "manual"),
    ]
    unreachable, partial, second, first = runs
    assert "127.0.0.1" in unreachable["message"] and unreachable["files_transferred"] == 0
    assert partial["files_failed"] == 1
    assert [f["path"] for f in partial["failures"]] == ["locked/second.txt"]
    assert first["files_transferred"] == 6 and first["bytes_transferred"] > 100_000
    assert second["files_transferred"] == 1
    assert first["finished"] >= first["started"]

    listed = rig.cli("history", "--limit", "2")
    assert listed.code == 0 and len(listed.out.strip().splitlines()) == 3  # + its failure
    assert "failed: locked/second.txt" in listed.out


def test_status_exit_codes(rig: Rig) -> None:
    fresh = rig.cli("status")
    assert fresh.code == 0 and "docs: never" in fresh.out, fresh

    (rig.local / "locked").mkdir()
    (rig.local / "locked" / "x.txt").write_text("x")
    assert rig.cli("upload", "docs").code == 0
    (rig.local / "locked" / "y.txt").write_text("y")
    os.chown(rig.share / "locked", 0, 0)
    try:
        assert rig.cli("upload", "docs").code == 1
    finally:
        rig.samba.chown(rig.share / "locked")
    failing = rig.cli("status")
    assert failing.code == 5 and "docs: FAILING" in failing.out, failing

    assert rig.cli("upload", "docs").code == 0
    good = rig.cli("status", "--json")
    assert good.code == 0 and json_of(good)["profiles"][0]["state"] == "ok"  # type: ignore[index]

    # A schedule of 30 minutes whose last success was two hours ago: overdue.
    rig.set_schedule_directly(every="30m")
    history = rig.history()
    with history._write() as db:  # the clock of the recorded runs, moved back
        assert db is not None
        db.execute("UPDATE runs SET started = started - 7200, finished = finished - 7200")
    overdue = rig.cli("status")
    assert overdue.code == 5 and "docs: OVERDUE" in overdue.out, overdue

    profile = ProfileStore.load(rig.config).get("docs")
    history.set_lockout("docs", time.time(), fingerprint(profile), "the server refused it")
    history.close()
    locked = rig.cli("status", "--json")
    assert locked.code == 5
    assert json_of(locked)["profiles"][0]["state"] == "locked-out"  # type: ignore[index]


# --------------------------------------------------------------------------- run-due


def test_run_due_backs_up_for_real_then_waits_and_stays_quiet(rig: Rig) -> None:
    rig.set_schedule_directly(every="24h")
    first = rig.cli("schedule", "run-due")
    assert (first.code, first.out, first.err) == (0, "", ""), first
    assert_same_tree(rig.local, rig.share)
    again = rig.cli("schedule", "run-due")
    assert (again.code, again.out, again.err) == (0, "", ""), again
    history = rig.history()
    runs = history.runs("docs")
    history.close()
    assert [(r.outcome, r.trigger) for r in runs] == [(OK, "scheduled")]
    log = Path(os.environ["BACKDOWN_DATA_DIR"]) / "logs" / "backdown.log"
    assert "docs: ran ok" in log.read_text() and "docs: not-due" in log.read_text()
    record = json.loads((rig.share / ".backdown" / "status" / f"{_client(rig)}.docs.json")
                        .read_text())  # fmt: skip
    assert record["interval_seconds"] == 86400 and record["outcome"] == "ok"
    assert record["user"] == local_user() and record["last_success"] == record["last_attempt"]


def _client(rig: Rig) -> str:
    return ProfileStore.load(rig.config).get("docs").client_name


def test_a_refused_password_stops_scheduled_runs_until_it_is_changed(
    tmp_path: Path, samba: SambaServer, remote_dir: str
) -> None:
    local = tmp_path / "local"
    local.mkdir()
    (local / "a.txt").write_text("a")
    config = tmp_path / "config"
    add_profile(config, "docs", local, samba.port, remote_dir, samba.user, "wrong password")
    store = ProfileStore.load(config)
    store.get("docs").schedule_every = "30m"
    store.save()

    refused = run_cli(["schedule", "run-due"], config)
    assert refused.code == 1 and "docs: backup auth-failed" in refused.err, refused
    for _ in range(2):  # due again at once (it never succeeded), but no second try
        quiet = run_cli(["schedule", "run-due"], config)
        assert (quiet.code, quiet.err) == (0, ""), quiet
    runs = json_of(run_cli(["history", "--json"], config))
    assert [r["outcome"] for r in runs] == ["auth-failed"]  # type: ignore[index]
    status = run_cli(["status"], config)
    assert status.code == 5 and "LOCKED-OUT" in status.out

    # `backdown test` with the right password lifts the stop ...
    tested = run_cli(["test", "docs", "--password-stdin"], config, stdin=samba.password + "\n")
    assert tested.code == 0 and "start again now" in tested.err, tested
    # ... and so does saving the right password; then the scheduled run goes through.
    again = run_cli(["schedule", "run-due"], config)
    assert again.code == 1 and "auth-failed" in again.err, again  # still the wrong one saved
    edited = run_cli(["profile", "edit", "docs", "--password-stdin"], config,
                     stdin=samba.password + "\n")  # fmt: skip
    assert edited.code == 0, edited
    done = run_cli(["schedule", "run-due"], config)
    assert (done.code, done.err) == (0, ""), done
    assert (samba.share_path("backup") / remote_dir / "a.txt").read_text() == "a"


def test_an_unreachable_server_is_quiet_and_recorded(rig: Rig) -> None:
    assert rig.cli("profile", "edit", "docs", "--port", "9").code == 0
    rig.set_schedule_directly()
    result = rig.cli("schedule", "run-due")
    assert (result.code, result.out, result.err) == (0, "", ""), result
    [run] = json_of(rig.cli("history", "--json"))  # type: ignore[misc]
    assert run["outcome"] == "unreachable" and "not reachable" in run["message"]


# --------------------------------------------------------------------------- schedule set


def test_schedule_set_refuses_a_password_only_in_the_keyring_and_installs_nothing(
    keyring_only: Path, samba: SambaServer, crontab: None
) -> None:
    config = keyring_only
    ring = keyring.get_keyring()
    assert isinstance(ring, MemoryKeyring)
    before, toml = crontab_text(), (config / "profiles.toml").read_bytes()

    refused = run_cli(["schedule", "set", "docs", "--every", "24h"], config)
    one_line_error(refused, 2, "only in the system keyring", "--save-password-file")
    assert crontab_text() == before and (config / "profiles.toml").read_bytes() == toml

    args = ["--every", "24h", "--between", "08:00-19:00", "--days", "mon-fri"]
    done = run_cli(["schedule", "set", "docs", *args, "--save-password-file"], config)
    assert done.code == 0, done
    assert "every 24h, 08:00-19:00, mon-fri" in done.out
    own = config / "credentials" / "docs"
    assert own.stat().st_mode & 0o777 == 0o600
    assert f"password={samba.password}" in own.read_text()
    assert not ring.entries, "one place holds the password now"
    lines = [line for line in crontab_text().splitlines() if str(config) in line]
    assert len(lines) == 2 and all("# backdown:run-due-" in line for line in lines), lines

    again = run_cli(["schedule", "set", "docs", "--every", "4h"], config)
    assert again.code == 0, again
    assert len([x for x in crontab_text().splitlines() if str(config) in x]) == 2

    listed = json_of(run_cli(["schedule", "list", "--json"], config))
    assert isinstance(listed, dict)
    assert listed["job"]["kind"] == "cron" and listed["job"]["installed"]
    [row] = listed["profiles"]
    assert (row["profile"], row["schedule"], row["next_due_text"]) == ("docs", "every 4h",
                                                                      "now")  # fmt: skip

    removed = run_cli(["schedule", "remove", "docs"], config)
    assert removed.code == 0 and "job was removed" in removed.out, removed
    assert crontab_text() == before
    assert ProfileStore.load(config).get("docs").schedule_every == ""


def test_no_scheduler_is_exit_4_and_nothing_is_saved(rig: Rig, tmp_path: Path) -> None:
    empty = tmp_path / "no-programs"
    empty.mkdir()
    toml = (rig.config / "profiles.toml").read_bytes()
    result = rig.cli("schedule", "set", "docs", "--every", "24h", environ={"PATH": str(empty)})
    one_line_error(result, 4, "no systemd user session and no crontab", "apt install cron")
    assert (rig.config / "profiles.toml").read_bytes() == toml


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--every", "5m"], "too short"),
        (["--every", "daily"], "not an interval"),
        (["--every", "24h", "--between", "8-17"], "not a time range"),
        (["--every", "24h", "--days", "funday"], "not a weekday"),
    ],
)
def test_bad_schedule_input_is_one_line_and_exit_2(rig: Rig, args: list[str], says: str) -> None:
    toml = (rig.config / "profiles.toml").read_bytes()
    one_line_error(rig.cli("schedule", "set", "docs", *args), 2, says)
    assert (rig.config / "profiles.toml").read_bytes() == toml


def test_a_schedule_for_an_unknown_profile_is_exit_2(rig: Rig) -> None:
    one_line_error(rig.cli("schedule", "set", "nope", "--every", "24h"), 2, "no profile named")


# --------------------------------------------------------------------------- one profile, many PCs


def _pc(tmp: Path, samba: SambaServer, remote_dir: str, computer: str) -> Path:
    """A computer: its own config folder and local tree, the office's profile imported."""
    config = tmp / computer / "config"
    local = tmp / computer / "local"
    local.mkdir(parents=True)
    (local / f"{computer}.txt").write_text(f"made on {computer}")
    exported = tmp / "office.toml"
    imported = run_cli(["profile", "import", str(exported), "--local", str(local),
                        "--password-stdin"], config, stdin=samba.password + "\n")  # fmt: skip
    assert imported.code == 0, imported
    store = ProfileStore.load(config)
    store.get("office").client_name = computer
    store.save()
    return config


def test_one_exported_profile_for_every_pc_and_the_admins_report(
    tmp_path: Path, samba: SambaServer, remote_dir: str
) -> None:
    admin = tmp_path / "admin"
    (tmp_path / "admin-local").mkdir()
    add_profile(admin, "office", tmp_path / "admin-local", samba.port,
                f"{remote_dir}/{{user}}/{{computer}}", samba.user, samba.password)  # fmt: skip
    exported = run_cli(["profile", "export", "office", "--to", str(tmp_path / "office.toml")],
                       admin)  # fmt: skip
    assert exported.code == 0, exported
    text = (tmp_path / "office.toml").read_text()
    assert samba.password not in text and "credentials_file" not in text
    assert "client_name" not in text and "{user}/{computer}" in text

    for computer in ("PC1", "PC2"):
        config = _pc(tmp_path, samba, remote_dir, computer)
        assert run_cli(["upload", "office"], config).code == 0
    share = samba.share_path("backup") / remote_dir / local_user()
    assert (share / "PC1" / "PC1.txt").read_text() == "made on PC1"
    assert (share / "PC2" / "PC2.txt").read_text() == "made on PC2"

    # The admin's profile points at the common folder (up to the first placeholder).
    report = run_cli(["report", "office", "--json"], admin)
    assert report.code == 0, report
    rows = json_of(report)["rows"]  # type: ignore[index]
    assert [(r["computer"], r["profile"], r["stale"]) for r in rows] == [
        ("PC1", "office", False),
        ("PC2", "office", False),
    ]
    # PC2 stops backing up: ten days later, it is stale and listed first.
    record = share / "PC2" / ".backdown" / "status" / "PC2.office.json"
    data = json.loads(record.read_text())
    data["last_success"] = data["last_attempt"] = time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 10 * 86400)
    )
    record.write_text(json.dumps(data))
    stale = run_cli(["report", "office"], admin)
    assert stale.code == 5, stale
    first, second = stale.out.strip().splitlines()
    assert first.startswith("STALE") and "PC2" in first and "10 days ago" in first
    assert second.startswith("ok") and "PC1" in second
    assert run_cli(["report", "office", "--stale-after", "30d"], admin).code == 0


# ------------------------------------------------------------- never blocks, never asks


def test_a_damaged_history_is_moved_aside_and_the_backup_goes_on(rig: Rig) -> None:
    data = Path(os.environ["BACKDOWN_DATA_DIR"])
    data.mkdir(parents=True, exist_ok=True)
    (data / "history.sqlite3").write_bytes(b"this is not a database " * 200)
    result = rig.cli("upload", "docs")
    assert result.code == 0, result
    assert_same_tree(rig.local, rig.share)
    aside = [p.name for p in data.iterdir() if p.name.startswith("history.sqlite3.damaged-")]
    assert len(aside) == 1, list(data.iterdir())
    assert (data / aside[0]).read_bytes().startswith(b"this is not a database")
    [run] = json_of(rig.cli("history", "--json"))  # type: ignore[misc]
    assert run["outcome"] == "ok"


def test_run_due_never_asks_for_a_password_even_at_a_terminal(
    tmp_path: Path, samba: SambaServer, remote_dir: str
) -> None:
    import sys

    import pexpect

    config = tmp_path / "config"
    (tmp_path / "local").mkdir()
    store = ProfileStore(config)
    from backdown.profile import Profile

    store.add(Profile(name="docs", local=str(tmp_path / "local"), server="127.0.0.1",
                      share="backup", port=samba.port, remote_folder=remote_dir,
                      user=samba.user, schedule_every="24h"))  # fmt: skip
    store.save()
    env = {k: v for k, v in os.environ.items() if k != "BACKDOWN_PASSWORD"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    child = pexpect.spawn(
        sys.executable, ["-m", "backdown", "--config-dir", str(config), "schedule", "run-due"],
        env=env, encoding="utf-8", timeout=30,
    )  # fmt: skip
    child.expect(pexpect.EOF)
    child.close()
    assert "Password" not in (child.before or "")
    assert child.exitstatus == 1 and "no password for profile 'docs'" in (child.before or "")


def test_the_status_record_keeps_the_last_success_through_a_failed_run(rig: Rig) -> None:
    (rig.local / "locked").mkdir()
    (rig.local / "locked" / "x.txt").write_text("x")
    assert rig.cli("upload", "docs").code == 0
    record_path = rig.share / ".backdown" / "status" / f"{_client(rig)}.docs.json"
    good = json.loads(record_path.read_text())
    time.sleep(1.1)  # the record's times are whole seconds
    (rig.local / "locked" / "y.txt").write_text("y")
    os.chown(rig.share / "locked", 0, 0)
    try:
        assert rig.cli("upload", "docs").code == 1
    finally:
        rig.samba.chown(rig.share / "locked")
    failed = json.loads(record_path.read_text())
    assert (failed["outcome"], failed["ok"], failed["files_failed"]) == ("failed", False, 1)
    assert failed["last_success"] == good["last_success"] == good["last_attempt"]
    assert failed["last_attempt"] > good["last_attempt"]
    assert failed["computer"] == _client(rig) and failed["format"] == 2


# --------------------------------------------------------------------------- nothing half done


def test_an_empty_interval_is_refused_and_changes_nothing(rig: Rig, crontab: None) -> None:
    before, toml = crontab_text(), (rig.config / "profiles.toml").read_bytes()
    for empty in ("", " "):
        one_line_error(rig.cli("schedule", "set", "docs", "--every", empty), 2, "--every")
    assert crontab_text() == before and (rig.config / "profiles.toml").read_bytes() == toml


def test_no_scheduler_leaves_no_password_file_behind(keyring_only: Path, tmp_path: Path) -> None:
    config = keyring_only
    (tmp_path / "no-programs").mkdir()
    result = run_cli(["schedule", "set", "docs", "--every", "24h", "--save-password-file"],
                     config, environ={"PATH": str(tmp_path / "no-programs")})  # fmt: skip
    one_line_error(result, 4, "no systemd user session")
    assert not (config / "credentials" / "docs").exists()
    ring = keyring.get_keyring()
    assert isinstance(ring, MemoryKeyring) and ring.entries, "the keyring still holds it"


def test_removing_a_scheduled_profile_removes_its_job(rig: Rig, crontab: None) -> None:
    before = crontab_text()
    assert rig.cli("schedule", "set", "docs", "--every", "24h").code == 0
    assert str(rig.config) in crontab_text()
    removed = rig.cli("profile", "remove", "docs", "--yes")
    assert removed.code == 0 and "job was removed" in removed.out, removed
    assert crontab_text() == before


def test_a_renamed_profile_keeps_its_history(rig: Rig) -> None:
    assert rig.cli("upload", "docs").code == 0
    assert rig.cli("profile", "rename", "docs", "papers").code == 0
    [run] = json_of(rig.cli("history", "papers", "--json"))  # type: ignore[misc]
    assert run["profile"] == "papers" and run["outcome"] == "ok"
    assert "papers: ok" in rig.cli("status").out


def test_global_alert_targets_are_set_one_kind_at_a_time(rig: Rig, tmp_path: Path) -> None:
    config_file = tmp_path / "apprise.yml"
    config_file.write_text("urls:\n  - json://127.0.0.1:9/x\n")
    config_file.chmod(0o600)
    assert rig.cli("alerts", "set", "--notify", "json://127.0.0.1:9/a").code == 0
    assert rig.cli("alerts", "set", "--notify-config", str(config_file)).code == 0
    store = ProfileStore.load(rig.config)
    assert store.notify == ["json://127.0.0.1:9/a"] and store.notify_config == str(config_file)
    one_line_error(rig.cli("alerts", "set"), 2, "--notify")
    one_line_error(rig.cli("alerts", "set", "--notify-config", str(tmp_path / "nope")), 2,
                   "does not exist")  # fmt: skip
    shown = json_of(rig.cli("alerts", "show", "--json"))
    assert shown == {"urls": ["json://127.0.0.1:9"], "config_file": str(config_file),
                     "ping_url": ""}  # fmt: skip
    failed = rig.cli("alerts", "test", "--json")
    assert failed.code == 1 and json_of(failed)["ok"] is False  # type: ignore[index]
    assert len(failed.err.strip().splitlines()) == 2, "one line per target, once each"


def test_a_fifo_in_place_of_a_file_never_hangs_a_run(rig: Rig, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    began = time.monotonic()
    assert rig.cli("alerts", "set", "--notify-config", str(fifo)).code == 2  # not a file
    store = ProfileStore.load(rig.config)
    store.notify_config = str(fifo)
    store.get("docs").credentials_file = str(fifo)
    store.save()
    tested = rig.cli("alerts", "test")
    assert tested.code == 1 and "not a file" in tested.err, tested
    upload = rig.cli("upload", "docs")
    one_line_error(upload, 2, "not a regular file")
    assert time.monotonic() - began < 10
