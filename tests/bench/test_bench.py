"""The benchmark scripts run end to end on tiny sizes and compare like with like.

Speed itself is never asserted here: the scripts print figures (docs/performance.md).
"""

from __future__ import annotations

import math

import pytest
import torch

from normlab.bench import norms as bench_norms
from normlab.bench import train as bench_train
from normlab.bench.native import native
from normlab.bench.report import median_ci
from normlab.errors import ConfigError
from normlab.norms import NORMS, build_norm, supports

SHAPES = {"nchw": (4, 8, 5, 5), "nlc": (3, 6, 16)}


@pytest.mark.parametrize("layout", ["nchw", "nlc"])
@pytest.mark.parametrize("name", sorted(NORMS))
def test_native_layer_computes_what_the_normlab_layer_computes(name, layout):
    if not supports(name, layout):
        pytest.skip(f"{name} has no meaning for {layout}")
    torch.manual_seed(0)
    channels = SHAPES[layout][1] if layout == "nchw" else SHAPES[layout][-1]
    layer = build_norm(name, channels, layout).train()
    with torch.no_grad():  # parameters away from their initial ones and zeros, so a mix-up shows
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    same = native(name, layer)
    if same is None:
        pytest.skip(f"no native layer for {name} ({layout})")
    x = torch.randn(SHAPES[layout]) * 2 + 1
    torch.testing.assert_close(same(x), layer(x), rtol=1e-5, atol=1e-5)


def test_bench_norms_quick_has_a_row_per_norm_and_layout_with_finite_times(tmp_path):
    out = tmp_path / "norms.md"
    rows = bench_norms.main(["--quick", "--rounds", "2", "--out", str(out)])
    expected = {(n, layout) for n in NORMS for layout in ("nchw", "nlc") if supports(n, layout)}
    assert {(r.norm, r.case.layout) for r in rows} == expected
    for r in rows:
        has_native = native(r.norm, build_norm(r.norm, r.case.channels, r.case.layout)) is not None
        needed = ["normlab", "reference", "base", "gn", "copy"] + (
            ["native"] if has_native else ["pytorch path"] if r.norm != "none" else []
        )
        assert all(math.isfinite(r.ms[k]) and r.ms[k] > 0 for k in needed), (r.norm, r.case.label, r.ms)
        assert "compiled" not in r.ms  # --quick does not compile
        assert math.isfinite(r.gbps) and r.gbps > 0 and r.target()[1] in ("ok", "MISSED", "unresolved", None)
    text = out.read_text()
    assert "python scripts/bench_norms.py --quick" in text and "- cpu:" in text
    for name in NORMS:
        assert f"| {name} |" in text


def test_a_norm_that_refuses_the_input_gets_a_note_and_the_table_still_comes(tmp_path):
    out = tmp_path / "norms.md"
    # 8 groups of 8 token channels: one value per group, which GroupNorm refuses with a ConfigError
    rows = bench_norms.main(["--quick", "--norms", "group", "layer", "--nlc", "2", "4", "8", "--out", str(out)])
    refused = [r for r in rows if r.norm == "group" and r.case.layout == "nlc"]
    assert refused and "ConfigError" in refused[0].note and refused[0].target() == ("did not run", None)
    assert "| group |" in out.read_text() and "did not run" in out.read_text()


def test_median_ci_takes_the_order_statistics_of_the_binomial_interval():
    # n = 100: the 40th and 61st smallest values, the textbook 95% interval for a median
    assert median_ci(range(1, 101)) == (50.5, 40, 61)
    assert median_ci([3.0, 1.0, 2.0]) == (2.0, 1.0, 3.0)  # too few values: the whole range
    assert all(math.isnan(v) for v in median_ci([math.nan]))
    _, lo, hi = median_ci([1.0 + (i % 7) / 100 for i in range(1000)])
    assert 1.02 <= lo <= 1.03 <= hi <= 1.04


