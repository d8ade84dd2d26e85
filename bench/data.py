#!/usr/bin/env python3
"""Benchmark the data side: mini-MLS synthesis throughput, and the training loader against a step.

    python bench/data.py              # ~1.5 min on 2 cores
    python bench/data.py --tiny       # seconds-long smoke run

Part 1 -- synthesis: ``local/make_mini_mls.py`` (espeak-ng → sox → noise → FLAC) into a
fresh temporary folder, ``--langs`` × ``--utts`` training utterances from
``--speakers`` speakers, with ``--jobs 1`` and ``--jobs 2`` alternating over ``--rounds``
rounds.  Audio seconds from the written files (``soundfile.info``); CPU seconds of the
generator and everything it ran (``RUSAGE_CHILDREN``).  Reported: audio-seconds per wall
second, per wall second per job ("per core"), and per CPU second.

Part 2 -- the training loader: ESPnet's ``ESPnetDataset`` (``sound`` + ``text`` loaders) with
``CommonPreprocessor`` (tokenisation, as ``ASRTransducerTask.build_preprocess_fn``) and
``CommonCollateFn(0.0, -1)`` (as ``ASRTransducerTask.build_collate_fn``) in a
``torch.utils.data.DataLoader``, length-sorted batches of at most ``batch_bins`` audio
samples (ESPnet's ``numel`` sampler, batch_bins from ``conf/train_demo.yaml``), with
``num_workers`` 0 and 1 (the demo config uses 1) alternating.  Data: ``--data``
(default ``dump/raw/train`` of the demo corpus with the BPE model of
``data/token_list/bpe300`` when they exist), else Kaldi dirs made by
``local/data_prep.py`` from the corpus synthesised in part 1 (character tokens).  The
loader's utterances/s are compared with what a training step consumes: utterances per
batch / step time (``--step-time``, default 2.0 s per batch: DESIGN.md §8, the demo model
on this CPU).  ratio > 1: the loader keeps ahead of training.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchutil import ROOT, command_line, espnet_as_the_plugin_runs_it, loadavg, machine_line, rotate, spread  # noqa: E402


def audio_seconds(folder: Path) -> tuple[float, int]:
    import soundfile as sf

    total, n = 0.0, 0
    for f in folder.rglob("*"):
        if f.suffix in (".flac", ".opus"):
            info = sf.info(str(f))
            total += info.frames / info.samplerate
            n += 1
    return total, n


def synthesise(out: Path, langs, speakers: int, utts: int, jobs: int, seed: int = 0) -> dict:
    cmd = [sys.executable, str(ROOT / "local" / "make_mini_mls.py"), "--out", str(out), "--langs", *langs,
           "--splits", "train", "--train_speakers", str(speakers), "--train_utts", str(utts),
           "--jobs", str(jobs), "--seed", str(seed)]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"make_mini_mls.py failed:\n{proc.stderr[-2000:]}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    audio, files = audio_seconds(out)
    return {"wall": wall, "cpu": cpu, "audio": audio, "files": files, "jobs": jobs}


def kaldi_dirs(corpus: Path, langs, data: Path) -> Path:
    proc = subprocess.run([sys.executable, str(ROOT / "local" / "data_prep.py"), "--mls_root", str(corpus),
                           "--langs", *langs, "--data", str(data), "--splits", "train"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"data_prep.py failed:\n{proc.stderr[-2000:]}")
    return data / "train"


def read_batch_bins() -> int:
    import yaml

    return int(yaml.safe_load((ROOT / "conf" / "train_demo.yaml").read_text())["batch_bins"])


def make_batches(wav_scp: Path, batch_bins: int) -> tuple[list[tuple[str, ...]], dict[str, int]]:
    import soundfile as sf

    lengths = {}
    for line in wav_scp.read_text().splitlines():
        key, path = line.split(maxsplit=1)
        lengths[key] = sf.info(path).frames
    keys = sorted(lengths, key=lambda k: lengths[k])
    batches, cur, total = [], [], 0
    for k in keys:  # like ESPnet's numel sampler: fill up to batch_bins, sorted by length
        if cur and total + lengths[k] > batch_bins:
            batches.append(tuple(cur))
            cur, total = [], 0
        cur.append(k)
        total += lengths[k]
    if cur:
        batches.append(tuple(cur))
    return batches, lengths


def build_loader_parts(data_dir: Path, token_list: Path | None, bpemodel: Path | None, work: Path):
    espnet_as_the_plugin_runs_it()
    from espnet2.train.collate_fn import CommonCollateFn
    from espnet2.train.dataset import ESPnetDataset
    from espnet2.train.preprocessor import CommonPreprocessor

    if token_list is not None and bpemodel is None:
        token_type = "char"
    elif token_list is None:  # character tokens from the text
        chars = set()
        for line in (data_dir / "text").read_text(encoding="utf-8").splitlines():
            parts = line.split(maxsplit=1)
            if len(parts) == 2:
                chars |= set(parts[1])
        chars.discard(" ")
        token_list = work / "tokens.txt"
        token_list.write_text("\n".join(["<blank>", "<unk>", "<space>", *sorted(chars), "<sos/eos>"]) + "\n",
                              encoding="utf-8")
        token_type = "char"
    else:
        token_type = "bpe"
    pre = CommonPreprocessor(train=True, token_type=token_type, token_list=str(token_list),
                             bpemodel=str(bpemodel) if bpemodel else None)
    ds = ESPnetDataset([(str(data_dir / "wav.scp"), "speech", "sound"), (str(data_dir / "text"), "text", "text")],
                       preprocess=pre)
    return ds, CommonCollateFn(float_pad_value=0.0, int_pad_value=-1), token_type


def time_loader(ds, collate, batches, workers: int, passes: int) -> dict:
    import torch

    loader = torch.utils.data.DataLoader(ds, batch_sampler=batches, collate_fn=collate, num_workers=workers)
    n_utt = n_samples = 0
    t = time.perf_counter()
    for _ in range(passes):
        for keys, batch in loader:
            n_utt += len(keys)
            n_samples += int(batch["speech_lengths"].sum())
    wall = time.perf_counter() - t
    return {"wall": wall, "utts": n_utt, "audio": n_samples / 16000}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--langs", nargs="+", default=["en", "fr"])
    p.add_argument("--speakers", type=int, default=2, help="training speakers per language")
    p.add_argument("--utts", type=int, default=30, help="training utterances per language")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--data", type=Path, default=ROOT / "dump" / "raw" / "train",
                   help="Kaldi dir for the loader (wav.scp + text); if missing, the synthesised corpus")
    p.add_argument("--token_dir", type=Path, default=ROOT / "data" / "token_list" / "bpe300")
    p.add_argument("--passes", type=int, default=1, help="loader passes over the data per timing")
    p.add_argument("--max-batches", type=int, default=40, help="batches per loader pass (0: all)")
    p.add_argument("--step-time", type=float, default=None,
                   help="seconds per training step (default 2.0: DESIGN.md §8, demo model on this CPU)")
    p.add_argument("--tiny", action="store_true", help="smoke run: one language, 7 utterances, 1 round")
    a = p.parse_args(argv)
    if a.tiny:
        a.langs, a.speakers, a.utts, a.rounds, a.data = ["en"], 1, 7, 1, Path("/nonexistent")
    src = "--step-time"
    if a.step_time is None:
        a.step_time, src = 2.0, "DESIGN.md §8: demo model, 2-core CPU, ~75 s of audio per batch"

    print("# Data: mini-MLS synthesis throughput, and ESPnet's training loader vs a training step")
    print(machine_line())
    print(command_line())
    print(f"\n## Synthesis: {len(a.langs)} language(s) ({' '.join(a.langs)}) × {a.utts} utterances, "
          f"{a.speakers} speaker(s) each; {a.rounds} round(s), jobs 1 and 2 alternating "
          f"(load average {loadavg()})\n")
    jobs_list = [1] if a.tiny else [1, 2]
    runs = {j: [] for j in jobs_list}
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        tmp = Path(tmp)
        last = None
        for r in range(a.rounds):
            for j in rotate(jobs_list, r):
                out = tmp / f"corpus_r{r}_j{j}"
                runs[j].append(synthesise(out, a.langs, a.speakers, a.utts, j))
                last = out
        print("| jobs | audio s (files) | wall s | CPU s | audio-s / wall-s | audio-s / wall-s / job | "
              "audio-s / CPU-s |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for j, rs in runs.items():
            au = rs[0]["audio"]
            print(f"| {j} | {au:.1f} ({rs[0]['files']}) | {spread([x['wall'] for x in rs], '{:.1f}')} | "
                  f"{spread([x['cpu'] for x in rs], '{:.1f}')} | {spread([x['audio'] / x['wall'] for x in rs], '{:.1f}')} | "
                  f"{spread([x['audio'] / x['wall'] / j for x in rs], '{:.1f}')} | "
                  f"{spread([x['audio'] / x['cpu'] for x in rs], '{:.1f}')} |")
        print(f"# load average after synthesis: {loadavg()}")

        # -- the loader
        if (a.data / "wav.scp").is_file() and (a.data / "text").is_file():
            data_dir = a.data
            tl, bpe = a.token_dir / "tokens.txt", a.token_dir / "bpe.model"
            char_tl = ROOT / "data" / "token_list" / "char" / "tokens.txt"
            if tl.is_file() and bpe.is_file():
                token_list, bpemodel = tl, bpe
            elif char_tl.is_file():  # the demo run with --token_type char
                token_list, bpemodel = char_tl, None
            else:
                token_list = bpemodel = None
            what = f"{data_dir.relative_to(ROOT) if data_dir.is_relative_to(ROOT) else data_dir}"
        else:
            data_dir = kaldi_dirs(last, a.langs, tmp / "data")
            token_list = bpemodel = None
            what = "the corpus synthesised above (no dump/raw/train of the demo corpus found)"
        ds, collate, token_type = build_loader_parts(data_dir, token_list, bpemodel, tmp)
        batch_bins = read_batch_bins()
        batches, lengths = make_batches(data_dir / "wav.scp", batch_bins)
        if a.max_batches and len(batches) > a.max_batches:  # spread over lengths: every k-th batch
            k = len(batches) / a.max_batches
            batches = [batches[int(i * k)] for i in range(a.max_batches)]
        n_utts = sum(len(b) for b in batches)
        per_batch = n_utts / len(batches)
        audio_per_batch = sum(lengths[k] for b in batches for k in b) / 16000 / len(batches)
        print(f"\n## Training loader over {what}: {len(batches)} batches of ≤ {batch_bins:,} samples "
              f"({per_batch:.1f} utterances, {audio_per_batch:.1f} s of audio per batch on average), "
              f"{token_type} tokens; {a.passes} pass(es) per timing, {a.rounds} round(s) "
              f"(load average {loadavg()})\n")
        need_utts = per_batch / a.step_time
        print(f"# a training step consumes {per_batch:.1f} utterances per {a.step_time:g} s "
              f"= {need_utts:.1f} utt/s ({src})\n")
        print("| num_workers | utterances/s | audio-s / s | loader / step consumption |")
        print("|---:|---:|---:|---:|")
        time_loader(ds, collate, batches[:2], 0, 1)  # warm-up (file cache, tokenizer)
        res = {w: [] for w in (0, 1)}
        for r in range(a.rounds):
            for w in rotate([0, 1], r):
                res[w].append(time_loader(ds, collate, batches, w, a.passes))
        for w, rs in res.items():
            ups = [x["utts"] / x["wall"] for x in rs]
            aps = [x["audio"] / x["wall"] for x in rs]
            print(f"| {w} | {spread(ups, '{:.1f}')} | {spread(aps, '{:.1f}')} | "
                  f"{spread([u / need_utts for u in ups], '{:.1f}')}× |")
        print(f"# load average after the loader: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
