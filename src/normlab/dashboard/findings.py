"""The findings of an experiment, read from the results docs: the bullet points of its section.

One source: the sentences a report shows are those of docs/results*.md, never a copy that drifts.
"""

from __future__ import annotations

import re
from pathlib import Path

from normlab import REPO_ROOT as ROOT  # docs/ and scripts/ live there
from normlab.errors import ConfigError


def section(text: str, heading: str) -> list[str]:
    """The lines of the first markdown section whose heading contains ``heading``, up to the next
    heading of the same or a higher level (its subsections included)."""
    lines = text.splitlines()
    fenced, in_code = [], False
    for line in lines:  # a "# comment" inside a ``` block is no heading
        in_code ^= line.startswith("```")
        fenced.append(in_code or line.startswith("```"))
    for i, line in enumerate(lines):
        m = None if fenced[i] else re.match(r"(#+) ", line)
        if m and heading in line:
            level, body = len(m.group(1)), []
            for j, nxt in enumerate(lines[i + 1 :], i + 1):
                n = None if fenced[j] else re.match(r"(#+) ", nxt)
                if n and len(n.group(1)) <= level:
                    break
                body.append(nxt)
            return body
    return []


def bullets(lines: list[str]) -> list[str]:
    """Top-level ``- `` items, each with its continuation lines joined into one paragraph."""
    items: list[str] = []
    open_item = False
    for line in lines:
        if line.startswith("- "):
            items.append(line[2:].strip())
            open_item = True
        elif open_item and line.startswith("  ") and line.strip():
            items[-1] += " " + line.strip()
        else:
            open_item = False  # a blank or unindented line ends the item
    return items


def findings(source: tuple[str, str] | None, root: Path = ROOT) -> list[str]:
    """The bullet points under the heading ``source[1]`` of ``source[0]``; [] for an experiment not measured yet."""
    if source is None:
        return []
    doc, heading = source
    path = root / doc
    if not path.exists():
        raise ConfigError(
            f"{doc} not found below {root}: the report takes its findings from it. "
            f"Fix: use normlab from its source checkout (pip install -e .), where docs/ is, or pass docs_root."
        )
    lines = section(path.read_text(), heading)
    # Where the section says "What it shows" (or "What the numbers say"), the bullets after it are the findings;
    # earlier ones describe the setup.
    starts = [i for i, line in enumerate(lines) if line.startswith(("What it shows", "What the numbers say"))]
    found = bullets(lines[starts[0] :] if starts else lines)
    if not found:
        raise ConfigError(
            f"no bullet points under a heading with '{heading}' in {doc}. Fix: point the dashboard "
            f"definition (normlab/dashboard/definitions.py) at the section that lists its findings."
        )
    return found
