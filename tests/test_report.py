"""Every stage on the tiny profile with two seeds, end to end through the CLI (in-process),
then the report and its summary JSON."""

import json

import pytest
import yaml

from conftest import TINY, make_params
from momentum_ssl.cli import main
from momentum_ssl.config import to_dict
from momentum_ssl.paths import BASELINES, SEEDLESS
from momentum_ssl.stats import summarize

SEEDS = [0, 1]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        params = make_params(tmp_path, **TINY, seeds=SEEDS)
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
    for plot in ("curves", "stability", "accuracy", "claims"):
        png = root / "results" / "plots" / f"{plot}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
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
    # the tiny grid has byol-full and byol-projector: the equivalence claim is tested
    equivalent = next(c for c in summary["claims"] if c["kind"] == "equivalent"
                      and c["a"] == "byol-projector")
    assert equivalent["b"] == "byol-full" and equivalent["status"] in (
        "supported", "contradicted", "inconclusive")
    assert set(equivalent["difference"]["seeds"]) == {"0", "1"}
    assert statuses["XMoCo's regularisers improve MoCo v2"] == "not tested"


def test_report_names_a_missing_params_file(tiny, capsys):
    assert main(["report", "--params", "missing.yaml"]) == 2
    assert "params file missing.yaml not found" in capsys.readouterr().err
