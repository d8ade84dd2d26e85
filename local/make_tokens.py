#!/usr/bin/env python3
"""Stage 5: one shared token inventory over all languages' training text.

Writes <out>/tokens.txt in ESPnet's order (<blank> first, as the transducer's blank id 0,
then <unk>, the tokens, and <sos/eos> last) and

* ``--token_type bpe``: <out>/bpe.model, one sentencepiece model trained on every language's
  text together (character coverage 1.0, so every language's letters are kept);
* ``--token_type char``: the characters (``<space>`` between words);
* ``--token_type bpe_lang``: the ASR Pathways paper's vocabulary -- one sentencepiece model
  per language (``--nbpe`` pieces each, on that language's training text only; the language
  of an utterance from ``--utt2lang``, default ``utt2lang`` beside ``--text``), in
  <out>/<lang>/bpe.model, their pieces merged into one token list (a piece two languages
  share is one token).  ESPnet's tokenizers take one model, so every set that training reads
  (``--apply`` DIR ...: a Kaldi dir with ``text`` and ``utt2lang``) is written tokenized by
  its utterances' own language models into <out>/<basename of DIR>/text, pieces separated by
  spaces, which ESPnet reads with ``--token_type word``; ``local/score.py`` joins hypotheses
  made of pieces back into words.  Normalisation ``identity``: the pieces join back to the
  exact text.

Idempotent: skipped when tokens.txt exists for the same settings (for ``bpe_lang`` these
include a digest of every input text, so a changed data set is tokenized again).
"""
import argparse
import collections
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path


def read_texts(path: Path) -> list[str]:
    texts = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").split(maxsplit=1)
            if len(parts) != 2:
                sys.exit(f"make_tokens.py: {path}:{lineno}: expected '<utt-id> <text>'")
            texts.append(parts[1])
    if not texts:
        sys.exit(f"make_tokens.py: {path}: no text")
    return texts


def read_utt2lang(path: Path) -> dict[str, str]:
    if not path.is_file():
        sys.exit(f"make_tokens.py: {path}: no such file (the language of each utterance, needed by --token_type bpe_lang)")
    out = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) != 2:
                sys.exit(f"make_tokens.py: {path}:{lineno}: expected '<utt-id> <language>'")
            out[parts[0]] = parts[1]
    return out


def read_by_language(text: Path, utt2lang: Path) -> dict[str, list[tuple[str, str]]]:
    """(utt-id, text) pairs of a Kaldi ``text`` file grouped by language, in file order."""
    langs = read_utt2lang(utt2lang)
    out: dict[str, list[tuple[str, str]]] = {}
    with text.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").split(maxsplit=1)
            if not parts:
                continue
            if parts[0] not in langs:
                sys.exit(f"make_tokens.py: {utt2lang}: no language for utterance {parts[0]} ({text}:{lineno})")
            out.setdefault(langs[parts[0]], []).append((parts[0], parts[1] if len(parts) > 1 else ""))
    if not out:
        sys.exit(f"make_tokens.py: {text}: no text")
    return out


def train_bpe(texts: list[str], workdir: Path, nbpe: int, bpemode: str, normalization: str = "nmt_nfkc") -> list[str]:
    import sentencepiece as spm

    workdir.mkdir(parents=True, exist_ok=True)
    corpus = workdir / "train.txt"
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(workdir / "bpe"), vocab_size=nbpe,
        model_type=bpemode, character_coverage=1.0, input_sentence_size=100_000_000,
        hard_vocab_limit=False, minloglevel=2, normalization_rule_name=normalization,
    )
    corpus.unlink()
    sp = spm.SentencePieceProcessor(model_file=str(workdir / "bpe.model"))
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size())
            if not (sp.is_control(i) or sp.is_unknown(i))]


