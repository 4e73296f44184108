"""The operating system's job that runs `backdown schedule run-due` (backdown/os_scheduler.py).

Four parts:
1. The generated files and lines, parsed back by each scheduler's own rules, for paths full of
   spaces, quotes, %, $ and backslashes: systemd units, crontab lines, Task Scheduler XML,
   the launchd plist.
2. A real `crontab` (Debian's cron): install twice, other lines kept byte for byte, remove
   leaves the crontab as it was. The crontab of the user running the tests is saved first and
   put back afterwards, whatever happens.
3. systemd, Task Scheduler and launchd with a recording fake Runner and real files in a
   temporary home: this machine has no systemd user session, no Windows and no macOS, so the
   fake stands in for systemctl, schtasks and launchctl, which cannot run here. Also which
   scheduler pick_scheduler chooses.
4. job_spec: the job's name and interpreter.
"""

from __future__ import annotations

import configparser
import getpass
import hashlib
import json
import os
import plistlib
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backdown.errors import ExitStatus, SchedulerError, SchedulerMissing
from backdown.os_scheduler import (
    Completed,
    CronScheduler,
    JobSpec,
    JobState,
    LaunchdScheduler,
    SystemdScheduler,
    TaskScheduler,
    crontab_lines,
    job_spec,
    launchd_plist,
    pick_scheduler,
    run_program,
    systemd_units,
    task_xml,
)

NS = "http://schemas.microsoft.com/windows/2004/02/mit/task"
# Every character some scheduler treats specially: quotes, %, $, backslash, ;, `, #, and a
# non-ASCII letter.
HOSTILE = "a b 100% \"dq\" 'sq' $HOME ${X} $$ %h %% `t` back\\slash \\\\two \\% ; # é"


def hostile_spec(root: Path) -> JobSpec:
    folder = root / HOSTILE
    return job_spec(
        folder / "bin" / "py thon",
        folder / "config",
        folder / "data",
        root / "default-config",
        platform="linux",
    )


@pytest.fixture
def spec(tmp_path: Path) -> JobSpec:
    return hostile_spec(tmp_path)


# --------------------------------------------------------------------------- 1. systemd units


def systemd_exec_split(line: str) -> list[str]:
    """ExecStart= back into argv by systemd's rules, for words written as we write them:
    each in double quotes with \\\\ and \\" escapes, then %% -> % (specifiers) and $$ -> $
    (variables). Anything else (a bare word, another escape, a lone % or $) fails."""
    words = []
    i = 0
    while i < len(line):
        if line[i] == " ":
            i += 1
            continue
        assert line[i] == '"', f"unquoted word at {line[i:]!r}"
        i += 1
        word = []
        while line[i] != '"':
            if line[i] == "\\":
                assert line[i + 1] in '\\"', f"unexpected escape at {line[i:]!r}"
                i += 1
            word.append(line[i])
            i += 1
        i += 1
        assert i == len(line) or line[i] == " ", f"junk after a quoted word: {line[i:]!r}"
        words.append(undouble(undouble("".join(word), "%"), "$"))
    return words


def undouble(text: str, char: str) -> str:
    """`char` doubled -> once; a lone one fails (systemd would expand it)."""
    out = []
    i = 0
    while i < len(text):
        if text[i] == char:
            assert text[i + 1 : i + 2] == char, f"lone {char} in {text!r}"
            i += 1
        out.append(text[i])
        i += 1
    return "".join(out)


