#!/usr/bin/env python3
"""Stage 13: WER and CER per language, written as RESULTS.md in ESPnet's table style.

Reads <decode_dir>/<set>/1best_recog/text (ESPnet inference output) and the reference
<ref_dir>/<set>/text for every set, and writes
  - RESULTS.md: WER and CER tables (dataset | Snt | Wrd | Corr | Sub | Del | Ins | Err | S.Err)
    and a summary with one row per language plus the average, and
  - results.json beside it (the same numbers, for report stages).
An utterance with no hypothesis counts as all deletions; the count is printed.
Hypotheses made of word pieces separated by spaces (``--token_type bpe_lang``: ESPnet decodes
with its ``word`` tokenizer over the merged per-language pieces) are joined back into words
first (``--pieces auto``: when a set's hypotheses hold the sentencepiece word boundary U+2581).
"""
import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path

import jiwer


def read_text(path: Path) -> dict[str, str]:
    out = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split(maxsplit=1)
            if parts:
                out[parts[0]] = parts[1] if len(parts) > 1 else ""
    return out


WORD_BOUNDARY = "\u2581"


def join_pieces(hyp: str) -> str:
    """Sentencepiece pieces separated by spaces -> words (the word boundary U+2581 -> a space)."""
    return " ".join("".join(hyp.split()).replace(WORD_BOUNDARY, " ").split())


def counts(refs: list[str], hyps: list[str], unit: str) -> tuple[dict, list[tuple[int, int]]]:
    """Edit-distance counts over a set, as ESPnet's sclite-style tables report them, and per
    utterance (errors, reference length) from the same alignment (the report's bootstrap)."""
    process = jiwer.process_words if unit == "word" else jiwer.process_characters
    if unit == "char":  # ESPnet scores characters with spaces as tokens
        refs = [r.replace(" ", "_") for r in refs]
        hyps = [h.replace(" ", "_") for h in hyps]
    size = (lambda t: len(t.split())) if unit == "word" else len
    # jiwer rejects empty references; such utterances only add insertions.
    keep = [i for i, r in enumerate(refs) if r.strip()]
    out = process([refs[i] for i in keep], [hyps[i] for i in keep])
    per_utt = [(size(h), 0) for h in hyps]
    for i, chunks in zip(keep, out.alignments):
        err = sum((c.hyp_end_idx - c.hyp_start_idx) if c.type == "insert" else (c.ref_end_idx - c.ref_start_idx)
                  for c in chunks if c.type != "equal")
        per_utt[i] = (err, size(refs[i]))
    ins_extra = sum(per_utt[i][0] for i in range(len(refs)) if i not in keep)
    n_ref = out.hits + out.substitutions + out.deletions
    sent_err = sum(1 for r, h in zip(refs, hyps) if r != h)
    ins = out.insertions + ins_extra
    err = out.substitutions + out.deletions + ins
    pct = lambda x: round(100.0 * x / max(n_ref, 1), 2)  # noqa: E731
    return {
        "snt": len(refs), "wrd": n_ref, "corr": pct(out.hits), "sub": pct(out.substitutions),
        "del": pct(out.deletions), "ins": pct(ins), "err": pct(err),
        "s_err": round(100.0 * sent_err / max(len(refs), 1), 2),
        "errors": err,
    }, per_utt


def table(rows: list[tuple[str, dict]]) -> str:
    lines = ["|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|", "|---|---|---|---|---|---|---|---|---|"]
    for name, c in rows:
        lines.append(f"|{name}|{c['snt']}|{c['wrd']}|{c['corr']:.1f}|{c['sub']:.1f}|{c['del']:.1f}|"
                     f"{c['ins']:.1f}|{c['err']:.1f}|{c['s_err']:.1f}|")
    return "\n".join(lines)


