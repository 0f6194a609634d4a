"""What the Snakefile needs from params.yaml: the validated grid, and per rule the params whose
change must rerun it (Snakemake reruns a job when its ``params`` change)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from .config import (ConfigError, Params, load_params, params_from_dict, params_hash,
                     run_params, to_dict, with_seed)
from .config.loader import RECIPES_DIR, recipes_path, refuse_sweep_in_pipeline
from .data.loaders import beton_folder
from .plumbing.launch import slurm_resources
from .plumbing.paths import BASELINES, SEEDLESS, cell

# the params sections each baseline's evaluate reads besides probe and transfer (as in dvc.yaml)
_BASELINE_PARAMS = {"raw": ("data", "augment.size", "compute"),
                    "random": ("seed", "data", "augment.size", "model", "compute")}

# The linear evaluation's stage (stages/linear.py), in a pipeline whose profile sets
# ``linear: true``: the code it runs, as the Snakefile's rule and a study's dvc.yaml list it.
LINEAR_CODE = ("src/momentum_ssl/stages/linear.py", "src/momentum_ssl/core/encoders.py",
               "src/momentum_ssl/core/learner.py", "src/momentum_ssl/core/momentum.py",
               "src/momentum_ssl/core/methods", "src/momentum_ssl/core/models",
               "src/momentum_ssl/data/loaders.py", "src/momentum_ssl/data/augment.py",
               "src/momentum_ssl/plumbing/devices.py", "src/momentum_ssl/plumbing/compute.py",
               "src/momentum_ssl/config/evaluation.py")  # LinearConfig.lr_at: the schedule


def linear_stage(beton: str, recipes: tuple[str, ...], params: tuple[str, ...]) -> dict:
    """dvc.yaml's ``linear`` stage, a matrix over the grid and seeds like ``evaluate``, reading
    the run's model.pt, its plan, the dataset and the recipes file (``recipes``: the file
    holding ``recipes.linear``, whose values DVC's params would not see)."""
    return {"matrix": {"run": "${grid}", "seed": "${seeds}"},
            "cmd": "python -m momentum_ssl linear --run ${item.run} --seed ${item.seed}",
            "deps": ["results/runs/${item.run}/s${item.seed}/model.pt",
                     "results/plan/${item.run}/s${item.seed}.yaml", beton, *LINEAR_CODE,
                     *recipes],
            "params": list(params),
            "outs": ["results/linear/${item.run}/s${item.seed}.json"]}


@dataclass(frozen=True)
class Grid:
    params: Params
    # the plan rule's recipe inputs, as dvc.yaml's plan stage has them: the folder of recipe
    # files at the root, a study's one recipes file (none when its recipes are inline)
    recipes: tuple[str, ...] = (RECIPES_DIR,)

    @classmethod
    def from_config(cls, config: dict, path: str | Path = "params.yaml",
                    root: str = "") -> "Grid":
        """Validate Snakemake's ``config`` (loaded from ``path`` by ``configfile``). The stages
        read ``path`` themselves, so ``--config`` overrides, which they would never see, are
        refused. ``root``: the repository's root seen from the working directory ("" at the
        root, "../../" in a study)."""
        on_disk = yaml.safe_load(Path(path).read_text())
        if dict(config) != on_disk:
            changed = sorted(k for k in set(config) | set(on_disk)
                             if config.get(k) != on_disk.get(k))
            raise ConfigError(f"Snakemake's config differs from {path} in {', '.join(changed)}: "
                              "the stages read params.yaml, so --config overrides would be "
                              "ignored by them; edit params.yaml (or use dvc exp run -S)")
        refuse_sweep_in_pipeline(config, Path(path))
        if root:
            recipes = recipes_path(path)
            deps = (os.path.relpath(recipes),) if recipes is not None else ()
        else:
            deps = (RECIPES_DIR,)
        if isinstance(config.get("recipes"), str):  # a recipes file: read it as the stages do
            grid = cls(load_params(path), deps)
        else:
            try:
                grid = cls(params_from_dict(config), deps)
            except ConfigError as err:
                raise ConfigError(f"{path}: {err}") from None
        if grid.params.linear and not root:
            raise ConfigError(f"{path}: linear: true, but the root dvc.yaml (the embedded "
                              "default's pipeline) has no linear stage; set it in a profile "
                              "params/NAME.yaml and run that as a study (python -m momentum_ssl "
                              "study NAME), whose dvc.yaml and Snakefile both get the stage")
        return grid

    @property
    def runs(self) -> list[str]:
        return [run.name for run in self.params.grid]

    @property
    def seeds(self) -> list[int]:
        return list(self.params.seeds)

    @property
    def cells(self) -> list[str]:
        """Every grid run at every seed, as folder names (<run>/s<seed>)."""
        return [cell(run, seed) for run in self.runs for seed in self.seeds]

    @property
    def baselines(self) -> list[str]:
        """The baselines' folder names: raw pixels once, the random-init backbone per seed."""
        return [name if name in SEEDLESS else cell(name, seed)
                for name in BASELINES for seed in (self.seeds if name not in SEEDLESS else [0])]

    @property
    def beton(self) -> str:
        return str(beton_folder(self.params))

    def _run(self, name: str):
        return next(run for run in self.params.grid if run.name == name)

    def plan_hash(self, name: str, seed: int | str) -> str:
        return params_hash(run_params(with_seed(self.params, int(seed)), self._run(name)))

    def gpus(self, name: str) -> int:
        return self._run(name).gpus

    def across_nodes(self, name: str, resource: str):
        """One SLURM resource (nodes, tasks, mpi, ...) of a run that spans nodes
        (plumbing/launch.py); None, which Snakemake leaves out, for a run on one node."""
        return slurm_resources(self._run(name).gpus,
                               self.params.cluster.gpus_per_node).get(resource)

    def params_of(self, *keys: str) -> dict:
        """{key: value} for top-level or dotted keys, as plain data."""
        data = to_dict(self.params)
        out = {}
        for key in keys:
            node = data
            for part in key.split("."):
                node = node[part]
            out[key] = node
        return out

    @staticmethod
    def baseline_params(name: str) -> tuple[str, ...]:
        return _BASELINE_PARAMS[name]

    @property
    def keeps(self) -> bool:
        """Whether the runs keep checkpoints (``pretrain.keep_every``): then pretrain has an
        ``epochs/`` output and evaluate-epochs scores it (:func:`with_kept_checkpoints`)."""
        return self.params.pretrain.keep_every is not None