def read_unit(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def test_systemd_service_runs_argv_exactly(spec: JobSpec) -> None:
    service = read_unit(systemd_units(spec)[0])
    assert service.sections() == ["Unit", "Service"]
    assert dict(service["Service"]) == {
        "Type": "oneshot",
        "ExecStart": service["Service"]["ExecStart"],
        "Nice": "10",
    }
    assert systemd_exec_split(service["Service"]["ExecStart"]) == spec.argv()
    assert service["Unit"]["Description"].startswith("BackDown")
    assert "%" not in service["Unit"]["Description"]  # specifiers expand there too


def test_systemd_timer(spec: JobSpec) -> None:
    timer = read_unit(systemd_units(spec)[1])
    assert timer.sections() == ["Unit", "Timer", "Install"]
    assert dict(timer["Timer"]) == {
        "OnCalendar": "*:0/15",
        "Persistent": "true",
        "OnStartupSec": "2min",
        "AccuracySec": "1min",
        "Unit": f"backdown-{spec.job_id}.service",
    }
    assert dict(timer["Install"]) == {"WantedBy": "timers.target"}


def test_systemd_splitter_catches_unescaped_specifiers() -> None:
    assert systemd_exec_split('"/a b" "x\\"y" "100%%" "$$HOME"') == ["/a b", 'x"y', "100%", "$HOME"]
    with pytest.raises(AssertionError):
        systemd_exec_split('"100%"')
    with pytest.raises(AssertionError):
        systemd_exec_split('"$HOME"')


# --------------------------------------------------------------------------- 1. crontab lines


def cron_unescape(command: str) -> str:
    """What cron hands to /bin/sh, by the rule of cron's do_command.c: `\\%` -> `%`,
    `\\\\` -> `\\`, any other backslash kept; an unescaped % would end the command (fails)."""
    out: list[str] = []
    escaped = False
    for ch in command:
        if escaped:
            if ch in "%\\":
                out[-1] = ch
            else:
                out.append(ch)
            escaped = False
        elif ch == "\\":
            out.append(ch)
            escaped = True
        else:
            assert ch != "%", f"unescaped % in {command!r}: cron would cut the command there"
            out.append(ch)
    return "".join(out)


def split_cron_line(line: str, spec: JobSpec) -> tuple[str, str]:
    """A line of ours -> (its schedule, the command /bin/sh gets)."""
    tag = f" # backdown:{spec.job_id}"
    assert line.endswith(tag), line
    line = line[: -len(tag)]
    for schedule in ("@reboot sleep 120; ", "*/15 * * * * "):
        if line.startswith(schedule):
            return schedule, cron_unescape(line[len(schedule) :])
    raise AssertionError(f"unexpected schedule: {line!r}")


def test_crontab_lines_run_argv_exactly(spec: JobSpec) -> None:
    lines = crontab_lines(spec)
    assert len(lines) == 2
    parsed = [split_cron_line(line, spec) for line in lines]
    assert [schedule for schedule, _ in parsed] == ["@reboot sleep 120; ", "*/15 * * * * "]
    for _, command in parsed:
        assert shlex.split(command) == spec.argv()
    assert all("\n" not in line for line in lines)


def test_crontab_command_through_a_real_shell(tmp_path: Path) -> None:
    """The command, as cron hands it to /bin/sh, runs an interpreter at the hostile path with
    exactly the job's arguments."""
    spec = hostile_spec(tmp_path)
    program = Path(spec.python)
    program.parent.mkdir(parents=True)
    program.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv))\n")
    program.chmod(0o755)
    for line in crontab_lines(spec):
        schedule, command = split_cron_line(line, spec)
        if schedule.startswith("@reboot"):
            command = command.replace("sleep 120; ", "", 1)  # not worth two minutes here
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == spec.argv()


def test_cron_unescape_follows_cron() -> None:
    # Checked once against Debian's cron daemon running `printf`-like jobs.
    assert cron_unescape("a\\\\b c\\%d e\\f x\\\\\\%y") == "a\\b c%d e\\f x\\%y"
    with pytest.raises(AssertionError):
        cron_unescape("100%")


# --------------------------------------------------------------------------- 1. Task Scheduler


