"""Normalization layers and the factory that builds them by name."""

from normlab.norms.batch import BatchNorm
from normlab.norms.bln_pooled import BatchLayerNormPooled
from normlab.norms.fast import composite_only
from normlab.norms.group import GroupNorm
from normlab.norms.instance import InstanceNorm
from normlab.norms.layer import LayerNorm
from normlab.norms.layout import LAYOUTS
from normlab.norms.none import NoNorm
from normlab.norms.registry import (
    NORMS,
    activates,
    build_norm,
    canonical,
    knobs_of,
    linear_norm,
    norm_class,
    norm_layer,
    relu_after,
    supports,
)
from normlab.norms.rms import RMSNorm

__all__ = [
    "LAYOUTS",
    "NORMS",
    "BatchLayerNormPooled",
    "BatchNorm",
    "GroupNorm",
    "InstanceNorm",
    "LayerNorm",
    "NoNorm",
    "RMSNorm",
    "activates",
    "build_norm",
    "canonical",
    "composite_only",
    "knobs_of",
    "linear_norm",
    "norm_class",
    "norm_layer",
    "relu_after",
    "supports",
]
