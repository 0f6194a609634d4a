"""The linear evaluation (stages/linear.py): its recipe's schema and schedule, the stage on the
tiny profile (a frozen backbone, a trained head, its result written and repeatable), a stopped
evaluation resuming to the same bytes, the CLI's refusal while it is off, and its result in the
report and results/metrics.json."""

import copy
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from conftest import TINY, make_params, repo_params_dict
from momentum_ssl.analysis.headline import headline
from momentum_ssl.cli import main
from momentum_ssl.config import ConfigError, LinearConfig, params_from_dict
from momentum_ssl.data.loaders import linear_augment, linear_seed, linear_train_loader, train_loader
from momentum_ssl.plumbing.checkpoint import previous_path
from momentum_ssl.stages.linear import checkpoint_path, linear, linear_head, train_head
from momentum_ssl.stages.pretrain import pretrain

LINEAR = {"epochs": 2, "batch_size": 32, "lr": 0.1, "schedule": "cosine"}
OUT = Path("results/linear/byol-full/s0.json")  # under the tiny fixture's working directory
LR_AT = LinearConfig.lr_at  # the schedule, before a test wraps it


def with_recipes(**changes) -> dict:
    data = copy.deepcopy(repo_params_dict())
    data.update(changes)
    return data


@pytest.mark.parametrize("changes, message", [
    ({"recipes": {"linear": {"epoch": 10}}},
     "unknown key 'recipes.linear.epoch' (did you mean 'recipes.linear.epochs'?)"),
    ({"recipes": {"linear": {"schedule": "linear"}}},
     "recipes.linear.schedule: 'linear' is not allowed; allowed values: step, cosine"),
    ({"recipes": {"linear": {"epochs": 50}}},
     "recipes.linear.step_epochs: must be increasing epochs in (0, epochs=50)"),
    ({"linear": "yes"}, "linear: expected true or false, got 'yes'"),
    ({"recipes": {"linear": {"vit_last_blocks": 0}}},
     "recipes.linear.vit_last_blocks: must be >= 1, got 0"),
    ({"recipes": {"linear": {"vit_last_blocks": 4, "vit_avgpool": True}}},
     "recipes.linear.vit_avgpool: the average-pooled patch tokens go with vit_last_blocks 1"),
    ({"linear": True, "recipes": {"linear": {"vit_avgpool": True}}},
     "recipes.linear: vit_last_blocks 1 / vit_avgpool true are for a ViT's features; "
     "model.backbone is resnet_tiny: set vit_last_blocks 1 and vit_avgpool false"),
])
def test_the_recipe_and_the_switch_refuse_bad_values_by_key(changes, message):
    with pytest.raises(ConfigError) as err:
        params_from_dict(with_recipes(**changes))
    assert message in str(err.value)


def test_it_is_off_by_default_and_a_recipe_reads_back():
    assert params_from_dict(with_recipes()).linear is False
    params = params_from_dict(with_recipes(linear=True, recipes={"linear": LINEAR}))
    assert params.linear and params.recipes.linear == LinearConfig(**LINEAR)


def test_the_schedules_follow_the_references_formulas():
    step = LinearConfig()  # solo-learn: x0.1 at epochs 60 and 80 of 100
    assert [step.lr_at(e) for e in (0, 59, 60, 79, 80, 99)] == pytest.approx(
        [0.3, 0.3, 0.03, 0.03, 0.003, 0.003])
    cosine = LinearConfig(lr=0.1, epochs=90, schedule="cosine")  # MoCo v3's, per epoch
    for epoch in (0, 10, 45, 89):
        assert cosine.lr_at(epoch) == pytest.approx(
            0.1 * 0.5 * (1 + math.cos(math.pi * epoch / 90)))


def test_the_backbone_stays_frozen_and_the_head_learns():
    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 6),
                                   torch.nn.BatchNorm1d(6)).eval()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    x = torch.randn(64, 3, 2, 2)
    y = (x.flatten(1)[:, 0] > 0).long()
    head = linear_head(6, 2, seed=0)
    assert head.weight.std().item() == pytest.approx(0.01, rel=0.3)
    assert torch.equal(head.bias, torch.zeros(2))
    losses = train_head(backbone.requires_grad_(False), head, [(x, y)] * 4,
                        LinearConfig(epochs=20, batch_size=64, lr=1.0, schedule="cosine"),
                        torch.device("cpu"))
    assert losses[-1] < losses[0] * 0.8
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())


