#!/usr/bin/env python3
"""Copy what a finished run should keep in git into results/: tables, json, figures, key log lines.

    local/save_results.py dense --exp exp/asr_train_demo --out results/dense_cpu_v2 [--model]
    local/save_results.py pathways --pw_dir exp/pathways --out results/pathways_cpu_v2
    local/save_results.py dual --dual_dir exp/dual --out results/dual_cpu_v1
    local/save_results.py ssl --ssl_dir exp/ssl --out results/ssl_cpu_v1 [--models]
    local/save_results.py restore --src results/dense_cpu_exp --exp exp/asr_cpu_exp   # the other way
    local/save_results.py restore_pathways --src results/pathways_cpu_v4/config_lr --pw_dir exp/pathways_v4 [--seeds 0]
    local/save_results.py restore_ssl --src results/ssl_cpu_v1 --ssl_dir exp/ssl_v1 [--seeds 0]

``dense``: ``RESULTS.md`` and ``results.json`` of every decoding (stage 13 writes them into
the experiment dir), ``config.yaml``, ``training_curve.tsv`` (per epoch: train and valid
loss, loss_transducer, seconds, from ESPnet's "epoch results" lines) and those lines
themselves (``train_log_epochs.txt``); with ``--model``, ``valid.loss.ave.pth`` as bfloat16
(``model_bf16.pth``, what the plugin stages start from; refused above 10 MB).
``pathways``: the report (``RESULTS.md``, ``report.json``, ``figures/``) and per seed and
system ``system.json``, ``results.json`` (with the per-utterance error counts the bootstrap
needs) and the epoch lines of every training log; ``dual``: the same for the dual-mode stages
(each cell's ``eval_*/results.json``, decoding times, the exports' ``pathway.yaml``); ``ssl``:
the same for the sparse-sharing SSL stages (the fine-tuned systems per seed), plus what the
pre-training runs leave that is small: ``ssl.yaml``, the k-means summary ``targets/kmeans.json``,
the labelled subset's ``ft_data/summary.json``, every config and the epoch lines of the dense
SSL, per-language IMP and sparse-sharing runs; with ``--models`` also what fine-tuning starts
from (the exception to "no checkpoints", so that a later session skips pre-training): the dense
and the sparse-sharing SSL models as bfloat16 (``models/ssl_dense_bf16.pth``,
``models/ssl_shared_bf16.pth``, each refused above 10 MB) and the merged per-language masks
(``models/init_masks.pt``, packed bits); before stage 31 has written a report, ``--models``
saves only those.  Never audio, fine-tuned checkpoints or optimizer state.  ``restore``: a
saved dense model back into an experiment dir (``config.yaml`` and ``valid.loss.ave.pth`` in
float32, bf16-rounded), so that the plugin stages can start from it
without retraining (``./run.sh --stage 14 --tag <tag>`` after stages 1-10 on the same
corpus).  Errors: one line, exit status 1; files are written whole (temporary name, then
renamed).  ``restore_pathways``: a saved results set's per-seed systems (``system.json``,
``results.json``, ``RESULTS.md``, ``train.yaml``, the epoch lines) back into a plugin dir, so
that stage 21 reports seeds run in an earlier session (whose exp/ is gone) together with new
ones; a system dir that exists already is left as it is.  Masks are not in a results set:
their seeds are missing from the mask IoU, and stage 20 cannot decode them again.
``restore_ssl``: the models and masks of ``ssl --models`` back into an SSL dir (float32,
bf16-rounded; stages 26-28 then skip: ``./run.sh --stage 29 --ssl_dir <dir>`` after stages
0-10), and the saved seeds as ``restore_pathways`` does; refused when any of those model files
exists already.  Fine-tuning from restored models starts from bf16-rounded weights.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from espnet_pathways.train_log import epoch_results, parse_epoch_line  # noqa: E402

MAX_MODEL_BYTES = 10 * 1024 * 1024


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def epoch_lines(log: Path) -> list[str]:
    return [r.line for r in epoch_results(log)]


def seconds(text: str) -> str:
    """ESPnet's "time=1 hour, 2 minutes and 3.4 seconds" (train part of an epoch line) in seconds."""
    m = re.search(r"\btime=((?:\d+ hours?,? )?(?:\d+ minutes? and )?[\d.]+ seconds)", text)
    if not m:
        return ""
    total = 0.0
    for value, unit in re.findall(r"([\d.]+) (hour|minute|second)", m.group(1)):
        total += float(value) * {"hour": 3600, "minute": 60, "second": 1}[unit]
    return f"{total:.1f}"


