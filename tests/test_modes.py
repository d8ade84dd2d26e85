"""Mode rules: each existing mode's declared behaviour, and a new mode added as one class."""

from __future__ import annotations

import pytest
import torch
from espnet_pathways.espnet_compat import install_transducer_loss

install_transducer_loss()

from espnet_pathways.controller import PathwaysConfig, PathwaysError  # noqa: E402
from espnet_pathways.modes import MODES, ModeRule, register  # noqa: E402
from espnet_pathways.modes.prune import Imp  # noqa: E402
from test_model import batch, build, controller, forward  # noqa: E402


def test_each_mode_declares_what_it_trains():
    # the mode sets the controller and the config check read (one table, so a rule change shows here)
    table = {name: (r.monolingual, r.shared_mask, r.scheduled, r.soft, r.does_rerank(), r.zeroes_pruned,
                    r.needs_init_masks, r.rewind, r.mixed_batches)
             for name, r in MODES.items()}
    assert table == {
        "imp": (True, True, True, False, False, True, False, "optional", False),
        "lth": (True, True, True, False, False, True, False, "always", False),
        "lap": (False, True, True, False, False, True, False, "optional", True),
        "pathways": (False, False, False, False, False, True, True, "never", False),
        "adaptive": (True, False, True, True, True, True, False, "optional", False),
        "dynamic_pathways": (False, False, True, True, True, True, True, "never", False),
        "dual_mode": (False, True, True, False, True, False, False, "never", True),
        "dual_pathways": (False, False, False, False, False, False, True, "never", False),
    }


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="taken"):
        register(type("Again", (Imp,), {"name": "imp"}))


@pytest.fixture
def every_step_mode():
    """A new mode defined outside the package: imp that prunes after every optimizer step."""

    class EveryStep(Imp):
        name = "every_step_test"

        def event_at(self, t):
            return "prune" if t <= 3 else None

        @classmethod
        def check_config(cls, cfg, given):
            if cfg.prune_interval != 1:
                raise PathwaysError("pathways.prune_interval: mode every_step_test needs 1")

    register(EveryStep)
    yield EveryStep
    del MODES[EveryStep.name]


def test_a_new_mode_is_one_class(every_step_mode):
    conf = dict(final_sparsity=0.6, prune_interval=1, num_rounds=3)
    with pytest.raises(PathwaysError, match="needs 1"):
        PathwaysConfig.from_dict({"mode": "every_step_test", **dict(conf, prune_interval=2)})
    with pytest.raises(PathwaysError, match="trains one language"):
        PathwaysConfig.from_dict({"mode": "every_step_test", **dict(conf, languages=["fr", "en"])})
    model = build()
    ctl = controller(model, "every_step_test", languages=["fr"], **conf)
    assert isinstance(ctl.rule, every_step_mode)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ctl.install(opt)
    model.train()
    sparsity = []
    for step in range(5):
        opt.zero_grad()
        forward(model, batch("fr", seed=step))[0].backward()
        opt.step()
        sparsity.append(round(ctl.masks["fr"].sparsity(), 2))
    # the shared machinery ran the rule's events at steps 1-3 on the cubic schedule, then none
    assert ctl.step == 5 and ctl.events == 3
    assert [e["step"] for e in ctl.masks.history if e["event"] == "prune"] == [1, 2, 3]
    assert sparsity[2:] == [0.6, 0.6, 0.6] and sparsity[0] < sparsity[1] < 0.6
    model.release()
    for n in ctl.names:  # θ ⊙ m holds after the events (the rule zeroes pruned weights)
        w = dict(model.named_parameters())[n]
        assert not w[~ctl.masks["fr"][n]].any(), n
    assert ctl.state_dict()["events"] == 3


def test_a_mode_without_soft_training_has_no_soft_region():
    model = build()
    ctl = controller(model, "imp", languages=["fr"], final_sparsity=0.5, prune_interval=2, num_rounds=1)
    with pytest.raises(NotImplementedError, match="no soft training"):
        ctl.rule.soft_region("fr")
