"""Make ESPnet's transducer models train without warp-transducer, without editing ESPnet.

The hook
--------
In ESPnet 202511 the only use of warp-transducer by ``ESPnetASRTransducerModel`` is the lazy
construction in ``espnet2/asr_transducer/espnet_transducer_model.py``,
``ESPnetASRTransducerModel._calc_transducer_loss``::

    if self.criterion_transducer is None:
        try:
            from warprnnt_pytorch import RNNTLoss
            self.criterion_transducer = RNNTLoss(reduction="mean",
                                                 fastemit_lambda=self.fastemit_lambda)
        except ImportError:
            logging.error("warp-transducer was not installed. ..."); exit(1)
    with autocast(False):
        loss_transducer = self.criterion_transducer(joint_out.float(), target, t_len, u_len)

:func:`install_transducer_loss` therefore *provides the missing dependency* instead of
patching ESPnet: it registers a module named ``warprnnt_pytorch`` in ``sys.modules`` whose
``RNNTLoss`` is :class:`espnet_pathways.loss.RNNTLoss` (same constructor
``RNNTLoss(blank=0, reduction="mean", fastemit_lambda=0.0)``, same call
``(acts, labels, act_lens, label_lens)``, same semantics: raw logits, blank 0, mean = sum over
the batch / batch size, FastEmit on the gradient).  Why this and not a monkeypatch of
``_calc_transducer_loss``:

* no ESPnet class or function is replaced, so ESPnet's own code path (lazy construction,
  ``autocast(False)``, ``.float()``, k2 branch, CER/WER reporting in ``forward``) runs exactly
  as written and keeps working if those details change between ESPnet releases;
* the same shim serves every other ESPnet user of the package (``espnet2/asr/espnet_model.py``,
  ``espnet2/slu``, ``espnet2/st``, ``espnet/nets/pytorch_backend/transducer``), which all call
  ``RNNTLoss(blank=..., reduction=..., fastemit_lambda=...)``;
* ``criterion_transducer`` holds no parameters or buffers, so checkpoints and ``config.yaml``
  are byte-for-byte what stock ESPnet writes, and stock ESPnet loads them.

The shim must be registered before the model's first ``forward`` (the import happens there,
lazily), in every process that trains: the plugin's entry points call
:func:`install_transducer_loss` at import time, which also covers the worker processes that
ESPnet's ``--multiprocessing_distributed`` starts with the *spawn* method (they re-import the
``__main__`` module).

Choosing the implementation
---------------------------
``ESPNET_PATHWAYS_RNNT_LOSS`` (environment variable, inherited by worker processes) or the
``impl`` argument: ``auto`` (default: pure PyTorch on CPU, torchaudio on CUDA, pure PyTorch
whenever FastEmit is on), ``torchaudio``, ``pytorch``, or ``warp`` (do not install the shim:
leave a real ``warprnnt_pytorch``, if one is installed, in charge).  An environment variable
rather than a command-line option because ESPnet's parser would reject an unknown option and
the saved ``config.yaml`` must stay loadable by stock ESPnet.
"""

from __future__ import annotations

import logging
import os
import sys
import types
from typing import Optional

from espnet_pathways import loss as _loss

__all__ = [
    "ENV_VAR",
    "TYPECHECK_ENV_VAR",
    "default_impl",
    "install_transducer_loss",
    "installed_impl",
    "skip_typeguard",
    "uninstall_transducer_loss",
]

TYPECHECK_ENV_VAR = "ESPNET_PATHWAYS_TYPECHECK"


def _identity(target):
    return target


