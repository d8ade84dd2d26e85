"""Reading ESPnet's ``train.log``: the per-epoch summary lines.

ESPnet's trainer writes, after every epoch, one line
``<N>epoch results: [train] key=value, ... [valid] key=value, ...``.  The report, the
mask-IoU sweep and ``local/save_results.py`` read them through :func:`epoch_results`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

EPOCH_LINE = re.compile(r"(\d+)epoch results: \[train\] (.*?)\[valid\] (.*)")


@dataclass(frozen=True)
class EpochResult:
    """One epoch line: its number, and the train and valid parts (raw text, fields by name)."""

    epoch: int
    train: str
    valid: str
    line: str

    @staticmethod
    def field(text: str, name: str) -> str:
        """The value of ``name=...`` in one part ('' when absent)."""
        m = re.search(rf"\b{re.escape(name)}=([-0-9.e+]+)", text)
        return m.group(1) if m else ""

    @property
    def steps(self) -> int | None:
        """Optimizer steps so far (ESPnet's ``total_count`` of the train part)."""
        v = self.field(self.train, "total_count")
        return int(v) if v else None


def parse_epoch_line(line: str) -> EpochResult | None:
    m = EPOCH_LINE.search(line)
    return EpochResult(int(m.group(1)), m.group(2), m.group(3), line) if m else None


def epoch_results(log: str | Path) -> list[EpochResult]:
    """Every epoch line of ``log`` in order (none when the file is missing)."""
    log = Path(log)
    if not log.is_file():
        return []
    out = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        r = parse_epoch_line(line)
        if r is not None:
            out.append(r)
    return out
