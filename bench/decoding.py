#!/usr/bin/env python3
"""Benchmark streaming decoding on one CPU thread: dense model vs a 70 % pathway, per language.

    python bench/decoding.py                # demo model, 10 utterances per language (~0.5 min)
    python bench/decoding.py --tiny         # seconds-long smoke run (tiny random model)

Decodes with ESPnet's own ``Speech2Text`` from ``espnet2.bin.asr_transducer_inference``,
streaming, exactly as its ``inference()`` loop feeds it: windows of ``decoding_window`` ms
(``conf/decode.yaml``: 640 ms, left context 32, beam 4), ``streaming_decode`` per window,
the last one with ``is_final=True``.  One utterance at a time, ``torch.set_num_threads(1)``.

Systems: ``dense`` (the model as trained) and ``pathway`` (the same model with language
l's 70 % mask applied, ``MaskSet.apply_``: what ``export_pathway`` writes, dense tensors
with zeros).  Only speed is measured, so the masks are made up, not trained: per language
the top 30 % of |θ|·exp(0.5·ε_l), ε_l ~ N(0, 1) (magnitude-like, exactly 70 % per tensor,
no fine-tuning).  Uniformly random masks would wreck the model's output distribution, and
ESPnet's beam search then expands far more hypotheses per frame (measured: 4-8× slower
windows with zero tokens emitted), which says nothing about sparsity; so the encoder's own
time per window (``encoder.chunk_forward``, the part that sparsity could speed up) is
reported apart from the whole window (features + encoder + beam search).  Per language the
two systems alternate utterance by utterance (A B, B A, ...), after a warm-up decode each.

Model: ``exp/asr_train_demo/{config.yaml,valid.loss.ave.pth}`` when the demo run exists,
else the ``conf/train_demo.yaml`` architecture with random weights (``--tiny``:
``conf/train_tiny.yaml``), saved with a config as ESPnet writes one.  Audio:
``dump/raw/<lang>_test`` of the demo corpus, else a test set synthesised with
``local/make_mini_mls.py --size tiny --splits test``.

Reported per language: real-time factor (decode wall time / audio duration) of each
system and their ratio, latency per 640 ms window (median and 90th percentile, ms; the
final window is excluded), the encoder's median time per window, tokens emitted (the
beam search's cost depends on them).  Then batched decoding: ESPnet's one-at-a-time
decoder against :class:`espnet_pathways.decode.BatchDecoder` at ``--batch_sizes``, streaming
and full context, on ``--batch_utts`` utterances per language, with the number of 1-best
hypotheses equal to ESPnet's.  GPU rows: no GPU in this run unless one is present
(``--device cuda``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchutil import NO_GPU, ROOT, command_line, loadavg, machine_line, med, random_model  # noqa: E402

DEMO_EXP = ROOT / "exp" / "asr_train_demo"
SPARSITY = 0.7


def test_sets(langs, n_utts: int, work: Path, tiny: bool) -> tuple[dict[str, list[tuple[str, str]]], str]:
    """language -> [(utt id, audio path)] from dump/raw/<lang>_test, else a synthesised test set."""
    out = {}
    for lang in langs:
        scp = ROOT / "dump" / "raw" / f"{lang}_test" / "wav.scp"
        if scp.is_file() and not tiny:
            rows = [line.split(maxsplit=1) for line in scp.read_text().splitlines() if line.strip()]
            out[lang] = [(k, v) for k, v in rows[:n_utts]]
    if len(out) == len(langs):
        return out, "dump/raw/<lang>_test (demo corpus)"
    corpus = work / "corpus"
    cmd = [sys.executable, str(ROOT / "local" / "make_mini_mls.py"), "--out", str(corpus), "--langs", *langs,
           "--size", "tiny", "--splits", "test", "--test_utts", str(max(n_utts, 1)), "--jobs", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"make_mini_mls.py failed:\n{proc.stderr[-2000:]}")
    sys.path.insert(0, str(ROOT / "local"))
    out = {}
    for lang in langs:
        files = sorted((p for p in corpus.rglob("*.flac") if "/test/" in str(p) and _lang_dir(p, lang)),
                       key=lambda p: p.name)
        out[lang] = [(p.stem, str(p)) for p in files[:n_utts]]
    return out, "synthesised with local/make_mini_mls.py --size tiny --splits test (no demo test sets found)"


def _lang_dir(path: Path, lang: str) -> bool:
    from mls import folder_name  # local/mls.py

    return folder_name(lang, "flac") in path.parts


class EncoderTimer:
    """Wraps ``encoder.chunk_forward`` of a Speech2Text to time the encoder alone."""

    def __init__(self, s2t):
        self.times: list[float] = []
        enc = s2t.asr_model.encoder
        inner = enc.chunk_forward

        def timed(*args, **kwargs):
            t = time.perf_counter()
            out = inner(*args, **kwargs)
            self.times.append(time.perf_counter() - t)
            return out

        enc.chunk_forward = timed


def decode(s2t, speech, window: int, enc: EncoderTimer | None = None):
    """Feed ``speech`` as ``inference()`` does.

    Returns (total s, per-window s except the final, encoder s per window except the final, tokens,
    final hypotheses).
    """
    steps = len(speech) // window
    times, enc_times = [], []
    t0 = time.perf_counter()
    hyps = None
    for i in range(steps + 1):
        t = time.perf_counter()
        if i == steps:
            hyps = s2t.streaming_decode(speech[i * window:], is_final=True)
        else:
            s2t.streaming_decode(speech[i * window:(i + 1) * window], is_final=False)
            times.append(time.perf_counter() - t)
            if enc is not None:
                enc_times.append(enc.times[-1])
    total = time.perf_counter() - t0
    tokens = len(hyps[0].yseq) - 1 if hyps else 0
    return total, times, enc_times, tokens, hyps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--langs", nargs="+", default=["en", "fr", "it", "nl"])
    p.add_argument("--utts", type=int, default=10, help="test utterances per language")
    p.add_argument("--exp", type=Path, default=DEMO_EXP)
    p.add_argument("--model_file", default="valid.loss.ave.pth")
    p.add_argument("--decode_config", type=Path, default=ROOT / "conf" / "decode.yaml")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch_utts", type=int, default=25, help="utterances per language for batched decoding")
    p.add_argument("--batch_sizes", type=int, nargs="+", default=[8, 32])
    p.add_argument("--rounds", type=int, default=2, help="batched decoding: passes per decoder")
    p.add_argument("--tiny", action="store_true", help="smoke run: tiny random model, 1 language, 1 utterance")
    a = p.parse_args(argv)
    if a.tiny:
        a.langs, a.utts, a.batch_utts, a.batch_sizes, a.rounds = ["en"], 2, 2, [2], 1

    import numpy as np
    import soundfile as sf
    import torch
    import yaml

    from benchutil import espnet_as_the_plugin_runs_it

    espnet_as_the_plugin_runs_it()
    from espnet2.bin.asr_transducer_inference import Speech2Text

    from espnet_pathways.masks import prunable_names
    from espnet_pathways.pruning import magnitude_prune

    torch.set_num_threads(a.threads)
    dec = yaml.safe_load(a.decode_config.read_text())
    window_ms = int(dec.get("decoding_window", 640))
    with tempfile.TemporaryDirectory(prefix="bench_dec_") as tmp:
        tmp = Path(tmp)
        cfg, mdl = a.exp / "config.yaml", a.exp / a.model_file
        if a.tiny or not (cfg.is_file() and mdl.is_file()):
            conf = ROOT / "conf" / ("train_tiny.yaml" if a.tiny else "train_demo.yaml")
            cfg, mdl, desc = random_model(conf, tmp)
        else:
            desc = f"{mdl.relative_to(ROOT) if mdl.is_relative_to(ROOT) else mdl} (trained)"
        sets, audio_desc = test_sets(a.langs, max(a.utts, a.batch_utts), tmp, a.tiny)

        def make(streaming=True):
            return Speech2Text(asr_train_config=str(cfg), asr_model_file=str(mdl), device=a.device,
                               beam_size=int(dec.get("beam_size", 4)),
                               beam_search_config=dec.get("beam_search_config"), streaming=streaming,
                               decoding_window=window_ms, left_context=int(dec.get("left_context", 32)))

        dense, pathway = make(), make()
        names = prunable_names(pathway.asr_model)
        params = dict(pathway.asr_model.named_parameters())
        original = {n: params[n].detach().clone() for n in names}
        window = dense.audio_processor.decoding_samples
        n_all = sum(p.numel() for p in dense.asr_model.parameters())
        n_masked = sum(params[n].numel() for n in names)

        print("# Streaming decoding, ESPnet Speech2Text one utterance at a time: dense vs a 70% pathway")
        print(machine_line(threads=torch.get_num_threads()))
        print(command_line())
        print(f"# model: {desc}; {n_all / 1e6:.2f}M parameters, {n_masked / 1e6:.2f}M masked in the pathway; "
              f"audio: {audio_desc}; window {window_ms} ms, left context {dec.get('left_context', 32)}, "
              f"beam {dec.get('beam_size', 4)}; device {a.device}, {torch.get_num_threads()} thread(s)\n")
        print("| language | utts | audio s | dense RTF | pathway RTF | pathway / dense (per utt) | "
              "dense ms per window (median / p90) | pathway ms per window (median / p90) | "
              "encoder ms per window dense / pathway (ratio) | tokens dense / pathway | load average |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        timers = {"dense": EncoderTimer(dense), "pathway": EncoderTimer(pathway)}
        warm = np.zeros(2 * window, dtype=np.float32)
        for s2t in (dense, pathway):  # warm-up: first calls allocate caches
            decode(s2t, warm, window)
        overall = {"dense": [0.0, 0], "pathway": [0.0, 0]}  # decode seconds, utterances
        g = torch.Generator().manual_seed(1)
        for li, lang in enumerate(a.langs):
            scores = {n: original[n].abs() * torch.exp(0.5 * torch.randn(original[n].shape, generator=g)) for n in names}
            mask = magnitude_prune(scores, SPARSITY, names=names, scope="tensor").masks
            with torch.no_grad():
                for n in names:
                    params[n].copy_(original[n])
            mask.apply_(pathway.asr_model)
            res = {"dense": [], "pathway": []}
            for ui, (_, path) in enumerate(sets[lang][: a.utts]):
                speech, sr = sf.read(path, dtype="float32")
                speech = np.asarray(speech)
                order = [("dense", dense), ("pathway", pathway)]
                if (ui + li) % 2:
                    order.reverse()
                for name, s2t in order:
                    total, times, enc_times, tokens, _ = decode(s2t, speech, window, timers[name])
                    res[name].append((total, times, tokens, len(speech) / sr, enc_times))
            audio = sum(r[3] for r in res["dense"])
            for name in overall:
                overall[name][0] += sum(r[0] for r in res[name])
                overall[name][1] += len(res[name])

            def rtf(name):
                return sum(r[0] for r in res[name]) / audio

            def lat(name):
                ts = [t for r in res[name] for t in r[1]]
                return f"{1e3 * med(ts):.1f} / {1e3 * float(np.percentile(ts, 90)):.1f}" if ts else "n/a"

            def enc(name):
                return 1e3 * med([t for r in res[name] for t in r[4]])

            ratios = [p[0] / d[0] for p, d in zip(res["pathway"], res["dense"])]
            rs = f"{med(ratios):.2f} [{min(ratios):.2f}–{max(ratios):.2f}]"
            toks = f"{sum(r[2] for r in res['dense'])} / {sum(r[2] for r in res['pathway'])}"
            print(f"| {lang} | {len(res['dense'])} | {audio:.1f} | {rtf('dense'):.3f} | {rtf('pathway'):.3f} | {rs} | "
                  f"{lat('dense')} | {lat('pathway')} | {enc('dense'):.1f} / {enc('pathway'):.1f} "
                  f"({enc('pathway') / enc('dense'):.2f}) | {toks} | {loadavg()} |", flush=True)
        print()
        print("| decoder | utterances/s |")
        print("|---|---|")
        for name, (secs, n) in overall.items():
            print(f"| ESPnet Speech2Text (asr_transducer_inference's decoder), one at a time, {name}, "
                  f"1 CPU thread, all languages | {n / secs:.2f} (without the 10-20 s process start-up) |")
        if a.device == "cpu":
            print(f"| any, GPU | {NO_GPU} |")
        del dense, pathway
        utts = []
        for lang in a.langs:
            for _, path in sets[lang][: a.batch_utts]:
                speech, _ = sf.read(path, dtype="float32")
                utts.append(torch.from_numpy(np.asarray(speech)))
        print()
        batched_section(lambda streaming: make(streaming), utts, a.batch_sizes, a.rounds, window, a.device)
    return 0


def batched_section(make, utts, batch_sizes, rounds, window, device) -> None:
    """ESPnet one at a time vs espnet_pathways.decode.BatchDecoder, same model and audio, alternating."""
    import torch

    from espnet_pathways.decode import BatchDecoder

    audio = sum(len(u) for u in utts) / 16000
    print(f"# Batched decoding vs ESPnet one at a time: dense model, {len(utts)} utterances ({audio:.0f} s of "
          f"audio, all languages), {rounds} rounds alternating the decoder order, median per decoder; "
          f"same hypotheses = 1-best label sequences equal to ESPnet's\n")
    print("| mode | decoder | batch | utterances/s | speed-up vs ESPnet | same hypotheses | load average |")
    print("|---|---|---:|---:|---:|---:|---|")
    for streaming in (True, False):
        s2t = make(streaming)
        bd = BatchDecoder(s2t)
        mode = "streaming" if streaming else "full context"

        def espnet_all():
            out = []
            for u in utts:
                if streaming:
                    out.append(decode(s2t, u, window)[4])
                else:
                    out.append(s2t(u))
            return [h[0].yseq for h in out]

        def batched_all(bs):
            order = sorted(range(len(utts)), key=lambda i: -len(utts[i]))  # as bin/batch_inference does
            res = {}
            for i in range(0, len(order), bs):
                idx = order[i:i + bs]
                for j, h in zip(idx, bd([utts[k] for k in idx])):
                    res[j] = h[0].yseq
            return [res[i] for i in range(len(utts))]

        runs = [("espnet", 1, espnet_all)] + [("batched", bs, (lambda b: lambda: batched_all(b))(bs)) for bs in batch_sizes]
        times = {(n, b): [] for n, b, _ in runs}
        hyps = {}
        for r in range(rounds):
            for name, bs, fn in (runs if r % 2 == 0 else runs[::-1]):
                t = time.perf_counter()
                hyps[(name, bs)] = fn()
                times[(name, bs)].append(time.perf_counter() - t)
        ref = hyps[("espnet", 1)]
        base = len(utts) / med(times[("espnet", 1)])
        for name, bs, _ in runs:
            ups = len(utts) / med(times[(name, bs)])
            same = sum(x == y for x, y in zip(hyps[(name, bs)], ref))
            label = "ESPnet Speech2Text" if name == "espnet" else "espnet_pathways BatchDecoder"
            print(f"| {mode} | {label} | {bs} | {ups:.2f} | {ups / base:.2f} | {same}/{len(utts)} | {loadavg()} |",
                  flush=True)
    if device == "cpu":
        print(f"| any | any, GPU | | {NO_GPU} | | | |")


if __name__ == "__main__":
    sys.exit(main())
