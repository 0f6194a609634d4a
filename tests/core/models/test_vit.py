"""ViT backbones: shapes, the position embedding at other sides, and every momentum scope."""

import pytest
import torch
from torch import nn

from momentum_ssl.core.learner import Learner
from momentum_ssl.core.methods import build_method
from momentum_ssl.core.methods.byol import BYOLConfig
from momentum_ssl.core.models.backbones import build_backbone, count_parameters
from momentum_ssl.core.models.vit import LastBlocksTokens, class_token
from momentum_ssl.core.momentum import residual_momentum_loss
from momentum_ssl.analysis.telemetry import StabilityMonitor


def tiny_vit(**kwargs):
    torch.manual_seed(0)
    return build_backbone("vit_tiny", patch_size=4, image_size=16, **kwargs)


def test_vit_sizes_match_timm_and_blocks_are_patch_embedding_then_twelve_blocks():
    # timm's vit_tiny_patch16_224 has 5,717,416 parameters with its 1000-class head
    # (192 * 1000 + 1000 = 193,000), 5,524,416 without
    backbone = build_backbone("vit_tiny", patch_size=16, image_size=224)
    assert count_parameters(backbone) == 5_524_416
    small = build_backbone("vit_small", patch_size=16, image_size=224)
    assert count_parameters(small) == 21_665_664  # timm's vit_small_patch16_224, num_classes=0
    assert backbone.num_stages == 12 and backbone.dim == 192 and small.dim == 384


def test_forward_pools_the_normed_class_token_and_tap_gives_tokens():
    backbone = tiny_vit()
    x = torch.randn(3, 3, 16, 16)
    y, entry = backbone.forward_tap(x, 5)
    assert y.shape == (3, 192) and entry.shape == (3, 1 + 16, 192)  # 4x4 patches + class
    h = entry
    for block in backbone.blocks[5:]:
        h = block(h)
    torch.testing.assert_close(class_token(h), y)
    # the final LayerNorm (no affine change at init): the class token has mean 0, variance 1
    torch.testing.assert_close(y.mean(1), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(1, unbiased=False), torch.ones(3), atol=1e-3, rtol=0)


def test_last_blocks_tokens_are_dinos_normed_class_tokens_of_the_last_blocks():
    """DINO's eval_linear.py: ``get_intermediate_layers(x, n)`` (each of the last n blocks'
    outputs through the final norm), their class tokens concatenated; with avgpool the last
    one's class token and mean patch token, concatenated on a new last axis and flattened."""
    backbone = tiny_vit().eval()
    with torch.no_grad():  # a final norm that is not the identity, so that skipping it shows
        backbone.blocks[-1].norm.weight.uniform_(0.5, 2.0)
        backbone.blocks[-1].norm.bias.uniform_(-1.0, 1.0)
    x = torch.randn(3, 3, 16, 16)
    hidden, h = [], x
    for block in backbone.blocks:
        h = block(h)
        hidden.append(h)
    norm = backbone.blocks[-1].norm
    normed = [norm(h) for h in hidden[-4:-1]] + [hidden[-1]]  # the last block norms its own
    with torch.no_grad():
        torch.testing.assert_close(LastBlocksTokens(backbone, 1)(x), backbone(x))
        four = LastBlocksTokens(backbone, 4)(x)
        torch.testing.assert_close(four, torch.cat([t[:, 0] for t in normed], dim=-1))
        assert four.shape == (3, 4 * 192)
        pooled = LastBlocksTokens(backbone, 1, avgpool=True)(x)
        dino = torch.cat((hidden[-1][:, 0].unsqueeze(-1),
                          hidden[-1][:, 1:].mean(dim=1).unsqueeze(-1)), dim=-1).reshape(3, -1)
        torch.testing.assert_close(pooled, dino)
    with pytest.raises(ValueError, match="a ViT's"):
        LastBlocksTokens(build_backbone("resnet_tiny", width=8), 4)
    with pytest.raises(ValueError, match=r"n must be in \[1, 12\]"):
        LastBlocksTokens(backbone, 13)
    with pytest.raises(ValueError, match="avgpool goes with n = 1"):
        LastBlocksTokens(backbone, 4, avgpool=True)


