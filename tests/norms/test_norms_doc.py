"""docs/norms.md covers every registered norm, and every deviation from the authors it lists
is also stated in that layer's docstring."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from normlab.norms import NORMS

DOC = (Path(__file__).parents[2] / "docs" / "norms.md").read_text()


def test_every_registered_norm_has_a_row_in_the_table():
    rows = set(re.findall(r"^\| `(\w+)` \|", DOC, flags=re.M))
    assert set(NORMS) <= rows, f"missing from docs/norms.md: {sorted(set(NORMS) - rows)}"


def test_every_listed_deviation_is_in_the_layers_docstring():
    section = DOC.split("## Known deviations from the authors")[1].split("\n## ")[0]
    named = {n for bullet in re.findall(r"^- (.+?):", section, flags=re.M) for n in re.findall(r"`(\w+)`", bullet)}
    named |= {n for n in NORMS for prefix in re.findall(r"`(\w+)_\*`", section) if n.startswith(prefix + "_")}
    named &= set(NORMS)
    assert named, "no norm named in the deviations"
    for name in sorted(named):
        doc = inspect.getmodule(NORMS[name]).__doc__
        assert "Deviation" in doc, f"{name}: docs/norms.md lists a deviation its docstring does not state"
