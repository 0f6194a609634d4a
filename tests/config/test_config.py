import copy
import dataclasses

import pytest
import yaml

from conftest import REPO, repo_params_dict
from momentum_ssl.config import (ConfigError, DATASETS, METHODS, RunSpec, load_params,
                                 params_from_dict, params_hash, run_params)


def with_change(path: str, value, delete: bool = False) -> dict:
    data = copy.deepcopy(repo_params_dict())
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    if delete:
        del node[last]
    else:
        node[last] = value
    return data


def error_for(data) -> str:
    with pytest.raises(ConfigError) as info:
        params_from_dict(data)
    return str(info.value)


@pytest.mark.parametrize("path", ["params.yaml", "params/cifar10.yaml", "params/cifar100.yaml",
                                  "params/stl10.yaml", "params/imagenet100_resnet18.yaml",
                                  "params/imagenet100_resnet50.yaml",
                                  "params/imagenet100_vit_small.yaml"])
def test_shipped_profiles_load(path):
    params = load_params(REPO / path)
    assert params.data.dataset in DATASETS
    assert all(run.method in METHODS for run in params.grid)


def test_embedded_default_values():
    params = load_params(REPO / "params.yaml")
    assert params.data.dataset == "fashion_mnist"
    assert params.augment.crop_scale == (0.2, 1.0)
    assert params.augment.solarize_p == (0.0, 0.2)
    assert params.loader.backend == "ffcv"
    assert {run.scope for run in params.grid} >= {"none", "full", "projector"}
    assert any(run.residual for run in params.grid)


