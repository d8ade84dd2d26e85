#!/usr/bin/env python3
"""Stage 5: one shared token inventory over all languages' training text.

Writes <out>/tokens.txt in ESPnet's order (<blank> first, as the transducer's blank id 0,
then <unk>, the tokens, and <sos/eos> last) and, for BPE, <out>/bpe.model trained with
sentencepiece (character coverage 1.0, so every language's letters are kept).
Idempotent: skipped when tokens.txt exists for the same settings.
"""
import argparse
import collections
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


def train_bpe(texts: list[str], workdir: Path, nbpe: int, bpemode: str) -> list[str]:
    import sentencepiece as spm

    corpus = workdir / "train.txt"
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(workdir / "bpe"), vocab_size=nbpe,
        model_type=bpemode, character_coverage=1.0, input_sentence_size=100_000_000,
        hard_vocab_limit=False, minloglevel=2,
    )
    corpus.unlink()
    sp = spm.SentencePieceProcessor(model_file=str(workdir / "bpe.model"))
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size())
            if not (sp.is_control(i) or sp.is_unknown(i))]


def char_tokens(texts: list[str]) -> list[str]:
    counts = collections.Counter(c for t in texts for c in t.replace(" ", "\u2581"))
    return ["<space>" if c == "\u2581" else c for c, _ in counts.most_common()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", type=Path, required=True, help="Kaldi text file of the training set")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--token_type", choices=["bpe", "char"], default="bpe")
    p.add_argument("--nbpe", type=int, default=300, help="sentencepiece vocabulary size")
    p.add_argument("--bpemode", choices=["unigram", "bpe"], default="unigram")
    args = p.parse_args()
    if not args.text.is_file():
        sys.exit(f"make_tokens.py: --text {args.text}: no such file")
    settings = {"text": str(args.text), "token_type": args.token_type}
    if args.token_type == "bpe":
        settings.update(nbpe=args.nbpe, bpemode=args.bpemode)
    stamp = args.out / "settings.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == settings:
        print(f"  {args.out}/tokens.txt exists: skipped")
        return

    texts = read_texts(args.text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=args.out.name + ".", dir=args.out.parent))
    try:
        if args.token_type == "bpe":
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
    print(f"  {len(vocab)} tokens ({args.token_type}) from {len(texts)} sentences -> {args.out}/tokens.txt")


if __name__ == "__main__":
    main()
