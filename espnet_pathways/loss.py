"""RNN-Transducer loss for ESPnet's ``asr_transducer`` model, without warp-transducer.

ESPnet 202511's ``ESPnetASRTransducerModel._calc_transducer_loss`` builds
``warprnnt_pytorch.RNNTLoss(reduction="mean", fastemit_lambda=...)`` and calls it as
``criterion(joint_out, target, t_len, u_len)``.  ``warprnnt_pytorch`` is not on PyPI, so this
module provides the same loss two ways:

* :func:`rnnt_loss_torchaudio` -- ``torchaudio.functional.rnnt_loss`` with ESPnet's conventions
  (``blank=0``; torchaudio's own default ``blank=-1`` would be wrong), int32 lengths,
  contiguous float32 logits.
* :func:`rnnt_loss_pytorch` -- a pure-PyTorch loss: log-space forward-backward over the
  (T, U+1) lattice in float64, vectorised over the batch and one lattice axis, with a custom
  ``autograd.Function`` that computes the gradient w.r.t. the logits in closed form from
  alpha/beta.  Memory is O(B*T*U) for the lattice plus the one (B, T, U+1, V) gradient
  tensor that any implementation must return; no (B, T, U+1, V) autograd graph is kept.

Semantics shared by both (and by warp-transducer, which ESPnet was written against):

* ``logits``: unnormalised joint-network outputs ``(B, T, U+1, V)``; log-softmax over V is
  applied inside the loss.
* ``targets``: ``(B, U)`` label ids, padded arbitrarily beyond ``target_lengths``.
* per-sequence loss ``-log P(y|x)``; ``reduction="mean"`` is the *sum over the batch divided by
  the batch size* (not divided by target lengths), ``"sum"`` the sum, ``"none"`` the vector.
  (warp-transducer returns a shape-``(1,)`` tensor for mean/sum; this module returns a 0-dim
  scalar like torchaudio and every other ESPnet loss -- ESPnet's trainer and reporter accept
  both.)
* ``fastemit_lambda`` (FastEmit, Yu et al. 2021) as in warp-transducer: the loss *value* is
  unchanged and the gradient that flows through the label-emission log-probabilities is
  scaled by ``1 + lambda``.  torchaudio has no FastEmit, so :func:`rnnt_loss` falls back to
  the pure-PyTorch implementation whenever ``fastemit_lambda != 0``.

The algorithm of the pure-PyTorch loss.  With ``b(t,u)`` / ``e(t,u)`` the log-probabilities of
blank / of the next label ``y_{u+1}`` at lattice node ``(t,u)``, alpha obeys
``a(t,u) = logaddexp(a(t-1,u) + b(t-1,u), a(t,u-1) + e(t,u-1))``.  For a fixed column ``j``
this is a first-order linear recurrence (log semiring) along the other axis, which has the
closed form ``x(i) = S(i) + logcumsumexp_k(c(k) - S(k))`` with ``S`` the cumulative sum of the
in-column weights and ``c`` the contribution of the previous column.  So one Python-level
iteration per column (the shorter lattice axis is chosen as the column axis), each a handful
of vectorised ops on ``(B, longer_axis)``.  The lattice runs in float64 so that the cumulative
sums (hundreds to thousands in magnitude) lose no precision.  beta is the same recurrence on the
lattice reversed per sequence (variable lengths handled by a gather).  Gradient:
``dL/dz(t,u,v) = g * [gamma(t,u) softmax_v - G_b(t,u) [v=blank] - (1+lambda) G_y(t,u) [v=y_{u+1}]]``
with ``G_b, G_y`` the posterior occupancies of the blank/label transitions out of ``(t,u)`` and
``gamma = G_b + (1+lambda) G_y``.
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import torch
from torch.autograd.function import once_differentiable

__all__ = [
    "IMPLEMENTATIONS",
    "RNNTLoss",
    "resolve_impl",
    "rnnt_loss",
    "rnnt_loss_pytorch",
    "rnnt_loss_torchaudio",
]

IMPLEMENTATIONS = ("auto", "torchaudio", "pytorch")
_REDUCTIONS = ("mean", "sum", "none")


# --------------------------------------------------------------------------------------
# Input handling shared by both implementations
# --------------------------------------------------------------------------------------
def _check_inputs(logits, targets, logit_lengths, target_lengths, reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if logits.dim() != 4:
        raise ValueError(f"logits must be (B, T, U+1, V), got shape {tuple(logits.shape)}")
    if targets.dim() != 2:
        raise ValueError(f"targets must be (B, U), got shape {tuple(targets.shape)}")
    B = logits.size(0)
    if not (targets.size(0) == logit_lengths.numel() == target_lengths.numel() == B):
        raise ValueError(
            "batch sizes differ: logits %d, targets %d, logit_lengths %d, target_lengths %d"
            % (B, targets.size(0), logit_lengths.numel(), target_lengths.numel())
        )


def _normalise_blank(blank: int, vocab: int) -> int:
    blank = int(blank)
    if blank < 0:
        blank += vocab
    if not 0 <= blank < vocab:
        raise ValueError(f"blank id {blank} out of range for vocabulary size {vocab}")
    return blank


# --------------------------------------------------------------------------------------
# torchaudio
# --------------------------------------------------------------------------------------
_torchaudio_rnnt = None


def _get_torchaudio_rnnt():
    global _torchaudio_rnnt
    if _torchaudio_rnnt is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torchaudio.functional as taF

        _torchaudio_rnnt = taF.rnnt_loss
    return _torchaudio_rnnt


def torchaudio_available() -> bool:
    try:
        _get_torchaudio_rnnt()
        return True
    except Exception:  # pragma: no cover - depends on the environment
        return False


def rnnt_loss_torchaudio(
    logits: torch.Tensor,
    targets: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int = 0,
    reduction: str = "mean",
) -> torch.Tensor:
    """``torchaudio.functional.rnnt_loss`` with ESPnet's conventions (see module docstring).

    torchaudio insists on ``logits.size(1) == max(logit_lengths)`` and
    ``logits.size(2) == max(target_lengths) + 1``, int32 targets/lengths on the logits' device
    and float32/float16 logits; this wrapper slices/casts accordingly.  float64 and bfloat16
    logits are computed in float32 and the result is cast back.
    """
    _check_inputs(logits, targets, logit_lengths, target_lengths, reduction)
    fn = _get_torchaudio_rnnt()
    blank = _normalise_blank(blank, logits.size(-1))
    dev = logits.device
    logit_lengths = logit_lengths.to(device=dev, dtype=torch.int32)
    target_lengths = target_lengths.to(device=dev, dtype=torch.int32)
    max_t = int(logit_lengths.max())
    max_u = int(target_lengths.max())
    x = logits[:, :max_t, : max_u + 1]
    out_dtype = logits.dtype
    if x.dtype not in (torch.float32, torch.float16):
        x = x.float()
    x = x.contiguous()
    tgt = targets[:, :max_u].to(device=dev, dtype=torch.int32).contiguous()
    if max_u == 0:  # torchaudio rejects a batch whose targets are all empty
        return rnnt_loss_pytorch(logits, targets, logit_lengths, target_lengths, blank, reduction)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = fn(
            x,
            tgt,
            logit_lengths,
            target_lengths,
            blank=blank,
            reduction=reduction,
        )
    return loss.to(out_dtype)


# --------------------------------------------------------------------------------------
# pure PyTorch
# --------------------------------------------------------------------------------------
def _scan_columns(w_row: torch.Tensor, w_col: torch.Tensor, init: torch.Tensor) -> torch.Tensor:
    """Solve ``x[i,j] = logaddexp(x[i-1,j] + w_row[i,j], x[i,j-1] + w_col[i,j])``.

    ``x[0,0] = init``; terms with ``i-1 < 0`` or ``j-1 < 0`` are absent (``w_row[:, 0]`` and
    ``w_col[:, :, 0]`` are ignored).  Inputs ``(B, I, J)``, finite; one loop iteration per
    column ``j``, each vectorised over ``(B, I)``.  Returns ``x`` as ``(B, I, J)``.
    """
    B, I, J = w_row.shape
    # column-major copies so that each column is a contiguous (B, I) block
    wr = w_row.permute(2, 0, 1).contiguous()  # (J, B, I)
    wr[:, :, 0] = 0.0
    S = wr.cumsum(dim=2)  # S[j, b, i] = sum_{k=1..i} w_row[b, k, j]
    wc = w_col.permute(2, 0, 1)  # (J, B, I)
    out = torch.empty_like(S)
    x = S[0] + init.unsqueeze(1)
    out[0] = x
    for j in range(1, J):
        s = S[j]
        x = torch.logcumsumexp((x + wc[j]) - s, dim=1).add_(s)
        out[j] = x
    return out.permute(1, 2, 0)  # (B, I, J)


def _scan(w_row: torch.Tensor, w_col: torch.Tensor, init: torch.Tensor) -> torch.Tensor:
    """:func:`_scan_columns`, looping over whichever lattice axis is shorter."""
    if w_row.size(2) <= w_row.size(1):
        return _scan_columns(w_row, w_col, init)
    # the recurrence is symmetric under (i <-> j, w_row <-> w_col)
    return _scan_columns(w_col.transpose(1, 2), w_row.transpose(1, 2), init).transpose(1, 2)


_CPU_CHUNK_ELEMS = 1 << 19  # ~2 MiB of float32 per chunk: stays in cache, reused buffer


def _row_chunks(n_rows: int, V: int):
    step = max(1, _CPU_CHUNK_ELEMS // max(1, V))
    for start in range(0, n_rows, step):
        yield start, min(n_rows, start + step)


def _logsumexp_lastdim(x: torch.Tensor) -> torch.Tensor:
    """``torch.logsumexp(x, -1)``; on CPU in row chunks through one small reused buffer.

    ``torch.logsumexp`` materialises ``x - max`` at full size; on CPU a fresh multi-MB
    allocation costs page faults that can exceed the arithmetic.  Chunking keeps the
    temporary in cache and out of the allocator.
    """
    if x.device.type != "cpu":
        return torch.logsumexp(x, dim=-1)
    V = x.size(-1)
    x2 = x.reshape(-1, V)
    n = x2.size(0)
    out = torch.empty(n, dtype=x.dtype)
    step = max(1, _CPU_CHUNK_ELEMS // max(1, V))
    buf = torch.empty(min(step, n), V, dtype=x.dtype)
    mx = torch.empty(min(step, n), 1, dtype=x.dtype)
    for a, b in _row_chunks(n, V):
        xc, bc, mc = x2[a:b], buf[: b - a], mx[: b - a]
        torch.amax(xc, dim=1, keepdim=True, out=mc)
        mc.masked_fill_(~torch.isfinite(mc), 0.0)
        torch.sub(xc, mc, out=bc)
        bc.exp_()
        oc = out[a:b]
        torch.sum(bc, dim=1, out=oc)
        oc.log_().add_(mc.squeeze(1))
    return out.view(x.shape[:-1])


def _exp_sub_lastdim(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``exp(x - shift[..., None])`` as a new tensor, in cache-sized chunks on CPU."""
    if x.device.type != "cpu":
        return torch.sub(x, shift.unsqueeze(-1)).exp_()
    V = x.size(-1)
    x2 = x.reshape(-1, V)
    s2 = shift.reshape(-1, 1)
    out = torch.empty(x2.shape, dtype=x.dtype)
    for a, b in _row_chunks(x2.size(0), V):
        oc = out[a:b]
        torch.sub(x2[a:b], s2[a:b], out=oc)
        oc.exp_()
    return out.view(x.shape)


