#!/usr/bin/env python3
"""Training throughput and dev loss after equal wall time, two (or more) configs side by side.

    python bench/training.py                          # old vs new demo config, 8 min of training each (~20 min)
    python bench/training.py --minutes 15 --configs bench/conf/train_demo_v1.yaml conf/train_demo.yaml
    python bench/training.py --profile                # + where one step's time goes (torch profiler)
    python bench/training.py --tiny                   # smoke run: tiny corpus, tiny configs, seconds

What it measures, for each ESPnet transducer training config:

* **training audio seconds per wall second**: each config trains its own model (same seed,
  same data) with its own optimizer and scheduler (Adam + warm-up as in the config), the
  configs interleaved step by step (A, B, A, B, ...: a load change on a shared machine hits
  both), each step = ESPnet's ``model(**batch)`` (frontend, SpecAugment, normalisation,
  encoder, predictor, joiner, RNN-T + CTC loss) + backward + gradient clipping + optimizer
  and scheduler step; batches of ``batch_bins`` samples, sorted by length as ESPnet's
  ``numel`` sampler makes them, shuffled per epoch.  Data loading is done before timing
  (ESPnet loads in a worker process in parallel with the step).
* **dev loss after equal wall time**: once every config has trained ``--minutes`` of step
  time, its ``loss_transducer`` (−log P(y|x) per utterance, comparable across frame rates)
  and ESPnet's total loss on the dev set, in eval mode with the same seed for ESPnet's
  random chunk masks (its encoder draws one in eval mode too).

Data: the recipe's ``dump/raw/{train,dev}`` with its token list and stage-10 statistics
(global mean/variance normalisation) when they exist, else a tiny synthesised corpus with
characters from its text and utterance normalisation (the header says which).
``--profile`` adds a table of operator self-time over a few steps of each config.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchutil import command_line, loadavg, machine_line, rotate  # noqa: E402

DEFAULT_CONFIGS = [ROOT / "bench" / "conf" / "train_demo_v1.yaml", ROOT / "conf" / "train_demo.yaml"]
TINY_CONFIGS = [ROOT / "conf" / "train_tiny.yaml", ROOT / "bench" / "conf" / "train_tiny_fast.yaml"]


def rel(p: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def find_data(args, work: Path):
    """(train dir, dev dir, token list, stats file or None, description)."""
    dump = Path(args.dump)
    tl = ROOT / "data" / "token_list" / "char" / "tokens.txt"
    stats = ROOT / "exp" / "asr_stats_char" / "train" / "feats_stats.npz"
    if not args.tiny and (dump / "train" / "wav.scp").is_file() and (dump / "dev" / "wav.scp").is_file() and tl.is_file():
        return dump / "train", dump / "dev", tl, (stats if stats.is_file() else None), f"{rel(dump)}/train, dev"
    import subprocess

    corpus, data = work / "corpus", work / "data"
    for cmd in ([sys.executable, str(ROOT / "local" / "make_mini_mls.py"), "--out", str(corpus), "--langs", "en", "fr",
                 "--size", "tiny", "--jobs", "2"],
                [sys.executable, str(ROOT / "local" / "data_prep.py"), "--mls_root", str(corpus), "--langs", "en", "fr",
                 "--data", str(data)]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{Path(cmd[1]).name} failed:\n{proc.stderr[-2000:]}")
    chars = set()
    for line in (data / "train" / "text").read_text(encoding="utf-8").splitlines():
        parts = line.split(maxsplit=1)
        if len(parts) == 2:
            chars |= set(parts[1])
    chars.discard(" ")
    tl = work / "tokens.txt"
    tl.write_text("\n".join(["<blank>", "<unk>", "<space>", *sorted(chars), "<sos/eos>"]) + "\n", encoding="utf-8")
    return data / "train", data / "dev", tl, None, "tiny synthesised mini-MLS (en, fr), utterance normalisation"


def load_set(data_dir: Path, token_list: Path):
    """{utt: (speech float32, token ids int64)} through ESPnet's own preprocessor."""
    import numpy as np

    from espnet2.train.dataset import ESPnetDataset
    from espnet2.train.preprocessor import CommonPreprocessor

    pre = CommonPreprocessor(train=False, token_type="char", token_list=str(token_list))
    ds = ESPnetDataset([(str(data_dir / "wav.scp"), "speech", "sound"), (str(data_dir / "text"), "text", "text")],
                       preprocess=pre)
    out = {}
    for key in ds.loader_dict["speech"].keys():
        _, item = ds[key]
        out[key] = (np.asarray(item["speech"], dtype=np.float32), np.asarray(item["text"], dtype=np.int64))
    return out


def batches_of(data, batch_bins: int):
    keys = sorted(data, key=lambda k: (len(data[k][0]), k))
    out, cur, total = [], [], 0
    for k in keys:  # ESPnet's numel sampler: sorted by length, filled up to batch_bins
        n = len(data[k][0])
        if cur and total + n > batch_bins:
            out.append(cur)
            cur, total = [], 0
        cur.append(k)
        total += n
    if cur:
        out.append(cur)
    return out