def test_params_are_frozen():
    params = load_params(REPO / "params.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.data.dataset = "digits"


def test_unknown_top_level_key_names_it_and_the_allowed_keys():
    msg = error_for({**repo_params_dict(), "trainer": {}})
    assert "unknown key 'trainer'" in msg
    assert ("seed, data, augment, loader, model, pretrain, momentum, residual, methods, probe, "
            "transfer, grid") in msg


def test_unknown_nested_key_suggests_the_close_one():
    data = with_change("data.datset", "digits")
    msg = error_for(data)
    assert "unknown key 'data.datset'" in msg and "did you mean 'data.dataset'" in msg


def test_wrong_type_names_key_and_expected_type():
    assert "loader.batch_size: expected an integer, got 'big'" in error_for(
        with_change("loader.batch_size", "big"))
    # YAML's true is not an integer
    assert "loader.num_workers: expected an integer" in error_for(
        with_change("loader.num_workers", True))
    assert "augment.crop_scale: expected a list of 2 numbers" in error_for(
        with_change("augment.crop_scale", [0.1]))


def test_unknown_choice_lists_allowed_values():
    msg = error_for(with_change("data.dataset", "mnist"))
    assert "data.dataset: 'mnist' is not allowed" in msg
    assert "fashion_mnist, digits, cifar10, cifar100, stl10, imagefolder" in msg


@pytest.mark.parametrize("path,value,expected", [
    ("augment.flip_p", 1.5, "augment.flip_p: must be a probability in [0, 1], got 1.5"),
    ("augment.crop_scale", [0.9, 0.1], "augment.crop_scale: must be [min, max]"),
    ("augment.hue", 0.7, "augment.hue: must be in [0, 0.5]"),
    ("augment.solarize_p", [0.0, 2.0], "augment.solarize_p: must be a probability"),
    ("loader.batch_size", 0, "loader.batch_size: must be >= 1, got 0"),
    ("data.jpeg_quality", 101, "data.jpeg_quality: must be in 1..100"),
    ("data.train_per_class", 0, "data.train_per_class: must be null or >= 1"),
    ("seed", -1, "seed: must be >= 0"),
])
def test_out_of_range_values_name_the_key_and_range(path, value, expected):
    assert expected in error_for(with_change(path, value))


def test_missing_section_is_named():
    data = with_change("augment", None, delete=True)
    assert "missing required key 'augment'" in error_for(data)


def test_section_keys_default_when_left_out():
    params = params_from_dict(with_change("augment.hue", None, delete=True))
    assert params.augment.hue == 0.1


def test_float_written_without_a_dot_is_a_number():
    # PyYAML reads 1e-1 as the string '1e-1'
    params = params_from_dict(yaml.safe_load(yaml.safe_dump(with_change("augment.hue", "1e-1"))))
    assert params.augment.hue == pytest.approx(0.1)


def test_grid_rejects_unknown_method_and_residual_without_teacher():
    msg = error_for(with_change("grid", {"swav-none": {"method": "swav"}}))
    assert "grid.swav-none.method: 'swav' is not allowed" in msg and "byol" in msg
    msg = error_for(with_change("grid", {"byol-none-res": {"method": "byol", "scope": "none",
                                                           "residual": True}}))
    assert "grid.byol-none-res.residual: the residual-momentum loss needs a teacher" in msg
    msg = error_for(with_change("grid", {"byol": {"method": "byol", "scope": "sideways"}}))
    assert "grid.byol.scope: 'sideways' is not allowed" in msg


def test_grid_keys_are_the_run_names():
    msg = error_for(with_change("grid", {"byol-full": {"method": "byol", "scope": "projector"}}))
    assert "grid.byol-full: the run's name must be 'byol-projector'" in msg
    msg = error_for(with_change("grid", {"x": {"method": "simclr", "scope": "last_k", "k": 2}}))
    assert "must be 'simclr-last2'" in msg and "k 2" in msg
    msg = error_for(with_change("grid", [{"method": "byol"}]))
    assert "grid: expected a mapping from run name to" in msg


def test_run_params_hold_only_what_the_run_reads():
    params = params_from_dict(repo_params_dict())
    runs = {run.name: run for run in params.grid}
    plain, res = (run_params(params, runs[n]) for n in ("simclr-full", "simclr-full-res"))
    assert "residual" not in plain and res["residual"] == {"weight": 1.0, "level": "projector"}
    assert plain["method"] == {**dataclasses.asdict(params.methods.simclr), "proj_hidden": 512,
                               "proj_out": 128}
    assert plain["run"] == {"name": "simclr-full", "method": "simclr", "scope": "full", "k": 1,
                            "residual": False, "gpus": 1}
    assert "probe" not in plain and "grid" not in plain
    changed = params_from_dict(with_change("residual.weight", 0.5))
    runs2 = {run.name: run for run in changed.grid}
    assert params_hash(run_params(changed, runs2["simclr-full"])) == params_hash(plain)
    assert params_hash(run_params(changed, runs2["simclr-full-res"])) != params_hash(res)


def test_probe_and_transfer_sections_are_checked():
    assert "probe.temperature: must be > 0" in error_for(with_change("probe.temperature", 0))
    msg = error_for(with_change("transfer.targets", [{"dataset": "mnist"}]))
    assert "transfer.targets[0].dataset: 'mnist' is not allowed" in msg
    msg = error_for(with_change("transfer.targets", [{"dataset": "digits"}, {"dataset": "digits"}]))
    assert "transfer.targets: lists a dataset twice" in msg


def test_run_names():
    assert RunSpec("byol", "full", residual=True).name == "byol-full-res"
    assert RunSpec("simclr", "last_k", k=2).name == "simclr-last2"


def test_load_params_reports_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found; run from the repository root"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_params(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump(with_change("loader.backend", "dali")))
    with pytest.raises(ConfigError, match=r"wrong.yaml: loader.backend: 'dali' is not allowed"):
        load_params(wrong)


def test_methods_section_overrides_defaults_and_checks_ranges():
    params = params_from_dict(with_change("methods", {"mocov2": {"queue_size": 4096}}))
    assert params.methods.mocov2.queue_size == 4096
    assert params.methods.mocov2.temperature == 0.2 and params.methods.unigrad.lambd == 100.0
    assert "methods.byol.proj_hidden: must be >= 1, got 0" in error_for(
        with_change("methods", {"byol": {"proj_hidden": 0}}))
    assert "methods.xmoco.cc_temperature: must be > 0" in error_for(
        with_change("methods", {"xmoco": {"cc_temperature": -1.0}}))
    assert "unknown key 'methods.swav'" in error_for(with_change("methods", {"swav": {}}))
    assert "methods.dino.center_momentum: must be in [0, 1), got 1.0" in error_for(
        with_change("methods", {"dino": {"center_momentum": 1.0}}))
    assert "methods.dino.student_temperature: must be > 0" in error_for(
        with_change("methods", {"dino": {"student_temperature": 0.0}}))
    msg = error_for(with_change("methods", {"byol": {"temperature": 0.2}}))
    assert "unknown key 'methods.byol.temperature'" in msg and "pred_hidden" in msg


def test_model_momentum_residual_sections():
    assert "model.backbone: 'vit' is not allowed" in error_for(
        with_change("model.backbone", "vit"))
    assert "model.width: must be a multiple of 8, got 12" in error_for(
        with_change("model.width", 12))
    assert "momentum.tau: must be in [0, 1]" in error_for(with_change("momentum.tau", 1.5))
    assert "momentum.schedule: 'linear' is not allowed" in error_for(
        with_change("momentum.schedule", "linear"))
    assert "residual.weight: must be >= 0" in error_for(with_change("residual.weight", -1.0))
    assert "residual.level: 'z' is not allowed" in error_for(with_change("residual.level", "z"))


def test_residual_at_the_backbone_needs_a_teacher_with_a_backbone():
    data = with_change("residual.level", "backbone")
    data["grid"]["byol-projector-res"] = {"method": "byol", "scope": "projector", "residual": True}
    msg = error_for(data)
    assert msg == ("residual.level: 'backbone' with scope projector (grid.byol-projector-res) is "
                   "always 0: that teacher has no backbone of its own; set residual.level: "
                   "projector, or give the run scope full or last_k")
    # the same run at the projector level, and the backbone level with scopes that have one
    data["residual"]["level"] = "projector"
    assert params_from_dict(data).residual.level == "projector"
    data = with_change("residual.level", "backbone")
    data["grid"].update({"byol-full-res": {"method": "byol", "scope": "full", "residual": True},
                         "byol-last2-res": {"method": "byol", "scope": "last_k", "k": 2,
                                            "residual": True},
                         "byol-projector": {"method": "byol", "scope": "projector"}})
    assert params_from_dict(data).residual.level == "backbone"


MOCOV3_FULL = {"method": "mocov3", "scope": "full"}  # a run the default's grid lacks


def with_recipes(recipes: dict, **grid_overrides) -> dict:
    data = copy.deepcopy(repo_params_dict())
    data["recipes"] = recipes
    for run, over in grid_overrides.items():  # a run the default's grid lacks is added
        data["grid"].setdefault(run, {}).update(over)
    return data


def test_a_recipe_overrides_the_shared_sections_and_a_grid_entry_overrides_the_recipe():
    from momentum_ssl.config import resolve

    data = with_recipes({"simclr": {"pretrain": {"optimizer": "lars", "lr": 0.4,
                                                 "lars": {"eta": 0.01}},
                                    "momentum": {"tau": 0.99, "final_tau": 0.999},
                                    "augment": {"blur_p": [0.5, 0.5]},
                                    "model": {"zero_init_residual": True},
                                    "method_settings": {"temperature": 0.5}}},
                        **{"simclr-projector": {"pretrain": {"lr": 0.7}}, "mocov3-full": MOCOV3_FULL})
    params = params_from_dict(data)
    runs = {run.name: run for run in params.grid}
    none, projector, moco = (resolve(params, runs[n]) for n in
                             ("simclr-none", "simclr-projector", "mocov3-full"))
    assert none.pretrain.optimizer == "lars" and none.pretrain.lr == 0.4
    assert none.pretrain.lars.eta == 0.01 and none.pretrain.lars.clip_lr  # merged key by key
    assert none.momentum.final_tau == 0.999 and none.augment.blur_p == (0.5, 0.5)
    assert none.model.zero_init_residual and none.methods.simclr.temperature == 0.5
    assert none.pretrain.epochs == params.pretrain.epochs  # the rest stays shared
    assert projector.pretrain.lr == 0.7 and projector.pretrain.optimizer == "lars"
    assert moco.pretrain == params.pretrain and moco.methods.mocov3 == params.methods.mocov3
    # the run's plan (what DVC tracks) holds its resolved recipe
    assert run_params(params, runs["simclr-projector"])["pretrain"]["lr"] == 0.7
    assert run_params(params, runs["simclr-none"])["method"]["temperature"] == 0.5


def test_recipe_mistakes_name_the_layer_and_key():
    msg = error_for(with_recipes({"simclr": {"pretrain": {"lrr": 0.4}}}))
    assert "unknown key 'recipes.simclr.pretrain.lrr' (did you mean" in msg
    msg = error_for(with_recipes({"simclr": {"augment": {"size": 32}}}))
    assert "recipes.simclr.augment.size: is shared by every run" in msg
    msg = error_for(with_recipes({"simclr": {"model": {"width": 32}}}))
    assert "recipes.simclr.model.width: is shared by every run" in msg
    msg = error_for(with_recipes({}, **{"mocov3-full": {**MOCOV3_FULL,
                                                        "momentum": {"final_tau": 0.5}}}))
    assert "grid.mocov3-full.momentum.final_tau: must be in [tau, 1]" in msg
    msg = error_for(with_recipes({"mocov3": {"method_settings": {"proj_layers": 4}}}))
    assert "recipes.mocov3.method_settings.proj_layers: 4 is not allowed" in msg
    msg = error_for(with_recipes({"byol": {"method_settings": {"proj_out": 0}}}))
    assert "recipes.byol.method_settings.proj_out: must be >= 1" in msg
    msg = error_for(with_recipes({"sgd": {}}))
    assert "unknown key 'recipes.sgd'" in msg
    msg = error_for(with_recipes({"simsiam": {"pretrain": {"param_groups": [
        {"select": "predictor"}, {"select": "predictor"}]}}}))
    assert "recipes.simsiam.pretrain.param_groups: selects the same parameters twice" in msg


def test_recipes_can_live_in_a_file_beside_the_profile(tmp_path):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "r.yaml").write_text("byol: {pretrain: {lr: 2.0}}\n")
    data = repo_params_dict()
    data["recipes"] = "recipes/r.yaml"
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(data))
    params = load_params(tmp_path / "p.yaml")
    assert params.recipes.byol.pretrain == {"lr": 2.0}
    data["recipes"] = "recipes/missing.yaml"
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="recipes: file .*missing.yaml not found"):
        load_params(tmp_path / "p.yaml")


