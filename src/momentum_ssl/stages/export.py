"""A trained backbone in the format its family uses elsewhere: the ``export`` stage.

    export(params, "byol-full")                # results/export/byol-full/student.{pt,json,...}
    export(params, "byol-full", teacher=True)  # the teacher's backbone: teacher.{pt,json,...}

resnet18 / resnet50: a state_dict with torchvision's names (``blocks[0]``, the stem, becomes
``conv1`` and ``bn1``; ``blocks[1..4]`` become ``layer1..layer4``), which
``torchvision.models.resnet18()`` loads with ``strict=False`` reporting only ``fc.weight`` and
``fc.bias`` missing; with ``fc = nn.Identity()`` it gives the pooled features our encoder gives.
A CIFAR stem (3x3 stride-1 ``conv1``, no max-pool) needs two lines before loading, recorded in
the metadata. resnet_tiny has no torchvision counterpart: its state_dict keeps our names and
the metadata gives the constructor call that loads it strictly. vit_tiny / vit_small: a
state_dict with timm's ``VisionTransformer`` names (``patch_embed.proj``, ``cls_token``,
``pos_embed``, ``blocks.<i>``, ``norm``; checked against timm's
``timm/models/vision_transformer.py``; timm is the library ViT weights are shared through, and
torchvision's ViT has no ViT-Tiny or ViT-Small), which ``timm.create_model(
'vit_small_patch16_224', num_classes=0, img_size=..., patch_size=...)`` loads strictly, giving
the normed class token our encoder gives. timm is not a dependency: tests load the file back
into our ViT (:func:`vit_from_timm`). Each export also writes
``<encoder>.safetensors`` (the same tensors) when the ``safetensors`` package is importable, and
``<encoder>.json``: the backbone, how to load it, the input size and the normalisation the
encoder was trained with. This is what peer tools' users ask for most after training
(solo-learn issues #123 and #163, lightly #1475).

The teacher exists as a backbone only when it owns backbone blocks (scopes ``full`` and
``last_k``); with ``last_k`` it runs on the student's activation entering its stages, so its
export is the student's earlier blocks followed by the teacher's stages, as extract embeds it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..config import ConfigError, Params, params_hash, run_params, with_seed
from ..core.learner import Learner
from ..core.models.backbones import Backbone
from ..data.convert import read_meta
from ..data.loaders import beton_folder
from ..plumbing.artifacts import atomic_torch_save, atomic_write_text, commit, partial_path
from ..plumbing.paths import cell, export_dir

TORCHVISION = ("resnet18", "resnet50")
TIMM = {"vit_tiny": "vit_tiny_patch16_224", "vit_small": "vit_small_patch16_224"}
STEM = {"0": "conv1", "1": "bn1"}  # the stem's modules with weights; relu and max-pool have none


def cifar_stem_snippet(width: int = 64) -> list[str]:
    """The two lines that turn torchvision's ResNet into ours with ``cifar_stem``."""
    return [f"model.conv1 = torch.nn.Conv2d(3, {width}, 3, 1, 1, bias=False)",
            "model.maxpool = torch.nn.Identity()"]


def encoder_backbone(learner: Learner, teacher: bool = False,
                     run: str = "the run") -> tuple[Backbone, str | None]:
    """The student's backbone, or the teacher's as a backbone of its own (sharing the student's
    blocks before the teacher's first), and a note saying how the teacher's was composed."""
    if not teacher:
        return learner.backbone, None
    t = learner.teacher
    if t is None or not t.blocks:
        scope = learner.scope
        why = ("has no teacher" if t is None else
               "has a projector-only teacher, which shares the student's backbone")
        raise ConfigError(f"{run} (scope {scope}) {why}: there is no teacher backbone to "
                          "export; export the student (drop --teacher), or train a run with "
                          "scope full or last_k")
    student = learner.backbone
    blocks = [*student.blocks[:t.start], *t.blocks]
    backbone = Backbone(blocks[0], blocks[1:], student.dim, student.pool)
    if t.start == 0:
        return backbone, None
    def stages(first: int, last: int) -> str:
        return f"stage {first}" if first == last else f"stages {first}..{last}"

    return backbone, (f"scope last_k (k={learner.k}): the teacher's EMA copies of "
                      f"{stages(t.start, student.num_stages)} (blocks[{t.start}:]) after the "
                      f"student's stem{' and ' + stages(1, t.start - 1) if t.start > 1 else ''}"
                      ", which feed the teacher during training")


