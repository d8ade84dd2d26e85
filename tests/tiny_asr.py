"""A tiny ESPnet ASR data set and training runs of the plugin's entry point, for tests.

Random audio (0.4-0.8 s), random lower-case text over a few letters, two or more
languages with MLS-style utterance ids (``<lang>_<spk>_<book>_<utt>``), ``utt2lang``,
ESPnet shape files and a character token list: enough for ESPnet to train a tiny
transducer for a few steps in seconds.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
TOKENS = ["<blank>", "<unk>", "<space>", "a", "b", "c", "d", "e", "<sos/eos>"]
FS = 16000


def make_data(root: Path, langs=("en", "fr"), n_train=6, n_valid=2, seed=0) -> Path:
    """Write <root>/{train,valid}/{wav.scp,text,utt2lang,speech_shape,text_shape}, tokens.txt."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "tokens.txt").write_text("\n".join(TOKENS) + "\n")
    for split, n in (("train", n_train), ("valid", n_valid)):
        d = root / split
        (d / "wav").mkdir(parents=True, exist_ok=True)
        rows = []
        for lang in langs:
            for i in range(n):
                utt = f"{lang}_{100 + i % 2:06d}_{7:d}_{i:06d}"
                samples = int(rng.integers(int(0.4 * FS), int(0.8 * FS)))
                audio = (0.1 * rng.standard_normal(samples)).astype(np.float32)
                path = d / "wav" / f"{utt}.wav"
                sf.write(path, audio, FS, subtype="FLOAT")
                words = ["".join(rng.choice(list("abcde"), size=int(rng.integers(1, 4)))) for _ in range(int(rng.integers(1, 3)))]
                text = " ".join(words)
                rows.append((utt, str(path), text, lang, samples, len(text)))
        rows.sort()
        (d / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p, *_ in rows))
        (d / "text").write_text("".join(f"{u} {t}\n" for u, _, t, *_ in rows))
        (d / "utt2lang").write_text("".join(f"{u} {lang}\n" for u, _, _, lang, *_ in rows))
        (d / "speech_shape").write_text("".join(f"{u} {s}\n" for u, _, _, _, s, _ in rows))
        (d / "text_shape").write_text("".join(f"{u} {n},{len(TOKENS)}\n" for u, *_, n in rows))
    return root


def train_args(data: Path, out: Path, config: str | Path, *extra: str) -> list[str]:
    return [
        "--config", str(config),
        "--output_dir", str(out),
        "--token_type", "char", "--token_list", str(data / "tokens.txt"), "--use_preprocessor", "true",
        "--train_data_path_and_name_and_type", f"{data}/train/wav.scp,speech,sound",
        "--train_data_path_and_name_and_type", f"{data}/train/text,text,text",
        "--valid_data_path_and_name_and_type", f"{data}/valid/wav.scp,speech,sound",
        "--valid_data_path_and_name_and_type", f"{data}/valid/text,text,text",
        "--train_shape_file", f"{data}/train/speech_shape", "--train_shape_file", f"{data}/train/text_shape",
        "--valid_shape_file", f"{data}/valid/speech_shape", "--valid_shape_file", f"{data}/valid/text_shape",
        "--fold_length", "80000", "--fold_length", "150",
        "--ngpu", "0", "--num_workers", "0", "--use_matplotlib", "false", "--use_tensorboard", "false",
        "--seed", "0",
        *extra,
    ]


def run_in_process(args: list[str]) -> str:
    """Run the entry point in this process (ESPnet imported once); returns what it logged.

    A ``SystemExit`` (bad input) comes back with what the run wrote to stderr as ``.stderr``.
    """
    import logging

    from espnet_pathways.bin import pathways_train

    buf, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    old = root.level
    root.setLevel(logging.INFO)
    try:
        with contextlib.redirect_stderr(err):
            pathways_train.main(args)
    except SystemExit as e:
        e.stderr = err.getvalue()
        raise
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
    return buf.getvalue()
