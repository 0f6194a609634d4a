"""momentum-ssl: a reproducible workbench for momentum-based self-supervised learning.

The package in layers; a module imports only from its own layer's package and the layers below
(tests/test_layout.py holds it):

    cli.py, __main__.py, workflow.py,  entry: the stage commands, the Snakefile's grid, the
    study.py                           studies' DVC pipelines (studies/<name>/)
    stages/                            what the DAG runs: plan, pretrain, extract, probe,
                                       transfer, report, export
    analysis/                          statistics, claims, diagnostics, probes, plots
    core/ (but methods, models), data/ the learner, momentum, encoders; datasets and loaders
    config/                            params.yaml as typed dataclasses
    core/methods/, core/models/        each method's settings, heads and loss; the networks
    plumbing/                          files, paths, devices, processes
"""

__version__ = "0.1.0"
