"""The worker pool's bookkeeping (backdown.transfer): which jobs of a batch are done,
retried or failed when the connection is lost in the middle of it.

The jobs are plain strings and the session an object with no wire: what is under test is
the pool's accounting, and a real server cannot be made to drop a connection after exactly
the n-th file of a batch. The same paths against a real smbd killed mid-batch are in
test_hostile_servers.py (test_killed_smbd_child_mid_batch_of_small_files_loses_nothing).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from backdown.errors import ConnectError, RemoteFileError
from backdown.progress import Recording
from backdown.transfer import Batching, WorkerPool

Done = Callable[[str, "str | None"], None]


class _Connection:
    closed = False

    def close(self) -> None:
        self.closed = True


def _pool(retries: int, recording: Recording, workers: int = 1) -> WorkerPool[str]:
    return WorkerPool(
        lambda cancel: _Connection(),  # type: ignore[arg-type,return-value]
        workers, retries, recording, threading.Event(), backoff=0.0,
    )  # fmt: skip


def _done(recording: Recording) -> list[tuple[str, str | None]]:
    return [value for kind, value in recording.events if kind == "done"]  # type: ignore[misc]


def _alone(session: object, job: str, attempt: int) -> None:
    if job.startswith("bad"):
        raise RemoteFileError(f"writing '{job}': access denied")


def test_a_batch_cut_by_a_lost_connection_retries_only_what_was_not_done() -> None:
    """Batches of 4 (the job 'big' goes alone); the first batch loses its connection after
    two files: only the other two are tried again, alone, as retries."""
    batches: list[list[str]] = []
    alone: list[tuple[str, int]] = []

    def together(session: object, jobs: list[str], done: Done) -> None:
        batches.append(list(jobs))
        for job in jobs:
            if job == "c":
                raise ConnectError("lost the connection to the server")
            done(job, "the share is full" if job == "f" else None)

    def one(session: object, job: str, attempt: int) -> None:
        alone.append((job, attempt))
        _alone(session, job, attempt)

    recording = Recording()
    jobs = ["a", "b", "c", "d", "big", "e", "f", "g", "h", "i", "bad"]
    batching = Batching(lambda job: job not in ("big", "bad"), together, size=4)
    failures = _pool(2, recording).run(jobs, one, str, batching)

    assert batches == [["a", "b", "c", "d"], ["e", "f", "g", "h"]]
    # the retries, and 'big', 'i' (a batch of one) and 'bad', which went alone
    assert sorted(alone) == [("bad", 0), ("big", 0), ("c", 1), ("d", 1), ("i", 0)]
    done = _done(recording)
    assert sorted(path for path, _ in done) == sorted(jobs)  # each told once
    assert {(f.path, f.error) for f in failures} == {
        ("f", "the share is full"),
        ("bad", "writing 'bad': access denied"),
    }
    assert any(kind == "notice" and "retrying" in str(v) for kind, v in recording.events)


def test_a_batch_that_gets_files_done_before_each_loss_keeps_going() -> None:
    """Each try gets one file done, then the connection drops: the batch makes headway, so
    its count of tries starts again each time and it completes with retries=1."""
    tries: list[int] = []
    lost = {"c", "d"}  # each drops the connection on its first try

    def together(session: object, jobs: list[str], done: Done) -> None:
        tries.append(0)
        done(jobs[0], None)
        raise ConnectError("lost the connection to the server")

    def one(session: object, job: str, attempt: int) -> None:
        tries.append(attempt)
        if job in lost:
            lost.discard(job)
            raise ConnectError("lost the connection to the server")

    recording = Recording()
    failures = _pool(1, recording).run(list("abcd"), one, str, Batching(bool, together))
    assert failures == []
    # the batch: 'a', then the loss; retries: 'b' and the loss at 'c'; 'c' and the loss at
    # 'd'; 'd'. Each try got a file done, so each retry is try 1 again.
    assert tries == [0, 1, 1, 1, 1, 1]
    assert [path for path, _ in _done(recording)] == list("abcd")


@pytest.mark.parametrize(("retries", "tries_made"), [(0, 1), (2, 3)])
def test_a_batch_that_gets_nothing_done_gives_up_after_its_retries(
    retries: int, tries_made: int
) -> None:
    """No headway: the run stops after `retries` retries, naming the first file left; with
    retries=0 the first loss stops it, headway or not."""
    tries: list[int] = []

    def together(session: object, jobs: list[str], done: Done) -> None:
        tries.append(0)
        if retries == 0:
            done(jobs[0], None)
        raise ConnectError("lost the connection to the server")

    def one(session: object, job: str, attempt: int) -> None:
        tries.append(attempt)
        raise ConnectError("lost the connection to the server")

    recording = Recording()
    with pytest.raises(ConnectError, match=r"gave up on '[ab]' after \d tries"):
        _pool(retries, recording).run(list("abc"), one, str, Batching(bool, together))
    assert tries == list(range(tries_made))


def test_jobs_a_batch_never_told_about_are_done_alone_not_dropped() -> None:
    alone: list[str] = []

    def together(session: object, jobs: list[str], done: Done) -> None:
        done(jobs[0], None)  # and says nothing of the others

    def one(session: object, job: str, attempt: int) -> None:
        alone.append(job)

    recording = Recording()
    assert _pool(0, recording).run(list("abc"), one, str, Batching(bool, together)) == []
    assert alone == ["b", "c"] and [p for p, _ in _done(recording)] == list("abc")


def test_batches_close_at_their_count_or_their_bytes() -> None:
    """Up to `size` jobs and `budget` bytes a batch; a job that does not fit goes alone and
    leaves the batch open."""
    weights = {"a": 400, "b": 400, "c": 400, "d": 100, "e": 50, "big": 9000, "f": 1, "g": 1}
    batches: list[list[str]] = []

    def together(session: object, jobs: list[str], done: Done) -> None:
        batches.append(list(jobs))
        for job in jobs:
            done(job, None)

    batching = Batching(lambda j: j != "big", together, size=3, weight=weights.get, budget=1000)
    _pool(0, Recording()).run(list(weights), _alone, str, batching)  # type: ignore[arg-type]
    assert batches == [["a", "b"], ["c", "d", "e"], ["f", "g"]]
