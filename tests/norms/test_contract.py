"""The norm contract: every built-in norm keeps it, a researcher's own norm (tests/norms/toy_norms.py)
runs by dotted path, each broken one is refused in one line, and the configs show the layers' defaults."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import toy_norms
from omegaconf import OmegaConf

from normlab.models import build_model
from normlab.norms import LAYOUTS, NORMS, supports
from normlab.norms.contract import problems
from normlab.run.config_check import check_config
from normlab.run.norm_checks import LAYER_CHECKS, check_layouts, norm_problems

ROOT = Path(__file__).resolve().parents[2]
CASES = [(name, layout) for name in sorted(NORMS) for layout in LAYOUTS if supports(name, layout)]


@pytest.mark.parametrize("name", sorted(NORMS))
def test_every_builtin_norm_declares_what_the_contract_asks_and_builds_or_refuses_each_layout(name):
    assert problems(NORMS[name]) == []
    check_layouts(name)


@pytest.mark.parametrize("check", LAYER_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name,layout", CASES)
def test_every_builtin_norm_passes_the_checks_a_norm_of_ones_own_gets(name, layout, check):
    check(name, layout)


def test_a_norm_of_ones_own_passes_every_check():
    assert norm_problems("toy_norms.PixelRMS") == []
    assert norm_problems("toy_norms.PixelRMS", {"eps": 1e-3}) == []
    assert norm_problems("toy_norms.ImagesOnly") == []  # a layout it refuses is no failure


def test_the_example_of_adding_a_norm_in_the_docs_passes_every_check(tmp_path, monkeypatch):
    doc = (ROOT / "docs" / "norms.md").read_text()
    (tmp_path / "my_norms.py").write_text(re.search(r"```python\n# my_norms.py\n(.*?)```", doc, re.S).group(1))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert norm_problems("my_norms.PixelRMS") == []
    assert "python scripts/check_norm.py my_norms.PixelRMS" in doc and "norm.target=my_norms.PixelRMS" in doc


@pytest.mark.parametrize(
    "cls,fragment",
    [
        ("NoAxes", "breaks the norm contract: it declares no class attribute `axes`"),
        ("RequiredKnob", "its knob `scale` has no default"),
        (
            "HidesTheBatch",
            "train_and_eval (nchw): it declares batch_dependent=False, but in training one sample's "
            "output changes with the other samples",
        ),
        (
            "HalfPrecision",
            "shapes_and_dtypes (nchw): in training mode, input (4, 16, 5, 6) torch.float32 gives output "
            "(4, 16, 5, 6) torch.bfloat16",
        ),
        ("CountsInEval", "train_and_eval (nchw): a forward in eval mode changes seen"),
        ("Absent", "norm.target=toy_norms.Absent does not import (AttributeError"),
    ],
)
def test_a_broken_norm_is_refused_in_one_line_that_says_what_breaks(cls, fragment):
    found = norm_problems(f"toy_norms.{cls}")
    assert found and fragment in found[0]
    assert all("\n" not in line for line in found)


@pytest.mark.parametrize("path", sorted(p.name for p in (ROOT / "conf" / "norm").glob("*.yaml")))
def test_a_norm_config_holds_only_knobs_at_the_layers_defaults(path):
    cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "norm" / path))
    if path == "custom.yaml":
        assert set(cfg) == {"name", "target"}
        return
    params = inspect.signature(NORMS[cfg.pop("name")].__init__).parameters
    for knob, value in cfg.items():
        assert knob in params, f"{path}: {knob} is no knob of the layer"
        default = params[knob].default
        assert value == default and type(value) is type(default), (
            f"{path}: {knob}={value!r}, the layer's default is {default!r}: make them one, or drop it from the yaml"
        )


def test_train_takes_a_norm_of_ones_own_by_dotted_path_with_its_knobs(compose):
    cfg = compose(["task=lm", "norm=custom", "norm.target=toy_norms.PixelRMS", "+norm.eps=0.001"])
    check_config(cfg)
    assert cfg.norm.name == "toy_norms.PixelRMS"
    model = build_model(
        {"name": "gpt", "n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 8},
        OmegaConf.to_container(cfg.norm, resolve=True),
        vocab_size=11,
    )
    norms = [m for m in model.modules() if isinstance(m, toy_norms.PixelRMS)]
    assert len(norms) == 3 and {m.eps for m in norms} == {0.001}
    with pytest.raises(Exception, match="norm 'toy_norms.PixelRMS' has no option momentum"):
        check_config(compose(["norm=custom", "norm.target=toy_norms.PixelRMS", "+norm.momentum=0.1"]))


def check_norm_script(*args):
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(Path(__file__).parent)]),
        WANDB_MODE="offline",
        OMP_NUM_THREADS="1",
    )
    return subprocess.run(
        [sys.executable, "scripts/check_norm.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def test_check_norm_fails_a_broken_norm_with_one_line_per_failure_before_any_run():
    res = check_norm_script("toy_norms.HidesTheBatch")
    assert res.returncode == 1
    assert res.stdout.splitlines() == [
        f"FAIL train_and_eval ({layout}): it declares batch_dependent=False, but in training one sample's output "
        f"changes with the other samples"
        for layout in LAYOUTS
    ]


def test_check_norm_skips_the_tasks_of_a_layout_the_norm_refuses():
    res = check_norm_script("toy_norms.ImagesOnly", "--tasks", "lm")
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]
    assert res.stdout.splitlines()[-1] == "skip fast_dev_run task=lm: the norm declares no layout nlc"


@pytest.mark.slow
def test_check_norm_passes_a_good_norm_through_every_task():
    res = check_norm_script("toy_norms.PixelRMS", "eps=1e-5")
    lines = [line for line in res.stdout.splitlines() if line.startswith(("ok", "FAIL", "skip"))]
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]
    assert lines[1:] == [f"ok   fast_dev_run task={task}" for task in ("classify", "lm", "style")]
