"""Reading and writing Kaldi-style data directories, all or nothing.

A data dir is a set of tables, one per file, each line `<key> <value>` sorted by key in
C-locale order (`LC_ALL=C sort`; Python's str order is the same for UTF-8). Every
directory is written into a hidden sibling and renamed into place, so an interrupted or
failed run never leaves a half-written directory behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

# Per-utterance tables, in the order they are written and reported.
UTT_TABLES = ("wav.scp", "text", "utt2spk", "utt2lang", "utt2category", "utt2num_samples")


class DataError(Exception):
    """Bad input: the message is one line naming the file or option and the problem."""


def read_table(path: Path, allow_empty_value: bool = False) -> dict[str, str]:
    """Read `<key> <value>` lines (split at the first run of whitespace) into an ordered dict."""
    table: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                key, value = (line.strip().split(maxsplit=1) + ["", ""])[:2]
                if not key:
                    raise DataError(f"{path}:{lineno}: empty line")
                if not value and not allow_empty_value:
                    raise DataError(f"{path}:{lineno}: no value after key {key!r}")
                if key in table:
                    raise DataError(f"{path}:{lineno}: duplicate key {key!r}")
                table[key] = value
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 ({e.reason} at byte {e.start})") from None
    return table


def write_table(path: Path, table: dict[str, str]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for key in sorted(table):
            f.write(f"{key} {table[key]}\n")


# Tables derived on writing from a per-utterance one: spk2utt (Kaldi) and category2utt
# (ESPnet's category samplers).
INVERSES = {"spk2utt": "utt2spk", "category2utt": "utt2category"}


def invert(utt2x: dict[str, str]) -> dict[str, str]:
    """utt2spk → spk2utt: `<x> <utt> <utt> …`, utterances sorted."""
    groups: dict[str, list[str]] = {}
    for utt in sorted(utt2x):
        groups.setdefault(utt2x[utt], []).append(utt)
    return {x: " ".join(utts) for x, utts in groups.items()}


def read_dir(path: Path) -> dict[str, dict[str, str]]:
    """Read every per-utterance table present in a data dir (`wav.scp`, `text`, `utt2spk` required).

    All tables must have the same keys; spk2utt and category2utt are not read (they are
    derived on writing).
    """
    if not path.is_dir():
        raise DataError(f"{path}: data directory not found")
    tables = {}
    for name in UTT_TABLES:
        if (path / name).exists() or name in ("wav.scp", "text", "utt2spk"):
            tables[name] = read_table(path / name)
    keys = set(tables["wav.scp"])
    for name, table in tables.items():
        if set(table) != keys:
            extra = sorted(set(table) - keys)
            missing = sorted(keys - set(table))
            what = f"has {extra[0]!r} not in wav.scp" if extra else f"lacks {missing[0]!r}"
            raise DataError(f"{path / name}: {what} (keys must match wav.scp's)")
    return tables


def remove_stale(path: Path) -> None:
    """Remove hidden siblings of `path` left by staged_dir in processes that no longer run."""
    for p in path.parent.glob(f".{path.name}.*"):
        suffix = p.name[len(path.name) + 2:]
        for kind in ("tmp", "old"):
            if suffix.startswith(kind) and suffix[len(kind):].isdigit():
                pid = int(suffix[len(kind):])
                if pid == os.getpid():
                    continue
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    shutil.rmtree(p, ignore_errors=True)
                except PermissionError:
                    pass


@contextlib.contextmanager
def staged_dir(path: Path):
    """Yield an empty hidden sibling of `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    tmp = path.parent / f".{path.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        old = path.parent / f".{path.name}.old{os.getpid()}"
        path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old)
    else:
        tmp.rename(path)


def write_dir(path: Path, tables: dict[str, dict[str, str]], extra: dict[str, str] | None = None) -> None:
    """Write tables, their INVERSES (spk2utt, category2utt) and `extra` files (name → content)."""
    with staged_dir(path) as tmp:
        for name, table in tables.items():
            write_table(tmp / name, table)
        for name, source in INVERSES.items():
            if source in tables:
                write_table(tmp / name, invert(tables[source]))
        for name, content in (extra or {}).items():
            (tmp / name).write_text(content, encoding="utf-8")


def subset(tables: dict[str, dict[str, str]], keys) -> dict[str, dict[str, str]]:
    keys = set(keys)
    return {name: {k: v for k, v in t.items() if k in keys} for name, t in tables.items()}


def run_main(main) -> None:
    """Call `main()`; a DataError becomes one line on stderr and exit status 1."""
    prog = Path(sys.argv[0]).name
    try:
        main()
    except DataError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
