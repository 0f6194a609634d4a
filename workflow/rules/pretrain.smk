rule pretrain:
    input:
        "results/plan/{run}.yaml",
        BETON,
        "src/momentum_ssl/train.py",
        "src/momentum_ssl/learner.py",
        "src/momentum_ssl/momentum.py",
        "src/momentum_ssl/telemetry.py",
        "src/momentum_ssl/checkpoint.py",
        "src/momentum_ssl/distributed.py",
        "src/momentum_ssl/methods",
        "src/momentum_ssl/models",
        "src/momentum_ssl/data/loaders.py",
        "src/momentum_ssl/data/augment.py",
    output:
        "results/runs/{run}/model.pt",
        "results/runs/{run}/params.yaml",
        "results/runs/{run}/dvclive/metrics.json",
        directory("results/runs/{run}/dvclive/plots/metrics"),
    resources:
        gpu=lambda wc: GRID.gpus(wc.run),  # a run asking for several trains under torchrun
    threads: 4
    conda:
        ENV
    log:
        "logs/pretrain/{run}.log",
    shell:
        "python -m momentum_ssl pretrain --run {wildcards.run} > {log} 2>&1"