def test_params_prints_each_runs_resolved_recipe():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "momentum_ssl", "params", "--params",
                          "params/cifar10.yaml", "--run", "simsiam-full"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    recipe = yaml.safe_load(out)["simsiam-full"]
    assert recipe["pretrain"]["optimizer"] == "sgd" and recipe["pretrain"]["lr"] == 0.5
    assert recipe["pretrain"]["param_groups"][0]["schedule"] == "constant"
    assert "lars" not in recipe["pretrain"]  # SGD reads none of it
    assert recipe["source"].startswith("solo-learn scripts/pretrain/cifar/simsiam.yaml")
    whole = yaml.safe_load(subprocess.run(
        [sys.executable, "-m", "momentum_ssl", "params"], cwd=REPO, capture_output=True,
        text=True, check=True).stdout)
    assert set(whole["resolved"]) == set(whole["grid"])


def test_claims_are_checked_by_key():
    base = {"name": "x", "source": "y", "kind": "greater", "a": "simclr-full",
            "b": "simclr-none"}
    msg = error_for(with_change("claims", [{**base, "metric": "knn_studnet"}]))
    assert "claims[0].metric: 'knn_studnet' is not a metric the report keeps" in msg
    msg = error_for(with_change("claims", [{**base, "kind": "equivalent"}]))
    assert "claims[0].margin: an equivalent claim needs a margin > 0" in msg
    msg = error_for(with_change("claims", [{**base, "kind": "noninferior", "margin": 0.01,
                                            "b": None}]))
    assert "claims[0].b: a noninferior claim contrasts two runs" in msg
    msg = error_for(with_change("claims", [{**base, "kind": "rising", "b": None,
                                            "metric": "knn_student"}]))
    assert "claims[0].metric: a rising claim is judged per block: cv or rel_change" in msg
    msg = error_for(with_change("claims", [{**base, "b": "{best}-full"}]))
    assert "claims[0].b: {best} is gone" in msg
    msg = error_for(with_change("claims", "nowhere.yaml"))
    assert "claims: expected a list of claims or 'papers'" in msg
    msg = error_for(with_change("seeds", [0, 0]))
    assert "seeds: lists a seed twice" in msg


