#!/usr/bin/env python3
"""Synthesise a small Multilingual LibriSpeech look-alike ("mini-MLS") offline.

Writes MLS's exact on-disk layout (see local/mls.py) for any of MLS's 8 languages, so the
recipe runs unchanged on it or on a real MLS copy. Speakers are espeak-ng voices and
variants with a fixed pitch, rate, room and noise each; sentences are random words from
`wordfreq` plus numbers spelled out by `num2words`; audio goes espeak-ng → sox (tempo,
tone, reverb, 16 kHz, `gain -n -3`) → seeded noise at a random SNR → FLAC (or Ogg/Opus).

Same --seed → byte-identical transcripts and FLAC files. Each language is written into a
hidden folder and renamed into place once complete (with a `.complete` marker holding
its settings), so re-running skips finished languages and an interrupted run leaves no
half-written one behind.

Examples:
  python local/make_mini_mls.py --out corpus/demo                     # en fr it nl, demo size
  python local/make_mini_mls.py --out /tmp/t --size tiny --langs en fr --jobs 2
  python local/make_mini_mls.py --out corpus/full --size full --langs en de fr es it nl pt pl
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kaldi_dir import DataError, run_main, staged_dir  # noqa: E402
from mls import LANGUAGES, ONE_HOUR_FOLDS, SPLITS, audio_path, check_languages, folder_name, handles_file  # noqa: E402

FS = 16000
FORMAT_VERSION = 1  # bump when the same settings would synthesise different data

# Corpus sizes. Speakers and utterances are per language and split; `train_utts` is for the
# high-resource languages, the LOW_RESOURCE ones get `low_resource_share` of it (as in MLS,
# where it, pt, pl and nl have far less training audio than en, de, fr, es). An utterance
# lasts ~3.5 s on average (4-14 words), so 400 utterances ≈ 25 minutes.
SIZES = {
    "tiny": dict(train_speakers=3, dev_speakers=1, test_speakers=1,
                 train_utts=10, dev_utts=4, test_utts=4, vocab=1000),
    "demo": dict(train_speakers=24, dev_speakers=4, test_speakers=4,
                 train_utts=800, dev_utts=40, test_utts=50, vocab=3000),
    "full": dict(train_speakers=36, dev_speakers=6, test_speakers=6,
                 train_utts=3000, dev_utts=200, test_utts=200, vocab=10000),
}
LOW_RESOURCE = ("it", "nl", "pt", "pl")
DEFAULTS = dict(low_resource_share=0.4, limited_share=0.25, min_words=4, max_words=14)

# Letters each language's words may use (plus an inner apostrophe where the language has one).
ALPHABETS = {
    "en": ("a-z", True),
    "de": ("a-zäöüß", False),
    "nl": ("a-zäëïöüéèáóú", False),
    "fr": ("a-zàâæçéèêëîïôœùûüÿ", True),
    "es": ("a-záéíóúüñ", False),
    "it": ("a-hil-vzàèéìíîòóùú", True),  # no j k w x y: words with them are loans
    "pt": ("a-záâãàçéêíóôõúü", False),
    "pl": ("a-pr-uwyząćęłńóśźż", False),  # no q v x
}
VOWELS = "aeiouyäëïöüéèáóúàâæêîôœùûÿíãõąę"
# Tokens wordfreq counts as words that are really web or brand names.
NOT_WORDS = {"http", "https", "www", "com", "html", "facebook", "google", "twitter", "youtube",
             "instagram", "blog", "online", "internet", "email", "app", "ok", "okay", "web",
             "ii", "iii", "iv", "vi", "vii", "viii", "ix", "xi", "xii", "xx",
             "qu", "jusqu", "lorsqu", "puisqu", "quelqu"}  # the last: French elisions cut at the apostrophe
# espeak-ng variants that sound like people (a subset of `espeak-ng --voices=variant`);
# gender comes from that listing.
VARIANTS = ("m1 m2 m3 m4 m5 m6 m7 m8 f1 f2 f3 f4 f5 klatt klatt2 klatt3 klatt4 klatt6 "
            "adam Alex Alicia Andrea Andy annie aunty belinda benjamin boris caleb david ed "
            "edward gustave iven iven2 john linda max michel miguel norbert paul pedro quincy "
            "rob robert steph steph2 travis victor zac").split()
APT_HINT = "apt-get install espeak-ng sox libsox-fmt-all flac"


# ---------------------------------------------------------------------------- planning
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder to write mls_<language>[_opus] folders into")
    p.add_argument("--langs", nargs="+", default=["en", "fr", "it", "nl"],
                   help="MLS language codes (default: en fr it nl); any of " + " ".join(LANGUAGES))
    p.add_argument("--size", choices=SIZES, default="demo", help="corpus size (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same corpus (default %(default)s)")
    p.add_argument("--jobs", "--nj", type=int, default=len(os.sched_getaffinity(0)),
                   help="parallel synthesis processes (default: number of cores, %(default)s)")
    p.add_argument("--format", choices=("flac", "opus"), default="flac",
                   help="flac → mls_<language>/…/*.flac; opus → mls_<language>_opus/…/*.opus (~6× smaller)")
    p.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS),
                   help="synthesise only these splits, e.g. 'test' to evaluate a model trained elsewhere "
                        "on the same corpus (same seed and size: the same utterances); default: all")
    g = p.add_argument_group("overrides of the --size table")
    for key in SIZES["demo"]:
        per_size = ", ".join(f"{s} {v[key]}" for s, v in SIZES.items())
        g.add_argument(f"--{key}", type=int, help=f"default per size: {per_size}")
    g.add_argument("--low_resource_share", type=float,
                   help=f"share of train_utts for {' '.join(LOW_RESOURCE)} "
                        f"(default {DEFAULTS['low_resource_share']})")
    g.add_argument("--limited_share", type=float,
                   help="share of train forming the limited-supervision '10h' set (9hr + 1hr/0..5); "
                        f"its tenth is the '1h' set (default {DEFAULTS['limited_share']})")
    g.add_argument("--min_words", type=int, help=f"shortest sentence in words (default {DEFAULTS['min_words']})")
    g.add_argument("--max_words", type=int, help=f"longest sentence in words (default {DEFAULTS['max_words']})")
    return p.parse_args(argv)


def settings_for(args, lang: str) -> dict:
    """The resolved settings of one language: everything that determines its data."""
    s = dict(SIZES[args.size])
    s.update(DEFAULTS)
    for key in s:
        if getattr(args, key, None) is not None:
            s[key] = getattr(args, key)
    utts = {"train": s["train_utts"], "dev": s["dev_utts"], "test": s["test_utts"]}
    if lang in LOW_RESOURCE:
        utts["train"] = max(ONE_HOUR_FOLDS + 1, round(utts["train"] * s["low_resource_share"]))
    if utts["train"] < ONE_HOUR_FOLDS + 1:
        raise DataError(f"--train_utts: need at least {ONE_HOUR_FOLDS + 1} "
                        f"(one per limited-supervision fold, plus one)")
    if min(utts.values()) < 1 or min(s[f"{k}_speakers"] for k in SPLITS) < 1:
        raise DataError("--*_utts/--*_speakers: every split needs at least one utterance and one speaker")
    if not 1 <= s["min_words"] <= s["max_words"]:
        raise DataError("--min_words/--max_words: need 1 <= min_words <= max_words")
    splits = getattr(args, "splits", SPLITS)  # callers building args by hand may omit it
    extra = {} if set(splits) == set(SPLITS) else {"splits": sorted(splits)}
    return dict(version=FORMAT_VERSION, lang=lang, seed=args.seed, format=args.format, **extra,
                speakers={k: s[f"{k}_speakers"] for k in SPLITS}, utts=utts, vocab=s["vocab"],
                words=[s["min_words"], s["max_words"]], limited_share=s["limited_share"])


def espeak_voices(lang: str) -> list[str]:
    """espeak-ng's own voices for a language (not mbrola: it needs extra packages)."""
    out = subprocess.run(["espeak-ng", f"--voices={lang}"], capture_output=True, text=True, check=True).stdout
    voices = []
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5 and cols[1] != "variant" and not cols[4].startswith("mb/"):
            voices.append(cols[1])
    return sorted(set(voices)) or [lang]