def environment() -> str:
    import torch

    try:
        import espnet
        espnet_version = espnet.__version__
    except Exception:  # pragma: no cover - scoring works without ESPnet
        espnet_version = "n/a"
    return (f"- date: `{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}`\n"
            f"- python version: `{platform.python_version()}`\n"
            f"- espnet version: `espnet {espnet_version}`\n"
            f"- pytorch version: `pytorch {torch.__version__}`\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--decode_dir", type=Path, required=True)
    p.add_argument("--ref_dir", type=Path, required=True, help="holds <set>/text")
    p.add_argument("--sets", nargs="+", required=True, help="e.g. en_test fr_test")
    p.add_argument("--out", type=Path, required=True, help="RESULTS.md to write")
    p.add_argument("--title", default="", help="one line describing the system")
    p.add_argument("--pieces", choices=["auto", "yes", "no"], default="auto",
                   help="join word-piece hypotheses into words first (auto: when a set's hypotheses hold U+2581)")
    args = p.parse_args()

    results = {}
    for s in args.sets:
        ref_path, hyp_path = args.ref_dir / s / "text", args.decode_dir / s / "1best_recog" / "text"
        for path in (ref_path, hyp_path):
            if not path.is_file():
                sys.exit(f"score.py: {path}: no such file (decode {s} first: stage 12)")
        refs, hyps = read_text(ref_path), read_text(hyp_path)
        if args.pieces == "yes" or (args.pieces == "auto" and any(WORD_BOUNDARY in h for h in hyps.values())):
            hyps = {k: join_pieces(h) for k, h in hyps.items()}
        missing = [u for u in refs if u not in hyps]
        if missing:
            print(f"  {s}: {len(missing)} utterances without hypothesis, scored as deletions", file=sys.stderr)
        keys = sorted(refs)
        r, h = [refs[k] for k in keys], [hyps.get(k, "") for k in keys]
        (wer, wu), (cer, cu) = counts(r, h, "word"), counts(r, h, "char")
        results[s] = {"wer": wer, "cer": cer, "missing": len(missing),
                      # Per utterance: [word errors, words, char errors, chars] (local/report.py's bootstrap).
                      "utts": {k: [*w, *c] for k, w, c in zip(keys, wu, cu)}}
        print(f"  {s}: {len(keys)} utterances, WER {results[s]['wer']['err']:.1f}%, CER {results[s]['cer']['err']:.1f}%")

    langs = [s.split("_", 1)[0] for s in args.sets]
    avg = {u: round(sum(results[s][u]["err"] for s in args.sets) / len(args.sets), 2) for u in ("wer", "cer")}
    summary = ["| language | Snt | WER (%) | CER (%) |", "|---|---|---|---|"]
    summary += [f"| {lang} | {results[s]['wer']['snt']} | {results[s]['wer']['err']:.1f} | {results[s]['cer']['err']:.1f} |"
                for lang, s in zip(langs, args.sets)]
    summary.append(f"| average | {sum(results[s]['wer']['snt'] for s in args.sets)} | {avg['wer']:.1f} | {avg['cer']:.1f} |")
    name = args.decode_dir.as_posix()
    text = (f"# RESULTS\n## Environments\n{environment()}\n## {name}\n"
            + (f"{args.title}\n\n" if args.title else "")
            + "### Summary (error rate per language; average is the unweighted mean over languages)\n\n"
            + "\n".join(summary) + "\n\n### WER\n\n"
            + table([(f"{name}/{s}", results[s]["wer"]) for s in args.sets]) + "\n\n### CER\n\n"
            + table([(f"{name}/{s}", results[s]["cer"]) for s in args.sets]) + "\n")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"decode_dir": name, "title": args.title, "sets": results, "average": avg}
    for path, body in ((args.out, text), (args.out.with_name("results.json"), json.dumps(payload, indent=1) + "\n")):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(body, encoding="utf-8")
        os.replace(tmp, path)
    print(f"  average WER {avg['wer']:.1f}%, CER {avg['cer']:.1f}% -> {args.out}")


if __name__ == "__main__":
    main()
