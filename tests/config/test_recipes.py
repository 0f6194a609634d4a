"""The paper-scale profiles against the table of record (docs/RECIPES.md), and every method's
recipe through a real training step on the CPU."""

import dataclasses
import re

import pytest
import torch
import yaml

from conftest import REPO
from momentum_ssl.config import METHODS, ModelConfig, RunSpec, load_params, recipe, resolve
from momentum_ssl.core.learner import build_learner
from momentum_ssl.core.momentum import cosine_tau
from momentum_ssl.core.optim import build_optimizer, learning_rate, set_learning_rates

DOC = REPO / "docs" / "RECIPES.md"


def record() -> dict[str, dict[str, dict[str, tuple[object, str]]]]:
    """profile path -> method (or '*') -> dotted key -> (value, source), from the doc's tables."""
    tables, profiles = {}, None
    for line in DOC.read_text().splitlines():
        if line.startswith("## "):
            profiles = re.findall(r"`(params/[^`]+\.yaml)`", line)
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not profiles or len(cells) != 3 or cells[0] in ("method", "---"):
            continue
        method, settings, source = cells
        assert method == "*" or method in METHODS, f"unknown method {method!r} in {DOC.name}"
        assert source, f"{method}: a row without a source"
        for pair in settings.split("; "):
            key, value = (part.strip() for part in pair.split(" = ", 1))
            for profile in profiles:
                rows = tables.setdefault(profile, {}).setdefault(method, {})
                assert key not in rows, f"{profile} {method}: {key} listed twice"
                rows[key] = (yaml.safe_load(value), source)
    return tables


def flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def same(documented, resolved) -> bool:
    if isinstance(resolved, float) and not isinstance(documented, bool):
        return documented == pytest.approx(resolved, rel=1e-6)
    if isinstance(resolved, list) and isinstance(documented, list):
        return len(resolved) == len(documented) and all(map(same, documented, resolved))
    if isinstance(resolved, dict) and isinstance(documented, dict):
        return resolved.keys() == documented.keys() and all(
            same(documented[k], resolved[k]) for k in resolved)
    return documented == resolved


TABLES = record()
# profiles that run some of the methods: the ViT profile runs the two whose papers train ViTs;
SOME_METHODS = {"params/imagenet100_vit_small.yaml": ("mocov3", "dino"),
                # the claims study runs the methods that learn on 2 cores
                "params/claims.yaml": ("simclr", "mocov3", "mocov2", "xmoco", "unigrad", "dino")}
# sweep profiles: another profile's recorded recipes, but for the key each variant sweeps
SAME_RECORD = {"params/momentum_sweep.yaml": "params/claims.yaml"}


def profile_methods(profile: str) -> tuple[str, ...]:
    return SOME_METHODS.get(profile, METHODS)


def test_the_record_covers_every_paper_scale_profile():
    shipped = {f"params/{p.name}" for p in (REPO / "params").glob("*.yaml")}
    assert set(TABLES) | set(SAME_RECORD) == shipped
    for profile, methods in TABLES.items():
        assert set(methods) == {"*", *profile_methods(profile)}, profile


@pytest.mark.parametrize("profile", sorted(TABLES))
def test_every_resolved_recipe_matches_the_record_and_nothing_is_unsourced(profile):
    params = load_params(REPO / profile)
    table = TABLES[profile]
    runs = {run.method: run for run in params.grid}
    assert set(runs) == set(profile_methods(profile)), \
        f"{profile}: the grid must run {', '.join(profile_methods(profile))}"
    for method in profile_methods(profile):
        documented = {k: v for k, (v, _) in table["*"].items()}
        documented.update({k: v for k, (v, _) in table[method].items()})
        # every run of the method trains with the same recipe (no grid entry overrides it)
        resolved = [flatten({k: v for k, v in recipe(params, run).items() if k != "source"})
                    for run in params.grid if run.method == method]
        assert all(r == resolved[0] for r in resolved), f"{profile} {method}: runs differ"
        resolved = resolved[0]
        for key, value in resolved.items():
            assert key in documented, f"{profile} {method}: {key} = {value} has no source"
            assert same(documented[key], value), (
                f"{profile} {method}: {key} resolves to {value}, the record says "
                f"{documented[key]}")
        for key in table[method]:  # a method's own row must name a setting it has
            assert key in resolved, f"{profile} {method}: {key} is not a setting of it"