def collate(data, keys):
    import torch

    sp = [torch.from_numpy(data[k][0]) for k in keys]
    tx = [torch.from_numpy(data[k][1]) for k in keys]
    return dict(
        speech=torch.nn.utils.rnn.pad_sequence(sp, batch_first=True, padding_value=0.0),
        speech_lengths=torch.tensor([len(x) for x in sp]),
        text=torch.nn.utils.rnn.pad_sequence(tx, batch_first=True, padding_value=-1),
        text_lengths=torch.tensor([len(x) for x in tx]),
    )


class Run:
    """One config: model, optimizer, scheduler, its batches and clocks."""

    def __init__(self, conf: Path, token_list: Path, stats: Path | None, train, seed: int):
        import torch
        import yaml

        from espnet2.tasks.asr_transducer import ASRTransducerTask

        self.conf = conf
        self.cfg = yaml.safe_load(conf.read_text())
        argv = ["--config", str(conf), "--token_list", str(token_list), "--token_type", "char",
                "--output_dir", "/tmp/unused"]
        argv += (["--normalize", "global_mvn", "--normalize_conf", f"stats_file={stats}"] if stats
                 else ["--normalize", "utterance_mvn"])
        args = ASRTransducerTask.get_parser().parse_args(argv)
        torch.manual_seed(seed)
        self.model = ASRTransducerTask.build_model(args)
        self.params = sum(p.numel() for p in self.model.parameters())
        self.optim = ASRTransducerTask.build_optimizers(args, self.model)[0]
        from espnet2.schedulers.warmup_lr import WarmupLR

        warm = (self.cfg.get("scheduler_conf") or {}).get("warmup_steps", 25000)
        self.sched = WarmupLR(self.optim, warmup_steps=warm) if self.cfg.get("scheduler") == "warmuplr" else None
        self.grad_clip = float(self.cfg.get("grad_clip", 5.0))
        self.train = train
        self.batches = batches_of(train, int(self.cfg["batch_bins"]))
        self.rng = random.Random(seed)
        self.order: list[list[str]] = []
        self.wall = 0.0
        self.audio = 0.0
        self.steps = 0
        self.epochs = 0.0

    def next_batch(self):
        if not self.order:
            self.order = list(self.batches)
            self.rng.shuffle(self.order)
        keys = self.order.pop()
        self.epochs += 1.0 / len(self.batches)
        return keys

    def step(self, part=lambda name: contextlib.nullcontext()) -> None:
        """One training step; ``part(name)`` wraps its forward, backward and optimizer parts
        (the profiler's ``record_function``)."""
        import torch

        keys = self.next_batch()
        batch = collate(self.train, keys)
        t0 = time.perf_counter()
        self.model.train()
        with part("forward (all)"):
            loss, _, _ = self.model(**batch)
        with part("backward (all)"):
            self.optim.zero_grad(set_to_none=True)
            loss.backward()
        with part("clipping + optimizer"):
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.optim.step()
            if self.sched is not None:
                self.sched.step()
        self.wall += time.perf_counter() - t0
        self.audio += float(batch["speech_lengths"].sum()) / 16000.0
        self.steps += 1

    def dev_loss(self, dev, seed: int) -> tuple[float, float]:
        """(mean loss_transducer, mean ESPnet loss) per utterance on the dev set."""
        import torch

        self.model.eval()
        torch.manual_seed(seed)
        tot_t = tot = 0.0
        n = 0
        with torch.no_grad():
            for keys in batches_of(dev, int(self.cfg["batch_bins"])):
                loss, stats, _ = self.model(**collate(dev, keys))
                tot += float(loss) * len(keys)
                tot_t += float(stats.get("loss_transducer", loss)) * len(keys)
                n += len(keys)
        return tot_t / max(n, 1), tot / max(n, 1)