def espeak_variants() -> dict[str, str]:
    """Variant file name → gender ("M"/"F") for the VARIANTS that this espeak-ng has."""
    out = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5 and cols[4].startswith("!v/"):
            found[cols[4][3:]] = "F" if cols[2].endswith("F") else "M"
    variants = {v: found[v] for v in VARIANTS if v in found}
    if not variants:
        raise DataError("espeak-ng --voices=variant lists none of the expected variants (m1 f1 klatt …)")
    return variants


class TextMaker:
    """Random lowercase sentences: wordfreq words of one language plus numbers in words."""

    def __init__(self, lang: str, vocab: int, words: tuple[int, int]):
        import wordfreq

        letters, apostrophe = ALPHABETS[lang]
        word = f"[{letters}]+" + (f"(?:'[{letters}]+)?" if apostrophe else "")
        self.word_re = re.compile(f"^{word}$")
        self.lang, self.words = lang, words
        freq = wordfreq.get_frequency_dict(lang)
        en_freq = wordfreq.get_frequency_dict("en") if lang != "en" else None
        kept = []
        for w in wordfreq.top_n_list(lang, vocab * 4):
            if len(w) < 2 or w in NOT_WORDS or not self.word_re.match(w) or not any(c in VOWELS for c in w):
                continue
            # An "obvious English loan": at least 2× (0.3 zipf) as frequent in English.
            if en_freq is not None and en_freq.get(w, 0.0) >= 2.0 * freq.get(w, 0.0):
                continue
            kept.append(w)
            if len(kept) == vocab:
                break
        self.vocab = kept
        # Zipf-like but flatter than real text, so that rarer words recur too.
        self.cum_weights, total = [], 0.0
        for rank in range(len(kept)):
            total += (rank + 10) ** -0.8
            self.cum_weights.append(total)

    def number(self, rng: random.Random) -> str:
        from num2words import num2words

        r = rng.random()
        n = rng.randint(0, 100) if r < 0.6 else rng.randint(101, 9999) if r < 0.85 else rng.randint(1800, 2030)
        text = num2words(n, lang=self.lang).lower()
        return " ".join(re.sub(r"[-,]", " ", text).split())

    def sentence(self, rng: random.Random) -> str:
        n = rng.randint(*self.words)
        tokens = []
        while len(tokens) < n:
            if rng.random() < 0.07:
                num = self.number(rng)
                if all(self.word_re.match(w) for w in num.split()):
                    tokens.append(num)
            else:
                tokens.append(rng.choices(self.vocab, cum_weights=self.cum_weights)[0])
        return " ".join(tokens)


