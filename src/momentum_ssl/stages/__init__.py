"""What the DAG runs: one module per stage of dvc.yaml and workflow/rules/, each a function
that reads its inputs and params and writes its outputs.

    plan.py      results/plan/<run>/s<seed>.yaml: the params one run reads
    pretrain.py  the training loop of one grid run: model.pt, its DVCLive logs
    features.py  extract: frozen features to Parquet
    probes.py    probe: kNN and logistic probes of the features
    transfer.py  transfer: the frozen student probed on other datasets
    linear.py    linear: the papers' linear evaluation (SGD head, frozen student), when on
    report.py    report: results/report.md (the tables), summary.json, and the plots
    export.py    export: a trained backbone as a torchvision or plain state_dict

``python -m momentum_ssl <stage>`` (cli.py) calls them; ``evaluate`` is extract, probe and
transfer in one process (cli.py). A stage imports from analysis, core, data, config and
plumbing, never from another stage: what two stages share lives below them (the encoders in
core, the probes in analysis, the result files' readers in plumbing).
"""
