"""Each recipe file's linear evaluation (``recipes.linear``) against the table of record,
docs/RECIPES.md's "Linear evaluation", and the paper-scale profiles running it."""

import pytest
import yaml

from conftest import REPO
from momentum_ssl.config import ConfigError, LinearConfig, load_params, to_dict
from momentum_ssl.config.base import _build

DOC = REPO / "docs" / "RECIPES.md"
PAPER_SCALE = ("cifar10", "cifar100", "imagenet100_resnet18", "imagenet100_resnet50",
               "imagenet100_vit_small")


def linear_record() -> dict[str, dict[str, object]]:
    """recipe file -> linear.<key> -> value, from the doc's "Linear evaluation" table (a row of
    "every file" holds for each file)."""
    section = DOC.read_text().split("\n## Linear evaluation\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, dict[str, object]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) != 3 or cells[0] in ("recipe file", "---"):
            continue
        assert cells[2], f"{cells[0]}: a row without a source"
        settings = dict(pair.split(" = ", 1) for pair in cells[1].split("; "))
        own = rows.setdefault(cells[0].strip("`"), {})
        assert not set(own) & set(settings), f"{cells[0]}: a key listed twice"
        own.update({k: yaml.safe_load(v) for k, v in settings.items()})
    shared = rows.pop("every file")
    return {path: {**shared, **own} for path, own in rows.items()}


def test_each_recipe_file_holds_the_recorded_linear_evaluation():
    tables = linear_record()
    assert set(tables) == {"params/recipes/cifar.yaml", "params/recipes/imagenet100.yaml",
                           "params/recipes/imagenet100_vit.yaml"}
    for path, documented in tables.items():
        data = yaml.safe_load((REPO / path).read_text())["linear"]
        resolved = {f"linear.{k}": v for k, v in to_dict(
            _build(LinearConfig, data, "recipes.linear")).items() if k != "source"}
        assert set(resolved) == set(documented), path  # every setting sourced, none extra
        for key, value in resolved.items():
            expected = documented[key]
            if isinstance(value, list):
                assert value == pytest.approx(expected, rel=1e-6), f"{path}: {key}"
            else:
                assert value == (pytest.approx(expected, rel=1e-6)
                                 if isinstance(value, float) else expected), f"{path}: {key}"


@pytest.mark.parametrize("profile", PAPER_SCALE)
def test_the_paper_scale_profiles_run_it(profile):
    assert load_params(REPO / "params" / f"{profile}.yaml").linear


# solo-learn's scripts/linear/imagenet-100/<method>.yaml at commit 9187ea39, each file's lr, by our
# method names (mocov2: mocov2plus.yaml, barlow_twins: barlow.yaml); xmoco and unigrad have none
SOLO_LEARN_LR = {"byol": 0.3, "dino": 0.3, "mocov3": 0.3, "vicreg": 0.3, "simclr": 1.0,
                 "mocov2": 3.0, "simsiam": 30.0, "barlow_twins": 0.1}


@pytest.mark.parametrize("path", ["params/recipes/cifar.yaml", "params/recipes/imagenet100.yaml"])
def test_each_method_trains_its_linear_head_with_its_own_solo_learn_lr(path):
    recipe = _build(LinearConfig, yaml.safe_load((REPO / path).read_text())["linear"],
                    "recipes.linear")
    for method, lr in {**SOLO_LEARN_LR, "xmoco": 3.0, "unigrad": 0.3}.items():
        own = recipe.for_method(method)
        assert own.lr == lr, f"{path}: {method}"
        assert own.lr_by_method == {} and own.epochs == recipe.epochs  # the rest kept


def test_lr_by_method_rejects_what_is_not_a_method_or_not_a_positive_number():
    with pytest.raises(ConfigError, match=r"unknown key 'recipes.linear.lr_per_method'"):
        _build(LinearConfig, {"lr_per_method": {}}, "recipes.linear")
    with pytest.raises(ConfigError, match=r"lr_by_method.simclrr: is not a method"):
        _build(LinearConfig, {"lr_by_method": {"simclrr": 1.0}}, "recipes.linear")
    with pytest.raises(ConfigError, match=r"lr_by_method.simsiam: must be a number > 0"):
        _build(LinearConfig, {"lr_by_method": {"simsiam": 0}}, "recipes.linear")
