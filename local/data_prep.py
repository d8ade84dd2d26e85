#!/usr/bin/env python3
"""Stage 1: a Multilingual LibriSpeech copy (real or mini-MLS) → Kaldi-style data dirs.

For each language and split writes data/<lang>_{train,dev,test}/ with wav.scp (absolute
audio paths), text, utt2spk, spk2utt, utt2lang and utt2category (category = language code),
plus data/train and data/dev over all chosen languages. Utterance ids are
<lang>_<spk>_<book>_<utt> and speaker ids <lang>_<spk>, with the speaker number zero-padded
to 6 digits (as ESPnet's MLS recipe does) so that sorting by utterance also sorts by speaker.

--train_subset picks a low-resource training subset per language from MLS's
limited-supervision handles: full (default), 10h (9hr + 1hr/0..5) or 1h (1hr/0..5).

Everything is read and checked before anything is written; each directory is written
aside and renamed into place, so bad input leaves no output behind.

Example:
  python local/data_prep.py --mls_root corpus/demo --langs en fr it nl --data data --train_subset it=10h,nl=1h
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kaldi_dir import DataError, run_main, write_dir  # noqa: E402
from mls import FORMATS, LANGUAGES, SPLITS, SUBSETS, check_languages, folder_name, handles_file  # noqa: E402

SPK_DIGITS = 6


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mls_root", type=Path, required=True,
                   help="folder holding mls_<language> (flac) or mls_<language>_opus folders")
    p.add_argument("--langs", nargs="+", required=True, help="language codes: " + " ".join(LANGUAGES))
    p.add_argument("--data", type=Path, default=Path("data"), help="output folder (default %(default)s)")
    p.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS),
                   help="prepare only these splits (default: all), e.g. 'test' for a corpus made with "
                        "make_mini_mls.py --splits test")
    p.add_argument("--train_subset", default="",
                   help="per-language training subset, e.g. it=10h,nl=1h (full|10h|1h; a bare value applies "
                        "to every language; default full)")
    p.add_argument("--skip_missing_audio", choices=["true", "false"], default="false",
                   help="true: drop transcript lines whose audio file is missing (a partial copy), count them "
                        "and list them in <data>/<lang>_<split>/missing_audio; false (default): an error")
    return p.parse_args(argv)


def parse_subsets(spec: str, langs: list[str]) -> dict[str, str]:
    subsets = dict.fromkeys(langs, "full")
    for item in filter(None, (s.strip() for s in spec.split(","))):
        lang, eq, value = item.rpartition("=")
        if value not in SUBSETS:
            raise DataError(f"--train_subset: {item!r}: subset must be one of {' '.join(SUBSETS)}")
        if not eq:
            subsets = dict.fromkeys(langs, value)
        elif lang not in langs:
            raise DataError(f"--train_subset: {item!r}: {lang!r} is not one of --langs ({' '.join(langs)})")
        else:
            subsets[lang] = value
    return subsets


def find_language_dirs(root: Path, langs: list[str]) -> dict[str, tuple[Path, str]]:
    """lang → (mls_<language>[_opus] folder, audio extension); flac preferred over opus."""
    if not root.is_dir():
        raise DataError(f"--mls_root {root}: no such directory")
    found: dict[str, tuple[Path, str]] = {}
    for lang in LANGUAGES:
        for fmt in FORMATS:
            d = root / folder_name(lang, fmt)
            if d.is_dir() and lang not in found:
                found[lang] = (d, fmt)
    if not found:
        raise DataError(f"--mls_root {root}: holds no mls_<language> or mls_<language>_opus folder "
                        f"(e.g. {root / folder_name('en')})")
    absent = [lang for lang in langs if lang not in found]
    if absent:
        names = " ".join(folder_name(lang) for lang in absent)
        have = " ".join(sorted(found, key=list(LANGUAGES).index))
        raise DataError(f"--langs: {' '.join(absent)} not under --mls_root {root} (no {names}); found: {have}")
    return {lang: found[lang] for lang in langs}


def read_transcripts(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    out = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            handle, tab, text = line.partition("\t")
            where = f"{path}:{lineno}"
            if not tab:
                raise DataError(f"{where}: no tab between utterance id and text")
            text = " ".join(text.split())
            if not text:
                raise DataError(f"{where}: empty text for {handle!r}")
            parts = handle.split("_")
            if len(parts) != 3 or not all(parts):
                raise DataError(f"{where}: utterance id {handle!r} is not <speaker>_<book>_<utterance>")
            if handle in out:
                raise DataError(f"{where}: duplicate utterance id {handle!r}")
            out[handle] = text
    return out


def find_audio(split_dir: Path, ext: str) -> dict[str, str]:
    """Utterance id → absolute audio path, from one walk of <split>/audio/."""
    audio = {}
    for dirpath, _, files in os.walk(split_dir.resolve() / "audio"):
        for name in files:
            stem, dot, e = name.rpartition(".")
            if dot and e == ext:
                audio[stem] = os.path.join(dirpath, name)
    return audio


def read_handles(lang_dir: Path, subset: str) -> set[str]:
    handles: set[str] = set()
    for fold in SUBSETS[subset]:
        path = handles_file(lang_dir, fold)
        if not path.is_file():
            raise DataError(f"{path}: limited-supervision handles missing (needed by --train_subset {subset})")
        handles.update(h for h in path.read_text(encoding="utf-8").split())
    return handles


def prepare_split(lang: str, lang_dir: Path, ext: str, split: str, subset: str,
                  skip_missing: bool = False, dropped: list[str] | None = None) -> dict[str, dict[str, str]]:
    """Language ``lang``'s ``split`` as Kaldi tables; a missing audio file is an error, or (``skip_missing``)
    its utterance is left out and ``<handle> <expected path>`` appended to ``dropped``."""
    split_dir = lang_dir / split
    transcripts = read_transcripts(split_dir / "transcripts.txt")
    if split == "train" and subset != "full":
        handles = read_handles(lang_dir, subset)
        unknown = sorted(handles - set(transcripts))
        if unknown:
            raise DataError(f"{handles_file(lang_dir, SUBSETS[subset][0]).parent.parent}: handle {unknown[0]!r} "
                            f"is not in {split_dir / 'transcripts.txt'} ({len(unknown)} such)")
        transcripts = {h: t for h, t in transcripts.items() if h in handles}
    audio = find_audio(split_dir, ext)
    missing = [h for h in transcripts if h not in audio]
    if missing and skip_missing:
        for h in missing:
            spk, book, _ = h.split("_")
            if dropped is not None:
                dropped.append(f"{h} {split_dir / 'audio' / spk / book / f'{h}.{ext}'}")
            del transcripts[h]
        missing = []
    if missing:
        spk, book, _ = missing[0].split("_")
        expected = split_dir / "audio" / spk / book / f"{missing[0]}.{ext}"
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{split_dir / 'transcripts.txt'}: audio for {missing[0]} missing: {expected}{more}")
    if not transcripts:
        raise DataError(f"{split_dir / 'transcripts.txt'}: no utterances")
    tables: dict[str, dict[str, str]] = {n: {} for n in ("wav.scp", "text", "utt2spk", "utt2lang", "utt2category")}
    for handle, text in transcripts.items():
        spk, book, utt = handle.split("_")
        speaker = f"{lang}_{spk.zfill(SPK_DIGITS)}"
        uid = f"{speaker}_{book}_{utt}"
        tables["wav.scp"][uid] = audio[handle]
        tables["text"][uid] = text
        tables["utt2spk"][uid] = speaker
        tables["utt2lang"][uid] = lang
        tables["utt2category"][uid] = lang
    return tables


def merge(parts: list[dict[str, dict[str, str]]]) -> dict[str, dict[str, str]]:
    merged: dict[str, dict[str, str]] = {}
    for tables in parts:
        for name, table in tables.items():
            merged.setdefault(name, {}).update(table)
    return merged


def describe(name: str, tables: dict[str, dict[str, str]], note: str = "") -> str:
    n_spk = len(set(tables["utt2spk"].values()))
    return f"{name}: {len(tables['text'])} utterances, {n_spk} speakers{note}"


def main(argv=None) -> None:
    args = parse_args(argv)
    langs = check_languages(args.langs)
    subsets = parse_subsets(args.train_subset, langs)
    dirs = find_language_dirs(args.mls_root, langs)

    # Read and check everything first.
    out: dict[str, dict[str, dict[str, str]]] = {}
    notes = {}
    missing_audio: dict[str, list[str]] = {}  # set -> utterances dropped for a missing audio file
    for lang in langs:
        lang_dir, fmt = dirs[lang]
        for split in args.splits:
            lost: list[str] = []
            out[f"{lang}_{split}"] = prepare_split(lang, lang_dir, fmt, split, subsets[lang],
                                                   skip_missing=args.skip_missing_audio == "true", dropped=lost)
            if lost:
                missing_audio[f"{lang}_{split}"] = lost
        notes[f"{lang}_train"] = f" ({subsets[lang]})" if subsets[lang] != "full" else ""
    for split in ("train", "dev"):
        if split not in args.splits:
            continue
        out[split] = merge([out[f"{lang}_{split}"] for lang in langs])
    spk_sets = {split: set().union(*(set(out[f"{lang}_{split}"]["utt2spk"].values()) for lang in langs))
                for split in args.splits}
    spk_sets = {split: spk_sets.get(split, set()) for split in SPLITS}
    shared = (spk_sets["train"] & (spk_sets["dev"] | spk_sets["test"])) | (spk_sets["dev"] & spk_sets["test"])
    if shared:
        print(f"data_prep.py: warning: {len(shared)} speakers appear in more than one split "
              f"(e.g. {sorted(shared)[0]})", file=sys.stderr)

    for name, lost in missing_audio.items():
        notes[name] = notes.get(name, "") + (f"; {len(lost)} dropped: audio missing (listed in "
                                             f"{args.data / name / 'missing_audio'})")
    for name, tables in out.items():
        extra = {"missing_audio": "".join(f"{x}\n" for x in missing_audio[name])} if name in missing_audio else None
        write_dir(args.data / name, tables, extra)
        print(describe(name, tables, notes.get(name, "")))
    n_utts = sum(len(out[f"{lang}_{s}"]["text"]) for lang in langs for s in args.splits)
    if missing_audio:
        print(f"data_prep: {sum(map(len, missing_audio.values()))} utterances dropped for missing audio "
              "(--skip_missing_audio true)")
    print(f"data_prep: {len(langs)} languages ({' '.join(f'{lang}:{dirs[lang][1]}' for lang in langs)}), "
          f"{n_utts} utterances → {args.data}/{{<lang>_train,<lang>_dev,<lang>_test,train,dev}}")


if __name__ == "__main__":
    run_main(main)
