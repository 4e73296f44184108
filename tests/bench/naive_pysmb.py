"""The naive baseline for run_bench.py: plain pysmb, one connection, one file at a time.

    python naive_pysmb.py up|down --port N --share S --remote DIR --local DIR [--user U]

The password comes from $BENCH_SMB_PASSWORD (never the command line). "up" creates each
folder under --remote and storeFile()s every file below --local into it; "down" lists
--remote recursively and retrieveFile()s every file into --local. No temporaries, no
timestamps, no retries, no parallelism: the least a pysmb program can do. It prints one JSON
line {"files": N, "bytes": N} so the caller can check nothing was dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from smb.SMBConnection import SMBConnection


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("direction", choices=("up", "down"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--share", required=True)
    parser.add_argument("--remote", required=True, help="folder inside the share")
    parser.add_argument("--local", required=True)
    parser.add_argument("--user", default="bdtest")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    password = os.environ.get("BENCH_SMB_PASSWORD", "")

    conn = SMBConnection(
        args.user, password, "NAIVE", "*SMBSERVER", use_ntlm_v2=True, is_direct_tcp=True
    )
    if not conn.connect(args.host, args.port, timeout=30):
        print("naive_pysmb: login refused", file=sys.stderr)
        return 1
    try:
        if args.direction == "up":
            files, size = upload(conn, args.share, args.remote, args.local, args.timeout)
        else:
            files, size = download(conn, args.share, args.remote, args.local, args.timeout)
    finally:
        conn.close()
    print(json.dumps({"files": files, "bytes": size}))
    return 0


def upload(
    conn: SMBConnection, share: str, remote: str, local: str, timeout: float
) -> tuple[int, int]:
    files = size = 0
    for dirpath, dirnames, filenames in os.walk(local):
        dirnames.sort()
        rel = os.path.relpath(dirpath, local)
        rdir = remote if rel == "." else f"{remote}/{rel.replace(os.sep, '/')}"
        if rel != ".":
            conn.createDirectory(share, rdir, timeout=timeout)
        for name in sorted(filenames):
            with open(os.path.join(dirpath, name), "rb") as f:
                conn.storeFile(share, f"{rdir}/{name}", f, timeout=timeout)
                size += f.tell()
            files += 1
    return files, size


def download(
    conn: SMBConnection, share: str, remote: str, local: str, timeout: float
) -> tuple[int, int]:
    files = size = 0
    pending = [("", local)]
    while pending:
        rel, ldir = pending.pop()
        os.makedirs(ldir, exist_ok=True)
        rdir = f"{remote}/{rel}" if rel else remote
        for entry in conn.listPath(share, rdir, timeout=timeout):
            if entry.filename in (".", ".."):
                continue
            child = f"{rel}/{entry.filename}" if rel else entry.filename
            if entry.isDirectory:
                pending.append((child, os.path.join(ldir, entry.filename)))
                continue
            with open(os.path.join(ldir, entry.filename), "wb") as f:
                _, n = conn.retrieveFile(share, f"{remote}/{child}", f, timeout=timeout)
            files += 1
            size += n
    return files, size


if __name__ == "__main__":
    sys.exit(main())
