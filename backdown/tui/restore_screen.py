"""Restore: pick what (everything, or files and folders ticked in a tree of the backup),
as of when (the latest backup, or a date), and where (a new folder beside the original by
default; the original only when chosen, with the warning that local files that differ are
kept aside, and where). Ctrl-R starts the restore on the Run screen."""

from __future__ import annotations

import os
import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Checkbox, Footer, Header, Input, Label, Select, Static, Tree
from textual.widgets.tree import TreeNode

from backdown import engine
from backdown.environment import Environment
from backdown.errors import BackdownError, UsageError
from backdown.paths import REPLACED_DIR
from backdown.point_in_time import parse_moment
from backdown.profile import Profile, validate_local
from backdown.report import human_size
from backdown.run_options import RunOptions
from backdown.tui.password import with_logon
from backdown.tui.run_screen import RunScreen

TICKED, UNTICKED = "[x] ", "[ ] "


def _local(when: float | None) -> str:
    return "-" if when is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(when))


class PickTree(Tree[str]):
    """The backup's tree; Space ticks (Enter still opens and closes a folder)."""

    BINDINGS = [
        Binding("space", "tick", "Tick / untick"),
        Binding("v", "versions", "Versions of a file"),
    ]

    def action_tick(self) -> None:
        screen = self.screen
        if isinstance(screen, RestoreScreen):
            screen.tick()

    def action_versions(self) -> None:
        screen = self.screen
        if isinstance(screen, RestoreScreen):
            screen.show_versions()


