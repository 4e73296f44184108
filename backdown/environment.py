"""The program's surroundings: streams, config directory, environment variables.

The interface layer builds one Environment and passes it down; tests build their own with a
temporary config directory. Nothing below the interface reads sys.* or os.environ itself.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

CONFIG_DIR_VAR = "BACKDOWN_CONFIG_DIR"
DATA_DIR_VAR = "BACKDOWN_DATA_DIR"
PASSWORD_VAR = "BACKDOWN_PASSWORD"


def default_config_dir(environ: dict[str, str] | None = None) -> Path:
    """BACKDOWN_CONFIG_DIR if set, else the platform's user config directory."""
    environ = dict(os.environ) if environ is None else environ
    if environ.get(CONFIG_DIR_VAR):
        return Path(environ[CONFIG_DIR_VAR]).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("backdown", appauthor=False))


def default_data_dir(environ: dict[str, str] | None = None) -> Path:
    """BACKDOWN_DATA_DIR if set, else the platform's user data directory (run history, the
    scheduled runs' log)."""
    environ = dict(os.environ) if environ is None else environ
    if environ.get(DATA_DIR_VAR):
        return Path(environ[DATA_DIR_VAR]).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("backdown", appauthor=False))


@dataclass
class Environment:
    stdin: IO[str] = field(default_factory=lambda: sys.stdin)
    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    config_dir: Path | None = None
    data_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.config_dir is None:
            self.config_dir = default_config_dir(self.environ)
        if self.data_dir is None:
            self.data_dir = default_data_dir(self.environ)

    @property
    def config_path(self) -> Path:
        assert self.config_dir is not None
        return self.config_dir

    @property
    def data_path(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir

    @property
    def stdin_isatty(self) -> bool:
        return _isatty(self.stdin)

    @property
    def stdout_isatty(self) -> bool:
        return _isatty(self.stdout)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
