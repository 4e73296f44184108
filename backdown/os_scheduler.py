"""The one job in the operating system's own scheduler that runs `backdown schedule run-due`.

Every 15 minutes, and at log-on, boot or wake, the job asks BackDown which profiles are due;
the rule itself lives in schedule.py. There is one job per user and config folder, in
whichever scheduler this machine has: systemd user timers or cron on Linux, Task Scheduler on
Windows, launchd on macOS. This module writes the job's files, installs, removes and inspects
it through a `Runner` (the programs `systemctl`, `crontab`, `schtasks`, `launchctl`), so tests
can pass a recording one. It never prints.

An install either completes or leaves the scheduler as it found it: a failed step undoes what
was written and raises SchedulerError naming the command and its error.
"""

from __future__ import annotations

import hashlib
import os
import plistlib
import shlex
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from backdown.errors import SchedulerError, SchedulerMissing, quoted

DEFAULT_JOB_ID = "run-due"
RUN_TIMEOUT = 30.0  # seconds any one scheduler command may take
INTERVAL_MINUTES = 15

TASK_NS = "http://schemas.microsoft.com/windows/2004/02/mit/task"
TASK_FOLDER = "\\BackDown\\"
# Any fixed moment in the past: the trigger then repeats every 15 minutes from it, forever.
TASK_START = "2026-01-01T00:00:00"
WAKE_QUERY = (
    '<QueryList><Query Id="0" Path="System"><Select Path="System">'
    "*[System[Provider[@Name='Microsoft-Windows-Power-Troubleshooter'] and EventID=1]]"
    "</Select></Query></QueryList>"
)


@dataclass(frozen=True)
class Completed:
    """What a program did: its exit status and its output."""

    returncode: int
    stdout: str
    stderr: str


# argv and the text for its stdin (None: no input) -> what the program did.
Runner = Callable[[list[str], str | None], Completed]


