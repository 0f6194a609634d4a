"""Projector and predictor MLPs. Each method's file states which layout its paper uses."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def mlp(dims: Sequence[int], *, hidden_bn: bool = True, hidden_bias: bool = True,
        last_bn: bool = False, last_bn_affine: bool = True, last_bias: bool = True,
        last_bn_center: bool = True) -> nn.Sequential:
    """Linear layers through ``dims`` (input, hidden..., output). Hidden layers: Linear,
    optional BatchNorm, ReLU. The last: Linear, optional BatchNorm (e.g. MoCo v3's
    affine-free one; ``last_bn_center=False``: a scale but no shift, SimCLR's). ``mlp([512,
    4096, 256])`` is BYOL's projector on a ResNet-18."""
    if len(dims) < 2:
        raise ValueError(f"an MLP needs at least input and output sizes, got {list(dims)}")
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        layers.append(nn.Linear(d_in, d_out, bias=last_bias if last else hidden_bias))
        if last:
            if last_bn:
                norm = nn.BatchNorm1d(d_out, affine=last_bn_affine)
                if last_bn_affine and not last_bn_center:
                    norm.bias.requires_grad_(False)  # stays 0: no shift to learn
                layers.append(norm)
        else:
            if hidden_bn:
                layers.append(nn.BatchNorm1d(d_out))
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)
