rule report:
    input:
        expand("results/probes/{name}.json", name=[*CELLS, *BASELINES]),
        expand("results/predictions/{name}.parquet", name=[*CELLS, *BASELINES]),
        expand("results/transfer/{name}.json", name=[*CELLS, *BASELINES]),
        expand("results/linear/{cell}.json", cell=CELLS if GRID.params.linear else []),
        expand("results/runs/{cell}/dvclive/metrics.json", cell=CELLS),
        expand("results/epochs/{cell}.json", cell=CELLS if GRID.keeps else []),
        f"{ROOT}src/momentum_ssl/stages/report.py",
        f"{ROOT}src/momentum_ssl/analysis/classifiers.py",
        f"{ROOT}src/momentum_ssl/core/models",
        f"{ROOT}src/momentum_ssl/analysis/plots.py",
        f"{ROOT}src/momentum_ssl/analysis/summaries.py",
        f"{ROOT}src/momentum_ssl/analysis/stats.py",
        f"{ROOT}src/momentum_ssl/analysis/claims.py",
        f"{ROOT}src/momentum_ssl/plumbing/results.py",
        f"{ROOT}src/momentum_ssl/analysis/telemetry.py",
        f"{ROOT}src/momentum_ssl/analysis/health.py",
        f"{ROOT}src/momentum_ssl/analysis/headline.py",
        f"{ROOT}src/momentum_ssl/config/claims.yaml",
        f"{ROOT}src/momentum_ssl/plumbing/compute.py",
    output:
        report("results/report.md", category="Report"),
        "results/summary.json",
        "results/metrics.json",
        report(directory("results/plots"), patterns=["{name}.png"], category="Plots"),
    params:
        section=GRID.params_of("grid", "seeds", "claims", "data.dataset", "model", "pretrain.epochs",
                               "loader.batch_size", "probe.knn_k", "probe.temperature",
                               *(["pretrain.keep_every"] if GRID.keeps else [])),
    conda:
        ENV
    log:
        "logs/report.log",
    shell:
        "python -m momentum_ssl report > {log} 2>&1"
