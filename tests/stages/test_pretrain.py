import dataclasses
import json

import pytest
import torch
import yaml

from momentum_ssl.config import RunSpec
from momentum_ssl.stages.pretrain import TrainingDiverged, pretrain


def tsv_steps(path):
    return [int(line.split("\t")[0]) for line in path.read_text().splitlines()[1:]]


def test_pretrain_writes_model_logs_stability_and_params(tiny, tmp_path):
    out = pretrain(tiny, RunSpec("byol", "full", residual=True), tmp_path / "run")
    assert {p.name for p in out.iterdir()} == {"model.pt", "params.yaml", "dvclive",
                                               "provenance.json"}
    assert torch.load(out / "model.pt", weights_only=False)["epochs"] == 2
    metrics = json.loads((out / "dvclive" / "metrics.json").read_text())
    assert {"loss", "lr", "tau", "gap_projector", "residual"} <= set(metrics["train"])
    assert set(metrics["stability"]) == {"stem", "stage1", "stage2", "stage3", "stage4",
                                         "projector"}
    for stats in metrics["stability"].values():
        assert stats["grad_norm"] > 0 and stats["cv"] > 0 and stats["rel_change"] > 0
    assert metrics["time"]["steps"] == 2 * 5  # 160 images / 32, two epochs
    assert metrics["time"]["pretrain_s"] > 0
    plots = out / "dvclive" / "plots" / "metrics"
    assert tsv_steps(plots / "train" / "loss.tsv") == list(range(10))  # log_every 1
    assert tsv_steps(plots / "grad_norm" / "stage4.tsv") == list(range(10))
    saved = yaml.safe_load((out / "params.yaml").read_text())
    assert saved["run"]["name"] == "byol-full-res" and saved["residual"]["weight"] == 1.0
    assert set(saved["method"]) == {"proj_hidden", "proj_out", "pred_hidden"}


def test_a_checkpoint_of_other_run_params_is_not_resumed(tiny, tmp_path, monkeypatch):
    import momentum_ssl.stages.pretrain as train

    real = train.cosine_tau

    def dying(step, total, *tau):
        if step == 7:
            raise KeyboardInterrupt
        return real(step, total, *tau)

    monkeypatch.setattr(train, "cosine_tau", dying)
    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny, RunSpec("byol", "full"), tmp_path / "run")
    monkeypatch.setattr(train, "cosine_tau", real)
    changed = dataclasses.replace(tiny, momentum=dataclasses.replace(tiny.momentum, tau=0.9))
    out = pretrain(changed, RunSpec("byol", "full"), tmp_path / "run")
    metrics = json.loads((out / "dvclive" / "metrics.json").read_text())
    assert tsv_steps(out / "dvclive" / "plots" / "metrics" / "train" / "tau.tsv") == \
        list(range(10))
    assert metrics["time"]["steps"] == 10


def test_resume_after_a_kill_gives_the_same_weights(tiny, tmp_path, monkeypatch):
    run = RunSpec("mocov2", "full")
    straight = pretrain(tiny, run, tmp_path / "straight")

    import momentum_ssl.stages.pretrain as train

    real = train.cosine_tau

    def dying(step, total, *tau):  # the process dies during the second epoch
        if step == 7:
            raise KeyboardInterrupt
        return real(step, total, *tau)

    monkeypatch.setattr(train, "cosine_tau", dying)
    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny, run, tmp_path / "resumed")
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)["epoch"] == 1
    assert not (tmp_path / "resumed" / "model.pt").exists()
    monkeypatch.setattr(train, "cosine_tau", real)
    resumed = pretrain(tiny, run, tmp_path / "resumed")
    assert not (resumed / "checkpoint.pt").exists()  # finished: a rerun starts afresh

    # the logs read as one run: no step logged twice, the same stability summary
    plots = resumed / "dvclive" / "plots" / "metrics"
    assert tsv_steps(plots / "train" / "loss.tsv") == list(range(10))
    summary = [json.loads((out / "dvclive" / "metrics.json").read_text())["stability"]
               for out in (straight, resumed)]
    assert summary[0] == summary[1]

    a = torch.load(straight / "model.pt", weights_only=False)["learner"]
    b = torch.load(resumed / "model.pt", weights_only=False)["learner"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("log_every, nan_from, steps, logged", [
    (1, 6, "6", 5), (4, 6, "5-8", 4),  # caught at the next log step
    (4, 9, "9", 8)])  # after the epoch's last log step: caught before its checkpoint
def test_a_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(
        tiny, tmp_path, monkeypatch, log_every, nan_from, steps, logged):
    """The loss turns NaN at step ``nan_from`` of epoch 2 (steps 5-9). It is checked at log
    steps and at each epoch's end (reading it waits for the GPU), so the run stops at the
    next of them, naming the steps since the last check; epoch 1's checkpoint is kept."""
    import dataclasses

    import momentum_ssl.stages.pretrain as train

    tiny = dataclasses.replace(tiny, pretrain=dataclasses.replace(tiny.pretrain,
                                                                  log_every=log_every))

    real = train.build_learner

    def poisoned(params, run):
        learner = real(params, run)
        forward = learner.forward
        calls = {"n": 0}

        def nan_from_step(*views, epoch=0):
            loss, logs = forward(*views, epoch=epoch)
            calls["n"] += 1
            return (loss * float("nan") if calls["n"] > nan_from else loss), logs

        learner.forward = nan_from_step
        return learner

    monkeypatch.setattr(train, "build_learner", poisoned)
    with pytest.raises(TrainingDiverged) as info:
        pretrain(tiny, RunSpec("byol", "none"), tmp_path / "run")
    msg = str(info.value)
    assert f"the loss was not finite at a step of {steps} (epoch 2; checked every " \
        f"pretrain.log_every = {log_every} steps, at the kNN monitor's and at each epoch's " \
        "end)" in msg
    assert "last finite values" in msg and "checkpoint.pt" in msg
    assert f"'step': {logged}," in msg  # the last logged values
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["epoch"] == 1  # the last good checkpoint is kept