def test_other_sides_resample_the_position_embedding():
    backbone = tiny_vit()
    stem = backbone.blocks[0]
    assert stem(torch.randn(2, 3, 8, 8)).shape == (2, 1 + 4, 192)  # a local crop: 2x2 patches
    torch.testing.assert_close(stem.position(4, 4), stem.pos_embed)
    # resampling a grid to its own size is the identity; to 2x2, the class position is kept
    two = stem.position(2, 2)
    torch.testing.assert_close(two[:, 0], stem.pos_embed[:, 0])
    assert backbone(torch.randn(2, 3, 8, 8)).shape == (2, 192)


def test_frozen_patch_embedding_is_moco_v3s_uniform_init_without_gradients():
    backbone = tiny_vit(freeze_patch_embed=True)
    proj = backbone.blocks[0].proj
    bound = (6 / (3 * 16 + 192)) ** 0.5
    assert not proj.weight.requires_grad and not proj.bias.requires_grad
    assert proj.weight.abs().max() <= bound and proj.weight.abs().max() > 0.9 * bound
    assert backbone.blocks[0].pos_embed.requires_grad


def learner(scope, k=1, residual=0.0):
    method = build_method("byol", BYOLConfig(proj_hidden=16, proj_out=8, pred_hidden=16))
    return Learner(tiny_vit(), method, scope, k, residual)


def owned(learner):
    """Ids of the student's parameters whose EMA copy the teacher holds."""
    return {id(p) for s, _ in learner.teacher.pairs for p in s.parameters()}


@pytest.mark.parametrize("scope, k, first", [("full", 1, 0), ("last_k", 1, 12),
                                             ("last_k", 11, 2), ("projector", 1, 13)])
def test_every_scope_owns_the_right_blocks(scope, k, first):
    model = learner(scope, k)
    blocks = model.backbone.blocks
    assert model.teacher.start == first and len(model.teacher.blocks) == 13 - first
    ids = owned(model)
    for i, block in enumerate(blocks):
        assert all((id(p) in ids) == (i >= first) for p in block.parameters()), i
    assert all(id(p) in ids for p in model.projector.parameters())
    assert not any(id(p) in ids for p in model.predictor.parameters())
    if first <= 12:  # the final norm travels with the last block
        assert model.teacher.blocks[-1].norm is not None
    x1, x2 = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    with torch.no_grad():  # teacher = student at the start: its outputs are the student's
        _, logs = model(x1, x2)
    assert float(logs["gap_backbone"]) < 1e-5 and float(logs["gap_projector"]) < 1e-5


def test_last_k_bounds_are_the_transformer_blocks():
    with pytest.raises(ValueError, match=r"1 <= k <= 11 for a backbone of 12 stages, got k=12"):
        learner("last_k", 12)


def test_residual_term_is_the_gap_between_student_and_teacher_on_the_same_view():
    model = learner("last_k", 3, residual=0.5)
    with torch.no_grad():  # move the teacher away from the student
        for p in model.teacher.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x1, x2 = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    loss, logs = model(x1, x2)
    gaps = []
    for x in (x1, x2):
        y, entry = model.backbone.forward_tap(x, model.teacher.start)
        _, z_t = model.teacher(entry)
        gaps.append(residual_momentum_loss(model.projector(y), z_t))
    gap = (gaps[0] + gaps[1]) / 2
    torch.testing.assert_close(logs["residual"], gap.detach())
    assert gap.item() > 1e-4
    loss.backward()
    # the residual term trains the student's blocks, the teacher's EMA copies get no gradient
    assert model.backbone.blocks[1].attn.qkv.weight.grad is not None
    assert all(p.grad is None for p in model.teacher.parameters())


