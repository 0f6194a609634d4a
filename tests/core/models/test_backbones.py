import pytest
import torch
from torch import nn

from momentum_ssl.core.models.backbones import build_backbone, count_parameters
from momentum_ssl.core.models.heads import mlp


@pytest.mark.parametrize("name,dim", [("resnet18", 512), ("resnet50", 2048), ("resnet_tiny", 128)])
def test_backbones_pool_to_their_dimension_with_four_stages(name, dim):
    backbone = build_backbone(name, width=16)
    assert backbone.num_stages == 4 and backbone.dim == dim
    assert backbone(torch.randn(2, 3, 32, 32)).shape == (2, dim)


def test_cifar_stem_keeps_resolution_and_imagenet_stem_quarters_it():
    cifar, imagenet = build_backbone("resnet18", cifar_stem=True), build_backbone(
        "resnet18", cifar_stem=False)
    x = torch.randn(2, 3, 32, 32)
    _, after_cifar_stem = cifar.forward_tap(x, 1)
    _, after_imagenet_stem = imagenet.forward_tap(x, 1)
    assert after_cifar_stem.shape == (2, 64, 32, 32)
    assert after_imagenet_stem.shape == (2, 64, 8, 8)
    assert cifar.blocks[0][0].kernel_size == (3, 3)
    assert not any(isinstance(m, nn.MaxPool2d) for m in cifar.blocks[0].modules())


def test_forward_tap_returns_the_input_of_a_block_and_the_last_map():
    backbone = build_backbone("resnet_tiny", width=8)
    x = torch.randn(2, 3, 16, 16)
    y, entry = backbone.forward_tap(x, 3)
    assert entry.shape == (2, 16, 8, 8)  # the output of stage 2
    y_last, last = backbone.forward_tap(x, 5)
    assert last.shape == (2, 64, 2, 2)
    torch.testing.assert_close(backbone.pool(last), y_last)
    torch.testing.assert_close(y, backbone(x))
    assert backbone.forward_tap(x, None)[1] is None


def test_tiny_width_shrinks_the_network():
    assert count_parameters(build_backbone("resnet_tiny", width=16)) * 12 < count_parameters(
        build_backbone("resnet18"))
    with pytest.raises(ValueError, match="unknown backbone 'vgg'"):
        build_backbone("vgg")
    with pytest.raises(ValueError, match="width must be a multiple of 8, got 4"):
        build_backbone("resnet_tiny", width=4)


def test_mlp_layouts():
    byol = mlp([8, 32, 4])
    assert [type(m).__name__ for m in byol] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    moco_v3 = mlp([8, 32, 32, 4], hidden_bias=False, last_bias=False, last_bn=True,
                  last_bn_affine=False)
    assert moco_v3[0].bias is None and moco_v3[-1].affine is False
    assert [type(m).__name__ for m in mlp([8, 32, 4], hidden_bn=False)] == ["Linear", "ReLU",
                                                                            "Linear"]
    with pytest.raises(ValueError, match="at least input and output"):
        mlp([8])


def test_simclr_projector_is_simclrs_code_unless_switched_off():
    """SimCLR's ProjectionHead (google-research/simclr tf2/model.py): hidden BatchNorm, then an
    output BatchNorm that scales but never shifts, after a Linear without bias; both switches
    off give solo-learn's Linear-ReLU-Linear."""
    import torch

    from momentum_ssl.core.methods.simclr import SimCLR, SimCLRConfig

    head = SimCLR(SimCLRConfig(proj_hidden=32, proj_out=4)).projector(8)
    assert [type(m).__name__ for m in head] == ["Linear", "BatchNorm1d", "ReLU", "Linear",
                                                "BatchNorm1d"]
    out_linear, out_bn = head[3], head[4]
    assert out_linear.bias is None and out_bn.affine
    assert not out_bn.bias.requires_grad and out_bn.weight.requires_grad
    optimizer = torch.optim.SGD([p for p in head.parameters() if p.requires_grad], lr=1.0,
                                weight_decay=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        (head(torch.randn(16, 8)) * torch.randn(16, 4)).sum().backward()
        optimizer.step()
    assert torch.equal(out_bn.bias, torch.zeros(4))  # no shift, after training too
    assert not torch.equal(out_bn.weight, torch.ones(4))  # the scale learns
    solo = SimCLR(SimCLRConfig(proj_hidden=32, proj_out=4, proj_hidden_bn=False,
                               proj_out_bn=False)).projector(8)
    assert [type(m).__name__ for m in solo] == ["Linear", "ReLU", "Linear"]
    assert solo[-1].bias is not None


@pytest.mark.parametrize("name", ["resnet18", "resnet_tiny"])
def test_zero_init_residual_starts_every_block_as_the_identity(name):
    from torchvision.models import resnet

    from momentum_ssl.core.models import backbones

    BasicBlock = resnet.BasicBlock if name == "resnet18" else backbones.BasicBlock
    backbone = build_backbone(name, width=8, zero_init_residual=True)
    blocks = [m for m in backbone.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 8 and all((b.bn2.weight == 0).all() for b in blocks)
    block = next(b for b in blocks if b.downsample is None)
    x = torch.rand(2, block.conv1.in_channels, 8, 8)  # non-negative, so relu(x + 0) == x
    torch.testing.assert_close(block(x), x)
    plain = build_backbone(name, width=8)
    assert all((m.bn2.weight == 1).all() for m in plain.modules() if isinstance(m, BasicBlock))


@pytest.mark.parametrize("cifar_stem", [True, False])
def test_resnet_tiny_blocks_are_torchvisions_bit_for_bit(monkeypatch, cifar_stem):
    # resnet_tiny's own BasicBlock (no torchvision import) against torchvision's: the same seed
    # gives the same weights, and a forward and backward the same bits
    from torchvision.models.resnet import BasicBlock as Theirs

    from momentum_ssl.core.models import backbones

    def build_and_step():
        torch.manual_seed(3)
        net = build_backbone("resnet_tiny", width=8, cifar_stem=cifar_stem)
        x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
        y = net(x)
        y.square().sum().backward()
        return net, y

    ours, y_ours = build_and_step()
    monkeypatch.setattr(backbones, "BasicBlock", Theirs)
    theirs, y_theirs = build_and_step()
    assert any(isinstance(m, Theirs) for m in theirs.modules())
    assert not any(isinstance(m, Theirs) for m in ours.modules())
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(),
                                                 theirs.state_dict().values()))
    assert torch.equal(y_ours, y_theirs)
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(ours.parameters(),
                                                           theirs.parameters()))


def test_building_resnet_tiny_does_not_import_torchvision():
    import subprocess
    import sys

    code = ("import sys; from momentum_ssl.core.models.backbones import build_backbone; "
            "build_backbone('resnet_tiny', width=8); print('torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False"]