def torchvision_state_dict(backbone: Backbone) -> dict[str, torch.Tensor]:
    """``backbone``'s weights and BatchNorm buffers under torchvision's ResNet names."""
    out = {}
    for key, value in backbone.state_dict().items():
        _, block, rest = key.split(".", 2)  # blocks.<i>.<rest>
        if block == "0":
            module, rest = rest.split(".", 1)
            name = f"{STEM[module]}.{rest}"
        else:
            name = f"layer{block}.{rest}"
        out[name] = value.detach().cpu().clone().contiguous()
    return out


def timm_state_dict(backbone: Backbone) -> dict[str, torch.Tensor]:
    """A ViT backbone's weights under timm's ``VisionTransformer`` names: the stem's
    ``proj``, ``cls_token`` and ``pos_embed`` become ``patch_embed.proj``, ``cls_token`` and
    ``pos_embed``; transformer block ``blocks[i]`` (i >= 1) becomes ``blocks.<i - 1>``, whose
    inner names are timm's already; the last block's ``norm`` is timm's final ``norm``."""
    depth = backbone.num_stages
    out = {}
    for key, value in backbone.state_dict().items():
        _, block, rest = key.split(".", 2)  # blocks.<i>.<rest>
        if block == "0":
            name = f"patch_embed.{rest}" if rest.startswith("proj.") else rest
        elif int(block) == depth and rest.startswith("norm."):
            name = rest
        else:
            name = f"blocks.{int(block) - 1}.{rest}"
        out[name] = value.detach().cpu().clone().contiguous()
    return out