def test_ema_moves_only_the_owned_blocks_and_telemetry_hooks_every_block():
    model = learner("last_k", 2)
    monitor = StabilityMonitor.attach(model)
    assert monitor.names == ["stem", *[f"stage{i}" for i in range(1, 13)], "projector"]
    loss, _ = model(torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16))
    loss.backward()
    monitor.step()
    norms = monitor.latest()
    assert all(norms[name] > 0 for name in monitor.names)
    before = {n: t.clone() for n, t in model.teacher.named_parameters()}
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(1.0)
    model.update_teacher(0.5)
    after = dict(model.teacher.named_parameters())
    # teacher block j copies student block 11 + j: halfway between its old self and the moved
    # student; the projector's EMA copy stays (its student did not move)
    for name, value in after.items():
        if name.startswith("blocks."):
            _, j, rest = name.split(".", 2)
            student = model.backbone.blocks[11 + int(j)].get_parameter(rest)
            torch.testing.assert_close(value, (before[name] + student) / 2)
        else:
            torch.testing.assert_close(value, before[name], rtol=0, atol=1e-7)
    monitor.remove()


def test_the_teacher_pools_with_the_backbones_pool():
    model = learner("full")
    assert model.teacher.pool is class_token
    assert isinstance(model.teacher.blocks[0], nn.Module)


def test_drop_path_rates_rise_linearly_over_the_blocks_and_eval_never_drops():
    backbone = tiny_vit(drop_path=0.1)
    rates = [block.drop_path for block in backbone.blocks[1:]]
    assert rates == pytest.approx(torch.linspace(0, 0.1, 12).tolist())  # DINO's and timm's
    x = torch.randn(3, 3, 16, 16)
    backbone.eval()
    reference = tiny_vit().eval()
    reference.load_state_dict(backbone.state_dict())  # no parameters of its own
    assert torch.equal(backbone(x), reference(x))


def test_drop_path_drops_whole_samples_and_keeps_the_expectation():
    from momentum_ssl.core.models.vit import drop_path

    x = torch.ones(20_000, 3, 4)
    out = drop_path(x, 0.25, training=True)
    per_sample = out.flatten(1)
    assert per_sample.unique().tolist() == pytest.approx([0.0, 1 / 0.75])  # dropped whole
    assert (per_sample.std(1) == 0).all()
    assert per_sample.mean().item() == pytest.approx(1.0, abs=0.02)
    assert drop_path(x, 0.25, training=False) is x


def test_a_zero_drop_path_draws_no_random_numbers():
    """So a ViT run without stochastic depth trains as it did before the setting existed."""
    backbone = tiny_vit().train()
    state = torch.get_rng_state()
    backbone(torch.zeros(2, 3, 16, 16))
    assert torch.equal(state, torch.get_rng_state())
    with_drop = tiny_vit(drop_path=0.1).train()
    state = torch.get_rng_state()  # after its construction, which reseeds and draws weights
    with_drop(torch.zeros(2, 3, 16, 16))
    assert not torch.equal(state, torch.get_rng_state())


def test_resnets_reject_drop_path():
    from momentum_ssl.config import ConfigError, ModelConfig

    with pytest.raises(ConfigError, match="drop_path: stochastic depth is implemented for the "
                                          "ViT backbones only"):
        ModelConfig(backbone="resnet_tiny", drop_path=0.1)
    with pytest.raises(ValueError, match="ViTs only"):
        build_backbone("resnet_tiny", 8, drop_path=0.1)


def test_the_teacher_never_drops_paths():
    """DINO builds its teacher without stochastic depth (main_dino.py): its targets are the
    same for the same input, in training too."""
    from momentum_ssl.core.momentum import Teacher

    backbone = tiny_vit(drop_path=0.5)
    teacher = Teacher(backbone, nn.Identity(), start=0).train()
    assert all(b.drop_path == 0.0 for b in teacher.blocks[1:])  # [0]: the patch embedding
    assert backbone.blocks[-1].drop_path == 0.5  # the student keeps its own
    x = torch.randn(4, 3, 16, 16)
    assert torch.equal(teacher(x)[0], teacher(x)[0])


