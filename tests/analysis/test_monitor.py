import dataclasses
import json

import numpy as np
import pytest
import torch

from conftest import make_params
from momentum_ssl.analysis.classifiers import knn_probe
from momentum_ssl.analysis.monitor import KnnMonitor, load_subset, stratified_sample
from momentum_ssl.config import ConfigError, RunSpec
from momentum_ssl.core.encoders import Encoders, encode
from momentum_ssl.core.learner import build_learner
from momentum_ssl.data.loaders import EvalLoader, beton_folder, eval_loader, read_labels
from momentum_ssl.stages.pretrain import pretrain


def with_pretrain(params, **changes):
    return dataclasses.replace(params, pretrain=dataclasses.replace(params.pretrain, **changes))


def tsv_steps(path):
    return [int(line.split("\t")[0]) for line in path.read_text().splitlines()[1:]]


def test_stratified_sample_keeps_class_shares_and_is_seeded():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    chosen = stratified_sample(labels, 10, seed=3)
    assert np.all(np.diff(chosen) > 0) and np.bincount(labels[chosen]).tolist() == [5, 3, 2]
    assert np.array_equal(chosen, stratified_sample(labels, 10, seed=3))
    assert not np.array_equal(chosen, stratified_sample(labels, 10, seed=4))
    # shares 3.5, 2.1, 1.4 of 7: floors 3, 2, 1 and the one left to the largest remainder
    assert np.bincount(labels[stratified_sample(labels, 7, seed=0)]).tolist() == [4, 2, 1]
    assert np.array_equal(stratified_sample(labels, 100, seed=0), np.arange(100))
    assert np.array_equal(stratified_sample(labels, 500, seed=0), np.arange(100))


def test_monitor_params_are_checked(tmp_path):
    for changes, message in (
            ({"monitor_train": 0, "monitor_test": 5}, "pretrain.monitor_train: monitor_train "
             "and monitor_test must both be >= 1 (kNN monitor on) or both 0 (off), got 0 and 5"),
            ({"eval_every": -1}, "pretrain.eval_every: must be >= 0, got -1"),
            ({"collapse_std": 1.5}, "pretrain.collapse_std: must be in [0, 1]")):
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")
                           .replace("[", r"\[").replace("]", r"\]")):
            make_params(tmp_path, pretrain=changes)


def test_the_subset_is_what_the_eval_loader_gives(tiny):
    labels = np.concatenate([y.numpy().copy() for _, y in eval_loader(tiny, "train")])
    assert np.array_equal(read_labels(beton_folder(tiny), "train"), labels)
    images, subset_labels, indices = load_subset(tiny, "train", 50, torch.device("cpu"))
    assert len(indices) == 50 and np.array_equal(subset_labels, labels[indices])
    assert np.bincount(subset_labels).tolist() == [5] * 10  # 16 of each class: 5 of each
    loader = EvalLoader(beton_folder(tiny), tiny.augment.size, tiny.loader, "train",
                        indices=indices)
    decoded = torch.cat([x.clone() for x, _ in loader])
    assert torch.equal(images, decoded)  # the raw read is the eval loader's decoding, exactly


def test_without_a_raw_read_the_eval_loader_decodes_the_subset(tiny, monkeypatch):
    import momentum_ssl.analysis.monitor as monitor

    fast = load_subset(tiny, "test", 20, torch.device("cpu"))
    monkeypatch.setattr(monitor, "read_raw_images", lambda *args: None)
    slow = load_subset(tiny, "test", 20, torch.device("cpu"))
    assert torch.equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1])


