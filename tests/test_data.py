"""The data side: mini-MLS synthesis, MLS → Kaldi dirs (stage 1), format and filter (stages 3-4)."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, TINY_MLS_ARGS, TINY_MLS_LANGS

LOCAL = ROOT / "local"
sys.path.insert(0, str(LOCAL))
import make_mini_mls  # noqa: E402

PER_UTT = ("wav.scp", "text", "utt2spk", "utt2lang", "utt2category")


def run(script, *args, env=None, timeout=120):
    return subprocess.run([sys.executable, str(LOCAL / script), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)


def one_line_error(out, *needles):
    assert out.returncode != 0, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def table(path):
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    keys = [line.split(" ", 1)[0] for line in lines]
    assert [k.encode() for k in keys] == sorted(k.encode() for k in keys), f"{path}: not in C sort order"
    assert len(set(keys)) == len(keys), f"{path}: duplicate keys"
    return dict(line.split(" ", 1) for line in lines)


def check_kaldi_dir(d, langs):
    """Every per-utterance file has the same sorted keys; ids, speakers and languages agree."""
    d = Path(d)
    t = {name: table(d / name) for name in PER_UTT}
    keys = set(t["wav.scp"])
    assert keys and all(set(x) == keys for x in t.values())
    for utt, spk in t["utt2spk"].items():
        lang = t["utt2lang"][utt]
        assert lang in langs and t["utt2category"][utt] == lang
        assert re.fullmatch(rf"{lang}_\d{{6}}", spk)
        assert re.fullmatch(rf"{spk}_\d+_\d+", utt)
        assert Path(t["wav.scp"][utt]).is_absolute() and Path(t["wav.scp"][utt]).is_file()
        assert t["text"][utt] and t["text"][utt] == t["text"][utt].strip()
    # Kaldi's rule: sorting utt2spk by speaker must not change it.
    items = list(t["utt2spk"].items())
    assert sorted(items, key=lambda kv: (kv[1].encode(), kv[0].encode())) == items
    spk2utt = table(d / "spk2utt")
    assert {u for v in spk2utt.values() for u in v.split()} == keys
    assert all(t["utt2spk"][u] == s for s, v in spk2utt.items() for u in v.split())
    category2utt = table(d / "category2utt")
    assert all(t["utt2category"][u] == c for c, v in category2utt.items() for u in v.split())
    return t


def no_leftovers(folder):
    """Nothing half-written: no staging folders (.<name>.tmp<pid>) anywhere below `folder`."""
    folder = Path(folder)
    return not folder.exists() or not [p for p in folder.rglob(".*") if ".tmp" in p.name or ".old" in p.name]


# ---------------------------------------------------------------- mini-MLS
def test_tiny_mls_has_the_mls_layout(tiny_mls):
    for lang, name in (("en", "mls_english"), ("fr", "mls_french")):
        root = tiny_mls / name
        assert (root / ".complete").is_file()
        header, *rows = (root / "metainfo.txt").read_text(encoding="utf-8").splitlines()
        assert [c.strip() for c in header.split("|")] == ["SPEAKER", "GENDER", "PARTITION", "MINUTES",
                                                          "BOOK ID", "TITLE", "CHAPTER"]
        meta = [[c.strip() for c in r.split("|")] for r in rows]
        assert all(m[1] in ("M", "F") and m[2] in ("train", "dev", "test") for m in meta)
        partition = {}
        for m in meta:
            assert partition.setdefault(m[0], m[2]) == m[2]  # a speaker is in one partition only
        speakers = {}
        for split in ("train", "dev", "test"):
            lines = (root / split / "transcripts.txt").read_text(encoding="utf-8").splitlines()
            ids = [line.split("\t")[0] for line in lines]
            assert len(ids) == {"train": 10, "dev": 4, "test": 4}[split]
            for line in lines:
                uid, text = line.split("\t")
                assert re.fullmatch(r"\d+_\d+_\d{6}", uid)
                assert re.fullmatch(r"[a-zàâæçéèêëîïôœùûüÿ' ]+", text) and text == " ".join(text.split())
                assert 4 <= len(text.split())
                spk, book, _ = uid.split("_")
                wav, fs = sf.read(root / split / "audio" / spk / book / f"{uid}.flac")
                assert fs == 16000 and wav.ndim == 1 and 0.5 < len(wav) / fs < 20
                assert partition[spk] == split
            segs = [line.split("\t") for line in (root / split / "segments.txt").read_text().splitlines()]
            assert [s[0] for s in segs] == ids and all(float(s[2]) < float(s[3]) for s in segs)
            speakers[split] = {i.split("_")[0] for i in ids}
        assert len(speakers["train"]) == 3 and len(speakers["dev"]) == len(speakers["test"]) == 1
        assert not (speakers["train"] & speakers["dev"] or speakers["train"] & speakers["test"]
                    or speakers["dev"] & speakers["test"])
        ls = root / "train" / "limited_supervision"
        folds = [set((ls / "1hr" / str(k) / "handles.txt").read_text().split()) for k in range(6)]
        nine = set((ls / "9hr" / "handles.txt").read_text().split())
        train_ids = {line.split("\t")[0] for line in (root / "train" / "transcripts.txt").read_text().splitlines()}
        assert all(folds) and nine and set.union(nine, *folds) <= train_ids
        assert sum(map(len, folds)) + len(nine) == len(set.union(nine, *folds))  # disjoint


def test_same_seed_same_corpus_other_seed_other_text(tiny_mls, tmp_path):
    # A stale staging folder of a killed run is cleaned up.
    stale = tmp_path / ".mls_english.tmp999999999"
    (stale / "train").mkdir(parents=True)
    out = run("make_mini_mls.py", "--out", tmp_path, *TINY_MLS_ARGS, "--langs", "en")
    assert out.returncode == 0, out.stderr
    assert not stale.exists()
    a, b = tiny_mls / "mls_english", tmp_path / "mls_english"
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:  # transcripts, metadata and FLAC audio alike
        assert (a / f).read_bytes() == (b / f).read_bytes(), f

    class Args:  # what settings_for reads of make_mini_mls's command line
        size, format, seed = "tiny", "flac", 0
    texts = {}
    for seed in (0, 1):
        Args.seed = seed
        plan = make_mini_mls.make_plan(make_mini_mls.settings_for(Args, "en"))
        texts[seed] = {u["id"]: u["text"] for u in plan["utts"]}
    assert texts[0] == dict(line.split("\t") for s in ("train", "dev", "test")
                            for line in (a / s / "transcripts.txt").read_text().splitlines())
    assert texts[0] != texts[1]


def test_rerun_skips_a_complete_corpus_and_refuses_other_settings(tiny_mls):
    before = {p: p.stat().st_mtime_ns for p in tiny_mls.rglob("*")}
    out = run("make_mini_mls.py", "--out", tiny_mls, *TINY_MLS_ARGS, "--langs", *TINY_MLS_LANGS)
    assert out.returncode == 0 and "complete, skipping" in out.stderr
    assert {p: p.stat().st_mtime_ns for p in tiny_mls.rglob("*")} == before
    out = run("make_mini_mls.py", "--out", tiny_mls, *TINY_MLS_ARGS, "--langs", *TINY_MLS_LANGS,
              "--seed", "5")
    one_line_error(out, str(tiny_mls / "mls_english"), "other settings")


def test_generator_refuses_a_folder_it_did_not_finish(tmp_path):
    (tmp_path / "mls_english").mkdir()
    one_line_error(run("make_mini_mls.py", "--out", tmp_path, "--size", "tiny", "--langs", "en"),
                   "mls_english", ".complete")


def test_generator_interrupted_leaves_nothing(tmp_path):
    proc = subprocess.Popen([sys.executable, str(LOCAL / "make_mini_mls.py"), "--out", str(tmp_path),
                             "--size", "tiny", "--langs", "en", "--train_utts", "400", "--jobs", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            # a test run started in the background inherits an ignored SIGINT
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # 400 utterances: the run lasts long enough to be caught mid-way on a busy machine; it
    # is interrupted as soon as its first audio file exists.
    deadline = time.time() + 60
    while not list(tmp_path.glob(".mls_english.tmp*/train/audio/*")) and time.time() < deadline:
        assert proc.poll() is None, "the generator finished before it could be interrupted"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and b"interrupted" in err  # stopped mid-run, not after finishing
    assert not (tmp_path / "mls_english").exists()
    assert list(tmp_path.iterdir()) == []


def test_generator_bad_input(tmp_path):
    line = one_line_error(run("make_mini_mls.py", "--out", tmp_path, "--langs", "en", "xx"), "--langs", "xx")
    assert all(code in line for code in ("en", "de", "nl", "fr", "es", "it", "pt", "pl"))
    empty = tmp_path / "bin"
    empty.mkdir()
    out = run("make_mini_mls.py", "--out", tmp_path / "c", "--size", "tiny",
              env={**os.environ, "PATH": str(empty)})
    one_line_error(out, "espeak-ng", "sox", "apt-get install espeak-ng sox libsox-fmt-all flac")
    assert not (tmp_path / "c").exists()


# ---------------------------------------------------------------- the tiny pipeline
def test_tiny_mls_through_stages_1_3_4(tiny_mls, tmp_path):
    data, dump = tmp_path / "data", tmp_path / "dump"
    out = run("data_prep.py", "--mls_root", tiny_mls, "--langs", "en", "fr", "--data", data,
              "--train_subset", "fr=10h")
    assert out.returncode == 0, out.stderr
    assert "en_train: 10 utterances, 3 speakers" in out.stdout and "fr_train:" in out.stdout
    dirs = {}
    for lang in ("en", "fr"):
        for split in ("train", "dev", "test"):
            dirs[lang, split] = check_kaldi_dir(data / f"{lang}_{split}", {lang})
        spk = {s: set(dirs[lang, s]["utt2spk"].values()) for s in ("train", "dev", "test")}
        assert not (spk["train"] & spk["dev"] or spk["train"] & spk["test"] or spk["dev"] & spk["test"])
    for split in ("train", "dev"):
        merged = check_kaldi_dir(data / split, {"en", "fr"})
        assert set(merged["text"]) == set(dirs["en", split]["text"]) | set(dirs["fr", split]["text"])
    ls = tiny_mls / "mls_french" / "train" / "limited_supervision"
    handles = set((ls / "9hr" / "handles.txt").read_text().split())
    for k in range(6):
        handles |= set((ls / "1hr" / str(k) / "handles.txt").read_text().split())
    assert {u[3:] for u in dirs["fr", "train"]["text"]} == {f"{int(h.split('_')[0]):06d}_{h.split('_', 1)[1]}"
                                                             for h in handles}

    sets = ["train", "dev", "en_test", "fr_test"]
    out = run("format_data.py", "format", "--data", data, "--out", dump / "raw" / "org", "--nj", "2", *sets)
    assert out.returncode == 0, out.stderr
    for s in sets:
        t = check_kaldi_dir(dump / "raw" / "org" / s, {"en", "fr"})
        n = table(dump / "raw" / "org" / s / "utt2num_samples")
        assert set(n) == set(t["text"]) and all(int(v) > 8000 for v in n.values())
        assert (dump / "raw" / "org" / s / "feats_type").read_text().strip() == "raw"
    n = {u: int(v) for u, v in table(dump / "raw" / "org" / "train" / "utt2num_samples").items()}
    cut = sorted(n.values())[2] / 16000  # two utterances shorter than this, some longer than max
    top = sorted(n.values())[-2] / 16000
    out = run("format_data.py", "filter", "--src", dump / "raw" / "org", "--out", dump / "raw",
              "--min_sec", cut, "--max_sec", top, "train")
    assert out.returncode == 0, out.stderr
    assert "removed 2 shorter than" in out.stdout and "1 longer than" in out.stdout
    kept = check_kaldi_dir(dump / "raw" / "train", {"en", "fr"})
    assert len(kept["text"]) == len(n) - 3
    assert no_leftovers(tmp_path)


def test_train_subsets_1h_within_10h_within_full(tiny_mls, tmp_path):
    sizes = {}
    for subset in ("full", "10h", "1h"):
        out = run("data_prep.py", "--mls_root", tiny_mls, "--langs", "en", "fr", "--data", tmp_path / subset,
                  "--train_subset", subset)
        assert out.returncode == 0, out.stderr
        sizes[subset] = set(table(tmp_path / subset / "en_train" / "text"))
        assert table(tmp_path / subset / "en_dev" / "text") == table(tmp_path / "full" / "en_dev" / "text")
    assert sizes["1h"] < sizes["10h"] < sizes["full"]


# ---------------------------------------------------------------- a hand-made MLS tree
TRAIN = {"10": ["5"], "100": ["1"], "2000": ["77", "78"]}  # speaker → books; 10 vs 100 tests sort order


def make_fake_mls(root, lang="english", fmt="flac"):
    """A real-layout MLS folder with short sine/noise clips: 8 train, 2 dev, 2 test utterances."""
    base = root / (f"mls_{lang}" + ("_opus" if fmt == "opus" else ""))
    rng = np.random.default_rng(0)
    ids = {"train": [f"{s}_{b}_{u:06d}" for s, books in TRAIN.items() for b in books for u in range(2)],
           "dev": ["31_9_000000", "31_9_000001"], "test": ["42_3_000000", "42_3_000001"]}
    meta = [" SPEAKER | GENDER | PARTITION | MINUTES | BOOK ID | TITLE | CHAPTER "]
    for split, uids in ids.items():
        d = base / split
        d.mkdir(parents=True)
        with open(d / "transcripts.txt", "w") as tr, open(d / "segments.txt", "w") as sg:
            for i, uid in enumerate(uids):
                spk, book, _ = uid.split("_")
                t = np.arange(int(16000 * (0.6 + 0.1 * i))) / 16000
                wav = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.01 * rng.standard_normal(len(t))
                path = d / "audio" / spk / book / f"{uid}.{fmt}"
                path.parent.mkdir(parents=True, exist_ok=True)
                if fmt == "opus":
                    sf.write(path, wav, 16000, format="OGG", subtype="OPUS")
                else:
                    sf.write(path, wav, 16000, subtype="PCM_16")
                tr.write(f"{uid}\tword number {i} of {split}\n")
                sg.write(f"{uid}\thttp://example.org/{book}.mp3\t{i}.0\t{i}.9\n")
                meta.append(f" {spk} | F | {split} | 1.0 | {book} | A Title | Chapter 1 ")
    (base / "metainfo.txt").write_text("\n".join(meta) + "\n")
    ls = base / "train" / "limited_supervision"
    for k in range(6):
        (ls / "1hr" / str(k)).mkdir(parents=True)
        (ls / "1hr" / str(k) / "handles.txt").write_text(ids["train"][k] + "\n")
    (ls / "9hr").mkdir()
    (ls / "9hr" / "handles.txt").write_text(ids["train"][6] + "\n")
    return base, ids


@pytest.mark.parametrize("fmt", ["flac", "opus"])
def test_fake_mls_tree_is_read(tmp_path, fmt):
    base, ids = make_fake_mls(tmp_path / "mls", fmt=fmt)
    data = tmp_path / "data"
    out = run("data_prep.py", "--mls_root", tmp_path / "mls", "--langs", "en", "--data", data)
    assert out.returncode == 0, out.stderr
    assert f"en:{fmt}" in out.stdout
    t = check_kaldi_dir(data / "en_train", {"en"})
    assert len(t["text"]) == 8 and all(p.endswith(f".{fmt}") for p in t["wav.scp"].values())
    assert t["text"]["en_000010_5_000000"] == "word number 0 of train"
    assert set(t["utt2spk"].values()) == {"en_000010", "en_000100", "en_002000"}
    for subset, n in (("10h", 7), ("1h", 6)):
        out = run("data_prep.py", "--mls_root", tmp_path / "mls", "--langs", "en", "--data", data,
                  "--train_subset", f"en={subset}")
        assert out.returncode == 0, out.stderr
        assert len(table(data / "en_train" / "text")) == n
    out = run("format_data.py", "format", "--data", data, "--out", tmp_path / "org", "--nj", "1",
              "en_train", "en_dev", "en_test")
    assert out.returncode == 0, out.stderr
    samples = table(tmp_path / "org" / "en_dev" / "utt2num_samples")
    assert samples == {"en_000031_9_000000": str(int(16000 * 0.6)), "en_000031_9_000001": str(int(16000 * 0.7))}


def test_corrupted_and_truncated_audio_are_skipped_and_counted(tmp_path):
    base, ids = make_fake_mls(tmp_path / "mls")
    data = tmp_path / "data"
    assert run("data_prep.py", "--mls_root", tmp_path / "mls", "--langs", "en", "--data", data).returncode == 0
    wav = table(data / "en_train" / "wav.scp")
    paths = sorted(wav.values())
    Path(paths[0]).write_bytes(b"not audio at all" * 100)
    good = Path(paths[1]).read_bytes()
    Path(paths[1]).write_bytes(good[:len(good) // 2])  # truncated
    Path(paths[2]).write_bytes(good[:2000] + bytes(1000) + good[3000:])  # garbage in the middle
    out = run("format_data.py", "format", "--data", data, "--out", tmp_path / "org", "en_train", "en_dev")
    assert out.returncode == 0, out.stderr
    skipped = int(re.search(r"en_train: \d+ utterances, [\d.]+ h; skipped (\d+) with bad audio", out.stdout)[1])
    listed = (tmp_path / "org" / "en_train" / "skipped_audio").read_text().splitlines()
    assert len(listed) == skipped and {line.split()[1] for line in listed} >= set(paths[:2])
    assert skipped >= 2  # the garbage and the truncated file; a damaged middle may still decode
    assert f"{skipped} skipped for bad audio" in out.stdout
    assert len(table(tmp_path / "org" / "en_train" / "text")) == 8 - skipped
    assert len(table(tmp_path / "org" / "en_dev" / "text")) == 2


# ---------------------------------------------------------------- bad input: one line, nothing written
def _no_tab(base, ids):
    p = base / "dev" / "transcripts.txt"
    p.write_text(p.read_text().replace("\t", " ", 1))
    return str(p) + ":1", "no tab"


def _empty_text(base, ids):
    p = base / "test" / "transcripts.txt"
    lines = p.read_text().splitlines()
    lines[1] = lines[1].split("\t")[0] + "\t  "
    p.write_text("\n".join(lines) + "\n")
    return str(p) + ":2", "empty text"


def _missing_audio(base, ids):
    uid = ids["train"][3]
    spk, book, _ = uid.split("_")
    (base / "train" / "audio" / spk / book / f"{uid}.flac").unlink()
    return uid, "missing"


def _missing_handles(base, ids):
    (base / "train" / "limited_supervision" / "1hr" / "4" / "handles.txt").unlink()
    return "1hr/4/handles.txt", "--train_subset"


@pytest.mark.parametrize("breakage, args", [
    (_no_tab, []), (_empty_text, []), (_missing_audio, []), (_missing_handles, ["--train_subset", "en=1h"]),
])
def test_data_prep_rejects_broken_corpus(tmp_path, breakage, args):
    base, ids = make_fake_mls(tmp_path / "mls")
    needles = breakage(base, ids)
    out = run("data_prep.py", "--mls_root", tmp_path / "mls", "--langs", "en", "--data", tmp_path / "data", *args)
    one_line_error(out, *needles)
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_skip_missing_audio_drops_counts_and_lists_them(tmp_path):
    base, ids = make_fake_mls(tmp_path / "mls")
    uid, _ = _missing_audio(base, ids)
    data = tmp_path / "data"
    out = run("data_prep.py", "--mls_root", tmp_path / "mls", "--langs", "en", "--data", data,
              "--skip_missing_audio", "true")
    assert out.returncode == 0, out.stderr
    assert "en_train: 7 utterances" in out.stdout and "1 dropped: audio missing" in out.stdout
    listed = (data / "en_train" / "missing_audio").read_text().split()
    assert listed[0] == uid and listed[1].endswith(f"{uid}.flac")
    assert len(table(data / "en_train" / "text")) == 7 and not (data / "en_dev" / "missing_audio").exists()
    assert len(table(data / "train" / "text")) == 7


@pytest.mark.parametrize("case", ["no_root", "empty_root", "absent_lang", "unknown_lang", "bad_subset",
                                  "subset_lang"])
def test_data_prep_rejects_bad_options(tmp_path, case):
    make_fake_mls(tmp_path / "mls")
    (tmp_path / "empty").mkdir()
    root, langs, extra, needles = tmp_path / "mls", ["en"], [], []
    if case == "no_root":
        root, needles = tmp_path / "nowhere", ["--mls_root", "nowhere"]
    elif case == "empty_root":
        root, needles = tmp_path / "empty", ["--mls_root", "no mls_<language>"]
    elif case == "absent_lang":
        langs, needles = ["en", "it"], ["--langs", "it", "mls_italian", "found: en"]
    elif case == "unknown_lang":
        langs, needles = ["en", "zz"], ["--langs", "zz", "en(english)", "pl(polish)"]
    elif case == "bad_subset":
        extra, needles = ["--train_subset", "en=5h"], ["--train_subset", "full 10h 1h"]
    elif case == "subset_lang":
        extra, needles = ["--train_subset", "fr=1h"], ["--train_subset", "fr"]
    out = run("data_prep.py", "--mls_root", root, "--langs", *langs, "--data", tmp_path / "data", *extra)
    one_line_error(out, *needles)
    assert not (tmp_path / "data").exists()


def test_format_and_filter_reject_bad_input(tmp_path):
    out = run("format_data.py", "format", "--data", tmp_path / "data", "--out", tmp_path / "org", "train")
    one_line_error(out, str(tmp_path / "data" / "train"), "not found")
    base, _ = make_fake_mls(tmp_path / "mls")
    assert run("data_prep.py", "--mls_root", tmp_path / "mls", "--langs", "en", "--data",
               tmp_path / "data").returncode == 0
    text = tmp_path / "data" / "en_dev" / "text"
    text.write_text(text.read_text().splitlines()[0] + "\n")  # one key fewer than wav.scp
    out = run("format_data.py", "format", "--data", tmp_path / "data", "--out", tmp_path / "org",
              "en_train", "en_dev")
    one_line_error(out, str(text), "lacks")
    wav = tmp_path / "data" / "en_test" / "wav.scp"
    for w in table(wav).values():
        Path(w).write_bytes(b"junk")
    out = run("format_data.py", "format", "--data", tmp_path / "data", "--out", tmp_path / "org", "en_test")
    one_line_error(out, str(wav), "no readable audio")
    assert not (tmp_path / "org").exists() or not any((tmp_path / "org").iterdir())
    out = run("format_data.py", "filter", "--src", tmp_path / "data", "--out", tmp_path / "raw", "en_train")
    one_line_error(out, "utt2num_samples", "format")
    out = run("format_data.py", "filter", "--src", tmp_path / "data", "--out", tmp_path / "raw",
              "--min_sec", "3", "--max_sec", "1", "en_train")
    one_line_error(out, "--min_sec")
    assert not (tmp_path / "raw").exists()
    assert no_leftovers(tmp_path)