def _flat_gather(x: torch.Tensor, t_idx: torch.Tensor, u_idx: torch.Tensor) -> torch.Tensor:
    """``out[b, t, u] = x[b, t_idx[b, t], u_idx[b, u]]`` for ``x`` of shape ``(B, T, U1)``."""
    B, T, U1 = x.shape
    flat = (t_idx.unsqueeze(2) * U1 + u_idx.unsqueeze(1)).reshape(B, T * U1)
    return torch.gather(x.reshape(B, T * U1), 1, flat).view(B, T, U1)


class _RNNTLossFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets, logit_lengths, target_lengths, blank, reduction, fastemit_lambda):
        B, T, U1, V = logits.shape
        dev = logits.device
        x = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
        lat = torch.float64

        tl = logit_lengths.to(device=dev, dtype=torch.long)
        ul = target_lengths.to(device=dev, dtype=torch.long)
        # targets padded to U1 columns (column U has no label); pad/garbage ids -> blank
        tgt = torch.full((B, U1), blank, dtype=torch.long, device=dev)
        nu = min(U1 - 1, targets.size(1))
        if nu > 0:
            tgt[:, :nu] = targets[:, :nu].to(device=dev, dtype=torch.long)
        t_ar = torch.arange(T, device=dev)
        u_ar = torch.arange(U1, device=dev)
        valid_t = t_ar.unsqueeze(0) < tl.unsqueeze(1)  # (B, T)
        valid_u = u_ar.unsqueeze(0) <= ul.unsqueeze(1)  # (B, U1)
        has_label = u_ar.unsqueeze(0) < ul.unsqueeze(1)  # (B, U1)
        tgt = torch.where(has_label & (tgt >= 0) & (tgt < V), tgt, torch.full_like(tgt, blank))

        with torch.no_grad():
            lse = _logsumexp_lastdim(x)  # (B, T, U1), x.dtype
            blank_lp = (x[..., blank] - lse).to(lat)
            emit_lp = (torch.gather(x, 3, tgt.view(B, 1, U1, 1).expand(B, T, U1, 1)).squeeze(3) - lse).to(lat)
            valid = valid_t.unsqueeze(2) & valid_u.unsqueeze(1)  # (B, T, U1)
            zero = blank_lp.new_zeros(())
            blank_lp = torch.where(valid, blank_lp, zero)
            emit_lp = torch.where(valid, emit_lp, zero)

            # ---- alpha: incoming weights at (t,u): blank from (t-1,u), label from (t,u-1)
            w_row = torch.nn.functional.pad(blank_lp[:, :-1, :], (0, 0, 1, 0))
            w_col = torch.nn.functional.pad(emit_lp[:, :, :-1], (1, 0))
            alpha = _scan(w_row, w_col, blank_lp.new_zeros(B))

            bidx = torch.arange(B, device=dev)
            last_t = (tl - 1).clamp_(min=0)
            final_blank = blank_lp[bidx, last_t, ul]
            log_like = alpha[bidx, last_t, ul] + final_blank  # (B,)

            # ---- beta: the same recurrence on the per-sequence reversed lattice
            # t' = T_b-1-t, u' = U_b-u; the map is an involution on the valid region
            t_rev = (tl.unsqueeze(1) - 1 - t_ar.unsqueeze(0)).clamp_(0, T - 1)  # (B, T)
            u_rev = (ul.unsqueeze(1) - u_ar.unsqueeze(0)).clamp_(0, U1 - 1)  # (B, U1)
            b_rev = torch.where(valid, _flat_gather(blank_lp, t_rev, u_rev), zero)
            e_rev = torch.where(valid, _flat_gather(emit_lp, t_rev, u_rev), zero)
            beta_rev = _scan(b_rev, e_rev, final_blank)
            beta = _flat_gather(beta_rev, t_rev, u_rev)  # beta[b,t,u], valid region only

            # ---- transition occupancies (log), relative to log P
            ninf = blank_lp.new_full((), float("-inf"))
            # beta(t+1, u): -inf outside the lattice, 0 after the final blank
            beta_next_t = torch.nn.functional.pad(beta[:, 1:, :], (0, 0, 0, 1))
            ok_t = (t_ar.unsqueeze(0) + 1 < tl.unsqueeze(1)).unsqueeze(2) & valid_u.unsqueeze(1)
            beta_next_t = torch.where(ok_t, beta_next_t, ninf)
            beta_next_t[bidx, last_t, ul] = 0.0
            beta_next_u = torch.nn.functional.pad(beta[:, :, 1:], (0, 1))
            ok_u = valid_t.unsqueeze(2) & has_label.unsqueeze(1)
            beta_next_u = torch.where(ok_u, beta_next_u, ninf)
            alpha_rel = alpha - log_like.view(B, 1, 1)
            log_gb = alpha_rel + blank_lp + beta_next_t  # (B, T, U1), float64
            log_gy = alpha_rel + emit_lp + beta_next_u
            if fastemit_lambda != 0.0:
                log_gy = log_gy + math.log1p(fastemit_lambda)

        costs = -log_like
        ctx.save_for_backward(x, lse, log_gb, log_gy, tgt)
        ctx.blank = blank
        ctx.reduction = reduction
        ctx.in_dtype = logits.dtype
        if reduction == "mean":
            out = costs.sum() / B
        elif reduction == "sum":
            out = costs.sum()
        else:
            out = costs
        return out.to(logits.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, lse, log_gb, log_gy, tgt = ctx.saved_tensors
        B, T, U1, V = x.shape
        g = grad_out.to(torch.float64)
        if ctx.reduction == "mean":
            g = (g / B).expand(B)
        elif ctx.reduction == "sum":
            g = g.expand(B)
        g = g.view(B, 1, 1)
        positive = bool((g > 0).all())
        with torch.no_grad():
            if positive:  # fold the incoming gradient into the log-domain coefficients
                lg = g.log()
                log_gb = log_gb + lg
                log_gy = log_gy + lg
            log_gamma = torch.logaddexp(log_gb, log_gy)
            # gamma * softmax = exp(x - (lse - log gamma)), one pass over (B, T, U1, V)
            shift = (lse.to(torch.float64) - log_gamma).to(x.dtype)
            grad = _exp_sub_lastdim(x, shift)
            gb = log_gb.exp().to(x.dtype)
            gy = log_gy.exp().to(x.dtype)
            grad[..., ctx.blank] -= gb
            grad.scatter_add_(3, tgt.view(B, 1, U1, 1).expand(B, T, U1, 1), -gy.unsqueeze(3))
            if not positive:
                grad.mul_(g.to(x.dtype).unsqueeze(3))
        return grad.to(ctx.in_dtype), None, None, None, None, None, None


def rnnt_loss_pytorch(
    logits: torch.Tensor,
    targets: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int = 0,
    reduction: str = "mean",
    fastemit_lambda: float = 0.0,
) -> torch.Tensor:
    """Pure-PyTorch RNN-T loss (see module docstring); any device, float16/32/64 logits."""
    _check_inputs(logits, targets, logit_lengths, target_lengths, reduction)
    blank = _normalise_blank(blank, logits.size(-1))
    if int(target_lengths.max()) + 1 > logits.size(2):
        raise ValueError("logits.size(2) must be at least max(target_lengths) + 1")
    if int(logit_lengths.max()) > logits.size(1):
        raise ValueError("logits.size(1) must be at least max(logit_lengths)")
    if int(logit_lengths.min()) < 1:
        raise ValueError("every logit length must be >= 1")
    return _RNNTLossFunction.apply(
        logits, targets, logit_lengths, target_lengths, blank, reduction, float(fastemit_lambda)
    )


# --------------------------------------------------------------------------------------
# selection
# --------------------------------------------------------------------------------------
def resolve_impl(impl: str, device: torch.device, fastemit_lambda: float = 0.0) -> str:
    """Map ``"auto"`` to a concrete implementation for ``device``.

    ``auto``: the pure-PyTorch loss on CPU (several times faster than torchaudio's CPU kernel,
    see ``bench/rnnt_loss.py``), torchaudio's fused kernel on CUDA; pure PyTorch whenever
    FastEmit is on (torchaudio has none) or torchaudio's loss cannot be imported.
    """
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"RNN-T loss implementation must be one of {IMPLEMENTATIONS}, got {impl!r}")
    if impl == "torchaudio" and fastemit_lambda != 0.0:
        raise ValueError("torchaudio's rnnt_loss has no FastEmit; use impl='pytorch' or 'auto'")
    if impl != "auto":
        return impl
    if fastemit_lambda != 0.0:
        return "pytorch"
    if torch.device(device).type == "cuda" and torchaudio_available():
        return "torchaudio"
    return "pytorch"


