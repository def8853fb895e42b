"""Decoder + softmax cross-entropy fused into one autograd function.

Mathematically the same loss and gradient as ``F.cross_entropy(decoder(x), y)``
(= log_softmax + nll_loss), computed with fewer passes over the (tokens x vocabulary)
logit matrix, which dominates a word-level LM step on the CPU:

* forward: logits, one fused softmax pass, the loss from the target probabilities
  (rows whose target probability underflows are recomputed stably), and the
  probabilities are kept for backward;
* backward: d loss / d logits = (p - onehot) / N is formed in place in that same
  buffer, so no log-softmax backward pass (which recomputes exp) and no zero-filled
  one-hot gradient of nll_loss are needed.
"""
from __future__ import annotations

import torch

_TINY = 1e-30


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                targets: torch.Tensor) -> torch.Tensor:
        logits = torch.addmm(bias, features, weight.t())
        probs = torch.softmax(logits, dim=1)  # one fused pass
        target_p = probs.gather(1, targets.unsqueeze(1)).squeeze(1)
        losses = -torch.log(target_p)
        # Where the target's probability underflows, -log(p) loses precision: recompute those
        # few rows stably as logsumexp - target logit (exactly what log_softmax would give).
        tiny = target_p < _TINY
        if bool(tiny.any()):
            rows = tiny.nonzero().squeeze(1)
            losses[rows] = torch.logsumexp(logits[rows], dim=1) - logits[rows, targets[rows]]
        ctx.save_for_backward(features, weight, probs, targets)
        return losses.mean()

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        features, weight, probs, targets = ctx.saved_tensors
        n = features.size(0)
        grad = probs  # reused in place: backward runs once (no retain_graph)
        grad.scatter_add_(1, targets.unsqueeze(1), torch.full((n, 1), -1.0, dtype=grad.dtype, device=grad.device))
        grad.mul_(grad_loss / n)
        grad_features = grad @ weight if ctx.needs_input_grad[0] else None
        grad_weight = grad.t() @ features if ctx.needs_input_grad[1] else None
        grad_bias = grad.sum(0) if ctx.needs_input_grad[2] else None
        return grad_features, grad_weight, grad_bias, None


def linear_cross_entropy(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                         targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``features @ weight.T + bias`` against ``targets``.

    Same value and gradients as ``F.cross_entropy(F.linear(features, weight, bias), targets)``.
    Under ``torch.no_grad`` / inference mode it still returns the loss.
    """
    return _LinearCrossEntropy.apply(features, weight, bias, targets)
