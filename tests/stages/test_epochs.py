import dataclasses
import json

import pytest

from conftest import TINY, make_params
from momentum_ssl.analysis.stats import summarize
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


def test_kept_checkpoints_table_and_plot_over_seeds(tmp_path):
    """results/epochs/<run>/s<seed>.json -> a row per kept epoch, mean ± half-width of the
    student's headline kNN over seeds per run; the plot is drawn; a missing file is named
    with the command that writes it."""
    from momentum_ssl.analysis.plots import plot_epochs
    from momentum_ssl.plumbing.artifacts import MissingArtifact
    from momentum_ssl.stages.report import collect_epochs, epochs_section

    params = make_params(tmp_path, **{**TINY, "seeds": [0, 1],
                                      "grid": {"byol-full": {"method": "byol", "scope": "full"}}})
    params = dataclasses.replace(params, pretrain=dataclasses.replace(params.pretrain,
                                                                      keep_every=1))
    root = tmp_path / "results"
    with pytest.raises(MissingArtifact, match="run python -m momentum_ssl evaluate-epochs "
                                              "--run byol-full --seed 0 first"):
        collect_epochs(params, root)
    values = {0: (0.5, 0.7), 1: (0.6, 0.8)}
    for seed, (first, last) in values.items():
        path = root / "epochs" / "byol-full" / f"s{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"knn_headline": "k5_weighted", "epochs": [
            {"epoch": 1, "student": {"k5_weighted": first}},
            {"epoch": 2, "student": {"k5_weighted": last}}]}))
    kept = collect_epochs(params, root)
    assert kept == {"byol-full": {1: {0: 0.5, 1: 0.6}, 2: {0: 0.7, 1: 0.8}}}
    lines = epochs_section(params, kept)
    s = summarize([0.7, 0.8])
    assert lines[0] == "## Accuracy against epochs"
    assert f"| 2 | {100 * s.mean:.2f} ± {100 * s.half_width:.2f} |" in lines
    plot_epochs(kept, tmp_path / "epochs.png")
    assert (tmp_path / "epochs.png").read_bytes()[:4] == b"\x89PNG"
