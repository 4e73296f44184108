#!/usr/bin/env python3
"""One BackDown snapshot file, read back: what it holds and what it would weigh with a
SHA-256 recorded for every file.

    python tests/bench/snapshot_sizes.py SNAPSHOT.json.gz

run_bench.py's case (s) runs it with the copy of backdown/ it measures on PYTHONPATH,
on the snapshot file as the server's disk holds it. A default upload records no SHA-256
(only --checksum uploads do), so the file on the share is the lower bound; the upper bound
is the same snapshot encoded here with backdown.snapshots.encode after giving every file a
random 64-hex SHA-256 (random hex does not compress below 4 bits a character, real hashes
neither). Prints one JSON line.
"""

from __future__ import annotations

import gzip
import json
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

from backdown import snapshots


def measure(path: Path) -> dict[str, object]:
    """Sizes and counts of the snapshot in path (see the module's docstring)."""
    raw = path.read_bytes()
    ref = snapshots.parse_name(path.name)
    if ref is None:
        raise SystemExit(f"{path.name} is not a snapshot file name")
    began = time.perf_counter()
    snap = snapshots.decode(raw, ref)
    decode_s = time.perf_counter() - began
    began = time.perf_counter()
    again = snapshots.encode(snap)
    encode_s = time.perf_counter() - began
    rng = random.Random(20261202)
    hashed = replace(
        snap,
        files={
            p: (size, mtime, rng.randbytes(32).hex()) for p, (size, mtime, _) in snap.files.items()
        },
    )
    with_sha = snapshots.encode(hashed)
    return {
        "id": ref.id,
        "files": len(snap.files),
        "dirs": len(snap.dirs),
        "bytes": snap.total_bytes,
        "sha256_recorded": sum(1 for _, _, sha in snap.files.values() if sha),
        "file_bytes": len(raw),
        "json_bytes": len(gzip.decompress(raw)),
        "reencoded_bytes": len(again),
        "with_sha256_bytes": len(with_sha),
        "with_sha256_json_bytes": len(gzip.decompress(with_sha)),
        "decode_s": round(decode_s, 3),
        "encode_s": round(encode_s, 3),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(measure(Path(argv[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
