# extract, probe and transfer of a run in one job (`evaluate`), as in dvc.yaml: the imports and
# the scheduler's bookkeeping, paid once, were most of their time (docs/BENCHMARKS.md).
EVALUATE_CODE = [
    f"{ROOT}src/momentum_ssl/stages/features.py",
    f"{ROOT}src/momentum_ssl/core/encoders.py",
    f"{ROOT}src/momentum_ssl/plumbing/results.py",
    f"{ROOT}src/momentum_ssl/plumbing/devices.py",
    f"{ROOT}src/momentum_ssl/plumbing/compute.py",
    f"{ROOT}src/momentum_ssl/data/loaders.py",
    f"{ROOT}src/momentum_ssl/data/augment.py",
    f"{ROOT}src/momentum_ssl/data/datasets.py",
    f"{ROOT}src/momentum_ssl/stages/probes.py",
    f"{ROOT}src/momentum_ssl/analysis/classifiers.py",
    f"{ROOT}src/momentum_ssl/analysis/logistic.py",
    f"{ROOT}src/momentum_ssl/stages/transfer.py",
]
ENCODER_CODE = [  # what a trained run's encoders are built from
    f"{ROOT}src/momentum_ssl/core/learner.py",
    f"{ROOT}src/momentum_ssl/core/momentum.py",
    f"{ROOT}src/momentum_ssl/core/methods",
    f"{ROOT}src/momentum_ssl/core/models",
]


rule evaluate:
    input:
        "results/runs/{run}/s{seed}/model.pt",
        ancient("results/plan/{run}/s{seed}.yaml"),  # as in pretrain.smk
        BETON,  # meta.json: mean and std (a file inside an output folder cannot be an input)
        EVALUATE_CODE,
        ENCODER_CODE,
    output:
        directory("results/features/{run}/s{seed}"),
        "results/probes/{run}/s{seed}.json",
        "results/predictions/{run}/s{seed}.parquet",
        "results/transfer/{run}/s{seed}.json",
    params:
        section=GRID.params_of("seed", "probe", "transfer"),
    resources:
        gpu=1,
    threads: 2
    conda:
        ENV
    log:
        "logs/evaluate/{run}/s{seed}.log",
    shell:
        "python -m momentum_ssl evaluate --run {wildcards.run} --seed {wildcards.seed} > {log} 2>&1"


# Baselines through the same probes: raw pixels once, a random-init backbone per seed.
rule evaluate_raw:
    input:
        BETON,
        EVALUATE_CODE,
    output:
        directory("results/features/raw"),
        "results/probes/raw.json",
        "results/predictions/raw.parquet",
        "results/transfer/raw.json",
    params:
        section=GRID.params_of(*GRID.baseline_params("raw"), "probe", "transfer"),
    resources:
        gpu=0,
    threads: 2
    conda:
        ENV
    log:
        "logs/evaluate/raw.log",
    shell:
        "python -m momentum_ssl evaluate --run raw > {log} 2>&1"


rule evaluate_random:
    input:
        BETON,
        EVALUATE_CODE,
        f"{ROOT}src/momentum_ssl/core/models",
    output:
        directory("results/features/random/s{seed}"),
        "results/probes/random/s{seed}.json",
        "results/predictions/random/s{seed}.parquet",
        "results/transfer/random/s{seed}.json",
    params:
        section=GRID.params_of(*GRID.baseline_params("random"), "probe", "transfer"),
    resources:
        gpu=1,
    threads: 2
    conda:
        ENV
    log:
        "logs/evaluate/random/s{seed}.log",
    shell:
        "python -m momentum_ssl evaluate --run random --seed {wildcards.seed} > {log} 2>&1"


# pretrain.keep_every: each kept checkpoint's kNN (stages/epochs.py), as in a study's dvc.yaml
if GRID.keeps:

    rule evaluate_epochs:
        input:
            KEPT_FOLDER,
            ancient("results/plan/{run}/s{seed}.yaml"),  # as in pretrain.smk
            BETON,
            [f"{ROOT}{path}" for path in EPOCHS_CODE],
        output:
            EPOCHS_JSON,
        params:
            section=GRID.params_of(*EPOCHS_PARAMS),
        resources:
            gpu=1,
        threads: 2
        conda:
            ENV
        log:
            "logs/evaluate_epochs/{run}/s{seed}.log",
        shell:
            "python -m momentum_ssl evaluate-epochs --run {wildcards.run} --seed {wildcards.seed} > {log} 2>&1"