def test_the_embedded_default_writes_out_the_papers_claims():
    from momentum_ssl.config import CLAIMS

    assert load_params(REPO / "params.yaml").claims == CLAIMS  # claims: papers
    assert load_params(REPO / "params/cifar10.yaml").claims == CLAIMS  # left out: the default
    # written once: params.yaml names the package's list instead of copying it
    assert yaml.safe_load((REPO / "params.yaml").read_text())["claims"] == "papers"



def test_local_crops_go_to_dino_only_and_fit_a_vits_patches():
    msg = error_for(with_change("augment.local_crops", 2))
    assert msg.startswith("augment.local_crops: ") and "takes two views" in msg
    assert "recipes.dino.augment" in msg
    data = with_change("recipes", {"dino": {"augment": {"local_crops": 2, "local_size": 12}}})
    data["model"].update({"backbone": "vit_tiny", "patch_size": 7})  # 28 px: 4x4 patches
    assert "12 px local crops are not a whole number of model.patch_size (7)" in error_for(data)
    data["recipes"]["dino"]["augment"]["local_size"] = 14
    params = params_from_dict(data)
    from momentum_ssl.config import recipe, resolve
    assert resolve(params, RunSpec("dino")).augment.local_crops == 2
    assert recipe(params, RunSpec("dino"))["augment"]["local_size"] == 14
    assert "local_size" not in recipe(params, RunSpec("byol"))["augment"]  # two views
    assert "augment.local_size: must be null or in 8..size" in error_for(
        with_change("augment.local_size", 4))


