import dataclasses
import json

import pytest

from momentum_ssl.config import ConfigError
from momentum_ssl.plumbing.artifacts import MissingArtifact
from momentum_ssl.stages.epochs import evaluate_epochs
from momentum_ssl.stages.features import extract
from momentum_ssl.stages.pretrain import pretrain
from momentum_ssl.stages.probes import probe


def keeping(params, **values):
    return dataclasses.replace(params, pretrain=dataclasses.replace(params.pretrain, **values))


def test_the_last_kept_checkpoint_scores_as_the_probe_scores_the_finished_run(tiny):
    """keep_every 1 over 2 epochs: a record per kept epoch, student and teacher; the last
    epoch's weights are model.pt's, so its kNN is the probe stage's to the bit."""
    params = keeping(tiny, keep_every=1)
    run = next(r for r in params.grid if r.name == "byol-full")
    pretrain(params, run)
    out = evaluate_epochs(params, "byol-full")
    scores = json.loads(out.read_text())
    assert str(out) == "results/epochs/byol-full.json"
    assert [r["epoch"] for r in scores["epochs"]] == [1, 2]
    assert scores["knn_headline"] == "k5_weighted" and scores["keep_every"] == 1
    extract(params, "byol-full")
    probed = json.loads(probe(params, "byol-full").read_text())
    last = scores["epochs"][-1]
    for encoder in ("student", "teacher"):
        assert last[encoder] == probed[encoder]["knn"]


def test_missing_or_foreign_kept_checkpoints_are_named_with_the_fix(tiny):
    params = keeping(tiny, keep_every=1)
    run = next(r for r in params.grid if r.name == "simclr-none")
    with pytest.raises(ConfigError, match="pretrain.keep_every is null"):
        evaluate_epochs(tiny, "simclr-none")
    with pytest.raises(MissingArtifact, match=r"epochs/e0001.pt not found; run python -m "
                                              r"momentum_ssl pretrain --run simclr-none first"):
        evaluate_epochs(params, "simclr-none")
    pretrain(params, run)
    changed = dataclasses.replace(params, momentum=dataclasses.replace(params.momentum, tau=0.5))
    with pytest.raises(ConfigError, match="e0001.pt was trained with other params"):
        evaluate_epochs(changed, "simclr-none")
