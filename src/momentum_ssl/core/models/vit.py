"""Vision Transformers (Dosovitskiy et al., 2021, arXiv 2010.11929) as a sequence of blocks.

The same :class:`~momentum_ssl.core.models.backbones.Backbone` as the ResNets: ``blocks[0]``, the
"stem", is the patch embedding (a p x p stride-p convolution, the class token prepended, the
position embedding added), ``blocks[1..depth]`` the transformer blocks (pre-norm attention and
MLP, each with a residual). The final LayerNorm sits inside the last block, so that every scope
works unchanged: ``last_k`` owns the last k transformer blocks and the final norm, ``projector``
continues from sg(the normed tokens), and the pooled feature is the normed class token, as in
DINO's and timm's ViT (``pool='token'``). Tokens between blocks are (N, 1 + L, dim).

Sizes as timm's ``vit_tiny_patch16_224`` (dim 192, 3 heads) and ``vit_small_patch16_224`` (dim
384, 6 heads), depth 12, MLP ratio 4, qkv bias, LayerNorm eps 1e-6; the module names inside a
block are timm's (``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``),
so export.py maps our state dict onto timm's names by renaming the block index only.
Initialisation as timm's default: truncated normal (std 0.02) for Linear weights and the position
embedding, zero biases, the class token N(0, 1e-6).

MoCo v3's ViT-Small is not DeiT's (its ``vits.py``, facebookresearch/moco-v3 at c349e6e2):
12 heads instead of 6 and a fixed 2-D sin-cos position embedding (``heads`` and
``pos_embed="sincos"`` here), and with ``--stop-grad-conv1`` a frozen random patch projection
(``freeze_patch_embed``). Its other Linear layers start from Xavier-uniform, not timm's truncated
normal; that is not reproduced.

An image of another side than ``image_size`` (DINO's local crops) gets the position embedding
resampled to its grid (bicubic to the exact size, as timm's ``resample_abs_pos_embed``; DINO's
``interpolate_pos_encoding`` samples at (grid + 0.1) / grid instead, slightly other values).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Backbone

# name: (embed dim, depth, heads), timm's vision_transformer.py
VITS = {"vit_tiny": (192, 12, 3), "vit_small": (384, 12, 6)}


def sincos_position_embedding(grid: int, dim: int, temperature: float = 10000.0) -> Tensor:
    """MoCo v3's fixed 2-D sin-cos position embedding of a ``grid`` x ``grid`` patch grid,
    (1, 1 + grid^2, dim), the class token's row zero (``build_2d_sincos_position_embedding``):
    a quarter of the channels each for sin and cos of the row index, then of the column
    index, times frequencies temperature^(-k / (dim / 4)), k = 0 .. dim / 4 - 1."""
    if dim % 4:
        raise ValueError(f"a 2-D sin-cos position embedding needs dim divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float32),
                                torch.arange(grid, dtype=torch.float32), indexing="ij")
    out_r = rows.flatten()[:, None] * omega[None]  # (grid^2, dim / 4): token t = r * grid + c
    out_c = cols.flatten()[:, None] * omega[None]
    table = torch.cat([out_r.sin(), out_r.cos(), out_c.sin(), out_c.cos()], dim=1)
    return torch.cat([torch.zeros(1, dim), table])[None]


class PatchEmbed(nn.Module):
    """(N, 3, H, W) -> tokens (N, 1 + (H // p) * (W // p), dim): the class token, then one token
    per patch, each plus its position embedding: learned (timm's, DeiT's, DINO's) or MoCo v3's
    fixed sin-cos (``pos_embed="sincos"``: a parameter without gradient, as moco-v3's)."""

    def __init__(self, dim: int, patch_size: int, image_size: int, pos_embed: str = "learned"):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image size {image_size} must be a multiple of the patch size "
                             f"{patch_size}")
        if pos_embed not in ("learned", "sincos"):
            raise ValueError(f"pos_embed must be learned or sincos, got {pos_embed!r}")
        self.patch_size, self.grid = patch_size, image_size // patch_size
        self.proj = nn.Conv2d(3, dim, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        if pos_embed == "sincos":
            self.pos_embed = nn.Parameter(sincos_position_embedding(self.grid, dim),
                                          requires_grad=False)
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid ** 2, dim))

    def position(self, h: int, w: int) -> Tensor:
        """The position embedding for an (h, w) patch grid, (1, 1 + h * w, dim)."""
        if h == w == self.grid:
            return self.pos_embed
        cls, grid = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        dim = grid.shape[-1]
        grid = grid.reshape(1, self.grid, self.grid, dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, h * w, dim)], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x)  # N x dim x h x w
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)  # N x hw x dim
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1)
        return x + self.position(h, w)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        n, length, dim = x.shape
        qkv = self.qkv(x).reshape(n, length, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each N x heads x L x dim/heads
        x = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        return self.proj(x.transpose(1, 2).reshape(n, length, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


def drop_path(x: Tensor, rate: float, training: bool) -> Tensor:
    """Stochastic depth on a residual branch's output ``x`` (N, ...): in training each sample's
    branch is zeroed with probability ``rate`` and the kept ones scaled by 1 / (1 - rate), so
    that its expectation is ``x``; the identity in evaluation or at rate 0 (no draw then)."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = torch.rand((len(x),) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device) < keep
    return x * mask / keep


class Block(nn.Module):
    """x + attn(norm1(x)), then + mlp(norm2(x)), each branch under stochastic depth at
    ``drop_path`` in training; ``final_norm``: the ViT's last LayerNorm after it (the last block
    only)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, final_norm: bool = False,
                 drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm = nn.LayerNorm(dim, eps=1e-6) if final_norm else None
        self.drop_path = drop_path

    def forward(self, x: Tensor) -> Tensor:
        x = x + drop_path(self.attn(self.norm1(x)), self.drop_path, self.training)
        x = x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)
        return self.norm(x) if self.norm is not None else x


def class_token(h: Tensor) -> Tensor:
    """The pooled feature of a ViT: the (normed) class token, (N, 1 + L, dim) -> (N, dim)."""
    return h[:, 0]


class LastBlocksTokens(nn.Module):
    """DINO's linear-evaluation features of a ViT (``eval_linear.py`` through its
    ``get_intermediate_layers``): the class tokens of the last ``n`` transformer blocks, each
    through the final LayerNorm, concatenated in block order, (N, n * dim); ``n = 1`` is the
    backbone's pooled feature. With ``avgpool`` (``n = 1`` only: DINO's ViT-B setting) the class
    token and the mean of the normed patch tokens, interleaved element by element as DINO's
    ``cat(..., dim=-1).reshape`` leaves them, (N, 2 * dim)."""

    def __init__(self, backbone: Backbone, n: int = 1, avgpool: bool = False):
        super().__init__()
        if backbone.pool is not class_token:
            raise ValueError("the class tokens of the last blocks are a ViT's; this backbone "
                             "pools another way")
        if not 1 <= n <= backbone.num_stages:
            raise ValueError(f"n must be in [1, {backbone.num_stages}] (the ViT's blocks), "
                             f"got {n}")
        if avgpool and n != 1:
            raise ValueError(f"avgpool goes with n = 1, as in DINO, got n = {n}")
        self.backbone, self.n, self.avgpool = backbone, n, avgpool

    def forward(self, x: Tensor) -> Tensor:
        blocks = self.backbone.blocks  # the patch embedding, then the transformer blocks
        final = blocks[-1].norm  # the last block applies it to its own output
        outputs = []
        for i, block in enumerate(blocks):
            x = block(x)
            if i >= len(blocks) - self.n:
                outputs.append(x if i == len(blocks) - 1 else final(x))
        tokens = torch.cat([class_token(h) for h in outputs], dim=-1)
        if self.avgpool:
            patches = outputs[-1][:, 1:].mean(dim=1)
            tokens = torch.stack([tokens, patches], dim=-1).flatten(1)
        return tokens


def vit(name: str, patch_size: int = 16, image_size: int = 224,
        freeze_patch_embed: bool = False, drop_path_rate: float = 0.0, heads: int | None = None,
        pos_embed: str = "learned"):
    """ViT-Tiny or ViT-Small as a :class:`Backbone` of ``depth`` stages. ``heads``: attention
    heads (None: timm's for the size; MoCo v3's ViT-Small has 12); ``pos_embed``: ``learned``
    or MoCo v3's fixed ``sincos``.
    ``freeze_patch_embed``: MoCo v3's fix for training instability (Chen, Xie & He, 2021,
    sec. 4.1, ``stop_grad_conv1``): the patch projection stays at its random initialisation,
    which moco-v3 draws uniform in +-sqrt(6 / (3 p^2 + dim)) (vits.py). ``drop_path_rate``:
    stochastic depth rising linearly from 0 at the first block to this at the last, as DINO's
    and timm's ``torch.linspace(0, drop_path_rate, depth)``."""

    if name not in VITS:
        raise ValueError(f"unknown ViT {name!r}; choose one of {', '.join(VITS)}")
    dim, depth, default_heads = VITS[name]
    heads = heads or default_heads
    if dim % heads:
        raise ValueError(f"{name}'s width {dim} must divide among its heads, got {heads}")
    stem = PatchEmbed(dim, patch_size, image_size, pos_embed)
    rates = torch.linspace(0, drop_path_rate, depth).tolist()
    blocks = [Block(dim, heads, final_norm=i == depth - 1, drop_path=rates[i])
              for i in range(depth)]
    backbone = Backbone(stem, blocks, dim, pool=class_token)
    for m in backbone.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
    if pos_embed == "learned":
        nn.init.trunc_normal_(stem.pos_embed, std=0.02)
    nn.init.normal_(stem.cls_token, std=1e-6)
    if freeze_patch_embed:
        bound = math.sqrt(6.0 / (3 * patch_size ** 2 + dim))
        nn.init.uniform_(stem.proj.weight, -bound, bound)
        nn.init.zeros_(stem.proj.bias)
        stem.proj.requires_grad_(False)
    return backbone


__all__ = ["Block", "LastBlocksTokens", "PatchEmbed", "VITS", "class_token", "drop_path",
           "sincos_position_embedding", "vit"]
