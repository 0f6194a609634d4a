# momentum-ssl: the DAG of dvc.yaml, scheduled by Snakemake (jobs in parallel, GPUs counted).
#
#   snakemake --cores all --resources gpu=4     # the whole grid, at most 4 GPU jobs at once
#   snakemake -n                                # what would run
#
# Every rule runs the command of the dvc.yaml stage of the same name (a log file added), over
# the same grid from params.yaml, with the same inputs and outputs; tests/test_workflow.py
# checks that the two graphs agree. After a successful run, the stages of this folder's dvc.yaml
# are committed to DVC, so `dvc status` is clean and `dvc metrics diff` sees the results.

import re

from momentum_ssl.workflow import (EPOCHS_CODE, EPOCHS_JSON, EPOCHS_PARAMS, KEPT_FOLDER, Grid,
                                   record_in_dvc)

configfile: "params.yaml"

# The repository's root seen from the working directory: "" here, "../../" when a study's
# Snakefile (studies/<name>/Snakefile, python -m momentum_ssl study NAME) includes this one
# and runs it from its folder, on its own params.yaml, results and dvc.yaml.
ROOT = globals().get("ROOT", "")
GRID = Grid.from_config(config, "params.yaml", ROOT)  # validated: a bad cell fails here, by key
RUNS = GRID.runs
SEEDS = GRID.seeds
CELLS = GRID.cells  # <run>/s<seed>: every grid run at every seed
BASELINES = GRID.baselines  # raw, random/s<seed>
BETON = GRID.beton
ENV = "../envs/momentum-ssl.yaml"  # relative to workflow/rules/; used with --sdm conda

wildcard_constraints:
    run="|".join(re.escape(run) for run in RUNS) or "(?!)",  # variants hold + and .
    seed=r"\d+",


include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/linear.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        "results/report.md",


# The pipeline this Snakefile ran, and only it (a bare `dvc commit` commits every dvc.yaml of the
# repository, studies/*/dvc.yaml too, and fails on a study's missing outputs): its stages whose
# outputs exist, without relinking them (workflow.py). In a study the working directory is its
# folder: its own dvc.yaml.
onsuccess:
    print(record_in_dvc("dvc.yaml"))