def moco_v3_sincos(h: int, w: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """moco-v3's vits.py ``build_2d_sincos_position_embedding``, step for step (meshgrid of
    its w then h ranges, 'ij'), as a reference for ours."""
    grid_w, grid_h = torch.meshgrid(torch.arange(w, dtype=torch.float32),
                                    torch.arange(h, dtype=torch.float32), indexing="ij")
    pos_dim = dim // 4
    omega = 1.0 / temperature ** (torch.arange(pos_dim, dtype=torch.float32) / pos_dim)
    out_w = torch.einsum("m,d->md", grid_w.flatten(), omega)
    out_h = torch.einsum("m,d->md", grid_h.flatten(), omega)
    pos = torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], dim=1)[None]
    return torch.cat([torch.zeros(1, 1, dim), pos], dim=1)


def test_moco_v3s_vit_small_has_twelve_heads_and_a_fixed_sincos_position_embedding():
    from momentum_ssl.core.models.vit import sincos_position_embedding

    assert torch.equal(sincos_position_embedding(14, 384), moco_v3_sincos(14, 14, 384))
    moco = build_backbone("vit_small", patch_size=16, image_size=224, heads=12,
                          pos_embed="sincos", freeze_patch_embed=True)
    deit = build_backbone("vit_small", patch_size=16, image_size=224)
    assert {b.attn.heads for b in moco.blocks[1:]} == {12}
    assert {b.attn.heads for b in deit.blocks[1:]} == {6}
    stem = moco.blocks[0]
    assert not stem.pos_embed.requires_grad and torch.equal(stem.pos_embed.detach(),
                                                            moco_v3_sincos(14, 14, 384))
    # the heads split the same width: timm's size; trainable: less the embedding and projection
    assert count_parameters(moco) == count_parameters(deit) == 21_665_664
    frozen = stem.pos_embed.numel() + sum(p.numel() for p in stem.proj.parameters())
    assert sum(p.numel() for p in moco.parameters() if p.requires_grad) == 21_665_664 - frozen


def test_a_fixed_position_embedding_never_changes_in_training_nor_in_the_teacher():
    method = build_method("byol", BYOLConfig(proj_hidden=16, proj_out=8, pred_hidden=16))
    torch.manual_seed(0)
    learner = Learner(build_backbone("vit_tiny", patch_size=4, image_size=16, heads=4,
                                     pos_embed="sincos"), method, "full")
    fixed = learner.backbone.blocks[0].pos_embed.detach().clone()
    optimizer = torch.optim.AdamW([p for p in learner.parameters() if p.requires_grad], 1e-2)
    x = torch.rand(4, 3, 16, 16)
    for _ in range(2):
        loss, _ = learner(x, x.flip(3))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        learner.update_teacher(0.9)
    assert torch.equal(learner.backbone.blocks[0].pos_embed, fixed)
    copies = [t for name, t in [*learner.teacher.named_parameters(),
                                *learner.teacher.named_buffers()] if name.endswith("pos_embed")]
    assert copies and all(torch.equal(t.detach(), fixed) for t in copies)


def test_the_vit_profiles_recipes_build_each_references_vit(tmp_path):
    from momentum_ssl.config import load_params, resolve
    from momentum_ssl.core.models.backbones import backbone_from_config
    from conftest import REPO

    params = load_params(REPO / "params/imagenet100_vit_small.yaml")
    for method, heads, fixed in (("mocov3", 12, True), ("dino", 6, False)):
        run = next(r for r in params.grid if r.method == method)
        model = resolve(params, run).model
        assert (model.heads, model.pos_embed == "sincos") == (heads, fixed)
        backbone = backbone_from_config(model, 224)
        assert backbone.blocks[1].attn.heads == heads
        assert backbone.blocks[0].pos_embed.requires_grad is not fixed
        assert backbone.blocks[0].proj.weight.requires_grad is not fixed


@pytest.mark.parametrize("model, message", [
    ({"backbone": "resnet18", "heads": 12}, "heads: must be null, or >= 1 for a ViT"),
    ({"backbone": "resnet18", "pos_embed": "sincos"}, "pos_embed: sincos is a ViT's"),
    ({"backbone": "vit_small", "heads": 5}, "heads: vit_small's width 384 must divide")])
def test_vit_options_are_refused_where_they_cannot_apply(model, message):
    from momentum_ssl.config import ConfigError, ModelConfig

    with pytest.raises(ConfigError, match=message):
        ModelConfig(**model)
