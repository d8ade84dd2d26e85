#!/usr/bin/env python3
"""Stage 20: export pathways and decode them with stock ESPnet inference, many jobs per process.

    local/decode_pathways.py --jobs jobs.tsv --decode_config conf/decode.yaml [--streaming] [--ngpu 0] \
        [--decoder espnet|batched] [--batch_size 32]

Each line of ``jobs.tsv``: ``RUN_DIR LANG MODEL_FILE EXPORT_DIR WAV_SCP OUT_DIR LOG [STREAMING]``
(STREAMING ``true``/``false``: this job's decoding mode, else ``--streaming``).  For each
job: export language LANG's pathway of the pathways run RUN_DIR (θ ⊙ m_LANG, a stock ESPnet
model dir; skipped when EXPORT_DIR/model.pth exists) with
:func:`espnet_pathways.export.export_pathway`, then run ``espnet2.bin.asr_transducer_inference``'s
own ``main`` -- stock ESPnet inference, the same code path as its command line -- on WAV_SCP
into OUT_DIR (``--decoder batched``: ``espnet_pathways.bin.batch_inference``'s, the same search
with utterances batched).  A RUN_DIR without ``masks.pt`` is a stock dense run (the Ref. row):
its own config and MODEL_FILE are decoded, nothing is exported; where that config has
per-language encoder modules (``lang_adapt_conf``: the embedding and adapter baselines of the
SSL stages) it is decoded with LANG's modules (``--decoder batched`` only).  Why in one process: importing ESPnet costs 15-35 s per process on a busy
2-core machine, more than decoding a small test set.  A failing job writes its traceback to
LOG and the others go on; OUT_DIR/1best_recog/text appears only for a finished job.
"""
import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import time
import traceback
from pathlib import Path


def _has_language_modules(config: str) -> bool:
    import yaml

    with open(config, encoding="utf-8") as f:
        return bool((yaml.safe_load(f) or {}).get("lang_adapt_conf"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=Path, required=True)
    p.add_argument("--decode_config", required=True)
    p.add_argument("--streaming", action="store_true")
    p.add_argument("--ngpu", default="0")
    p.add_argument("--decoder", choices=["espnet", "batched"], default="espnet",
                   help="espnet: stock asr_transducer_inference; batched: espnet_pathways.bin.batch_inference")
    p.add_argument("--batch_size", type=int, default=32, help="utterances decoded together (--decoder batched)")
    args = p.parse_args(argv)

    from espnet_pathways.bin import batch_inference  # first: it turns typeguard's instrumentation off
    from espnet2.bin import asr_transducer_inference

    from espnet_pathways import export

    failed = 0
    for line in args.jobs.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        run_dir, lang, model_file, export_dir, wav_scp, out_dir, log, *mode = line.split("\t")
        streaming = mode[0] == "true" if mode else args.streaming
        out, tmp = Path(out_dir), Path(out_dir + ".tmp")
        start = time.time()
        with open(log, "w", encoding="utf-8") as f, contextlib.redirect_stderr(f), contextlib.redirect_stdout(f):
            handler = logging.StreamHandler(f)
            logging.getLogger().addHandler(handler)
            try:
                if not (Path(run_dir) / "masks.pt").is_file():  # a stock dense run (the Ref. row)
                    config, model = f"{run_dir}/config.yaml", model_file
                else:
                    if not (Path(export_dir) / "model.pth").is_file():
                        export.export_pathway(run_dir, lang, export_dir, model_file=model_file)
                        print(f"exported {lang} of {run_dir} -> {export_dir}")
                    config, model = f"{export_dir}/config.yaml", f"{export_dir}/model.pth"
                shutil.rmtree(tmp, ignore_errors=True)
                cmd = ["--ngpu", args.ngpu, "--data_path_and_name_and_type", f"{wav_scp},speech,sound",
                       "--asr_train_config", config, "--asr_model_file", model,
                       "--config", args.decode_config, "--output_dir", str(tmp)]
                if _has_language_modules(config):  # the embedding / adapter baselines: not stock modules
                    if args.decoder != "batched":
                        raise RuntimeError(f"{config}: a model with per-language modules (lang_adapt_conf) is decoded "
                                           "by --decoder batched (batch_inference --language), not stock ESPnet")
                    cmd += ["--language", lang]
                if streaming:  # --streaming takes any non-empty string as true
                    cmd += ["--streaming", "true"]
                t0 = time.time()
                if args.decoder == "batched":
                    cmd += ["--batch_size", str(args.batch_size)]
                    print("python -m espnet_pathways.bin.batch_inference " + " ".join(cmd))
                    if batch_inference.main(cmd) != 0:
                        raise RuntimeError("batch_inference failed (error above)")
                else:
                    print("python -m espnet2.bin.asr_transducer_inference " + " ".join(cmd))
                    asr_transducer_inference.main(cmd)
                if not (tmp / "1best_recog" / "text").is_file():
                    raise RuntimeError(f"no {tmp}/1best_recog/text after decoding")
                seconds = time.time() - t0  # decoding only (model loading included, export not)
                (tmp / "timing.json").write_text(json.dumps({"decode_seconds": round(seconds, 3), "streaming": streaming,
                                                             "decoder": args.decoder}) + "\n")
                shutil.rmtree(out, ignore_errors=True)
                os.replace(tmp, out)
                print(f"done in {time.time() - start:.1f}s")
            except BaseException:  # noqa: BLE001 - one failed job must not stop the others
                traceback.print_exc()
                failed += 1
            finally:
                logging.getLogger().removeHandler(handler)
        status = "ok" if out.is_dir() and (out / "1best_recog" / "text").is_file() else f"FAILED (log: {log})"
        print(f"  {out}: {status} ({time.time() - start:.1f}s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