def test_a_vits_image_side_must_be_whole_patches():
    data = with_change("model.backbone", "vit_small")  # augment.size 28, patch_size 16
    assert "model.patch_size: a ViT's image side (28" in error_for(data)
    data["model"]["patch_size"] = 7
    assert params_from_dict(data).model.patch_size == 7


def test_the_stl10_profile_pretrains_on_train_and_unlabeled_with_the_cifar_recipes():
    """params/stl10.yaml: STL-10 at 96 px, pretraining on train+unlabeled, the ImageNet stem,
    and every run's recipe the CIFAR profile's (solo-learn has no STL-10 recipe)."""
    from momentum_ssl.config import recipe

    stl, cifar = (load_params(REPO / f"params/{name}.yaml") for name in ("stl10", "cifar10"))
    assert (stl.data.dataset, stl.data.pretrain_split, stl.data.unlabeled_root) == \
        ("stl10", "train+unlabeled", None)
    assert stl.augment.size == 96 and not stl.model.cifar_stem
    assert [run.name for run in stl.grid] == [run.name for run in cifar.grid]
    for ours, theirs in zip(stl.grid, cifar.grid):
        assert recipe(stl, ours) == recipe(cifar, theirs), ours.name


@pytest.mark.parametrize("path", ["params/cifar10.yaml", "params/cifar100.yaml",
                                  "params/stl10.yaml", "params/imagenet100_resnet18.yaml",
                                  "params/imagenet100_resnet50.yaml",
                                  "params/imagenet100_vit_small.yaml"])
def test_a_gpu_profile_trains_on_cuda_or_not_at_all(path):
    """device auto would train a 1,000-epoch run on the CPU where CUDA cannot start."""
    assert load_params(REPO / path).pretrain.device == "cuda"


@pytest.mark.parametrize("path", ["params.yaml", "params/cifar10.yaml", "params/cifar100.yaml",
                                  "params/stl10.yaml", "params/imagenet100_resnet18.yaml",
                                  "params/imagenet100_resnet50.yaml",
                                  "params/imagenet100_vit_small.yaml", "params/claims.yaml"])
def test_a_profile_names_every_param_dvc_yaml_declares(path):
    """Run as params.yaml (a GPU machine's `dvc repro`, bench/gpu_study.py), a profile without
    a key that a stage declares fails DVC: "Parameters 'claims' are missing"."""
    import yaml

    declared = {name.split(".")[0] for stage in yaml.safe_load(
        (REPO / "dvc.yaml").read_text())["stages"].values() for name in stage.get("params", [])}
    profile = yaml.safe_load((REPO / path).read_text())
    assert declared - set(profile) == set(), path


@pytest.mark.parametrize("key,value,expected", [
    ("keep_every", 0, "pretrain.keep_every: must be null (off) or >= 1 (epochs), got 0"),
    ("checkpoint_every", 0, "pretrain.checkpoint_every: must be >= 1 (epochs), got 0"),
    ("health_every", 7, "pretrain.health_every: must be null (every logged step) or a "
                        "multiple of log_every (5), got 7"),
])
def test_checkpoint_and_health_intervals_are_checked(key, value, expected):
    assert expected in error_for(with_change(f"pretrain.{key}", value))


def test_checkpoint_and_health_intervals_enter_a_plan_only_when_set():
    """At their defaults (keep_every null, checkpoint_every 1, health_every null) no plan
    holds them, so no cached plan changed; set, they are in every run's plan. They are shared:
    a recipe or grid entry may not set them."""
    default = params_from_dict(repo_params_dict())
    run = default.grid[0]
    for key in ("keep_every", "checkpoint_every", "health_every"):
        assert key not in run_params(default, run)["pretrain"]
    data = repo_params_dict()
    data["pretrain"].update(keep_every=5, checkpoint_every=10, health_every=50)
    plan = run_params(params_from_dict(data), run)["pretrain"]
    assert (plan["keep_every"], plan["checkpoint_every"], plan["health_every"]) == (5, 10, 50)
    grid = copy.deepcopy(repo_params_dict()["grid"])
    grid["simclr-full"] = {**grid["simclr-full"], "pretrain": {"keep_every": 2}}
    assert "grid.simclr-full.pretrain.keep_every: is shared by every run" in error_for(
        with_change("grid", grid))
