"""What the Snakefile needs from params.yaml: the validated grid, and per rule the params whose
change must rerun it (Snakemake reruns a job when its ``params`` change)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from .config import (ConfigError, Params, load_params, params_hash, run_params, to_dict,
                     with_seed)
from .data.loaders import beton_folder
from .plumbing.paths import BASELINES, SEEDLESS, cell

# the params sections each baseline's evaluate reads besides probe and transfer (as in dvc.yaml)
_BASELINE_PARAMS = {"raw": ("data", "augment.size", "compute"),
                    "random": ("seed", "data", "augment.size", "model", "compute")}


@dataclass(frozen=True)
class Grid:
    params: Params

    @classmethod
    def from_config(cls, config: dict, path: str | Path = "params.yaml") -> "Grid":
        """Validate Snakemake's ``config`` (loaded from ``path`` by ``configfile``). The stages
        read ``path`` themselves, so ``--config`` overrides, which they would never see, are
        refused."""
        on_disk = yaml.safe_load(Path(path).read_text())
        if dict(config) != on_disk:
            changed = sorted(k for k in set(config) | set(on_disk)
                             if config.get(k) != on_disk.get(k))
            raise ConfigError(f"Snakemake's config differs from {path} in {', '.join(changed)}: "
                              "the stages read params.yaml, so --config overrides would be "
                              "ignored by them; edit params.yaml (or use dvc exp run -S)")
        try:  # as the stages read it: a ``recipes: FILE`` (the GPU profiles') read from FILE
            return cls(load_params(path))
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None

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
