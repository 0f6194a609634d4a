"""The claims study (params/claims.yaml, studies/claims, make claims, docs/CLAIMS.md): its
pipeline is the root one seen from its folder, every run resolves, its claims expand to runs of
its grid, and a tiny version (two seeds, digits) runs end to end and writes the document."""


import pytest
import yaml

from conftest import REPO, tiny_copy
from momentum_ssl.analysis.claims import expand
from momentum_ssl.cli import main
from momentum_ssl.config import load_params
from momentum_ssl.plumbing.paths import BASELINES, SEEDLESS
from momentum_ssl.study import (STUDIES, profile_of, study_params_text, study_pipeline,
                                study_snakefile, study_text, write_study)

PROFILE = REPO / "params" / "claims.yaml"
STUDY = REPO / "studies" / "claims"


def test_the_committed_study_pipeline_is_the_root_one_seen_from_its_folder():
    """studies/claims/dvc.yaml is generated: a change to the root dvc.yaml must be carried
    over (python -m momentum_ssl study claims), or the study would run stale stages."""
    assert (STUDY / "dvc.yaml").read_text() == study_text("claims", REPO)
    assert not (STUDY / "params.yaml").is_symlink()  # DVC reads a committed link as its path
    assert (STUDY / "params.yaml").read_text() == study_params_text("claims", REPO)
    assert load_params(STUDY / "params.yaml") == load_params(PROFILE)  # the same recipes
    assert (STUDY / "Snakefile").read_text() == study_snakefile("claims")
    assert profile_of("claims") == "params/claims.yaml"


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "studies").iterdir()))
def test_every_committed_study_is_its_profile_seen_from_its_folder(name):
    folder = REPO / "studies" / name
    assert (folder / "dvc.yaml").read_text() == study_text(name, REPO)
    assert (folder / "params.yaml").read_text() == study_params_text(name, REPO)
    assert (folder / "Snakefile").read_text() == study_snakefile(name)
    assert load_params(folder / "params.yaml") == load_params(REPO / profile_of(name))


def test_any_profile_is_a_study_and_a_sweep_is_written_out_in_its_copy(tmp_path):
    """params/<name>.yaml makes studies/<name>/ (its dvc.yaml, Snakefile and params.yaml); a
    sweep in the profile's grid is written out as its variants, the rest of the text kept."""
    import shutil

    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copytree(REPO / "params", tmp_path / "params")
    profile = tmp_path / "params" / "cifar10.yaml"
    data = yaml.safe_load(profile.read_text())
    grid = data["grid"]
    first = next(iter(grid))
    data["grid"] = {first: {**grid[first], "sweep": {"lr": [0.1, 0.2]}},
                    **{k: v for k, v in grid.items() if k != first}}
    profile.write_text("# a sweep of the lr\n" + yaml.safe_dump(data, sort_keys=False))
    folder = write_study("cifar10", tmp_path)
    assert {p.name for p in folder.iterdir()} == {"dvc.yaml", "Snakefile", "params.yaml"}
    copy_text = (folder / "params.yaml").read_text()
    assert "# a sweep of the lr\n" in copy_text and "sweep:" not in copy_text
    assert f"  {first}+lr0.1: {{" in copy_text and "swept: pretrain.lr" in copy_text
    study = load_params(folder / "params.yaml")
    assert [r.name for r in study.grid][:2] == [f"{first}+lr0.1", f"{first}+lr0.2"]
    assert study == load_params(profile)
    assert "../../params/recipes/cifar.yaml" in yaml.safe_load(
        (folder / "dvc.yaml").read_text())["stages"]["plan"]["deps"]
    with pytest.raises(Exception, match="no study 'nope': a study runs a profile "
                                        "params/NAME.yaml; choose one of: .*cifar10"):
        write_study("nope", tmp_path)


def test_a_study_points_code_up_and_keeps_no_metrics_or_plots_of_its_own():
    root = yaml.safe_load((REPO / "dvc.yaml").read_text())
    study = study_pipeline(root, recipes="../../params/recipes/cpu.yaml")
    assert list(study) == ["stages"] and list(study["stages"]) == list(root["stages"])
    for name, stage in study["stages"].items():
        body = stage.get("do", stage)
        assert "metrics" not in body and "plots" not in body, name
        assert all(not d.startswith("src/") for d in body["deps"]), name
        assert any(d.startswith("../../src/momentum_ssl/") for d in body["deps"]), name
    outs = study["stages"]["report"]["outs"]
    assert "results/metrics.json" in outs  # an out here: `dvc metrics diff` reads the root's
    assert {"results/runs/${item.run}/s${item.seed}/dvclive/plots/metrics": {"persist": True}} \
        in study["stages"]["pretrain"]["outs"]
    assert "../../params/recipes/cpu.yaml" in study["stages"]["plan"]["deps"]
    assert root == yaml.safe_load((REPO / "dvc.yaml").read_text())  # the root is not touched


