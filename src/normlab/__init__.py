"""normlab: compare normalization layers on real tasks."""

from pathlib import Path

__version__ = "0.1.0"

# The checkout holding src/normlab (conf/, docs/, scripts/ beside it), when installed from one (pip install -e .).
REPO_ROOT = Path(__file__).resolve().parents[2]
