"""What the benchmarks share: the machine they ran on, medians, and markdown tables."""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """Where the numbers come from: they mean nothing without it."""
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load average (1, 5, 15 min)": ", ".join(f"{v:.2f}" for v in os.getloadavg())
        if hasattr(os, "getloadavg")
        else "n/a",
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def warn_if_busy(threads: int, hint: str) -> None:
    """Several torch threads on cores that other work shares make every parallel region wait for a
    descheduled thread: ResNet-20 steps took 100x longer with two threads on two busy cores
    (measured 2026-11-23)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if threads > 1 and load > 0.5:
        print(
            f"note: load average {load:.1f} before starting, and {threads} torch threads: if other work shares "
            f"the cores, the figures measure waiting. Pass {hint} for figures that mean something.",
            flush=True,
        )


def median(values) -> float:
    values = list(values)
    return statistics.median(values) if values else math.nan


def median_ci(values, z: float = 1.96) -> tuple[float, float, float]:
    """The median of ``values`` and a distribution-free 95% confidence interval for it.

    The bounds are order statistics: of n values, the r-th smallest and the r-th largest, with
    r = floor((n - z sqrt(n)) / 2), since the count of values below the true median is
    Binomial(n, 1/2) (its normal approximation; Conover, "Practical Nonparametric Statistics",
    3rd ed., Sec. 3.2). No assumption on the shape of the distribution: a machine's timings
    have long tails. Fewer than six values give the whole range.
    """
    values = sorted(v for v in values if math.isfinite(v))
    n = len(values)
    if not n:
        return math.nan, math.nan, math.nan
    r = max(math.floor((n - z * math.sqrt(n)) / 2), 1)
    return statistics.median(values), values[r - 1], values[n - r]


def fmt(value: float, digits: int = 2) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def markdown(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(path: str | Path, title: str, command: str, table: str, notes: list[str]) -> Path:
    """The table with the command and the machine, as markdown to paste into docs/performance.md."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    about = "\n".join(f"- {k}: {v}" for k, v in machine().items())
    body = f"### {title}\n\n```bash\n{command}\n```\n\n{about}\n\n{table}\n"
    if notes:
        body += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    path.write_text(body)
    return path


def command_line() -> str:
    return " ".join(["python", *[a if " " not in a else repr(a) for a in sys.argv]])
