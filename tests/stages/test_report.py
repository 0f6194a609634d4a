"""Every stage on the tiny profile with two seeds, end to end through the CLI (in-process),
then the report and its summary JSON."""

import json

import pytest
import yaml

from conftest import TINY, make_params
from momentum_ssl.analysis.stats import summarize
from momentum_ssl.cli import main
from momentum_ssl.config import to_dict
from momentum_ssl.plumbing.artifacts import CorruptArtifact
from momentum_ssl.plumbing.paths import BASELINES, SEEDLESS

SEEDS = [0, 1]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        params = make_params(tmp_path, **{**TINY, "seeds": SEEDS})
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(to_dict(params), sort_keys=False))
        assert main(["convert"]) == 0
        names = [run.name for run in params.grid]
        for name in names:
            for seed in SEEDS:
                assert main(["plan", "--run", name, "--seed", str(seed)]) == 0
                assert main(["pretrain", "--run", name, "--seed", str(seed)]) == 0
        for name in [*names, *BASELINES]:
            for seed in ([None] if name in SEEDLESS else SEEDS):
                flag = [] if seed is None else ["--seed", str(seed)]
                for stage in ("extract", "probe", "transfer"):
                    assert main([stage, "--run", name, *flag]) == 0, (stage, name, seed)
        assert main(["report"]) == 0
    return tmp_path, params


@pytest.mark.parametrize("name, seed", [("byol-full", 1), ("raw", None), ("random", 0)])
def test_evaluate_writes_the_bytes_extract_probe_and_transfer_write(pipeline, name, seed):
    """The DAG's evaluate stage is the three stages in one process: the same files, bit for
    bit (the fixture ran the three; evaluate rewrites them here)."""
    root, _ = pipeline
    label = name if seed is None else f"{name}/s{seed}"
    files = [root / "results" / "features" / label / "train.parquet",
             root / "results" / "features" / label / "test.parquet",
             root / "results" / "probes" / f"{label}.json",
             root / "results" / "predictions" / f"{label}.parquet",
             root / "results" / "transfer" / f"{label}.json"]
    before = {path: path.read_bytes() for path in files}
    mtimes = {path: path.stat().st_mtime_ns for path in files}
    flag = [] if seed is None else ["--seed", str(seed)]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        assert main(["evaluate", "--run", name, *flag]) == 0
    assert all(path.stat().st_mtime_ns != mtimes[path] for path in files)  # rewritten
    assert {path: path.read_bytes() for path in files} == before


def test_report_table_has_every_run_and_baseline_as_mean_and_interval(pipeline):
    root, params = pipeline
    text = (root / "results" / "report.md").read_text()
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| run | kNN student | kNN teacher | gap | logistic | "
                               "transfer digits (kNN) | pretraining (s) |")
    labels = [row.split(" | ")[0][2:] for row in table[1:6]]
    assert labels == ["byol-full", "byol-projector", "simclr-none", "baseline: raw pixels",
                      "baseline: random-init backbone"]
    knn = [json.loads((root / "results" / "probes" / "byol-full" / f"s{s}.json").read_text())
           ["student"]["knn"]["k5_weighted"] for s in SEEDS]
    s = summarize(knn)
    row = next(line for line in table if line.startswith("| byol-full |"))
    assert f"| {100 * s.mean:.2f} ± {100 * s.half_width:.2f} |" in row
    raw = next(line for line in table if line.startswith("| baseline: raw pixels |"))
    assert "±" not in raw.split(" | ")[1]  # one value: no interval
    for section in ("## Claims", "## Per-seed values", "Gradient stability per block",
                    "Best run: **"):
        assert section in text
    for plot in ("curves", "stability", "accuracy", "claims", "knn", "health"):
        png = root / "results" / "plots" / f"{plot}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for plot in ("knn", "health"):
        assert f"(plots/{plot}.png)" in text
    assert "## Findings" in text
    assert (root / "results" / "plan" / "byol-full" / "s1.yaml").is_file()