def profile_table(run: Run, steps: int) -> str:
    """Where the time of ``steps`` training steps goes (torch profiler, inclusive CPU time per part)."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    model = run.model
    parts = {"frontend (STFT + fbank)": model.frontend, "SpecAugment": model.specaug,
             "normalisation": model.normalize, "encoder: subsampling": model.encoder.embed,
             "encoder: conformer blocks": model.encoder.encoders, "predictor": model.decoder,
             "joiner": model.joint_network}
    handles = []
    for label, mod in parts.items():
        if mod is None:
            continue

        def pre(m, _i, _label=label):
            m._bench_rf = record_function("P:" + _label)
            m._bench_rf.__enter__()

        def post(m, _i, _o):
            m._bench_rf.__exit__(None, None, None)

        handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    wrapped = {}
    for meth, label in (("_calc_transducer_loss", "RNN-T loss (forward)"), ("_calc_ctc_loss", "CTC loss (forward)")):
        orig = getattr(model, meth)

        def wrap(*a, _orig=orig, _label=label, **k):
            with record_function("P:" + _label):
                return _orig(*a, **k)

        wrapped[meth] = orig
        setattr(model, meth, wrap)

    def step():
        run.step(lambda name: record_function("P:" + name))

    step()  # warm-up
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    wall = (time.perf_counter() - t0) / steps
    for h in handles:
        h.remove()
    for meth in wrapped:
        delattr(model, meth)
    groups, by_op = {}, {}
    for ev in prof.key_averages():
        if ev.key.startswith("P:"):
            groups[ev.key[2:]] = ev.cpu_time_total / 1e6 / steps
        else:
            by_op[ev.key] = ev.self_cpu_time_total / 1e6 / steps
    total = sum(groups.get(k, 0.0) for k in ("forward (all)", "backward (all)", "clipping + optimizer"))
    lines = [f"| part of a step, `{rel(run.conf)}` (profiled; forward parts inclusive) | s per step | share |",
             "|---|---|---|"]
    order = list(parts) + ["RNN-T loss (forward)", "CTC loss (forward)", "forward (all)", "backward (all)",
                           "clipping + optimizer"]
    for k in order:
        if k in groups:
            lines.append(f"| {k} | {groups[k]:.3f} | {100 * groups[k] / max(total, 1e-9):.1f}% |")
    lines.append(f"| step (forward + backward + optimizer) | {total:.3f} | 100% |")
    lines.append(f"| wall time per step under the profiler | {wall:.3f} | |")
    lines += ["", "| top operators by self CPU time | s per step | share |", "|---|---|---|"]
    for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])[:12]:
        lines.append(f"| `{k}` | {v:.3f} | {100 * v / max(total, 1e-9):.1f}% |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", type=Path, default=None, help="ESPnet training configs (first = baseline)")
    p.add_argument("--minutes", type=float, default=8.0, help="step time each config trains before the dev loss")
    p.add_argument("--dump", default=str(ROOT / "dump" / "raw"), help="holds train/ and dev/ (the recipe's dump/raw)")
    p.add_argument("--max_dev", type=int, default=200, help="dev utterances scored (the first N by id)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", action="store_true", help="also profile a few steps of each config")
    p.add_argument("--tiny", action="store_true", help="smoke run: tiny corpus and configs, a few steps")
    args = p.parse_args(argv)
    configs = args.configs or (TINY_CONFIGS if args.tiny else DEFAULT_CONFIGS)
    for c in configs:
        if not Path(c).is_file():
            print(f"training.py: --configs {c}: no such file", file=sys.stderr)
            return 2
    if args.minutes <= 0:
        print(f"training.py: --minutes must be positive, got {args.minutes}", file=sys.stderr)
        return 2
    budget = 5.0 if args.tiny else 60.0 * args.minutes

    import torch

    from benchutil import espnet_as_the_plugin_runs_it

    espnet_as_the_plugin_runs_it()
    with tempfile.TemporaryDirectory() as tmp:
        train_dir, dev_dir, token_list, stats, desc = find_data(args, Path(tmp))
        t0 = time.perf_counter()
        train = load_set(train_dir, token_list)
        dev = load_set(dev_dir, token_list)
        dev = {k: dev[k] for k in sorted(dev)[: args.max_dev]}
        print(f"# data: {desc}; {len(train)} train utterances "
              f"({sum(len(v[0]) for v in train.values()) / 16000 / 3600:.2f} h), {len(dev)} dev; "
              f"loaded in {time.perf_counter() - t0:.0f} s", flush=True)
        runs = [Run(Path(c), token_list, stats, train, args.seed) for c in configs]
        print(machine_line())
        print(command_line())
        load_before = loadavg()
        k = 0
        last = time.perf_counter()
        while any(r.wall < budget for r in runs):
            for r in rotate(runs, k):
                if r.wall < budget:
                    r.step()
            k += 1
            if time.perf_counter() - last > 60:
                last = time.perf_counter()
                print("# progress: " + "; ".join(f"{rel(r.conf)} {r.wall:.0f}/{budget:.0f} s, {r.steps} steps"
                                                 for r in runs), flush=True)
        results = [(r, *r.dev_loss(dev, args.seed)) for r in runs]
        base = runs[0].audio / max(runs[0].wall, 1e-9)
        print(f"# load average before {load_before}, after {loadavg()}; step time per config {budget:.0f} s, "
              f"dev loss: {len(dev)} utterances, eval mode, seed {args.seed}")
        print()
        print("| config | parameters | steps | epochs | audio s / wall s | vs first | "
              "dev loss_transducer | dev loss (ESPnet total) |")
        print("|---|---|---|---|---|---|---|---|")
        for r, lt, lo in results:
            thr = r.audio / max(r.wall, 1e-9)
            print(f"| `{rel(r.conf)}` | {r.params / 1e6:.2f} M | {r.steps} | {r.epochs:.2f} | {thr:.1f} | "
                  f"{thr / base:.2f}× | {lt:.2f} | {lo:.2f} |")
        if args.profile:
            for r in runs:
                print()
                print(profile_table(r, 2 if args.tiny else 5))
    return 0


if __name__ == "__main__":
    sys.exit(main())
