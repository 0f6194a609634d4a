"""Variants through the report and the sweep study's page: a tiny copy of
params/momentum_sweep.yaml (its recipes and claims, the tiny profile's data and sizes, one
sweep of two momentum coefficients at two seeds) gets a row per variant in the table and in
results/metrics.json, its claim that names two variants, a plot of kNN against the swept
value, and the page `python -m momentum_ssl sweep-doc` writes."""

import json

import yaml

from conftest import REPO, tiny_copy
from momentum_ssl.cli import main
from momentum_ssl.plumbing.paths import BASELINES, SEEDLESS

PROFILE = REPO / "params" / "momentum_sweep.yaml"
VARIANTS = ["mocov3-full+tau0.99", "mocov3-full+tau0.996"]


def tiny_sweep(tmp_path) -> dict:
    data = tiny_copy(PROFILE, tmp_path)
    data["recipes"]["mocov3"]["method_settings"] = {"proj_hidden": 16, "proj_out": 8,
                                                    "pred_hidden": 16}
    data["grid"] = {"mocov3-full": {"method": "mocov3", "scope": "full",
                                    "sweep": {"tau": [0.99, 0.996]}}}
    return data


def test_a_sweep_reports_each_variant_and_its_page_is_generated(tmp_path, monkeypatch, capsys):
    data = tiny_sweep(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["convert"]) == 0
    for name in VARIANTS:
        for seed in ("0", "1"):
            assert main(["plan", "--run", name, "--seed", seed]) == 0
            assert main(["pretrain", "--run", name, "--seed", seed]) == 0
    for name in [*VARIANTS, *BASELINES]:
        for seed in ([None] if name in SEEDLESS else ["0", "1"]):
            args = [] if seed is None else ["--seed", seed]
            assert main(["evaluate", "--run", name, *args]) == 0
    assert main(["report"]) == 0
    plans = [yaml.safe_load((tmp_path / "results" / "plan" / n / "s0.yaml").read_text())
             for n in VARIANTS]
    assert [p["momentum"]["tau"] for p in plans] == [0.99, 0.996]
    report = (tmp_path / "results" / "report.md").read_text()
    for name in VARIANTS:
        assert f"| {name} |" in report
    assert f"{VARIANTS[1]} vs {VARIANTS[0]}" in report  # the profile's claim on two variants
    assert "![each sweep: kNN against the swept value](plots/sweeps.png)" in report
    assert (tmp_path / "results" / "plots" / "sweeps.png").stat().st_size > 0
    metrics = json.loads((tmp_path / "results" / "metrics.json").read_text())
    assert all(name in metrics and "knn" in metrics[name] for name in VARIANTS)

    out = tmp_path / "docs" / "MOMENTUM_SWEEP.md"
    assert main(["sweep-doc", "momentum_sweep", "--out", str(out), "--wall-s", "3700"]) == 0
    text = out.read_text()
    assert text.startswith("# The momentum_sweep study")
    assert "mocov3-full over momentum.tau = 0.99, 0.996" in text
    assert "the `dvc repro` that finished it took 1 h 02 min" in text
    assert "python -m momentum_ssl study momentum_sweep" in text
    assert "sweep-doc momentum_sweep --out ../../docs/MOMENTUM_SWEEP.md" in text
    assert main(["sweep-doc", "momentum_sweep", "--out", str(out), "--wall-s", "12"]) == 0
    assert "the `dvc repro` that finished it took under a minute" in out.read_text()  # cached
    assert main(["sweep-doc", "momentum_sweep", "--out", str(out), "--wall-s", "3700"]) == 0
    assert "| 0.996 | mocov3-full+tau0.996 |" in text
    assert "a slower teacher improves MoCo v3 at this budget" in text
    runs = text.split("## Runs", 1)[1].split("## Every claim row", 1)[0]
    assert "| run | kNN student |" in runs and f"| {VARIANTS[1]} |" in runs
    rows = text.split("## Every claim row", 1)[1]
    assert "| claim | source | runs (a vs b) |" in rows and "claims tested (Holm over" in rows
    for image in ("sweeps.png", "claims.png", "accuracy.png", "knn.png"):
        assert (tmp_path / "docs" / "momentum_sweep" / image).stat().st_size > 0
        assert f"momentum_sweep/{image}" in text


def test_sweep_doc_refuses_a_grid_without_a_sweep(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep-doc", "claims", "--params", str(REPO / "params" / "claims.yaml"),
                 "--out", str(tmp_path / "X.md")]) == 2
    err = capsys.readouterr().err
    assert f"{REPO / 'params' / 'claims.yaml'} has no sweep in its grid: run sweep-doc in the " \
           "sweep study's folder (cd studies/claims)" in err
