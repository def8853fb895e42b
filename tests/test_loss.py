"""The fused decoder + cross-entropy equals log_softmax + nll_loss in value and gradients."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lstmscope.loss import linear_cross_entropy


def _reference_and_fused(features, weight, bias, targets):
    grads = []
    for fn in (lambda f, w, b: F.nll_loss(F.log_softmax(F.linear(f, w, b), dim=1), targets),
               lambda f, w, b: linear_cross_entropy(f, w, b, targets)):
        f, w, b = (t.detach().clone().requires_grad_(True) for t in (features, weight, bias))
        loss = fn(f, w, b)
        (loss * 3.0).backward()  # a non-unit upstream gradient
        grads.append((loss.detach(), f.grad, w.grad, b.grad))
    return grads


@pytest.mark.parametrize("scale", [1.0, 40.0], ids=["ordinary", "underflowing-targets"])
def test_value_and_gradients_match_log_softmax_nll(scale):
    g = torch.Generator().manual_seed(0)
    features = torch.randn(70, 16, generator=g, dtype=torch.float64) * scale
    weight = torch.randn(300, 16, generator=g, dtype=torch.float64)
    bias = torch.randn(300, generator=g, dtype=torch.float64)
    targets = torch.randint(0, 300, (70,), generator=g)
    ref, fused = _reference_and_fused(features, weight, bias, targets)
    if scale > 1:  # some target probabilities are far below 1e-30: the stable path must be taken
        p = torch.softmax(F.linear(features, weight, bias), 1).gather(1, targets[:, None])
        assert (p < 1e-30).any()
    for a, b in zip(ref, fused):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)


def test_float32_matches_within_rounding():
    g = torch.Generator().manual_seed(1)
    features, weight = torch.randn(700, 64, generator=g), torch.randn(10000, 64, generator=g) * 0.1
    bias, targets = torch.zeros(10000), torch.randint(0, 10000, (700,), generator=g)
    ref, fused = _reference_and_fused(features, weight, bias, targets)
    for a, b in zip(ref, fused):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
