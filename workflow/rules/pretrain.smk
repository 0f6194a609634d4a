rule pretrain:
    input:
        # ancient: the plan's mtime is not compared (DVC relinks a plan from its cache when it
        # reruns the plan stages, with a new mtime and the same bytes); a plan that Snakemake
        # rewrites because this cell's params changed still reruns what reads it
        ancient("results/plan/{run}/s{seed}.yaml"),
        BETON,
        f"{ROOT}src/momentum_ssl/stages/pretrain.py",
        f"{ROOT}src/momentum_ssl/stages/plan.py",
        f"{ROOT}src/momentum_ssl/core/learner.py",
        f"{ROOT}src/momentum_ssl/core/momentum.py",
        f"{ROOT}src/momentum_ssl/core/optim.py",
        f"{ROOT}src/momentum_ssl/analysis/telemetry.py",
        f"{ROOT}src/momentum_ssl/plumbing/checkpoint.py",
        f"{ROOT}src/momentum_ssl/analysis/health.py",
        f"{ROOT}src/momentum_ssl/analysis/monitor.py",
        f"{ROOT}src/momentum_ssl/core/encoders.py",
        f"{ROOT}src/momentum_ssl/analysis/classifiers.py",
        f"{ROOT}src/momentum_ssl/plumbing/distributed.py",
        f"{ROOT}src/momentum_ssl/plumbing/devices.py",
        f"{ROOT}src/momentum_ssl/plumbing/compute.py",
        f"{ROOT}src/momentum_ssl/plumbing/precision.py",
        f"{ROOT}src/momentum_ssl/core/methods",
        f"{ROOT}src/momentum_ssl/core/models",
        f"{ROOT}src/momentum_ssl/data/loaders.py",
        f"{ROOT}src/momentum_ssl/data/augment.py",
        f"{ROOT}src/momentum_ssl/data/resample.py",
    output:
        "results/runs/{run}/s{seed}/model.pt",
        "results/runs/{run}/s{seed}/params.yaml",
        "results/runs/{run}/s{seed}/provenance.json",
        "results/runs/{run}/s{seed}/dvclive/metrics.json",
        directory("results/runs/{run}/s{seed}/dvclive/plots/metrics"),
        # pretrain.keep_every: the kept checkpoints (epochs/e0005.pt ...), as in a study's
        # dvc.yaml (workflow.py's with_kept_checkpoints); none otherwise
        [directory(KEPT_FOLDER)] if GRID.keeps else [],
    resources:
        gpu=lambda wc: GRID.gpus(wc.run),  # a run asking for several trains under torchrun
        # a run with more GPUs than cluster.gpus_per_node spans nodes: one SLURM task a node,
        # started by the stage itself (plumbing/launch.py); left out for a run on one node
        **{key: (lambda wc, key=key: GRID.across_nodes(wc.run, key))
           for key in ("nodes", "tasks", "mpi", "tasks_per_gpu", "slurm_extra")},
    threads: 4
    conda:
        ENV
    log:
        "logs/pretrain/{run}/s{seed}.log",
    shell:
        "python -m momentum_ssl pretrain --run {wildcards.run} --seed {wildcards.seed} > {log} 2>&1"
