"""Catalog of the recurrent block: cells, block parameters and the discrete update rules it offers."""

from ..rules.base import discrete_rules
from .params import Param

CELLS = ("tanh", "lstm", "gru", "orthogonal")

# the discrete rules the RNN block offers: declared once, in their own modules under momsearch/rules
RULES = {name: cls.PARAMS for name, cls in discrete_rules().items() if "rnn" in cls.blocks}

PARAMS = {
    "cell": Param("str", "lstm", "recurrent cell", choices=CELLS),
    "hidden_size": Param("int", 64, "hidden units per layer", low=1),
    "num_layers": Param("int", 1, "stacked layers (the rule applies in every layer)", low=1),
    "dropout": Param("float", 0.0, "dropout between layers", low=0.0, high=1.0, high_open=True),
}

BLOCK = {
    "doc": "recurrent network (tanh, LSTM, GRU, orthogonal cells) with a momentum update rule",
    "params": PARAMS,
    "rules": RULES,
    "default_rule": "plain",
    "rule_constraints": {},
}