def rnnt_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int = 0,
    reduction: str = "mean",
    fastemit_lambda: float = 0.0,
    impl: str = "auto",
) -> torch.Tensor:
    """RNN-T loss with ESPnet/warp-transducer semantics; ``impl`` in :data:`IMPLEMENTATIONS`."""
    which = resolve_impl(impl, logits.device, fastemit_lambda)
    if which == "torchaudio":
        return rnnt_loss_torchaudio(logits, targets, logit_lengths, target_lengths, blank, reduction)
    return rnnt_loss_pytorch(
        logits, targets, logit_lengths, target_lengths, blank, reduction, fastemit_lambda
    )


class RNNTLoss(torch.nn.Module):
    """Drop-in for ``warprnnt_pytorch.RNNTLoss``: same constructor and call signature.

    ``RNNTLoss(blank=0, reduction="mean", fastemit_lambda=0.0)(acts, labels, act_lens,
    label_lens)`` with ``acts`` the unnormalised ``(B, T, U+1, V)`` joint outputs.  ``impl``
    (extra, keyword only) picks the implementation; ``None`` reads it at call time from
    :func:`espnet_pathways.espnet_compat.default_impl` (``$ESPNET_PATHWAYS_RNNT_LOSS``).
    """

    def __init__(
        self,
        blank: int = 0,
        reduction: str = "mean",
        fastemit_lambda: float = 0.0,
        *,
        impl: Optional[str] = None,
    ):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.blank = blank
        self.reduction = reduction
        self.fastemit_lambda = float(fastemit_lambda)
        self.impl = impl

    def forward(self, acts, labels, act_lens, label_lens):
        impl = self.impl
        if impl is None:
            from espnet_pathways.espnet_compat import default_impl

            impl = default_impl()
        return rnnt_loss(
            acts,
            labels,
            act_lens,
            label_lens,
            blank=self.blank,
            reduction=self.reduction,
            fastemit_lambda=self.fastemit_lambda,
            impl=impl,
        )

    def extra_repr(self) -> str:
        return (
            f"blank={self.blank}, reduction={self.reduction!r}, "
            f"fastemit_lambda={self.fastemit_lambda}, impl={self.impl!r}"
        )