def make_plan(settings: dict) -> dict:
    """Everything random about a language, drawn in the main process from one seeded RNG."""
    lang = settings["lang"]
    rng = random.Random(f"mini-mls:{settings['seed']}:{lang}")
    texts = TextMaker(lang, settings["vocab"], tuple(settings["words"]))
    voices, variants = espeak_voices(lang), espeak_variants()

    # Speakers: (voice, variant) pairs alternating between genders, each with its own
    # pitch, rate, tone, room and noise; MLS-like numeric ids, 1-3 books each.
    n_spk = sum(settings["speakers"].values())
    by_gender = {g: [(v, var) for v in voices for var in sorted(variants) if variants[var] == g] for g in "MF"}
    for pairs in by_gender.values():
        rng.shuffle(pairs)
    first = rng.choice("MF")
    order = [first if i % 2 == 0 else ("F" if first == "M" else "M") for i in range(n_spk)]
    spk_ids = rng.sample(range(1000, 14000), n_spk)
    book_ids = iter(rng.sample(range(1000, 16000), 3 * n_spk))
    speakers, used = [], {"M": 0, "F": 0}
    for i, gender in enumerate(order):
        pairs = by_gender[gender] or by_gender["M" if gender == "F" else "F"]
        voice, variant = pairs[used[gender] % len(pairs)]
        used[gender] += 1
        speakers.append(dict(
            id=str(spk_ids[i]), gender=variants[variant], voice=f"{voice}+{variant}",
            pitch=rng.randint(40, 70) if variants[variant] == "F" else rng.randint(25, 60),
            rate=rng.randint(140, 185), bass=round(rng.uniform(-4, 4), 1), treble=round(rng.uniform(-4, 4), 1),
            reverb=rng.randint(0, 60), room=rng.randint(20, 100), snr=rng.uniform(10, 30),
            noise=rng.choice((0.0, 1.0, 2.0)), level=rng.uniform(-6, 0),
            books=[str(next(book_ids)) for _ in range(rng.randint(1, 3))]))

    # Speaker-disjoint splits; utterances spread evenly over a split's speakers.
    utts, start = [], 0
    for split in SPLITS:
        spks = speakers[start:start + settings["speakers"][split]]
        start += len(spks)
        for spk in spks:
            spk["partition"] = split
        counters = {}
        for i in range(settings["utts"][split]):
            spk = spks[i % len(spks)]
            book = rng.choice(spk["books"])
            k = counters[spk["id"], book] = counters.get((spk["id"], book), -1) + 1
            utts.append(dict(
                id=f"{spk['id']}_{book}_{k:06d}", split=split, spk=spk, text=texts.sentence(rng),
                pitch=max(0, min(99, spk["pitch"] + rng.randint(-4, 4))), tempo=round(rng.uniform(0.92, 1.08), 3),
                snr=spk["snr"] + rng.uniform(-3, 3), lead=rng.uniform(0.05, 0.35), tail=rng.uniform(0.05, 0.3),
                noise_seed=rng.getrandbits(63)))
    for spk in speakers:  # a speaker may not have used every book
        spk["books"] = sorted({u["id"].split("_")[1] for u in utts if u["spk"] is spk})
    return dict(speakers=[s for s in speakers if s["books"]], utts=utts, rng=rng)


