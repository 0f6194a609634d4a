import math

import numpy as np
import pytest
import torch
from torch import nn

from momentum_ssl.analysis.telemetry import StabilityMonitor, block_names

class Scale(nn.Module):
    def forward(self, x):
        return 2 * x

def test_block_names_follow_the_backbone_then_the_projector():
    assert block_names(4) == ["stem", "stage1", "stage2", "stage3", "stage4", "projector"]

def test_norms_cover_every_call_of_a_step_and_the_statistics_match_numpy():
    a, b = Scale(), Scale()
    monitor = StabilityMonitor({"a": a, "b": b})
    expected = []
    for scale in (1.0, 3.0, 2.0, 5.0):
        x1 = torch.ones(4, requires_grad=True)
        x2 = torch.ones(4, requires_grad=True)
        # block a runs on two views; dL/d a(x) = scale for every element of both outputs
        loss = scale * (a(x1).sum() + a(x2).sum()) + b(x1).pow(2).sum()
        loss.backward()
        monitor.step()
        # b's output is 2 everywhere: dL/d b = 2 * b(x1) = 4 for each of 4 elements
        expected.append([scale * math.sqrt(8), 8.0])
    assert monitor.latest() == pytest.approx({"a": expected[-1][0], "b": expected[-1][1]})
    g = np.array(expected)
    summary = monitor.summary()
    for j, name in enumerate("ab"):
        cv = g[:, j].std() / g[:, j].mean()
        change = np.mean(np.abs(np.diff(g[:, j])) / g[:-1, j])
        assert summary[name]["cv"] == pytest.approx(cv)
        assert summary[name]["rel_change"] == pytest.approx(change)
        assert summary[name]["grad_norm"] == pytest.approx(g[:, j].mean())

def test_state_round_trips_so_a_resumed_run_keeps_its_statistics():

    a = Scale()
    first = StabilityMonitor({"a": a})
    for scale in (1.0, 2.0):
        (scale * a(torch.ones(3, requires_grad=True)).sum()).backward()
        first.step()
    state = first.state_dict()
    first.remove()
    second = StabilityMonitor({"a": a})
    second.load_state_dict(state)
    (4.0 * a(torch.ones(3, requires_grad=True)).sum()).backward()
    second.step()
    g = np.array([1.0, 2.0, 4.0]) * math.sqrt(3)
    assert second.summary()["a"]["cv"] == pytest.approx(g.std() / g.mean())
    assert second.summary()["a"]["rel_change"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="stability state is for blocks"):
        StabilityMonitor({"b": a}).load_state_dict(state)
