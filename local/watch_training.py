#!/usr/bin/env python3
"""Follow an ESPnet training log and print one line per finished epoch.

ESPnet writes a line "<N>epoch results: [train] ... [valid] ..." after every epoch;
this prints epoch, losses and elapsed time from it, until the training process exits.
"""
import argparse
import os
import re
import time

RESULT = re.compile(r"(\d+)epoch results: (.*)")
FIELD = re.compile(r"\[(train|valid)\].*?\bloss=([-\d.e+]+)")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("log", help="ESPnet training log")
    p.add_argument("--pid", type=int, required=True, help="training process to wait for")
    p.add_argument("--offset", type=int, default=0, help="byte offset to start reading at")
    args = p.parse_args()
    start, pos = time.time(), args.offset
    while True:
        running = alive(args.pid)
        if os.path.exists(args.log):
            with open(args.log, "rb") as f:
                f.seek(pos)
                chunk = f.read()
            # Only consume whole lines; a partial last line is read again next time.
            cut = chunk.rfind(b"\n") + 1
            pos += cut
            lines = chunk[:cut].decode("utf-8", errors="replace").splitlines()
            for line in lines:
                m = RESULT.search(line)
                if m:
                    losses = ", ".join(f"{s} loss {v}" for s, v in FIELD.findall(m.group(2)))
                    print(f"  epoch {m.group(1)}: {losses} ({time.time() - start:.0f}s)", flush=True)
        if not running:
            return
        time.sleep(5)


if __name__ == "__main__":
    main()