def vit_from_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`timm_state_dict`: timm's names back to our ViT's."""
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    out = {}
    for key, value in state.items():
        if key.startswith("patch_embed."):
            name = f"blocks.0.{key[len('patch_embed.'):]}"
        elif key in ("cls_token", "pos_embed"):
            name = f"blocks.0.{key}"
        elif key.startswith("norm."):
            name = f"blocks.{depth}.{key}"
        else:
            _, i, rest = key.split(".", 2)
            name = f"blocks.{int(i) + 1}.{rest}"
        out[name] = value
    return out


def plain_state_dict(backbone: Backbone) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone().contiguous() for k, v in backbone.state_dict().items()}


def load_lines(name: str, width: int, cifar_stem: bool, weights: str, patch_size: int = 16,
               image_size: int = 224) -> list[str]:
    """Python that rebuilds the exported backbone from ``weights`` as a feature extractor."""
    if name in TIMM:
        return ["import torch, timm",
                f"model = timm.create_model({TIMM[name]!r}, num_classes=0, "
                f"img_size={image_size}, patch_size={patch_size})",
                f"model.load_state_dict(torch.load({weights!r}))  # (N, 3, H, W) -> class token"]
    if name in TORCHVISION:
        return ["import torch, torchvision",
                f"model = torchvision.models.{name}()",
                *(cifar_stem_snippet() if cifar_stem else []),
                f"missing, unexpected = model.load_state_dict(torch.load({weights!r}), "
                "strict=False)  # missing: fc.weight, fc.bias",
                "model.fc = torch.nn.Identity()  # (N, 3, H, W) -> pooled features"]
    return ["import torch",
            "from momentum_ssl.core.models.backbones import resnet_tiny",
            f"model = resnet_tiny(width={width}, cifar_stem={cifar_stem})",
            f"model.load_state_dict(torch.load({weights!r}))  # (N, 3, H, W) -> pooled features"]


def _write_safetensors(state: dict[str, torch.Tensor], path: Path, meta: dict[str, str]) -> bool:
    try:
        from safetensors.torch import save_file
    except ImportError:  # optional: the .pt file carries the same tensors
        return False
    tmp = partial_path(path)
    try:
        save_file(state, str(tmp), metadata=meta)
        commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def write_export(learner: Learner, backbone_name: str, width: int, cifar_stem: bool, out: Path,
                 teacher: bool = False, info: dict | None = None, run: str = "the run",
                 patch_size: int = 16, image_size: int = 224) -> Path:
    """Write ``out/<encoder>.pt`` (a plain state_dict), ``.safetensors`` when possible and
    ``.json`` (metadata: ``info`` plus the backbone, its loading code and key names); returns
    the metadata file."""
    encoder = "teacher" if teacher else "student"
    backbone, note = encoder_backbone(learner, teacher, run)
    torchvision_format = backbone_name in TORCHVISION
    if backbone_name in TIMM:
        state, form = timm_state_dict(backbone), "timm"
    elif torchvision_format:
        state, form = torchvision_state_dict(backbone), "torchvision"
    else:
        state, form = plain_state_dict(backbone), "momentum_ssl"
    weights = f"{encoder}.pt"
    meta: dict = {
        **(info or {}), "encoder": encoder, "backbone": backbone_name, "format": form,
        "feature_dim": backbone.dim, "cifar_stem": cifar_stem,
        "files": {"state_dict": weights, "safetensors": None},
        "load": load_lines(backbone_name, width, cifar_stem, weights, patch_size, image_size),
    }
    if form == "timm":
        meta.pop("cifar_stem")
        meta["timm"] = {"constructor": f"timm.create_model({TIMM[backbone_name]!r}, "
                                       f"num_classes=0, img_size={image_size}, "
                                       f"patch_size={patch_size})",
                        "patch_size": patch_size, "image_size": image_size}
    elif torchvision_format:
        meta["torchvision"] = {"constructor": f"torchvision.models.{backbone_name}()",
                               "missing_keys": ["fc.weight", "fc.bias"]}
        if cifar_stem:
            meta["torchvision"]["cifar_stem_snippet"] = cifar_stem_snippet()
    else:
        meta["width"] = width
        meta["constructor"] = ("momentum_ssl.core.models.backbones.resnet_tiny("
                               f"width={width}, cifar_stem={cifar_stem})")
    if note:
        meta["teacher_composition"] = note
    out.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(state, out / weights)
    tensors = out / f"{encoder}.safetensors"
    if _write_safetensors(state, tensors, {"format": "pt", "backbone": backbone_name,
                                           "encoder": encoder}):
        meta["files"]["safetensors"] = tensors.name
    else:
        tensors.unlink(missing_ok=True)  # an older export's would not match these weights
    path = out / f"{encoder}.json"
    atomic_write_text(path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path


def export(params: Params, name: str, teacher: bool = False, out: Path | None = None,
           seed: int | None = None) -> Path:
    """Export grid run ``name``'s trained student (or teacher) backbone, trained with ``seed``;
    returns the metadata file. Refuses a model.pt trained with other params than ``params``
    give the run."""
    from ..core.encoders import load_learner

    params = with_seed(params, seed)
    runs = {run.name: run for run in params.grid}
    if name not in runs:
        raise ConfigError(f"{name!r} is not a grid run; choose one of {', '.join(runs)}")
    out = Path(out) if out is not None else export_dir(cell(name, seed))
    learner = load_learner(params, name, seed=seed)
    encoder_backbone(learner, teacher, name)  # fail before reading anything else
    data = read_meta(beton_folder(params))
    model = params.model
    info = {"run": name, "seed": seed, "params_hash": params_hash(run_params(params, runs[name])),
            "input": {"dataset": params.data.dataset, "size": params.augment.size,
                      "mean": data["mean"], "std": data["std"],
                      "transform": "RGB scaled to [0, 1], resized to size x size (bilinear, "
                                   "antialiased) when needed, then (x - mean) / std per "
                                   "channel: data/augment.py EvalTransform"}}
    return write_export(learner, model.backbone, model.width, model.cifar_stem, out, teacher,
                        info, name, model.patch_size, model.image_size or params.augment.size)
