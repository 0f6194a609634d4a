"""Backbones as a sequence of blocks: the stem, then S stages, then pooling. ResNets here
(global average pooling), ViTs in vit.py (the class token).

Exposing the blocks lets the momentum scope ``last_k`` run a teacher over the last k stages only
(fed with the student's activations entering them) and lets telemetry hook each stage's output.
``cifar_stem`` replaces the 7x7/2 convolution and max-pool by one 3x3/1 convolution, as for
32x32 images in SimCLR's CIFAR experiments (Chen et al., 2020, appendix B.9).
"""

from __future__ import annotations


from torch import Tensor, nn

from .base import Backbone, average_pool  # noqa: F401 (the ResNets' pooling; imported from here)

# torchvision is imported where it is used: `import torchvision` loads every model family
# (about 2 s), which every stage process would pay.

NAMES = ("resnet18", "resnet50", "resnet_tiny", "vit_tiny", "vit_small")


def _cifar_stem(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                         nn.ReLU(inplace=True))


def _torchvision(name: str, cifar_stem: bool, zero_init_residual: bool = False) -> Backbone:
    from torchvision.models import resnet

    net = getattr(resnet, name)(weights=None, zero_init_residual=zero_init_residual)
    stem = (_cifar_stem(64) if cifar_stem else
            nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool))
    return Backbone(stem, [net.layer1, net.layer2, net.layer3, net.layer4], net.fc.in_features)


class BasicBlock(nn.Module):
    """ResNet's basic block (He et al., 2016): two 3x3 convolutions with BatchNorm, the input
    (or ``downsample`` of it) added before the last ReLU. The same modules, registered in the
    same order and computed in the same order as torchvision's ``BasicBlock``, so the same
    seed draws the same weights and a step computes the same bits
    (tests/core/models/test_backbones.py); defined here so that a ``resnet_tiny`` stage does not
    import torchvision (1.5 s, every model family, in each stage's process)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


def _stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                   nn.BatchNorm2d(planes))
    layers = [BasicBlock(inplanes, planes, stride, downsample)]
    layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def resnet_tiny(width: int = 16, cifar_stem: bool = True,
                zero_init_residual: bool = False) -> Backbone:
    """ResNet-18's layout (BasicBlocks 2-2-2-2) at ``width`` base channels instead of 64: for
    CPU-sized runs (width 16 has 1/16 of the multiply-adds). ``width`` must be a multiple of 8:
    on the CPU, oneDNN's channels_last convolution backward (torch 2.14.1) corrupts the heap
    for narrower layers (seen at widths 4 and 6, as aborts at a later free)."""
    if width < 8 or width % 8:
        raise ValueError(f"resnet_tiny width must be a multiple of 8, got {width} (narrower "
                         "channels_last convolutions corrupt memory in oneDNN on the CPU)")
    stem = (_cifar_stem(width) if cifar_stem else nn.Sequential(
        nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1)))
    widths = [width, 2 * width, 4 * width, 8 * width]
    stages = [_stage(width if i == 0 else widths[i - 1], w, 2, 1 if i == 0 else 2)
              for i, w in enumerate(widths)]
    backbone = Backbone(stem, stages, widths[-1])
    for m in backbone.modules():  # torchvision's ResNet initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:  # as torchvision's: each block starts as the identity
        for m in backbone.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)
    return backbone


def build_backbone(name: str, width: int = 16, cifar_stem: bool = True,
                   zero_init_residual: bool = False, *, patch_size: int = 16,
                   image_size: int = 224, freeze_patch_embed: bool = False,
                   drop_path: float = 0.0, heads: int | None = None,
                   pos_embed: str = "learned") -> Backbone:
    """``zero_init_residual``: the last BatchNorm of every residual block starts at weight 0
    (Goyal et al., 2017), as SimSiam, Barlow Twins, VICReg and UniGrad set it (ResNets).
    ``patch_size``, ``image_size``, ``freeze_patch_embed``, ``drop_path``, ``heads``,
    ``pos_embed``: ViTs only (vit.py)."""
    if name.startswith("vit_"):
        from .vit import vit

        return vit(name, patch_size, image_size, freeze_patch_embed, drop_path, heads,
                   pos_embed)
    if drop_path:
        raise ValueError(f"stochastic depth is implemented for the ViTs only, not {name}")
    if name == "resnet_tiny":
        return resnet_tiny(width, cifar_stem, zero_init_residual)
    if name in ("resnet18", "resnet50"):
        return _torchvision(name, cifar_stem, zero_init_residual)
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(NAMES)}")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def backbone_from_config(model, size: int) -> Backbone:
    """The backbone a ``model`` section (:class:`~momentum_ssl.config.ModelConfig`) describes,
    for views of ``size`` pixels (``augment.size``; a ViT's ``model.image_size`` when set)."""
    return build_backbone(model.backbone, model.width, model.cifar_stem,
                          model.zero_init_residual, patch_size=model.patch_size,
                          image_size=model.image_size or size,
                          freeze_patch_embed=model.freeze_patch_embed,
                          drop_path=model.drop_path, heads=model.heads,
                          pos_embed=model.pos_embed)


__all__ = ["Backbone", "NAMES", "average_pool", "backbone_from_config", "build_backbone",
           "count_parameters", "resnet_tiny"]