def skip_typeguard() -> bool:
    """Make ``typeguard.typechecked`` a no-op for every module imported from now on.

    ESPnet 202511 (and ``inflect``, which ESPnet's phoneme tokenizer imports) decorate hundreds
    of functions with ``@typechecked``; typeguard 4 instruments each one when its module is
    imported (re-parsing and recompiling its source) and checks the arguments of every call.
    Measured on the 2-core CPU: importing the plugin's task (and with it ESPnet) takes 22.7 s
    with the instrumentation and 9.6 s without (under load; bench/RESULTS.md section 9), and
    every training run, decoding job and export pays that start-up.  Turning it off is what
    typeguard itself does under ``python -O``; no computation changes, only ESPnet's runtime
    argument type checks are gone.  The plugin's entry points (``espnet_pathways.bin``) call
    this before importing ESPnet; ``ESPNET_PATHWAYS_TYPECHECK=1`` keeps the checks.  Modules
    imported earlier keep their instrumentation.  Returns whether the checks are off.
    """
    if os.environ.get(TYPECHECK_ENV_VAR, "0") not in ("", "0"):
        return False
    try:
        import typeguard
    except ImportError:  # pragma: no cover - ESPnet depends on it
        return False
    if getattr(typeguard.typechecked, "__espnet_pathways_noop__", False):
        return True

    def typechecked(target=None, **_options):
        return _identity if target is None else target

    typechecked.__espnet_pathways_noop__ = True
    typeguard.typechecked = typechecked
    return True

ENV_VAR = "ESPNET_PATHWAYS_RNNT_LOSS"
MODULE_NAME = "warprnnt_pytorch"
_CHOICES = _loss.IMPLEMENTATIONS + ("warp",)

_state = {"impl": None}  # implementation chosen by install_transducer_loss()


def _validate(impl: str) -> str:
    impl = impl.strip().lower()
    if impl not in _CHOICES:
        raise ValueError(f"{ENV_VAR} / impl must be one of {_CHOICES}, got {impl!r}")
    return impl


def default_impl() -> str:
    """Implementation used by shim ``RNNTLoss`` objects built without an explicit ``impl``."""
    if _state["impl"] is not None and _state["impl"] != "warp":
        return _state["impl"]
    impl = _validate(os.environ.get(ENV_VAR, "auto") or "auto")
    return "auto" if impl == "warp" else impl


def _make_shim_module(impl: str) -> types.ModuleType:
    mod = types.ModuleType(
        MODULE_NAME,
        "espnet-pathways stand-in for warp-transducer's warprnnt_pytorch "
        "(see espnet_pathways.espnet_compat).",
    )
    mod.RNNTLoss = _loss.RNNTLoss
    mod.rnnt_loss = _loss.rnnt_loss
    mod.__espnet_pathways_shim__ = True
    mod.__version__ = "espnet-pathways-shim"
    return mod


def installed_impl() -> Optional[str]:
    """The implementation the shim uses now, or ``None`` when the shim is not installed."""
    mod = sys.modules.get(MODULE_NAME)
    if mod is not None and getattr(mod, "__espnet_pathways_shim__", False):
        return default_impl()
    return None


def install_transducer_loss(impl: Optional[str] = None) -> str:
    """Register the ``warprnnt_pytorch`` stand-in; idempotent; returns the chosen impl.

    ``impl`` defaults to ``$ESPNET_PATHWAYS_RNNT_LOSS`` or ``"auto"``.  Calling it again only
    changes the implementation (also for ``RNNTLoss`` objects ESPnet has already built, since
    they read it at call time).  ``"warp"`` installs nothing and leaves whatever
    ``import warprnnt_pytorch`` finds (a real warp-transducer build, or nothing) in charge.
    """
    impl = _validate(impl if impl is not None else os.environ.get(ENV_VAR, "auto") or "auto")
    current = sys.modules.get(MODULE_NAME)
    is_shim = current is not None and getattr(current, "__espnet_pathways_shim__", False)
    if impl == "warp":
        if is_shim:
            uninstall_transducer_loss()
        _state["impl"] = "warp"
        return impl
    if current is not None and not is_shim:
        logging.getLogger(__name__).warning(
            "a real %s is already imported; replacing it with the espnet-pathways RNN-T loss "
            "(%s) for this process (set %s=warp to keep it)",
            MODULE_NAME,
            impl,
            ENV_VAR,
        )
    if not is_shim:
        sys.modules[MODULE_NAME] = _make_shim_module(impl)
    _state["impl"] = impl
    return impl


def uninstall_transducer_loss() -> None:
    """Remove the stand-in (tests); models that already built their criterion keep it."""
    mod = sys.modules.get(MODULE_NAME)
    if mod is not None and getattr(mod, "__espnet_pathways_shim__", False):
        del sys.modules[MODULE_NAME]
    _state["impl"] = None