def test_summary_json_holds_each_metric_over_seeds_and_every_claim(pipeline):
    root, params = pipeline
    summary = json.loads((root / "results" / "summary.json").read_text())
    knn = summary["runs"]["byol-full"]["knn_student"]
    assert knn["n"] == 2 and set(knn["seeds"]) == {"0", "1"}
    s = summarize(list(knn["seeds"].values()))
    assert (knn["mean"], knn["ci_low"], knn["ci_high"]) == (
        pytest.approx(s.mean), pytest.approx(s.low), pytest.approx(s.high))
    assert summary["runs"]["raw"]["knn_student"]["n"] == 1
    assert "std" not in summary["runs"]["raw"]["knn_student"]  # nothing to compare: left out
    assert {"knn_teacher", "knn_gap", "gap_projector", "step_s", "transfer_digits"} <= set(
        summary["runs"]["byol-full"])
    statuses = {c["claim"]: c["status"] for c in summary["claims"]}
    assert len(summary["claims"]) >= len(params.claims)
    # every run's kNN over the random-init backbone, paired by seed, decides whether it learned
    for name in ("byol-full", "byol-projector", "simclr-none"):
        entry = summary["learning"][name]
        over = entry["knn_over_random"]
        expected = {str(s): summary["runs"][name]["knn_student"]["seeds"][str(s)]
                    - summary["runs"]["random"]["knn_student"]["seeds"][str(s)] for s in SEEDS}
        assert over["seeds"] == pytest.approx(expected)
        assert entry["learned"] == (over["ci_low"] > 0 and not entry["collapsed_seeds"])
    # the tiny grid has byol-full and byol-projector: the non-inferiority claim is judged on
    # them if both learned, and with two seeds gives no verdict
    noninferior = next(c for c in summary["claims"] if c["kind"] == "noninferior"
                       and c["a"] == "byol-projector")
    assert noninferior["b"] == "byol-full"
    if all(summary["learning"][r]["learned"] for r in ("byol-projector", "byol-full")):
        assert noninferior["status"] == "inconclusive"
        assert "2 seeds: a verdict needs 3" in noninferior["note"]
        assert set(noninferior["difference"]["seeds"]) == {"0", "1"}
    else:
        assert noninferior["status"] == "not testable" and "not shown to have learned" in \
            noninferior["note"]
    assert statuses["XMoCo is competitive with MoCo v2 on linear evaluation"] == "not tested"
    assert all(c["status"] not in ("supported", "contradicted") for c in summary["claims"])


def test_no_epochs_section_or_plot_without_kept_checkpoints(pipeline):
    root, _ = pipeline
    assert "against epochs" not in (root / "results" / "report.md").read_text()
    assert not (root / "results" / "plots" / "epochs.png").exists()


def test_a_run_that_did_not_learn_is_marked_and_no_claim_is_judged_on_it(pipeline, tmp_path):
    """The tiny pipeline's results with byol-full's student kNN set to the random-init
    backbone's at each seed (a zero difference) and byol-projector's 10 and 11 points above
    it: byol-full "did not learn" in the table and the summary, byol-projector learned, and
    every claim row that compares byol-full "not testable", naming it alone."""
    import shutil

    root, params = pipeline
    shutil.copytree(root / "results", tmp_path / "results")
    shutil.copy(root / "params.yaml", tmp_path / "params.yaml")
    for seed in SEEDS:
        random = json.loads((root / "results" / "probes" / "random" / f"s{seed}.json")
                            .read_text())
        for run, over in (("byol-full", 0.0), ("byol-projector", 0.10 + 0.01 * seed)):
            path = tmp_path / "results" / "probes" / run / f"s{seed}.json"
            probes = json.loads(path.read_text())
            key = probes["knn_headline"]
            probes["student"]["knn"][key] = random["student"]["knn"][key] + over
            path.write_text(json.dumps(probes))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        assert main(["report"]) == 0
    text = (tmp_path / "results" / "report.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| byol-full |"))
    assert row.endswith("+0.00 [+0.00, +0.00] **not shown to have learned** |")  # no spread
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    entry = summary["learning"]["byol-full"]
    assert entry["learned"] is False and "no spread" in entry["reason"]  # +0.00 at every seed
    touching = [c for c in summary["claims"] if "byol-full" in (c["a"], c.get("b"))]
    assert touching and all(c["status"] == "not testable" for c in touching)
    assert all("byol-full not shown to have learned" in c["note"] and "byol-projector not"
               not in c["note"] for c in touching)
    learned = summary["learning"]["byol-projector"]
    assert learned["learned"] is True and "reason" not in learned
    assert learned["knn_over_random"]["mean"] == pytest.approx(0.105)
    row = next(line for line in text.splitlines() if line.startswith("| byol-projector |"))
    assert row.endswith("+10.50 [+4.15, +16.85] |")  # 10.5 +- 12.71 * 0.5 points
    assert "not testable" in text


def test_a_run_that_logged_one_step_reports_its_stability_without_a_rel_change(pipeline,
                                                                                 tmp_path):
    """One logged step has no step-to-step change: telemetry says NaN, which dvclive writes as
    the string "nan". The report reads it as a number and shows a dash, not a TypeError."""
    import shutil

    root, params = pipeline
    shutil.copytree(root / "results", tmp_path / "results")
    shutil.copy(root / "params.yaml", tmp_path / "params.yaml")
    for seed in SEEDS:
        path = tmp_path / "results" / "runs" / "byol-full" / f"s{seed}" / "dvclive" / "metrics.json"
        live = json.loads(path.read_text())
        assert live["stability"]
        for stats in live["stability"].values():
            stats["rel_change"] = "nan"
        path.write_text(json.dumps(live))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        assert main(["report"]) == 0
    text = (tmp_path / "results" / "report.md").read_text()
    stability = text.split("## Gradient stability per block", 1)[1]
    row = next(line for line in stability.splitlines() if line.startswith("| byol-full |"))
    cells = row.strip("|").split("|")[1:]
    assert cells and all(cell.strip().endswith("/ —") for cell in cells)


