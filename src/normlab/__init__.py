"""normlab: compare normalization layers on real tasks."""

__version__ = "0.1.0"