def test_its_loader_draws_its_own_order_and_crops_not_pretrainings(tiny):
    """Pretraining's first view-0 batch at the run's seed, with the linear view's augmentation
    (so that only the streams can differ), against the linear loader's first batch."""
    params = dataclasses.replace(tiny, recipes=dataclasses.replace(
        tiny.recipes, linear=LinearConfig(batch_size=tiny.loader.batch_size)))
    pretraining = train_loader(dataclasses.replace(params, augment=linear_augment(params)))
    view0, _, labels = next(iter(pretraining))
    x, y = next(iter(linear_train_loader(params)))
    assert x.shape == view0.shape and not torch.equal(x, view0)
    assert not torch.equal(y, labels)  # its own data order too
    again, _ = next(iter(linear_train_loader(params)))
    assert torch.equal(x, again)  # seeded: the same batch again
    assert linear_seed(params.seed) != params.seed and linear_seed(1) != linear_seed(0)


@pytest.fixture
def trained(tiny, tmp_path):
    params = make_params(tmp_path, **{**TINY, "linear": True, "recipes": {"linear": LINEAR}})
    run = next(run for run in params.grid if run.name == "byol-full")
    pretrain(params, run, seed=0)
    return params


def test_the_stage_trains_a_few_steps_on_the_tiny_profile_and_writes_its_result(trained):
    out = linear(trained, "byol-full", seed=0)
    assert out == OUT
    result = json.loads(out.read_text())
    assert 0.0 <= result["top1"] <= 1.0 and result["num_test"] == 40
    assert len(result["train_loss"]) == LINEAR["epochs"]
    assert result["recipe"]["schedule"] == "cosine" and result["encoder"] == "student"
    first = out.read_bytes()
    linear(trained, "byol-full", seed=0)  # the CPU: the same bytes again
    assert out.read_bytes() == first
    with pytest.raises(ConfigError, match="not a grid run"):
        linear(trained, "random", seed=0)
    # a method's own lr (recipes.linear.lr_by_method) is the one it trains with and records
    own = dataclasses.replace(trained.recipes.linear, lr_by_method={"byol": 0.05, "simsiam": 30.0})
    own = dataclasses.replace(trained, recipes=dataclasses.replace(trained.recipes, linear=own))
    result = json.loads(linear(own, "byol-full", seed=0).read_text())
    assert result["recipe"]["lr"] == 0.05 and result["recipe"]["lr_by_method"] == {}


def epochs_trained(monkeypatch, stop_at: int | None = None) -> list[int]:
    """The 0-based epochs the linear head trains from now on (each sets its lr first); with
    ``stop_at``, the evaluation is stopped as a killed process would be when that one starts."""
    real, seen = LR_AT, []

    def lr_at(recipe, epoch):
        if epoch == stop_at:
            raise KeyboardInterrupt
        seen.append(epoch)
        return real(recipe, epoch)

    monkeypatch.setattr(LinearConfig, "lr_at", lr_at)
    return seen


def test_a_stopped_evaluation_resumes_after_its_last_epoch_to_the_same_bytes(
        trained, monkeypatch, capsys):
    uninterrupted = linear(trained, "byol-full", seed=0).read_bytes()
    checkpoint = checkpoint_path(OUT)
    assert checkpoint.name == "s0.checkpoint.pt" and not checkpoint.exists()  # finished: gone
    OUT.unlink()
    epochs_trained(monkeypatch, stop_at=1)
    with pytest.raises(KeyboardInterrupt):
        linear(trained, "byol-full", seed=0)
    assert not OUT.exists() and torch.load(checkpoint, weights_only=False)["epoch"] == 1
    seen = epochs_trained(monkeypatch)
    linear(trained, "byol-full", seed=0)
    assert seen == [1]  # the second epoch only
    assert "linear byol-full/s0: resuming after epoch 1 of 2" in capsys.readouterr().out
    assert OUT.read_bytes() == uninterrupted
    assert not checkpoint.exists() and not previous_path(checkpoint).exists()


def test_a_damaged_checkpoint_falls_back_to_the_previous_epochs(trained, monkeypatch, capsys):
    three = dataclasses.replace(trained.recipes.linear, epochs=3)
    trained = dataclasses.replace(trained, recipes=dataclasses.replace(trained.recipes,
                                                                       linear=three))
    uninterrupted = linear(trained, "byol-full", seed=0).read_bytes()
    OUT.unlink()
    epochs_trained(monkeypatch, stop_at=2)
    with pytest.raises(KeyboardInterrupt):
        linear(trained, "byol-full", seed=0)
    checkpoint = checkpoint_path(OUT)
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])  # a cut copy
    seen = epochs_trained(monkeypatch)
    linear(trained, "byol-full", seed=0)
    out = capsys.readouterr().out
    assert "s0.checkpoint.pt is truncated or garbled" in out  # set aside, with a message
    assert "resuming from the previous epoch's checkpoint" in out
    assert "resuming after epoch 1 of 3" in out and seen == [1, 2]
    assert OUT.read_bytes() == uninterrupted


