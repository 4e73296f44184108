"""The full-screen UI (backdown/tui), driven by Textual's Pilot against the real Samba
server the suite starts: the home screen, a backup with its progress and summary, cancel
and resume, a wrong password, a server that is down, a password asked in a masked field;
and snapshots of the home screen at 80×24 and 120×40."""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import SlowRelay, add_profile, crontab_text, make_tree, run_cli, tree_bytes
from samba import SambaServer

from backdown.environment import Environment
from backdown.tui import unavailable
from backdown.tui.app import BackDownApp
from backdown.tui.choice import ChoiceScreen
from backdown.tui.history_screen import HistoryScreen
from backdown.tui.home import HomeScreen
from backdown.tui.password import PasswordScreen
from backdown.tui.profile_form import ProfileForm
from backdown.tui.restore_screen import RestoreScreen
from backdown.tui.run_screen import RunScreen
from backdown.tui.settings_screen import SettingsScreen

pytest.importorskip("textual")


def app_for(config: Path, environ: dict[str, str] | None = None) -> BackDownApp:
    env = Environment(
        stdin=io.StringIO(),
        stdout=io.StringIO(),
        stderr=io.StringIO(),
        environ={"BACKDOWN_DATA_DIR": os.environ["BACKDOWN_DATA_DIR"], **(environ or {})},
        config_dir=config,
    )
    return BackDownApp(env)


