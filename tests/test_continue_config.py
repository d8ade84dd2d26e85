"""local/continue_config.py: continuing a finished warmuplr run from its saved weights."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import yaml
from espnet2.schedulers.piecewise_linear_warmup_lr import PiecewiseLinearWarmupLR
from espnet2.schedulers.warmup_lr import WarmupLR
from tiny_asr import ROOT

SCRIPT = ROOT / "local" / "continue_config.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def lrs(scheduler_cls, conf: dict, lr: float, steps: int) -> list[float]:
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = scheduler_cls(opt, **conf)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_continued_schedule_follows_the_original_warmuplr(tmp_path):
    model = tmp_path / "model.pth"
    model.write_bytes(b"weights")
    out = tmp_path / "cont.yaml"
    r = run("--config", str(ROOT / "conf" / "train_demo.yaml"), "--init_param", str(model), "--done_steps", "500",
            "--epochs", "3", "--steps_per_epoch", "200", "--rewarm", "20", "--out", str(out))
    assert r.returncode == 0, r.stderr
    src = yaml.safe_load((ROOT / "conf" / "train_demo.yaml").read_text())
    cont = yaml.safe_load(out.read_text())
    assert cont["max_epoch"] == 3 and cont["init_param"] == [str(model)]
    assert cont["scheduler"] == "piecewiselinearwarmuplr"
    changed = {"max_epoch", "init_param", "scheduler", "scheduler_conf", "optim_conf"}
    assert {k: v for k, v in cont.items() if k not in changed} == {k: v for k, v in src.items() if k not in changed}
    assert cont["optim_conf"]["weight_decay"] == src["optim_conf"]["weight_decay"]
    # what ESPnet's own schedulers give: the original run's steps 500.., and the continuation's 0..
    orig = lrs(WarmupLR, src["scheduler_conf"], src["optim_conf"]["lr"], 500 + 700)[500:]
    new = lrs(PiecewiseLinearWarmupLR, cont["scheduler_conf"], cont["optim_conf"]["lr"], 700)
    assert new[0] < 0.1 * orig[0] and max(new[:20]) <= orig[0]  # the fresh Adam re-warms
    for step in range(20, 700):  # then the original decay, within 0.5% (a linear table of 24 points)
        assert abs(new[step] / orig[step] - 1) < 0.005, step


@pytest.mark.parametrize("edit, message", [
    ({"scheduler": "noamlr"}, "only warmuplr runs can be continued"),
    ({"optim_conf": {"weight_decay": 0.0}}, "needs optim_conf.lr"),
])
def test_bad_source_config_is_one_line_and_writes_nothing(tmp_path, edit, message):
    conf = yaml.safe_load((ROOT / "conf" / "train_demo.yaml").read_text())
    conf.update(edit)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(conf))
    (tmp_path / "m.pth").write_bytes(b"x")
    out = tmp_path / "cont.yaml"
    r = run("--config", str(bad), "--init_param", str(tmp_path / "m.pth"), "--done_steps", "10", "--epochs", "1",
            "--steps_per_epoch", "200", "--out", str(out))
    assert r.returncode == 1 and message in r.stderr and str(bad) in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()
    r = run("--config", str(bad), "--init_param", str(tmp_path / "none.pth"), "--done_steps", "10", "--epochs", "1",
            "--steps_per_epoch", "200", "--out", str(out))
    assert r.returncode == 1 and "--init_param" in r.stderr and not out.exists()
