"""Plumbing: files, paths, devices and processes, with no knowledge of learning.

    artifacts.py    atomic writes, and reads that name the damaged file and the command to rerun
    paths.py        where every stage's outputs live under results/
    results.py      the result files one stage writes and another reads (features, transfer)
    checkpoint.py   the training checkpoint: save, resume, set aside a damaged one
    devices.py      the device a stage runs on, and claiming free GPUs
    distributed.py  joining and leaving torchrun's process group; gathers and reductions
    launch.py       a run across nodes: SLURM's request, srun and torchrun's rendezvous

The bottom layer: imports nothing else of the package.
"""
