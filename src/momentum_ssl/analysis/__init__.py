"""Judging runs: statistics, claims, training diagnostics, and the report's plots.

    stats.py        means, intervals and paired tests over seeds
    claims.py       the papers' claims judged from those tests
    health.py       collapse statistics of the representations while training
    telemetry.py    gradient stability per block while training
    monitor.py      the kNN monitor: the probe's kNN score while a run trains
    classifiers.py  the probes of frozen features: weighted kNN, logistic regression
    logistic.py     the logistic regression's solver (scikit-learn's objective, L-BFGS in torch)
    summaries.py    reading a run's logs back, each metric's summary over seeds
    plots.py        the report's plots

Belongs here: the maths and the diagnostics that turn features and logs into numbers and
figures, with no stage of its own. Imports core, data, config and plumbing; no stage.
"""
