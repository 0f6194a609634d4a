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
        "results/runs/{run}/s{seed}/model.pt",
        "results/plan/{run}/s{seed}.yaml",
        BETON,
        EXTRACT_CODE,
    output:
        directory("results/features/{run}/s{seed}"),
    resources:
        gpu=1,
    threads: 2
    conda:
        ENV
    log:
        "logs/extract/{run}/s{seed}.log",
    shell:
        "python -m momentum_ssl extract --run {wildcards.run} --seed {wildcards.seed} > {log} 2>&1"


rule probe:  # grid runs and the random-init baseline, per seed
    input:
        "results/features/{name}/s{seed}",
        "src/momentum_ssl/probes.py",
        "src/momentum_ssl/features.py",
    output:
        "results/probes/{name}/s{seed}.json",
        "results/predictions/{name}/s{seed}.parquet",
    params:
        section=GRID.params_of("seed", "probe"),
    threads: 2
    conda:
        ENV
    log:
        "logs/probe/{name}/s{seed}.log",
    shell:
        "python -m momentum_ssl probe --run {wildcards.name} --seed {wildcards.seed} > {log} 2>&1"


rule probe_raw:  # raw pixels: no seed
    input:
        "results/features/raw",
        "src/momentum_ssl/probes.py",
        "src/momentum_ssl/features.py",
    output:
        "results/probes/raw.json",
        "results/predictions/raw.parquet",
    params:
        section=GRID.params_of("seed", "probe"),
    threads: 2
    conda:
        ENV
    log:
        "logs/probe/raw.log",
    shell:
        "python -m momentum_ssl probe --run raw > {log} 2>&1"


rule transfer:
    input:
        "results/runs/{run}/s{seed}/model.pt",
        "results/plan/{run}/s{seed}.yaml",
        BETON,  # meta.json: mean and std (a file inside an output folder cannot be an input)
        TRANSFER_CODE,
    output:
        "results/transfer/{run}/s{seed}.json",
    params:
        section=GRID.params_of("seed", "probe", "transfer"),
    resources:
        gpu=1,
    threads: 2
    conda:
        ENV
    log:
        "logs/transfer/{run}/s{seed}.log",
    shell:
        "python -m momentum_ssl transfer --run {wildcards.run} --seed {wildcards.seed} > {log} 2>&1"


# Baselines through the same probes: raw pixels once, a random-init backbone per seed.
rule extract_raw:
    input:
        BETON,
        "src/momentum_ssl/features.py",
        "src/momentum_ssl/data/loaders.py",
        "src/momentum_ssl/data/augment.py",
    output:
        directory("results/features/raw"),
    params:
        section=GRID.params_of(*GRID.baseline_params("raw")),
    resources:
        gpu=0,
    threads: 2
    conda:
        ENV
    log:
        "logs/extract/raw.log",
    shell:
        "python -m momentum_ssl extract --run raw > {log} 2>&1"


rule extract_random:
    input:
        BETON,
        "src/momentum_ssl/features.py",
        "src/momentum_ssl/models",
        "src/momentum_ssl/data/loaders.py",
        "src/momentum_ssl/data/augment.py",
    output:
        directory("results/features/random/s{seed}"),
    params:
        section=GRID.params_of(*GRID.baseline_params("random")),
    resources:
        gpu=1,
    threads: 2
    conda:
        ENV
    log:
        "logs/extract/random/s{seed}.log",
    shell:
        "python -m momentum_ssl extract --run random --seed {wildcards.seed} > {log} 2>&1"


rule transfer_raw:
    input:
        BETON,  # meta.json: mean and std (a file inside an output folder cannot be an input)
        TRANSFER_CODE,
    output:
        "results/transfer/raw.json",
    params:
        section=GRID.params_of(*GRID.baseline_params("raw"), "probe", "transfer"),
    resources:
        gpu=0,
    threads: 2
    conda:
        ENV
    log:
        "logs/transfer/raw.log",
    shell:
        "python -m momentum_ssl transfer --run raw > {log} 2>&1"


rule transfer_random:
    input:
        BETON,
        TRANSFER_CODE[:4],
        "src/momentum_ssl/models",
        TRANSFER_CODE[4:],
    output:
        "results/transfer/random/s{seed}.json",
    params:
        section=GRID.params_of(*GRID.baseline_params("random"), "probe", "transfer"),
    resources:
        gpu=1,
    threads: 2
    conda:
        ENV
    log:
        "logs/transfer/random/s{seed}.log",
    shell:
        "python -m momentum_ssl transfer --run random --seed {wildcards.seed} > {log} 2>&1"
