"""The commands about what the share keeps, for the command line and the menu:
`snapshots`, `versions` (every copy of a file, or what was removed), `prune`, `verify`.

Interface layer: it prints. The engine finds and reads what is kept (engine.kept,
point_in_time.py, snapshots.py); restoring any of it is `download` with --as-of, --path or
--version (run_command.py).
"""

from __future__ import annotations

import json
import time

from backdown import engine
from backdown.environment import Environment
from backdown.errors import ExitStatus
from backdown.profile import Profile
from backdown.report import human_size
from backdown.run_command import Output, logon_for


def _local(when: float | None) -> str:
    return "-" if when is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


def _iso(when: float | None) -> str | None:
    return None if when is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def list_snapshots(env: Environment, profile: Profile, out: Output, stdin: bool) -> int:
    """Every snapshot of the profile's folder, oldest first."""
    profile, password = logon_for(profile, env, stdin)
    found = engine.kept(profile, password)
    if out.json:
        rows = [s.to_json() | {"time": _iso(s.ref.time)} for s in found.snapshots]
        print(json.dumps({"snapshots": rows, "problems": found.problems}), file=env.stdout)
        return int(ExitStatus.SUCCESS)
    if not found.snapshots:
        print("no snapshots yet: each successful upload writes one", file=env.stdout)
    for snap in found.snapshots:
        print(
            f"{snap.ref.id}  {_local(snap.ref.time)}  {len(snap.files):>7} files  "
            f"{human_size(snap.total_bytes):>9}  {snap.ref.computer}",
            file=env.stdout,
        )
    for problem in found.problems:
        print(f"note: {problem}", file=env.stderr)
    return int(ExitStatus.SUCCESS)


def list_versions(
    env: Environment,
    profile: Profile,
    path: str | None,
    deleted: bool,
    out: Output,
    stdin: bool,
) -> int:
    """Every stored copy of one file, newest first (numbered for --version), or the files
    removed from the folder (--deleted)."""
    name = profile.name
    profile, password = logon_for(profile, env, stdin)
    if deleted:
        found = engine.kept(profile, password, deleted_under=path or "")
        if out.json:
            rows = [
                {"path": d.path, "removed": _iso(d.removed), "size": d.size, "version": d.stamp}
                for d in found.deleted
            ]
            print(json.dumps(rows), file=env.stdout)
            return int(ExitStatus.SUCCESS)
        if not found.deleted:
            print("nothing removed is kept", file=env.stdout)
        for d in found.deleted:
            print(f"{_local(d.removed)}  {human_size(d.size):>9}  {d.path}", file=env.stdout)
        return int(ExitStatus.SUCCESS)
    assert path is not None
    found = engine.kept(profile, password, path=path)
    if out.json:
        rows = [
            {
                "version": number,
                "where": copy.where,
                "stored": copy.info.stored or copy.info.path,
                "size": copy.info.size,
                "modified": _iso(copy.info.mtime),
                "replaced": _iso(copy.replaced),
            }
            for number, copy in enumerate(found.copies, start=1)
        ]
        print(json.dumps(rows), file=env.stdout)
        return int(ExitStatus.SUCCESS)
    if not found.copies:
        print(
            f"no copy of '{path}' is kept; 'backdown versions {name} --deleted' lists "
            "removed files",
            file=env.stdout,
        )
    for number, copy in enumerate(found.copies, start=1):
        replaced = "current" if copy.replaced is None else f"replaced {_local(copy.replaced)}"
        print(
            f"{number:>3}  modified {_local(copy.info.mtime)}  {human_size(copy.info.size):>9}"
            f"  {replaced}",
            file=env.stdout,
        )
    if found.copies:
        print(
            f"restore one with: backdown download {name} --path '{path}' --version N",
            file=env.stdout,
        )
    return int(ExitStatus.SUCCESS)


def prune(env: Environment, profile: Profile, dry_run: bool, out: Output, stdin: bool) -> int:
    """Prune by the profile's retention rules, or (dry_run) say what would go."""
    profile, password = logon_for(profile, env, stdin)
    todo = engine.prune(profile, password, dry_run, env.config_path)
    verb = "would remove" if dry_run else "removed"
    if out.json:
        data = {
            "dry_run": dry_run,
            "snapshots_kept": [
                {"id": r.id, "time": _iso(r.time), "reasons": todo.reasons.get(r.id, [])}
                for r in todo.keep
            ],
            "snapshots_forgotten": [{"id": r.id, "time": _iso(r.time)} for r in todo.forget],
            "versions_removed": [
                {"path": v.path, "version": v.stamp, "size": v.size} for v in todo.delete
            ],
            "bytes_removed": todo.bytes,
            "kept_for_snapshots": todo.kept_for_snapshots,
            "kept_as_last_copy": todo.kept_as_last_copy,
            "problems": todo.problems,
        }
        print(json.dumps(data), file=env.stdout)
    else:
        for ref in todo.keep:
            why = ", ".join(todo.reasons.get(ref.id, []))
            print(f"keep    snapshot {ref.id}  {_local(ref.time)}  ({why})", file=env.stdout)
        for ref in todo.forget:
            print(f"forget  snapshot {ref.id}  {_local(ref.time)}", file=env.stdout)
        if out.verbose:
            for v in todo.delete:
                print(f"remove  {v.path} (version {v.stamp})", file=env.stdout)
        print(
            f"{verb} {len(todo.forget)} snapshots and {len(todo.delete)} stored versions "
            f"({human_size(todo.bytes)}); kept {todo.kept_for_snapshots} old versions that "
            f"kept snapshots need and {todo.kept_as_last_copy} that are the last copy of a "
            "removed file",
            file=env.stdout,
        )
        for problem in todo.problems:
            print(f"note: {problem}", file=env.stderr)
    return int(ExitStatus.FILES_FAILED if todo.problems else ExitStatus.SUCCESS)
