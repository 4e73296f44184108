"""A snapshot's bytes (backdown.snapshots.encode): written a slice at a time, they must say
exactly what one json.dumps of the whole says, and read back whole."""

from __future__ import annotations

import gzip
import json
import random

from backdown import snapshots
from backdown.snapshots import Snapshot, SnapshotRef, decode, encode


def _snapshot(count: int) -> Snapshot:
    rng = random.Random(count)
    names = ["a", "Ä", "日本", "😀", 'q"uote', "back\\slash", "tab\there", "x y"]
    files: dict[str, tuple[int, float, str | None]] = {}
    while len(files) < count:
        path = "/".join(rng.choice(names) + str(rng.randint(0, 999)) for _ in range(3))
        sha = rng.choice([None, f"{rng.getrandbits(256):064x}"])
        files[path] = (rng.randint(0, 10**12), rng.randint(0, 2 * 10**9) + rng.random(), sha)
    dirs = sorted({p.rpartition("/")[0] for p in files})
    ref = snapshots.parse_name(snapshots.file_name("20261202T120000.000Z", "PC1"))
    assert isinstance(ref, SnapshotRef)
    return Snapshot(ref, "home", files, dirs)


def test_the_slices_make_the_text_one_dump_makes() -> None:
    for count in (0, 1, snapshots._SLICE - 1, snapshots._SLICE, 2 * snapshots._SLICE + 7):
        snap = _snapshot(count)
        whole = {
            "format": snapshots.FORMAT,
            "id": snap.ref.id,
            "time": snap.ref.time,
            "computer": snap.ref.computer,
            "profile": snap.profile,
            "files": {p: list(v) for p, v in sorted(snap.files.items())},
            "dirs": sorted(snap.dirs),
        }
        text = gzip.decompress(encode(snap)).decode("utf-8")
        assert text == json.dumps(whole, separators=(",", ":"), ensure_ascii=False), count
        back = decode(encode(snap), snap.ref)
        assert back.files == snap.files and back.dirs == sorted(snap.dirs), count
        assert encode(snap) == encode(snap), "the same snapshot gives the same bytes"
