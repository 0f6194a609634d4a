"""Every stage on the tiny profile, end to end through the CLI (in-process), then the report."""

import json

import pytest
import yaml

from conftest import TINY, make_params
from momentum_ssl.cli import main
from momentum_ssl.config import to_dict
from momentum_ssl.paths import BASELINES


@pytest.fixture
def pipeline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = make_params(tmp_path, **TINY)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(to_dict(params), sort_keys=False))
    assert main(["convert"]) == 0
    names = [run.name for run in params.grid]
    for name in names:
        assert main(["plan", "--run", name]) == 0
        assert main(["pretrain", "--run", name]) == 0
    for name in [*names, *BASELINES]:
        for stage in ("extract", "probe", "transfer"):
            assert main([stage, "--run", name]) == 0, (stage, name)
    assert main(["report"]) == 0
    return tmp_path, params


def test_report_table_has_every_run_and_baseline(pipeline, capsys):
    root, params = pipeline
    text = (root / "results" / "report.md").read_text()
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| run | kNN student | kNN teacher | gap | logistic | "
                               "transfer digits (kNN) | pretraining (s) |")
    labels = [row.split(" | ")[0][2:] for row in table[1:5]]
    assert labels == ["byol-full", "byol-projector", "simclr-none", "baseline: raw pixels"]
    probes = json.loads((root / "results" / "probes" / "byol-full.json").read_text())
    knn = 100 * probes["student"]["knn"]["k5_weighted"]
    row = next(line for line in table if line.startswith("| byol-full |"))
    assert f"| {knn:.2f} |" in row
    assert "| simclr-none | " in text and "Gradient stability per block" in text
    assert "Best run: **" in text
    for plot in ("curves", "stability", "accuracy"):
        png = root / "results" / "plots" / f"{plot}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (root / "results" / "plan" / "byol-full.yaml").is_file()


def test_report_names_a_missing_params_file(tiny, capsys):
    assert main(["report", "--params", "missing.yaml"]) == 2
    assert "params file missing.yaml not found" in capsys.readouterr().err


def test_report_marks_a_logistic_score_whose_fit_did_not_converge(tiny):
    from momentum_ssl.report import render

    def row(name, converged, method="byol"):
        return {"name": name, "label": name, "method": method, "variant": "full",
                "knn_student": 0.5, "knn_teacher": None, "gap": None, "logistic": 0.61,
                "logistic_converged": converged, "transfer": {"digits": 0.7},
                "pretrain_s": 1.0, "stability": {}}

    rows = [row("byol-full", True), row("simclr-none", False),
            row("raw", True, None), row("random", True, None)]
    text = render(tiny, rows, ["layer1"])
    assert "| simclr-none | 50.00 | — | — | 61.00 † |" in text
    assert "| byol-full | 50.00 | — | — | 61.00 |" in text
    footnote = [line for line in text.splitlines() if line.startswith("† ")]
    assert len(footnote) == 1 and footnote[0].endswith(": simclr-none. Raise probe.max_iter.")
    rows[1]["logistic_converged"] = True
    assert "†" not in render(tiny, rows, ["layer1"])
