"""The norm factory: one table, one calling convention, clear errors."""

from __future__ import annotations

import re
import sys

import pytest
import torch

from normlab.errors import ConfigError
from normlab.norms import LAYOUTS, NORMS, build_norm, canonical, knobs_of, norm_layer, supports


def test_core_names_are_registered():
    assert {"batch", "layer", "instance", "group", "rms", "bln_pooled", "none"} <= set(NORMS)


@pytest.mark.parametrize("spelling", ["Group", "GROUP", "gr_oup", "group"])
def test_names_ignore_case_and_underscores(spelling):
    assert canonical(spelling) == "group"


def test_unknown_name_lists_the_known_ones_and_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown norm 'grop'.*Did you mean 'group'\?"):
        build_norm("grop", 16)


def test_unknown_knob_names_what_the_norm_takes():
    with pytest.raises(ConfigError, match=r"norm 'layer' has no option num_groups \(it takes: eps, affine\)"):
        build_norm("layer", 16, num_groups=4)


def test_group_count_that_does_not_divide_channels_lists_valid_counts():
    with pytest.raises(ConfigError, match=r"num_groups=5 does not divide a layer of 16 channels.*\[1, 2, 4, 8, 16\]"):
        build_norm("group", 16, num_groups=5)


def test_bad_layout_and_bad_input_shape_are_sentences():
    with pytest.raises(ConfigError, match="unknown layout 'nhwc'"):
        build_norm("batch", 8, layout="nhwc")
    with pytest.raises(ConfigError, match=r"expects input of shape \(N, 8, H, W\).*got \(2, 4, 3, 3\)"):
        build_norm("batch", 8)(torch.randn(2, 4, 3, 3))


@pytest.mark.parametrize("name", sorted(NORMS))
def test_every_norm_documents_its_axes_and_paper(name):
    cls = NORMS[name]
    assert set(cls.axes) == set(LAYOUTS)
    assert isinstance(cls.batch_dependent, bool)
    module_doc = sys.modules[cls.__module__].__doc__ or ""
    cites = re.search(r"\([A-Z][a-z]+.*\d{4}", module_doc)  # "(Wu & He, 2018, Eq. 1"
    assert cites or name == "none", "a layer's docstring cites its paper"


@pytest.mark.parametrize("name", sorted(NORMS))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_norm_layer_is_a_one_argument_builder(name, layout):
    if not supports(name, layout):
        pytest.skip(f"{name} has no meaning for layout {layout}")
    make = norm_layer(name, layout)
    m = make(16)
    x = torch.randn(4, 16, 3, 3) if layout == "nchw" else torch.randn(4, 5, 16)
    assert m(x).shape == x.shape
    assert "num_channels" not in knobs_of(name)
