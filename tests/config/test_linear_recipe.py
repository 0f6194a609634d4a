"""Each recipe file's linear evaluation (``recipes.linear``) against the table of record,
docs/RECIPES.md's "Linear evaluation", and the paper-scale profiles running it."""

import pytest
import yaml

from conftest import REPO
from momentum_ssl.config import LinearConfig, load_params, to_dict
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
