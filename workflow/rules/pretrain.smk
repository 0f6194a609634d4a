rule pretrain:
    input:
        "results/plan/{run}/s{seed}.yaml",
        BETON,
        "src/momentum_ssl/train.py",
        "src/momentum_ssl/learner.py",
        "src/momentum_ssl/momentum.py",
        "src/momentum_ssl/telemetry.py",
        "src/momentum_ssl/checkpoint.py",
        "src/momentum_ssl/health.py",
        "src/momentum_ssl/monitor.py",
        "src/momentum_ssl/features.py",
        "src/momentum_ssl/probes.py",
        "src/momentum_ssl/distributed.py",
        "src/momentum_ssl/methods",
        "src/momentum_ssl/models",
        "src/momentum_ssl/data/loaders.py",
        "src/momentum_ssl/data/augment.py",
    output:
        "results/runs/{run}/s{seed}/model.pt",
        "results/runs/{run}/s{seed}/params.yaml",
        "results/runs/{run}/s{seed}/provenance.json",
        "results/runs/{run}/s{seed}/dvclive/metrics.json",
        directory("results/runs/{run}/s{seed}/dvclive/plots/metrics"),
    resources:
        gpu=lambda wc: GRID.gpus(wc.run),  # a run asking for several trains under torchrun
    threads: 4
    conda:
        ENV
    log:
        "logs/pretrain/{run}/s{seed}.log",
    shell:
        "python -m momentum_ssl pretrain --run {wildcards.run} --seed {wildcards.seed} > {log} 2>&1"
