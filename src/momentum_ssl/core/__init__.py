"""The learning core: what a run learns with, independent of files and of the pipeline.

    models/      backbones (ResNet-18/50, resnet_tiny) and the projection/prediction heads
    methods/     one file per method: its settings (a dataclass), its heads, its pure loss
    momentum.py  the teacher: EMA of a scope of the student, tau's schedule, the residual loss
    learner.py   a student (backbone + method) with its teacher: the forward and the losses
    optim.py     the optimiser (SGD, LARS, AdamW), its parameter groups, lr and weight-decay
                 schedules, the gradient clipping
    losses.py    every method's loss in one namespace
    encoders.py  a trained learner's (or a baseline's) encoders, and encoding batches of images

Belongs here: the models, their training signal and their features (a trained learner loaded
back from its model.pt included). Not here: the stages' outputs (stages, plumbing) and judging
them (analysis). ``methods`` and ``models``
import only plumbing (distributed gathers); config collects the methods' settings, and the rest
of core reads config (see config/__init__.py for the order).
"""
