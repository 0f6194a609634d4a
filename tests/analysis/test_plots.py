"""The report's plots, apart from the report stage: each draws a PNG from constructed DVCLive
logs, and the same logs draw the same bytes (results/plots is a DVC output: a rerun on the
same results must not change it)."""

import json

import pytest

from conftest import TINY, make_params
from momentum_ssl.analysis.plots import (plot_accuracy, plot_claims, plot_curves, plot_health,
                                         plot_knn, plot_stability)
from momentum_ssl.analysis.summaries import read_history
from momentum_ssl.plumbing.artifacts import CorruptArtifact

PNG = b"\x89PNG\r\n\x1a\n"
BLOCKS = ["stem", "stage1", "stage2", "stage3", "stage4"]


def write_log(live, metric, rows):
    path = live / "plots" / "metrics" / f"{metric}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    name = metric.rsplit("/", 1)[-1]
    path.write_text(f"step\t{name}\n" + "".join(f"{s}\t{v}\n" for s, v in rows))


@pytest.fixture
def logs(tmp_path):
    """Every tiny grid run at seeds 0 and 1 with ten logged steps of each metric the plots
    read."""
    params = make_params(tmp_path, **{**TINY, "seeds": [0, 1]})
    root = tmp_path / "results"
    for i, run in enumerate(params.grid):
        for seed in params.seeds:
            live = root / "runs" / run.name / f"s{seed}" / "dvclive"
            steps = range(10)
            for metric in ("train/loss", "train/gap_backbone", "train/gap_projector",
                           "health/z_std", "health/erank_y", "health/erank_z"):
                write_log(live, metric, [(s, 1.0 / (s + 1 + i + seed)) for s in steps])
            for block in BLOCKS:
                write_log(live, f"grad_norm/{block}", [(s, 0.1 * (s + 1)) for s in steps])
            write_log(live, "monitor/knn_student", [(4, 0.5 + 0.01 * i), (9, 0.6)])
            write_log(live, "monitor/knn_teacher", [(4, 0.45), (9, 0.62)])
            (live / "metrics.json").write_text(json.dumps(
                {"time": {"steps": 10}, "health": {"collapse_threshold": 0.05}}))
    return params, root


@pytest.mark.parametrize("plot", [plot_curves, plot_knn, plot_health, plot_stability])
def test_each_log_plot_draws_a_png_and_the_same_logs_draw_the_same_bytes(logs, tmp_path, plot):
    params, root = logs
    extra = (BLOCKS,) if plot is plot_stability else ()
    first, second = tmp_path / "first.png", tmp_path / "second.png"
    plot(params, root, first, *extra)
    plot(params, root, second, *extra)
    assert first.read_bytes()[:8] == PNG
    assert first.read_bytes() == second.read_bytes()


def test_accuracy_and_claims_plots_draw_from_collected_numbers(logs, tmp_path):
    params, _ = logs
    collected = {run.name: {"run": run, "label": run.name,
                            "seeds": {0: {"knn_student": 0.5 + 0.1 * i},
                                      1: {"knn_student": 0.52 + 0.1 * i}}}
                 for i, run in enumerate(params.grid)}
    collected["raw"] = {"run": None, "label": "baseline: raw pixels",
                        "seeds": {None: {"knn_student": 0.4}}}
    plot_accuracy(collected, tmp_path / "accuracy.png")
    plot_claims([], tmp_path / "claims.png")  # no claim tested: a figure that says so
    for name in ("accuracy", "claims"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == PNG


def test_read_history_reads_steps_and_values_and_names_the_run_of_a_cut_table(logs):
    _, root = logs
    live = root / "runs" / "byol-full" / "s1" / "dvclive"
    steps, values = read_history(live, "monitor/knn_teacher")
    assert steps == [4, 9] and values == [0.45, 0.62]
    assert read_history(live, "monitor/absent") == ([], [])
    table = live / "plots" / "metrics" / "train" / "loss.tsv"
    table.write_text(table.read_text() + "10\t")  # a row cut by a killed run
    with pytest.raises(CorruptArtifact, match="pretrain --run byol-full --seed 1"):
        read_history(live, "train/loss")