@pytest.mark.parametrize("change", ["recipe", "backbone"])
def test_a_checkpoint_of_another_recipe_or_backbone_is_not_resumed(trained, monkeypatch, change):
    epochs_trained(monkeypatch, stop_at=1)
    with pytest.raises(KeyboardInterrupt):
        linear(trained, "byol-full", seed=0)
    if change == "recipe":
        linear_recipe = dataclasses.replace(trained.recipes.linear, lr=0.05)
        trained = dataclasses.replace(trained, recipes=dataclasses.replace(
            trained.recipes, linear=linear_recipe))
    else:  # other weights under the same params (say, retrained on a GPU)
        model = Path("results/runs/byol-full/s0/model.pt")
        state = torch.load(model, weights_only=False)
        name = next(k for k, v in state["learner"].items()
                    if k.startswith("backbone.") and v.is_floating_point())
        state["learner"][name] = state["learner"][name] + 1.0
        torch.save(state, model)
    seen = epochs_trained(monkeypatch)
    linear(trained, "byol-full", seed=0)
    assert seen == [0, 1]  # from scratch
    assert not checkpoint_path(OUT).exists() and not previous_path(checkpoint_path(OUT)).exists()


def test_a_vit_can_be_evaluated_on_dinos_last_blocks(tiny, tmp_path):
    recipe = {**LINEAR, "epochs": 1, "vit_last_blocks": 4}
    params = make_params(tmp_path, **{**TINY, "linear": True, "recipes": {"linear": recipe},
                                      "model": {"backbone": "vit_tiny", "patch_size": 4}})
    pretrain(params, next(run for run in params.grid if run.name == "byol-full"), seed=0)
    result = json.loads(linear(params, "byol-full", seed=0).read_text())
    assert result["features_dim"] == 4 * 192 and result["recipe"]["vit_last_blocks"] == 4


def test_the_stage_refuses_last_blocks_a_backbone_lacks_in_one_line():
    from momentum_ssl.core.models.backbones import build_backbone
    from momentum_ssl.stages.linear import features_of

    resnet = build_backbone("resnet_tiny", width=8)
    with pytest.raises(ConfigError, match="are for a ViT; this run's backbone is resnet_tiny"):
        features_of(resnet, LinearConfig(vit_last_blocks=4), "resnet_tiny")
    assert features_of(resnet, LinearConfig(), "resnet_tiny") is resnet
    vit = build_backbone("vit_tiny", patch_size=4, image_size=8)
    with pytest.raises(ConfigError, match=r"vit_last_blocks: n must be in \[1, 12\]"):
        features_of(vit, LinearConfig(vit_last_blocks=13), "vit_tiny")


def test_the_command_refuses_while_linear_is_off(capsys):
    assert main(["linear", "--run", "byol-full"]) == 2  # the embedded default: off
    assert "linear is off in params.yaml: set 'linear: true'" in capsys.readouterr().err


def test_its_result_is_a_report_column_and_a_headline_metric(trained, monkeypatch):
    import momentum_ssl.stages.report as report

    linear(trained, "byol-full", seed=0)
    top1 = json.loads(OUT.read_text())["top1"]
    for name in [run.name for run in trained.grid][1:]:
        path = OUT.parent.parent / name / "s0.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"top1": 0.5}))
    monkeypatch.setattr(report, "cell_metrics", lambda name, run, seed, root: {
        "knn_student": 0.4, "logistic_student": 0.45, "logistic_converged": True})
    collected = report.collect(trained)
    assert collected["byol-full"]["seeds"][0]["linear_student"] == top1
    assert "linear_student" not in collected["random"]["seeds"][0]  # grid runs only
    table = "\n".join(report.runs_section(trained, collected))
    assert "| linear (SGD) |" in table and f"| {100 * top1:.2f} |" in table
    summary = {"runs": {"byol-full": {"linear_student": {"mean": top1, "ci_low": 0.1,
                                                         "ci_high": 0.9}}}, "claims": []}
    assert headline(summary)["byol-full"]["linear"] == {"mean": top1, "low": 0.1, "high": 0.9}


def test_the_command_claims_a_gpu_as_evaluate_does_and_writes_its_result(trained, monkeypatch,
                                                                          capsys):
    import yaml

    import momentum_ssl.cli as cli
    from momentum_ssl.config import to_dict

    Path("params.yaml").write_text(yaml.safe_dump(to_dict(trained), sort_keys=False))
    asked = []
    real = cli._start_torch
    monkeypatch.setattr(cli, "_start_torch", lambda params, gpus=0: (asked.append(gpus),
                                                                      real(params, gpus))[1])
    assert main(["linear", "--run", "byol-full", "--seed", "0"]) == 0
    assert asked == [1]  # one GPU, claimed before torch starts CUDA (a CPU here: none found)
    assert capsys.readouterr().out.startswith(f"wrote {OUT}: top-1 ")
    assert main(["linear", "--run", "random", "--seed", "0"]) == 2  # grid runs only
