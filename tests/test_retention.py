"""Retention (backdown/retention.py): which snapshots a policy keeps, counted as restic's
`forget` counts them, and which stored versions may be deleted. Pure: a fixed clock and
fixed zones, so nothing here depends on the machine's time or zone."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone

import pytest

from backdown.errors import UsageError
from backdown.manifest import utc_stamp
from backdown.retention import (
    Decision,
    Policy,
    VersionFile,
    decide,
    needed_versions,
    prunable_versions,
)
from backdown.snapshots import Snapshot, SnapshotRef, file_name

UTC = timezone.utc
DAY = 86400.0


def at(y: int, m: int, d: int, hh: int = 9, mm: int = 0) -> float:
    return datetime(y, m, d, hh, mm, tzinfo=UTC).timestamp()


def ref(when: float, computer: str = "PC1") -> SnapshotRef:
    stamp = utc_stamp(when)
    return SnapshotRef(stamp, when, computer, file_name(stamp, computer))


def times(decision: Decision) -> list[float]:
    return [r.time for r in decision.keep]


# --------------------------------------------------------------------- a year of snapshots

# One snapshot a day at 09:00 UTC from 2025-01-06 to 2026-01-02, except on the gap days
# (no October at all: a month without backups); three (09:00, 13:00, 21:00) on busy days.
FIRST, LAST = date(2025, 1, 6), date(2026, 1, 2)
GAPS = {date(2025, 3, 15), date(2025, 12, 26), date(2025, 12, 27), date(2025, 12, 30)}
GAPS |= {date(2025, 10, 1) + timedelta(days=n) for n in range(31)}
BUSY = {date(2026, 1, 2), date(2025, 12, 31), date(2025, 12, 28), date(2025, 12, 25)}


def _year() -> list[SnapshotRef]:
    refs = []
    day = FIRST
    while day <= LAST:
        if day not in GAPS:
            for hour in (9, 13, 21) if day in BUSY else (9,):
                refs.append(ref(at(day.year, day.month, day.day, hour)))
        day += timedelta(days=1)
    random.Random(7).shuffle(refs)  # decide() sorts for itself
    return refs


YEAR = _year()
NEWEST = at(2026, 1, 2, 21)


def test_the_year_is_what_the_tests_assume() -> None:
    assert len(YEAR) == (LAST - FIRST).days + 1 - len(GAPS) + 2 * len(BUSY)
    assert max(r.time for r in YEAR) == NEWEST


def test_keep_daily_keeps_the_newest_of_each_of_the_last_days_that_have_snapshots() -> None:
    decision = decide(YEAR, Policy(keep_daily=7), tz=UTC)
    # Gap days (12-30, 12-27, 12-26) do not use up the count; busy days give their newest.
    assert times(decision) == [
        at(2025, 12, 24), at(2025, 12, 25, 21), at(2025, 12, 28, 21), at(2025, 12, 29),
        at(2025, 12, 31, 21), at(2026, 1, 1), at(2026, 1, 2, 21),
    ]  # fmt: skip
    assert len(decision.forget) == len(YEAR) - 7
    assert decision.reasons[decision.keep[0].id] == ["daily"]


def test_keep_weekly_counts_iso_weeks_across_the_new_year() -> None:
    decision = decide(YEAR, Policy(keep_weekly=4), tz=UTC)
    # 2025-12-29..2026-01-04 is ISO week 2026-W01: one week across two calendar years, so
    # 12-31 (21:00) is not kept; a Sunday- or calendar-year week would keep it.
    assert times(decision) == [
        at(2025, 12, 14), at(2025, 12, 21), at(2025, 12, 28, 21), at(2026, 1, 2, 21),
    ]  # fmt: skip


def test_keep_monthly_counts_months_that_have_snapshots() -> None:
    decision = decide(YEAR, Policy(keep_monthly=6), tz=UTC)
    # October has none, so the sixth month back is July, not August.
    assert times(decision) == [
        at(2025, 7, 31), at(2025, 8, 31), at(2025, 9, 30), at(2025, 11, 30),
        at(2025, 12, 31, 21), at(2026, 1, 2, 21),
    ]  # fmt: skip


def test_combined_rules_keep_the_union_with_every_reason() -> None:
    policy = Policy(keep_last=2, keep_daily=3, keep_weekly=2, keep_monthly=2)
    decision = decide(YEAR, policy, tz=UTC)
    why = {r.time: decision.reasons[r.id] for r in decision.keep}
    assert why == {
        at(2026, 1, 2, 21): ["newest", "last", "daily", "weekly", "monthly"],
        at(2026, 1, 2, 13): ["last"],
        at(2026, 1, 1): ["daily"],
        at(2025, 12, 31, 21): ["daily", "monthly"],
        at(2025, 12, 28, 21): ["weekly"],
    }
    assert len(decision.keep) + len(decision.forget) == len(YEAR)
    assert set(decision.reasons) == {r.id for r in decision.keep}


def test_keep_last_keeps_the_newest_n() -> None:
    decision = decide(YEAR, Policy(keep_last=3), tz=UTC)
    assert times(decision) == [at(2026, 1, 2, 9), at(2026, 1, 2, 13), at(2026, 1, 2, 21)]
    assert decision.reasons[decision.keep[0].id] == ["last"]


def test_keep_within_counts_back_from_the_newest_snapshot_strictly() -> None:
    # Exactly as far back as 12-31 09:00: that one is not younger, so it goes.
    span = NEWEST - at(2025, 12, 31, 9)
    decision = decide(YEAR, Policy(keep_within=span), tz=UTC)
    assert times(decision) == [
        at(2025, 12, 31, 13), at(2025, 12, 31, 21), at(2026, 1, 1),
        at(2026, 1, 2, 9), at(2026, 1, 2, 13), at(2026, 1, 2, 21),
    ]  # fmt: skip
    assert decision.reasons[decision.keep[0].id] == ["within"]


def test_keep_within_does_not_count_from_now() -> None:
    # Backups stopped months ago: their last three days are still kept whole.
    later = at(2026, 6, 1)
    decision = decide(YEAR, Policy(keep_within=3 * DAY), tz=UTC, now=later)
    assert times(decision) == times(decide(YEAR, Policy(keep_within=3 * DAY), tz=UTC))
    assert len(decision.keep) == 7  # 12-31 (three), 01-01, 01-02 (three)


def test_a_snapshot_dated_in_the_future_is_kept_but_not_counted_from() -> None:
    skewed = ref(at(2027, 1, 1), computer="BADCLOCK")
    refs = [*YEAR, skewed]
    policy = Policy(keep_within=3 * DAY)
    decision = decide(refs, policy, tz=UTC, now=NEWEST + 60)
    assert decision.keep[-1] == skewed
    assert decision.reasons[skewed.id] == ["newest", "within"]
    assert len(decision.keep) == 1 + 7
    # Without a clock to tell, the future one is the newest and the rest age out.
    assert decide(refs, policy, tz=UTC).keep == [skewed]


def test_an_empty_policy_keeps_everything() -> None:
    assert Policy().empty and not Policy(keep_within=1.0).empty
    decision = decide(YEAR, Policy(), tz=UTC)
    assert decision.forget == []
    assert times(decision) == sorted(r.time for r in YEAR)
    assert all("no policy" in reasons for reasons in decision.reasons.values())


def test_the_newest_is_always_kept() -> None:
    # A window too small to count at all (smaller than a float step at today's times):
    # keep-within keeps nothing, and the newest stays anyway.
    decision = decide(YEAR, Policy(keep_within=1e-9), tz=UTC)
    assert times(decision) == [NEWEST]
    assert decision.reasons[decision.keep[0].id] == ["newest"]
    assert decide([], Policy(keep_last=1), tz=UTC) == Decision([], [], {})


def test_buckets_carry_the_year() -> None:
    # A year without backups between two Wednesdays of ISO week 3, both in January.
    refs = [ref(at(2024, 6, 5)), ref(at(2025, 1, 15)), ref(at(2026, 1, 14))]
    assert decide(refs, Policy(keep_monthly=2), tz=UTC).keep == refs[1:]
    assert decide(refs, Policy(keep_weekly=2), tz=UTC).keep == refs[1:]


def test_a_rule_not_filled_keeps_the_oldest_too() -> None:
    # restic (0.17 on): a young folder keeps its first state while a count is left.
    refs = [
        ref(at(2025, 3, 1, 9)),
        ref(at(2025, 3, 1, 18)),
        ref(at(2025, 3, 2)),
        ref(at(2025, 3, 3)),
    ]
    decision = decide(refs, Policy(keep_daily=7), tz=UTC)
    assert decision.forget == []
    assert decision.reasons[refs[0].id] == ["oldest daily"]
    assert decision.reasons[refs[1].id] == ["daily"]
    # With the count used up before it, the oldest goes.
    assert decide(refs, Policy(keep_daily=3), tz=UTC).forget == [refs[0]]


def test_days_are_those_of_the_zone_given() -> None:
    refs = [ref(at(2025, 3, 9, 12)), ref(at(2025, 3, 10, 23, 30)), ref(at(2025, 3, 11, 1)),
            ref(at(2025, 3, 11, 20))]  # fmt: skip
    policy = Policy(keep_daily=2)
    # UTC: days 03-11 (01:00, 20:00) and 03-10 (23:30).
    assert decide(refs, policy, tz=UTC).keep == [refs[1], refs[3]]
    # UTC+10: 23:30Z and 01:00Z are both 03-11 there; 20:00Z is already 03-12.
    sydney = timezone(timedelta(hours=10), "AEST")
    assert decide(refs, policy, tz=sydney).keep == [refs[2], refs[3]]


@pytest.mark.parametrize("field", ["keep_last", "keep_daily", "keep_weekly", "keep_monthly"])
def test_a_negative_count_is_refused(field: str) -> None:
    with pytest.raises(UsageError, match=field):
        Policy(**{field: -1})


@pytest.mark.parametrize("within", [-1.0, float("nan")])
def test_a_negative_or_nan_window_is_refused(within: float) -> None:
    with pytest.raises(UsageError, match="keep_within"):
        Policy(keep_within=within)


# ------------------------------------------------------------------------ needed versions

S1, R2, R3 = at(2025, 5, 1), at(2025, 5, 2), at(2025, 5, 3)  # a snapshot, then two runs


def snap(when: float, files: dict[str, tuple[int, float]]) -> Snapshot:
    return Snapshot(ref(when), "p", {p: (size, mtime, None) for p, (size, mtime) in files.items()})


def version(when: float, path: str, size: int, mtime: float) -> VersionFile:
    return VersionFile(utc_stamp(when), when, path, size, mtime)


def test_content_no_kept_snapshot_saw_is_not_needed() -> None:
    # a.txt: A in the kept snapshot; B uploaded by run 2 (its snapshot forgotten) and
    # replaced by C in run 3. A's copy (moved aside by run 2) is needed, B's is not.
    versions = [version(R2, "a.txt", 10, 1000.0), version(R3, "a.txt", 11, 2000.0)]
    current = {"a.txt": (12, 3000.0)}
    kept = [snap(S1, {"a.txt": (10, 1000.0)}), snap(R3 + 60, {"a.txt": (12, 3000.0)})]
    assert needed_versions(kept, versions, current, window=2.0) == {(utc_stamp(R2), "a.txt")}
    assert needed_versions([], versions, current, window=2.0) == set()


def test_a_deleted_file_needs_the_copy_moved_aside_when_it_went() -> None:
    versions = [version(R3, "d.txt", 5, 500.0)]
    kept = [snap(R2 + 60, {"d.txt": (5, 500.0)})]
    assert needed_versions(kept, versions, {}, window=2.0) == {(utc_stamp(R3), "d.txt")}


def test_no_version_is_needed_when_the_current_file_holds_it() -> None:
    # The share's copy is 1 s off (its times are coarser): it still holds the content.
    versions = [version(R2, "c.txt", 7, 700.0)]
    kept = [snap(S1, {"c.txt": (7, 700.0)})]
    current = {"c.txt": (7, 701.0)}
    assert needed_versions(kept, versions, current, window=2.0) == set()
    # Another size is other content, however close the time.
    assert needed_versions(kept, versions, {"c.txt": (8, 700.0)}, window=2.0) == {
        (utc_stamp(R2), "c.txt")
    }


def test_a_version_matches_within_the_window_only() -> None:
    versions = [version(R2, "a.txt", 10, 1001.5), version(R3, "a.txt", 99, 1000.0)]
    kept = [snap(S1, {"a.txt": (10, 1000.0)})]
    current = {"a.txt": (12, 3000.0)}
    assert needed_versions(kept, versions, current, window=2.0) == {(utc_stamp(R2), "a.txt")}
    assert needed_versions(kept, versions, current, window=1.0) == set()


def test_of_several_copies_the_first_after_the_snapshot_else_the_last_before() -> None:
    before, later = at(2025, 4, 1), at(2025, 6, 1)
    versions = [version(t, "a.txt", 10, 1000.0) for t in (later, before, R3, R2)]
    current = {"a.txt": (12, 3000.0)}
    kept = [snap(S1, {"a.txt": (10, 1000.0)})]
    assert needed_versions(kept, versions, current, window=2.0) == {(utc_stamp(R2), "a.txt")}
    # A snapshot after every copy (clocks disagreed): the latest one before it.
    kept = [snap(at(2025, 7, 1), {"a.txt": (10, 1000.0)})]
    assert needed_versions(kept, versions, current, window=2.0) == {(utc_stamp(later), "a.txt")}


# ---------------------------------------------------------------------- prunable versions

NOW = at(2026, 1, 2)
OLD, OLDER, YOUNG = at(2025, 10, 1), at(2025, 9, 1), at(2025, 12, 20)


def test_old_unneeded_versions_go_and_young_ones_stay() -> None:
    old, young = version(OLD, "a.txt", 1, 1.0), version(YOUNG, "a.txt", 2, 2.0)
    current = {"a.txt": (3, 3.0)}
    assert prunable_versions([old, young], set(), NOW, 30, current=current) == [old]


def test_exactly_keep_days_old_stays() -> None:
    edge, past = (
        version(NOW - 30 * DAY, "a.txt", 1, 1.0),
        version(NOW - 30 * DAY - 1, "a.txt", 2, 2.0),
    )
    current = {"a.txt": (3, 3.0)}
    assert prunable_versions([edge, past], set(), NOW, 30, current=current) == [past]


def test_a_needed_version_stays_however_old() -> None:
    ancient = version(at(2015, 1, 1), "a.txt", 1, 1.0)
    current = {"a.txt": (3, 3.0)}
    needed = {(ancient.stamp, "a.txt")}
    assert prunable_versions([ancient], needed, NOW, 30, current=current) == []


def test_nothing_is_pruned_while_the_tripwire_is_tripped_or_keep_days_is_zero() -> None:
    old = version(OLD, "a.txt", 1, 1.0)
    current = {"a.txt": (3, 3.0)}
    assert prunable_versions([old], set(), NOW, 30, True, current=current) == []
    assert prunable_versions([old], set(), NOW, 0, current=current) == []
    assert prunable_versions([old], set(), NOW, 30, current=current) == [old]


def test_the_last_copy_of_a_deleted_file_stays() -> None:
    # gone.txt was deleted here: its older content ages out, its last content never does.
    older, last = version(OLDER, "gone.txt", 1, 1.0), version(OLD, "gone.txt", 2, 2.0)
    kept_file = version(OLDER, "a.txt", 4, 4.0)
    versions = [last, kept_file, older]
    current = {"a.txt": (3, 3.0)}
    assert prunable_versions(versions, set(), NOW, 30, current=current) == [kept_file, older]


def test_without_the_current_files_the_newest_version_of_every_path_stays() -> None:
    older, newer = version(OLDER, "a.txt", 1, 1.0), version(OLD, "a.txt", 2, 2.0)
    assert prunable_versions([older, newer], set(), NOW, 30) == [older]
    both = prunable_versions([older, newer], set(), NOW, 30, current={"a.txt": (3, 3.0)})
    assert both == [older, newer]