@pytest.mark.parametrize("profile", sorted(SAME_RECORD))
def test_a_sweep_profile_trains_its_record_but_for_the_swept_key(profile):
    params = load_params(REPO / profile)
    table = TABLES[SAME_RECORD[profile]]
    for run in params.grid:
        assert run.swept, f"{profile}: {run.name} is not a sweep's variant"
        documented = {k: v for k, (v, _) in table["*"].items()}
        documented.update({k: v for k, (v, _) in table[run.method].items()})
        resolved = flatten({k: v for k, v in recipe(params, run).items() if k != "source"})
        for key, value in resolved.items():
            if key == run.swept:
                continue
            assert key in documented, f"{profile} {run.name}: {key} = {value} has no source"
            assert same(documented[key], value), f"{profile} {run.name}: {key} = {value}"


def test_the_check_catches_a_drifted_value():
    """The comparison itself can fail: a changed lr is caught."""
    params = load_params(REPO / "params/cifar10.yaml")
    run = next(r for r in params.grid if r.method == "simclr")
    drifted = dataclasses.replace(run, pretrain={"lr": 0.5})
    value = flatten(recipe(params, drifted))["pretrain.lr"]
    assert not same(TABLES["params/cifar10.yaml"]["simclr"]["pretrain.lr"][0], value)


RECIPE_FILES = ("params/cifar10.yaml", "params/imagenet100_resnet18.yaml")
STEPS = [(profile, method) for profile in RECIPE_FILES for method in METHODS] + [
    ("params/imagenet100_vit_small.yaml", method) for method in ("mocov3", "dino")]


@pytest.mark.parametrize("profile, method", STEPS)
def test_each_method_trains_a_step_with_its_recipe_on_the_cpu(profile, method):
    """The recipe as published (optimizer, parameter groups, loss scale, heads, tau schedule)
    on a small backbone (a ViT-Tiny with 4 px patches for the ViT profile): two steps, a finite
    loss, every trainable parameter group moved."""
    params = load_params(REPO / profile)
    vit = params.model.backbone.startswith("vit_")
    params = dataclasses.replace(params, model=ModelConfig(
        backbone="resnet_tiny", width=8, cifar_stem=True,
        zero_init_residual=params.model.zero_init_residual) if not vit else ModelConfig(
        backbone="vit_tiny", patch_size=4, image_size=16))
    run = RunSpec(method, "full")
    torch.manual_seed(0)
    learner = build_learner(params, run)
    cfg = resolve(params, run).pretrain
    optimizer = build_optimizer(learner, cfg, peak=cfg.lr * 16 / 256)
    before = [p.detach().clone() for g in optimizer.param_groups for p in g["params"]]
    x = torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    for step in range(2):
        set_learning_rates(optimizer, learning_rate(step + 5, 10, 2, cfg.lr * 16 / 256),
                           cfg.lr * 16 / 256)
        loss, _ = learner(x, x.flip(3))
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        momentum = resolve(params, run).momentum
        learner.update_teacher(cosine_tau(step, 10, momentum.tau, momentum.final_tau))
    after = [p.detach() for g in optimizer.param_groups for p in g["params"]]
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    for group in optimizer.param_groups:
        moved = any(not torch.equal(a, b) for a, b in zip(
            before[:len(group["params"])], group["params"]))
        before = before[len(group["params"]):]
        assert moved, f"{method}: group {group['select']} did not move"