def bpe_per_language(by_lang: dict[str, list[tuple[str, str]]], workdir: Path, nbpe: int, bpemode: str,
                     apply: list[Path], utt2lang_name: str) -> list[str]:
    """One model per language in <workdir>/<lang>/, the merged pieces (languages in sorted order,
    each model's pieces in its own order, a piece already listed not repeated); every ``apply``
    set written tokenized into <workdir>/<set>/text."""
    import sentencepiece as spm

    merged: dict[str, None] = {}
    models = {}
    for lang in sorted(by_lang):
        try:
            pieces = train_bpe([t for _, t in by_lang[lang]], workdir / lang, nbpe, bpemode, normalization="identity")
        except RuntimeError as e:  # sentencepiece's own message, e.g. fewer pieces than the language's characters
            sys.exit(f"make_tokens.py: --nbpe {nbpe}: sentencepiece cannot train the {lang} model: "
                     f"{str(e).splitlines()[0].split('] ')[-1]}")
        merged.update(dict.fromkeys(pieces))
        models[lang] = spm.SentencePieceProcessor(model_file=str(workdir / lang / "bpe.model"))
        print(f"  {lang}: {len(pieces)} pieces from {len(by_lang[lang])} sentences")
    for d in apply:
        groups = read_by_language(d / "text", d / utt2lang_name)
        unknown = sorted(set(groups) - set(models))
        if unknown:
            sys.exit(f"make_tokens.py: {d / utt2lang_name}: language {unknown[0]!r} has no training text, so no word-piece model")
        lines = sorted(f"{u} {' '.join(models[lang].encode(t, out_type=str))}\n"
                       for lang, items in groups.items() for u, t in items)
        out = workdir / d.name
        out.mkdir(parents=True, exist_ok=True)
        (out / "text").write_text("".join(lines), encoding="utf-8")
        print(f"  {d}/text: {len(lines)} utterances tokenized -> {out}/text")
    return list(merged)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def char_tokens(texts: list[str]) -> list[str]:
    counts = collections.Counter(c for t in texts for c in t.replace(" ", "\u2581"))
    return ["<space>" if c == "\u2581" else c for c, _ in counts.most_common()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", type=Path, required=True, help="Kaldi text file of the training set")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--token_type", choices=["bpe", "char", "bpe_lang"], default="bpe")
    p.add_argument("--nbpe", type=int, default=300, help="sentencepiece vocabulary size (bpe_lang: per language)")
    p.add_argument("--bpemode", choices=["unigram", "bpe"], default="unigram")
    p.add_argument("--utt2lang", type=Path, help="bpe_lang: utterance -> language (default: utt2lang beside --text)")
    p.add_argument("--apply", type=Path, nargs="*", default=[],
                   help="bpe_lang: Kaldi dirs (text, utt2lang) to write tokenized into <out>/<dir name>/text")
    args = p.parse_args()
    if not args.text.is_file():
        sys.exit(f"make_tokens.py: --text {args.text}: no such file")
    if args.apply and args.token_type != "bpe_lang":
        sys.exit("make_tokens.py: --apply: only with --token_type bpe_lang (ESPnet tokenizes bpe and char itself)")
    names = [d.name for d in args.apply]
    if len(set(names)) != len(names) or set(names) & {"tokens.txt", "settings.json"}:
        sys.exit(f"make_tokens.py: --apply: the dirs' names must differ and not be tokens.txt or settings.json, got {names}")
    utt2lang = args.utt2lang or args.text.parent / "utt2lang"
    settings = {"text": str(args.text), "token_type": args.token_type}
    if args.token_type in ("bpe", "bpe_lang"):
        settings.update(nbpe=args.nbpe, bpemode=args.bpemode)
    if args.token_type == "bpe_lang":
        for d in args.apply:
            if not (d / "text").is_file():
                sys.exit(f"make_tokens.py: --apply {d}: no text file in it")
        settings.update(utt2lang=str(utt2lang), digests={str(f): digest(f) for f in (
            args.text, *([utt2lang] if utt2lang.is_file() else []), *(d / "text" for d in args.apply))})
    stamp = args.out / "settings.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == settings:
        print(f"  {args.out}/tokens.txt exists: skipped")
        return

    if args.token_type == "bpe_lang":
        by_lang = read_by_language(args.text, utt2lang)
        n_texts = sum(len(v) for v in by_lang.values())
    else:
        texts = read_texts(args.text)
        n_texts = len(texts)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=args.out.name + ".", dir=args.out.parent))
    try:
        if args.token_type == "bpe_lang":
            tokens = bpe_per_language(by_lang, work, args.nbpe, args.bpemode, args.apply, utt2lang.name)
        elif args.token_type == "bpe":
            tokens = train_bpe(texts, work, args.nbpe, args.bpemode)
        else:
            tokens = char_tokens(texts)
        vocab = ["<blank>", "<unk>", *tokens, "<sos/eos>"]
        (work / "tokens.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
        (work / "settings.json").write_text(json.dumps(settings) + "\n")
        shutil.rmtree(args.out, ignore_errors=True)
        os.replace(work, args.out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    print(f"  {len(vocab)} tokens ({args.token_type}) from {n_texts} sentences -> {args.out}/tokens.txt")


if __name__ == "__main__":
    main()