@pytest.mark.parametrize(
    "ci, expected",
    [
        ((1.01, 0.99, 1.03), "ok"),
        ((1.06, 1.051, 1.08), "MISSED"),
        ((1.04, 1.02, 1.06), "unresolved"),
        ((1.05, 1.04, 1.05), "ok"),
    ],
)
def test_a_verdict_needs_the_whole_interval_on_one_side_of_the_target(ci, expected):
    assert bench_norms.verdict(ci, 1.05) == expected


def test_rounds_go_on_while_the_verdict_is_open_and_stop_when_it_settles():
    runs = {"normlab": lambda: None, "native": lambda: None}
    asked = []

    def settled_after(n):
        def check(times):
            asked.append(len(times["normlab"]))
            return len(times["normlab"]) >= n

        return check

    times = bench_norms.measure(runs, 20, lambda: None, settled=settled_after(0))
    assert len(times["normlab"]) == 20 and asked == [20]
    times = bench_norms.measure(runs, 20, lambda: None, settled=settled_after(60))
    step = bench_norms.CHECK_EVERY
    assert len(times["normlab"]) == 20 + step * math.ceil(40 / step)
    times = bench_norms.measure(runs, 20, lambda: None, settled=lambda times: False)
    assert len(times["normlab"]) == bench_norms.EXTEND * 20
    assert all(math.isfinite(t) for t in times["normlab"] + times["native"])  # paired: timed every round


def test_the_compared_layers_are_timed_on_new_copies_every_few_rounds():
    built = []

    def build(k):
        def make():
            built.append(k)
            return lambda: None

        return make

    runs = {"normlab": lambda: None, "gn": lambda: None, "copy": lambda: None}
    every = bench_norms.FRESH_EVERY
    bench_norms.measure(runs, 3 * every, lambda: None, fresh={"normlab": build("normlab"), "gn": build("gn")})
    assert sorted(built) == ["gn"] * 2 + ["normlab"] * 2  # at rounds 20 and 40 of 60


def test_bench_norms_refuses_an_unknown_norm_with_a_fix(tmp_path):
    with pytest.raises(ConfigError, match="no such norm.*Fix"):
        bench_norms.main(["--quick", "--norms", "batchnorm", "--out", str(tmp_path / "x.md")])


@pytest.mark.slow
def test_bench_train_quick_times_both_loops_of_every_config(tmp_path):
    out = tmp_path / "train.md"
    results = bench_train.main(["--quick", "logger=csv", "--out", str(out)])
    assert [(r.task, r.norm, r.batch) for r in results] == [("classify", "batch", 2), ("lm", "layer", 4)]
    for r in results:
        assert len(r.hand) == len(r.normlab) == 1
        for wall, cpu in r.hand + r.normlab:
            assert math.isfinite(wall) and wall > 0 and math.isfinite(cpu) and cpu >= 0
        assert math.isfinite(r.ratios(0)[0])
    text = out.read_text()
    assert "resnet20 batch b2" in text and "gpt (task=lm)" in text and "normlab / hand" in text


def test_paired_steps_split_each_turn_between_the_two_loops():
    hand, normlab = bench_train.Clock(), bench_train.Clock()
    # turn k: a hand step from hand.wall[k] to normlab.wall[k], then normlab's until hand.wall[k + 1]
    hand.wall, normlab.wall = [0.0, 10.0, 20.0, 31.0], [3.0, 14.0, 25.0, 35.0]
    hand.cpu, normlab.cpu = [0.0, 1.0, 2.0, 3.0], [0.5, 1.5, 2.5, 3.5]
    (h_wall, h_cpu), (n_wall, n_cpu) = bench_train.paired_steps(hand, normlab, warmup=1)
    assert h_wall == 4.0  # median of 4, 5, 4 (the first turn is warm-up)
    assert n_wall == 6.0  # median of 6, 6
    assert h_cpu == n_cpu == 0.5


def test_bench_train_refuses_too_few_steps_with_a_fix():
    with pytest.raises(ConfigError, match="Fix: raise --steps"):
        bench_train.parse(["--steps", "5", "--warmup", "4"])
