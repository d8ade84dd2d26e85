#!/usr/bin/env python3
"""Stage 29 (SSL): the labelled fine-tuning subset, from MLS's limited-supervision handles.

    python local/ft_subset.py --mls_root corpus/full --langs en fr it nl --subset 10h \\
        --shape_dir exp/asr_stats_char/train --token_tag char --out exp/ssl/ft_data

Self-supervised pre-training uses every training utterance's audio; fine-tuning uses the
transcripts of a subset only: per language ``full``, ``10h`` (9hr + 1hr/0..5) or ``1h``
(1hr/0..5), as ``--train_subset`` of stage 1 reads them (``10h`` for all, or e.g.
``en=10h,it=1h,nl=1h``; unnamed languages: ``full``).  In mini-MLS the handles are scaled
(``10h`` = a quarter of each language's training utterances, ``1h`` a tenth of that).

Writes ``<out>/speech_shape`` and ``<out>/text_shape.<token_tag>`` (stage 10's shape files
restricted to the subset: ESPnet batches exactly the utterances its shape files list),
``<out>/utt_list`` and ``<out>/summary.json`` (utterances and hours per language).
Utterances that stage 4 dropped (too short or long) are counted, not an error; a language
left without any is.  Everything is written aside and renamed into place.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_prep import SPK_DIGITS, find_language_dirs, parse_subsets, read_handles  # noqa: E402
from kaldi_dir import DataError, run_main  # noqa: E402
from mls import check_languages  # noqa: E402

FS = 16000


def read_shape(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise DataError(f"{path}: no such shape file (run stage 10 first)")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            key, _, rest = line.partition(" ")
            if not rest:
                raise DataError(f"{path}:{n}: expected '<utt> <shape>', got {line!r}")
            rows.append((key, rest.strip()))
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mls_root", type=Path, required=True, help="the MLS copy (or mini-MLS) of stage 1")
    p.add_argument("--langs", nargs="+", required=True)
    p.add_argument("--subset", required=True, help="10h | 1h | full, or per language: en=10h,it=1h")
    p.add_argument("--shape_dir", type=Path, required=True, help="stage 10's train shape dir")
    p.add_argument("--token_tag", required=True, help="char | bpe<N>: the text shape file's suffix")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    langs = check_languages(args.langs)
    try:
        subsets = parse_subsets(args.subset, langs)
    except DataError as e:
        raise DataError(str(e).replace("--train_subset", "--ssl_ft_subset")) from None
    dirs = find_language_dirs(args.mls_root, langs)
    wanted: dict[str, str] = {}
    for lang in langs:
        if subsets[lang] == "full":
            continue
        for h in read_handles(dirs[lang][0], subsets[lang]):
            spk, book, utt = h.split("_")
            wanted[f"{lang}_{spk.zfill(SPK_DIGITS)}_{book}_{utt}"] = lang
    speech = read_shape(args.shape_dir / "speech_shape")
    text = dict(read_shape(args.shape_dir / f"text_shape.{args.token_tag}"))

    def keep(utt: str) -> bool:
        lang = utt.split("_", 1)[0]
        return lang in subsets and (subsets[lang] == "full" or utt in wanted)

    kept = [(u, s) for u, s in speech if keep(u)]
    summary = {}
    for lang in langs:
        rows = [(u, s) for u, s in kept if u.startswith(lang + "_")]
        if not rows:
            raise DataError(f"{args.shape_dir / 'speech_shape'}: no {lang} utterance of the {subsets[lang]} subset "
                            "(stage 4 may have dropped them all)")
        missing = sum(1 for u, lang_ in wanted.items() if lang_ == lang) - len(rows) if subsets[lang] != "full" else 0
        summary[lang] = dict(subset=subsets[lang], utterances=len(rows),
                             hours=round(sum(int(s.split(",")[0]) for _, s in rows) / FS / 3600, 3),
                             dropped_by_stage4=max(missing, 0))
    no_text = [u for u, _ in kept if u not in text]
    if no_text:
        raise DataError(f"{args.shape_dir / f'text_shape.{args.token_tag}'}: no entry for {no_text[0]}")
    files = {
        "speech_shape": "".join(f"{u} {s}\n" for u, s in kept),
        f"text_shape.{args.token_tag}": "".join(f"{u} {text[u]}\n" for u, _ in kept),
        "utt_list": "".join(f"{u}\n" for u, _ in kept),
        "summary.json": json.dumps(summary, indent=1) + "\n",
    }
    what = "fine-tuning subset -> " + str(args.out) + ": " + ", ".join(
        f"{lang} {v['subset']} {v['utterances']} utt {v['hours']:.2f} h" for lang, v in summary.items())
    if all((args.out / name).is_file() and (args.out / name).read_text(encoding="utf-8") == body
           for name, body in files.items()):
        # the same subset already in place: left as it is, so that stage-29 runs side by side
        # (one --ssl_ft_systems group each) never pull it from under one another's training
        print(what + " (unchanged)")
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=args.out.parent, prefix=args.out.name + ".tmp"))
    for name, body in files.items():
        (tmp / name).write_text(body, encoding="utf-8")
    shutil.rmtree(args.out, ignore_errors=True)
    os.replace(tmp, args.out)
    print(what)


if __name__ == "__main__":
    run_main(main)
