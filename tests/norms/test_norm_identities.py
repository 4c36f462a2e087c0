"""The identities of the GroupNorm paper (Sec. 3.1), checked two ways: between native kernels
(a student's sanity check of PyTorch) and between the plain formulas."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from normlab.norms import build_norm
from normlab.norms.reference import REFERENCE

X = torch.randn(4, 12, 5, 6, dtype=torch.float64) * 3 + 1


def test_group_norm_with_one_group_is_layer_norm_over_chw():
    native_gn = F.group_norm(X, 1, eps=1e-5)
    native_ln = F.layer_norm(X, X.shape[1:], eps=1e-5)  # a different kernel
    torch.testing.assert_close(native_gn, native_ln)
    gn, ln = build_norm("group", 12, num_groups=1).double(), build_norm("layer", 12).double()
    torch.testing.assert_close(REFERENCE["group"](gn, X), REFERENCE["layer"](ln, X))
    torch.testing.assert_close(gn(X), native_ln)


def test_group_norm_with_c_groups_is_instance_norm():
    native_gn = F.group_norm(X, 12, eps=1e-5)
    native_in = F.instance_norm(X, eps=1e-5)
    torch.testing.assert_close(native_gn, native_in)
    gn, inn = build_norm("group", 12, num_groups=12).double(), build_norm("instance", 12).double()
    torch.testing.assert_close(REFERENCE["group"](gn, X), REFERENCE["instance"](inn, X))
    torch.testing.assert_close(gn(X), inn(X))


def test_group_size_is_the_other_way_to_name_groups():
    assert build_norm("group", 12, group_size=3).num_groups == 4
    assert build_norm("group", 12, num_groups=6, group_size=12).num_groups == 1  # group_size wins


def test_rms_norm_is_layer_norm_on_centered_input():
    centered = X - X.mean(dim=(1, 2, 3), keepdim=True)
    rms, ln = build_norm("rms", 12, eps=1e-5).double(), build_norm("layer", 12).double()
    torch.testing.assert_close(rms(centered), ln(X))


def test_bln_is_layer_norm_at_batch_one_and_tends_to_batch_norm():
    bln_pooled, ln = build_norm("bln_pooled", 12).double(), build_norm("layer", 12).double()
    torch.testing.assert_close(bln_pooled(X[:1]), ln(X[:1]))
    big = torch.randn(400, 12, 2, 2, dtype=torch.float64)
    bn = build_norm("batch", 12).double()
    assert (bln_pooled(big) - bn(big)).abs().max() < 0.05  # weight 1/400 on the layer part
