rule report:
    input:
        expand("results/probes/{name}.json", name=[*CELLS, *BASELINES]),
        expand("results/transfer/{name}.json", name=[*CELLS, *BASELINES]),
        expand("results/runs/{cell}/dvclive/metrics.json", cell=CELLS),
        "src/momentum_ssl/report.py",
        "src/momentum_ssl/headline.py",
        "src/momentum_ssl/stats.py",
        "src/momentum_ssl/claims.py",
        "src/momentum_ssl/claims.yaml",
        "src/momentum_ssl/transfer.py",
        "src/momentum_ssl/telemetry.py",
        "src/momentum_ssl/health.py",
    output:
        report("results/report.md", category="Report"),
        "results/summary.json",
        "results/metrics.json",
        report(directory("results/plots"), patterns=["{name}.png"], category="Plots"),
    params:
        section=GRID.params_of("grid", "seeds", "claims", "data.dataset", "model", "pretrain.epochs",
                               "loader.batch_size", "probe.knn_k", "probe.temperature"),
    conda:
        ENV
    log:
        "logs/report.log",
    shell:
        "python -m momentum_ssl report > {log} 2>&1"