def keep_epoch_lines(log: Path, out_dir: Path) -> None:
    """The "epoch results" lines of an ESPnet training log -> out_dir/train_log_epochs.txt (none: nothing)."""
    lines = epoch_lines(log)
    if lines:
        write(out_dir / "train_log_epochs.txt", "\n".join(lines) + "\n")


def curve(lines: list[str]) -> str:
    rows = ["epoch\ttrain_loss\ttrain_loss_transducer\tvalid_loss\tvalid_loss_transducer\tepoch_seconds\tsteps"]
    for line in lines:
        r = parse_epoch_line(line)
        tr, va, field = r.train, r.valid, r.field
        rows.append("\t".join([str(r.epoch), field(tr, "loss"), field(tr, "loss_transducer"), field(va, "loss"),
                               field(va, "loss_transducer"), seconds(tr), field(tr, "total_count")]))
    return "\n".join(rows) + "\n"


def save_dense(exp: Path, out: Path, model: bool) -> None:
    if not (exp / "config.yaml").is_file():
        raise ValueError(f"--exp {exp}: no config.yaml (not an ESPnet experiment dir)")
    copy(exp / "config.yaml", out / "config.yaml")
    lines = epoch_lines(exp / "train.log")
    write(out / "train_log_epochs.txt", "\n".join(lines) + "\n")
    write(out / "training_curve.tsv", curve(lines))
    for res in sorted(exp.glob("RESULTS*.md")) + sorted(exp.glob("results*.json")):
        copy(res, out / res.name)
    if model:
        save_bf16(exp / "valid.loss.ave.pth", out / "model_bf16.pth", "--model")


def save_bf16(src: Path, dst: Path, option: str) -> None:
    """A checkpoint's floating tensors as bfloat16 -> dst (refused above MAX_MODEL_BYTES)."""
    import torch

    if not src.is_file():
        raise ValueError(f"{option}: {src}: no such file (training not finished)")
    sd = torch.load(src, map_location="cpu", weights_only=True)
    sd = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v) for k, v in sd.items()}
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    torch.save(sd, tmp)
    size = tmp.stat().st_size
    if size > MAX_MODEL_BYTES:
        tmp.unlink()
        raise ValueError(f"{option}: {src} is {size} bytes in bf16, above the 10 MB the repository keeps")
    os.replace(tmp, dst)


def restore_bf16(src: Path, dst: Path) -> None:
    """A checkpoint saved by save_bf16 back as float32 (bf16-rounded values) -> dst."""
    import torch

    sd = torch.load(src, map_location="cpu", weights_only=True)
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    torch.save(sd, tmp)
    os.replace(tmp, dst)


def save_pathways(pw: Path, out: Path, option: str = "--pw_dir", stage: int = 21) -> None:
    """A report tree (plugin stages: <pw>/seed<k>/<system>/; dual-mode stages: also eval_*/, export/, dense/)."""
    if not (pw / "RESULTS.md").is_file():
        raise ValueError(f"{option} {pw}: no RESULTS.md (run stage {stage} first)")
    for name in ("RESULTS.md", "report.json"):
        copy(pw / name, out / name)
    if (pw / "figures").is_dir():
        for f in sorted((pw / "figures").glob("*.png")):
            copy(f, out / "figures" / f.name)
    # Only the seeds the report covers: another seed's runs may be half-way (started after the report).
    reported = {f"seed{k}" for k in json.loads((pw / "report.json").read_text()).get("seeds", [])}
    for sdir in sorted([*(d for d in pw.glob("seed*/*/") if d.parent.name in reported), *pw.glob("dense/")]):
        rel = sdir.relative_to(pw)
        small = ["system.json", "results.json", "RESULTS.md", "train.yaml", *sorted(
            str(f.relative_to(sdir)) for pattern in ("failed/*", "eval_*/RESULTS.md", "eval_*/results.json",
                                                     "eval_*/decode/*/timing.json", "export/*/pathway.yaml")
            for f in sdir.glob(pattern))]
        for name in small:
            if (sdir / name).is_file():
                copy(sdir / name, out / rel / name)
        for log in sorted(sdir.glob("train*/train.log")):
            keep_epoch_lines(log, out / rel / log.parent.name)


