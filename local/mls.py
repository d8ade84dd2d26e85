"""The Multilingual LibriSpeech (MLS) on-disk layout, shared by the generator and data prep.

    mls_<language>[_opus]/metainfo.txt
    mls_<language>[_opus]/{train,dev,test}/transcripts.txt    <spk>_<book>_<utt> TAB text
    mls_<language>[_opus]/{train,dev,test}/segments.txt       <id> TAB url TAB start TAB end
    mls_<language>[_opus]/{train,dev,test}/audio/<spk>/<book>/<spk>_<book>_<utt>.flac|.opus
    mls_<language>[_opus]/train/limited_supervision/1hr/{0..5}/handles.txt, 9hr/handles.txt
"""

from __future__ import annotations

from pathlib import Path

from kaldi_dir import DataError

# MLS language codes and their folder names, in MLS's own order.
LANGUAGES = {
    "en": "english",
    "de": "german",
    "nl": "dutch",
    "fr": "french",
    "es": "spanish",
    "it": "italian",
    "pt": "portuguese",
    "pl": "polish",
}
SPLITS = ("train", "dev", "test")
# Audio extension of each MLS distribution format; the folder of the opus one ends in "_opus".
FORMATS = {"flac": "", "opus": "_opus"}
ONE_HOUR_FOLDS = 6  # limited_supervision/1hr/{0..5}
# The low-resource subsets of the training data, as the limited-supervision handle files
# that make them up (ESPnet's MLS recipe: 10h = 9hr + all 1hr folds, 1h = the 1hr folds).
SUBSETS = {
    "full": (),
    "10h": ("9hr",) + tuple(f"1hr/{k}" for k in range(ONE_HOUR_FOLDS)),
    "1h": tuple(f"1hr/{k}" for k in range(ONE_HOUR_FOLDS)),
}


def check_languages(codes, option: str = "--langs") -> list[str]:
    """Return `codes` if all are MLS language codes, else raise DataError listing the valid ones."""
    bad = [c for c in codes if c not in LANGUAGES]
    if bad:
        valid = " ".join(f"{c}({n})" for c, n in LANGUAGES.items())
        raise DataError(f"{option}: unknown language code {' '.join(bad)}; valid codes: {valid}")
    return list(codes)


def folder_name(lang: str, fmt: str = "flac") -> str:
    return f"mls_{LANGUAGES[lang]}{FORMATS[fmt]}"


def handles_file(lang_dir: Path, fold: str) -> Path:
    """`fold` is "9hr" or "1hr/<k>"."""
    return lang_dir / "train" / "limited_supervision" / fold / "handles.txt"


def audio_path(split_dir: Path, utt_id: str, fmt: str = "flac") -> Path:
    spk, book, _ = utt_id.split("_")
    return split_dir / "audio" / spk / book / f"{utt_id}.{fmt}"