def test_kept_weights_that_no_stage_scored_are_said_in_the_report_not_fatal(pipeline,
                                                                           tmp_path):
    """`dvc exp run -S pretrain.keep_every=1` at the root: the root dvc.yaml has no
    evaluate-epochs stage, so no epochs file exists; the report says how to score them."""
    import shutil

    root, params = pipeline
    shutil.copytree(root / "results", tmp_path / "results")
    data = yaml.safe_load((root / "params.yaml").read_text())
    data["pretrain"]["keep_every"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        assert main(["report"]) == 0
    text = (tmp_path / "results" / "report.md").read_text()
    assert "## Accuracy against epochs" in text and "did not score them" in text
    assert "evaluate-epochs --run RUN --seed SEED" in text
    assert not (tmp_path / "results" / "plots" / "epochs.png").exists()


def test_report_names_a_missing_params_file(tiny, capsys):
    assert main(["report", "--params", "missing.yaml"]) == 2
    assert "params file missing.yaml not found" in capsys.readouterr().err


def write_log(live, metric, rows):
    path = live / "plots" / "metrics" / f"{metric}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    name = metric.rsplit("/", 1)[-1]
    path.write_text(f"step\t{name}\n" + "".join(f"{s}\t{v}\n" for s, v in rows))


def test_collapse_findings_and_monitor_plots_from_constructed_logs(tmp_path):
    from momentum_ssl.analysis.plots import plot_health, plot_knn
    from momentum_ssl.stages.report import collapse_findings

    params = make_params(tmp_path, **{**TINY, "seeds": [0, 1]})  # 2 epochs; 5 steps each in these logs
    root = tmp_path / "results"
    healthy = [(s, 0.2) for s in range(10)]
    logs = {("byol-full", 0): [(s, 0.2 if s < 5 else 0.001 * s) for s in range(10)],  # epoch 2
            ("byol-full", 1): healthy,
            ("simclr-none", 0): healthy[:7] + [(7, 0.0), (8, 0.0), (9, 0.0)],  # epoch 2 partly
            ("byol-projector", 0): None}  # no health log (a run from before the telemetry)
    for (name, seed), rows in logs.items():
        live = root / "runs" / name / f"s{seed}" / "dvclive"
        live.mkdir(parents=True)
        summary = {"time": {"steps": 10}}
        if rows is not None:
            summary["health"] = {"collapse_threshold": 0.05}
            write_log(live, "health/z_std", rows)
            write_log(live, "health/erank_y", [(s, 5.0) for s, _ in rows])
            write_log(live, "monitor/knn_student", [(4, 0.5), (9, 0.6)])
            if name == "byol-full":
                write_log(live, "monitor/knn_teacher", [(4, 0.45), (9, 0.62)])
        (live / "metrics.json").write_text(json.dumps(summary))
    assert collapse_findings(params, root) == [
        "- **byol-full** (seed 0) collapsed: the std of its L2-normalised projector output "
        "stayed below 0.05 at every logged step of epoch 2 of 2 (last logged value 0.009)."]
    for plot in (plot_knn, plot_health):
        path = tmp_path / f"{plot.__name__}.png"
        plot(params, root, path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (root / "runs" / "byol-full" / "s1" / "dvclive" / "metrics.json").write_text("{trunc")
    with pytest.raises(CorruptArtifact, match="pretrain --run byol-full --seed 1"):
        collapse_findings(params, root)


def test_report_marks_a_logistic_score_whose_fit_did_not_converge(tiny):
    from momentum_ssl.stages.report import render

    def cells(converged):
        return {0: {"knn_student": 0.5, "logistic_student": 0.61, "logistic_converged": c,
                    "transfer_digits": 0.7, "stability": {}} for c in [converged]}

    collected = {"byol-full": {"run": tiny.grid[0], "label": "byol-full", "seeds": cells(True)},
                 "simclr-none": {"run": tiny.grid[2], "label": "simclr-none",
                                 "seeds": cells(False)},
                 "raw": {"run": None, "label": "raw", "seeds": {None: cells(True)[0]}},
                 "random": {"run": None, "label": "random", "seeds": cells(True)}}
    text = render(tiny, collected, [], ["stem"])
    assert "| simclr-none | 50.00 | — | — | 61.00 † |" in text
    assert "| byol-full | 50.00 | — | — | 61.00 |" in text
    footnote = [line for line in text.splitlines() if line.startswith("† ")]
    assert len(footnote) == 1 and footnote[0].endswith(": simclr-none/s0. Raise probe.max_iter.")
    collected["simclr-none"]["seeds"][0]["logistic_converged"] = True
    assert "†" not in render(tiny, collected, [], ["stem"])


def test_the_test_sets_own_error_from_the_per_image_predictions(tmp_path):
    """A kNN claim row's test-set column is from the paired bootstrap over the test images of
    the runs' predictions (results/predictions/<run>/s<seed>.parquet), less the seeds' share;
    a transfer row's, the upper bound from its accuracies and test images; the report prints
    both."""
    import numpy as np

    from momentum_ssl.analysis.claims import judge
    from momentum_ssl.analysis.classifiers import headline_knn
    from momentum_ssl.analysis.stats import image_half_width, image_half_width_bound
    from momentum_ssl.config import ClaimConfig
    from momentum_ssl.plumbing.paths import cell, predictions_file
    from momentum_ssl.plumbing.results import write_features
    from momentum_ssl.stages.report import claims_section, test_set_errors

    params = make_params(tmp_path, **TINY)
    column = f"student/knn_{headline_knn(params.probe)}"
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 200)
    hard = rng.random(200) < 0.3  # hard for b alone: the test set's own share is not 0
    values, rows = {}, []
    for run, accuracy in (("simclr-projector", 0.9), ("simclr-none", 0.8)):
        values[run] = {}
        chance = np.where(hard & (run == "simclr-none"), accuracy - 0.5, accuracy)
        for seed in range(4):
            predicted = np.where(rng.random(200) < chance, labels, (labels + 1) % 10)
            write_features(predictions_file(cell(run, seed), tmp_path), {}, labels,
                           {"name": cell(run, seed)}, extra={column: predicted})
            score = float((predicted == labels).mean())
            values[run][seed] = {"knn_student": score, "transfer": accuracy - 0.01 * seed}
            rows.append((run, seed, (predicted == labels).astype(float)))
    claims = (ClaimConfig("knn", "me", "greater", "simclr-projector", "simclr-none"),
              ClaimConfig("transfer", "me", "greater", "simclr-projector", "simclr-none",
                          metric="transfer"))
    verdicts = judge(claims, values)
    collected = {run: {"seeds": {s: {**m, "transfer_digits": m["transfer"],
                                     "test_images": {"digits": 360}}
                                 for s, m in seeds.items()}} for run, seeds in values.items()}
    errors = test_set_errors(params, collected, verdicts, tmp_path)
    per_seed = [a - b for (_, _, a), (_, _, b) in zip(rows[:4], rows[4:])]
    assert errors[0].exact and errors[0].half_width == pytest.approx(image_half_width(per_seed))
    assert errors[0].images == 200 and errors[0].half_width > 0
    mean_a = 1 - np.mean([0.9 - 0.01 * s for s in range(4)])
    mean_b = 1 - np.mean([0.8 - 0.01 * s for s in range(4)])
    assert not errors[1].exact and errors[1].half_width == pytest.approx(
        image_half_width_bound([(mean_a, mean_b, 360)]))
    text = "\n".join(claims_section(verdicts, errors))
    assert f"| ±{100 * errors[0].half_width:.2f}" in text
    assert f"| ≤ ±{100 * errors[1].half_width:.2f}" in text


def test_the_blocks_come_from_the_model_when_no_run_logged_them(tmp_path):
    from momentum_ssl.stages.report import model_blocks

    params = make_params(tmp_path, **TINY)
    assert model_blocks(params) == ["stem", "stage1", "stage2", "stage3", "stage4", "projector"]
    vit = make_params(tmp_path, **{**TINY, "model": {"backbone": "vit_tiny", "patch_size": 4}})
    assert model_blocks(vit) == ["stem", *[f"stage{i}" for i in range(1, 13)], "projector"]


def test_the_reports_scale_line_says_each_runs_epochs_when_a_grid_entry_sets_its_own(tmp_path):
    from momentum_ssl.stages.report import _scale_line

    shared = make_params(tmp_path, **TINY)
    assert _scale_line(shared).endswith(f", 2 epochs at batch {shared.loader.batch_size}")
    grid = {"byol-full": {"method": "byol", "scope": "full"},
            "byol-full+long": {"method": "byol", "scope": "full", "pretrain": {"epochs": 3}}}
    line = _scale_line(make_params(tmp_path, **{**TINY, "grid": grid}))
    assert "per run byol-full 2 epochs at batch" in line
    assert "byol-full+long 3 epochs at batch" in line