@pytest.mark.parametrize("run", list(yaml.safe_load(PROFILE.read_text())["grid"]))
def test_every_run_of_the_claims_profile_resolves(run, capsys):
    assert main(["params", "--params", str(PROFILE), "--run", run]) == 0
    assert f"{run}:" in capsys.readouterr().out


def test_every_claim_of_the_claims_profile_expands_to_a_pair_of_its_runs():
    params = load_params(PROFILE)
    assert len(params.seeds) >= 8
    values = {run.name: {} for run in params.grid}
    assert params.claims == load_params(REPO / "params.yaml").claims  # the papers', all of them
    for claim in params.claims:
        assert expand(claim, values), f"no runs of the claims grid for: {claim.name}"


def test_every_claim_has_a_note_on_what_this_scale_can_say():
    notes = yaml.safe_load((STUDY / "notes.yaml").read_text())
    assert set(notes) == {c.name for c in load_params(PROFILE).claims}
    assert all(len(text.split()) >= 15 for text in notes.values())


def test_a_tiny_claims_study_runs_end_to_end_and_writes_the_document(tmp_path, monkeypatch):
    data = tiny_copy(PROFILE, tmp_path)
    for recipe in data["recipes"].values():  # heads small enough for 8 px digits
        recipe["method_settings"] = {"proj_hidden": 16, "proj_out": 8,
                                     **({"pred_hidden": 16} if "pred_hidden" in
                                        recipe["method_settings"] else {})}
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["convert"]) == 0
    names = list(data["grid"])
    for name in names:
        for seed in data["seeds"]:
            assert main(["plan", "--run", name, "--seed", str(seed)]) == 0
            assert main(["pretrain", "--run", name, "--seed", str(seed)]) == 0
    for name in [*names, *BASELINES]:
        for seed in ([None] if name in SEEDLESS else data["seeds"]):
            assert main(["evaluate", "--run", name,
                         *([] if seed is None else ["--seed", str(seed)])]) == 0
    assert main(["report"]) == 0
    out = tmp_path / "docs" / "CLAIMS.md"
    assert main(["claims-doc", "--notes", str(STUDY / "notes.yaml"), "--out", str(out),
                 "--wall-s", "4000"]) == 0
    text = out.read_text()
    notes = yaml.safe_load((STUDY / "notes.yaml").read_text())
    assert text.startswith("# The claims study")
    assert "1 h 07 min" in text and "2 seeds (0-1)" in text
    for claim, note in notes.items():
        assert claim in text and " ".join(note.split()) in text
    for name in names:
        assert f"| {name} |" in text
    assert "kNN - random-init [95% CI]" in text and "## Where it ran" in text
    claims = len(load_params(PROFILE).claims)  # two seeds judge nothing
    assert f"**{claims} claims: 0 supported, 0 contradicted, 0 inconclusive" in text
    for image in ("claims.png", "accuracy.png", "knn.png"):
        assert (tmp_path / "docs" / "claims" / image).stat().st_size > 0
        assert f"claims/{image}" in text


def test_claims_doc_names_a_missing_notes_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["claims-doc", "--params", str(PROFILE)]) == 2
    assert "claims notes notes.yaml not found" in capsys.readouterr().err


def test_the_study_copy_rewrites_a_recipes_path_and_nothing_else(tmp_path, monkeypatch):
    """A recipes path is seen from studies/<name>/; a recipes mapping (block or inline) and
    every other line stay as written, comments included."""
    (tmp_path / "params").mkdir()
    monkeypatch.setitem(STUDIES, "t", "params/t.yaml")
    profile = tmp_path / "params" / "t.yaml"
    for body, expected in [
            ("seed: 0  # data\nrecipes: recipes/cpu.yaml   # note\n",
             "seed: 0  # data\nrecipes: ../../params/recipes/cpu.yaml   # note\n"),
            ("recipes:\n  simclr: {pretrain: {lr: 0.3}}\n", None),
            ("recipes: {}\n", None)]:
        profile.write_text(body)
        text = study_params_text("t", tmp_path)
        assert text.startswith("# Generated by `python -m momentum_ssl study t` from params/t.yaml")
        assert text.endswith(expected or body)