def run_program(argv: list[str], stdin: str | None) -> Completed:
    """Run a program without a shell, waiting at most RUN_TIMEOUT seconds. A program that is
    missing gives 127, one that cannot be started 126, one that does not finish 124."""
    try:
        done = subprocess.run(
            argv,
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            text=True,
            # A crontab may hold bytes that are not UTF-8: surrogateescape carries them
            # through `crontab -l` and back into `crontab -` unchanged.
            encoding="utf-8" if os.name != "nt" else None,
            errors="surrogateescape",
            timeout=RUN_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        return Completed(127, "", f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return Completed(124, "", f"{argv[0]}: no answer within {RUN_TIMEOUT:.0f} s")
    except OSError as exc:
        return Completed(126, "", f"{argv[0]}: {exc.strerror or exc}")
    return Completed(done.returncode, done.stdout or "", done.stderr or "")


# --------------------------------------------------------------------------- the job


@dataclass(frozen=True)
class JobSpec:
    """What the job runs, and the name it is known by in the scheduler."""

    python: str  # absolute path of the interpreter
    config_dir: str  # absolute
    data_dir: str  # absolute
    job_id: str  # "run-due" for the default config folder, else "run-due-<hash>"
    log_file: str  # where launchd sends the job's output

    def __post_init__(self) -> None:
        for value in (self.python, self.config_dir, self.data_dir, self.log_file):
            # No scheduler's file format can carry a line break inside a command.
            if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
                raise SchedulerError(
                    f"the path {quoted(value)} holds a line break or control character, which the "
                    "scheduler cannot carry: use a folder whose name has none"
                )

    def argv(self) -> list[str]:
        """The command line the job runs."""
        return [
            self.python,
            "-m",
            "backdown",
            "--config-dir",
            self.config_dir,
            "--data-dir",
            self.data_dir,
            "schedule",
            "run-due",
        ]


@dataclass(frozen=True)
class JobState:
    """The job as the scheduler has it."""

    kind: str  # "systemd", "cron", "task-scheduler" or "launchd"
    installed: bool
    enabled: bool
    where: str  # unit file, "crontab of USER", task name or plist file
    note: str = ""


def job_spec(
    python: str | os.PathLike[str],
    config_dir: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    default_config_dir: str | os.PathLike[str],
    *,
    platform: str = sys.platform,
) -> JobSpec:
    """The job for this interpreter and these folders; `platform` as sys.platform."""
    python = os.path.abspath(python)
    config = os.path.abspath(config_dir)
    data = os.path.abspath(data_dir)
    if platform == "win32":
        # pythonw.exe has no console: without it a window would flash up every 15 minutes.
        windowless = os.path.join(os.path.dirname(python), "pythonw.exe")
        if os.path.isfile(windowless):
            python = windowless
    return JobSpec(
        python=python,
        config_dir=config,
        data_dir=data,
        job_id=job_id_for(config, default_config_dir),
        log_file=os.path.join(data, "logs", "scheduler.log"),
    )


def job_id_for(config_dir: str, default_config_dir: str | os.PathLike[str]) -> str:
    """The job's name: run-due for the default config folder; for any other one a name of its
    own, so a test's or a second config folder's job never replaces the user's real one."""
    config = os.path.normcase(os.path.abspath(config_dir))
    if config == os.path.normcase(os.path.abspath(default_config_dir)):
        return DEFAULT_JOB_ID
    return f"{DEFAULT_JOB_ID}-{hashlib.sha256(config.encode()).hexdigest()[:8]}"


class Scheduler(Protocol):
    """One kind of operating-system scheduler, holding at most one job per JobSpec.job_id."""

    kind: str

    def install(self, spec: JobSpec) -> None:
        """Install or replace the job: installing twice leaves one job."""

    def remove(self, spec: JobSpec) -> None:
        """Remove the job; nothing to do when it is not installed."""

    def state(self, spec: JobSpec) -> JobState:
        """Whether the job is installed and enabled, and where."""


def pick_scheduler(
    platform: str, runner: Runner, home: Path, user: str, *, spec: JobSpec | None = None
) -> Scheduler:
    """The scheduler this machine offers; `platform` as sys.platform. Raises SchedulerMissing
    when there is none (the message names `spec`'s command, when given, for the user's own)."""
    if platform == "win32":
        return TaskScheduler(runner, user_id=user)
    if platform == "darwin":
        return LaunchdScheduler(runner, home, uid=os.getuid())
    if runner(["systemctl", "--user", "show-environment"], None).returncode == 0:
        return SystemdScheduler(runner, home, user)
    listed = runner(["crontab", "-l"], None)
    if listed.returncode == 0 or _no_crontab(listed):
        return CronScheduler(runner, user)
    command = shlex.join(spec.argv()) if spec else "backdown schedule run-due"
    raise SchedulerMissing(
        "no systemd user session and no crontab command: install cron (Debian/Ubuntu: "
        f"apt install cron) or run this every 15 minutes from your own scheduler: {command}"
    )


# --------------------------------------------------------------------------- systemd


def unit_name(spec: JobSpec) -> str:
    """The units' name without the suffix: backdown-<job_id>."""
    return f"backdown-{spec.job_id}"


def systemd_units(spec: JobSpec) -> tuple[str, str]:
    """The service and the timer unit files' text."""
    exec_start = " ".join(_systemd_quote(arg) for arg in spec.argv())
    service = (
        "[Unit]\n"
        f"Description=BackDown: run the backups that are due ({spec.job_id})\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={exec_start}\n"
        "Nice=10\n"
    )
    timer = (
        "[Unit]\n"
        f"Description=BackDown: look for due backups every {INTERVAL_MINUTES} minutes "
        f"({spec.job_id})\n"
        "\n"
        "[Timer]\n"
        f"OnCalendar=*:0/{INTERVAL_MINUTES}\n"
        # A time missed while the machine was off or asleep fires at once on boot or wake.
        "Persistent=true\n"
        # The user manager starts at log-on (or boot, with linger): look then too.
        "OnStartupSec=2min\n"
        "AccuracySec=1min\n"
        f"Unit={unit_name(spec)}.service\n"
        "\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )
    return service, timer


def _systemd_quote(arg: str) -> str:
    """One ExecStart= word that systemd turns back into `arg`: double-quoted with C escapes,
    and % and $ doubled so that neither specifiers nor variables are expanded."""
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("%", "%%").replace("$", "$$") + '"'


class SystemdScheduler:
    """A systemd user timer and its service in ~/.config/systemd/user."""

    kind = "systemd"

    def __init__(self, runner: Runner, home: Path, user: str) -> None:
        self.runner = runner
        self.unit_dir = home / ".config" / "systemd" / "user"
        self.user = user

    def _paths(self, spec: JobSpec) -> tuple[Path, Path]:
        name = unit_name(spec)
        return self.unit_dir / f"{name}.service", self.unit_dir / f"{name}.timer"

    def _systemctl(self, *args: str) -> tuple[list[str], Completed]:
        argv = ["systemctl", "--user", *args]
        return argv, self.runner(argv, None)

    def install(self, spec: JobSpec) -> None:
        paths = self._paths(spec)
        before = [_read_or_none(path) for path in paths]
        timer = f"{unit_name(spec)}.timer"
        enabling = False
        try:
            for path, text in zip(paths, systemd_units(spec), strict=True):
                _write_file(path, text.encode())
            argv, done = self._systemctl("daemon-reload")
            if done.returncode == 0:
                enabling = True
                argv, done = self._systemctl("enable", "--now", timer)
            if done.returncode != 0:
                raise _refused(argv, done)
        except SchedulerError:
            if enabling and before == [None, None]:
                # `enable --now` may have linked the timer before it failed to start it.
                self._systemctl("disable", timer)
            for path, old in zip(paths, before, strict=True):
                _restore_file(path, old)
            self._systemctl("daemon-reload")
            raise

    def remove(self, spec: JobSpec) -> None:
        paths = self._paths(spec)
        if not any(path.exists() for path in paths):
            return
        argv, done = self._systemctl("disable", "--now", f"{unit_name(spec)}.timer")
        if done.returncode != 0 and paths[1].exists():
            # Deleting the files of a timer that is still running would leave it running.
            raise _refused(argv, done)
        for path in paths:
            _remove_file(path)
        # The timer is stopped and disabled already; a failed reload only leaves systemd
        # remembering two units that no longer exist, until its next reload.
        self._systemctl("daemon-reload")

    def state(self, spec: JobSpec) -> JobState:
        timer_path = self._paths(spec)[1]
        installed = timer_path.exists()
        enabled = False
        note = ""
        if installed:
            _, done = self._systemctl("is-enabled", f"{unit_name(spec)}.timer")
            enabled = done.returncode == 0 and done.stdout.strip() == "enabled"
            linger = self.runner(["loginctl", "show-user", self.user, "-p", "Linger"], None)
            if linger.returncode == 0 and linger.stdout.strip() == "Linger=no":
                note = (
                    "runs only while you are logged in; `loginctl enable-linger "
                    f"{self.user}` lets it run while you are logged out"
                )
        return JobState(self.kind, installed, enabled, str(timer_path), note)


# --------------------------------------------------------------------------- cron


def cron_tag(spec: JobSpec) -> str:
    """The trailing comment that marks this job's crontab lines (the shell ignores it)."""
    return f"# backdown:{spec.job_id}"


def crontab_lines(spec: JobSpec) -> list[str]:
    """The job's two crontab lines: at boot (after the network had time to come up) and
    every 15 minutes."""
    command = " ".join(shlex.quote(arg) for arg in spec.argv())
    # cron reads `\\` as `\` and `\%` as `%`, and turns any other % into a line break.
    command = command.replace("\\", "\\\\").replace("%", "\\%")
    tag = cron_tag(spec)
    return [
        f"@reboot sleep 120; {command} {tag}",
        f"*/{INTERVAL_MINUTES} * * * * {command} {tag}",
    ]


class CronScheduler:
    """Two tagged lines in the user's crontab, beside whatever else it holds."""

    kind = "cron"

    def __init__(self, runner: Runner, user: str) -> None:
        self.runner = runner
        self.user = user

    def _read(self) -> list[str] | None:
        """The crontab's lines without their line ends; None when the user has none."""
        listed = self.runner(["crontab", "-l"], None)
        if _no_crontab(listed):
            return None
        if listed.returncode != 0:
            raise _refused(["crontab", "-l"], listed)
        lines = listed.stdout.split("\n")
        if lines[-1] == "":
            lines.pop()
        return lines

    def _write(self, lines: list[str]) -> None:
        # crontab refuses a last line without its line end.
        text = "".join(line + "\n" for line in lines)
        done = self.runner(["crontab", "-"], text)
        if done.returncode != 0:
            raise _refused(["crontab", "-"], done)

    def _others(self, lines: list[str] | None, spec: JobSpec) -> list[str]:
        tag = " " + cron_tag(spec)
        return [line for line in lines or [] if not line.rstrip().endswith(tag)]

    def install(self, spec: JobSpec) -> None:
        # `crontab -` replaces the crontab in one rename: when it fails, nothing changed.
        self._write(self._others(self._read(), spec) + crontab_lines(spec))

    def remove(self, spec: JobSpec) -> None:
        lines = self._read()
        others = self._others(lines, spec)
        if lines is None or others == lines:
            return
        if others:
            self._write(others)
            return
        # Only our lines were there: leave no crontab at all, as before the install.
        done = self.runner(["crontab", "-r"], None)
        if done.returncode != 0 and not _no_crontab(done):
            raise _refused(["crontab", "-r"], done)

    def state(self, spec: JobSpec) -> JobState:
        lines = self._read()
        installed = lines is not None and self._others(lines, spec) != lines
        return JobState(self.kind, installed, installed, f"crontab of {self.user}")


def _no_crontab(done: Completed) -> bool:
    return done.returncode == 1 and "no crontab for" in done.stderr


# --------------------------------------------------------------------------- Task Scheduler


def task_name(spec: JobSpec) -> str:
    """The task's full name: \\BackDown\\<job_id>."""
    return TASK_FOLDER + spec.job_id


def task_xml(spec: JobSpec, *, user_id: str, battery_ok: bool = True) -> str:
    """The task's definition in Task Scheduler's XML (schema version 1.2)."""
    ET.register_namespace("", TASK_NS)

    def sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
        child = ET.SubElement(parent, f"{{{TASK_NS}}}{tag}")
        child.text = text
        return child

    task = ET.Element(f"{{{TASK_NS}}}Task", {"version": "1.2"})
    info = sub(task, "RegistrationInfo")
    sub(info, "Description", "BackDown: runs the backups that are due")
    sub(info, "URI", task_name(spec))

    # Each trigger's children in the schema's order (a sequence, not a set).
    triggers = sub(task, "Triggers")
    every = sub(triggers, "TimeTrigger")
    sub(every, "Enabled", "true")
    sub(every, "StartBoundary", TASK_START)
    repetition = sub(every, "Repetition")
    sub(repetition, "Interval", f"PT{INTERVAL_MINUTES}M")  # no Duration: for ever
    sub(repetition, "StopAtDurationEnd", "false")
    logon = sub(triggers, "LogonTrigger")
    sub(logon, "Enabled", "true")
    sub(logon, "UserId", user_id)
    wake = sub(triggers, "EventTrigger")
    sub(wake, "Enabled", "true")
    sub(wake, "Subscription", WAKE_QUERY)

    principal = sub(sub(task, "Principals"), "Principal")
    principal.set("id", "Author")
    sub(principal, "UserId", user_id)
    sub(principal, "LogonType", "InteractiveToken")
    sub(principal, "RunLevel", "LeastPrivilege")

    on_battery = "false" if battery_ok else "true"
    settings = sub(task, "Settings")
    sub(settings, "MultipleInstancesPolicy", "IgnoreNew")
    sub(settings, "DisallowStartIfOnBatteries", on_battery)
    sub(settings, "StopIfGoingOnBatteries", on_battery)
    sub(settings, "StartWhenAvailable", "true")
    # run-due itself notes "server not reachable"; the scheduler's idea of a network is
    # only a guess.
    sub(settings, "RunOnlyIfNetworkAvailable", "false")
    sub(settings, "Enabled", "true")
    sub(settings, "Hidden", "false")
    sub(settings, "ExecutionTimeLimit", "PT12H")

    actions = sub(task, "Actions")
    actions.set("Context", "Author")
    execute = sub(actions, "Exec")
    argv = spec.argv()
    sub(execute, "Command", argv[0])
    sub(execute, "Arguments", subprocess.list2cmdline(argv[1:]))

    body = ET.tostring(task, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-16"?>\n' + body + "\n"


class TaskScheduler:
    """A task in the \\BackDown\\ folder of Windows' Task Scheduler, made with schtasks."""

    kind = "task-scheduler"

    def __init__(self, runner: Runner, user_id: str, *, battery_ok: bool = True) -> None:
        self.runner = runner
        self.user_id = user_id
        self.battery_ok = battery_ok

    def install(self, spec: JobSpec) -> None:
        data = task_xml(spec, user_id=self.user_id, battery_ok=self.battery_ok)
        fd, xml_path = tempfile.mkstemp(prefix="backdown-task-", suffix=".xml")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data.encode("utf-16"))  # with a BOM, as schtasks expects
            # /F replaces a task of the same name: installing twice leaves one.
            argv = ["schtasks", "/Create", "/TN", task_name(spec), "/XML", xml_path, "/F"]
            done = self.runner(argv, None)
            if done.returncode != 0:
                raise _refused(argv, done)
        finally:
            _remove_file(Path(xml_path))

    def remove(self, spec: JobSpec) -> None:
        argv = ["schtasks", "/Delete", "/TN", task_name(spec), "/F"]
        done = self.runner(argv, None)
        # schtasks' "not found" message is translated; asking whether the task is there is not.
        if done.returncode != 0 and self.state(spec).installed:
            raise _refused(argv, done)

    def state(self, spec: JobSpec) -> JobState:
        name = task_name(spec)
        done = self.runner(["schtasks", "/Query", "/TN", name, "/FO", "LIST"], None)
        installed = done.returncode == 0
        disabled = any(
            key.strip() == "Status" and value.strip() == "Disabled"
            for key, _, value in (line.partition(":") for line in done.stdout.splitlines())
        )
        return JobState(self.kind, installed, installed and not disabled, name)


# --------------------------------------------------------------------------- launchd


def launchd_label(spec: JobSpec) -> str:
    """The agent's label: org.backdown.<job_id>."""
    return f"org.backdown.{spec.job_id}"


def launchd_plist(spec: JobSpec) -> bytes:
    """The launch agent's property list."""
    return plistlib.dumps(
        {
            "Label": launchd_label(spec),
            "ProgramArguments": spec.argv(),
            # launchd runs an interval missed during sleep once on wake.
            "StartInterval": INTERVAL_MINUTES * 60,
            "RunAtLoad": True,  # the agent loads at log-on
            "ProcessType": "Background",
            "StandardOutPath": spec.log_file,
            "StandardErrorPath": spec.log_file,
        }
    )


class LaunchdScheduler:
    """A launch agent in ~/Library/LaunchAgents, loaded into the user's GUI domain."""

    kind = "launchd"

    def __init__(self, runner: Runner, home: Path, uid: int) -> None:
        self.runner = runner
        self.agent_dir = home / "Library" / "LaunchAgents"
        self.domain = f"gui/{uid}"

    def _path(self, spec: JobSpec) -> Path:
        return self.agent_dir / f"{launchd_label(spec)}.plist"

    def install(self, spec: JobSpec) -> None:
        path = self._path(spec)
        before = _read_or_none(path)
        bootstrap = ["launchctl", "bootstrap", self.domain, str(path)]
        try:
            # launchd does not create the folder of StandardOutPath.
            Path(spec.log_file).parent.mkdir(parents=True, exist_ok=True)
            _write_file(path, launchd_plist(spec))
            # Unload the agent first, if loaded, so that it rereads its file.
            self.runner(["launchctl", "bootout", self.domain, str(path)], None)
            done = self.runner(bootstrap, None)
            if done.returncode != 0:
                raise _refused(bootstrap, done)
        except OSError as exc:
            _restore_file(path, before)
            raise SchedulerError(f"cannot write the launch agent: {exc}") from exc
        except SchedulerError:
            _restore_file(path, before)
            if before is not None:
                self.runner(bootstrap, None)  # the agent as it was: best effort
            raise

    def remove(self, spec: JobSpec) -> None:
        path = self._path(spec)
        if not path.exists():
            return
        # Fails when the agent is not loaded, which is what remove wants anyway.
        self.runner(["launchctl", "bootout", self.domain, str(path)], None)
        _remove_file(path)

    def state(self, spec: JobSpec) -> JobState:
        path = self._path(spec)
        installed = path.exists()
        enabled = False
        if installed:
            target = f"{self.domain}/{launchd_label(spec)}"
            enabled = self.runner(["launchctl", "print", target], None).returncode == 0
        return JobState(self.kind, installed, enabled, str(path))


# --------------------------------------------------------------------------- helpers


def _refused(argv: list[str], done: Completed) -> SchedulerError:
    """The error for a scheduler command that failed: the command and its first error line."""
    lines = [line.strip() for line in (done.stderr + "\n" + done.stdout).splitlines()]
    reason = next((line for line in lines if line), f"exit status {done.returncode}")
    return SchedulerError(
        f"the scheduler refused: `{shlex.join(argv)}` failed: {reason}; "
        "nothing was changed, fix that and try again"
    )


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _write_file(path: Path, data: bytes) -> None:
    """Write through a temporary file and a rename, so the scheduler never reads half a
    file; raises SchedulerError when the folder cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            # launchd ignores an agent that others could write.
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            _remove_file(Path(tmp))
            raise
    except OSError as exc:
        raise SchedulerError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _restore_file(path: Path, old: bytes | None) -> None:
    """Put a file back as it was: its old content, or no file."""
    if old is None:
        _remove_file(path)
    else:
        try:
            _write_file(path, old)
        except SchedulerError:
            pass  # the error being raised already says what failed


def _remove_file(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
