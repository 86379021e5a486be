"""tx core: CLI, job spec, plugin manager, Trainer core and worker."""

__version__ = "0.1.0"
