"""What every backbone is: a sequence of blocks (the stem, then the stages) and a pooling
function; the ResNets (backbones.py) and the ViTs (vit.py) build one."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def average_pool(h: Tensor) -> Tensor:
    """A ResNet's pooled feature: (N, C, H, W) -> (N, C)."""
    return F.adaptive_avg_pool2d(h, 1).flatten(1)


class Backbone(nn.Module):
    """``blocks[0]`` is the stem, ``blocks[1:]`` the stages; ``dim`` the pooled feature size;
    ``pool`` a parameter-free function of the last block's output (a teacher that owns the
    last blocks pools its own output with it)."""

    def __init__(self, stem: nn.Module, stages: list[nn.Module], dim: int,
                 pool=average_pool):
        super().__init__()
        self.blocks = nn.ModuleList([stem, *stages])
        self.dim = dim
        self.pool = pool

    @property
    def num_stages(self) -> int:
        return len(self.blocks) - 1

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) -> pooled features (N, dim)."""
        return self.forward_tap(x, None)[0]

    def forward_tap(self, x: Tensor, tap: int | None) -> tuple[Tensor, Tensor | None]:
        """Pooled features and the input of ``blocks[tap]`` (``tap == len(blocks)``: the last
        feature map), which a partial teacher continues from."""
        entry = None
        for i, block in enumerate(self.blocks):
            if i == tap:
                entry = x
            x = block(x)
        if tap == len(self.blocks):
            entry = x
        return self.pool(x), entry