# What fine-tuning (stages 29-31) starts from: <ssl_dir> path -> name in <out>/models/.
SSL_DENSE = "ssl_dense/valid.loss.ave.pth"
SSL_MODELS = {SSL_DENSE: "ssl_dense_bf16.pth",
              "ssl_shared/train/valid.loss.ave.pth": "ssl_shared_bf16.pth"}
SSL_MASKS = "ssl_shared/init_masks.pt"
SSL_MASKS_FROM = "ssl_shared/masks_from"


def ssl_model_file(ssl: Path, rel: str) -> Path | None:
    """``<ssl>/rel`` (SSL_MODELS or SSL_MASKS) of a run, or its copy in a results set's models/ (None: neither)."""
    name = SSL_MODELS.get(rel, Path(rel).name)
    return next((p for p in (ssl / rel, ssl / "models" / name) if p.is_file()), None)


def save_ssl_models(ssl: Path, out: Path) -> None:
    """The pre-trained SSL models (bf16) and the per-language masks -> <out>/models/."""
    if not (ssl / SSL_MASKS).is_file():
        raise ValueError(f"--models: {ssl / SSL_MASKS}: no such file (run stage 28 first)")
    for rel, name in SSL_MODELS.items():
        save_bf16(ssl / rel, out / "models" / name, "--models")
    copy(ssl / SSL_MASKS, out / "models" / Path(SSL_MASKS).name)
    if (ssl / SSL_MASKS_FROM).is_file():  # the stage-27 options the masks came from (stages 27-28 check them)
        copy(ssl / SSL_MASKS_FROM, out / "models" / Path(SSL_MASKS_FROM).name)


def save_ssl(ssl: Path, out: Path, models: bool = False) -> None:
    """Stages 25-31: the fine-tuning report tree, and the pre-training runs' configs and epoch lines."""
    if models:
        save_ssl_models(ssl, out)
    if not (ssl / "RESULTS.md").is_file() and models:
        return  # pre-training only so far: the models, no report yet
    save_pathways(ssl, out, "--ssl_dir", 31)
    for pattern in ("ssl.yaml", "targets/kmeans.json", "targets_layer*/kmeans.json", "ft_data/summary.json",
                    "ssl_imp/*.yaml", "ssl_lth/*.yaml", "ssl_shared/*.yaml", "ssl_shared/merge_masks.log",
                    "lanes/times"):  # lanes/: results/ssl_cpu_v1/lanes.sh's step times
        for f in sorted(ssl.glob(pattern)):
            copy(f, out / f.relative_to(ssl))
    for log in sorted([*ssl.glob("ssl_dense/train.log"), *ssl.glob("ssl_dense_it1/train.log"),
                       *ssl.glob("ssl_imp/*/train.log"), *ssl.glob("ssl_lth/*/train.log"),
                       *ssl.glob("ssl_shared/*/train.log")]):
        keep_epoch_lines(log, out / log.parent.relative_to(ssl))


def restore(src: Path, exp: Path) -> None:
    for name in ("config.yaml", "model_bf16.pth"):
        if not (src / name).is_file():
            raise ValueError(f"--src {src}: no {name}")
    if (exp / "valid.loss.ave.pth").exists():
        raise ValueError(f"--exp {exp}: valid.loss.ave.pth exists already (remove it to restore)")
    exp.mkdir(parents=True, exist_ok=True)
    copy(src / "config.yaml", exp / "config.yaml")
    restore_bf16(src / "model_bf16.pth", exp / "valid.loss.ave.pth")


