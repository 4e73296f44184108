"""What the home screen shows for each profile, in words a coworker reads: where from and
to, the last good backup ("3 hours ago"), when the next one is due, and its state (ok,
running, failed, overdue, never, locked out). Pure: the caller gives the history, the
time and which profiles are running."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import tzinfo

from backdown.history import History
from backdown.profile_store import ProfileStore
from backdown.scheduled_runs import FAILING, LOCKED, NEVER, OVERDUE, age_text, health

# The states as the home screen names them.
STATE_WORDS = {FAILING: "failed", LOCKED: "locked out", OVERDUE: "overdue", NEVER: "never"}


@dataclass(frozen=True)
class ProfileRow:
    name: str
    route: str  # local folder -> //server/share/folder
    last_good: str  # "3 hours ago", "never"
    next_due: str  # "in 5 hours", "now", "when you ask" (no schedule)
    state: str  # ok, running, failed, overdue, never, locked out
    detail: str  # why, for a state that needs attention
    current: bool

    @property
    def attention(self) -> bool:
        return self.state in ("failed", "overdue", "locked out")


def profile_rows(
    store: ProfileStore,
    history: History,
    now: float,
    running: Collection[str] = (),
    tz: tzinfo | None = None,
) -> list[ProfileRow]:
    """One row per profile, in the store's order."""
    current = store.current()
    rows = []
    for profile in store.profiles:
        state = health(profile, history, now, tz)
        if profile.name in running:
            words = "running"
        else:
            words = STATE_WORDS.get(state.state, "ok")
        last = state.last_success
        rows.append(
            ProfileRow(
                name=profile.name,
                route=f"{profile.local} -> {profile.unc}",
                last_good="never" if last is None else f"{age_text(now - last)} ago",
                next_due=_due_words(state.next_due.timestamp() if state.next_due else None, now),
                state=words,
                detail=state.detail,
                current=current is not None and current.name == profile.name,
            )
        )
    return rows


def _due_words(due: float | None, now: float) -> str:
    if due is None:
        return "when you ask"
    if due <= now + 60:
        return "now"
    return f"in {age_text(due - now)}"
