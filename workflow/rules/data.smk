rule convert:
    input:
        f"{ROOT}src/momentum_ssl/data/convert.py",
        f"{ROOT}src/momentum_ssl/data/datasets.py",
        f"{ROOT}src/momentum_ssl/plumbing/artifacts.py",
    output:
        directory(BETON),
    params:
        section=GRID.params_of("seed", "data"),
    conda:
        ENV
    log:
        "logs/convert.log",
    shell:
        "python -m momentum_ssl convert > {log} 2>&1"


rule plan:
    input:
        f"{ROOT}src/momentum_ssl/config",
        f"{ROOT}src/momentum_ssl/stages/plan.py",
        # ancient: a recipe file's edit reruns the plans whose params change (the plan param
        # below), not every plan with its pretraining
        [ancient(path) for path in GRID.recipes],
    output:
        "results/plan/{run}/s{seed}.yaml",
    params:
        plan=lambda wc: GRID.plan_hash(wc.run, wc.seed),  # reruns when this cell's params change
    conda:
        ENV
    log:
        "logs/plan/{run}/s{seed}.log",
    shell:
        "python -m momentum_ssl plan --run {wildcards.run} --seed {wildcards.seed} > {log} 2>&1"
