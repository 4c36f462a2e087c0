"""Intervals over seeds, against values worked by hand from a printed t table."""

from __future__ import annotations

import json
import math

import pytest

from normlab.report import report
from normlab.report.stats import t_halfwidth, welch
from normlab.report.table import differences
from tests.report.test_report import fake_run

T_975_4 = 2.776  # Student's t, 97.5th percentile, 4 degrees of freedom (any printed t table)
T_975_2 = 4.303


def test_t_interval_of_a_textbook_sample():
    # 1..5: mean 3, s = sqrt(2.5), half-width = t(4) s / sqrt(5)
    assert t_halfwidth([1, 2, 3, 4, 5]) == pytest.approx(T_975_4 * math.sqrt(2.5) / math.sqrt(5), abs=1e-3)
    assert t_halfwidth([24.0, 26.0, 25.0]) == pytest.approx(T_975_2 * 1.0 / math.sqrt(3), abs=1e-3)


def test_fewer_than_two_values_have_no_interval():
    assert math.isnan(t_halfwidth([3.0])) and math.isnan(t_halfwidth([]))
    assert math.isnan(t_halfwidth([1.0, float("nan")]))  # a missing value is not a value


def test_welch_with_equal_variances_has_pooled_degrees_of_freedom():
    # s_a = s_b = 1, n = 3 each: se = sqrt(2/3), Welch's nu = 4 exactly
    d = welch([4, 5, 6], [1, 2, 3])
    assert d.diff == pytest.approx(3.0)
    assert d.half == pytest.approx(T_975_4 * math.sqrt(2 / 3), abs=1e-3)
    assert d.significant and d.n_a == d.n_b == 3


def test_an_interval_that_covers_zero_is_not_significant():
    d = welch([1, 3, 5], [2, 3, 4])
    assert d.diff == pytest.approx(0.0) and not d.significant
    assert not welch([1.0], [2.0, 3.0]).significant  # one seed: no interval, no claim


def test_unequal_variances_widen_by_welch_satterthwaite():
    a, b = [10.0, 10.5, 9.5, 10.2], [0.0, 6.0, -6.0]
    va, vb = 0.18 / 3 / 4, 72 / 2 / 3
    nu = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 2)
    assert nu == pytest.approx(2.0, abs=0.05)  # dominated by b's 2 degrees of freedom
    assert welch(a, b).half > T_975_2 * math.sqrt(va + vb) * 0.99


def test_report_shows_intervals_and_differences(tmp_path):
    for i, (norm, batch, seed) in enumerate((n, b, s) for n in ("batch", "group") for b in (2, 32) for s in (0, 1, 2)):
        err = 20 + (10 if norm == "batch" and batch == 2 else 0) + seed
        fake_run(tmp_path, i, norm, False, batch, seed, metrics={"test/err": err, "val/err": err})
    result = report(tmp_path)
    row = result.table[(result.table.arm == "batch") & (result.table.batch == 2)].iloc[0]
    assert row["test/err ci95"] == pytest.approx(T_975_2 * 1.0 / math.sqrt(3), abs=1e-3)
    assert f"31.00 ± {row['test/err ci95']:.2f}" in result.markdown
    runs = [json.loads((p / "summary.json").read_text()) for p in sorted(tmp_path.iterdir()) if p.is_dir()]
    diffs = differences(runs, "test/err").set_index("compared")
    at2 = diffs[diffs.batch == 2].loc["group - batch"]
    assert at2["diff"] == pytest.approx(-10.0) and at2["significant"]
    assert diffs[diffs.batch == 32].loc["group - batch"]["diff"] == pytest.approx(0.0)
    assert not diffs[diffs.batch == 32].loc["group - batch"]["significant"]
    assert diffs.loc["batch batch 2 - batch 32"]["diff"] == pytest.approx(10.0)
    assert at2["ci95"] == pytest.approx(T_975_4 * math.sqrt(2 / 3), abs=1e-3)
    assert f"| group - batch | 2 | -10.00 ± {at2['ci95']:.2f} | 3/3 | yes |" in result.markdown


def test_an_ablation_of_one_knob_compares_each_value_with_the_first(tmp_path):
    for i, (groups, seed) in enumerate((g, s) for g in (1, 4, 16) for s in (0, 1, 2)):
        run = fake_run(tmp_path, i, "group", True, 32, seed, metrics={"test/err": 30 - (groups > 1) * 5 + seed})
        summary = json.loads((run / "summary.json").read_text())
        summary["config"]["norm"]["num_groups"] = groups
        (run / "summary.json").write_text(json.dumps(summary))
    runs = [json.loads((p / "summary.json").read_text()) for p in sorted(tmp_path.iterdir()) if p.is_dir()]
    diffs = differences(runs, "test/err").set_index("compared")
    assert list(diffs.index) == ["num_groups=4 - num_groups=1", "num_groups=16 - num_groups=1"]
    assert diffs["diff"].tolist() == pytest.approx([-5.0, -5.0])
    assert diffs["ci95"].tolist() == pytest.approx([T_975_4 * math.sqrt(2 / 3)] * 2, abs=1e-3)
    assert diffs["significant"].all()