def windows_split(cmdline: str) -> list[str]:
    """Arguments split as CommandLineToArgvW and the C runtime do (after the program name):
    2n backslashes before a quote give n and the quote toggles quoting; 2n+1 give n and a
    literal quote; other backslashes are literal; "" inside quotes is a literal quote."""
    args: list[str] = []
    i, n = 0, len(cmdline)
    while True:
        while i < n and cmdline[i] in " \t":
            i += 1
        if i >= n:
            return args
        word: list[str] = []
        quoted = False
        while i < n and (quoted or cmdline[i] not in " \t"):
            if cmdline[i] == "\\":
                j = i
                while j < n and cmdline[j] == "\\":
                    j += 1
                count = j - i
                if j < n and cmdline[j] == '"':
                    word.append("\\" * (count // 2))
                    if count % 2:
                        word.append('"')
                        j += 1
                else:
                    word.append("\\" * count)
                i = j
            elif cmdline[i] == '"':
                if quoted and cmdline[i + 1 : i + 2] == '"':
                    word.append('"')
                    i += 2
                else:
                    quoted = not quoted
                    i += 1
            else:
                word.append(cmdline[i])
                i += 1
        args.append("".join(word))


def test_windows_split_follows_microsofts_examples() -> None:
    # The table in Microsoft's "Parsing C++ command-line arguments".
    assert windows_split('"abc" d e') == ["abc", "d", "e"]
    assert windows_split('a\\\\\\b d"e f"g h') == ["a\\\\\\b", "de fg", "h"]
    assert windows_split('a\\\\\\"b c d') == ['a\\"b', "c", "d"]
    assert windows_split('a\\\\\\\\"b c" d e') == ["a\\\\b c", "d", "e"]
    assert windows_split('a"b"" c d') == ['ab" c d']


def t(*names: str) -> str:
    return "/".join(f"t:{name}" for name in names)


def children(element: ET.Element) -> list[tuple[str, str | None]]:
    return [(child.tag.replace(f"{{{NS}}}", ""), child.text) for child in element]


def test_task_xml(spec: JobSpec) -> None:
    text = task_xml(spec, user_id="LAPTOP\\ann")
    ns = {"t": NS}
    task = ET.fromstring(text.encode("utf-16"))  # as install writes it
    assert task.tag == f"{{{NS}}}Task"
    assert task.attrib == {"version": "1.2"}
    assert [tag for tag, _ in children(task)] == [
        "RegistrationInfo", "Triggers", "Principals", "Settings", "Actions",
    ]  # fmt: skip
    assert task.findtext(t("RegistrationInfo", "URI"), namespaces=ns) == (
        f"\\BackDown\\{spec.job_id}"
    )

    triggers = task.find(t("Triggers"), ns)
    assert triggers is not None
    assert [tag for tag, _ in children(triggers)] == ["TimeTrigger", "LogonTrigger", "EventTrigger"]
    every, logon, wake = list(triggers)
    # Trigger children are a sequence in the schema: the order is checked too.
    assert children(every)[:2] == [("Enabled", "true"), ("StartBoundary", "2026-01-01T00:00:00")]
    assert [tag for tag, _ in children(every)] == ["Enabled", "StartBoundary", "Repetition"]
    repetition = every.find(t("Repetition"), ns)
    assert repetition is not None
    assert children(repetition) == [("Interval", "PT15M"), ("StopAtDurationEnd", "false")]
    assert children(logon) == [("Enabled", "true"), ("UserId", "LAPTOP\\ann")]
    assert [tag for tag, _ in children(wake)] == ["Enabled", "Subscription"]
    assert wake.findtext(t("Enabled"), namespaces=ns) == "true"
    assert "&lt;QueryList&gt;" in text  # the query is text inside the task's XML
    query = ET.fromstring(wake.findtext(t("Subscription"), namespaces=ns) or "")
    assert query.tag == "QueryList"
    assert [(q.tag, q.attrib) for q in query] == [("Query", {"Id": "0", "Path": "System"})]
    select = query.find("Query/Select")
    assert select is not None and select.attrib == {"Path": "System"}
    assert select.text == (
        "*[System[Provider[@Name='Microsoft-Windows-Power-Troubleshooter'] and EventID=1]]"
    )

    principals = task.find(t("Principals"), ns)
    assert principals is not None and len(principals) == 1
    principal = principals[0]
    assert principal.attrib == {"id": "Author"}
    assert dict(children(principal)) == {
        "UserId": "LAPTOP\\ann",
        "LogonType": "InteractiveToken",
        "RunLevel": "LeastPrivilege",
    }

    settings = task.find(t("Settings"), ns)
    assert settings is not None
    assert dict(children(settings)) == {
        "MultipleInstancesPolicy": "IgnoreNew",
        "DisallowStartIfOnBatteries": "false",
        "StopIfGoingOnBatteries": "false",
        "StartWhenAvailable": "true",
        "RunOnlyIfNetworkAvailable": "false",
        "Enabled": "true",
        "Hidden": "false",
        "ExecutionTimeLimit": "PT12H",
    }

    actions = task.find(t("Actions"), ns)
    assert actions is not None and actions.attrib == {"Context": "Author"}
    assert [tag for tag, _ in children(actions)] == ["Exec"]
    execute = actions[0]
    assert [tag for tag, _ in children(execute)] == ["Command", "Arguments"]
    assert execute.findtext(t("Command"), namespaces=ns) == spec.python
    arguments = execute.findtext(t("Arguments"), namespaces=ns) or ""
    assert windows_split(arguments) == spec.argv()[1:]


def test_task_xml_on_battery_power_is_refused_when_asked(spec: JobSpec) -> None:
    settings = ET.fromstring(task_xml(spec, user_id="ann", battery_ok=False)).find(
        t("Settings"), {"t": NS}
    )
    assert settings is not None
    values = dict(children(settings))
    assert values["DisallowStartIfOnBatteries"] == "true"
    assert values["StopIfGoingOnBatteries"] == "true"


@pytest.mark.parametrize(
    "argv",
    [
        ["C:\\Program Files\\x", "plain", ""],
        ['say "hi"', "trailing\\", "both\\ \\", 'end\\"', "\\\\server\\share\\dir\\"],
        ["tab\there", "%APPDATA%", "a^b&c|d", "ünï"],
    ],
)
def test_windows_quoting_splits_back(argv: list[str]) -> None:
    assert windows_split(subprocess.list2cmdline(argv)) == argv


# --------------------------------------------------------------------------- 1. launchd plist


def test_launchd_plist(spec: JobSpec) -> None:
    assert plistlib.loads(launchd_plist(spec)) == {
        "Label": f"org.backdown.{spec.job_id}",
        "ProgramArguments": spec.argv(),
        "StartInterval": 900,
        "RunAtLoad": True,
        "ProcessType": "Background",
        "StandardOutPath": spec.log_file,
        "StandardErrorPath": spec.log_file,
    }


# --------------------------------------------------------------------------- 2. a real crontab


def crontab_bytes() -> bytes | None:
    """The crontab of the user running the tests, as `crontab -l` gives it; None for none."""
    done = subprocess.run(["crontab", "-l"], capture_output=True, timeout=30)
    if done.returncode == 1 and b"no crontab for" in done.stderr:
        return None
    assert done.returncode == 0, done.stderr
    return done.stdout


def set_crontab(content: bytes | None) -> None:
    """Replace the crontab of the user running the tests (None: remove it)."""
    if content is None:
        done = subprocess.run(["crontab", "-r"], capture_output=True, timeout=30)
        assert done.returncode == 0 or b"no crontab for" in done.stderr, done.stderr
    else:
        done = subprocess.run(["crontab", "-"], input=content, capture_output=True, timeout=30)
        assert done.returncode == 0, done.stderr


@pytest.fixture
def real_crontab() -> Iterator[CronScheduler]:
    """The real crontab command, with this user's crontab saved and put back afterwards,
    whatever happens in the test. Skipped without crontab; in CI, failed instead."""
    if shutil.which("crontab") is None:
        if os.environ.get("CI"):
            pytest.fail("crontab missing in CI: .ci/run installs Debian's cron")
        pytest.skip("crontab missing (Debian/Ubuntu: apt install cron)")
    saved = crontab_bytes()
    try:
        yield CronScheduler(run_program, getpass.getuser())
    finally:
        set_crontab(saved)
        assert crontab_bytes() == saved, "the user's crontab was not put back"


def test_real_crontab_from_none_and_back(real_crontab: CronScheduler, tmp_path: Path) -> None:
    spec = hostile_spec(tmp_path)
    assert spec.job_id != "run-due"
    set_crontab(None)
    assert real_crontab.state(spec).installed is False

    real_crontab.install(spec)
    real_crontab.install(spec)
    expected = "".join(line + "\n" for line in crontab_lines(spec)).encode()
    assert crontab_bytes() == expected
    assert real_crontab.state(spec) == JobState(
        "cron", True, True, f"crontab of {getpass.getuser()}"
    )

    real_crontab.remove(spec)
    assert crontab_bytes() is None  # no crontab at all, as before
    assert real_crontab.state(spec).installed is False
    real_crontab.remove(spec)  # not installed: nothing to do, no error
    assert crontab_bytes() is None


def test_real_crontab_keeps_other_lines(real_crontab: CronScheduler, tmp_path: Path) -> None:
    spec = hostile_spec(tmp_path)
    theirs = (
        b"# m h  dom mon dow   command\n"
        b"MAILTO=ann@example.org\n"
        b"0 3 * * * /usr/bin/foo --bar 'x  y'   # trailing   \n"
        b"\n"
        b"\t# indented, caf\xe9 in Latin-1\n"
        # The user's real job, and another config folder's: ours must not touch them.
        b"*/15 * * * * /usr/bin/python3 -m backdown schedule run-due # backdown:run-due\n"
        b"*/15 * * * * /usr/bin/python3 -m backdown schedule run-due # backdown:run-due-0123abcd\n"
    )
    set_crontab(theirs)

    real_crontab.install(spec)
    real_crontab.install(spec)
    ours = "".join(line + "\n" for line in crontab_lines(spec)).encode()
    assert crontab_bytes() == theirs + ours
    assert real_crontab.state(spec).installed is True

    real_crontab.remove(spec)
    assert crontab_bytes() == theirs
    assert real_crontab.state(spec).installed is False


# --------------------------------------------------------------------------- 3. fake runner


class FakeRunner:
    """Records every command; answers with the first entry of `answers` whose argv is a prefix
    of the command's, else with success and no output. `on_call` sees each command first."""

    def __init__(
        self,
        answers: dict[tuple[str, ...], Completed] | None = None,
        on_call: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.answers = answers or {}
        self.on_call = on_call
        self.calls: list[list[str]] = []
        self.stdins: list[str | None] = []

    def __call__(self, argv: list[str], stdin: str | None) -> Completed:
        self.calls.append(list(argv))
        self.stdins.append(stdin)
        if self.on_call is not None:
            self.on_call(argv)
        for prefix, answer in self.answers.items():
            if tuple(argv[: len(prefix)]) == prefix:
                return answer
        return Completed(0, "", "")


def failed(message: str, returncode: int = 1) -> Completed:
    return Completed(returncode, "", message)


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# systemd


def systemctl(*args: str) -> list[str]:
    return ["systemctl", "--user", *args]


def test_systemd_install_twice_then_remove(spec: JobSpec, tmp_path: Path) -> None:
    home = tmp_path / "home"
    runner = FakeRunner()
    systemd = SystemdScheduler(runner, home, "ann")
    systemd.install(spec)
    systemd.install(spec)

    unit_dir = home / ".config" / "systemd" / "user"
    name = f"backdown-{spec.job_id}"
    assert files_under(home) == [
        f".config/systemd/user/{name}.service",
        f".config/systemd/user/{name}.timer",
    ]
    service, timer = systemd_units(spec)
    assert (unit_dir / f"{name}.service").read_text() == service
    assert (unit_dir / f"{name}.timer").read_text() == timer
    once = [systemctl("daemon-reload"), systemctl("enable", "--now", f"{name}.timer")]
    assert runner.calls == once * 2

    runner.calls.clear()
    systemd.remove(spec)
    assert runner.calls == [
        systemctl("disable", "--now", f"{name}.timer"),
        systemctl("daemon-reload"),
    ]
    assert files_under(home) == []

    runner.calls.clear()
    systemd.remove(spec)  # not installed: nothing to do
    assert runner.calls == []


def test_systemd_state(spec: JobSpec, tmp_path: Path) -> None:
    name = f"backdown-{spec.job_id}"
    timer_path = tmp_path / ".config" / "systemd" / "user" / f"{name}.timer"
    runner = FakeRunner(
        {
            ("systemctl", "--user", "is-enabled"): Completed(0, "enabled\n", ""),
            ("loginctl",): Completed(0, "Linger=no\n", ""),
        }
    )
    systemd = SystemdScheduler(runner, tmp_path, "ann")
    assert systemd.state(spec) == JobState("systemd", False, False, str(timer_path))
    assert runner.calls == []

    systemd.install(spec)
    runner.calls.clear()
    assert systemd.state(spec) == JobState(
        "systemd",
        True,
        True,
        str(timer_path),
        "runs only while you are logged in; `loginctl enable-linger ann` lets it run while "
        "you are logged out",
    )
    assert runner.calls == [
        systemctl("is-enabled", f"{name}.timer"),
        ["loginctl", "show-user", "ann", "-p", "Linger"],
    ]

    runner.answers = {
        ("systemctl", "--user", "is-enabled"): Completed(1, "disabled\n", ""),
        ("loginctl",): Completed(0, "Linger=yes\n", ""),
    }
    assert systemd.state(spec) == JobState("systemd", True, False, str(timer_path))


def test_systemd_failed_enable_leaves_no_unit_files(spec: JobSpec, tmp_path: Path) -> None:
    name = f"backdown-{spec.job_id}"
    runner = FakeRunner(
        {("systemctl", "--user", "enable"): failed(f"Failed to enable unit: {name}.timer masked\n")}
    )
    with pytest.raises(SchedulerError) as caught:
        SystemdScheduler(runner, tmp_path, "ann").install(spec)
    assert caught.value.exit_status == ExitStatus.NO_SCHEDULER == 4
    message = str(caught.value)
    assert f"`systemctl --user enable --now {name}.timer` failed" in message
    assert f"{name}.timer masked" in message and "\n" not in message
    assert files_under(tmp_path) == []
    assert runner.calls == [
        systemctl("daemon-reload"),
        systemctl("enable", "--now", f"{name}.timer"),
        systemctl("disable", f"{name}.timer"),  # in case enable linked it before failing
        systemctl("daemon-reload"),
    ]


def test_systemd_failed_reinstall_puts_the_old_units_back(spec: JobSpec, tmp_path: Path) -> None:
    runner = FakeRunner()
    systemd = SystemdScheduler(runner, tmp_path, "ann")
    systemd.install(spec)
    unit_dir = tmp_path / ".config" / "systemd" / "user"
    for path in unit_dir.iterdir():
        path.write_text(f"an older {path.suffix}\n")
    runner.answers = {("systemctl", "--user", "daemon-reload"): failed("Access denied\n")}
    runner.calls.clear()

    with pytest.raises(SchedulerError, match="daemon-reload` failed: Access denied"):
        systemd.install(spec)
    assert sorted(p.read_text() for p in unit_dir.iterdir()) == [
        "an older .service\n",
        "an older .timer\n",
    ]
    assert systemctl("disable", f"backdown-{spec.job_id}.timer") not in runner.calls


def test_systemd_remove_keeps_the_files_when_disable_fails(spec: JobSpec, tmp_path: Path) -> None:
    runner = FakeRunner()
    systemd = SystemdScheduler(runner, tmp_path, "ann")
    systemd.install(spec)
    runner.answers = {("systemctl", "--user", "disable"): failed("Failed to connect to bus\n")}
    with pytest.raises(SchedulerError, match="Failed to connect to bus"):
        systemd.remove(spec)
    assert len(files_under(tmp_path)) == 2


# cron, where the real crontab cannot fail on purpose


def test_cron_refuses_with_crontabs_first_error_line(spec: JobSpec) -> None:
    runner = FakeRunner(
        {
            ("crontab", "-l"): failed("no crontab for ann\n"),
            ("crontab", "-"): failed("crontab: write error: No space left\nmore detail\n"),
        }
    )
    with pytest.raises(SchedulerError) as caught:
        CronScheduler(runner, "ann").install(spec)
    assert caught.value.exit_status == 4
    assert "`crontab -` failed: crontab: write error: No space left;" in str(caught.value)
    assert "more detail" not in str(caught.value)
    assert runner.stdins[-1] == "".join(line + "\n" for line in crontab_lines(spec))


def test_cron_does_not_write_when_the_crontab_cannot_be_read(spec: JobSpec) -> None:
    runner = FakeRunner({("crontab", "-l"): failed("crontab: you are not allowed\n")})
    with pytest.raises(SchedulerError, match="not allowed"):
        CronScheduler(runner, "ann").install(spec)
    assert runner.calls == [["crontab", "-l"]]


def test_cron_tag_is_matched_exactly(tmp_path: Path) -> None:
    """The default job's tag is the start of every other job's tag: neither may take the
    other's lines."""
    spec = job_spec("/usr/bin/python3", tmp_path, tmp_path, tmp_path, platform="linux")
    assert spec.job_id == "run-due"
    other = "*/15 * * * * /usr/bin/python3 -m backdown # backdown:run-due-0123abcd"
    runner = FakeRunner({("crontab", "-l"): Completed(0, other + "\n", "")})
    CronScheduler(runner, "ann").install(spec)
    assert runner.stdins[-1] == "".join(f"{line}\n" for line in [other, *crontab_lines(spec)])
    CronScheduler(runner, "ann").remove(spec)  # the answer still lacks our lines
    assert runner.calls[-1] == ["crontab", "-l"]


# Task Scheduler


def test_task_install_twice_then_remove(spec: JobSpec) -> None:
    written: list[tuple[str, bytes]] = []

    def keep_xml(argv: list[str]) -> None:
        if argv[1] == "/Create":
            path = argv[argv.index("/XML") + 1]
            written.append((path, Path(path).read_bytes()))

    runner = FakeRunner(on_call=keep_xml)
    tasks = TaskScheduler(runner, user_id="LAPTOP\\ann")
    tasks.install(spec)
    tasks.install(spec)

    name = f"\\BackDown\\{spec.job_id}"
    assert [call[:5] + call[6:] for call in runner.calls] == [
        ["schtasks", "/Create", "/TN", name, "/XML", "/F"]
    ] * 2
    assert len(written) == 2
    for path, data in written:
        assert data.startswith(b"\xff\xfe")  # UTF-16 with its byte order mark
        assert data.decode("utf-16") == task_xml(spec, user_id="LAPTOP\\ann")
        assert not Path(path).exists()  # the temporary file is gone

    runner.calls.clear()
    tasks.remove(spec)
    assert runner.calls == [["schtasks", "/Delete", "/TN", name, "/F"]]


def test_task_remove_when_not_installed(spec: JobSpec) -> None:
    not_found = failed("ERROR: The system cannot find the file specified.\n")
    runner = FakeRunner({("schtasks", "/Delete"): not_found, ("schtasks", "/Query"): not_found})
    TaskScheduler(runner, user_id="ann").remove(spec)  # no error

    runner.answers = {("schtasks", "/Delete"): failed("ERROR: Access is denied.\n")}
    with pytest.raises(SchedulerError, match="Access is denied"):
        TaskScheduler(runner, user_id="ann").remove(spec)


def test_task_state(spec: JobSpec) -> None:
    name = f"\\BackDown\\{spec.job_id}"
    listing = f"\nFolder: \\BackDown\nHostName: LAPTOP\nTaskName: {name}\nStatus:   {{}}\n"
    runner = FakeRunner({("schtasks", "/Query"): Completed(0, listing.format("Ready"), "")})
    tasks = TaskScheduler(runner, user_id="ann")
    assert tasks.state(spec) == JobState("task-scheduler", True, True, name)
    assert runner.calls == [["schtasks", "/Query", "/TN", name, "/FO", "LIST"]]
    runner.answers = {("schtasks", "/Query"): Completed(0, listing.format("Disabled"), "")}
    assert tasks.state(spec) == JobState("task-scheduler", True, False, name)
    runner.answers = {("schtasks", "/Query"): failed("ERROR: The system cannot find the file")}
    assert tasks.state(spec) == JobState("task-scheduler", False, False, name)


def test_task_failed_create_leaves_no_temporary_file(spec: JobSpec) -> None:
    runner = FakeRunner({("schtasks", "/Create"): failed("ERROR: Access is denied.\n")})
    with pytest.raises(SchedulerError, match="schtasks /Create .* failed: ERROR: Access is denied"):
        TaskScheduler(runner, user_id="ann").install(spec)
    assert not Path(runner.calls[0][5]).exists()


# launchd


def test_launchd_install_twice_then_remove(spec: JobSpec, tmp_path: Path) -> None:
    home = tmp_path / "home"
    runner = FakeRunner()
    agents = LaunchdScheduler(runner, home, uid=501)
    agents.install(spec)
    agents.install(spec)

    label = f"org.backdown.{spec.job_id}"
    plist = home / "Library" / "LaunchAgents" / f"{label}.plist"
    assert files_under(home) == [f"Library/LaunchAgents/{label}.plist"]
    assert plist.read_bytes() == launchd_plist(spec)
    assert plist.stat().st_mode & 0o777 == 0o644  # launchd ignores agents others can write
    assert Path(spec.log_file).parent.is_dir()
    once = [
        ["launchctl", "bootout", "gui/501", str(plist)],
        ["launchctl", "bootstrap", "gui/501", str(plist)],
    ]
    assert runner.calls == once * 2

    runner.answers = {("launchctl", "print"): Completed(0, "state = not running\n", "")}
    runner.calls.clear()
    assert agents.state(spec) == JobState("launchd", True, True, str(plist))
    assert runner.calls == [["launchctl", "print", f"gui/501/{label}"]]

    runner.calls.clear()
    agents.remove(spec)
    assert runner.calls == [["launchctl", "bootout", "gui/501", str(plist)]]
    assert files_under(home) == []
    assert agents.state(spec) == JobState("launchd", False, False, str(plist))


def test_launchd_failed_bootstrap_leaves_no_plist(spec: JobSpec, tmp_path: Path) -> None:
    runner = FakeRunner(
        {
            ("launchctl", "bootout"): failed("Boot-out failed: 3: No such process\n", 3),
            ("launchctl", "bootstrap"): failed("Bootstrap failed: 5: Input/output error\n", 5),
        }
    )
    with pytest.raises(SchedulerError, match="bootstrap gui/501 .* failed: Bootstrap failed: 5"):
        LaunchdScheduler(runner, tmp_path / "home", uid=501).install(spec)
    assert files_under(tmp_path / "home") == []


# which scheduler


def test_pick_systemd_when_the_user_manager_answers(tmp_path: Path) -> None:
    runner = FakeRunner()
    assert pick_scheduler("linux", runner, tmp_path, "ann").kind == "systemd"
    assert runner.calls == [systemctl("show-environment")]


@pytest.mark.parametrize(
    "listed", [failed("no crontab for ann\n"), Completed(0, "# m h dom mon dow command\n", "")]
)
def test_pick_cron_without_systemd(tmp_path: Path, listed: Completed) -> None:
    runner = FakeRunner(
        {
            ("systemctl",): failed("Failed to connect to bus: No medium found\n"),
            ("crontab", "-l"): listed,
        }
    )
    assert pick_scheduler("linux", runner, tmp_path, "ann").kind == "cron"
    assert runner.calls == [systemctl("show-environment"), ["crontab", "-l"]]


@pytest.mark.parametrize(
    "crontab", [failed("crontab: not found", 127), failed("crontab: you are not allowed\n")]
)
def test_pick_nothing_usable(spec: JobSpec, tmp_path: Path, crontab: Completed) -> None:
    runner = FakeRunner({("systemctl",): failed("not found", 127), ("crontab",): crontab})
    with pytest.raises(SchedulerMissing) as caught:
        pick_scheduler("linux", runner, tmp_path, "ann", spec=spec)
    assert caught.value.exit_status == ExitStatus.NO_SCHEDULER == 4
    message = str(caught.value)
    assert "apt install cron" in message and message.endswith(shlex.join(spec.argv()))


def test_pick_windows_and_macos(tmp_path: Path) -> None:
    runner = FakeRunner()
    assert pick_scheduler("win32", runner, tmp_path, "LAPTOP\\ann").kind == "task-scheduler"
    assert pick_scheduler("darwin", runner, tmp_path, "ann").kind == "launchd"
    assert runner.calls == []


# the real runner


def test_run_program(tmp_path: Path) -> None:
    assert run_program(["/nonexistent/program"], None).returncode == 127
    echoed = run_program(["cat"], "line one\n$HOME %x\n")
    assert echoed == Completed(0, "line one\n$HOME %x\n", "")
    done = run_program([sys.executable, "-c", "import sys; sys.exit(3)"], None)
    assert done.returncode == 3
    # No shell in between: $HOME reaches the program as it is.
    assert run_program(["printf", "%s", "$HOME;x"], None).stdout == "$HOME;x"


# --------------------------------------------------------------------------- 4. job_spec


def test_job_spec_for_the_default_config_folder(tmp_path: Path) -> None:
    config = tmp_path / "config"
    spec = job_spec("/usr/bin/python3", config, tmp_path / "data", f"{config}/", platform="linux")
    assert spec == JobSpec(
        python="/usr/bin/python3",
        config_dir=str(config),
        data_dir=str(tmp_path / "data"),
        job_id="run-due",
        log_file=str(tmp_path / "data" / "logs" / "scheduler.log"),
    )
    assert spec.argv() == [
        "/usr/bin/python3", "-m", "backdown", "--config-dir", str(config),
        "--data-dir", str(tmp_path / "data"), "schedule", "run-due",
    ]  # fmt: skip


def test_job_spec_for_another_config_folder(tmp_path: Path) -> None:
    default = tmp_path / "default"
    one = job_spec("/usr/bin/python3", tmp_path / "one", tmp_path, default, platform="linux")
    two = job_spec("/usr/bin/python3", tmp_path / "two", tmp_path, default, platform="linux")
    digest = hashlib.sha256(str(tmp_path / "one").encode()).hexdigest()[:8]
    assert one.job_id == f"run-due-{digest}"
    assert two.job_id != one.job_id and two.job_id.startswith("run-due-")


def test_job_spec_prefers_pythonw_on_windows(tmp_path: Path) -> None:
    python = tmp_path / "python.exe"
    python.touch()
    args = (tmp_path / "c", tmp_path / "d", tmp_path / "c")
    assert job_spec(python, *args, platform="win32").python == str(python)  # no pythonw yet
    (tmp_path / "pythonw.exe").touch()
    assert job_spec(python, *args, platform="win32").python == str(tmp_path / "pythonw.exe")
    assert job_spec(python, *args, platform="linux").python == str(python)


def test_job_spec_refuses_a_line_break(tmp_path: Path) -> None:
    with pytest.raises(SchedulerError, match="line break"):
        job_spec("/usr/bin/python3", tmp_path / "a\nb", tmp_path, tmp_path, platform="linux")