def test_the_score_is_the_probe_stages_knn_on_the_extracted_features(tiny):
    torch.manual_seed(0)
    learner = build_learner(tiny, RunSpec("byol", "full"))
    state = {k: v.clone() for k, v in learner.state_dict().items()}
    learner.train()
    knn = KnnMonitor.build(tiny, learner, torch.device("cpu"))
    rng = torch.get_rng_state()
    scores = knn.evaluate()
    assert set(scores) == {"knn_student", "knn_teacher"}
    # eval mode for the forward passes only, and nothing changed: BatchNorm buffers included,
    # and no random number drawn, so a run's weights do not depend on the monitor
    assert all(m.training for m in learner.modules())
    assert torch.equal(torch.get_rng_state(), rng)
    for key, value in learner.state_dict().items():
        assert torch.equal(value, state[key]), key

    train, test = knn.embed()
    k = tiny.probe.knn_k[0]
    for name in ("student", "teacher"):
        expected = knn_probe(train[name], knn.train_y, test[name], knn.test_y, (k,),
                             tiny.probe.temperature)[f"k{k}_weighted"]
        assert scores[f"knn_{name}"] == expected
    # the features are extract's (features.encode over the eval loader) at the subset's rows
    _, _, indices = load_subset(tiny, "train", tiny.pretrain.monitor_train, torch.device("cpu"))
    extracted, labels = encode(Encoders(learner), eval_loader(tiny, "train"), torch.device("cpu"))
    learner.train()
    for name in ("student", "teacher"):
        np.testing.assert_allclose(train[name], extracted[name][indices], rtol=1e-5, atol=1e-6)
    assert np.array_equal(knn.train_y, labels[indices])

    projector_only = KnnMonitor.build(tiny, build_learner(tiny, RunSpec("byol", "projector")),
                                      torch.device("cpu"))
    assert set(projector_only.evaluate()) == {"knn_student"}  # its teacher shares the backbone


def test_pretrain_logs_knn_at_eval_every_and_epoch_ends_and_health_every_log(tiny, tmp_path,
                                                                               capsys):
    params = with_pretrain(tiny, monitor_train=100, monitor_test=30, eval_every=3)
    out = pretrain(params, RunSpec("byol", "full"), tmp_path / "run")
    plots = out / "dvclive" / "plots" / "metrics"
    # 5 steps an epoch, 2 epochs: every 3rd step (0, 3, 6, 9) and each epoch's last (4, 9)
    for name in ("knn_student", "knn_teacher"):
        assert tsv_steps(plots / "monitor" / f"{name}.tsv") == [0, 3, 4, 6, 9]
    for name in ("z_std", "erank_y", "erank_z"):
        assert tsv_steps(plots / "health" / f"{name}.tsv") == list(range(10))  # log_every 1
    metrics = json.loads((out / "dvclive" / "metrics.json").read_text())
    assert 0 <= metrics["monitor"]["knn_student"] <= 1 and metrics["time"]["monitor_s"] > 0
    assert 0 < metrics["health"]["z_std"] <= 1 / 8 ** 0.5  # proj_out 8
    assert metrics["health"]["collapse_threshold"] == pytest.approx(0.1 / 8 ** 0.5)
    printed = capsys.readouterr().out
    assert ("byol-full epoch 2: kNN monitor (k5_weighted, 100 train / 30 test images) "
            "student ") in printed and "% of the epoch" not in printed
    assert "s of the epoch's" in printed
    # the set-up (subsets, scikit-learn's import) is printed once, on the first epoch's line
    lines = [line for line in printed.splitlines() if ": kNN monitor (" in line]
    assert len(lines) == 2 and "after a set-up of " in lines[0]
    assert "set-up" not in lines[1]


def test_sizes_of_zero_turn_the_monitor_off(tiny, tmp_path, capsys):
    params = with_pretrain(tiny, monitor_train=0, monitor_test=0, eval_every=2, epochs=1,
                           warmup_epochs=0)
    assert not KnnMonitor.build(params, build_learner(params, RunSpec("simclr")),
                                torch.device("cpu")).active
    out = pretrain(params, RunSpec("simclr"), tmp_path / "run")
    assert not (out / "dvclive" / "plots" / "metrics" / "monitor").exists()
    metrics = json.loads((out / "dvclive" / "metrics.json").read_text())
    assert "monitor" not in metrics and "monitor_s" not in metrics["time"]
    assert "kNN monitor" not in capsys.readouterr().out