# ---------------------------------------------------------------------------- synthesis
def synthesize(task: dict) -> tuple[str, str, int]:
    """espeak-ng → sox → noise → file. Returns (split, utterance id, samples)."""
    import numpy as np
    import soundfile as sf

    spk = task["spk"]
    tts = subprocess.run(
        ["espeak-ng", "-v", spk["voice"], "-p", str(task["pitch"]), "-s", str(spk["rate"]), "--stdout"],
        input=task["text"].encode(), capture_output=True)
    if tts.returncode != 0 or not tts.stdout:
        raise RuntimeError(f"espeak-ng -v {spk['voice']} failed: {tts.stderr.decode().strip()[:200]}")
    effects = ["tempo", "-s", str(task["tempo"]), "bass", str(spk["bass"]), "treble", str(spk["treble"])]
    if spk["reverb"]:
        effects += ["reverb", str(spk["reverb"]), "50", str(spk["room"])]
    effects += ["rate", "-v", str(FS), "gain", "-n", "-3"]
    fx = subprocess.run(["sox", "-R", "-V1", "-t", "wav", "-", "-t", "raw", "-e", "floating-point", "-b", "32",
                         "-c", "1", "-"] + effects, input=tts.stdout, capture_output=True)
    if fx.returncode != 0:
        raise RuntimeError(f"sox failed: {fx.stderr.decode().strip()[:200]}")
    speech = np.frombuffer(fx.stdout, dtype=np.float32)
    if len(speech) == 0:
        raise RuntimeError(f"sox produced no audio for {task['id']}")

    rng = np.random.default_rng(task["noise_seed"])
    x = np.concatenate([np.zeros(int(task["lead"] * FS), np.float32), speech,
                        np.zeros(int(task["tail"] * FS), np.float32)]).astype(np.float64)
    # Coloured noise (0 white, 1 pink, 2 brown) by shaping a white spectrum (power-of-2 FFT).
    n_fft = 1 << (len(x) - 1).bit_length()
    spec = np.fft.rfft(rng.standard_normal(n_fft))
    f = np.maximum(np.fft.rfftfreq(n_fft, 1 / FS), 20.0)
    noise = np.fft.irfft(spec * f ** (-spk["noise"] / 2), n=n_fft)[:len(x)]
    p_speech = np.mean(speech.astype(np.float64) ** 2) + 1e-12
    noise *= np.sqrt(p_speech / 10 ** (task["snr"] / 10) / (np.mean(noise ** 2) + 1e-20))
    y = (x + noise) * 10 ** (spk["level"] / 20)
    peak = np.max(np.abs(y))
    if peak > 0.89:  # -1 dBFS
        y *= 0.89 / peak
    path = Path(task["path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    if task["format"] == "opus":
        sf.write(path, y.astype(np.float32), FS, format="OGG", subtype="OPUS")
    else:
        sf.write(path, y.astype(np.float32), FS, format="FLAC", subtype="PCM_16")
    return task["split"], task["id"], len(y)


class Progress:
    """`label: done/total (rate/s, ETA)` on stderr: redrawn on a terminal, a line every 10 s otherwise."""

    def __init__(self, label: str, total: int):
        self.label, self.total, self.done = label, total, 0
        self.t0 = self.last = time.time()
        self.tty = sys.stderr.isatty()

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.time()
        if self.done == self.total or now - self.last >= (0.5 if self.tty else 10):
            self.last = now
            rate = self.done / max(now - self.t0, 1e-9)
            eta = (self.total - self.done) / rate if rate else 0
            line = f"{self.label}: {self.done}/{self.total} utterances ({rate:.1f}/s, {eta:.0f} s left)"
            if self.tty:
                end = "\n" if self.done == self.total else ""
                print(f"\r{line}\033[K", end=end, file=sys.stderr, flush=True)
            elif self.done < self.total:
                print(line, file=sys.stderr, flush=True)


def _worker_init():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C


def write_metadata(root: Path, settings: dict, plan: dict, samples: dict[str, int]) -> None:
    rng = plan["rng"]
    if settings.get("splits"):  # a partial corpus (--splits): only its transcripts, no metadata
        for split in settings["splits"]:
            with open(root / split / "transcripts.txt", "w", encoding="utf-8") as f:
                for u in sorted((u for u in plan["utts"] if u["split"] == split), key=lambda u: u["id"]):
                    f.write(f"{u['id']}\t{u['text']}\n")
        return
    by_split = {s: [u for u in plan["utts"] if u["split"] == s] for s in SPLITS}
    for split, utts in by_split.items():
        d = root / split
        with open(d / "transcripts.txt", "w", encoding="utf-8") as f:
            for u in sorted(utts, key=lambda u: u["id"]):
                f.write(f"{u['id']}\t{u['text']}\n")
        # segments.txt: where each utterance would sit in its (fictional) LibriVox chapter.
        with open(d / "segments.txt", "w", encoding="utf-8") as f:
            t = {}
            for u in sorted(utts, key=lambda u: u["id"]):
                spk, book, _ = u["id"].split("_")
                start = t.get(book, rng.uniform(5, 60))
                end = start + samples[u["id"]] / FS
                t[book] = end + rng.uniform(0.3, 2.0)
                url = f"http://www.archive.org/download/minimls_{book}/{book}_{spk}_espeak_64kb.mp3"
                f.write(f"{u['id']}\t{url}\t{start:.2f}\t{end:.2f}\n")

    # metainfo.txt: one row per speaker and book, MLS's columns and header.
    cols = ("SPEAKER", "GENDER", "PARTITION", "MINUTES", "BOOK ID", "TITLE", "CHAPTER")
    rows = []
    for spk in sorted(plan["speakers"], key=lambda s: int(s["id"])):
        for book in spk["books"]:
            minutes = sum(samples[u["id"]] for u in plan["utts"]
                          if u["spk"] is spk and u["id"].split("_")[1] == book) / FS / 60
            title = " ".join(w.capitalize() for w in rng.sample(plan["title_words"], 3))
            rows.append((spk["id"], spk["gender"], spk["partition"], f"{minutes:.3f}", book, title,
                         f"Chapter {rng.randint(1, 30)}"))
    widths = (9, 10, 10, 10, 10, 30, 29)
    with open(root / "metainfo.txt", "w", encoding="utf-8") as f:
        for row in [cols] + rows:
            f.write("|".join(f" {c.center(w)} " for c, w in zip(row, widths)) + "\n")

    # Limited supervision: a speaker-balanced "10h" subset of train, a tenth of it ("1h")
    # in 6 folds, the rest "9hr" (MLS: 9hr + 6 × 10 min).
    train = sorted(by_split["train"], key=lambda u: u["id"])
    per_spk = {}
    for u in train:
        per_spk.setdefault(u["spk"]["id"], []).append(u["id"])
    queues = [rng.sample(ids, len(ids)) for _, ids in sorted(per_spk.items())]
    balanced = [q[i] for i in range(max(map(len, queues))) for q in queues if i < len(q)]
    n10 = min(len(train), max(ONE_HOUR_FOLDS + 1, round(settings["limited_share"] * len(train))))
    n1 = max(ONE_HOUR_FOLDS, round(n10 / 10))
    folds = {f"1hr/{k}": balanced[k:n1:ONE_HOUR_FOLDS] for k in range(ONE_HOUR_FOLDS)}
    folds["9hr"] = balanced[n1:n10]
    for fold, ids in folds.items():
        path = handles_file(root, fold)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{i}\n" for i in sorted(ids)), encoding="utf-8")


def generate_language(settings: dict, final: Path, pool: Pool, jobs: int) -> tuple[int, float]:
    lang = settings["lang"]
    plan = make_plan(settings)
    plan["title_words"] = [w for w in TextMaker(lang, 300, (1, 1)).vocab if len(w) > 3]
    with staged_dir(final) as tmp:
        tasks = [dict(id=u["id"], split=u["split"], text=u["text"], spk=u["spk"], pitch=u["pitch"],
                      tempo=u["tempo"], snr=u["snr"], lead=u["lead"], tail=u["tail"], noise_seed=u["noise_seed"],
                      format=settings["format"],
                      path=str(audio_path(tmp / u["split"], u["id"], settings["format"])))
                 for u in plan["utts"] if u["split"] in settings.get("splits", SPLITS)]
        for split in settings.get("splits", SPLITS):
            (tmp / split / "audio").mkdir(parents=True)
        progress = Progress(f"{final.name}", len(tasks))
        samples = {}
        chunk = max(1, min(8, len(tasks) // (4 * jobs)))
        try:
            for _, utt, n in pool.imap_unordered(synthesize, tasks, chunksize=chunk):
                samples[utt] = n
                progress.update()
        except BaseException as e:
            pool.terminate()  # before the staged folder is removed, so no worker writes into it again
            pool.join()
            if isinstance(e, RuntimeError):
                raise DataError(f"{final.name}: synthesis failed: {e}") from None
            raise
        write_metadata(tmp, settings, plan, samples)
        (tmp / ".complete").write_text(json.dumps(settings, sort_keys=True) + "\n", encoding="utf-8")
    return len(tasks), sum(samples.values()) / FS


def main(argv=None) -> None:
    args = parse_args(argv)
    langs = check_languages(args.langs)
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        raise DataError(f"{' and '.join(missing)} not found; install with: {APT_HINT}")
    if args.jobs < 1:
        raise DataError("--jobs: must be at least 1")
    t0 = time.time()
    todo = []
    for lang in langs:
        settings = settings_for(args, lang)
        final = args.out / folder_name(lang, args.format)
        marker = final / ".complete"
        if marker.exists():
            try:
                done = json.loads(marker.read_text(encoding="utf-8"))
            except ValueError:
                done = None
            if done != settings:
                raise DataError(f"{final}: already holds a mini-MLS made with other settings ({marker}); "
                                f"remove it or choose another --out")
            print(f"{final.name}: complete, skipping", file=sys.stderr)
        elif final.exists():
            raise DataError(f"{final}: exists but is not a finished mini-MLS (no .complete); "
                            f"remove it or choose another --out")
        else:
            todo.append((lang, settings, final))
    totals = {}
    if todo:
        with Pool(args.jobs, initializer=_worker_init) as pool:
            for lang, settings, final in todo:
                t = time.time()
                n, secs = generate_language(settings, final, pool, args.jobs)
                totals[lang] = (n, secs)
                u = settings["utts"]
                print(f"{final.name}: {n} utterances (train {u['train']}, dev {u['dev']}, test {u['test']}), "
                      f"{sum(settings['speakers'].values())} speakers, {secs / 3600:.2f} h, "
                      f"{time.time() - t:.1f} s",
                      file=sys.stderr)
    wall = time.time() - t0
    n = sum(v[0] for v in totals.values())
    secs = sum(v[1] for v in totals.values())
    if not totals:
        print(f"mini-MLS {args.size} → {args.out}: {' '.join(langs)} already complete")
        return
    per_lang = ", ".join(f"{lang} {v[1] / 3600:.2f} h" for lang, v in totals.items())
    print(f"mini-MLS {args.size} → {args.out}: {n} utterances, {secs / 3600:.2f} h of audio ({per_lang}) "
          f"in {wall:.1f} s ({n / wall:.1f} utt/s, {secs / wall:.0f} audio-s/s, {args.jobs} jobs)")


if __name__ == "__main__":
    run_main(main)
