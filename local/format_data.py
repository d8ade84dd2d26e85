#!/usr/bin/env python3
"""Stages 3-4: check every audio file and filter utterances by duration.

format  data/<set> → <out>/<set>: decodes every file listed in wav.scp completely (so
        truncated or corrupted files are caught, not just bad headers), checks the sample
        rate and that it is mono, and writes the Kaldi tables of the readable utterances
        plus utt2num_samples and feats_type ("raw"). Unreadable files are skipped, counted
        and listed in <out>/<set>/skipped_audio, never fatal (unless a whole set is unreadable).
filter  <src>/<set> → <out>/<set>: drops utterances shorter than --min_sec or longer than
        --max_sec (from utt2num_samples).

Each output directory is written aside and renamed into place.

Examples:
  python local/format_data.py format --data data --out dump/raw/org train dev
  python local/format_data.py format --data data --out dump/raw en_test fr_test
  python local/format_data.py filter --src dump/raw/org --out dump/raw --min_sec 0.5 --max_sec 20 train dev
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kaldi_dir import DataError, read_dir, run_main, subset, write_dir  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="step", required=True)
    f = sub.add_parser("format", help="check audio, write <out>/<set> with utt2num_samples")
    f.add_argument("--data", type=Path, default=Path("data"), help="input data dirs (default %(default)s)")
    f.add_argument("--out", type=Path, required=True, help="output folder, e.g. dump/raw/org")
    f.add_argument("--fs", type=int, default=16000, help="required sample rate (default %(default)s)")
    f.add_argument("--jobs", "--nj", type=int, default=len(os.sched_getaffinity(0)),
                   help="processes reading audio (default: number of cores, %(default)s)")
    g = sub.add_parser("filter", help="drop too short / too long utterances")
    g.add_argument("--src", type=Path, required=True, help="formatted data dirs, e.g. dump/raw/org")
    g.add_argument("--out", type=Path, required=True, help="output folder, e.g. dump/raw")
    g.add_argument("--min_sec", type=float, default=0.5, help="shortest kept utterance (default %(default)s)")
    g.add_argument("--max_sec", type=float, default=20.0, help="longest kept utterance (default %(default)s)")
    g.add_argument("--fs", type=int, default=16000, help="sample rate of the audio (default %(default)s)")
    for q in (f, g):
        q.add_argument("sets", nargs="+", help="data set names, e.g. train dev en_test")
    return p.parse_args(argv)


def check_audio(item: tuple[str, str, int]) -> tuple[str, int | None, str]:
    """(utt, path, fs) → (utt, samples or None, problem). Decodes the whole file."""
    import soundfile as sf

    utt, path, fs = item
    try:
        with sf.SoundFile(path) as f:
            if f.samplerate != fs:
                return utt, None, f"sample rate {f.samplerate} Hz, not {fs}"
            if f.channels != 1:
                return utt, None, f"{f.channels} channels, not mono"
            expected = f.frames
            n = 0
            while True:
                block = f.read(1 << 16, dtype="int16")
                if not len(block):
                    break
                n += len(block)
    except Exception as e:  # soundfile raises RuntimeError/LibsndfileError/OSError/… on bad files
        return utt, None, f"unreadable ({type(e).__name__}: {str(e).strip()[:120]})"
    if n == 0:
        return utt, None, "no samples"
    if n != expected:
        return utt, None, f"truncated (decoded {n} of {expected} samples)"
    return utt, n, ""


class Progress:
    """A stderr line every 10 s (redrawn on a terminal) for sets that take a while."""

    def __init__(self, label: str, total: int):
        self.label, self.total, self.done = label, total, 0
        self.t0 = self.last = time.time()

    def update(self) -> None:
        self.done += 1
        now = time.time()
        if now - self.last >= (1 if sys.stderr.isatty() else 10) and self.done < self.total:
            self.last = now
            end = "\r" if sys.stderr.isatty() else "\n"
            rate = self.done / (now - self.t0)
            print(f"{self.label}: {self.done}/{self.total} files read ({rate:.0f}/s)", end=end,
                  file=sys.stderr, flush=True)


def format_sets(args) -> None:
    if args.jobs < 1:
        raise DataError("--jobs: must be at least 1")
    inputs = {name: read_dir(args.data / name) for name in args.sets}  # check all before any work
    for name, tables in inputs.items():
        for utt, path in tables["wav.scp"].items():
            if path.endswith("|"):
                raise DataError(f"{args.data / name / 'wav.scp'}: {utt}: only plain file paths are supported, "
                                f"not a pipe")
    totals = Counter()
    with Pool(args.jobs) as pool:
        for name, tables in inputs.items():
            items = [(utt, path, args.fs) for utt, path in tables["wav.scp"].items()]
            progress = Progress(name, len(items))
            samples, problems = {}, {}
            for utt, n, problem in pool.imap_unordered(check_audio, items, chunksize=16):
                if n is None:
                    problems[utt] = problem
                else:
                    samples[utt] = n
                progress.update()
            if not samples:
                first = sorted(problems)[0]
                raise DataError(f"{args.data / name / 'wav.scp'}: no readable audio (e.g. {first}: "
                                f"{problems[first]})")
            kept = subset(tables, samples)
            kept["utt2num_samples"] = {u: str(n) for u, n in samples.items()}
            extra = {"feats_type": "raw\n"}
            if problems:  # the full list, for a look at what was skipped and why
                extra["skipped_audio"] = "".join(f"{u} {tables['wav.scp'][u]} {p}\n"
                                                 for u, p in sorted(problems.items()))
            write_dir(args.out / name, kept, extra=extra)
            hours = sum(samples.values()) / args.fs / 3600
            line = f"{name}: {len(samples)} utterances, {hours:.2f} h"
            if problems:
                first = sorted(problems)[0]
                line += (f"; skipped {len(problems)} with bad audio (e.g. {first}: {problems[first]}; "
                         f"all in {args.out / name / 'skipped_audio'})")
            print(line)
            totals.update(utts=len(samples), skipped=len(problems))
            totals["seconds"] += sum(samples.values()) / args.fs
    print(f"format: {len(inputs)} sets, {totals['utts']} utterances ({totals['seconds'] / 3600:.2f} h), "
          f"{totals['skipped']} skipped for bad audio → {args.out}")


def filter_sets(args) -> None:
    if not 0 <= args.min_sec <= args.max_sec:
        raise DataError(f"--min_sec/--max_sec: need 0 <= min_sec <= max_sec, "
                        f"got {args.min_sec} and {args.max_sec}")
    inputs = {}
    for name in args.sets:
        tables = read_dir(args.src / name)
        if "utt2num_samples" not in tables:
            raise DataError(f"{args.src / name / 'utt2num_samples'}: file not found (run the format step first)")
        inputs[name] = tables
    feats_type = {name: (args.src / name / "feats_type") for name in args.sets}
    total = Counter()
    for name, tables in inputs.items():
        counts = Counter()
        keep = []
        for utt, n in tables["utt2num_samples"].items():
            try:
                sec = int(n) / args.fs
            except ValueError:
                raise DataError(f"{args.src / name / 'utt2num_samples'}: {utt}: {n!r} is not a number") from None
            if sec < args.min_sec:
                counts["short"] += 1
            elif sec > args.max_sec:
                counts["long"] += 1
            else:
                keep.append(utt)
        if not keep:
            raise DataError(f"{args.src / name}: every utterance is shorter than --min_sec {args.min_sec} "
                            f"or longer than --max_sec {args.max_sec}")
        ft = feats_type[name].read_text() if feats_type[name].exists() else "raw\n"
        write_dir(args.out / name, subset(tables, keep), extra={"feats_type": ft})
        print(f"{name}: kept {len(keep)} of {len(tables['wav.scp'])}; removed {counts['short']} shorter than "
              f"{args.min_sec} s, {counts['long']} longer than {args.max_sec} s")
        total.update(counts, kept=len(keep))
    print(f"filter: {len(inputs)} sets, kept {total['kept']}, removed {total['short']} short and "
          f"{total['long']} long → {args.out}")


def main(argv=None) -> None:
    args = parse_args(argv)
    format_sets(args) if args.step == "format" else filter_sets(args)


if __name__ == "__main__":
    run_main(main)