# --- kept checkpoints (pretrain.keep_every): the stages both drivers add -----------------------
# What evaluate-epochs runs (stages/epochs.py), root-relative; the Snakefile prefixes ROOT.
EPOCHS_CODE = ("src/momentum_ssl/stages/epochs.py", "src/momentum_ssl/core/encoders.py",
               "src/momentum_ssl/core/learner.py", "src/momentum_ssl/core/momentum.py",
               "src/momentum_ssl/core/methods", "src/momentum_ssl/core/models",
               "src/momentum_ssl/data/loaders.py", "src/momentum_ssl/data/augment.py",
               "src/momentum_ssl/analysis/classifiers.py", "src/momentum_ssl/plumbing/devices.py",
               "src/momentum_ssl/plumbing/compute.py")
EPOCHS_PARAMS = ("probe.knn_k", "probe.temperature")  # besides the plan, what it reads
KEPT_FOLDER = "results/runs/{run}/s{seed}/epochs"  # pretrain's output (checkpoint.py's KEPT)
EPOCHS_JSON = "results/epochs/{run}/s{seed}.json"  # plumbing/paths.py's epochs_file


def with_kept_checkpoints(pipeline: dict) -> dict:
    """dvc.yaml's pipeline (parsed) for a profile with ``pretrain.keep_every``: pretrain's
    ``epochs/`` folder as an output, an ``evaluate-epochs`` matrix stage after ``evaluate``
    that scores it, and the report reading its files. The Snakefile adds the same when
    :attr:`Grid.keeps` (workflow/rules/). A study's dvc.yaml is generated with it (study.py);
    the root dvc.yaml, the embedded default's, has none."""
    import copy

    item = {"run": "${item.run}", "seed": "${item.seed}"}
    stages = {}
    for name, stage in copy.deepcopy(pipeline["stages"]).items():
        if name == "pretrain":
            stage["outs"] = [*stage["outs"], KEPT_FOLDER.format(**item)]
        if name == "report":
            at = stage["deps"].index("results/runs") + 1
            stage["deps"] = [*stage["deps"][:at], "results/epochs", *stage["deps"][at:]]
            stage["params"] = [*stage["params"], "pretrain.keep_every"]
        stages[name] = stage
        if name == "evaluate":
            stages["evaluate-epochs"] = {
                "matrix": {"run": "${grid}", "seed": "${seeds}"},
                "cmd": "python -m momentum_ssl evaluate-epochs --run ${item.run} "
                       "--seed ${item.seed}",
                "deps": [KEPT_FOLDER.format(**item), "results/plan/${item.run}/s${item.seed}.yaml",
                         "${data.out_dir}/${data.dataset}", *EPOCHS_CODE],
                "params": list(EPOCHS_PARAMS),
                "outs": [EPOCHS_JSON.format(**item)]}
    return {**pipeline, "stages": stages}


def record_in_dvc(dvcfile: str | Path = "dvc.yaml") -> str:
    """After a successful Snakemake run: record in the lock file of ``dvcfile`` (the pipeline
    this Snakefile ran, never another folder's) every stage whose outputs all exist, as
    ``dvc commit --force --no-relink`` would, so that ``dvc status`` is clean and ``dvc repro``
    reuses them. Stages with a missing output (a run of one target) are left out and named in
    the line returned. ``--no-relink``: the outputs keep their files and mtimes, so Snakemake's
    next run still finds them up to date."""
    from dvc.repo import Repo

    path = Path(dvcfile).resolve()
    with Repo(str(path.parent)) as repo:
        stages = [s for s in repo.index.stages if Path(s.path).resolve() == path]
        complete = [s for s in stages if all(out.exists for out in s.outs)]
        if len(complete) == len(stages):
            repo.commit(str(path), force=True, relink=False)
        else:
            for stage in complete:
                repo.commit(f"{path}:{stage.addressing.split(':')[-1]}", force=True,
                            relink=False)
    missing = len(stages) - len(complete)
    line = f"dvc commit: {len(complete)} of {len(stages)} stages of {dvcfile} recorded in dvc.lock"
    return line + (f" ({missing} not run yet: an output is missing)" if missing else "")
