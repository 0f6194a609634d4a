import json
import sys

import pytest
import torch
import yaml

from conftest import TINY, make_params
from momentum_ssl.cli import main
from momentum_ssl.config import ConfigError, RunSpec, to_dict
from momentum_ssl.core.encoders import Encoders
from momentum_ssl.core.learner import build_learner
from momentum_ssl.stages.export import cifar_stem_snippet, write_export


def learner_of(tmp_path, backbone, cifar_stem, scope, k=1, width=8):
    """An untrained learner whose teacher differs from its student, in eval mode (the
    BatchNorm running statistics moved off their initial values, so they matter)."""
    params = make_params(tmp_path, **{**TINY, "model": {"backbone": backbone, "width": width,
                                                        "cifar_stem": cifar_stem}})
    torch.manual_seed(0)
    learner = build_learner(params, RunSpec("byol", scope, k=k))
    with torch.no_grad():
        learner.train()(torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32))
        if learner.teacher is not None:
            for p in learner.teacher.parameters():
                p.add_(0.05 * torch.randn_like(p))
    return learner.eval()


def torchvision_model(name, cifar_stem, weights):
    """What a user does with the export: the snippet of its metadata, by hand."""
    import torchvision

    model = getattr(torchvision.models, name)()
    if cifar_stem:
        model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        model.maxpool = torch.nn.Identity()
    missing, unexpected = model.load_state_dict(torch.load(weights), strict=False)
    model.fc = torch.nn.Identity()
    return model.eval(), missing, unexpected


@pytest.mark.parametrize("name, cifar_stem, scope", [("resnet18", False, "full"),
                                                     ("resnet18", True, "last_k"),
                                                     ("resnet50", True, "full")])
def test_torchvision_loads_the_export_with_only_fc_missing_and_gives_our_features(
        tmp_path, monkeypatch, name, cifar_stem, scope):
    learner = learner_of(tmp_path, name, cifar_stem, scope, k=2)
    x = torch.randn(2, 3, 32, 32)
    ours = Encoders(learner)(x)
    for encoder in ("student", "teacher"):
        meta = json.loads(write_export(learner, name, 64, cifar_stem, tmp_path / "out",
                                       teacher=encoder == "teacher").read_text())
        model, missing, unexpected = torchvision_model(name, cifar_stem,
                                                       tmp_path / "out" / f"{encoder}.pt")
        assert missing == ["fc.weight", "fc.bias"] and unexpected == []
        names: dict = {}
        with monkeypatch.context() as m:  # the metadata's own loading code, where the files are
            m.chdir(tmp_path / "out")
            exec("\n".join(meta["load"]), names)
        assert names["missing"] == ["fc.weight", "fc.bias"] and names["unexpected"] == []
        with torch.no_grad():
            torch.testing.assert_close(model(x), ours[encoder], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(names["model"].eval()(x), model(x), rtol=0, atol=0)
        assert meta["format"] == "torchvision" and meta["cifar_stem"] is cifar_stem
        assert meta["torchvision"]["missing_keys"] == ["fc.weight", "fc.bias"]
        assert meta["torchvision"].get("cifar_stem_snippet") == (
            cifar_stem_snippet() if cifar_stem else None)
    assert ("teacher_composition" in meta) == (scope == "last_k")  # the teacher's, last
    if scope == "last_k":
        assert "stages 3..4 (blocks[3:]) after the student's stem and stages 1..2" in \
            meta["teacher_composition"]
    assert not torch.equal(ours["student"], ours["teacher"])


def test_a_tiny_run_exports_student_and_teacher_through_the_cli(tiny, tmp_path, monkeypatch,
                                                                capsys):
    from momentum_ssl.stages.pretrain import pretrain

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(to_dict(tiny), sort_keys=False))
    run = next(r for r in tiny.grid if r.name == "byol-full")
    pretrain(tiny, run, seed=0)
    assert main(["export", "--run", "byol-full"]) == 0
    assert main(["export", "--run", "byol-full", "--teacher"]) == 0
    out = tmp_path / "results" / "export" / "byol-full" / "s0"
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"wrote {out.relative_to(tmp_path)}/{{teacher.pt,teacher.safetensors,teacher.json}} "
        "(momentum_ssl state_dict of the teacher's resnet_tiny)")
    from momentum_ssl.core.encoders import load_learner

    learner = load_learner(tiny, "byol-full", seed=0)
    x = torch.randn(5, 3, 8, 8)
    ours = Encoders(learner)(x)
    from safetensors.torch import load_file

    for encoder in ("student", "teacher"):
        meta = json.loads((out / f"{encoder}.json").read_text())
        assert meta["constructor"] == ("momentum_ssl.core.models.backbones.resnet_tiny(width=8, "
                                       "cifar_stem=True)")
        assert meta["input"]["size"] == 8 and len(meta["input"]["mean"]) == 3
        # the metadata's own loading code, run where the files are
        monkeypatch.chdir(out)
        scope: dict = {}
        exec("\n".join(meta["load"]), scope)
        model = scope["model"].eval()
        with torch.no_grad():
            torch.testing.assert_close(model(x), ours[encoder], rtol=0, atol=0)
        state = torch.load(out / f"{encoder}.pt")
        tensors = load_file(out / meta["files"]["safetensors"])
        assert tensors.keys() == state.keys()
        for key in state:
            assert torch.equal(tensors[key], state[key]), key


