"""momentum-ssl: a reproducible workbench for momentum-based self-supervised learning."""

__version__ = "0.1.0"
