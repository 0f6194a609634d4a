rule pretrain:
    input:
        # ancient: the plan's mtime is not compared (DVC relinks a plan from its cache when it
        # reruns the plan stages, with a new mtime and the same bytes); a plan that Snakemake
        # rewrites because this cell's params changed still reruns what reads it
        ancient("results/plan/{run}/s{seed}.yaml"),
        BETON,
        "src/momentum_ssl/stages/pretrain.py",
        "src/momentum_ssl/stages/plan.py",
        "src/momentum_ssl/core/learner.py",
        "src/momentum_ssl/core/momentum.py",
        "src/momentum_ssl/analysis/telemetry.py",
        "src/momentum_ssl/plumbing/checkpoint.py",
        "src/momentum_ssl/analysis/health.py",
        "src/momentum_ssl/analysis/monitor.py",
        "src/momentum_ssl/core/encoders.py",
        "src/momentum_ssl/analysis/classifiers.py",
        "src/momentum_ssl/plumbing/distributed.py",
        "src/momentum_ssl/plumbing/devices.py",
        "src/momentum_ssl/plumbing/compute.py",
        "src/momentum_ssl/plumbing/precision.py",
        "src/momentum_ssl/core/methods",
        "src/momentum_ssl/core/models",
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
