"""Catalog of the attention block: softmax and linear attention with momentum on the linear-attention state."""

from ..rules.base import discrete_rules
from .params import Param

# the discrete rules the attention block offers: declared once, in their own modules under momsearch/rules
RULES = {name: cls.PARAMS for name, cls in discrete_rules().items() if "attention" in cls.blocks}

PARAMS = {
    "kind": Param("str", "linear", "attention kind", choices=("linear", "softmax")),
    "d_model": Param("int", 64, "model width", low=1),
    "heads": Param("int", 2, "attention heads (must divide d_model)", low=1),
    "layers": Param("int", 2, "encoder layers", low=1),
    "ffn": Param("int", 128, "feed-forward width", low=1),
    "causal": Param("bool", True, "causal (left-to-right) or bidirectional"),
    "residual": Param("str", "plain", "momentum on the residual stream", choices=("plain", "heavy_ball", "adaptive")),
    "residual_mu": Param("float", 0.6, "residual momentum (residual: heavy_ball)", low=0.0, high=1.0, high_open=True),
    "residual_s": Param("float", 1.0, "residual step size (residual: heavy_ball, adaptive)", low=0.0, low_open=True),
    "dropout": Param("float", 0.0, "dropout in the encoder layers", low=0.0, high=1.0, high_open=True),
    "chunk_size": Param("int", 64, "chunk length of the parallel linear-attention form", low=1),
}

BLOCK = {
    "doc": "transformer encoder with softmax or linear attention; momentum rules act on the linear-attention state",
    "params": PARAMS,
    "rules": RULES,
    "default_rule": "plain",
    # parameter -> value -> the only rules allowed with that value
    "rule_constraints": {"kind": {"softmax": ("plain",)}},
}
