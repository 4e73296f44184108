"""The ransomware tripwire on its own: a plan and real bytes in, a verdict out, no I/O
(backdown/tripwire.py)."""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable

import pytest

from backdown.errors import ConnectError, RemoteAccessDenied
from backdown.plan import CompareRules, FileInfo, Plan, Tree, make_plan
from backdown.tripwire import (
    DEFAULT_MAX_CHANGE,
    HEAD,
    MIN_FILES,
    SAMPLE,
    Verdict,
    check,
    entropy,
    looks_encrypted,
)

T0 = 1_700_000_000.0
WORDS = (  # a document's vocabulary
    "invoice customer order delivery the of and to in for with on at by from meeting "
    "report budget quarter project draft minutes agreed please find attached regards "
    "spring summer office printer account payment due march april total amount"
)


def text(seed: int, size: int = 6000) -> bytes:
    """A document's worth of words (about 4.3 bits per byte), different for each seed."""
    rng, words = random.Random(seed), WORDS.split()
    out = " ".join(rng.choice(words) for _ in range(size // 4)).encode()
    return out[:size]


def noise(seed: int, size: int = 6000) -> bytes:
    """What an encrypted file looks like: uniformly random bytes."""
    return random.Random(seed).randbytes(size)


def packed(seed: int, size: int = 24000) -> bytes:
    """Compressed data (a zip, docx or jpg's body): about 7.9 bits per byte, not random."""
    return zlib.compress(text(seed, size), 9)


Readers = tuple[Callable[[str, int], bytes], Callable[[str, int], bytes]]


class Share:
    """A share holding `old` and a local folder holding `new` (path -> bytes), planned.
    A path whose bytes differ is changed (its time moved on), as the planner would see it."""

    def __init__(self, old: dict[str, bytes], new: dict[str, bytes]) -> None:
        self.old, self.new = old, new
        self.dst = Tree(files={p: FileInfo(p, len(b), T0) for p, b in old.items()})
        src = Tree()
        for path, data in new.items():
            moved = path in old and old[path] != data
            src.files[path] = FileInfo(path, len(data), T0 + 60 if moved else T0)
        self.plan: Plan = make_plan(src, self.dst, CompareRules())
        self.reads: list[tuple[str, str, int]] = []

    def readers(self) -> Readers:
        def read_new(path: str, n: int) -> bytes:
            self.reads.append(("new", path, n))
            return self.new[path][:n]

        def read_old(path: str, n: int) -> bytes:
            self.reads.append(("old", path, n))
            return self.old[path][:n]

        return read_new, read_old

    def check(self, max_change: float = DEFAULT_MAX_CHANGE) -> Verdict:
        return check(self.plan, self.dst, max_change, *self.readers())


def folder(
    total: int, changed: int, before: Callable[[int], bytes], after: Callable[[int], bytes]
) -> Share:
    """total files on the share, the first `changed` of them replaced: before(i) -> after(i)."""
    old = {f"docs/file{i:03}.dat": before(i) for i in range(total)}
    new = {p: after(i) if i < changed else data for i, (p, data) in enumerate(old.items())}
    return Share(old, new)


def edited(i: int) -> bytes:
    return text(i) + b" amended"


# --------------------------------------------------------------------------- entropy


def test_entropy_of_known_bytes() -> None:
    assert entropy(b"") == 0.0
    assert entropy(b"\x00") == 0.0
    assert entropy(b"a" * 5000) == 0.0
    assert entropy(b"ab" * 100) == pytest.approx(1.0)
    assert entropy(bytes(range(256)) * 16) == pytest.approx(8.0)
    assert 4.0 < entropy(text(1)) < 5.0
    assert entropy(noise(1, 65536)) > 7.99


# --------------------------------------------------------------------------- looks_encrypted


def test_a_document_replaced_by_random_bytes_looks_encrypted() -> None:
    assert looks_encrypted(noise(1, HEAD), text(1))
    assert looks_encrypted(noise(2, 4096), text(2, 4096))


def test_compressed_replaced_by_compressed_or_random_does_not() -> None:
    old = packed(1)
    assert entropy(old) > 7.5  # already random-looking before
    assert not looks_encrypted(packed(2), old)
    assert not looks_encrypted(noise(3), old)


def test_text_edited_into_other_text_does_not() -> None:
    assert not looks_encrypted(text(1) + b" amended", text(1))
    assert not looks_encrypted(text(2), b"")


def test_small_files_judged_from_256_bytes() -> None:
    # 300 random bytes measure only about 7.2 bits per byte: judged as a short sample
    assert entropy(noise(4, 300)) < 7.5
    assert looks_encrypted(noise(4, 300), text(4, 300))
    assert not looks_encrypted(packed(5)[:300], packed(6)[:300])
    assert not looks_encrypted(noise(7, 255), text(7, 255))


def test_a_file_encrypted_only_at_the_start_looks_encrypted() -> None:
    old = text(8, HEAD)
    assert entropy(noise(8, 4096) + old[4096:]) < 7.0  # over the whole head it reads as text
    assert looks_encrypted(noise(8, 4096) + old[4096:], old)


# --------------------------------------------------------------------------- rule 1


def test_replacing_most_of_the_share_trips_with_the_numbers() -> None:
    share = folder(100, 80, text, edited)
    verdict = share.check()
    assert verdict.tripped
    assert (verdict.changed, verdict.on_share) == (80, 100)
    assert verdict.reason.startswith(
        "80 of 100 files on the share (80%) would be replaced, more than --max-change 50%: "
    )
    assert verdict.reason.endswith("if this is what you meant, run again with --force")
    assert "\n" not in verdict.reason
    assert share.reads == []  # rule 2 is not asked once rule 1 tripped


@pytest.mark.parametrize(
    ("changed", "max_change", "tripped"),
    [(50, 50.0, False), (51, 50.0, True), (80, 90.0, False), (91, 90.0, True), (100, 100.0, False)],
)
def test_more_than_max_change_trips(changed: int, max_change: float, tripped: bool) -> None:
    verdict = folder(100, changed, text, edited).check(max_change)
    assert verdict.tripped is tripped
    assert verdict.changed == changed
    assert (verdict.reason != "") is tripped


def test_a_fraction_is_not_rounded_onto_the_limit() -> None:
    verdict = folder(200, 101, text, edited).check(50.0)
    assert "101 of 200 files on the share (50.5%) would be replaced" in verdict.reason


def test_a_small_folder_changes_wholesale() -> None:
    assert not folder(15, 15, text, edited).check().tripped
    assert not folder(MIN_FILES - 1, MIN_FILES - 1, text, edited).check().tripped
    assert folder(MIN_FILES, MIN_FILES, text, edited).check().tripped


def test_new_files_replace_nothing() -> None:
    old = {f"file{i:03}.txt": text(i) for i in range(100)}
    new = {**old, **{f"new{i:03}.txt": text(1000 + i) for i in range(300)}}
    verdict = Share(old, new).check()
    assert not verdict.tripped
    assert verdict.changed == 0 and verdict.on_share == 100


# --------------------------------------------------------------------------- rule 2


def test_documents_turned_to_random_bytes_trip_below_the_percentage() -> None:
    share = folder(100, 40, text, noise)
    verdict = share.check()
    assert verdict.tripped
    assert (verdict.changed, verdict.on_share) == (40, 100)
    assert (verdict.suspicious, verdict.sampled) == (SAMPLE, SAMPLE)
    assert verdict.reason.startswith(
        f"{SAMPLE} of {SAMPLE} changed files sampled now look encrypted (random bytes), "
        "their old copies did not (docs/file000.dat, docs/file001.dat, docs/file002.dat, ...)"
    )
    assert verdict.reason.endswith("if this is what you meant, run again with --force")


def test_compressed_files_replaced_by_compressed_files_do_not_trip() -> None:
    verdict = folder(100, 40, packed, lambda i: packed(1000 + i)).check()
    assert not verdict.tripped
    assert (verdict.suspicious, verdict.sampled) == (0, SAMPLE)


def test_text_edited_into_text_does_not_trip() -> None:
    verdict = folder(100, 40, text, edited).check()
    assert not verdict.tripped
    assert (verdict.suspicious, verdict.sampled) == (0, SAMPLE)


@pytest.mark.parametrize(("encrypted", "tripped"), [(8, False), (9, True)])
def test_more_than_half_of_the_sample_trips(encrypted: int, tripped: bool) -> None:
    share = folder(100, 16, text, lambda i: noise(i) if i < encrypted else edited(i))
    verdict = share.check()
    assert (verdict.suspicious, verdict.sampled) == (encrypted, 16)
    assert verdict.tripped is tripped


def test_fewer_than_eight_changed_files_skip_rule_2() -> None:
    share = folder(100, 7, text, noise)
    verdict = share.check()
    assert not verdict.tripped
    assert (verdict.changed, verdict.sampled) == (7, 0)
    assert share.reads == []
    assert folder(100, 8, text, noise).check().tripped


def test_the_sample_is_spread_over_the_sorted_paths_and_reads_heads() -> None:
    share = folder(200, 96, text, edited)
    share.check(max_change=100.0)
    new = [path for side, path, _ in share.reads if side == "new"]
    assert new == [f"docs/file{i:03}.dat" for i in range(0, 96, 3)]
    assert [path for side, path, _ in share.reads if side == "old"] == new
    assert {n for _, _, n in share.reads} == {HEAD}
    share.reads.clear()
    share.check(max_change=100.0)
    assert [path for side, path, _ in share.reads if side == "new"] == new  # deterministic


# --------------------------------------------------------------------------- failing reads


def test_a_failing_reader_does_not_trip() -> None:
    share = folder(100, 40, text, noise)

    def gone(path: str, n: int) -> bytes:
        raise FileNotFoundError(path)

    verdict = check(share.plan, share.dst, DEFAULT_MAX_CHANGE, gone, share.readers()[1])
    assert not verdict.tripped
    assert (verdict.suspicious, verdict.sampled) == (0, 0)


def test_failed_reads_leave_the_sample_and_it_may_fall_below_eight() -> None:
    share = folder(100, 10, text, noise)
    read_new, read_old = share.readers()
    denied = {"docs/file001.dat", "docs/file004.dat", "docs/file007.dat"}

    def read_some(path: str, n: int) -> bytes:
        if path in denied:
            raise RemoteAccessDenied(f"access denied: {path}")
        return read_old(path, n)

    verdict = check(share.plan, share.dst, DEFAULT_MAX_CHANGE, read_new, read_some)
    assert (verdict.suspicious, verdict.sampled) == (7, 7)
    assert not verdict.tripped
    denied.pop()
    assert check(share.plan, share.dst, DEFAULT_MAX_CHANGE, read_new, read_some).tripped


def test_a_lost_connection_is_not_a_failed_read() -> None:
    share = folder(100, 40, text, noise)

    def dropped(path: str, n: int) -> bytes:
        raise ConnectError("connection lost")

    with pytest.raises(ConnectError):
        check(share.plan, share.dst, DEFAULT_MAX_CHANGE, share.readers()[0], dropped)
