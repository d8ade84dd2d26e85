#!/usr/bin/env python3
"""Benchmark the start-up of a plugin process: typeguard's instrumentation of ESPnet on and off.

    python bench/startup.py                 # import of a training entry point, 5 times each
    python bench/startup.py --tiny          # seconds-long smoke run (imports inflect only)

Every training run, decoding job and export the recipe launches starts a Python process that
imports ESPnet.  ESPnet 202511 (and ``inflect``, imported through its phoneme tokenizer)
decorate hundreds of functions with typeguard's ``@typechecked``, which instruments each
function when its module is imported.  ``espnet_pathways.bin`` turns that off
(``espnet_compat.skip_typeguard``, what typeguard does under ``python -O``);
``ESPNET_PATHWAYS_TYPECHECK=1`` keeps it.  Both variants run side by side, alternating, each
import in a fresh interpreter; the column is the wall time of ``python -c "import MODULE"``
(median [min–max]).  The machine may be shared: the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchutil import ROOT, command_line, machine_line, med, spread  # noqa: E402

VARIANTS = {  # name: ESPNET_PATHWAYS_TYPECHECK
    "typeguard instrumentation (ESPnet as is)": "1",
    "instrumentation off (the plugin's entry points)": "0",
}


def import_seconds(module: str, typecheck: str) -> float:
    env = dict(os.environ, ESPNET_PATHWAYS_TYPECHECK=typecheck)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    # the plugin's switch first, as espnet_pathways.bin does, then the module
    code = f"from espnet_pathways.espnet_compat import skip_typeguard; skip_typeguard(); import {module}"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--module", default="espnet_pathways.bin.pathways_train",
                   help="module each fresh interpreter imports")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--tiny", action="store_true", help="smoke run: import inflect once per variant")
    args = p.parse_args(argv)
    if args.tiny:
        args.module, args.repeats = "inflect", 1
    print(machine_line())
    print(command_line())
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(args.repeats):
        for name, flag in VARIANTS.items():
            times[name].append(import_seconds(args.module, flag))
        print(f"  repeat {r + 1}/{args.repeats}: " + ", ".join(f"{t[-1]:.2f} s" for t in times.values()),
              file=sys.stderr)
    base = med(times[next(iter(VARIANTS))])
    print(f"\n| variant | `import {args.module}` (s) | ratio |")
    print("|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {spread(ts, '{:.2f}')} | {med(ts) / base:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
