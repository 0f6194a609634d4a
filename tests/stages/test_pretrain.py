import dataclasses
import json

import pytest
import torch
import yaml

from conftest import kill_at_step
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
    resume = kill_at_step(monkeypatch, 7)
    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny, RunSpec("byol", "full"), tmp_path / "run")
    resume()
    changed = dataclasses.replace(tiny, momentum=dataclasses.replace(tiny.momentum, tau=0.9))
    out = pretrain(changed, RunSpec("byol", "full"), tmp_path / "run")
    metrics = json.loads((out / "dvclive" / "metrics.json").read_text())
    assert tsv_steps(out / "dvclive" / "plots" / "metrics" / "train" / "tau.tsv") == \
        list(range(10))
    assert metrics["time"]["steps"] == 10


def test_resume_after_a_kill_gives_the_same_weights(tiny, tmp_path, monkeypatch):
    run = RunSpec("mocov2", "full")
    straight = pretrain(tiny, run, tmp_path / "straight")


    resume = kill_at_step(monkeypatch, 7)  # the process dies during the second epoch
    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny, run, tmp_path / "resumed")
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)["epoch"] == 1
    assert not (tmp_path / "resumed" / "model.pt").exists()
    resume()
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


def _with_pretrain(params, **values):
    return dataclasses.replace(params, pretrain=dataclasses.replace(params.pretrain, **values))


def _same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_kept_checkpoints_survive_a_kill_and_match_an_uninterrupted_run(tiny, tmp_path,
                                                                         monkeypatch):
    """keep_every 1: the weights after epochs 1 and 2 (the last) as epochs/e0001.pt and
    e0002.pt; killed in epoch 2, the run has e0001.pt in epochs.partial/ (not yet the declared
    output), and the resumed run keeps it and writes e0002.pt, bit for bit as a straight run."""

    params, run = _with_pretrain(tiny, keep_every=1), RunSpec("mocov2", "full")
    straight = pretrain(params, run, tmp_path / "straight")
    assert {p.name for p in (straight / "epochs").iterdir()} == {"e0001.pt", "e0002.pt"}
    assert not (straight / "epochs.partial").exists()
    last = torch.load(straight / "epochs" / "e0002.pt", weights_only=False)
    assert last["epoch"] == 2 and last["run"]["method"] == "mocov2"
    _same_weights(last["learner"],
                  torch.load(straight / "model.pt", weights_only=False)["learner"])

    resume = kill_at_step(monkeypatch, 7)  # dies during the second epoch
    with pytest.raises(KeyboardInterrupt):
        pretrain(params, run, tmp_path / "resumed")
    partial = tmp_path / "resumed" / "epochs.partial"
    assert [p.name for p in partial.iterdir()] == ["e0001.pt"]
    assert not (tmp_path / "resumed" / "epochs").exists()
    kept_before = (partial / "e0001.pt").stat().st_mtime_ns
    resume()
    resumed = pretrain(params, run, tmp_path / "resumed")
    assert {p.name for p in (resumed / "epochs").iterdir()} == {"e0001.pt", "e0002.pt"}
    assert (resumed / "epochs" / "e0001.pt").stat().st_mtime_ns == kept_before  # kept
    for name in ("e0001.pt", "e0002.pt"):
        _same_weights(*(torch.load(out / "epochs" / name, weights_only=False)["learner"]
                        for out in (straight, resumed)))


def test_checkpoint_every_writes_less_often_and_a_run_resumes_from_the_last(tiny, tmp_path,
                                                                           monkeypatch):
    """checkpoint_every 2 over 3 epochs: no checkpoint after epoch 1, one after epoch 2;
    killed in epoch 3, the run resumes after epoch 2 with a straight run's weights. A fresh
    start clears the kept weights a run of other params left behind."""
    import momentum_ssl.stages.pretrain as train

    params = _with_pretrain(tiny, epochs=3, checkpoint_every=2, keep_every=2)
    run = RunSpec("byol", "full")
    straight = pretrain(params, run, tmp_path / "straight")
    assert {p.name for p in (straight / "epochs").iterdir()} == {"e0002.pt", "e0003.pt"}
    written = []
    real_save, real_tau = train.save_checkpoint, train.cosine_tau

    def recording(state, path):
        written.append(state["epoch"])
        real_save(state, path)

    def dying(step, total, *tau):  # 5 steps an epoch: dies in epoch 3
        if step == 12:
            raise KeyboardInterrupt
        return real_tau(step, total, *tau)

    monkeypatch.setattr(train, "save_checkpoint", recording)
    monkeypatch.setattr(train, "cosine_tau", dying)
    stale = tmp_path / "resumed" / "epochs.partial" / "e0001.pt"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"another run's")
    with pytest.raises(KeyboardInterrupt):
        pretrain(params, run, tmp_path / "resumed")
    assert written == [2] and not stale.exists()
    monkeypatch.setattr(train, "cosine_tau", real_tau)
    resumed = pretrain(params, run, tmp_path / "resumed")
    assert written == [2, 3]  # and the last
    _same_weights(*(torch.load(out / "model.pt", weights_only=False)["learner"]
                    for out in (straight, resumed)))
    assert {p.name for p in (resumed / "epochs").iterdir()} == {"e0002.pt", "e0003.pt"}


def test_health_every_measures_at_its_steps_only(tiny, tmp_path):
    """health_every 2 with log_every 1: the health statistics at steps 0, 2, 4, ...; the
    loss still at every step."""
    out = pretrain(_with_pretrain(tiny, health_every=2), RunSpec("simclr", "none"),
                   tmp_path / "run")
    plots = out / "dvclive" / "plots" / "metrics"
    assert tsv_steps(plots / "health" / "z_std.tsv") == list(range(0, 10, 2))
    assert tsv_steps(plots / "train" / "loss.tsv") == list(range(10))