def test_a_run_without_a_teacher_backbone_has_none_to_export(tmp_path):
    for scope, why in (("projector", "projector-only teacher"), ("none", "has no teacher")):
        learner = learner_of(tmp_path, "resnet_tiny", True, scope)
        with pytest.raises(ConfigError, match=f"byol-{scope} \\(scope {scope}\\) .*{why}.*drop "
                                              "--teacher"):
            write_export(learner, "resnet_tiny", 8, True, tmp_path / "out", teacher=True,
                         run=f"byol-{scope}")
    assert not (tmp_path / "out").exists()


def test_without_safetensors_only_the_pt_file_is_written(tmp_path, monkeypatch):
    learner = learner_of(tmp_path, "resnet_tiny", True, "full")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "student.safetensors").write_bytes(b"an older export's")
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)  # import fails
    meta = json.loads(write_export(learner, "resnet_tiny", 8, True, tmp_path / "out").read_text())
    assert meta["files"] == {"state_dict": "student.pt", "safetensors": None}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["student.json", "student.pt"]


def test_export_refuses_a_model_of_other_params(tiny, tmp_path):
    import dataclasses

    from momentum_ssl.stages.export import export
    from momentum_ssl.stages.pretrain import pretrain

    pretrain(dataclasses.replace(tiny, pretrain=dataclasses.replace(tiny.pretrain, epochs=1)),
             next(r for r in tiny.grid if r.name == "simclr-none"))
    with pytest.raises(ConfigError, match="trained with other params than simclr-none"):
        export(tiny, "simclr-none")
    assert not (tmp_path / "results" / "export").exists()


def timm_vit_keys(depth: int) -> set[str]:
    """The state_dict keys of timm's VisionTransformer with ``num_classes=0`` (no head), from
    timm/models/vision_transformer.py (Block: norm1, attn.qkv, attn.proj, norm2, mlp.fc1,
    mlp.fc2; PatchEmbed: proj; then cls_token, pos_embed, the final norm)."""
    block = [f"{m}.{w}" for m in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1",
                                  "mlp.fc2") for w in ("weight", "bias")]
    return {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
            "norm.weight", "norm.bias",
            *(f"blocks.{i}.{name}" for i in range(depth) for name in block)}


@pytest.mark.parametrize("scope", ["full", "last_k"])
def test_a_vit_exports_timms_names_and_loads_back_into_our_vit(tmp_path, monkeypatch, scope):
    from momentum_ssl.stages.export import vit_from_timm
    from momentum_ssl.core.models.backbones import build_backbone

    params = make_params(tmp_path, **{**TINY, "model": {"backbone": "vit_tiny", "patch_size": 2}})
    torch.manual_seed(0)
    learner = build_learner(params, RunSpec("byol", scope, k=3))
    with torch.no_grad():
        for p in learner.teacher.parameters():
            p.add_(0.05 * torch.randn_like(p))
    learner.eval()
    x = torch.randn(2, 3, 8, 8)
    ours = Encoders(learner)(x)
    for encoder in ("student", "teacher"):
        meta = json.loads(write_export(learner, "vit_tiny", 8, True, tmp_path / "out",
                                       teacher=encoder == "teacher", patch_size=2,
                                       image_size=8).read_text())
        state = torch.load(tmp_path / "out" / f"{encoder}.pt")
        assert set(state) == timm_vit_keys(12)
        assert state["pos_embed"].shape == (1, 1 + 16, 192)
        assert meta["format"] == "timm" and meta["feature_dim"] == 192
        assert meta["timm"]["constructor"] == ("timm.create_model('vit_tiny_patch16_224', "
                                               "num_classes=0, img_size=8, patch_size=2)")
        model = build_backbone("vit_tiny", patch_size=2, image_size=8)
        model.load_state_dict(vit_from_timm(state))  # strict: every key back in place
        with torch.no_grad():
            torch.testing.assert_close(model.eval()(x), ours[encoder], rtol=0, atol=0)
    assert not torch.equal(ours["student"], ours["teacher"])