def restore_ssl(src: Path, ssl: Path, seeds: list[int] | None) -> list[Path]:
    """Saved SSL models and masks back into <ssl_dir> (stages 26-28 then skip), and the saved seeds."""
    names = [*SSL_MODELS.values(), Path(SSL_MASKS).name]
    missing = [n for n in names if not (src / "models" / n).is_file()]
    if missing:
        raise ValueError(f"--src {src}: no models/{missing[0]} (saved with 'ssl --models'?)")
    present = [ssl / rel for rel in (*SSL_MODELS, SSL_MASKS) if (ssl / rel).exists()]
    if present:
        raise ValueError(f"--ssl_dir {ssl}: {present[0]} exists already (remove it to restore)")
    for rel, name in SSL_MODELS.items():
        restore_bf16(src / "models" / name, ssl / rel)
    copy(src / "models" / Path(SSL_MASKS).name, ssl / SSL_MASKS)
    if (src / "models" / Path(SSL_MASKS_FROM).name).is_file():
        copy(src / "models" / Path(SSL_MASKS_FROM).name, ssl / SSL_MASKS_FROM)
    done = [ssl / rel for rel in (*SSL_MODELS, SSL_MASKS)]
    if (src / "report.json").is_file() and any(src.glob("seed*/*/")):
        done += restore_pathways(src, ssl, seeds)
    return done


def restore_pathways(src: Path, pw: Path, seeds: list[int] | None) -> list[Path]:
    dirs = sorted(d for d in src.glob("seed*/*/") if seeds is None or d.parent.name in {f"seed{k}" for k in seeds})
    if not (src / "report.json").is_file() or not dirs:
        raise ValueError(f"--src {src}: not a saved pathways results set (no report.json or no seed<k>/<system>/)")
    done = []
    for sdir in dirs:
        dst = pw / sdir.relative_to(src)
        if dst.exists():
            print(f"  {dst}: exists, left as it is")
            continue
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(sdir, tmp)
        os.replace(tmp, dst)
        done.append(dst)
    return done


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    d = sub.add_parser("dense")
    d.add_argument("--exp", type=Path, required=True)
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--model", action="store_true", help="also keep valid.loss.ave.pth as bfloat16")
    w = sub.add_parser("pathways")
    w.add_argument("--pw_dir", type=Path, required=True)
    w.add_argument("--out", type=Path, required=True)
    u = sub.add_parser("dual")
    u.add_argument("--dual_dir", type=Path, required=True)
    u.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("ssl")
    s.add_argument("--ssl_dir", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--models", action="store_true",
                   help="also keep the pre-trained SSL models (bf16) and the per-language masks (models/)")
    r = sub.add_parser("restore")
    r.add_argument("--src", type=Path, required=True, help="a results dir written by 'dense --model'")
    r.add_argument("--exp", type=Path, required=True, help="experiment dir to write")
    rp = sub.add_parser("restore_pathways")
    rp.add_argument("--src", type=Path, required=True, help="a results dir written by 'pathways'")
    rp.add_argument("--pw_dir", type=Path, required=True, help="plugin dir to write seed<k>/<system>/ into")
    rp.add_argument("--seeds", type=int, nargs="+", help="only these seeds (default: every saved seed)")
    rs = sub.add_parser("restore_ssl")
    rs.add_argument("--src", type=Path, required=True, help="a results dir written by 'ssl --models'")
    rs.add_argument("--ssl_dir", type=Path, required=True, help="SSL dir to write (run.sh --ssl_dir)")
    rs.add_argument("--seeds", type=int, nargs="+", help="only these saved seeds (default: every saved seed)")
    args = p.parse_args(argv)
    try:
        if args.what == "restore_pathways":
            done = restore_pathways(args.src, args.pw_dir, args.seeds)
            print(f"restored {len(done)} system(s) from {args.src} -> {args.pw_dir}")
            return 0
        if args.what == "restore_ssl":
            done = restore_ssl(args.src, args.ssl_dir, args.seeds)
            print(f"restored {len(done)} path(s) from {args.src} -> {args.ssl_dir}")
            return 0
        if args.what == "dense":
            save_dense(args.exp, args.out, args.model)
        elif args.what == "pathways":
            save_pathways(args.pw_dir, args.out)
        elif args.what == "dual":
            save_pathways(args.dual_dir, args.out, "--dual_dir", 24)
        elif args.what == "ssl":
            save_ssl(args.ssl_dir, args.out, args.models)
        else:
            restore(args.src, args.exp)
            print(f"restored {args.src} -> {args.exp}")
            return 0
    except (ValueError, OSError) as e:
        print(f"save_results.py: error: {e}", file=sys.stderr)
        return 1
    print(f"saved {args.what} results -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