class RestoreScreen(Screen[None]):
    BINDINGS = [
        Binding("ctrl+r", "restore", "Restore"),
        Binding("escape", "app.pop_screen", "Back"),
    ]
    DEFAULT_CSS = """
    RestoreScreen Tree { height: 1fr; min-height: 6; }
    RestoreScreen Input { margin: 0 1; }
    RestoreScreen #problem { color: $error; height: auto; }
    """

    def __init__(self, env: Environment, name: str) -> None:
        super().__init__()
        self.env = env
        self.profile_name = name
        self.profile: Profile | None = None
        self.logon: tuple[Profile, str] | None = None
        self.ticked: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"Restore '{self.profile_name}': reading the backup ...", id="title")
        yield PickTree("everything (nothing ticked)", id="tree")
        with VerticalScroll(id="choices"):
            yield Label("As of: the latest backup, or one of the snapshots")
            yield Select([("the latest backup", "")], value="", allow_blank=False, id="snapshot")
            yield Label("... or a time (like '2026-11-28 17:00', 'yesterday', '3d')")
            yield Input("", id="as_of", compact=True, placeholder="empty: as chosen above")
            yield Static("", id="versions")
            yield Label("Version of the one ticked file (v lists them; empty: as of above)")
            yield Input("", id="version", compact=True)
            yield Label("Into the folder")
            yield Input("", id="target", compact=True)
            yield Checkbox("Over the original folder instead", id="original")
            yield Static("", id="problem")
        yield Footer()

    def on_mount(self) -> None:
        with_logon(self, self.env, self.profile_name, self._load, self._fail)

    def _fail(self, line: str) -> None:
        self.query_one("#title", Static).update(line)

    def _load(self, logon: tuple[Profile, str]) -> None:
        self.profile = logon[0]
        self.logon = logon
        stamp = time.strftime("%Y%m%d-%H%M")
        self.query_one("#target", Input).value = f"{logon[0].local.rstrip(os.sep)}-restored-{stamp}"
        self.run_worker(lambda: self._list(logon), thread=True, exit_on_error=False)

    def _list(self, logon: tuple[Profile, str]) -> None:
        try:
            files, dirs = engine.backed_up(*logon)
            found = engine.kept(*logon)
        except BackdownError as err:
            self.app.call_from_thread(self._fail, f"error: {err}")
            return
        choices = [("the latest backup", "")] + [
            (f"{_local(s.ref.time)}: {len(s.files):,} files, {human_size(s.total_bytes)}, "
             f"from {s.ref.computer}", s.ref.id)
            for s in reversed(found.snapshots)
        ]  # fmt: skip
        self.app.call_from_thread(self._fill_tree, files, dirs, choices)

    def _fill_tree(self, files: list[str], dirs: list[str], choices: list[tuple[str, str]]) -> None:
        self.query_one("#snapshot", Select).set_options(choices)
        tree: Tree[str] = self.query_one("#tree", Tree)
        nodes: dict[str, TreeNode[str]] = {"": tree.root}
        for folder in sorted(dirs):
            parent = nodes[folder.rpartition("/")[0]]
            nodes[folder] = parent.add(UNTICKED + folder.rpartition("/")[2] + "/", data=folder)
        for path in files:
            nodes[path.rpartition("/")[0]].add_leaf(UNTICKED + path.rpartition("/")[2], data=path)
        tree.root.expand()
        self.query_one("#title", Static).update(
            f"Restore '{self.profile_name}': {len(files):,} files backed up. Space ticks what "
            "to restore (nothing ticked: everything); Ctrl-R restores."
        )
        tree.focus()

    def tick(self) -> None:
        tree: Tree[str] = self.query_one("#tree", Tree)
        node = tree.cursor_node
        if node is None or node.data is None:
            return
        path = node.data
        label = str(node.label)[len(TICKED) :]
        if path in self.ticked:
            self.ticked.discard(path)
            node.set_label(UNTICKED + label)
        else:
            self.ticked.add(path)
            node.set_label(TICKED + label)
        tree.root.set_label(
            f"{len(self.ticked)} ticked" if self.ticked else "everything (nothing ticked)"
        )

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        problem = self.query_one("#problem", Static)
        if event.value and self.profile is not None:
            kept = os.path.join(self.profile.local, REPLACED_DIR)
            problem.update(
                f"Local files that differ are not overwritten: they are kept aside in {kept}"
            )
        else:
            problem.update("")

    def show_versions(self) -> None:
        """Every stored copy of the highlighted file, newest first, numbered."""
        node = self.query_one("#tree", Tree).cursor_node
        if node is None or node.data is None or self.logon is None:
            return
        path, logon = node.data, self.logon
        self.query_one("#versions", Static).update(f"versions of {path} ...")
        self.run_worker(lambda: self._versions(logon, path), thread=True, exit_on_error=False)

    def _versions(self, logon: tuple[Profile, str], path: str) -> None:
        try:
            copies = engine.kept(*logon, path=path).copies
        except BackdownError as err:
            self.app.call_from_thread(self.query_one("#versions", Static).update, f"error: {err}")
            return
        lines = [f"versions of {path}:"] + [
            f"  {number}  modified {_local(c.info.mtime)}  {human_size(c.info.size)}  "
            + ("current" if c.replaced is None else f"replaced {_local(c.replaced)}")
            for number, c in enumerate(copies, start=1)
        ]
        if not copies:
            lines = [f"no copy of {path} is kept"]
        self.app.call_from_thread(self.query_one("#versions", Static).update, "\n".join(lines))

    def options(self) -> RunOptions | None:
        """The restore as chosen, or None (and the problem shown)."""
        problem = self.query_one("#problem", Static)
        as_of = self.query_one("#as_of", Input).value.strip()
        picked = str(self.query_one("#snapshot", Select).value or "")
        version_text = self.query_one("#version", Input).value.strip()
        try:
            if as_of.lower() in ("latest", "now"):
                as_of = ""
            if as_of:
                parse_moment(as_of, time.time(), None)
            else:
                as_of = picked
            version = None
            if version_text:
                if not version_text.isdecimal() or int(version_text) < 1:
                    raise UsageError("the version is a number from the list (v shows it)")
                if len(self.ticked) != 1:
                    raise UsageError("tick exactly one file to restore one of its versions")
                version = int(version_text)
            original = self.query_one("#original", Checkbox).value
            assert self.profile is not None
            target = self.profile.local if original else self.query_one("#target", Input).value
            target = validate_local(target)
        except UsageError as err:
            problem.update(str(err))
            return None
        return RunOptions(
            target=target, paths=sorted(self.ticked), as_of=as_of or None, version=version
        )

    def action_restore(self) -> None:
        if self.profile is None:
            return
        options = self.options()
        if options is not None:
            self.app.push_screen(RunScreen(self.env, self.profile_name, "download", options))
