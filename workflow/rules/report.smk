rule report:
    input:
        expand("results/probes/{name}.json", name=[*RUNS, *BASELINES]),
        expand("results/transfer/{name}.json", name=[*RUNS, *BASELINES]),
        expand("results/runs/{run}/dvclive/metrics.json", run=RUNS),
        "src/momentum_ssl/report.py",
        "src/momentum_ssl/transfer.py",
        "src/momentum_ssl/telemetry.py",
    output:
        report("results/report.md", category="Report"),
        report(directory("results/plots"), patterns=["{name}.png"], category="Plots"),
    params:
        section=GRID.params_of("grid", "data.dataset", "model", "pretrain.epochs",
                               "loader.batch_size", "probe.knn_k", "probe.temperature"),
    conda:
        ENV
    log:
        "logs/report.log",
    shell:
        "python -m momentum_ssl report > {log} 2>&1"
