# The papers' linear evaluation (stages/linear.py), per run and seed, when the profile sets
# `linear: true` (off in the embedded default: no job). The same stage as a study's dvc.yaml
# gets from study.py (workflow.linear_stage), with the same inputs and output.
from momentum_ssl.workflow import LINEAR_CODE


rule linear:
    input:
        "results/runs/{run}/s{seed}/model.pt",
        ancient("results/plan/{run}/s{seed}.yaml"),  # as in pretrain.smk
        BETON,
        [f"{ROOT}{path}" for path in LINEAR_CODE],
        GRID.recipes,  # the profile's recipes file: recipes.linear's values
    output:
        "results/linear/{run}/s{seed}.json",
    params:
        section=GRID.params_of("linear", "recipes.linear"),
    resources:
        gpu=1,
    threads: 2
    conda:
        ENV
    log:
        "logs/linear/{run}/s{seed}.log",
    shell:
        "python -m momentum_ssl linear --run {wildcards.run} --seed {wildcards.seed} > {log} 2>&1"