async def until(pilot: Any, done: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "the screen did not get there in time"
        await pilot.pause(0.1)


def summary_of(app: BackDownApp) -> str:
    screen = app.screen
    assert isinstance(screen, RunScreen)
    return str(screen.query_one("#summary").render())


def home_rows(app: BackDownApp) -> list[tuple[str, ...]]:
    screen = app.screen
    assert isinstance(screen, HomeScreen)
    table = screen.query_one("DataTable")
    return [tuple(str(cell) for cell in table.get_row_at(i)) for i in range(table.row_count)]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return tmp_path / "config"


def profile_on(
    tmp: Path, config: Path, samba: SambaServer, remote_dir: str, name: str = "home", **kw: Any
) -> Path:
    local = tmp / name
    local.mkdir()
    make_tree(local)
    add_profile(config, name, local, samba.port, remote_dir, samba.user,
                kw.get("password", samba.password))  # fmt: skip
    return local


def offline_profile(tmp: Path, config: Path) -> None:
    """Profile 'home' on a server that is never reached (for screens that only edit)."""
    local = tmp / "docs"
    local.mkdir()
    args = ["profile", "add", "home", "--local", str(local), "--server", "nas", "--share", "b"]
    assert run_cli(args, config).code == 0


def test_the_full_screen_ui_runs_only_on_a_real_terminal() -> None:
    piped = Environment(stdin=io.StringIO(), stdout=io.StringIO(), environ={})
    assert unavailable(piped) == "not a terminal"


async def test_home_lists_every_profile_and_marks_the_current(
    tmp_path: Path, config: Path, samba: SambaServer, remote_dir: str
) -> None:
    profile_on(tmp_path, config, samba, remote_dir, "alpha")
    profile_on(tmp_path, config, samba, remote_dir, "beta")
    async with app_for(config).run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        rows = home_rows(pilot.app)
        assert [r[0] for r in rows] == ["  alpha", "* beta"]
        assert all(r[1:4] == ("never", "never", "when you ask") for r in rows), rows
        await pilot.press("up", "u")  # alpha becomes the current profile
        await pilot.pause()
        assert [r[0] for r in home_rows(pilot.app)] == ["* alpha", "  beta"]
    assert 'last_used = "alpha"' in (config / "profiles.toml").read_text()


async def test_back_up_now_shows_progress_and_a_summary_then_home_says_ok(
    tmp_path: Path, config: Path, samba: SambaServer, remote_dir: str
) -> None:
    local = profile_on(tmp_path, config, samba, remote_dir)
    async with app_for(config).run_test(size=(100, 30)) as pilot:
        await pilot.press("b")
        await until(pilot, lambda: getattr(pilot.app.screen, "done", False))
        summary = summary_of(pilot.app)
        assert "Backed up 'home'" in summary and "0 failed." in summary, summary
        screen = pilot.app.screen
        assert isinstance(screen, RunScreen) and screen.tally.files_done > 0
        await pilot.press("escape")
        await pilot.pause()
        (row,) = home_rows(pilot.app)
        assert row[1] == "ok" and row[2] == "0 minutes ago", row
    assert tree_bytes(samba.share_path("backup") / remote_dir) == tree_bytes(local)
    history = run_cli(["history", "home", "--json"], config)
    assert '"outcome": "ok"' in history.out, history


async def test_cancel_stops_cleanly_and_the_next_backup_resumes(
    tmp_path: Path, config: Path, samba: SambaServer, remote_dir: str
) -> None:
    local = tmp_path / "home"
    local.mkdir()
    for number in range(60):
        (local / f"many-{number}.bin").write_bytes(os.urandom(100_000))
    on_share = samba.share_path("backup") / remote_dir
    # A relay at 512 KB/s per connection makes the run last seconds: long enough to cancel.
    with SlowRelay(samba.port, rate=512 << 10) as relay:
        add_profile(config, "home", local, relay.port, remote_dir, samba.user, samba.password)
        async with app_for(config).run_test(size=(100, 30)) as pilot:
            await pilot.press("b")
            run = pilot.app.screen
            assert isinstance(run, RunScreen)
            await until(pilot, lambda: run.tally.files_done >= 3)
            await pilot.press("ctrl+c")
            await until(pilot, lambda: run.done)
            assert pilot.app.screen is run
            summary = summary_of(pilot.app)
            assert "cancelled" in summary and "resume" in summary, summary
            assert len(list(on_share.glob("many-*.bin"))) < 60
            await pilot.press("escape")
            await pilot.pause()
            (row,) = home_rows(pilot.app)
            assert row[1] == "never", row  # an interrupted backup is no good backup
            await pilot.press("b")
            await until(pilot, lambda: getattr(pilot.app.screen, "done", False), 120)
            assert "0 failed." in summary_of(pilot.app), summary_of(pilot.app)
    assert tree_bytes(on_share) == tree_bytes(local)


async def test_a_wrong_password_is_one_line_on_the_run_screen(
    tmp_path: Path, config: Path, samba: SambaServer, remote_dir: str
) -> None:
    profile_on(tmp_path, config, samba, remote_dir, password="wrong")
    async with app_for(config).run_test(size=(100, 30)) as pilot:
        await pilot.press("t")
        await until(pilot, lambda: getattr(pilot.app.screen, "done", False))
        summary = summary_of(pilot.app)
        assert summary.startswith("error: ") and "wrong user name or password" in summary
        assert "Traceback" not in summary


async def test_a_server_that_is_down_is_named(tmp_path: Path, config: Path) -> None:
    local = tmp_path / "home"
    local.mkdir()
    run_cli(["profile", "add", "home", "--local", str(local), "--server", "127.0.0.1",
             "--port", "1", "--share", "backup"], config)  # fmt: skip
    async with app_for(config).run_test(size=(100, 30)) as pilot:
        await pilot.press("b")
        await until(pilot, lambda: getattr(pilot.app.screen, "done", False))
        assert "connection refused" in summary_of(pilot.app)


async def test_a_missing_password_is_asked_in_a_masked_field_and_not_kept(
    tmp_path: Path, config: Path, samba: SambaServer, remote_dir: str
) -> None:
    local = tmp_path / "home"
    local.mkdir()
    make_tree(local)
    args = ["profile", "add", "home", "--local", str(local), "--server", "127.0.0.1",
            "--port", str(samba.port), "--share", "backup", "--remote-folder", remote_dir,
            "--user", samba.user, "--auth", "password"]  # fmt: skip
    assert run_cli(args, config).code == 0
    async with app_for(config).run_test(size=(100, 30)) as pilot:
        await pilot.press("b")
        await until(pilot, lambda: isinstance(pilot.app.screen, PasswordScreen))
        field = pilot.app.screen.query_one("Input")
        assert field.password, "the password is masked"
        await pilot.press(*samba.password, "enter")
        await until(pilot, lambda: getattr(pilot.app.screen, "done", False))
        assert "0 failed." in summary_of(pilot.app), summary_of(pilot.app)
    assert tree_bytes(samba.share_path("backup") / remote_dir) == tree_bytes(local)
    assert not (config / "credentials").exists(), "a typed password is for this run only"


@pytest.mark.parametrize("size", [(60, 20), (80, 24), (120, 40)], ids=["60x20", "80x24", "120x40"])
def test_home_looks_the_same(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    config = tmp_path / "config"
    for name, folder in (("office", "/home/alice/Documents"), ("photos", "/home/alice/Photos")):
        args = [
            "profile",
            "add",
            name,
            "--local",
            folder,
            "--server",
            "nas.example.lan",
            "--share",
            "backup",
            "--remote-folder",
            f"alice/{name}",
            "--user",
            "alice",
        ]
        assert run_cli(args, config).code == 0
    assert snap_compare(app_for(config), terminal_size=size)


def test_backdown_opens_the_full_screen_ui_on_a_terminal_and_the_menu_when_asked(
    config: Path,
) -> None:
    import pexpect

    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKDOWN_")}
    env.update(TERM="xterm-256color", PYTHONPATH=str(Path(__file__).parent.parent))
    env["BACKDOWN_DATA_DIR"] = os.environ["BACKDOWN_DATA_DIR"]
    args = ["-m", "backdown", "--config-dir", str(config)]
    child = pexpect.spawn(sys.executable, args, env=env, encoding="utf-8", timeout=30,
                          dimensions=(24, 80))  # fmt: skip
    child.expect("Profile name")  # a first run: the new-profile form, full-screen
    child.send("\x1b")  # Escape: Home
    child.expect("No profile yet")
    child.send("q")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    for plain in (["--plain"], ["menu"]):
        child = pexpect.spawn(sys.executable, args + plain, env=env, encoding="utf-8",
                              timeout=30, dimensions=(24, 80))  # fmt: skip
        child.expect(r"Choose 1-14 \(q to quit\): ")
        child.sendline("q")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0


def form_of(app: BackDownApp) -> ProfileForm:
    assert isinstance(app.screen, ProfileForm), app.screen
    return app.screen


def error_under(form: ProfileForm, field: str) -> str:
    return str(form.query_one(f"#{field}-error").render())


async def fill(pilot: Any, form: ProfileForm, **values: str) -> None:
    for field, text in values.items():
        form.query_one(f"#{field}").value = text  # as pasted
        await pilot.pause()


async def test_a_first_run_opens_the_form_which_checks_as_you_type_and_saves(
    tmp_path: Path, config: Path
) -> None:
    local = tmp_path / "docs"
    local.mkdir()
    async with app_for(config).run_test(size=(100, 60)) as pilot:
        await pilot.pause()
        form = form_of(pilot.app)
        await pilot.click("#name")
        await pilot.press(*"Alice Laptop")  # typed
        await fill(pilot, form, local=str(local), server="\\\\nas.example.lan\\backup\\alice\\docs")
        assert (form.value("server"), form.value("share"), form.value("remote_folder")) == (
            "nas.example.lan",
            "backup",
            "alice/docs",
        ), "a pasted Explorer path fills server, share and folder"
        await fill(pilot, form, user="CORP\\alice")
        assert (form.value("user"), form.value("domain")) == ("alice", "CORP")
        await fill(pilot, form, port="99999")
        assert "the port must be a number from 1 to 65535" in error_under(form, "port")
        await pilot.press("ctrl+s")  # refused while a field is wrong
        assert pilot.app.screen is form
        await fill(pilot, form, port="445", password="s3cret-pw")
        assert error_under(form, "port") == ""
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert [r[0] for r in home_rows(pilot.app)] == ["* Alice Laptop"]
    saved = (config / "profiles.toml").read_text()
    assert 'server = "nas.example.lan"' in saved and 'remote_folder = "alice/docs"' in saved
    assert "s3cret-pw" not in saved
    assert (config / "credentials" / "Alice Laptop").read_text().count("s3cret-pw") == 1


async def test_the_form_tests_the_connection_in_place(
    tmp_path: Path, config: Path, samba: SambaServer, remote_dir: str
) -> None:
    local = tmp_path / "docs"
    local.mkdir()
    async with app_for(config).run_test(size=(100, 60)) as pilot:
        await pilot.pause()
        form = form_of(pilot.app)
        await fill(pilot, form, name="office", local=str(local), server="127.0.0.1",
                   port=str(samba.port), share="backup", remote_folder=remote_dir,
                   user=samba.user, password="wrong")  # fmt: skip
        await pilot.press("ctrl+t")
        await until(pilot, lambda: "error" in str(form.query_one("#result").render()))
        assert "wrong user name or password" in error_under(form, "password")
        await fill(pilot, form, password=samba.password)
        await pilot.press("ctrl+t")
        await until(pilot, lambda: "ready" in str(form.query_one("#result").render()))
        assert not (config / "profiles.toml").exists(), "a test saves nothing"


def test_the_form_looks_the_same(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(app_for(tmp_path / "config"), terminal_size=(80, 24))


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_the_settings_look_the_same(
    snap_compare: Any, tmp_path: Path, size: tuple[int, int]
) -> None:
    config = tmp_path / "config"
    args = ["profile", "add", "office", "--local", "/home/alice/Documents", "--server",
            "nas", "--share", "backup", "--exclude", "*.tmp", "--keep-daily", "7"]  # fmt: skip
    assert run_cli(args, config).code == 0
    assert snap_compare(app_for(config), terminal_size=size, press=["s"])


async def test_restore_what_is_ticked_into_a_new_folder(
    tmp_path: Path, config: Path, samba: SambaServer, remote_dir: str
) -> None:
    local = profile_on(tmp_path, config, samba, remote_dir)
    assert run_cli(["upload", "home"], config).code == 0
    target = tmp_path / "restored"
    async with app_for(config).run_test(size=(100, 40)) as pilot:
        await pilot.press("r")
        screen = pilot.app.screen
        assert isinstance(screen, RestoreScreen)
        title = screen.query_one("#title")
        await until(pilot, lambda: "files backed up" in str(title.render()))
        target_field = screen.query_one("#target")
        assert "-restored-" in target_field.value, "a new folder beside the original by default"
        tree = screen.query_one("#tree")
        for wanted in ("docs", "random.bin"):
            node = next(n for n in tree.root.children if n.data == wanted)
            tree.move_cursor(node)
            await pilot.press("space")
        assert "2 ticked" in str(tree.root.label)
        target_field.value = str(target)
        await pilot.press("ctrl+r")
        await until(pilot, lambda: getattr(pilot.app.screen, "done", False))
        summary = summary_of(pilot.app)
        assert "Restored 'home'" in summary and "0 failed." in summary, summary
    expected = {k: v for k, v in tree_bytes(local).items()
                if k == "random.bin" or k == "docs" or k.startswith("docs/")}  # fmt: skip
    assert tree_bytes(target) == expected


async def test_restore_over_the_original_says_where_differing_files_go(
    tmp_path: Path, config: Path, samba: SambaServer, remote_dir: str
) -> None:
    local = profile_on(tmp_path, config, samba, remote_dir)
    assert run_cli(["upload", "home"], config).code == 0
    (local / "docs" / "report final.txt").write_text("edited after the backup\n")
    async with app_for(config).run_test(size=(100, 40)) as pilot:
        await pilot.press("r")
        screen = pilot.app.screen
        assert isinstance(screen, RestoreScreen)
        await until(pilot, lambda: "files backed up" in str(screen.query_one("#title").render()))
        screen.query_one("#original").value = True
        await pilot.pause()
        kept = local / ".backdown-replaced"
        assert f"kept aside in {kept}" in str(screen.query_one("#problem").render())
        await pilot.press("ctrl+r")
        await until(pilot, lambda: getattr(pilot.app.screen, "done", False))
        assert f"Local files that differed were kept in {kept}" in summary_of(pilot.app)
    assert (local / "docs" / "report final.txt").read_text() == "quarterly numbers\n"
    aside = list(kept.rglob("report final.txt"))
    assert len(aside) == 1 and aside[0].read_text() == "edited after the backup\n"


async def test_settings_are_checked_as_they_change_and_saved(tmp_path: Path, config: Path) -> None:
    offline_profile(tmp_path, config)
    async with app_for(config).run_test(size=(100, 60)) as pilot:
        await pilot.press("s")
        screen = pilot.app.screen
        assert isinstance(screen, SettingsScreen)
        problem = screen.query_one("#problem")
        screen.query_one("#keep_versions_days").value = "-1"
        await pilot.pause()
        assert "cannot be negative" in str(problem.render())
        await pilot.press("ctrl+s")
        assert pilot.app.screen is screen, "nothing is saved while a value is wrong"
        screen.query_one("#keep_versions_days").value = "7"
        screen.query_one("#mode").value = "mirror"
        screen.query_one("#excludes").text = "*.tmp\ncache/\n"
        screen.query_one("#protocol").value = "smb2"
        screen.query_one("#auth").value = "kerberos"
        await pilot.pause()
        assert "Kerberos logon needs the SMB 3 transport" in str(problem.render())
        screen.query_one("#protocol").value = "smb3"
        screen.query_one("#encrypt").value = True
        screen.query_one("#transfers").value = "0"
        await pilot.pause()
        assert "transfers must be a number from 1 to 64, not 0" in str(problem.render())
        screen.query_one("#transfers").value = "8"
        screen.query_one("#notify").text = "ntfy://backups\n\njson://localhost:8/x\n"
        screen.query_one("#notify_config").value = str(tmp_path / "absent.yml")
        await pilot.pause()
        assert "absent.yml is not a file" in str(problem.render())
        screen.query_one("#notify_config").value = ""
        screen.query_one("#notify").text = "mailto://ann:secret@example.org"
        await pilot.pause()
        assert "Apprise config file" in str(problem.render()), "no password in profiles.toml"
        screen.query_one("#notify").text = "ntfy://backups\n\njson://localhost:8/x\n"
        screen.query_one("#ping_url").value = "https://hc.example.org/ping/abc"
        await pilot.pause()
        assert str(problem.render()) == ""
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(pilot.app.screen, HomeScreen)
    shown = json.loads(run_cli(["profile", "show", "home", "--json"], config).out)
    assert (shown["transfers"], shown["notify"], shown["ping_url"]) == (
        8,
        ["ntfy://backups", "json://localhost:8/x"],
        "https://hc.example.org/ping/abc",
    )
    assert (shown["mode"], shown["excludes"], shown["keep_versions_days"]) == (
        "mirror",
        ["*.tmp", "cache/"],
        7,
    )
    assert (shown["protocol"], shown["encrypt"], shown["auth"]) == ("smb3", True, "kerberos")


async def test_an_edit_keeps_what_another_program_changed_meanwhile(
    tmp_path: Path, config: Path
) -> None:
    offline_profile(tmp_path, config)
    async with app_for(config).run_test(size=(100, 60)) as pilot:
        await pilot.press("e")
        form = form_of(pilot.app)
        # Meanwhile, another terminal changes a setting the form does not show.
        edited = run_cli(["profile", "edit", "home", "--keep-versions-days", "9"], config)
        assert edited.code == 0, edited
        await fill(pilot, form, server="nas2.example.lan")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(pilot.app.screen, HomeScreen)
    shown = json.loads(run_cli(["profile", "show", "home", "--json"], config).out)
    assert (shown["server"], shown["keep_versions_days"]) == ("nas2.example.lan", 9)


async def test_restore_as_of_an_older_snapshot_and_one_version_of_a_file(
    tmp_path: Path, config: Path, samba: SambaServer, remote_dir: str
) -> None:
    local = profile_on(tmp_path, config, samba, remote_dir)
    report = local / "docs" / "report final.txt"
    assert run_cli(["upload", "home"], config).code == 0
    report.write_text("second draft, longer than the first\n")
    assert run_cli(["upload", "home"], config).code == 0
    snaps = json.loads(run_cli(["snapshots", "home", "--json"], config).out)["snapshots"]
    assert len(snaps) == 2
    older = snaps[0]["id"]
    async with app_for(config).run_test(size=(100, 60)) as pilot:
        await pilot.press("r")
        screen = pilot.app.screen
        assert isinstance(screen, RestoreScreen)
        await until(pilot, lambda: "files backed up" in str(screen.query_one("#title").render()))
        screen.query_one("#snapshot").value = older  # the timeline: the first backup
        screen.query_one("#target").value = str(tmp_path / "as-of")
        await pilot.press("ctrl+r")
        await until(pilot, lambda: getattr(pilot.app.screen, "done", False))
        assert "0 failed." in summary_of(pilot.app), summary_of(pilot.app)
        await pilot.press("escape")
        await pilot.pause()
        # One version of one file: tick it, list its versions (v), pick the older.
        tree = screen.query_one("#tree")
        docs = next(n for n in tree.root.children if n.data == "docs")
        docs.expand()
        await pilot.pause()
        node = next(n for n in docs.children if n.data == "docs/report final.txt")
        tree.move_cursor(node)
        await pilot.press("space", "v")
        versions = screen.query_one("#versions")
        await until(pilot, lambda: "replaced" in str(versions.render()))
        assert "  1  " in str(versions.render()) and "  2  " in str(versions.render())
        screen.query_one("#version").value = "2"
        screen.query_one("#target").value = str(tmp_path / "one-version")
        await pilot.press("ctrl+r")
        await until(pilot, lambda: getattr(pilot.app.screen, "done", False))
        assert "0 failed." in summary_of(pilot.app), summary_of(pilot.app)
    first = "quarterly numbers\n"
    assert (tmp_path / "as-of" / "docs" / "report final.txt").read_text() == first
    assert (tmp_path / "one-version" / "docs" / "report final.txt").read_text() == first


async def test_browse_lists_the_shares_and_then_the_folders(
    tmp_path: Path, config: Path, samba: SambaServer, remote_dir: str
) -> None:
    inner = samba.share_path("backup") / remote_dir / "inner"
    inner.mkdir()
    samba.chown(inner)
    async with app_for(config).run_test(size=(100, 60)) as pilot:
        await pilot.pause()
        form = form_of(pilot.app)
        await fill(pilot, form, server="127.0.0.1", port=str(samba.port), user=samba.user,
                   password=samba.password)  # fmt: skip
        await pilot.press("ctrl+b")
        await until(pilot, lambda: isinstance(pilot.app.screen, ChoiceScreen))
        picker = pilot.app.screen
        assert isinstance(picker, ChoiceScreen)
        assert [value for _, value in picker.choices] == ["backup", "readonly"]
        await pilot.press("enter")  # the first: backup
        await until(pilot, lambda: pilot.app.screen is form)
        assert form.value("share") == "backup"
        await pilot.press("ctrl+b")  # now the folders of that share
        await until(pilot, lambda: isinstance(pilot.app.screen, ChoiceScreen))
        picker = pilot.app.screen
        assert isinstance(picker, ChoiceScreen)
        values = [value for _, value in picker.choices]
        assert values[0] == "" and remote_dir in values and ".backdown" not in values
        await pilot.press(*["down"] * values.index(remote_dir), "enter")
        # A folder picked opens its own list: stay in it, go up, or go deeper.
        await until(pilot, lambda: isinstance(pilot.app.screen, ChoiceScreen)
                    and pilot.app.screen is not picker)  # fmt: skip
        picker = pilot.app.screen
        assert isinstance(picker, ChoiceScreen)
        assert [v for _, v in picker.choices] == [remote_dir, "", f"{remote_dir}/inner"]
        await pilot.press("down", "down", "enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, ChoiceScreen)
                    and pilot.app.screen is not picker)  # fmt: skip
        picker = pilot.app.screen
        assert isinstance(picker, ChoiceScreen)
        assert [v for _, v in picker.choices] == [f"{remote_dir}/inner", remote_dir]
        await pilot.press("enter")  # this folder
        await until(pilot, lambda: pilot.app.screen is form)
        assert form.value("remote_folder") == f"{remote_dir}/inner"


def test_the_run_screen_looks_the_same(snap_compare: Any, tmp_path: Path) -> None:
    """A run that ends at once (nothing listens on port 1), so what it shows is fixed."""
    config = tmp_path / "config"
    args = ["profile", "add", "office", "--local", "/home/alice/Documents", "--server",
            "127.0.0.1", "--port", "1", "--share", "backup"]  # fmt: skip
    assert run_cli(args, config).code == 0

    async def back_up(pilot: Any) -> None:
        await pilot.press("b")
        await until(pilot, lambda: getattr(pilot.app.screen, "done", False))

    assert snap_compare(app_for(config), terminal_size=(80, 24), run_before=back_up)


async def test_history_lists_the_runs_of_the_profile_newest_first(
    tmp_path: Path, config: Path, samba: SambaServer, remote_dir: str
) -> None:
    profile_on(tmp_path, config, samba, remote_dir)
    assert run_cli(["upload", "home"], config).code == 0
    assert run_cli(["test", "home"], config).code == 0
    async with app_for(config).run_test(size=(120, 40)) as pilot:
        await pilot.press("h")
        screen = pilot.app.screen
        assert isinstance(screen, HistoryScreen)
        table = screen.query_one("DataTable")
        rows = [tuple(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)]
        assert [r[1:3] for r in rows] == [("test (manual)", "ok"), ("upload (manual)", "ok")]
        assert rows[1][3:5] == ("6", "100.0 KB"), rows  # make_tree's six files
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(pilot.app.screen, HomeScreen)


async def test_a_schedule_set_in_settings_installs_the_job_and_clearing_it_removes_it(
    tmp_path: Path, config: Path, samba: SambaServer, remote_dir: str, crontab: None
) -> None:
    profile_on(tmp_path, config, samba, remote_dir)
    environ = {"PATH": os.environ.get("PATH", "")}
    async with app_for(config, environ).run_test(size=(100, 80)) as pilot:
        await pilot.press("s")
        screen = pilot.app.screen
        assert isinstance(screen, SettingsScreen)
        screen.query_one("#every").value = "2m"
        await pilot.pause()
        assert "too short" in str(screen.query_one("#problem").render())
        screen.query_one("#every").value = "4h"
        screen.query_one("#between").value = "08:00-19:00"
        screen.query_one("#days").value = "mon-fri"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(pilot.app.screen, HomeScreen))
        assert "# backdown:run-due" in crontab_text()
        (row,) = home_rows(pilot.app)
        assert row[3] != "when you ask", row
        await pilot.press("s")
        screen = pilot.app.screen
        assert isinstance(screen, SettingsScreen)
        screen.query_one("#every").value = ""
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(pilot.app.screen, HomeScreen))
    assert "backdown:run-due" not in crontab_text()
    shown = json.loads(run_cli(["profile", "show", "home", "--json"], config).out)
    assert shown["schedule_every"] == ""


async def test_the_form_never_tries_an_empty_password(tmp_path: Path, config: Path) -> None:
    async with app_for(config).run_test(size=(100, 60)) as pilot:
        await pilot.pause()
        form = form_of(pilot.app)
        await fill(pilot, form, name="office", local=str(tmp_path), server="127.0.0.1",
                   port="1", share="backup", user="alice")  # fmt: skip
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert error_under(form, "password") == "type the password first"
        assert "testing" not in str(form.query_one("#result").render())


async def test_settings_keep_what_another_program_changed_meanwhile(
    tmp_path: Path, config: Path
) -> None:
    offline_profile(tmp_path, config)
    async with app_for(config).run_test(size=(100, 80)) as pilot:
        await pilot.press("s")
        screen = pilot.app.screen
        assert isinstance(screen, SettingsScreen)
        # Meanwhile, another terminal changes where the profile goes (not shown here).
        assert run_cli(["profile", "edit", "home", "--server", "nas2"], config).code == 0
        screen.query_one("#mode").value = "mirror"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(pilot.app.screen, HomeScreen))
    shown = json.loads(run_cli(["profile", "show", "home", "--json"], config).out)
    assert (shown["server"], shown["mode"]) == ("nas2", "mirror")
