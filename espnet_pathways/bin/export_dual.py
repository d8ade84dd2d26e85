#!/usr/bin/env python3
"""Export the two models of a dual-mode run as stock ESPnet model dirs.

    python -m espnet_pathways.bin.export_dual --exp exp/dual --out exp/dual/export \\
        --calib_data dump/raw/train/wav.scp

writes ``<out>/sparse_streaming/`` (θ ⊙ m, for streaming decoding) and
``<out>/dense_full/`` (θ, for full-context decoding), each ``config.yaml`` (the run's config
without its ``pathways`` section) + ``model.pth`` (every key of the stock model) +
``pathway.yaml`` (what it is, sparsity, calibration).  Stock ESPnet decodes both
(``espnet2.bin.asr_transducer_inference --streaming true|false``); any of the two in either
mode (the cross cells) as well.

BatchNorm (the conformer convolution module's) statistics were shared by both modes during
training; each export gets its own, re-estimated on ``--calib_batches`` batches of
``--calib_batch_size`` training utterances (drawn with ``--seed`` from ``--calib_data``) in
its own mode: the sparse model with θ ⊙ m and chunk ``--calib_chunk`` (default: the run's
validation chunk), the dense one with θ and full context (``espnet_pathways.recalibrate``).
``--no_recalibrate`` keeps the trained (shared) statistics.
Errors: one ``export_dual: error: ...`` line, exit status 1, nothing written.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

from espnet_pathways.controller import PathwaysError

SPARSE, DENSE = "sparse_streaming", "dense_full"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", type=Path, required=True, help="a dual_mode training run (its output_dir)")
    p.add_argument("--out", type=Path, required=True, help=f"output dir: <out>/{SPARSE}, <out>/{DENSE}")
    p.add_argument("--model_file", help="model state dict (default: valid.loss.ave.pth in --exp)")
    p.add_argument("--masks", help="masks file (default: <exp>/masks.pt, else <exp>/checkpoint.pth)")
    p.add_argument("--calib_data", type=Path, help="wav.scp of training audio for the BatchNorm statistics")
    p.add_argument("--calib_batches", type=int, default=20, help="calibration batches per model (default 20)")
    p.add_argument("--calib_batch_size", type=int, default=8, help="utterances per calibration batch (default 8)")
    p.add_argument("--calib_chunk", type=int, help="the sparse model's attention chunk while calibrating (encoder frames)")
    p.add_argument("--seed", type=int, default=0, help="which utterances calibrate (default 0)")
    p.add_argument("--no_recalibrate", action="store_true", help="keep the trained BatchNorm statistics")
    return p


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    try:
        run(args)
    except PathwaysError as e:
        print(f"export_dual: error: {e}", file=sys.stderr)
        sys.exit(1)


def _positive(args: argparse.Namespace, key: str) -> None:
    v = getattr(args, key)
    if v is not None and v < 1:
        raise PathwaysError(f"--{key}: must be a positive integer, got {v}")


def calibration_batches(scp: Path, config: dict, n_batches: int, batch_size: int, seed: int):
    """``n_batches`` batches of (speech, lengths): utterances of ``scp`` drawn with ``seed``."""
    import torch
    from espnet2.tasks.asr_transducer import ASRTransducerTask

    if not scp.is_file():
        raise PathwaysError(f"--calib_data: no such file {scp}")
    keys = [line.split(maxsplit=1)[0] for line in scp.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not keys:
        raise PathwaysError(f"--calib_data: {scp} lists no utterances")
    pick = set(random.Random(seed).sample(keys, min(len(keys), n_batches * batch_size)))
    chosen = [k for k in keys if k in pick]  # in file order: ESPnet reads the key file and the scp in step
    with tempfile.NamedTemporaryFile("w", suffix=".keys", delete=False, encoding="utf-8") as f:
        f.write("\n".join(chosen) + "\n")
    train_args = argparse.Namespace(**config)
    # one utterance at a time (ESPnet forces batch size 1 when the data dir has utt2category), padded here
    loader = ASRTransducerTask.build_streaming_iterator(
        [(str(scp), "speech", "sound")], key_file=f.name, batch_size=1, num_workers=0, dtype="float32",
        preprocess_fn=ASRTransducerTask.build_preprocess_fn(train_args, False),
        collate_fn=ASRTransducerTask.build_collate_fn(train_args, False), inference=True,
    )
    try:
        utts = [b["speech"][0, : int(b["speech_lengths"][0])] for _, b in loader]
    finally:
        Path(f.name).unlink()
    batches = []
    for i in range(0, len(utts), batch_size):
        group = utts[i:i + batch_size]
        lengths = torch.tensor([len(u) for u in group])
        speech = torch.zeros(len(group), int(lengths.max()))
        for j, u in enumerate(group):
            speech[j, : len(u)] = u
        batches.append((speech, lengths))
    return batches


def run(args: argparse.Namespace) -> list[Path]:
    from espnet2.tasks.asr_transducer import ASRTransducerTask

    from espnet_pathways import export
    from espnet_pathways.recalibrate import batchnorm_layers, recalibrate_batchnorm

    for k in ("calib_batches", "calib_batch_size", "calib_chunk"):
        _positive(args, k)
    config, state, masks, (model_path, masks_path) = export.load_run(args.exp, args.model_file, args.masks)
    section = config.get("pathways") or {}
    if section.get("mode") != "dual_mode":
        raise PathwaysError(f"--exp: {args.exp} is a {section.get('mode') or 'dense'} run, not dual_mode")
    cfg = export.stock_config(config)
    mask = masks[masks.languages[0]]
    main_conf = (cfg.get("encoder_conf") or {}).get("main_conf") or {}
    opts = section.get("dual_mode") or {}
    chunk = args.calib_chunk or opts.get("valid_chunk") or opts.get("max_chunk") or int(main_conf.get("short_chunk_size", 25))

    models = {}
    for name, weights in ((SPARSE, export.apply_mask(state, mask)), (DENSE, dict(state))):
        model = ASRTransducerTask.build_model(argparse.Namespace(**cfg))
        model.load_state_dict(weights, strict=True)
        models[name] = model
    has_bn = bool(batchnorm_layers(models[DENSE]))
    calib: dict[str, object] = {"recalibrated": False}
    if has_bn and not args.no_recalibrate:
        if args.calib_data is None:
            raise PathwaysError("--calib_data: required to give each model its own BatchNorm statistics (or --no_recalibrate)")
        batches = calibration_batches(args.calib_data, config, args.calib_batches, args.calib_batch_size, args.seed)
        for name, c in ((SPARSE, chunk), (DENSE, None)):
            recalibrate_batchnorm(models[name], batches, c)
        calib = {"recalibrated": True, "calib_data": str(args.calib_data.absolute()), "batches": len(batches),
                 "utterances": sum(len(s) for s, _ in batches), "seed": args.seed, "sparse_chunk": chunk}
    elif has_bn:
        calib = {"recalibrated": False, "note": "BatchNorm statistics shared by both modes (--no_recalibrate)"}
    out = []
    for name, streaming, sparsity in ((SPARSE, True, mask.sparsity()), (DENSE, False, 0.0)):
        sd = models[name].state_dict()
        info = {
            "model": name, "decode_streaming": streaming, "sparsity": round(sparsity, 6),
            "kept": mask.kept() if name == SPARSE else mask.numel(), "masked_elements": mask.numel(),
            "mode": "dual_mode", "exp": str(args.exp.resolve()), "model_file": str(model_path.absolute()),
            "masks_file": str(Path(masks_path).absolute()), "batchnorm": calib,
        }
        out.append(export.write_model_dir(args.out / name, cfg, sd, info))
        print(f"{name}: wrote {args.out / name}/model.pth (sparsity {sparsity:.4f}, decode with --streaming {str(streaming).lower()})")
    return out


if __name__ == "__main__":
    main()
