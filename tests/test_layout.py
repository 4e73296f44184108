"""The house rules, read from the imports themselves: dependencies point one way
(interface -> engine -> parts), and only backdown/smb/ imports pysmb."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "backdown"

INTERFACE = {
    "__main__", "cli", "main", "initialize", "run_command", "schedule_commands",
    "restore_commands", "tui",
}  # fmt: skip
ENGINE = {
    "engine", "upload", "download", "transfer", "walk", "manifest", "office_report",
    "scheduled_runs", "snapshots", "point_in_time", "verify", "pruning", "overview",
}  # fmt: skip
PARTS = {
    "__init__", "errors", "environment", "paths", "plan", "share_names", "filters", "report",
    "run_options", "progress", "profile", "profile_store", "credentials", "smb", "schedule",
    "history", "alerts", "os_scheduler", "retention", "tripwire",
}  # fmt: skip
PYSMB = {"ext:smb", "ext:nmb"}  # pysmb's packages (backdown's own smb package is "smb")


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name below backdown ('engine', 'smb.wire')."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).with_suffix("")
        found[".".join(rel.parts)] = path
    return found


def _imports(path: Path) -> set[str]:
    """Names imported: 'backdown.x.y' as 'x', other packages as 'ext:<top-level name>'."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names.add(_short(alias.name))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "backdown":
                names.update(alias.name for alias in node.names)
            else:
                names.add(_short(node.module))
    return names


def _short(module: str) -> str:
    parts = module.split(".")
    return parts[1] if parts[0] == "backdown" and len(parts) > 1 else f"ext:{parts[0]}"


def test_every_module_has_a_layer() -> None:
    tops = {name.split(".")[0] for name in _modules()}
    assert tops <= INTERFACE | ENGINE | PARTS, tops - (INTERFACE | ENGINE | PARTS)


def test_the_engine_and_its_parts_never_import_the_interface() -> None:
    for name, path in _modules().items():
        top = name.split(".")[0]
        if top in INTERFACE:
            continue
        wrong = _imports(path) & INTERFACE
        assert not wrong, f"backdown/{name} imports the interface: {sorted(wrong)}"


def test_parts_never_import_the_engine() -> None:
    for name, path in _modules().items():
        if name.split(".")[0] in PARTS:
            wrong = _imports(path) & ENGINE
            assert not wrong, f"backdown/{name} imports the engine: {sorted(wrong)}"


def test_only_the_smb_package_imports_pysmb() -> None:
    for name, path in _modules().items():
        if name.split(".")[0] != "smb":
            wrong = _imports(path) & PYSMB
            assert not wrong, f"backdown/{name} imports pysmb ({sorted(wrong)})"
    assert _imports(PACKAGE / "smb" / "wire.py") & PYSMB  # the rule reads real imports


def test_the_rule_reader_sees_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("from backdown.cli import main\nimport smb.base\nfrom backdown import main\n")
    assert _imports(sample) == {"cli", "ext:smb", "main"}
