"""The full-screen terminal UI (Textual): a thin interface over the same core as the menu
and the command line. `backdown` opens it when standard input and output are a terminal
that can show it; `backdown menu`, `--plain`, TERM=dumb or no terminal give the numbered
menu (main.py)."""

from __future__ import annotations

from backdown.environment import Environment


def unavailable(env: Environment) -> str | None:
    """Why the full-screen UI cannot run here, or None when it can."""
    if not (env.stdin_isatty and env.stdout_isatty):
        return "not a terminal"
    if env.environ.get("TERM", "") in ("dumb", "unknown"):
        return "TERM=dumb"
    try:
        import textual  # noqa: F401
    except ImportError:
        return "textual is not installed"
    return None


def run_tui(env: Environment) -> int:
    """Run the full-screen UI until the user quits; the exit code."""
    from backdown.tui.app import BackDownApp

    app = BackDownApp(env)
    app.run()
    return app.return_code or 0
