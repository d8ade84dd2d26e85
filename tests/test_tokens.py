"""Stage 5's token inventories (local/make_tokens.py), the per-language word pieces merged as the
ASR Pathways paper did (--token_type bpe_lang), and scoring hypotheses made of pieces."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "local"))

from score import counts, join_pieces  # noqa: E402

EN = ["the cat sat on the mat", "a dog ran in the park", "the weather is nice today", "we walked to the station"]
FR = ["le chat est sur le tapis", "un chien court dans le parc", "il fait très beau aujourd'hui", "nous marchons à la gare"]


def kaldi_dir(d: Path, texts: dict[str, list[str]]) -> Path:
    d.mkdir(parents=True)
    rows = sorted((f"{lang}_{i:03d}", lang, t) for lang, ts in texts.items() for i, t in enumerate(ts))
    (d / "text").write_text("".join(f"{u} {t}\n" for u, _, t in rows), encoding="utf-8")
    (d / "utt2lang").write_text("".join(f"{u} {lang}\n" for u, lang, _ in rows))
    return d


def make_tokens(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "local" / "make_tokens.py"), *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def sets(tmp_path):
    train = kaldi_dir(tmp_path / "raw" / "train", {"en": EN * 5, "fr": FR * 5})
    dev = kaldi_dir(tmp_path / "raw" / "dev", {"en": EN[:2], "fr": FR[2:]})
    return train, dev


def test_bpe_lang_one_model_per_language_merged_and_texts_that_join_back(sets, tmp_path):
    import sentencepiece as spm

    train, dev = sets
    out = tmp_path / "tok"
    r = make_tokens("--text", str(train / "text"), "--out", str(out), "--token_type", "bpe_lang", "--nbpe", "40",
                    "--apply", str(train), str(dev))
    assert r.returncode == 0, r.stderr
    vocab = (out / "tokens.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert vocab[:2] == ["<blank>", "<unk>"] and vocab[-1] == "<sos/eos>"
    assert len(vocab) == len(set(vocab))
    models = {lang: spm.SentencePieceProcessor(model_file=str(out / lang / "bpe.model")) for lang in ("en", "fr")}
    pieces = {lang: {m.id_to_piece(i) for i in range(m.get_piece_size()) if not (m.is_control(i) or m.is_unknown(i))}
              for lang, m in models.items()}
    assert pieces["en"] != pieces["fr"]  # two vocabularies ...
    assert set(vocab[2:-1]) == pieces["en"] | pieces["fr"]  # ... merged into one list, shared pieces once
    for d in (train, dev):
        ref = dict(line.split(" ", 1) for line in (d / "text").read_text(encoding="utf-8").splitlines())
        tok = dict(line.split(" ", 1) for line in (out / d.name / "text").read_text(encoding="utf-8").splitlines())
        assert tok.keys() == ref.keys()
        for u, t in tok.items():
            lang = u.split("_")[0]
            assert t.split() == models[lang].encode(ref[u], out_type=str)  # its own language's model
            assert join_pieces(t) == ref[u]  # and back to the exact text
    # Idempotent; a changed dev set is tokenized again.
    again = make_tokens("--text", str(train / "text"), "--out", str(out), "--token_type", "bpe_lang", "--nbpe", "40",
                        "--apply", str(train), str(dev))
    assert "exists: skipped" in again.stdout
    (dev / "text").write_text((dev / "text").read_text(encoding="utf-8").replace("gare", "plage"), encoding="utf-8")
    again = make_tokens("--text", str(train / "text"), "--out", str(out), "--token_type", "bpe_lang", "--nbpe", "40",
                        "--apply", str(train), str(dev))
    assert again.returncode == 0 and "skipped" not in again.stdout
    assert json.loads((out / "settings.json").read_text())["token_type"] == "bpe_lang"


@pytest.mark.parametrize("case, message", [
    ("no_lang", "utt2lang: no language for utterance fr_000"),
    ("dev_lang", "language 'it' has no training text"),
    ("apply_char", "--apply: only with --token_type bpe_lang"),
    ("small", "--nbpe 8: sentencepiece cannot train the en model: Vocabulary size is smaller than required_chars"),
])
def test_bpe_lang_bad_input_one_line_nothing_written(sets, tmp_path, case, message):
    train, dev = sets
    token_type = "char" if case == "apply_char" else "bpe_lang"
    if case == "no_lang":
        (train / "utt2lang").write_text("".join(line for line in (train / "utt2lang").read_text().splitlines(True)
                                                if not line.startswith("fr_000 ")))
    if case == "dev_lang":
        kaldi_dir(tmp_path / "raw" / "dev_it", {"it": ["il gatto dorme"]})
        dev = tmp_path / "raw" / "dev_it"
    out = tmp_path / "tok"
    r = make_tokens("--text", str(train / "text"), "--out", str(out), "--token_type", token_type,
                    "--nbpe", "8" if case == "small" else "40",
                    "--apply", str(train), str(dev))
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["raw"]  # no half-written token dir


def test_hypotheses_of_pieces_score_as_their_words():
    refs = ["le chat est sur le tapis", "un chien court"]
    words = ["le chat et sur le tapis", "un chien cour"]
    pieces = ["▁le ▁ch at ▁et ▁sur ▁le ▁ta pis", "▁un ▁chien ▁c our"]
    assert [join_pieces(p) for p in pieces] == words
    for unit in ("word", "char"):
        assert counts(refs, [join_pieces(p) for p in pieces], unit) == counts(refs, words, unit)
    assert join_pieces("") == "" and join_pieces("▁") == ""


def test_score_joins_pieces_by_itself(tmp_path):
    ref = kaldi_dir(tmp_path / "ref" / "fr_test", {"fr": ["le chat est sur le tapis"]})
    hyp = tmp_path / "dec" / "fr_test" / "1best_recog"
    hyp.mkdir(parents=True)
    for pieces, expect in (("auto", 100 / 6), ("no", 800 / 6)):  # joined: one substitution; raw: 6 wrong + 2 inserted
        (hyp / "text").write_text("fr_000 ▁le ▁ch at ▁et ▁sur ▁le ▁ta pis\n", encoding="utf-8")
        r = subprocess.run([sys.executable, str(ROOT / "local" / "score.py"), "--decode_dir", str(tmp_path / "dec"),
                            "--ref_dir", str(ref.parent), "--sets", "fr_test", "--out", str(tmp_path / "R.md"),
                            "--pieces", pieces], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        wer = json.loads((tmp_path / "results.json").read_text())["sets"]["fr_test"]["wer"]["err"]
        assert wer == pytest.approx(expect, abs=0.05)


@pytest.mark.slow
def test_tiny_recipe_with_per_language_word_pieces(tiny_recipe, tmp_path):
    """Stages 5-13 of the tiny recipe with --token_type bpe_lang: stock ESPnet trains on the pieces
    (its word tokenizer), decodes them, and stage 13 scores the words they join into."""
    data = tmp_path / "data"
    shutil.copytree(tiny_recipe.work / "data", data, ignore=shutil.ignore_patterns("token_list"))
    common = list(tiny_recipe.common)
    common[common.index("--data") + 1] = str(data)
    r = subprocess.run(["bash", str(ROOT / "run.sh"), "--stage", "5", "--stop_stage", "13", *common,
                        "--token_type", "bpe_lang", "--nbpe", "60", "--expdir", str(tmp_path / "exp")],
                       capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    tok = data / "token_list" / "bpelang60"
    assert (tok / "en" / "bpe.model").is_file() and (tok / "fr" / "bpe.model").is_file()
    exp = tmp_path / "exp" / "asr_train_tiny"
    config = yaml.safe_load((exp / "config.yaml").read_text(encoding="utf-8"))
    assert config["token_type"] == "word"
    assert config["token_list"] == (tok / "tokens.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert [str(tok / "train" / "text"), "text", "text"] in config["train_data_path_and_name_and_type"]
    assert [str(tok / "dev" / "text"), "text", "text"] in config["valid_data_path_and_name_and_type"]
    hyps = next(exp.glob("decode_*")) / "en_test" / "1best_recog" / "text"
    results = json.loads((exp / "results.json").read_text())
    assert set(results["sets"]) == {"en_test", "fr_test"}
    assert all(s["wer"]["wrd"] > 0 for s in results["sets"].values())
    assert hyps.is_file()
