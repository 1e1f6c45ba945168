"""Catalog of the attention block: softmax and linear attention with momentum on the state (DESIGN §3.3)."""

from .params import Param
from .rnn import EPS, MU, RESTART, S

BETA = Param("float", 0.999, "decay of the squared-update average", low=0.0, high=1.0, high_open=True)

RULES = {
    "plain": {},
    "heavy_ball": {"mu": MU, "s": S},
    "nesterov_restart": {"s": S, "restart_every": RESTART},
    "adam": {"mu": MU, "s": S, "beta": BETA, "eps": EPS},
}

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
