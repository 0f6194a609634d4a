EXTRACT_CODE = [
    "src/momentum_ssl/features.py",
    "src/momentum_ssl/learner.py",
    "src/momentum_ssl/momentum.py",
    "src/momentum_ssl/methods",
    "src/momentum_ssl/models",
    "src/momentum_ssl/data/loaders.py",
    "src/momentum_ssl/data/augment.py",
]
TRANSFER_CODE = [
    "src/momentum_ssl/transfer.py",
    "src/momentum_ssl/probes.py",
    "src/momentum_ssl/features.py",
    "src/momentum_ssl/data/datasets.py",
    "src/momentum_ssl/data/augment.py",
]


rule extract:
    input:
        "results/runs/{run}/model.pt",
        "results/plan/{run}.yaml",
        BETON,
        EXTRACT_CODE,
    output:
        directory("results/features/{run}"),
    resources:
        gpu=1,
    threads: 2
    conda:
        ENV
    log:
        "logs/extract/{run}.log",
    shell:
        "python -m momentum_ssl extract --run {wildcards.run} > {log} 2>&1"


rule probe:  # grid runs and baselines alike
    input:
        "results/features/{name}",
        "src/momentum_ssl/probes.py",
        "src/momentum_ssl/features.py",
    output:
        "results/probes/{name}.json",
        "results/predictions/{name}.parquet",
    params:
        section=GRID.params_of("seed", "probe"),
    threads: 2
    conda:
        ENV
    log:
        "logs/probe/{name}.log",
    shell:
        "python -m momentum_ssl probe --run {wildcards.name} > {log} 2>&1"


rule transfer:
    input:
        "results/runs/{run}/model.pt",
        "results/plan/{run}.yaml",
        BETON,  # meta.json: mean and std (a file inside an output folder cannot be an input)
        TRANSFER_CODE,
    output:
        "results/transfer/{run}.json",
    params:
        section=GRID.params_of("seed", "probe", "transfer"),
    resources:
        gpu=1,
    threads: 2
    conda:
        ENV
    log:
        "logs/transfer/{run}.log",
    shell:
        "python -m momentum_ssl transfer --run {wildcards.run} > {log} 2>&1"


# Baselines through the same probes: raw pixels and a random-init backbone.
rule extract_baseline:
    input:
        BETON,
        "src/momentum_ssl/features.py",
        lambda wc: ["src/momentum_ssl/models"] if wc.baseline == "random" else [],
        "src/momentum_ssl/data/loaders.py",
        "src/momentum_ssl/data/augment.py",
    output:
        directory("results/features/{baseline}"),
    params:
        section=lambda wc: GRID.params_of(*GRID.baseline_params(wc.baseline)),
    resources:
        gpu=lambda wc: 1 if wc.baseline == "random" else 0,
    threads: 2
    conda:
        ENV
    log:
        "logs/extract/{baseline}.log",
    shell:
        "python -m momentum_ssl extract --run {wildcards.baseline} > {log} 2>&1"


rule transfer_baseline:
    input:
        BETON,  # meta.json: mean and std (a file inside an output folder cannot be an input)
        TRANSFER_CODE[:4],
        lambda wc: ["src/momentum_ssl/models"] if wc.baseline == "random" else [],
        TRANSFER_CODE[4:],
    output:
        "results/transfer/{baseline}.json",
    params:
        section=lambda wc: GRID.params_of(*GRID.baseline_params(wc.baseline), "probe",
                                          "transfer"),
    resources:
        gpu=lambda wc: 1 if wc.baseline == "random" else 0,
    threads: 2
    conda:
        ENV
    log:
        "logs/transfer/{baseline}.log",
    shell:
        "python -m momentum_ssl transfer --run {wildcards.baseline} > {log} 2>&1"
