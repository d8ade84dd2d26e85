#!/usr/bin/env python3
"""SSL frame targets: features per encoder frame -> k-means (all languages) -> ESPnet label files.

    local/ssl_targets.py --config conf/train_demo.yaml --sets dump/raw/train dump/raw/dev \\
        --out exp/ssl_targets/mfcc --k 100 [--seed 0] [--fit_frames 200000]
    # second iteration: a middle layer of a pre-trained SSL model
    local/ssl_targets.py --config conf/train_demo.yaml --sets dump/raw/train dump/raw/dev \\
        --out exp/ssl_targets/layer3 --feature layer3 --ssl_model exp/ssl/valid.loss.ave.pth --k 100
    # apply a fitted model to more sets
    local/ssl_targets.py ... --kmeans exp/ssl_targets/mfcc/kmeans.pkl --sets dump/raw/en_test --out ...

``--config``: the transducer (= SSL) training config; its frontend and encoder give the frame
count, so that every label file has exactly one label per encoder frame.  The k-means model
(``--k`` clusters, ``MiniBatchKMeans`` seeded by ``--seed``) is fitted on ``--fit_frames``
frames drawn with the seed from the first set (all languages).  Writes
``<out>/kmeans.pkl`` (+ ``kmeans.json``), ``<out>/tokens.txt`` (the cluster ids) and per set
``<out>/<set>/text`` (``utt l1 l2 ...``, ESPnet type ``text_int``) and ``text_shape``.
Features: :mod:`espnet_pathways.ssl_targets`.  Errors: one line, exit 1, nothing written.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from espnet_pathways.modes import PathwaysError  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True, help="the transducer/SSL training config (frontend, encoder)")
    p.add_argument("--sets", type=Path, nargs="+", required=True, help="data dirs holding wav.scp; the first is fitted on")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--k", type=int, default=100, help="clusters (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fit_frames", type=int, default=200_000, help="frames the k-means model is fitted on")
    p.add_argument("--feature", default="mfcc", help="mfcc | layer<k> (encoder block k of --ssl_model)")
    p.add_argument("--ssl_model", type=Path, help="a pre-trained SSL model (its valid.loss.ave.pth) for layer<k>")
    p.add_argument("--kmeans", type=Path, help="apply this fitted model instead of fitting one")
    args = p.parse_args(argv)
    try:
        run(args)
    except (PathwaysError, FileNotFoundError) as e:
        print(f"ssl_targets.py: error: {e}", file=sys.stderr)
        return 1
    return 0


def run(args) -> None:
    import torch

    from espnet_pathways.espnet_compat import skip_typeguard

    skip_typeguard()  # ~13 s less start-up (ESPnet's import-time instrumentation)
    from espnet2.fileio.sound_scp import SoundScpReader

    from espnet_pathways.ssl_targets import KMeansTargets, features_for, fit_kmeans, read_scp
    from espnet_pathways.ssl_task import EncoderSSLTask

    if args.k < 2:
        raise PathwaysError(f"--k must be at least 2, got {args.k}")
    if not args.config.is_file():
        raise PathwaysError(f"--config: no such file {args.config}")
    for d in args.sets:
        if not (d / "wav.scp").is_file():
            raise PathwaysError(f"--sets: no wav.scp in {d}")
    if args.feature != "mfcc" and args.ssl_model is None:
        raise PathwaysError(f"--feature {args.feature} needs --ssl_model")
    km = KMeansTargets.load(args.kmeans) if args.kmeans else None
    cfg = ["--config", str(args.config), "--token_list", "x", "--output_dir", "/tmp/unused"]
    targs = EncoderSSLTask.get_parser().parse_args(cfg)
    targs.token_list = [str(i) for i in range(km.k if km else args.k)]
    targs.normalize = None
    targs.specaug = None
    model = EncoderSSLTask.build_model(targs)
    if args.ssl_model is not None:
        if not args.ssl_model.is_file():
            raise PathwaysError(f"--ssl_model: no such file {args.ssl_model}")
        sd = torch.load(args.ssl_model, map_location="cpu")
        enc = {k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")}
        try:
            model.encoder.load_state_dict(enc, strict=True)
        except RuntimeError as e:
            raise PathwaysError(f"--ssl_model: {args.ssl_model} does not fit --config's encoder ({str(e).splitlines()[0]})") from None
    model.eval()
    torch.manual_seed(args.seed)

    def feats_of(d: Path):
        reader = SoundScpReader(str(d / "wav.scp"), dtype="float32")
        utts = list(read_scp(d / "wav.scp"))
        start = time.time()
        for i, (utt, _) in enumerate(utts, 1):
            rate, wav = reader[utt]
            yield utt, features_for(model, torch.from_numpy(wav.reshape(-1)), args.feature)
            if i % 500 == 0 or i == len(utts):
                print(f"  {d.name}: {i}/{len(utts)} utterances ({time.time() - start:.0f}s)", flush=True)

    tmp = args.out.with_name(f".{args.out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        cache = {}
        if km is None:
            first = dict(feats_of(args.sets[0]))
            cache[args.sets[0]] = first
            km = fit_kmeans(first.values(), args.k, args.feature, args.seed, args.fit_frames)
            print(f"k-means: {km.k} clusters on {km.frames} {args.feature} frames ({km.dim} dims), seed {args.seed}")
        km.save(tmp / "kmeans.pkl")
        (tmp / "tokens.txt").write_text("".join(f"{i}\n" for i in range(km.k)))
        for d in args.sets:
            items = cache.get(d) or dict(feats_of(d))
            out = tmp / d.name
            out.mkdir()
            with open(out / "text", "w") as t, open(out / "text_shape", "w") as s:
                for utt, f in items.items():
                    labels = km.labels(f, args.feature)
                    t.write(utt + " " + " ".join(map(str, labels.tolist())) + "\n")
                    s.write(f"{utt} {len(labels)},{km.k}\n")
            print(f"{d.name}: {len(items)} utterances labelled -> {args.out / d.name}/text")
        if args.out.exists():
            shutil.rmtree(args.out)
        os.replace(tmp, args.out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
