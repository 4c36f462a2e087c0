from __future__ import annotations

import pytest

from normlab.norms import NORMS, supports
from normlab.norms.explain import main, measure


@pytest.mark.parametrize("name", sorted(NORMS))
def test_explain_prints_axes_and_the_measured_differences(name, capsys):
    if not supports(name, "nchw"):
        pytest.skip(f"{name} has no meaning for images")
    assert main([name, "--shape", "4", "16", "6", "6"]) == 0
    out = capsys.readouterr().out
    assert NORMS[name].axes["nchw"] in out and "bf16 step by step" in out and "why close" in out


def test_explain_measures_what_the_bf16_tests_claim():
    diffs = measure("layer", "nlc", (4, 16, 64), offset=20.0)
    assert diffs["float64"] < 1e-12 and diffs["float32"] < 1e-4
    assert diffs["bf16 step by step"] > 3 * diffs["bf16 native (fp32 params, as autocast)"]


def test_explain_unknown_norm_is_one_line(capsys):
    assert main(["grop"]) == 2
    assert "Did you mean 'group'?" in capsys.readouterr().err
