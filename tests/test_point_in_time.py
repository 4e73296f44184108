"""Restore as a person means it, on the real Samba share: the folder as of each of three
backups (edits, a rename, deletions between them), one file or one folder of it, every
stored copy of a file and one of them brought back, removed files listed, and what is no
longer kept reported, never skipped."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from helpers import Result, add_profile, assert_same_tree, run_cli, tree_bytes
from samba import SambaServer

pytestmark = pytest.mark.samba

OLD = 1_600_000_000


def ok(result: Result) -> Result:
    assert result.code == 0, result
    return result


def json_of(result: Result) -> object:
    return json.loads(result.out.strip().splitlines()[-1])


class History3:
    """Three backups of one folder, and a copy of the folder as each one saw it."""

    def __init__(self, tmp: Path, samba: SambaServer, remote_dir: str) -> None:
        self.tmp = tmp
        self.local = tmp / "local"
        self.config = tmp / "config"
        self.share = samba.share_path("backup") / remote_dir
        self.local.mkdir()
        add_profile(self.config, "p", self.local, samba.port, remote_dir, samba.user,
                    samba.password, extra=["--mode", "mirror"])  # fmt: skip
        self.kept: list[Path] = []
        self.ids: list[str] = []
        self.times: list[float] = []

    def write(self, rel: str, text: str, age: int) -> None:
        path = self.local / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.utime(path, (OLD + age, OLD + age))

    def backup(self) -> None:
        ok(run_cli(["upload", "p"], self.config))
        copy = self.tmp / f"as-of-{len(self.kept)}"
        shutil.copytree(self.local, copy)
        self.kept.append(copy)
        snaps = json_of(ok(run_cli(["snapshots", "p", "--json"], self.config)))
        assert isinstance(snaps, dict)
        self.ids = [s["id"] for s in snaps["snapshots"]]
        self.times.append(time.time())
        time.sleep(1.1)  # the next backup in another second, for --as-of a time between

    def time_after(self, n: int) -> str:
        """A local time after backup n and before the next one (whole seconds)."""
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.times[n] + 1.0))

    def restore(self, *args: str) -> tuple[Path, Result]:
        target = self.tmp / f"restored-{time.monotonic_ns()}"
        result = run_cli(["download", "p", "--to", str(target), *args], self.config)
        return target, result


@pytest.fixture
def three(tmp_path: Path, samba: SambaServer, remote_dir: str) -> History3:
    h = History3(tmp_path, samba, remote_dir)
    h.write("report.txt", "first draft", 0)
    h.write("budget/2026.xlsx", "numbers v1", 0)
    h.write("budget/notes.txt", "keep me", 0)
    h.write("old/gone-later.txt", "will be deleted", 0)
    h.backup()
    h.write("report.txt", "second draft, longer", 100)  # edited
    os.rename(h.local / "budget" / "notes.txt", h.local / "budget" / "notes-renamed.txt")
    shutil.rmtree(h.local / "old")  # deleted
    h.backup()
    h.write("report.txt", "third", 200)
    h.write("budget/2026.xlsx", "numbers v3", 200)
    h.write("new.txt", "added last", 200)
    h.backup()
    return h


def test_as_of_each_backup_restores_exactly_that_tree(three: History3) -> None:
    assert len(three.ids) == 3
    for n, snapshot_id in enumerate(three.ids):
        target, result = three.restore("--as-of", snapshot_id)
        assert ok(result), result
        assert_same_tree(three.kept[n], target)
    # A time between the first and second backup gives the first tree.
    target, result = three.restore("--as-of", three.time_after(0))
    ok(result)
    assert_same_tree(three.kept[0], target)
    # The latest is the share as it is now.
    target, _ = three.restore()
    assert_same_tree(three.kept[2], target)


def test_the_plan_says_where_each_file_comes_from(three: History3) -> None:
    target, result = three.restore("--as-of", three.ids[0], "--dry-run", "--json")
    ok(result)
    plan = {p["path"]: p["action"] for p in json_of(result)["plan"]}  # type: ignore[index]
    files = ["budget/2026.xlsx", "budget/notes.txt", "old/gone-later.txt", "report.txt"]
    assert all(plan[f].startswith("new (from version 2026") for f in files), plan
    assert not target.exists(), "a dry run writes nothing"
    target, result = three.restore("--as-of", three.ids[2], "--dry-run", "--json")
    plan = {p["path"]: p["action"] for p in json_of(result)["plan"]}  # type: ignore[index]
    assert plan["new.txt"] == "new (from current)", plan


def test_one_file_and_one_folder_as_of_the_first_backup(three: History3) -> None:
    target, result = three.restore("--as-of", three.ids[0], "--path", "report.txt")
    ok(result)
    assert tree_bytes(target) == {"report.txt": b"first draft"}
    target, result = three.restore("--as-of", three.ids[0], "--path", "budget")
    ok(result)
    assert tree_bytes(target) == {
        "budget": None,
        "budget/2026.xlsx": b"numbers v1",
        "budget/notes.txt": b"keep me",
    }
    target, result = three.restore("--path", "budget/")  # latest
    ok(result)
    assert set(tree_bytes(target)) == {"budget", "budget/2026.xlsx", "budget/notes-renamed.txt"}


def test_versions_lists_every_copy_and_brings_one_back(three: History3) -> None:
    copies = json_of(ok(run_cli(["versions", "p", "report.txt", "--json"], three.config)))
    assert isinstance(copies, list)
    assert [c["size"] for c in copies] == [len("third"), len("second draft, longer"),
                                          len("first draft")]  # fmt: skip
    assert copies[0]["where"] == "current" and copies[1]["where"].startswith("version ")
    listed = ok(run_cli(["versions", "p", "report.txt"], three.config)).out
    assert len([line for line in listed.splitlines() if line.strip()[:1].isdigit()]) == 3
    target, result = three.restore("--path", "report.txt", "--version", "3")
    ok(result)
    assert tree_bytes(target) == {"report.txt": b"first draft"}
    assert (os.stat(target / "report.txt").st_mtime) == OLD


def test_removed_files_are_listed_with_when(three: History3) -> None:
    removed = json_of(ok(run_cli(["versions", "p", "--deleted", "--json"], three.config)))
    assert isinstance(removed, list)
    assert sorted(r["path"] for r in removed) == ["budget/notes.txt", "old/gone-later.txt"]
    only_old = json_of(ok(run_cli(["versions", "p", "--deleted", "old", "--json"],
                                  three.config)))  # fmt: skip
    assert [r["path"] for r in only_old] == ["old/gone-later.txt"]  # type: ignore[index]


def test_content_no_longer_kept_is_reported_not_skipped(three: History3) -> None:
    versions = three.share / ".backdown" / "versions"
    for stamp in os.listdir(versions):  # pruned by hand: every stored version is gone
        shutil.rmtree(versions / stamp)
    target, result = three.restore("--as-of", three.ids[0], "--json")
    assert result.code == 1, result
    failed = {f["path"]: f["error"] for f in json_of(result)["files_failed"]}  # type: ignore[index]
    assert set(failed) == {"report.txt", "budget/2026.xlsx", "budget/notes.txt",
                           "old/gone-later.txt"}  # fmt: skip
    assert all("no longer kept" in why for why in failed.values())


def test_bad_input_is_one_line_and_writes_nothing(three: History3) -> None:
    cases = [
        (["--as-of", "1999-01-01 10:00"], 2, "no backup as old as"),
        (["--as-of", "last tuesday"], 2, "is not a time"),
        (["--path", "never/was.txt"], 2, "is not in the backup"),
        (["--path", "report.txt", "--version", "9"], 2, "give --version from 1 to 3"),
        (["--version", "1"], 2, "exactly one --path"),
    ]
    for args, code, says in cases:
        target, result = three.restore(*args)
        assert result.code == code, (args, result)
        assert says in result.err and len(result.err.strip().splitlines()) == 1, result
        assert not target.exists()


def test_a_damaged_snapshot_is_skipped_for_the_next_older(three: History3) -> None:
    folder = three.share / ".backdown" / "snapshots"
    [newest] = [n for n in os.listdir(folder) if n.startswith(three.ids[1])]
    (folder / newest).write_bytes(b"not gzip at all")
    target, result = three.restore("--as-of", three.time_after(1))
    ok(result)
    assert_same_tree(three.kept[0], target)
    assert "cannot be read" in result.out and "next older snapshot" in result.out
