"""Variants through the report: a sweep of the momentum coefficient on the tiny profile, at two
seeds, gets a row per variant in the table and in results/metrics.json, a claim that names two
variants, and a plot of kNN against the swept value."""

import copy
import json

import yaml

from conftest import TINY, repo_params_dict
from momentum_ssl.cli import main
from momentum_ssl.plumbing.paths import BASELINES, SEEDLESS

VARIANTS = ["byol-full+tau0.9", "byol-full+tau0.99"]


def test_a_sweep_reports_each_variant_and_a_claim_compares_two(tmp_path, monkeypatch):
    data = repo_params_dict()
    for name, values in copy.deepcopy(TINY).items():
        data[name] = ({**data[name], **values} if isinstance(values, dict) and name != "grid"
                      else values)
    data["data"]["out_dir"] = str(tmp_path / "beton")
    data["seeds"] = [0, 1]
    data["grid"] = {"byol-full": {"method": "byol", "scope": "full",
                                  "sweep": {"tau": [0.9, 0.99]}}}
    data["claims"] = [{"name": "a slower teacher helps at this budget", "source": "test",
                       "kind": "greater", "a": VARIANTS[1], "b": VARIANTS[0]}]
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
    assert [p["momentum"]["tau"] for p in plans] == [0.9, 0.99]
    report = (tmp_path / "results" / "report.md").read_text()
    for name in VARIANTS:
        assert f"| {name} |" in report
    assert f"{VARIANTS[1]} vs {VARIANTS[0]}" in report
    assert "![each sweep: kNN against the swept value](plots/sweeps.png)" in report
    assert (tmp_path / "results" / "plots" / "sweeps.png").stat().st_size > 0
    metrics = json.loads((tmp_path / "results" / "metrics.json").read_text())
    assert all(name in metrics and "knn" in metrics[name] for name in VARIANTS)
